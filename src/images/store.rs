//! The content-addressed store (IMAGES.md §4.2):
//!
//! ```text
//! <state>/images/
//!   blobs/sha256/<hex>        manifests and configs, verified by digest
//!   layers/<chainid hex>/fs   one unpacked layer, immutable once here; meta.json beside it
//!   refs.json                 name → manifest digest: the only list of roots (atomic replace)
//!   ingest/<blob hex>         a layer blob being downloaded (resumed by the next pull)
//!   tmp/                      work in progress; emptied whenever the store is opened
//!   .lock                     flock: one writer (a daemon, or a daemonless import)
//! ```
//!
//! Nothing becomes visible before it is complete and on disk: a layer is unpacked in `tmp/`,
//! both digests are checked, the filesystem is synced, and only then is it renamed into
//! `layers/`; an image exists once its blobs and layers do and a ref names it.

use super::compress::decompress;
use super::digest::{Digest, Hashing};
use super::image::{self, LayerRef, Parsed, RunConfig, MAX_DOCUMENT};
use super::layer::apply::Stats;
use super::layer::sandbox::Unpacker;
pub use super::reference::ImageName;
use crate::durable::{sync_dir, write_atomic};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A store failure, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the store.
    #[error("the image store {0} is in use by another superd (PID {1})")]
    Locked(PathBuf, String),
    /// A filesystem step failed.
    #[error("{doing}: {source}")]
    Io {
        /// What was being done.
        doing: String,
        /// Why it failed.
        source: io::Error,
    },
    /// Content is not what it claims to be, or is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The image is not in the store.
    #[error("image {0} is not in the store")]
    Missing(String),
    /// No room for a layer (before or while it was unpacked).
    #[error("disk full: {0}")]
    DiskFull(String),
    /// The name is in a read-only store (pre-seeded), which superd never changes.
    #[error("{0} is in the read-only image store {1}; it cannot be removed")]
    ReadOnly(String, PathBuf),
}

/// An I/O failure while `doing`; ENOSPC is [`StoreError::DiskFull`], whatever the step.
pub(super) fn io_err(doing: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let doing = doing.into();
    move |source| {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            StoreError::DiskFull(format!("{doing}: {source}"))
        } else {
            StoreError::Io { doing, source }
        }
    }
}

/// One entry of `refs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefRecord {
    /// The manifest digest the name stands for.
    pub digest: Digest,
    /// When it was pulled or imported (seconds since the epoch).
    pub at: u64,
    /// `pull` or `import`.
    pub source: String,
    /// The index the manifest was picked from (a pull of a multi-platform image): kept as
    /// long as the name, so the image can still be named by the index digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Digest>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    refs: BTreeMap<String, RefRecord>,
}

/// An image ready to run: its identity, its layers (bottom first) and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The manifest digest (the machine's name for the image).
    pub manifest: Digest,
    /// The config digest (Docker's "image ID").
    pub config: Digest,
    /// Layer directories, bottom first.
    pub layer_dirs: Vec<PathBuf>,
    /// How the image wants to run.
    pub run: RunConfig,
    /// Its layers' ChainIDs, bottom first.
    pub layers: Vec<Digest>,
}

/// What a digest names in the store.
#[derive(Debug, PartialEq, Eq)]
enum Pinned {
    Manifest,
    Index,
    /// A config, or nothing stored.
    Other,
}

/// What `image ls` shows for one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Names that point at it.
    pub names: Vec<String>,
    /// Manifest digest.
    pub digest: Digest,
    /// Config digest.
    pub config: Digest,
    /// `os/arch`.
    pub platform: String,
    /// Layers, bottom first (ChainIDs).
    pub layers: Vec<Digest>,
    /// Bytes of all its layers on disk.
    pub size: u64,
    /// Bytes of those layers that other images use too.
    pub shared: u64,
    /// Every layer is present.
    pub complete: bool,
    /// How it runs.
    pub run: RunConfig,
    /// Its names come from a read-only (pre-seeded) store.
    #[serde(default)]
    pub read_only: bool,
}

/// Written beside each layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerMeta {
    /// This layer's ChainID.
    pub chain_id: Digest,
    /// Its DiffID.
    pub diff_id: Digest,
    /// Bytes of file content.
    pub bytes: u64,
    /// Regular files.
    pub files: u64,
    /// Entries of the tar.
    pub entries: u64,
}

