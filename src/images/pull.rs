//! Registry pulls (cargo feature `registry`), with oci-client for the protocol: token auth,
//! digest checks of manifests (against the reference and `Docker-Content-Digest`) and blobs.
//!
//! - A tag is resolved once and recorded; an index picks this machine's platform.
//! - Layers stream into `ingest/<blob hex>` (at most 2 at a time). A broken connection resumes
//!   with a `Range` request from what the file holds (up to [`RETRIES`] times, with backoff);
//!   a registry that answers 200 instead of 206 starts the file over. The whole file is
//!   hashed again before it is unpacked, and the store checks both digests before it commits.
//! - Layers are unpacked bottom first as soon as their download is complete; the ingest file
//!   is removed once its layer is committed. The image is named last.
//! - Plain HTTP only for registries given with `--insecure-registry`; credentials from a
//!   Docker `config.json` style file that only root may read.

use super::digest::Digest;
use super::image::{self, MAX_DOCUMENT};
use super::import::Imported;
use super::reference::ImageName;
use super::store::{Store, StoreError};
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Attempts per layer download (the first included).
pub const RETRIES: u32 = 5;
/// Layers downloaded at once.
pub const PARALLEL: usize = 2;

/// Registry settings from superd's command line.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// `host[:port]` of registries spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// A Docker `config.json` style credentials file (`{"auths": {"host": {"auth": …}}}`).
    pub auth_file: Option<PathBuf>,
}

pub use crate::api::{LayerProgress, LayerState, PullProgress as Progress};

/// A failed background pull is not tried again sooner than this (a workload waiting for its
/// image asks every second).
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(10);

/// A pull failure.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry refused or the transfer failed.
    #[error("{0}")]
    Registry(String),
    /// The store refused the content.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn reg(e: impl std::fmt::Display) -> PullError {
    PullError::Registry(e.to_string())
}

/// Pulls images into a store; one pull per reference at a time.
pub struct Puller {
    store: Arc<Store>,
    /// Made on the first pull: reqwest's TLS setup needs the system's CA certificates, which
    /// an appliance may not have; that must cost the pull, never superd's start.
    client: std::sync::OnceLock<Result<oci_client::Client, String>>,
    cfg: RegistryConfig,
    pulls: Mutex<BTreeMap<String, Progress>>,
    /// Bytes fetched per layer of each running pull (read into `Progress::layer_list`).
    fetched: Mutex<BTreeMap<String, Vec<Arc<AtomicU64>>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller").field("cfg", &self.cfg).finish()
    }
}

impl Puller {
    /// A puller for `store`.
    pub fn new(store: Arc<Store>, cfg: RegistryConfig) -> Puller {
        Puller {
            store,
            client: std::sync::OnceLock::new(),
            cfg,
            pulls: Mutex::new(BTreeMap::new()),
            fetched: Mutex::new(BTreeMap::new()),
        }
    }

