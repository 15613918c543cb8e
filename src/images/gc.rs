//! Garbage collection of the store from explicit roots (IMAGES.md §4.8).
//!
//! Roots: every image a loaded manifest names (the last good spec of a broken file too),
//! every name pulled or imported within the grace period (so `pull` before writing the
//! manifest works), and every layer a running workload has mounted (its [`Hold`]). Everything
//! else is swept: names first, then the blobs and layer directories no remaining image
//! reaches. A layer is removed by a rename into `trash/` and then deleted, so a crash
//! midway leaves only `trash/`, which the next open empties. There is no timer: GC runs on
//! `superctl image prune`, after `superctl image rm`, and once when a pull runs out of disk.

use super::digest::Digest;
use super::reference::ImageName;
use super::store::{remove_tree, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Names pulled or imported this recently survive a collection.
pub const GRACE: Duration = Duration::from_secs(3600);

/// What a collection removes (or would remove, for a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Names dropped.
    pub refs: Vec<String>,
    /// Manifest, index and config blobs removed.
    pub blobs: Vec<Digest>,
    /// Layer directories removed (ChainIDs).
    pub layers: Vec<Digest>,
    /// Bytes of file content in those layers.
    pub bytes: u64,
    /// Unreferenced layers kept because a running workload has them mounted.
    pub held: Vec<Digest>,
}

/// Plans a collection: `manifests` are the image references loaded manifests name (as
/// written); `now` is seconds since the epoch.
pub fn plan(store: &Store, manifests: &[String], now: u64) -> GcReport {
    let refs = store.refs();
    let mut keep_refs = BTreeSet::new();
    let mut roots: BTreeSet<Digest> = BTreeSet::new();
    for r in manifests {
        let Ok(name) = ImageName::parse(r) else {
            continue;
        };
        if refs.contains_key(&name.name) {
            keep_refs.insert(name.name.clone());
        }
        if let Ok(res) = store.resolve(&name) {
            roots.insert(res.manifest);
        }
        if let Some(d) = name.digest {
            roots.insert(d);
        }
    }
    let mut report = GcReport::default();
    let own = store.own_refs();
    for (name, rec) in &refs {
        let fresh = now.saturating_sub(rec.at) < GRACE.as_secs();
        // A read-only store's image (pre-seeded) is never collected.
        if !own.contains_key(name) || keep_refs.contains(name) || fresh {
            roots.insert(rec.digest.clone());
            roots.extend(rec.index.clone());
        } else {
            report.refs.push(name.clone());
        }
    }
    // Mark: root digests → their blobs and layers (an index → every child it lists).
    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut layers: BTreeSet<Digest> = BTreeSet::new();
    let mut todo: Vec<Digest> = roots.into_iter().collect();
    while let Some(d) = todo.pop() {
        if !blobs.insert(d.clone()) {
            continue;
        }
        let Ok(bytes) = store.blob(&d) else { continue };
        if super::image::is_index(&bytes) {
            if let Ok(idx) = super::image::parse_index(&bytes) {
                todo.extend(
                    idx.manifests()
                        .iter()
                        .filter_map(|m| Digest::parse(m.digest().as_ref()).ok()),
                );
            }
            continue;
        }
        if let Ok(p) = store.parsed(&d) {
            blobs.insert(p.config.clone());
            layers.extend(p.layers.iter().map(|l| l.chain_id.clone()));
        }
    }
    // Sweep.
    let held = store.held();
    for b in store.blob_digests() {
        // A held blob belongs to an import or a pull that has not named its image yet.
        if !blobs.contains(&b) && !held.contains(&b) {
            report.blobs.push(b);
        }
    }
    for l in store.layer_digests() {
        if layers.contains(&l) {
            continue;
        }
        if held.contains(&l) {
            report.held.push(l);
        } else {
            report.bytes += store.layer_size(&l).unwrap_or(0);
            report.layers.push(l);
        }
    }
    report
}

/// Runs a collection and returns what it removed.
pub fn collect(store: &Store, manifests: &[String], now: u64) -> Result<GcReport, StoreError> {
    let report = plan(store, manifests, now);
    for r in &report.refs {
        store.remove_ref(r)?;
    }
    for b in &report.blobs {
        store.remove_blob(b)?;
    }
    for l in &report.layers {
        // Checked again under the hold lock: a workload may have started meanwhile.
        store.remove_layer(l)?;
    }
    store.empty_trash();
    store.clean_ingest(GRACE);
    Ok(report)
}

impl GcReport {
    /// Nothing was (or would be) removed.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty() && self.blobs.is_empty() && self.layers.is_empty()
    }
}

