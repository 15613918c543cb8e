//! Offline import (IMAGES.md §4.9): a docker-archive (`docker save`, legacy `manifest.json`),
//! the docker ≥ 25 archive (an OCI layout plus `manifest.json`), an oci-archive, or an OCI
//! layout directory.
//!
//! An archive stream (optionally gzip or zstd compressed as a whole) is read once: its regular
//! files are spooled into a fresh directory under the store's `tmp/` (names normalised, nothing
//! but files and directories created), which is then read as a layout. `index.json` is never
//! trusted alone: every manifest reachable from it and every entry of `manifest.json` is
//! imported.

use super::compress::{decompress, Compression};
use super::digest::Digest;
use super::image::{self, MANIFEST_TYPES, MAX_DOCUMENT};
use super::layer::plan::RelPath;
use super::store::{io_err, Store};
use super::store::{ImageName, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Most files an archive may hold.
const MAX_FILES: u64 = 100_000;
/// How deep indexes may nest.
const MAX_DEPTH: usize = 4;

/// One imported image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    /// Names now pointing at it.
    pub names: Vec<String>,
    /// Its manifest digest.
    pub digest: Digest,
    /// Its config digest.
    pub config: Digest,
    /// `os/arch`.
    pub platform: String,
    /// Layers in the image.
    pub layers: usize,
    /// Layers that were not in the store before.
    pub new_layers: usize,
}

impl std::fmt::Display for Imported {
    /// `sha256:… name, name (4 layers, 1 new)`, as `superd image import`, `superctl image
    /// import` and `superctl image pull` print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = if self.names.is_empty() {
            "(no name)".to_string()
        } else {
            self.names.join(", ")
        };
        write!(
            f,
            "{} {names} ({} layers, {} new)",
            self.digest, self.layers, self.new_layers
        )
    }
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::Invalid(msg.into())
}

/// Imports an archive stream. `name` names a single image whose archive gives no full name.
pub fn import_stream(
    store: &Store,
    input: impl Read,
    name: Option<&str>,
) -> Result<Vec<Imported>, StoreError> {
    let tmp = store.tmp_dir("import")?;
    let mut buf = BufReader::with_capacity(64 * 1024, input);
    let kind = Compression::sniff(buf.fill_buf().map_err(io_err("reading the archive"))?);
    let outer = decompress(buf, kind, "the archive").map_err(|e| invalid(e.to_string()))?;
    spool(outer, &tmp.0)?;
    import_layout(store, &tmp.0, name)
}

/// Writes the regular files of a tar under `dir`.
fn spool(input: impl Read, dir: &Path) -> Result<(), StoreError> {
    let mut archive = tar::Archive::new(input);
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("reading the archive: {e}")))?;
    let mut n = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("reading the archive: {e}")))?;
        n += 1;
        if n > MAX_FILES {
            return Err(invalid(format!(
                "the archive has more than {MAX_FILES} entries"
            )));
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            continue; // directories are made as needed; links are not part of any format
        }
        let Some(rel) = RelPath::normalize(&entry.path_bytes())
            .map_err(|e| invalid(format!("the archive: {e}")))?
        else {
            continue;
        };
        let path = dir.join(std::ffi::OsStr::from_bytes(rel.as_bytes()));
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("spooling {rel}")))?;
        }
        let mut f = File::create_new(&path).map_err(io_err(format!("spooling {rel}")))?;
        io::copy(&mut entry, &mut f).map_err(io_err(format!("spooling {rel}")))?;
    }
    Ok(())
}

/// Where the blobs of a layout are: `blobs/sha256/<hex>`, or files named by a docker
/// `manifest.json`.
struct Source {
    dir: PathBuf,
    extra: BTreeMap<Digest, PathBuf>,
}

impl Source {
    fn path(&self, d: &Digest) -> PathBuf {
        self.extra
            .get(d)
            .cloned()
            .unwrap_or_else(|| self.dir.join("blobs/sha256").join(d.hex()))
    }

    fn doc(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let bytes = read_small(&self.path(d))?;
        if &Digest::of(&bytes) != d {
            return Err(invalid(format!(
                "blob {d} in the archive has another digest"
            )));
        }
        Ok(bytes)
    }
}

fn read_small(p: &Path) -> Result<Vec<u8>, StoreError> {
    crate::runtime::sys::read_regular(p, MAX_DOCUMENT, true)
        .map_err(io_err(format!("reading {}", p.display())))
}