    /// The registry client, made once.
    fn client(&self) -> Result<&oci_client::Client, PullError> {
        let made = self.client.get_or_init(|| {
            // rustls needs one process-wide crypto provider; a second install is a no-op.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let protocol = if self.cfg.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(self.cfg.insecure.clone())
            };
            let config = ClientConfig {
                protocol,
                max_concurrent_download: PARALLEL,
                connect_timeout: Some(Duration::from_secs(15)),
                read_timeout: Some(Duration::from_secs(60)),
                ..ClientConfig::default()
            };
            // oci-client falls back to reqwest's `Client::new()`, which panics, when its
            // builder fails (no CA certificates at all, as on a bare appliance).
            let make = std::panic::AssertUnwindSafe(|| oci_client::Client::new(config));
            std::panic::catch_unwind(make).map_err(|_| {
                "cannot set up TLS for registry pulls (are there CA certificates in \
                 /etc/ssl/certs?)"
                    .to_string()
            })
        });
        made.as_ref().map_err(|e| PullError::Registry(e.clone()))
    }

    /// The progress of the pull of `reference` (as written), if one ran.
    pub fn progress(&self, reference: &str) -> Option<Progress> {
        let mut p = self.lock().get(reference).cloned()?;
        let counters = self.fetched.lock().unwrap_or_else(|e| e.into_inner());
        for (l, c) in p
            .layer_list
            .iter_mut()
            .zip(counters.get(reference).into_iter().flatten())
        {
            // The download tasks only count bytes; their state follows from the count.
            if l.state == LayerState::Waiting {
                l.fetched = c.load(Ordering::Relaxed).min(l.size);
                if l.fetched > 0 {
                    l.state = if l.fetched == l.size {
                        LayerState::Downloaded
                    } else {
                        LayerState::Downloading
                    };
                }
            }
        }
        Some(p)
    }

    fn set_layer(&self, reference: &str, i: usize, state: LayerState) {
        self.update(reference, |p| {
            if let Some(l) = p.layer_list.get_mut(i) {
                l.state = state;
                if state != LayerState::Waiting && state != LayerState::Downloading {
                    l.fetched = l.size;
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Progress>> {
        self.pulls.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, reference: &str, f: impl FnOnce(&mut Progress)) {
        if let Some(p) = self.lock().get_mut(reference) {
            f(p);
        }
    }

    /// Starts a pull of `reference` in the background unless one is running. Must be called
    /// inside a tokio runtime.
    pub fn ensure(self: &Arc<Self>, reference: &str) {
        {
            let mut pulls = self.lock();
            let recent_failure = |p: &Progress| {
                p.error.is_some() && p.ended_at.is_some_and(|t| t.elapsed() < RETRY_FAILED_AFTER)
            };
            if pulls
                .get(reference)
                .is_some_and(|p| !p.finished || recent_failure(p))
            {
                return;
            }
            pulls.insert(reference.to_string(), Progress::default());
        }
        let me = Arc::clone(self);
        let r = reference.to_string();
        tokio::spawn(async move {
            if let Err(e) = me.run(&r, None).await {
                tracing::warn!(image = %r, "pull failed: {}", crate::report::chain(&e));
            }
        });
    }

    /// Pulls `reference` now (waiting for a pull already running, then pulling again: an
    /// explicit pull re-resolves a tag).
    /// `platform` picks an index's entry other than this machine's.
    pub async fn pull(
        self: &Arc<Self>,
        reference: &str,
        platform: Option<&image::Platform>,
    ) -> Result<Imported, PullError> {
        loop {
            let running = self.lock().get(reference).is_some_and(|p| !p.finished);
            if !running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.lock()
            .insert(reference.to_string(), Progress::default());
        self.run(reference, platform).await
    }

    async fn run(
        &self,
        reference: &str,
        platform: Option<&image::Platform>,
    ) -> Result<Imported, PullError> {
        let res = self.pull_inner(reference, platform).await;
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(reference);
        self.update(reference, |p| {
            p.finished = true;
            p.ended_at = Some(std::time::Instant::now());
            p.error = res.as_ref().err().map(|e| crate::report::chain(e));
        });
        res
    }

    fn auth(&self, registry: &str) -> Result<RegistryAuth, PullError> {
        let Some(path) = &self.cfg.auth_file else {
            return Ok(RegistryAuth::Anonymous);
        };
        auth_from_file(path, registry).map_err(PullError::Registry)
    }

    async fn pull_inner(
        &self,
        written: &str,
        platform: Option<&image::Platform>,
    ) -> Result<Imported, PullError> {
        let name = ImageName::parse(written).map_err(PullError::Registry)?;
        let reference: Reference = written.parse().map_err(reg)?;
        let auth = self.auth(reference.resolve_registry())?;
        let accept: Vec<&str> = image::MANIFEST_TYPES
            .iter()
            .chain(image::INDEX_TYPES.iter())
            .copied()
            .collect();
        let (mut bytes, mut digest) = self.manifest(&reference, &auth, &accept).await?;
        let mut index = None;
        if image::is_index(&bytes) {
            let idx = image::parse_index(&bytes).map_err(PullError::Registry)?;
            let (os, arch) = image::host_platform();
            let host = image::Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            };
            let want = platform.unwrap_or(&host);
            let child = image::pick(&idx, want)
                .ok_or_else(|| PullError::Registry(format!("{written} has no image for {want}")))?;
            index = Some((digest.clone(), bytes.clone()));
            let child_ref = reference.clone_with_digest(child.to_string());
            (bytes, digest) = self.manifest(&child_ref, &auth, &accept).await?;
            if digest != child.as_str() {
                return Err(reg(format!(
                    "the index names {child} but the registry sent {digest}"
                )));
            }
        }
        let config_digest =
            image::parse_image_config_digest(&bytes).map_err(PullError::Registry)?;
        let config = self.small_blob(&reference, &config_digest).await?;
        let parsed = image::parse_image(&bytes, &config).map_err(PullError::Registry)?;
        let total: u64 = parsed.layers.iter().map(|l| l.size).sum();
        // Until the name is set nothing reaches these: a collection meanwhile must keep them.
        let m = Digest::parse(&digest).map_err(PullError::Registry)?;
        let index = match index {
            Some((d, b)) => Some((Digest::parse(&d).map_err(PullError::Registry)?, b)),
            None => None,
        };
        let mut building: Vec<Digest> = parsed.layers.iter().map(|l| l.chain_id.clone()).collect();
        building.extend([config_digest.clone(), m.clone()]);
        building.extend(index.as_ref().map(|(d, _)| d.clone()));
        let _building = self.store.hold(&building);
        let counters: Vec<Arc<AtomicU64>> = parsed.layers.iter().map(|_| Arc::default()).collect();
        self.fetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(written.to_string(), counters.clone());
        self.update(written, |p| {
            p.layers = parsed.layers.len();
            p.bytes = total;
            p.layer_list = parsed
                .layers
                .iter()
                .map(|l| LayerProgress {
                    blob: l.blob.to_string(),
                    size: l.size,
                    ..LayerProgress::default()
                })
                .collect();
        });
        // Downloads run ahead (PARALLEL at a time); unpacking follows in order.
        let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut downloads = Vec::new();
        for (i, l) in parsed.layers.iter().enumerate() {
            if self.store.has_layer(&l.chain_id) {
                self.set_layer(written, i, LayerState::Present);
                downloads.push(None);
                continue;
            }
            let (sem, client, reference) =
                (Arc::clone(&sem), self.client()?.clone(), reference.clone());
            let (dest, blob, size) = (self.store.ingest_path(&l.blob), l.blob.clone(), l.size);
            let counter = Arc::clone(&counters[i]);
            self.store
                .check_space(size, &format!("downloading layer {}", l.blob.short()))?;
            downloads.push(Some(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.map_err(reg)?;
                fetch_layer(&client, &reference, &blob, size, &dest, &counter).await?;
                Ok::<PathBuf, PullError>(dest)
            })));
        }
        let chains: Vec<Digest> = parsed.layers.iter().map(|l| l.chain_id.clone()).collect();
        let mut new_layers = 0;
        for (i, (layer, dl)) in parsed.layers.iter().zip(downloads).enumerate() {
            if let Some(task) = dl {
                let path = task.await.map_err(reg)??;
                self.set_layer(written, i, LayerState::Unpacking);
                let (store, layer, lowers, p) = (
                    Arc::clone(&self.store),
                    layer.clone(),
                    chains[..i].to_vec(),
                    path.clone(),
                );
                let applied = tokio::task::spawn_blocking(move || {
                    let mut open = || -> Result<Box<dyn std::io::Read>, StoreError> {
                        let f = std::fs::File::open(&p).map_err(|source| StoreError::Io {
                            doing: format!("opening {}", p.display()),
                            source,
                        })?;
                        Ok(Box::new(f))
                    };
                    store.apply_layer_or_collect(&layer, &lowers, &mut open)
                })
                .await
                .map_err(reg)?;
                let _ = std::fs::remove_file(&path);
                if applied?.is_some() {
                    new_layers += 1;
                }
            }
            self.update(written, |p| {
                p.layers_done = i + 1;
                p.bytes_done += layer.size;
                if let Some(l) = p.layer_list.get_mut(i) {
                    if l.state != LayerState::Present {
                        l.state = LayerState::Done;
                    }
                    l.fetched = l.size;
                }
            });
        }
        self.store.put_blob(&config_digest, &config)?;
        self.store.put_blob(&m, &bytes)?;
        let index = index
            .map(|(d, b)| self.store.put_blob(&d, &b).map(|()| d))
            .transpose()?;
        self.store
            .set_ref_from(&name.name, &m, index.as_ref(), "pull")?;
        Ok(Imported {
            names: vec![name.name],
            digest: m,
            config: config_digest,
            platform: parsed.platform,
            layers: parsed.layers.len(),
            new_layers,
        })
    }

    /// A manifest or index, bounded and checked against its digest.
    async fn manifest(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
        accept: &[&str],
    ) -> Result<(Vec<u8>, String), PullError> {
        let (bytes, digest) = self
            .client()?
            .pull_manifest_raw(reference, auth, accept)
            .await
            .map_err(|e| reg(format!("fetching the manifest of {reference}: {e}")))?;
        if bytes.len() as u64 > MAX_DOCUMENT {
            return Err(reg(format!(
                "the manifest of {reference} is larger than {MAX_DOCUMENT} bytes"
            )));
        }
        let actual = Digest::of(&bytes);
        if actual.as_str() != digest {
            return Err(reg(format!(
                "the manifest of {reference} has the digest {actual}, not {digest}"
            )));
        }
        Ok((bytes.to_vec(), digest))
    }

    async fn small_blob(&self, reference: &Reference, d: &Digest) -> Result<Vec<u8>, PullError> {
        let mut s = self
            .client()?
            .pull_blob_stream(reference, d.as_str())
            .await
            .map_err(|e| reg(format!("fetching blob {d}: {e}")))?;
        let mut out = Vec::new();
        while let Some(chunk) = s.stream.next().await {
            out.extend_from_slice(&chunk.map_err(reg)?);
            if out.len() as u64 > MAX_DOCUMENT {
                return Err(reg(format!("blob {d} is larger than {MAX_DOCUMENT} bytes")));
            }
        }
        if &Digest::of(&out) != d {
            return Err(reg(format!("blob {d} arrived with another digest")));
        }
        Ok(out)
    }
}

/// Downloads one blob into `dest`, resuming what an earlier attempt left there.
async fn fetch_layer(
    client: &oci_client::Client,
    reference: &Reference,
    blob: &Digest,
    size: u64,
    dest: &Path,
    fetched: &AtomicU64,
) -> Result<(), PullError> {
    let desc = blob.as_str();
    let mut last = String::new();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt.min(5))).await;
        }
        let have = tokio::fs::metadata(dest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        fetched.store(have, Ordering::Relaxed);
        if have == size && have > 0 {
            break;
        }
        match fetch_once(client, reference, desc, have, dest, fetched).await {
            Ok(()) => break,
            Err(e) => {
                last = e;
                tracing::info!(%blob, attempt = attempt + 1, "layer download interrupted: {last}");
            }
        }
    }
    let got = tokio::fs::metadata(dest)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if got != size {
        return Err(reg(format!(
            "layer {blob}: {got} of {size} bytes after {RETRIES} attempts ({last})"
        )));
    }
    Ok(())
}

