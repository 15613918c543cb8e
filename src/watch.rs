//! The manifest directory watcher: level-triggered, like kubelet's static pods.
//!
//! inotify events are only a hint to re-read the whole directory. A completed write
//! (`IN_CLOSE_WRITE`), a rename or a delete triggers a re-read at once; a bare create or modify
//! waits a short settle time for its close. SIGHUP and a 30 s timer also re-read. The watch is
//! set up before the first listing, so nothing created in between is missed.

use crate::manifest;
use crate::supervisor::Msg;
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// Time to wait for a close after a create or modify without one.
pub const SETTLE: Duration = Duration::from_millis(100);
/// Periodic full re-read.
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kick {
    Now,
    Settle,
}

fn classify(ev: &notify::Event) -> Option<Kick> {
    if ev.need_rescan() {
        return Some(Kick::Now);
    }
    let relevant = ev.paths.iter().any(|p| {
        p.file_name()
            .map(manifest::is_manifest_file_name)
            .unwrap_or(false)
    });
    if !relevant {
        return None;
    }
    match ev.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Kick::Now),
        EventKind::Remove(_) => Some(Kick::Now),
        EventKind::Modify(ModifyKind::Name(_)) => Some(Kick::Now),
        EventKind::Create(_) | EventKind::Modify(_) => Some(Kick::Settle),
        EventKind::Any | EventKind::Other => Some(Kick::Settle),
        EventKind::Access(_) => None,
    }
}

/// Watches `dir` and sends the full desired set to the supervisor on every change.
/// `rescan` forces a re-read (SIGHUP). Runs until the supervisor's channel closes.
pub async fn run(dir: PathBuf, tx: mpsc::Sender<Msg>, rescan: Arc<Notify>) {
    let (kick_tx, mut kicks) = mpsc::unbounded_channel::<Kick>();
    let mut watcher: Option<notify::RecommendedWatcher> = None;
    let mut settle: Option<tokio::time::Instant> = None;
    let mut retry_watch = tokio::time::interval(Duration::from_secs(2));
    let mut periodic = tokio::time::interval(RESCAN_EVERY);
    periodic.tick().await;
    let mut warned = false;
    loop {
        if watcher.is_none() {
            // Watch first, then list.
            let ktx = kick_tx.clone();
            let w =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                    Ok(ev) => {
                        if let Some(k) = classify(&ev) {
                            let _ = ktx.send(k);
                        }
                    }
                    Err(_) => {
                        let _ = ktx.send(Kick::Now);
                    }
                })
                .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
            match w {
                Ok(w) => {
                    watcher = Some(w);
                    warned = false;
                }
                Err(e) if !warned => {
                    tracing::warn!(dir = %dir.display(), "cannot watch the manifest directory ({e}); retrying");
                    warned = true;
                }
                Err(_) => {}
            }
            if watcher.is_some() && !send_desired(&dir, &tx).await {
                return;
            }
        }
        let now = tokio::select! {
            k = kicks.recv() => match k {
                Some(Kick::Now) => true,
                Some(Kick::Settle) => {
                    settle.get_or_insert_with(|| tokio::time::Instant::now() + SETTLE);
                    false
                }
                None => return,
            },
            () = rescan.notified() => true,
            () = sleep_opt(settle) => true,
            _ = periodic.tick() => true,
            _ = retry_watch.tick(), if watcher.is_none() => false,
        };
        if now {
            settle = None;
            // Drain what queued up meanwhile: one re-read covers it all.
            while kicks.try_recv().is_ok() {}
            if watcher.is_some() && !send_desired(&dir, &tx).await {
                return;
            }
        }
    }
}

async fn sleep_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Re-reads the directory and sends it; false when the supervisor is gone. A directory that
/// cannot be read sends nothing: running workloads are never stopped because of it.
async fn send_desired(dir: &std::path::Path, tx: &mpsc::Sender<Msg>) -> bool {
    let d = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || manifest::load_dir(&d)).await {
        Ok(Ok(desired)) => tx.send(Msg::Desired(desired)).await.is_ok(),
        Ok(Err(e)) => {
            tracing::warn!(dir = %dir.display(), "reading the manifest directory: {e}");
            true
        }
        Err(e) => {
            tracing::error!("manifest loader task failed: {e}");
            true
        }
    }
}
