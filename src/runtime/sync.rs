//! The parent ↔ shim protocol over a `SOCK_SEQPACKET` socketpair: one JSON message per packet.
//!
//! ```text
//! parent                         shim (PID 1 of the container)
//!   ── ToShim::Config ──────────►  unshare cgroupns, build rootfs, pivot_root, hostname, lo
//!   ◄───────── FromShim::SetupDone
//!   (network setup in the netns)
//!   ── ToShim::Go ──────────────►  fork + exec the workload (or exec itself with init = false)
//!   ◄───────── FromShim::Started   (+ SCM_CREDENTIALS: the workload's PID, translated by the kernel)
//!   ◄───────── FromShim::Exited    (raw wait status of the workload, init = true only)
//!   ◄───────── FromShim::Failed    (any step; the shim exits afterwards)
//! ```
//! The child created by `clone` can fail before the shim runs; it then writes a raw
//! [`EARLY_FAILURE`] packet (`b'E'`, step, errno) because it may not allocate.

use serde::{Deserialize, Serialize};

/// First byte of a packet written by the pre-exec child on failure.
pub const EARLY_FAILURE: u8 = b'E';
/// Pre-exec step: joining the cgroup.
pub const STEP_CGROUP: u8 = 1;
/// Pre-exec step: arranging file descriptors.
pub const STEP_FDS: u8 = 2;
/// Pre-exec step: executing the shim.
pub const STEP_EXEC: u8 = 3;
/// The fd number the shim finds its sync socket on.
pub const SHIM_SYNC_FD: i32 = 3;
/// The fd number the shim finds the log directory on (for rotating the workload's log).
pub const LOG_DIR_FD: i32 = 5;
/// The fd number the shim finds the instance's exit file on: it writes the workload's wait
/// status there before it reports it, so a superd that starts after its predecessor died
/// still learns how the workload ended.
pub const EXIT_FD: i32 = 6;
/// The argv[0] prefix that selects the shim role of the superd binary.
pub const SHIM_ARGV0_PREFIX: &str = "superd-init:";
/// Largest message the shim accepts (the config: argv and environment of a manifest of up
/// to 1 MiB, JSON-escaped, plus the seccomp filters).
pub const MAX_MESSAGE: usize = 8 << 20;
/// Payload bytes per packet of a parent → shim message. A message is split into packets of
/// `[MORE or LAST] + payload`: a whole config in one packet could exceed the socket's send
/// buffer (`EMSGSIZE` for a large environment).
pub const CHUNK: usize = 32 << 10;
/// First byte of a packet that a later one continues.
pub const MORE: u8 = 0;
/// First byte of the last packet of a message.
pub const LAST: u8 = 1;

/// The packets of a parent → shim message.
pub fn frame(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut chunks: Vec<&[u8]> = msg.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = Vec::with_capacity(c.len() + 1);
            p.push(if i == last { LAST } else { MORE });
            p.extend_from_slice(c);
            p
        })
        .collect()
}

/// Reassembles a message from packets handed in one at a time; `Some` when it is complete.
#[derive(Debug, Default)]
pub struct Reassembly {
    buf: Vec<u8>,
}

impl Reassembly {
    /// Adds one packet.
    pub fn push(&mut self, packet: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some((&flag, payload)) = packet.split_first() else {
            return Err("an empty packet".into());
        };
        if self.buf.len() + payload.len() > MAX_MESSAGE {
            return Err(format!("a message larger than {MAX_MESSAGE} bytes"));
        }
        self.buf.extend_from_slice(payload);
        match flag {
            LAST => Ok(Some(std::mem::take(&mut self.buf))),
            MORE => Ok(None),
            other => Err(format!("a packet with the unknown flag {other}")),
        }
    }
}
/// Largest packet superd accepts from a shim (reports are small; error texts are truncated to
/// fit). Kept small because every running instance holds one receive buffer.
pub const MAX_REPORT: usize = 8 << 10;

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// A bind mount as the shim receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountCfg {
    /// Host path.
    pub source: String,
    /// Path in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// Skip (with a note in the workload log) when the target is missing and cannot be
    /// created because that part of the rootfs is read-only: superd's own `/etc/hosts` and
    /// `/etc/resolv.conf`, which an image may lack.
    #[serde(default)]
    pub optional: bool,
}