/// `manifest.json` of `docker save`.
#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Imports an OCI layout directory (or a spooled archive).
pub fn import_layout(
    store: &Store,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<Imported>, StoreError> {
    let mut src = Source {
        dir: dir.to_path_buf(),
        extra: BTreeMap::new(),
    };
    let index = dir.join("index.json");
    let docker = dir.join("manifest.json");
    if !index.is_file() && !docker.is_file() {
        return Err(invalid(
            "neither index.json nor manifest.json found: not an OCI layout or docker archive",
        ));
    }
    // manifest digest → names
    let mut found: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    if index.is_file() {
        let bytes = read_small(&index)?;
        walk_index(&src, &bytes, 0, &mut found)?;
    }
    if docker.is_file() {
        let entries: Vec<DockerEntry> = serde_json::from_slice(&read_small(&docker)?)
            .map_err(|e| invalid(format!("manifest.json: {e}")))?;
        for e in entries {
            let digest = docker_manifest(&mut src, &e)?;
            let names = found.entry(digest).or_default();
            for t in e.repo_tags.unwrap_or_default() {
                names.insert(ImageName::parse(&t).map_err(invalid)?.name);
            }
        }
    }
    if found.is_empty() {
        return Err(invalid("the archive holds no image for this platform"));
    }
    let single = found.len() == 1;
    let mut out = Vec::new();
    for (digest, mut names) in found {
        if let (Some(n), true) = (name, single) {
            names.insert(ImageName::parse(n).map_err(invalid)?.name);
        }
        out.push(import_image(store, &src, &digest, names)?);
    }
    Ok(out)
}

fn walk_index(
    src: &Source,
    bytes: &[u8],
    depth: usize,
    found: &mut BTreeMap<Digest, BTreeSet<String>>,
) -> Result<(), StoreError> {
    if depth > MAX_DEPTH {
        return Err(invalid("image indexes nest too deep"));
    }
    let idx = image::parse_index(bytes).map_err(invalid)?;
    let (os, arch) = image::host_platform();
    for m in idx.manifests() {
        let d = Digest::parse(m.digest().as_ref()).map_err(invalid)?;
        if let Some(p) = m.platform() {
            if p.os().to_string() != os || p.architecture().to_string() != arch {
                continue;
            }
        }
        if !src.path(&d).is_file() {
            continue; // a single-platform save of a multi-platform index
        }
        let doc = src.doc(&d)?;
        if image::is_index(&doc) {
            walk_index(src, &doc, depth + 1, found)?;
            continue;
        }
        let names = found.entry(d).or_default();
        let ann = m.annotations().clone().unwrap_or_default();
        for key in [
            "io.containerd.image.name",
            "org.opencontainers.image.ref.name",
        ] {
            if let Some(v) = ann.get(key) {
                // A bare tag (`1`, `latest`) names no repository: skip it.
                if v.contains('/') || v.contains(':') {
                    if let Ok(n) = ImageName::parse(v) {
                        names.insert(n.name);
                    }
                }
            }
        }
    }
    Ok(())
}

/// An OCI manifest for a docker-archive entry (which has none), written as a blob source.
fn docker_manifest(src: &mut Source, e: &DockerEntry) -> Result<Digest, StoreError> {
    let rel = |p: &str| -> Result<PathBuf, StoreError> {
        let r = RelPath::normalize(p.as_bytes())
            .map_err(invalid)?
            .ok_or_else(|| invalid("manifest.json names the archive root"))?;
        Ok(src.dir.join(std::ffi::OsStr::from_bytes(r.as_bytes())))
    };
    let config_path = rel(&e.config)?;
    let config = read_small(&config_path)?;
    let config_digest = Digest::of(&config);
    src.extra.insert(config_digest.clone(), config_path);
    let mut layers = Vec::new();
    for l in &e.layers {
        let p = rel(l)?;
        let mut f = File::open(&p).map_err(io_err(format!("opening layer {l}")))?;
        let mut head = [0u8; 4];
        let n = f
            .read(&mut head)
            .map_err(io_err(format!("reading layer {l}")))?;
        let comp = Compression::sniff(&head[..n]);
        let mut f = File::open(&p).map_err(io_err(format!("opening layer {l}")))?;
        let mut h = super::digest::Hashing::new(&mut f);
        io::copy(&mut h, &mut io::sink()).map_err(io_err(format!("reading layer {l}")))?;
        let (digest, size) = h.finish();
        src.extra.insert(digest.clone(), p);
        layers.push(serde_json::json!({
            "mediaType": comp.oci_media_type(),
            "digest": digest.as_str(),
            "size": size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[0],
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.as_str(),
            "size": config.len(),
        },
        "layers": layers,
    });
    let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
    let digest = Digest::of(&bytes);
    let path = src.dir.join(format!("superd-manifest-{}", digest.hex()));
    fs::write(&path, &bytes).map_err(io_err("writing the synthesised manifest"))?;
    src.extra.insert(digest.clone(), path);
    Ok(digest)
}

fn import_image(
    store: &Store,
    src: &Source,
    digest: &Digest,
    names: BTreeSet<String>,
) -> Result<Imported, StoreError> {
    let manifest = src.doc(digest)?;
    let config_digest = image::parse_image_config_digest(&manifest).map_err(invalid)?;
    let config = src.doc(&config_digest)?;
    let parsed = image::parse_image(&manifest, &config).map_err(invalid)?;
    let chains: Vec<Digest> = parsed.layers.iter().map(|l| l.chain_id.clone()).collect();
    // Until the name is set nothing reaches these: a collection meanwhile must keep them.
    let mut building = chains.clone();
    building.extend([config_digest.clone(), digest.clone()]);
    let _building = store.hold(&building);
    let mut new_layers = 0;
    for (i, layer) in parsed.layers.iter().enumerate() {
        if store.has_layer(&layer.chain_id) {
            continue;
        }
        let p = src.path(&layer.blob);
        let mut open = || -> Result<Box<dyn Read>, StoreError> {
            let f = File::open(&p).map_err(io_err(format!(
                "opening layer {} (the archive lacks it?)",
                layer.blob
            )))?;
            Ok(Box::new(f))
        };
        if store
            .apply_layer_or_collect(layer, &chains[..i], &mut open)?
            .is_some()
        {
            new_layers += 1;
        }
    }
    store.put_blob(&config_digest, &config)?;
    store.put_blob(digest, &manifest)?;
    for n in &names {
        store.set_ref(n, digest, "import")?;
    }
    Ok(Imported {
        names: names.into_iter().collect(),
        digest: digest.clone(),
        config: config_digest,
        platform: parsed.platform,
        layers: parsed.layers.len(),
        new_layers,
    })
}