/// The store; one per state directory, locked for its lifetime.
pub struct Store {
    root: PathBuf,
    unpacker: Unpacker,
    refs: Mutex<()>,
    holds: std::sync::Arc<super::gc::HoldSet>,
    roots: Mutex<Vec<String>>,
    /// Read-only stores searched after this one (pre-seeded images; never written or
    /// collected).
    read_only: Vec<PathBuf>,
    /// Where collection requests go, once a daemon runs one (`gc::spawn_collector`).
    gc: std::sync::OnceLock<super::gc::Trigger>,
    _lock: crate::durable::Lock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mkdir(p: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .map_err(io_err(format!("creating {}", p.display())))
}

impl Store {
    /// Opens (creating) the store at `root`, takes its lock and discards unfinished work.
    pub fn open(root: &Path, unpacker: Unpacker) -> Result<Store, StoreError> {
        for d in ["", "blobs/sha256", "layers", "tmp", "ingest", "trash"] {
            mkdir(&root.join(d))?;
        }
        let lock_path = root.join(".lock");
        let lock = crate::durable::lock_exclusive(&lock_path).map_err(|f| match f {
            crate::durable::LockFailure::Held(pid) => StoreError::Locked(root.to_path_buf(), pid),
            crate::durable::LockFailure::Io(step, e) => {
                io_err(format!("{step} {}", lock_path.display()))(e)
            }
        })?;
        let store = Store {
            root: root.to_path_buf(),
            unpacker,
            refs: Mutex::new(()),
            holds: std::sync::Arc::default(),
            roots: Mutex::new(Vec::new()),
            read_only: Vec::new(),
            gc: std::sync::OnceLock::new(),
            _lock: lock,
        };
        store.clean_tmp();
        store.empty_trash();
        Ok(store)
    }

    /// Adds read-only stores (laid out like this one, e.g. a mounted squashfs of a store
    /// made by `superd image import --store`), searched after this one in the given order.
    /// A directory that is not a store is left out and returned as an error.
    pub fn with_read_only(mut self, dirs: Vec<PathBuf>) -> (Store, Vec<StoreError>) {
        let mut errors = Vec::new();
        for d in dirs {
            match ["blobs/sha256", "layers"]
                .iter()
                .find(|s| !d.join(s).is_dir())
            {
                None => self.read_only.push(d),
                Some(sub) => errors.push(StoreError::Invalid(format!(
                    "the read-only image store {} has no {sub}/ (make one with `superd image \
                     import --store DIR`)",
                    d.display()
                ))),
            }
        }
        (self, errors)
    }

    /// The read-only stores.
    pub fn read_only(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// `rel` in this store if it exists there, else in the first read-only store that has
    /// it, else in this store.
    fn find(&self, rel: &Path) -> PathBuf {
        let own = self.root.join(rel);
        if own.symlink_metadata().is_ok() {
            return own;
        }
        self.read_only
            .iter()
            .map(|d| d.join(rel))
            .find(|p| p.symlink_metadata().is_ok())
            .unwrap_or(own)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes everything in `tmp/` (interrupted unpacks and imports) and unfinished layer
    /// renames.
    fn clean_tmp(&self) {
        let tmp = self.root.join("tmp");
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let _ = remove_tree(&e.path());
            }
        }
    }