/// A named volume as the shim receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeCfg {
    /// The volume's data directory on the host.
    pub source: String,
    /// Where it appears in the container.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// First use: copy the rootfs's content at `target` in, then create this marker file.
    pub seed_marker: Option<String>,
}

/// An extra tmpfs directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsMountCfg {
    /// Where.
    pub target: String,
    /// Size in bytes.
    pub size: u64,
}

/// Everything the shim needs to build the container and run the workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// Workload name (for messages and the process title).
    pub name: String,
    /// argv of the workload; argv[0] is resolved through PATH inside the container.
    pub argv: Vec<String>,
    /// Environment from the manifest (PATH, HOME and HOSTNAME are added by the shim).
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: String,
    /// User part of `user` (`None` = 0).
    pub user: UserCfg,
    /// UTS hostname.
    pub hostname: String,
    /// Run a PID-1 init (true) or exec the workload as PID 1 (false).
    pub init: bool,
    /// `None` = host root read-only; `Some(dir)` = a rootfs directory.
    pub rootfs: Option<String>,
    /// Overlay with a tmpfs upper layer (any rootfs kind).
    pub writable: bool,
    /// An image's layer directories, top first (empty: not an image).
    #[serde(default)]
    pub layers: Vec<String>,
    /// Bind mounts.
    pub mounts: Vec<MountCfg>,
    /// Named volumes.
    #[serde(default)]
    pub volumes: Vec<VolumeCfg>,
    /// Extra tmpfs directories.
    #[serde(default)]
    pub tmpfs_mounts: Vec<TmpfsMountCfg>,
    /// Bring `lo` up in the new network namespace.
    pub own_netns: bool,
    /// An empty host directory the shim mounts its scratch tmpfs on (in its own mount namespace).
    pub scratch_dir: String,
    /// rlimits to set before the workload runs.
    pub rlimits: Vec<RlimitCfg>,
    /// Sizes in bytes of /tmp, /run and /dev/shm.
    pub tmpfs: TmpfsCfg,
    /// Seccomp filters to install, in order, right before `execve` (none: unconfined).
    /// Shared between instances of the same profile (the default one, mostly).
    pub seccomp: std::sync::Arc<Vec<crate::runtime::seccomp::WireProgram>>,
    /// Bounds of the workload's log.
    pub logs: LogCfg,
    /// Device nodes the manifest opts into, created in the container's /dev.
    pub devices: Vec<DeviceNodeCfg>,
    /// What to mount at /sys/fs/cgroup (read-only): the workload's own cgroup.
    pub cgroupfs: Vec<CgroupFsCfg>,
    /// Host paths hidden from a host-root workload (absolute; masked before the bind mounts,
    /// so an explicit mount brings one back).
    pub hide: Vec<String>,
}

/// How large the workload's log may grow: `max_files` files of `max_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCfg {
    /// Bytes per file.
    pub max_size: u64,
    /// Files kept (the current one included).
    pub max_files: u32,
}

/// A device node to create in /dev.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceNodeCfg {
    /// Path below /dev (`fuse`, `net/tun`).
    pub rel: String,
    /// Block (else character) device.
    pub block: bool,
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
    /// Permission bits.
    pub mode: u32,
}

/// One cgroup filesystem mount below /sys/fs/cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupFsCfg {
    /// Directory below /sys/fs/cgroup (`""` for /sys/fs/cgroup itself, v2).
    pub dir: String,
    /// `cgroup2` or `cgroup`.
    pub fstype: String,
    /// Mount data: the v1 hierarchy's controllers (`cpu,cpuacct`, `name=systemd`).
    pub options: String,
}

