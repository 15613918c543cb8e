//! Image documents (manifest, index, config) read with bounds, and the part of a config that
//! decides how a workload runs.

use super::compress::Compression;
use super::digest::Digest;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Largest manifest, index or config superd parses (registries cap manifests at 4 MiB).
pub const MAX_DOCUMENT: u64 = 4 << 20;
/// Most layers an image may have: overlayfs stacks at most 500 lowers (OVL_MAX_STACK).
pub const MAX_LAYERS: usize = 500;

/// Media types of image manifests superd reads.
pub const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Media types of image indexes.
pub const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How the image wants to run (the OCI config's `config` object, Docker's `Healthcheck`
/// aside).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RunConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` as `KEY=VALUE`.
    pub env: Vec<String>,
    /// `WorkingDir` (empty: none).
    pub workdir: String,
    /// `User` (empty: none).
    pub user: String,
    /// `StopSignal` (empty: none).
    pub stop_signal: String,
    /// `ExposedPorts` (shown, never acted on).
    pub exposed_ports: Vec<String>,
    /// `Volumes` (shown, never mounted implicitly).
    pub volumes: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
}

/// A layer as the manifest lists it, with its DiffID and ChainID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the blob as stored in the registry or archive.
    pub blob: Digest,
    /// Size of the blob.
    pub size: u64,
    /// Its compression.
    pub compression: Compression,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// The layer with all below it.
    pub chain_id: Digest,
}

/// A parsed image: manifest + config.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The config blob's digest.
    pub config: Digest,
    /// The layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// How it runs.
    pub run: RunConfig,
}

fn doc_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Whether a manifest document is an index (by its `mediaType`, or by having `manifests`).
pub fn is_index(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => {
            p.media_type
                .as_deref()
                .is_some_and(|m| INDEX_TYPES.contains(&m))
                || p.manifests.is_some()
        }
        Err(_) => false,
    }
}

/// Parses an index.
pub fn parse_index(bytes: &[u8]) -> Result<ImageIndex, String> {
    ImageIndex::from_reader(bytes).map_err(|e| doc_err("image index", e))
}

/// This machine's platform in OCI terms (`linux/amd64`, `linux/arm64`, …).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    ("linux", arch)
}

/// The manifest of an index for `os/arch` (attestation entries `unknown/unknown` never match).
pub fn pick_platform(index: &ImageIndex, os: &str, arch: &str) -> Option<Digest> {
    pick(
        index,
        &Platform {
            os: os.to_string(),
            arch: arch.to_string(),
            variant: None,
        },
    )
}

/// `os/arch[/variant]`, as `superctl image pull --platform` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub arch: String,
    /// `v7`, `v8`, ...; `None` matches any.
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 32
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(format!(
                "platform {s:?}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// The manifest of an index for `want` (its variant, when given, must match too).
pub fn pick(index: &ImageIndex, want: &Platform) -> Option<Digest> {
    index.manifests().iter().find_map(|m| {
        let p = m.platform().as_ref()?;
        let variant_ok = want
            .variant
            .as_ref()
            .is_none_or(|v| p.variant().as_deref() == Some(v.as_str()));
        (p.os().to_string() == want.os && p.architecture().to_string() == want.arch && variant_ok)
            .then(|| Digest::parse(m.digest().as_ref()).ok())
            .flatten()
    })
}

/// The config digest a manifest names.
pub fn parse_image_config_digest(manifest: &[u8]) -> Result<Digest, String> {
    let m = ImageManifest::from_reader(manifest).map_err(|e| doc_err("image manifest", e))?;
    Digest::parse(m.config().digest().as_ref())
}

/// Parses a manifest and its config, checking that they agree (one DiffID per layer).
pub fn parse_image(manifest: &[u8], config: &[u8]) -> Result<Parsed, String> {
    let m = ImageManifest::from_reader(manifest).map_err(|e| doc_err("image manifest", e))?;
    let c = ImageConfiguration::from_reader(config).map_err(|e| doc_err("image config", e))?;
    let config_digest = Digest::parse(m.config().digest().as_ref())?;
    if m.layers().len() > MAX_LAYERS {
        return Err(format!(
            "the image has {} layers; overlayfs stacks at most {MAX_LAYERS}",
            m.layers().len()
        ));
    }
    let diff_ids = c
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != m.layers().len() {
        return Err(format!(
            "the manifest lists {} layers but the config {} DiffIDs",
            m.layers().len(),
            diff_ids.len()
        ));
    }
    let chains = super::digest::chain_ids(&diff_ids);
    let mut layers = Vec::new();
    for ((l, diff_id), chain_id) in m.layers().iter().zip(diff_ids).zip(chains) {
        let mt = l.media_type().to_string();
        let compression = Compression::from_media_type(&mt)
            .ok_or_else(|| format!("unsupported layer media type {mt}"))?;
        if l.urls().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(format!(
                "layer {} must be fetched from {:?}; foreign layers are not supported",
                l.digest(),
                l.urls()
            ));
        }
        layers.push(LayerRef {
            blob: Digest::parse(l.digest().as_ref())?,
            size: l.size(),
            compression,
            diff_id,
            chain_id,
        });
    }
    let mut platform = format!("{}/{}", c.os(), c.architecture());
    if let Some(v) = c.variant() {
        platform = format!("{platform}/{v}");
    }
    let run = c
        .config()
        .as_ref()
        .map_or_else(RunConfig::default, |k| RunConfig {
            entrypoint: k.entrypoint().clone().unwrap_or_default(),
            cmd: k.cmd().clone().unwrap_or_default(),
            env: k.env().clone().unwrap_or_default(),
            workdir: k.working_dir().clone().unwrap_or_default(),
            user: k.user().clone().unwrap_or_default(),
            stop_signal: k.stop_signal().clone().unwrap_or_default(),
            exposed_ports: {
                let mut p = k.exposed_ports().clone().unwrap_or_default();
                p.sort();
                p
            },
            volumes: {
                let mut v = k.volumes().clone().unwrap_or_default();
                v.sort();
                v
            },
            labels: k.labels().clone().unwrap_or_default().into_iter().collect(),
        });
    Ok(Parsed {
        config: config_digest,
        layers,
        platform,
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_pick_their_index_entry() {
        let p: Platform = "linux/arm/v7".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm/v7");
        assert_eq!("linux/arm64".parse::<Platform>().unwrap().variant, None);
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let entry = |c: char, arch: &str, variant: Option<&str>| {
            let mut p = serde_json::json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                p["variant"] = v.into();
            }
            serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": d(c), "size": 1, "platform": p})
        };
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            entry('a', "arm", Some("v6")), entry('b', "arm", Some("v7")), entry('c', "amd64", None)]});
        let index = ImageIndex::from_reader(index.to_string().as_bytes()).unwrap();
        let pick_s = |s: &str| pick(&index, &s.parse().unwrap()).map(|x| x.to_string());
        assert_eq!(pick_s("linux/arm/v7"), Some(d('b')));
        assert_eq!(
            pick_s("linux/arm"),
            Some(d('a')),
            "no variant: the first arm entry"
        );
        assert_eq!(pick_s("linux/amd64"), Some(d('c')));
        assert_eq!(pick_s("linux/arm64"), None);
    }
}
