//! The single reaper: the only place in superd that calls `waitpid`.
//!
//! A dedicated thread waits for SIGCHLD and reaps every child with `waitpid(-1, WNOHANG)`.
//! Whoever starts a child does so inside [`Reaper::spawn_with`], which holds the subscriber lock
//! across the fork and the registration, so an exit that happens before the spawner returns is
//! never lost (the reaper takes the same lock after `waitpid` and before looking up the PID).
//! Exits of PIDs nobody subscribed to (orphans reparented to superd as PID 1 or subreaper) are
//! counted and dropped.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Set when the reaper thread starts (see [`Reaper::is_running`]).
static RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A raw wait status as returned by `waitpid(2)`.
pub type RawStatus = i32;

#[derive(Default)]
struct Inner {
    subs: Mutex<HashMap<i32, oneshot::Sender<RawStatus>>>,
    orphans: AtomicU64,
}

/// Handle on the reaper thread; cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

impl Reaper {
    /// Registers the SIGCHLD handler and starts the reaper thread. Call before any child exists.
    pub fn start() -> io::Result<Reaper> {
        let inner = Arc::new(Inner::default());
        let mut signals = signal_hook::iterator::Signals::new([libc::SIGCHLD])?;
        let thread_inner = inner.clone();
        std::thread::Builder::new()
            .name("superd-reaper".into())
            .spawn(move || {
                reap_all(&thread_inner);
                for _ in signals.forever() {
                    reap_all(&thread_inner);
                }
            })?;
        RUNNING.store(true, Ordering::SeqCst);
        Ok(Reaper { inner })
    }

    /// True once a reaper thread runs in this process (it runs until the process ends): then
    /// nothing else may call `waitpid`, e.g. PID 1's last steps only watch their children go.
    pub fn is_running() -> bool {
        RUNNING.load(Ordering::SeqCst)
    }

    /// Runs `fork` (which must create exactly one child and return its PID) with the subscriber
    /// lock held, and returns the PID with a receiver for its raw wait status.
    pub fn spawn_with<E>(
        &self,
        fork: impl FnOnce() -> Result<i32, E>,
    ) -> Result<(i32, oneshot::Receiver<RawStatus>), E> {
        let mut subs = self
            .inner
            .subs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let pid = fork()?;
        let (tx, rx) = oneshot::channel();
        subs.insert(pid, tx);
        Ok((pid, rx))
    }

    /// Subscribes to the exit of `pid`, a child this process did not start through
    /// [`Reaper::spawn_with`]: an instance's shim that a re-executed superd adopted. `None`
    /// when `pid` is not a child of this process (or it was reaped already).
    pub fn watch_child(&self, pid: i32) -> Option<oneshot::Receiver<RawStatus>> {
        let mut subs = self
            .inner
            .subs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Under the lock: if it is a child now, its exit is reaped after the subscription.
        if parent_of(pid)? != std::process::id() as i32 {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        subs.insert(pid, tx);
        Some(rx)
    }

    /// How many exits of unsubscribed processes (orphans) were reaped.
    pub fn orphans_reaped(&self) -> u64 {
        self.inner.orphans.load(Ordering::Relaxed)
    }
}

/// The parent PID of `pid` (`/proc/PID/stat` field 4), if it exists.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn reap_all(inner: &Inner) {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid > 0 {
            let tx = inner
                .subs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .remove(&pid);
            match tx {
                Some(tx) => {
                    let _ = tx.send(status);
                }
                None => {
                    inner.orphans.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(pid, status, "reaped an orphan");
                }
            }
            continue;
        }
        if pid == 0 {
            return;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return, // ECHILD: no children left
        }
    }
}

/// Decodes a raw wait status into (exit code, signal number).
pub fn decode(status: RawStatus) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_exit_and_signal() {
        assert_eq!(decode(3 << 8), (Some(3), None));
        assert_eq!(decode(9), (None, Some(9)));
    }
}