/// One rlimit as the shim sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RlimitCfg {
    /// The manifest name (`nofile`), for messages.
    pub name: String,
    /// The `RLIMIT_*` resource number.
    pub resource: u32,
    /// Soft limit (`RLIM_INFINITY` for unlimited).
    pub soft: u64,
    /// Hard limit (`RLIM_INFINITY` for unlimited).
    pub hard: u64,
    /// Set by the manifest: refuse to start when it cannot be granted, instead of lowering a
    /// default to superd's own hard limit.
    pub explicit: bool,
}

/// Sizes of the container's tmpfs mounts, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TmpfsCfg {
    /// /tmp.
    pub tmp: u64,
    /// /run.
    pub run: u64,
    /// /dev/shm.
    pub shm: u64,
    /// The scratch tmpfs (a writable root's upper layer).
    #[serde(default = "default_root_tmpfs")]
    pub root: u64,
}

fn default_root_tmpfs() -> u64 {
    crate::manifest::TmpfsSizes::DEFAULT_ROOT
}

/// `user = ...` as the shim resolves it against the container's /etc/passwd and /etc/group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCfg {
    /// Numeric uid or a user name.
    pub user: IdOrNameCfg,
    /// Numeric gid or a group name; `None` = the user's primary group.
    pub group: Option<IdOrNameCfg>,
}

/// A numeric id or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IdOrNameCfg {
    /// Numeric.
    Id(u32),
    /// By name.
    Name(String),
}

/// Parent → shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToShim {
    /// The container to build.
    Config(Box<ShimConfig>),
    /// Network and everything else is ready: run the workload.
    Go,
}

/// Shim → parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromShim {
    /// The container is built; waiting for `Go`.
    SetupDone,
    /// The workload is running (with init) or about to be exec'd (init = false).
    /// With init, SCM_CREDENTIALS carry the workload's PID.
    Started,
    /// A setup step failed.
    Failed {
        /// The step, e.g. `mounting /proc`.
        step: String,
        /// The error.
        message: String,
    },
    /// The workload's log cannot be written (a full disk): output is being dropped.
    LogFailing {
        /// Why.
        message: String,
    },
    /// The workload exited with this raw wait status (init = true).
    Exited {
        /// Raw `waitpid` status.
        status: i32,
    },
}

/// Describes a pre-exec failure packet.
pub fn describe_early_failure(packet: &[u8]) -> String {
    let step = match packet.get(1) {
        Some(&STEP_CGROUP) => "joining the workload cgroup",
        Some(&STEP_FDS) => "arranging file descriptors",
        Some(&STEP_EXEC) => "executing the init shim",
        _ => "preparing the container process",
    };
    let errno = packet
        .get(2..6)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(i32::from_ne_bytes)
        .unwrap_or(0);
    format!("{step}: {}", std::io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips_any_size() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK + 7] {
            let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let packets = frame(&msg);
            assert!(packets.iter().all(|p| p.len() <= CHUNK + 1));
            let mut r = Reassembly::default();
            let mut out = None;
            for (i, p) in packets.iter().enumerate() {
                let got = r.push(p).unwrap();
                assert_eq!(got.is_some(), i == packets.len() - 1);
                out = got.or(out);
            }
            assert_eq!(out.unwrap(), msg);
        }
        let mut r = Reassembly::default();
        assert!(r.push(&[]).is_err());
        assert!(r.push(&[7, 1]).is_err());
        let big = vec![0u8; CHUNK + 1];
        let mut r = Reassembly::default();
        let mut last = Ok(None);
        for _ in 0..=(MAX_MESSAGE / CHUNK) {
            last = r.push(&big);
            if last.is_err() {
                break;
            }
        }
        assert!(last.unwrap_err().contains("larger than"));
    }
}