    /// A fresh directory under `tmp/`.
    pub fn tmp_dir(&self, what: &str) -> Result<TmpDir, StoreError> {
        let mut rnd = [0u8; 8];
        let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut rnd));
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let p = self.root.join("tmp").join(format!("{what}-{name}"));
        mkdir(&p)?;
        Ok(TmpDir(p))
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.find(&Path::new("blobs/sha256").join(d.hex()))
    }

    fn layer_path(&self, chain: &Digest) -> PathBuf {
        self.find(&Path::new("layers").join(chain.hex()))
    }

    /// Records the image references the loaded manifests name (the roots of GC).
    pub fn set_roots(&self, roots: Vec<String>) {
        *self.roots.lock().unwrap_or_else(|p| p.into_inner()) = roots;
    }

    /// Sends later [`Store::request_gc`] calls to `trigger` (the first one set stays).
    pub fn set_gc_trigger(&self, trigger: super::gc::Trigger) {
        let _ = self.gc.set(trigger);
    }

    /// Asks for a garbage collection soon, when something may have become unreachable (a
    /// name moved, a manifest stopped naming an image, a workload let go of its layers).
    /// Nothing happens without a collector (the daemonless import).
    pub fn request_gc(&self) {
        if let Some(t) = self.gc.get() {
            t.request();
        }
    }

    /// The image references the loaded manifests name.
    pub fn roots(&self) -> Vec<String> {
        self.roots.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refuses a layer of about `estimate` bytes when it would leave less than the reserve
    /// free (5 % of the filesystem, at most 256 MiB: superd's logs and state must still fit).
    pub fn check_space(&self, estimate: u64, what: &str) -> Result<(), StoreError> {
        let Ok(st) = nix::sys::statvfs::statvfs(&self.root) else {
            return Ok(()); // cannot tell: the write itself will say
        };
        let frag = st.fragment_size();
        let (free, total) = (st.blocks_available() * frag, st.blocks() * frag);
        let reserve = (total / 20).min(256 << 20);
        if free < reserve.saturating_add(estimate) {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            return Err(StoreError::DiskFull(format!(
                "{what} needs about {:.1} MiB, {:.1} MiB are free on {} (reserve {:.1} MiB)",
                mib(estimate),
                mib(free),
                self.root.display(),
                mib(reserve)
            )));
        }
        Ok(())
    }

    /// [`Store::apply_layer`], and on a full disk one garbage collection and one more try
    /// (`open` gives the blob stream anew).
    pub fn apply_layer_or_collect(
        &self,
        layer: &LayerRef,
        lowers: &[Digest],
        open: &mut dyn FnMut() -> Result<Box<dyn Read>, StoreError>,
    ) -> Result<Option<Stats>, StoreError> {
        match self.apply_layer(layer, lowers, &mut open()?) {
            Err(StoreError::DiskFull(first)) => {
                let report = super::gc::collect(self, &self.roots(), now())?;
                tracing::info!(
                    layers = report.layers.len(),
                    bytes = report.bytes,
                    "disk full: collected garbage, trying the layer once more"
                );
                self.apply_layer(layer, lowers, &mut open()?)
                    .map_err(|e| match e {
                        StoreError::DiskFull(_) => StoreError::DiskFull(format!(
                            "{first}; still after collecting garbage ({} layers removed)",
                            report.layers.len()
                        )),
                        e => e,
                    })
            }
            r => r,
        }
    }

    /// Keeps `layers` from garbage collection while the guard lives (a running workload).
    pub fn hold(&self, layers: &[Digest]) -> super::gc::Hold {
        self.holds.hold(layers)
    }

    /// Layers some workload holds.
    pub fn held(&self) -> std::collections::BTreeSet<Digest> {
        self.holds
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    fn digests_in(dir: &Path) -> Vec<Digest> {
        let mut v: Vec<Digest> = fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        let n = e.file_name();
                        Digest::parse(&format!("sha256:{}", n.to_string_lossy())).ok()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Every stored blob.
    pub fn blob_digests(&self) -> Vec<Digest> {
        Self::digests_in(&self.root.join("blobs/sha256"))
    }

    /// Every committed layer.
    pub fn layer_digests(&self) -> Vec<Digest> {
        Self::digests_in(&self.root.join("layers"))
    }

    /// Deletes a blob of this store (missing is fine) unless an import or a pull holds it.
    pub fn remove_blob(&self, d: &Digest) -> Result<(), StoreError> {
        let guard = self.holds.0.lock().unwrap_or_else(|p| p.into_inner());
        if guard.contains_key(d) {
            return Ok(());
        }
        match fs::remove_file(self.root.join("blobs/sha256").join(d.hex())) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(io_err(format!("removing blob {d}"))(e))
            }
            _ => Ok(()),
        }
    }

    /// Deletes a layer unless a workload holds it (then it is kept, not an error).
    pub fn remove_layer(&self, chain: &Digest) -> Result<(), StoreError> {
        let guard = self.holds.0.lock().unwrap_or_else(|p| p.into_inner());
        if guard.contains_key(chain) {
            return Ok(());
        }
        let dir = self.root.join("layers").join(chain.hex());
        if !dir.exists() {
            return Ok(());
        }
        let r = super::gc::trash(&dir, &self.root.join("trash"));
        drop(guard);
        r.map_err(io_err(format!("removing layer {}", chain.short())))?;
        sync_dir(&self.root.join("layers")).map_err(io_err("syncing layers/"))
    }

    /// Deletes partial downloads no pull has touched for `age` (a pull that was given up);
    /// returns how many.
    pub fn clean_ingest(&self, age: std::time::Duration) -> usize {
        let mut removed = 0;
        if let Ok(rd) = fs::read_dir(self.root.join("ingest")) {
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|a| a > age);
                if old && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Deletes whatever an interrupted removal left in `trash/`.
    pub fn empty_trash(&self) {
        if let Ok(rd) = fs::read_dir(self.root.join("trash")) {
            for e in rd.flatten() {
                let _ = remove_tree(&e.path());
            }
        }
    }

    /// Where a blob being downloaded is kept until its layer is committed (a later pull
    /// resumes from it).
    pub fn ingest_path(&self, blob: &Digest) -> PathBuf {
        self.root.join("ingest").join(blob.hex())
    }

    /// Directory of a committed layer.
    pub fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.layer_path(chain).join("fs")
    }

    /// Whether the layer is committed (here or in a read-only store).
    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_path(chain).join("meta.json").is_file()
    }

    /// Stores a small document (manifest, index, config) after checking its digest.
    pub fn put_blob(&self, expected: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        let got = Digest::of(bytes);
        if &got != expected {
            return Err(StoreError::Invalid(format!(
                "blob {expected} has the digest {got}"
            )));
        }
        if self.blob_path(expected).is_file() {
            return Ok(());
        }
        let dir = self.root.join("blobs/sha256");
        write_atomic(&dir, expected.hex(), bytes, 0o600)
            .map_err(io_err(format!("writing blob {expected}")))
    }

    /// A stored document, checked against its digest again.
    pub fn blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let p = self.blob_path(d);
        let bytes = crate::runtime::sys::read_regular(&p, MAX_DOCUMENT, true).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::Missing(d.to_string())
            } else {
                io_err(format!("reading blob {d}"))(e)
            }
        })?;
        if &Digest::of(&bytes) != d {
            return Err(StoreError::Invalid(format!(
                "blob {d} in the store is corrupt"
            )));
        }
        Ok(bytes)
    }

    /// Unpacks one layer from its (compressed) blob stream and commits it, unless it is
    /// already there. Both digests are checked before anything is committed.
    pub fn apply_layer(
        &self,
        layer: &LayerRef,
        lowers: &[Digest],
        blob: &mut dyn Read,
    ) -> Result<Option<Stats>, StoreError> {
        if self.has_layer(&layer.chain_id) {
            return Ok(None);
        }
        let what = format!("layer {}", layer.blob.short());
        let factor = match layer.compression {
            super::compress::Compression::None => 1,
            _ => 3,
        };
        self.check_space(layer.size.saturating_mul(factor), &what)?;
        let tmp = self.tmp_dir("layer")?;
        let fs_dir = tmp.0.join("fs");
        mkdir(&fs_dir)?;
        let lower_dirs: Vec<PathBuf> = lowers.iter().rev().map(|c| self.layer_dir(c)).collect();
        let mut compressed = Hashing::new(blob);
        let stats = {
            let inner = decompress(&mut compressed, layer.compression, &what)
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let mut plain = Hashing::new(inner);
            let stats = self
                .unpacker
                .apply(&fs_dir, &lower_dirs, &mut plain)
                .map_err(|e| {
                    if e.contains("os error 28") {
                        StoreError::DiskFull(format!("{what}: {e}"))
                    } else {
                        StoreError::Invalid(format!("{what}: {e}"))
                    }
                })?;
            let (diff, _) = plain.finish();
            if diff != layer.diff_id {
                return Err(StoreError::Invalid(format!(
                    "{what}: the uncompressed content has the digest {diff}, \
                     but the image config says {}",
                    layer.diff_id
                )));
            }
            stats
        };
        io::copy(&mut compressed, &mut io::sink()).map_err(io_err(format!("reading {what}")))?;
        let (got, size) = compressed.finish();
        if got != layer.blob {
            return Err(StoreError::Invalid(format!(
                "{what}: the blob has the digest {got} ({size} bytes), not {}",
                layer.blob
            )));
        }
        let meta = LayerMeta {
            chain_id: layer.chain_id.clone(),
            diff_id: layer.diff_id.clone(),
            bytes: stats.bytes,
            files: stats.files,
            entries: stats.entries,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let d = File::open(&fs_dir).map_err(io_err("opening the new layer"))?;
        nix::unistd::syncfs(&d).map_err(|e| io_err("syncfs of the new layer")(e.into()))?;
        write_atomic(&tmp.0, "meta.json", &json, 0o600)
            .map_err(io_err(format!("{what}: writing meta.json")))?;
        let dest = self.root.join("layers").join(layer.chain_id.hex());
        match fs::rename(&tmp.0, &dest) {
            Ok(()) => {}
            // Committed meanwhile by someone else with the same content.
            Err(_) if self.has_layer(&layer.chain_id) => return Ok(None),
            Err(e) => return Err(io_err(format!("committing {what}"))(e)),
        }
        tmp.forget();
        sync_dir(&self.root.join("layers")).map_err(io_err("syncing layers/"))?;
        Ok(Some(stats))
    }

    fn read_refs(&self) -> RefsFile {
        read_refs_at(&self.root)
    }

    /// Every name and what it points at: this store's, then the read-only stores' names
    /// it does not have.
    pub fn refs(&self) -> BTreeMap<String, RefRecord> {
        let mut refs = self.read_refs().refs;
        for d in &self.read_only {
            for (name, r) in read_refs_at(d).refs {
                refs.entry(name).or_insert(r);
            }
        }
        refs
    }

    /// The names this store itself holds (not the read-only stores').
    pub fn own_refs(&self) -> BTreeMap<String, RefRecord> {
        self.read_refs().refs
    }

    /// Points `name` at `digest` (atomically replacing `refs.json`).
    pub fn set_ref(&self, name: &str, digest: &Digest, source: &str) -> Result<(), StoreError> {
        self.set_ref_from(name, digest, None, source)
    }

    /// [`Store::set_ref`] for a manifest picked from `index`.
    pub fn set_ref_from(
        &self,
        name: &str,
        digest: &Digest,
        index: Option<&Digest>,
        source: &str,
    ) -> Result<(), StoreError> {
        let _g = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = self.read_refs();
        let old = f.refs.insert(
            name.to_string(),
            RefRecord {
                digest: digest.clone(),
                at: now(),
                source: source.to_string(),
                index: index.cloned(),
            },
        );
        self.write_refs(&f)?;
        if old.is_some_and(|o| o.digest != *digest) {
            // The name moved: the image it named may have nothing left.
            self.request_gc();
        }
        Ok(())
    }

    /// Drops `name`; false when there was no such name.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        let _g = self.refs.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = self.read_refs();
        if f.refs.remove(name).is_none() {
            if let Some(d) = self
                .read_only
                .iter()
                .find(|d| read_refs_at(d).refs.contains_key(name))
            {
                return Err(StoreError::ReadOnly(name.to_string(), d.clone()));
            }
            return Ok(false);
        }
        self.write_refs(&f)?;
        Ok(true)
    }

    fn write_refs(&self, f: &RefsFile) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(f).map_err(|e| StoreError::Invalid(e.to_string()))?;
        write_atomic(&self.root, "refs.json", &json, 0o600).map_err(io_err("writing refs.json"))
    }

    /// The manifest and config of a stored image.
    pub fn parsed(&self, manifest: &Digest) -> Result<Parsed, StoreError> {
        let m = self.blob(manifest)?;
        let config = image::parse_image_config_digest(&m).map_err(StoreError::Invalid)?;
        let c = self.blob(&config)?;
        image::parse_image(&m, &c).map_err(StoreError::Invalid)
    }

    /// What a pinned digest names in the store (one small read; documents are tiny).
    fn pinned_kind(&self, d: &Digest) -> Pinned {
        match self.blob(d) {
            Ok(b) if image::is_index(&b) => Pinned::Index,
            Ok(b) if image::parse_image_config_digest(&b).is_ok() => Pinned::Manifest,
            _ => Pinned::Other,
        }
    }

    /// The image a reference names: by digest (a manifest digest, or the config digest of a
    /// docker-archive import), else through its name in `refs.json`.
    pub fn resolve(&self, reference: &ImageName) -> Result<Resolved, StoreError> {
        let kind = reference.digest.as_ref().map(|d| self.pinned_kind(d));
        let manifest = match (&reference.digest, kind) {
            (Some(d), Some(Pinned::Manifest)) => d.clone(),
            (Some(d), Some(Pinned::Index)) => {
                // A pinned index: this machine's entry.
                let idx = image::parse_index(&self.blob(d)?).map_err(StoreError::Invalid)?;
                let (os, arch) = image::host_platform();
                image::pick_platform(&idx, os, arch).ok_or_else(|| {
                    StoreError::Missing(format!("{reference} (no {os}/{arch} image)"))
                })?
            }
            // A config digest (a docker-archive's image ID): the image whose config it is.
            (Some(d), _) => self
                .refs()
                .values()
                .map(|r| r.digest.clone())
                .find(|m| self.parsed(m).is_ok_and(|p| &p.config == d))
                .ok_or_else(|| StoreError::Missing(reference.to_string()))?,
            (None, _) => self
                .refs()
                .get(&reference.name)
                .map(|r| r.digest.clone())
                .ok_or_else(|| StoreError::Missing(reference.to_string()))?,
        };
        let p = self.parsed(&manifest)?;
        let mut layer_dirs = Vec::new();
        for l in &p.layers {
            if !self.has_layer(&l.chain_id) {
                return Err(StoreError::Missing(format!(
                    "{reference} (layer {} is missing)",
                    l.chain_id.short()
                )));
            }
            layer_dirs.push(self.layer_dir(&l.chain_id));
        }
        Ok(Resolved {
            manifest,
            config: p.config,
            layer_dirs,
            run: p.run,
            layers: p.layers.iter().map(|l| l.chain_id.clone()).collect(),
        })
    }

    /// Every image a ref names, with sizes.
    pub fn list(&self) -> Vec<ImageInfo> {
        let own = self.own_refs();
        let mut by_digest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
        for (name, r) in self.refs() {
            by_digest.entry(r.digest).or_default().push(name);
        }
        let mut images: Vec<(Digest, Vec<String>, Parsed)> = by_digest
            .into_iter()
            .filter_map(|(d, names)| self.parsed(&d).ok().map(|p| (d, names, p)))
            .collect();
        images.sort_by(|a, b| a.1.cmp(&b.1));
        let mut users: BTreeMap<Digest, usize> = BTreeMap::new();
        for (_, _, p) in &images {
            for l in &p.layers {
                *users.entry(l.chain_id.clone()).or_default() += 1;
            }
        }
        images
            .into_iter()
            .map(|(digest, names, p)| {
                let (mut size, mut shared, mut complete) = (0, 0, true);
                for l in &p.layers {
                    let bytes = self.layer_size(&l.chain_id);
                    complete &= bytes.is_some();
                    let b = bytes.unwrap_or(0);
                    size += b;
                    if users.get(&l.chain_id).copied().unwrap_or(0) > 1 {
                        shared += b;
                    }
                }
                ImageInfo {
                    read_only: !names.iter().any(|n| own.contains_key(n)),
                    names,
                    digest,
                    config: p.config,
                    platform: p.platform,
                    layers: p.layers.iter().map(|l| l.chain_id.clone()).collect(),
                    size,
                    shared,
                    complete,
                    run: p.run,
                }
            })
            .collect()
    }

    /// Bytes of file content in a committed layer (from its `meta.json`).
    pub fn layer_size(&self, chain: &Digest) -> Option<u64> {
        let p = self.layer_path(chain).join("meta.json");
        let b = crate::runtime::sys::read_regular(&p, 64 << 10, true).ok()?;
        serde_json::from_slice::<LayerMeta>(&b)
            .ok()
            .map(|m| m.bytes)
    }
}

/// The `refs.json` of the store at `root` (empty when missing or unreadable).
fn read_refs_at(root: &Path) -> RefsFile {
    crate::runtime::sys::read_regular(&root.join("refs.json"), MAX_DOCUMENT, true)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// A directory under `tmp/`, removed when dropped unless committed.
pub struct TmpDir(pub PathBuf);

impl TmpDir {
    /// Keeps the directory (it was renamed into place).
    fn forget(mut self) {
        self.0 = PathBuf::new();
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = remove_tree(&self.0);
        }
    }
}

/// `rm -rf` that never follows a symlink (std's `remove_dir_all` does not either).
pub fn remove_tree(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
