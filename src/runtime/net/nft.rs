//! Runs `nft -f -` (nftables) as a helper program through superd's single reaper.
//!
//! Why the `nft` program rather than nftables netlink from Rust: the ruleset stays one
//! readable text that operators can compare with `nft list table`; each invocation is one
//! atomic transaction; and it costs ≈2–3 ms, paid only when a workload publishes ports (the
//! outbound masquerade is installed once with the bridge). The Rust nftables netlink crates
//! are young and would put a second, less reviewed netlink encoder in the daemon.

use super::NetError;
use crate::runtime::reaper::Reaper;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long one `nft` run may take before it is killed.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// The `nft` program and the reaper that waits for it.
#[derive(Debug, Clone)]
pub(crate) struct Nft {
    path: PathBuf,
    reaper: Reaper,
}

/// Finds `nft` in the usual places, then in `$PATH`.
pub(crate) fn find() -> Option<PathBuf> {
    let fixed = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"];
    let from_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nft"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(from_path)
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl Nft {
    /// Uses `path` as the nft program.
    pub(crate) fn new(path: PathBuf, reaper: Reaper) -> Nft {
        Nft { path, reaper }
    }

    /// Runs `script` as one nftables transaction.
    pub(crate) async fn apply(&self, script: &str) -> Result<(), NetError> {
        if script.is_empty() {
            return Ok(());
        }
        let mut cmd = Command::new(&self.path);
        cmd.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = None;
        let mut pidfd = None;
        // Registered with the reaper before it can exit, so nobody else waits for it.
        let (pid, exit) = self
            .reaper
            .spawn_with(|| {
                let c = cmd.spawn()?;
                let pid = c.id() as i32;
                pidfd = pidfd_open(pid);
                child = Some(c);
                Ok::<i32, std::io::Error>(pid)
            })
            .map_err(|source| NetError::Io {
                doing: format!("starting {}", self.path.display()),
                source,
            })?;
        let Some(mut child) = child else {
            return Err(NetError::Nft(format!(
                "{} did not start",
                self.path.display()
            )));
        };
        let (stdin, stderr) = (child.stdin.take(), child.stderr.take());
        // `child` is dropped without `wait`: the reaper owns its exit status.
        drop(child);
        let script = script.to_string();
        let io = tokio::task::spawn_blocking(move || {
            if let Some(mut s) = stdin {
                // A write error shows up as nft's own error message below.
                let _ = s.write_all(script.as_bytes());
            }
            let mut err = String::new();
            if let Some(mut e) = stderr {
                let _ = e.read_to_string(&mut err);
            }
            err
        });
        let status = match tokio::time::timeout(NFT_TIMEOUT, exit).await {
            Ok(Ok(status)) => status,
            Ok(Err(_)) => return Err(NetError::Nft("the reaper dropped nft's exit status".into())),
            Err(_) => {
                if let Some(fd) = &pidfd {
                    crate::runtime::pidfd_signal(fd, libc::SIGKILL);
                }
                return Err(NetError::Nft(format!(
                    "nft (pid {pid}) did not finish within {}s and was killed",
                    NFT_TIMEOUT.as_secs()
                )));
            }
        };
        let stderr = io.await.unwrap_or_default();
        match crate::runtime::reaper::decode(status) {
            (Some(0), _) => Ok(()),
            _ => Err(NetError::Nft(format!(
                "nft failed ({}): {}",
                crate::runtime::describe_status(status),
                stderr.trim()
            ))),
        }
    }
}

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