impl std::fmt::Display for GcReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} names, {} blobs and {} layers ({:.1} MiB)",
            self.refs.len(),
            self.blobs.len(),
            self.layers.len(),
            self.bytes as f64 / (1024.0 * 1024.0)
        )?;
        if !self.held.is_empty() {
            write!(f, "; {} unused layers still mounted", self.held.len())?;
        }
        Ok(())
    }
}

/// Asks for a garbage collection from the store's published roots; see [`spawn_collector`].
#[derive(Debug, Clone)]
pub struct Trigger(tokio::sync::mpsc::Sender<()>);

impl Trigger {
    /// Requests a collection soon (requests close together make one).
    pub fn request(&self) {
        let _ = self.0.try_send(());
    }
}

/// How long a request waits for others to join it.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Collects garbage in the background whenever asked (no timer: the events that can make
/// something unreachable ask), from the roots the supervisor publishes. Needs a tokio
/// runtime.
pub fn spawn_collector(store: std::sync::Arc<Store>) -> Trigger {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let s = std::sync::Arc::clone(&store);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match tokio::task::spawn_blocking(move || collect(&s, &s.roots(), now)).await {
                Ok(Ok(r)) if !r.is_empty() => {
                    tracing::info!("image garbage collection removed {r}")
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("image garbage collection: {e}"),
                Err(e) => tracing::warn!("image garbage collection: {e}"),
            }
        }
    });
    Trigger(tx)
}

/// Keeps layers from collection while a workload has them mounted; released on drop.
#[derive(Debug)]
pub struct Hold {
    pub(super) store: std::sync::Weak<HoldSet>,
    pub(super) layers: Vec<Digest>,
}

/// Counts of holds per layer.
#[derive(Debug, Default)]
pub struct HoldSet(pub(super) std::sync::Mutex<std::collections::BTreeMap<Digest, usize>>);

impl HoldSet {
    /// Holds `layers` until the returned guard is dropped.
    pub fn hold(self: &std::sync::Arc<Self>, layers: &[Digest]) -> Hold {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for l in layers {
            *m.entry(l.clone()).or_default() += 1;
        }
        Hold {
            store: std::sync::Arc::downgrade(self),
            layers: layers.to_vec(),
        }
    }

    /// Whether `layer` is held.
    pub fn contains(&self, layer: &Digest) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(layer)
    }
}

impl Hold {
    /// The layers (ChainIDs) it holds.
    pub fn layers(&self) -> &[Digest] {
        &self.layers
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(set) = self.store.upgrade() else {
            return;
        };
        let mut m = set.0.lock().unwrap_or_else(|p| p.into_inner());
        for l in &self.layers {
            if let Some(n) = m.get_mut(l) {
                *n -= 1;
                if *n == 0 {
                    m.remove(l);
                }
            }
        }
    }
}

/// Removes `dir` by renaming it into `trash` first (so a crash leaves no half-deleted
/// layer under `layers/`).
pub(super) fn trash(dir: &std::path::Path, trash: &std::path::Path) -> std::io::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let dest = trash.join(name);
    let _ = remove_tree(&dest);
    std::fs::rename(dir, &dest)?;
    remove_tree(&dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_fresh_name_keeps_the_index_it_was_picked_from() {
        let dir = tempfile::tempdir().expect("a directory");
        let store = Store::open(
            dir.path(),
            crate::images::layer::sandbox::Unpacker::new("/proc/self/exe", None),
        )
        .expect("a store");
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":0},"layers":[]}"#;
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        let (m, i) = (Digest::of(manifest), Digest::of(index));
        store.put_blob(&m, manifest).expect("stored");
        store.put_blob(&i, index).expect("stored");
        store
            .set_ref_from("reg/app:1", &m, Some(&i), "pull")
            .expect("named");
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let report = plan(&store, &[], now());
        assert!(!report.blobs.contains(&i), "{report:?}");
        assert!(!report.blobs.contains(&m), "{report:?}");
        // Once the name is old and unused, both go.
        let later = plan(&store, &[], now() + GRACE.as_secs() + 1);
        assert!(
            later.blobs.contains(&i) && later.blobs.contains(&m),
            "{later:?}"
        );
    }

    #[test]
    fn holds_count_and_release() {
        let set = Arc::new(HoldSet::default());
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let h1 = set.hold(&[a.clone(), b.clone()]);
        let h2 = set.hold(std::slice::from_ref(&a));
        drop(h1);
        assert!(set.contains(&a), "still held by the second workload");
        assert!(!set.contains(&b));
        drop(h2);
        assert!(!set.contains(&a));
        // A hold that outlives its set is harmless.
        let h3 = set.hold(&[a]);
        drop(set);
        drop(h3);
    }
}
