//! The manifest as written: serde structs that mirror the TOML tables exactly.
//!
//! Tables are strict (`deny_unknown_fields`). Scalar leaves are kept as a spanned [`Val`] of
//! any type, so that `parse` checks types and meanings itself and reports every bad value with
//! its position instead of stopping at the first one.

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use toml::Spanned;

/// An optional scalar leaf, with its position.
pub(crate) type Leaf = Option<Spanned<Val>>;

/// The top level of a manifest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawManifest {
    pub name: Leaf,
    pub command: Leaf,
    pub args: Leaf,
    pub env: Option<Spanned<BTreeMap<Spanned<String>, Spanned<Val>>>>,
    pub workdir: Leaf,
    pub user: Leaf,
    pub hostname: Leaf,
    pub init: Leaf,
    pub rootfs: Option<Table<RawRootfs>>,
    pub mounts: Option<Vec<Spanned<Table<RawMount>>>>,
    pub volumes: Option<Vec<Spanned<Table<RawVolume>>>>,
    pub resources: Option<Table<RawResources>>,
    pub restart: Option<Table<RawRestart>>,
    pub stop: Option<Table<RawStop>>,
    pub rollout: Option<Table<RawRollout>>,
    pub watchdog: Option<Table<RawWatchdog>>,
    pub network: Option<Table<RawNetwork>>,
    pub tmpfs: Option<Table<RawTmpfs>>,
    pub security: Option<Table<RawSecurity>>,
    pub logs: Option<Table<RawLogs>>,
    pub health: Option<Spanned<Table<RawHealth>>>,
    pub after: Leaf,
    pub start_order: Option<Table<RawStartOrder>>,
}

/// `[health]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawHealth {
    pub http: Leaf,
    pub tcp: Leaf,
    pub exec: Leaf,
    pub interval: Leaf,
    pub timeout: Leaf,
    pub retries: Leaf,
    pub start_period: Leaf,
    pub start_interval: Leaf,
    pub on_unhealthy: Leaf,
}

/// `[start_order]`: defaults for every name in `after`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawStartOrder {
    pub condition: Leaf,
    pub restart_with: Leaf,
}

/// `[logs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawLogs {
    pub max_size: Leaf,
    pub max_files: Leaf,
}

/// `[tmpfs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawTmpfs {
    pub tmp: Leaf,
    pub run: Leaf,
    pub shm: Leaf,
    pub root: Leaf,
    pub mounts: Leaf,
}

/// One `[[volumes]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawVolume {
    pub name: Leaf,
    pub target: Leaf,
    pub readonly: Leaf,
}

/// `[security]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawSecurity {
    pub seccomp: Leaf,
    pub devices: Leaf,
}

/// A table of name → any value, with spans (`env`, `resources.ulimits`).
pub(crate) type RawMap = Spanned<BTreeMap<Spanned<String>, Spanned<Val>>>;

/// `[rootfs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRootfs {
    pub path: Leaf,
    pub image: Leaf,
    pub writable: Leaf,
    pub pull: Leaf,
}

/// One `[[mounts]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawMount {
    pub source: Leaf,
    pub target: Leaf,
    pub readonly: Leaf,
}

/// `[resources]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawResources {
    pub memory: Leaf,
    pub cpus: Leaf,
    pub pids: Leaf,
    pub nofile: Leaf,
    pub ulimits: Option<RawMap>,
}

/// `[restart]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRestart {
    pub policy: Leaf,
    pub initial_delay: Leaf,
    pub max_delay: Leaf,
    pub reset_after: Leaf,
    pub max_retries: Leaf,
}

/// `[stop]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawStop {
    pub signal: Leaf,
    pub timeout: Leaf,
}

/// `[watchdog]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawWatchdog {
    pub critical: Leaf,
    pub grace: Leaf,
}

/// `[rollout]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawRollout {
    pub bake: Leaf,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub(crate) struct RawNetwork {
    pub mode: Leaf,
    pub address: Leaf,
    pub ports: Leaf,
    pub aliases: Leaf,
}

/// A sub-table deserialized into `T`. Unlike a bare serde struct it refuses arrays: derived
/// struct visitors would take `network = ["host"]` as positional fields.
#[derive(Debug)]
pub(crate) struct Table<T>(pub T);

impl<T> Deref for Table<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(TableVisitor(PhantomData))
    }
}

struct TableVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
    type Value = Table<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Table<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Table)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Table<T>, A::Error> {
        Err(de::Error::invalid_type(
            Unexpected::Other("an array"),
            &self,
        ))
    }
}

/// Any TOML value. Array elements keep their spans; table contents are not needed by any leaf
/// and are dropped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Str(String),
    /// Wide enough for every integer the TOML parser hands out (i64 and beyond).
    Int(i128),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Spanned<Val>>),
    Table,
}

impl Val {
    /// The type, for messages: "found a boolean".
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Bool(_) => "a boolean",
            Val::Datetime => "a date-time",
            Val::Array(_) => "an array",
            Val::Table => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValVisitor)
    }
}

struct ValVisitor;

/// The key under which the toml crate hands a date-time to serde.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Visitor<'de> for ValVisitor {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Val, E> {
        Ok(Val::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Val, E> {
        Ok(Val::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Val, E> {
        Ok(Val::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Val, E> {
        Ok(Val::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Val, E> {
        // Anything this large is out of range for every field; saturate instead of wrapping.
        Ok(Val::Int(i128::try_from(v).unwrap_or(i128::MAX)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Val, E> {
        Ok(Val::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Val, E> {
        Ok(Val::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Val, E> {
        Ok(Val::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Val>>()? {
            items.push(item);
        }
        Ok(Val::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let first = map.next_key::<String>()?;
        let is_datetime = first.as_deref() == Some(DATETIME_KEY);
        if first.is_some() {
            map.next_value::<IgnoredAny>()?;
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        }
        Ok(if is_datetime {
            Val::Datetime
        } else {
            Val::Table
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct One {
        v: Spanned<Val>,
    }

    fn val(toml_value: &str) -> Val {
        let one: One = toml::from_str(&format!("v = {toml_value}")).unwrap();
        one.v.into_inner()
    }

    #[test]
    fn every_toml_type_is_captured() {
        assert_eq!(val("\"x\""), Val::Str("x".into()));
        assert_eq!(val("-3"), Val::Int(-3));
        assert_eq!(val("0.5"), Val::Float(0.5));
        assert_eq!(val("true"), Val::Bool(true));
        assert_eq!(val("1979-05-27"), Val::Datetime);
        assert_eq!(val("{ a = 1 }"), Val::Table);
        assert_eq!(val("{}"), Val::Table);
        let Val::Array(items) = val("[\"a\", 2]") else {
            panic!("not an array")
        };
        assert_eq!(items[1].span(), 10..11);
        assert_eq!(items[1].get_ref().type_name(), "an integer");
    }
}
