//! `[resources] nofile` and `[resources.ulimits]` (the rlimits a workload starts with), and
//! `[tmpfs]` (the sizes of its /tmp, /run and /dev/shm).

use super::check::{key_segment, Checker};
use super::raw::{RawLogs, RawMap, RawResources, RawTmpfs, Val};
use super::spec::{default_rlimits, LogLimits, Rlimit, RlimitKind, RlimitSetting, TmpfsSizes};
use super::values;
use std::collections::BTreeMap;
use toml::Spanned;

/// The smallest tmpfs size accepted.
const MIN_TMPFS: u64 = 64 << 10;

const RLIMIT_FORMS: &str =
    "an integer, \"unlimited\", or \"soft:hard\" (each an integer, a size such as \"8M\", \
     or \"unlimited\")";

/// One side of an rlimit: an integer, a size, or `unlimited`.
fn one_limit(s: &str) -> Result<Option<u64>, String> {
    let s = s.trim();
    if s == "unlimited" || s == "infinity" {
        return Ok(None);
    }
    if s == "0" {
        return Ok(Some(0));
    }
    values::parse_size(s)
        .map(Some)
        .map_err(|_| format!("invalid limit `{s}`: expected {RLIMIT_FORMS}"))
}

/// `"1024:4096"`, `"unlimited"`, `"8M"` → a soft/hard pair with soft ≤ hard.
fn parse_rlimit(s: &str) -> Result<Rlimit, String> {
    let (soft, hard) = match s.split_once(':') {
        Some((a, b)) => (one_limit(a)?, one_limit(b)?),
        None => {
            let n = one_limit(s)?;
            (n, n)
        }
    };
    let over = match (soft, hard) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    };
    if over {
        return Err(format!(
            "the soft limit in `{s}` is above the hard limit; the hard limit is the ceiling"
        ));
    }
    Ok(Rlimit { soft, hard })
}

fn rlimit(ck: &mut Checker<'_>, v: &Spanned<Val>, field: &str) -> Option<Rlimit> {
    match v.get_ref() {
        Val::Int(_) => ck
            .integer(v, field, 0, i64::MAX.into())
            .and_then(|n| u64::try_from(n).ok())
            .map(Rlimit::both),
        _ => ck.parsed(v, field, RLIMIT_FORMS, parse_rlimit),
    }
}

/// Every rlimit of the spec: the defaults, then `nofile`, then `ulimits`.
pub(crate) fn rlimits(
    ck: &mut Checker<'_>,
    raw: Option<&RawResources>,
) -> BTreeMap<RlimitKind, RlimitSetting> {
    let mut out = default_rlimits();
    let Some(raw) = raw else {
        return out;
    };
    let mut set = |kind: RlimitKind, limit: Rlimit| {
        out.insert(
            kind,
            RlimitSetting {
                limit,
                explicit: true,
            },
        );
    };
    if let Some(limit) = raw
        .nofile
        .as_ref()
        .and_then(|v| rlimit(ck, v, "resources.nofile"))
    {
        set(RlimitKind::Nofile, limit);
    }
    let Some(ulimits) = raw.ulimits.as_ref() else {
        return out;
    };
    ulimit_table(ck, ulimits, &mut set);
    out
}

fn ulimit_table(ck: &mut Checker<'_>, table: &RawMap, set: &mut impl FnMut(RlimitKind, Rlimit)) {
    for (key, value) in table.get_ref() {
        let name = key.get_ref().as_str();
        let field = format!("resources.ulimits.{}", key_segment(name));
        if name == "nofile" {
            let msg = "set the open-files limit as `resources.nofile`, not in ulimits";
            ck.error(key.span(), &field, msg);
            continue;
        }
        let Some(&(_, kind)) = RlimitKind::ALL.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = RlimitKind::ALL
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| *n != "nofile")
                .collect();
            let msg = format!(
                "unknown limit `{name}`: expected one of {}",
                names.join(", ")
            );
            ck.error(key.span(), &field, msg);
            continue;
        };
        if let Some(limit) = rlimit(ck, value, &field) {
            set(kind, limit);
        }
    }
}

/// `[tmpfs]`: each size an integer or a size string, at least 64 KiB.
pub(crate) fn tmpfs(ck: &mut Checker<'_>, raw: Option<&RawTmpfs>) -> TmpfsSizes {
    let mut out = TmpfsSizes::default();
    let Some(raw) = raw else {
        return out;
    };
    for (leaf, key, slot) in [
        (&raw.tmp, "tmp", &mut out.tmp),
        (&raw.run, "run", &mut out.run),
        (&raw.shm, "shm", &mut out.shm),
        (&raw.root, "root", &mut out.root),
    ] {
        let Some(v) = leaf else { continue };
        let field = format!("tmpfs.{key}");
        let size = match v.get_ref() {
            Val::Int(_) => ck
                .integer(v, &field, 1, i128::from(values::MAX_MEMORY))
                .and_then(|n| u64::try_from(n).ok()),
            _ => ck.parsed(
                v,
                &field,
                "bytes (an integer) or a size string such as \"64M\"",
                values::parse_size,
            ),
        };
        match size {
            Some(n) if n < MIN_TMPFS => {
                let msg = format!("{n} bytes is too small: at least 64K");
                ck.error(v.span(), &field, msg);
            }
            Some(n) => *slot = n,
            None => {}
        }
    }
    out
}

/// `[logs]`: `max_size` a size of at least 4K, `max_files` from 1 to 100.
pub(crate) fn logs(ck: &mut Checker<'_>, raw: Option<&RawLogs>) -> LogLimits {
    let mut out = LogLimits::default();
    let Some(raw) = raw else {
        return out;
    };
    if let Some(v) = &raw.max_size {
        let size = match v.get_ref() {
            Val::Int(_) => ck
                .integer(v, "logs.max_size", 4096, i128::from(values::MAX_MEMORY))
                .and_then(|n| u64::try_from(n).ok()),
            _ => ck.parsed(
                v,
                "logs.max_size",
                "bytes (an integer) or a size string such as \"10M\"",
                values::parse_size,
            ),
        };
        match size {
            Some(n) if n < 4096 => ck.error(v.span(), "logs.max_size", "at least 4K"),
            other => out.max_size = other,
        }
    }
    if let Some(v) = &raw.max_files {
        out.max_files = ck
            .integer(v, "logs.max_files", 1, 100)
            .and_then(|n| u32::try_from(n).ok());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_forms() {
        assert_eq!(
            parse_rlimit("1024:4096"),
            Ok(Rlimit {
                soft: Some(1024),
                hard: Some(4096)
            })
        );
        assert_eq!(
            parse_rlimit("unlimited"),
            Ok(Rlimit {
                soft: None,
                hard: None
            })
        );
        assert_eq!(
            parse_rlimit("8M:unlimited"),
            Ok(Rlimit {
                soft: Some(8 << 20),
                hard: None
            })
        );
        assert_eq!(parse_rlimit("0"), Ok(Rlimit::both(0)));
        assert!(parse_rlimit("4096:1024")
            .unwrap_err()
            .contains("above the hard limit"));
        assert!(parse_rlimit("unlimited:5").is_err());
        assert!(parse_rlimit("lots").unwrap_err().contains("soft:hard"));
    }
}