async fn fetch_once(
    client: &oci_client::Client,
    reference: &Reference,
    desc: &str,
    have: u64,
    dest: &Path,
    fetched: &AtomicU64,
) -> Result<(), String> {
    let (mut stream, append) = if have > 0 {
        match client
            .pull_blob_stream_partial(reference, desc, have, None)
            .await
            .map_err(|e| e.to_string())?
        {
            BlobResponse::Partial(s) => (s, true),
            BlobResponse::Full(s) => (s, false), // no ranges here: start over
        }
    } else {
        (
            client
                .pull_blob_stream(reference, desc)
                .await
                .map_err(|e| e.to_string())?,
            false,
        )
    };
    if !append {
        fetched.store(0, Ordering::Relaxed);
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(dest)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = stream.stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        f.write_all(&chunk).await.map_err(|e| e.to_string())?;
        fetched.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    f.flush().await.map_err(|e| e.to_string())?;
    f.sync_all().await.map_err(|e| e.to_string())
}

/// Credentials for `registry` from a Docker `config.json` style file, which must be a regular
/// file owned by root and readable by no one else.
pub fn auth_from_file(path: &Path, registry: &str) -> Result<RegistryAuth, String> {
    use base64::Engine as _;
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !meta.is_file() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{}: a credentials file must be a regular file owned by root with mode 0600",
            path.display()
        ));
    }
    let bytes = crate::runtime::sys::read_regular(path, 1 << 20, true)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
        identitytoken: Option<String>,
    }
    let f: File = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let key = |k: &str| {
        k.trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .trim_end_matches("/v2")
            .to_string()
    };
    let wanted = key(registry);
    let Some(e) = f.auths.iter().find(|(k, _)| {
        let k = key(k);
        k == wanted || (wanted == "index.docker.io" && k == "docker.io")
    }) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let e = e.1;
    if let Some(t) = &e.identitytoken {
        return Ok(RegistryAuth::Bearer(t.clone()));
    }
    if let (Some(u), Some(p)) = (&e.username, &e.password) {
        return Ok(RegistryAuth::Basic(u.clone(), p.clone()));
    }
    if let Some(a) = &e.auth {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.trim())
            .map_err(|_| format!("{}: `auth` for {registry} is not base64", path.display()))?;
        let s = String::from_utf8(raw)
            .map_err(|_| format!("{}: `auth` for {registry} is not UTF-8", path.display()))?;
        if let Some((u, p)) = s.split_once(':') {
            return Ok(RegistryAuth::Basic(u.to_string(), p.to_string()));
        }
    }
    Err(format!(
        "{}: the entry for {registry} has no usable credentials",
        path.display()
    ))
}
