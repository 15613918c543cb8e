//! The validated workload specification: what a manifest means once every rule has been checked.
//!
//! Nothing here parses TOML; `manifest::parse` turns a file into a [`Spec`] or a list of errors.
//! Types are chosen so that a `Spec` that exists is valid: names are RFC 1123 labels, paths are
//! absolute and normalised, a host-root rootfs cannot ask for a writable layer.

pub use super::health::{HealthCheck, StartOrder};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A workload name: a lowercase RFC 1123 label of at most 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Checks `s` against the RFC 1123 label rules and wraps it.
    pub fn new(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > 63 {
            return Err(format!("`{s}` is longer than 63 characters"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "`{s}` is not a lowercase RFC 1123 label (a-z, 0-9 and '-' only)"
            ));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(format!("`{s}` must not start or end with '-'"));
        }
        Ok(Name(s.to_string()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute, normalised path (no `.`, `..`, `//` or trailing `/` except for the root itself).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct AbsPath(String);

impl AbsPath {
    /// Checks that `s` is absolute and normalised.
    pub fn new(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("`{s}` is not an absolute path"));
        }
        if s.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        if s != "/" {
            if s.ends_with('/') {
                return Err(format!("`{s}` is not normalised (trailing '/')"));
            }
            for comp in s[1..].split('/') {
                if comp.is_empty() || comp == "." || comp == ".." {
                    return Err(format!(
                        "`{s}` is not normalised (empty, `.` or `..` component)"
                    ));
                }
            }
        }
        Ok(AbsPath(s.to_string()))
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components after the leading `/` (empty for the root).
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }
}

impl fmt::Display for AbsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user or group given by number or by name (looked up inside the rootfs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdOrName {
    /// A numeric id, range-checked as u32.
    Id(u32),
    /// A name to look up in the rootfs's `/etc/passwd` or `/etc/group`.
    Name(String),
}

/// `user = "uid:gid" | "name" | "name:group"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    /// The user part.
    pub user: IdOrName,
    /// The group part; `None` means "the user's primary group" (0 for an unknown numeric uid).
    pub group: Option<IdOrName>,
}

impl User {
    /// The default `0:0`.
    pub fn root() -> Self {
        User {
            user: IdOrName::Id(0),
            group: Some(IdOrName::Id(0)),
        }
    }
}

/// How a rootfs is made writable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Writable {
    /// Overlay with upper and work directories on a per-workload tmpfs.
    Tmpfs,
    /// Read-only bind mount.
    #[default]
    None,
}

impl Writable {
    /// Read-only.
    pub fn is_none(&self) -> bool {
        *self == Writable::None
    }
}

/// The workload's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Rootfs {
    /// `path = "/"`: the host root, bind-mounted read-only recursively, or (`writable =
    /// "tmpfs"`) its root filesystem under a tmpfs overlay with the other host mounts
    /// read-only in their places.
    Host {
        /// Read-only (the default) or a tmpfs overlay. Not serialised when read-only, so the
        /// spec hash of every earlier host-root workload stays what it was.
        #[serde(skip_serializing_if = "Writable::is_none", default)]
        writable: Writable,
    },
    /// A directory holding a root filesystem.
    Dir {
        /// The directory on the host.
        path: AbsPath,
        /// Whether and how it is made writable.
        writable: Writable,
    },
    /// An OCI image from superd's store.
    Image {
        /// The reference as written, split.
        image: ImageRef,
        /// A tmpfs upper layer (the default) or read-only.
        writable: Writable,
        /// Whether superd may fetch it.
        pull: Pull,
    },
}

/// `[rootfs] image`: `name[:tag][@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    /// As written in the manifest.
    pub written: String,
    /// Canonical `registry/repository:tag` (Docker Hub names normalised).
    pub name: String,
    /// The pinned manifest digest; `None` = a tag, resolved once and recorded.
    pub digest: Option<String>,
}

/// `[rootfs] pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pull {
    /// Fetch the image when the store lacks it.
    Missing,
    /// Only what was imported or pre-seeded.
    Never,
}

/// One `[[mounts]]` entry: a bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mount {
    /// Host path.
    pub source: AbsPath,
    /// Path inside the container, resolved inside the rootfs.
    pub target: AbsPath,
    /// Mount read-only.
    pub readonly: bool,
}

/// One `[[volumes]]` entry: a directory superd keeps under its state directory, seeded from
/// the image's content at `target` on first use.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Volume {
    /// The volume's name (a workload name's rules); workloads naming the same one share it.
    pub name: String,
    /// Where it appears in the container.
    pub target: AbsPath,
    /// Mounted read-only.
    pub readonly: bool,
}

/// One `[tmpfs] mounts` entry: an empty, sized tmpfs (its pages count as the workload's).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TmpfsMount {
    /// Where.
    pub target: AbsPath,
    /// Size in bytes.
    pub size: u64,
}

/// `[resources]`: cgroup limits. `None` means unlimited; a manifest without `pids` gets
/// [`DEFAULT_PIDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes (swap is capped to the same value).
    pub memory: Option<u64>,
    /// CPU limit in thousandths of one CPU (`cpus = 0.5` is 500).
    pub cpu_millis: Option<u32>,
    /// Maximum number of tasks.
    pub pids: Option<u64>,
}

/// The pids limit a workload gets when its manifest sets none (podman's default).
pub const DEFAULT_PIDS: u64 = 2048;
/// The smallest memory limit accepted (Docker's minimum too): below it not even the init shim
/// and a shell fit, and the workload would loop on OOM kills.
pub const MIN_MEMORY: u64 = 6 << 20;

/// A resource limit a workload starts with (`setrlimit(2)`); `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rlimit {
    /// The soft limit (what the kernel enforces).
    pub soft: Option<u64>,
    /// The hard limit (how far the workload may raise the soft one).
    pub hard: Option<u64>,
}

impl Rlimit {
    /// Soft and hard both `n`.
    pub const fn both(n: u64) -> Rlimit {
        Rlimit {
            soft: Some(n),
            hard: Some(n),
        }
    }
}

/// The rlimits Docker's `--ulimit` covers, by their manifest names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RlimitKind {
    /// RLIMIT_CORE: core dump size (bytes).
    Core,
    /// RLIMIT_CPU: CPU time (seconds).
    Cpu,
    /// RLIMIT_DATA: data segment size (bytes).
    Data,
    /// RLIMIT_FSIZE: largest file written (bytes).
    Fsize,
    /// RLIMIT_LOCKS: file locks.
    Locks,
    /// RLIMIT_MEMLOCK: locked memory (bytes).
    Memlock,
    /// RLIMIT_MSGQUEUE: POSIX message queue bytes.
    Msgqueue,
    /// RLIMIT_NICE: ceiling of the nice value (20 - n).
    Nice,
    /// RLIMIT_NOFILE: open files.
    Nofile,
    /// RLIMIT_NPROC: processes of the user.
    Nproc,
    /// RLIMIT_RSS: resident set (ignored by Linux).
    Rss,
    /// RLIMIT_RTPRIO: real-time priority ceiling.
    Rtprio,
    /// RLIMIT_RTTIME: real-time CPU time (microseconds).
    Rttime,
    /// RLIMIT_SIGPENDING: queued signals.
    Sigpending,
    /// RLIMIT_STACK: stack size (bytes).
    Stack,
}

impl RlimitKind {
    /// Every kind with its manifest name.
    pub const ALL: [(&'static str, RlimitKind); 15] = [
        ("core", RlimitKind::Core),
        ("cpu", RlimitKind::Cpu),
        ("data", RlimitKind::Data),
        ("fsize", RlimitKind::Fsize),
        ("locks", RlimitKind::Locks),
        ("memlock", RlimitKind::Memlock),
        ("msgqueue", RlimitKind::Msgqueue),
        ("nice", RlimitKind::Nice),
        ("nofile", RlimitKind::Nofile),
        ("nproc", RlimitKind::Nproc),
        ("rss", RlimitKind::Rss),
        ("rtprio", RlimitKind::Rtprio),
        ("rttime", RlimitKind::Rttime),
        ("sigpending", RlimitKind::Sigpending),
        ("stack", RlimitKind::Stack),
    ];

    /// The manifest name, e.g. `nofile`.
    pub fn name(self) -> &'static str {
        RlimitKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }
}

/// One rlimit of a spec and whether the manifest set it (a default that exceeds what superd
/// may grant is lowered to superd's own hard limit; an explicit value is an error then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RlimitSetting {
    /// The limit.
    pub limit: Rlimit,
    /// Set by the manifest (not a default).
    pub explicit: bool,
}

/// The rlimits every workload starts with unless its manifest says otherwise; nothing is
/// inherited from superd (whose own limits depend on how it was started). `sigpending` is
/// left as the kernel sized it for the machine.
pub const DEFAULT_RLIMITS: &[(RlimitKind, Rlimit)] = &[
    (
        RlimitKind::Core,
        Rlimit {
            soft: Some(0),
            hard: None,
        },
    ),
    (
        RlimitKind::Cpu,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (
        RlimitKind::Data,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (
        RlimitKind::Fsize,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (
        RlimitKind::Locks,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (RlimitKind::Memlock, Rlimit::both(8 << 20)),
    (RlimitKind::Msgqueue, Rlimit::both(819_200)),
    (RlimitKind::Nice, Rlimit::both(0)),
    (
        RlimitKind::Nofile,
        Rlimit {
            soft: Some(1024),
            hard: Some(524_288),
        },
    ),
    (
        RlimitKind::Nproc,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (
        RlimitKind::Rss,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (RlimitKind::Rtprio, Rlimit::both(0)),
    (
        RlimitKind::Rttime,
        Rlimit {
            soft: None,
            hard: None,
        },
    ),
    (
        RlimitKind::Stack,
        Rlimit {
            soft: Some(8 << 20),
            hard: None,
        },
    ),
];

/// The default rlimits as a spec holds them.
pub fn default_rlimits() -> BTreeMap<RlimitKind, RlimitSetting> {
    DEFAULT_RLIMITS
        .iter()
        .map(|&(k, limit)| {
            (
                k,
                RlimitSetting {
                    limit,
                    explicit: false,
                },
            )
        })
        .collect()
}

/// `[tmpfs]`: sizes of the container's tmpfs mounts, in bytes. Their pages are charged to the
/// workload's memory cgroup, so these also bound what a workload can pin in RAM through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TmpfsSizes {
    /// `/tmp`.
    pub tmp: u64,
    /// `/run`.
    pub run: u64,
    /// `/dev/shm` (Docker's default is 64 MiB too).
    pub shm: u64,
    /// The tmpfs holding a writable root's overlay upper layer (`writable = "tmpfs"`): what
    /// the workload may write into its root. Left out of the serialised spec at its default,
    /// so the spec hash of a workload that does not set it stays what it was.
    #[serde(
        skip_serializing_if = "TmpfsSizes::root_is_default",
        default = "TmpfsSizes::default_root"
    )]
    pub root: u64,
}

impl TmpfsSizes {
    /// The default size of the root's tmpfs.
    pub const DEFAULT_ROOT: u64 = 64 << 20;

    fn default_root() -> u64 {
        Self::DEFAULT_ROOT
    }

    fn root_is_default(root: &u64) -> bool {
        *root == Self::DEFAULT_ROOT
    }
}

impl Default for TmpfsSizes {
    fn default() -> Self {
        TmpfsSizes {
            tmp: 64 << 20,
            run: 16 << 20,
            shm: 64 << 20,
            root: Self::DEFAULT_ROOT,
        }
    }
}

/// `[logs]`: how large the workload's log may grow; `None` takes superd's `--log-max-size`
/// and `--log-max-files`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LogLimits {
    /// Bytes per file.
    pub max_size: Option<u64>,
    /// Files kept, the current one included.
    pub max_files: Option<u32>,
}

/// `[security] seccomp`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seccomp {
    /// superd's default allowlist (Docker's and podman's default as the reference).
    #[default]
    Default,
    /// No filter.
    Unconfined,
    /// An OCI/Docker seccomp JSON profile, read when the workload starts.
    Profile(AbsPath),
}

/// Access to a device node, as the devices cgroup spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct DeviceAccess {
    /// `r`.
    pub read: bool,
    /// `w`.
    pub write: bool,
    /// `m`: create the node with mknod.
    pub mknod: bool,
}

impl fmt::Display for DeviceAccess {
    /// `rwm`, `rw`, `r`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [(self.read, "r"), (self.write, "w"), (self.mknod, "m")] {
            if on {
                f.write_str(c)?;
            }
        }
        Ok(())
    }
}

/// One `[security] devices` entry: a host device node the workload may use (it also appears
/// at the same path in the container's /dev).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceRule {
    /// The node, below /dev.
    pub path: AbsPath,
    /// What the workload may do with it.
    pub access: DeviceAccess,
}

/// `[security]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Security {
    /// The seccomp filter.
    pub seccomp: Seccomp,
    /// Devices beyond the default set (null, zero, full, random, urandom, tty, console, ptmx,
    /// pts).
    pub devices: Vec<DeviceRule>,
}

/// When a workload that exited is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit status.
    Always,
    /// Restart only after a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// `[restart]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Restart {
    /// The policy.
    pub policy: RestartPolicy,
    /// Delay before the first restart; doubles per consecutive failure.
    #[serde(with = "duration_ms")]
    pub initial_delay: Duration,
    /// Upper bound of the delay.
    #[serde(with = "duration_ms")]
    pub max_delay: Duration,
    /// A run at least this long resets the backoff.
    #[serde(with = "duration_ms")]
    pub reset_after: Duration,
    /// 0 = never give up; N = `failed` after N failed restarts.
    pub max_retries: u32,
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::Always,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
            max_retries: 0,
        }
    }
}

/// A signal, by Linux number, with its canonical `SIGxxx` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Signal {
    /// The canonical name, e.g. `SIGTERM`.
    pub name: &'static str,
    /// The Linux signal number.
    pub number: i32,
}

/// Linux signal names and numbers (x86-64, arm64 and most architectures agree on these).
pub const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

impl Signal {
    /// Parses `SIGTERM` or `TERM` (case-insensitive).
    pub fn parse(s: &str) -> Option<Signal> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        SIGNALS
            .iter()
            .find(|(n, _)| *n == full)
            .map(|&(name, number)| Signal { name, number })
    }

    /// Looks a signal up by number.
    pub fn from_number(number: i32) -> Option<Signal> {
        SIGNALS
            .iter()
            .find(|(_, n)| *n == number)
            .map(|&(name, number)| Signal { name, number })
    }

    /// SIGTERM.
    pub fn term() -> Signal {
        Signal {
            name: "SIGTERM",
            number: 15,
        }
    }
}

/// `[stop]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stop {
    /// Signal sent first (`None`: the image's StopSignal, else SIGTERM).
    pub signal: Option<Signal>,
    /// Then SIGKILL to everything in the cgroup.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
}

impl Stop {
    /// The longest `stop.timeout`: packaging/systemd/superd.service's `TimeoutStopSec` (6 min)
    /// leaves superd a minute beyond it to kill, clean up and exit.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// `[network] mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Own network namespace with a veth on superd's bridge (the default).
    Bridge,
    /// Own network namespace with only `lo` up.
    None,
    /// Share the host's network namespace.
    Host,
}

/// Transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One `[network] ports` entry: `[host_ip:]host_port:container_port[/tcp|udp]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortMapping {
    /// The host address to publish on; `None` means every host address (and 127.0.0.1).
    pub host_ip: Option<std::net::Ipv4Addr>,
    /// Host port (1-65535).
    pub host_port: u16,
    /// Port inside the container (1-65535).
    pub container_port: u16,
    /// Protocol (default TCP).
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// The canonical manifest form, e.g. `127.0.0.1:5353:53/udp` or `8080:80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port,
            self.container_port,
            self.protocol.as_str()
        )
    }
}

/// `[network]`: how the workload is connected.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Network {
    /// Namespace mode.
    pub mode: NetworkMode,
    /// Static address inside the bridge subnet (bridge mode only; checked against the subnet
    /// and the other workloads by `network::admit`, which knows the daemon's `--subnet`).
    pub address: Option<std::net::Ipv4Addr>,
    /// Published ports (bridge mode only), without duplicates.
    pub ports: Vec<PortMapping>,
    /// Extra names other workloads resolve to this one (bridge mode only), without duplicates
    /// and never equal to the workload's own name.
    pub aliases: Vec<Name>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            mode: NetworkMode::Bridge,
            address: None,
            ports: Vec::new(),
            aliases: Vec::new(),
        }
    }
}

/// A fully validated workload specification.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Spec {
    /// The workload name (the file stem).
    pub name: Name,
    /// argv; empty only with an image (whose Entrypoint and Cmd then apply).
    /// `command[0]` is resolved through the container's PATH.
    pub command: Vec<String>,
    /// `args`: replaces the image's Cmd, keeping its Entrypoint (images only).
    pub args: Option<Vec<String>>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Working directory inside the container (`None`: the image's, else `/`).
    pub workdir: Option<AbsPath>,
    /// The user the workload runs as (`None`: the image's, else root).
    pub user: Option<User>,
    /// UTS hostname.
    pub hostname: String,
    /// Whether superd's init shim is PID 1 (true) or the workload is (false).
    pub init: bool,
    /// Root filesystem.
    pub rootfs: Rootfs,
    /// Bind mounts.
    pub mounts: Vec<Mount>,
    /// Named volumes.
    pub volumes: Vec<Volume>,
    /// Extra tmpfs directories.
    pub tmpfs_mounts: Vec<TmpfsMount>,
    /// cgroup limits (applied live).
    pub resources: Resources,
    /// Restart policy (applied live).
    pub restart: Restart,
    /// Stop behaviour (applied live).
    pub stop: Stop,
    /// Networking.
    pub network: Network,
    /// rlimits the workload starts with (every kind in [`DEFAULT_RLIMITS`], maybe overridden).
    pub rlimits: BTreeMap<RlimitKind, RlimitSetting>,
    /// Sizes of /tmp, /run and /dev/shm.
    pub tmpfs: TmpfsSizes,
    /// Seccomp and devices.
    pub security: Security,
    /// Log bounds.
    pub logs: LogLimits,
    /// `[health]` (applied live).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub health: Option<HealthCheck>,
    /// `after` and `[start_order]` (applied live).
    #[serde(skip_serializing_if = "StartOrder::is_empty", default)]
    pub start_order: StartOrder,
    /// `[rollout]` (applied live).
    #[serde(skip_serializing_if = "Rollout::is_default", default)]
    pub rollout: Rollout,
    /// `[watchdog]` (applied live).
    #[serde(skip_serializing_if = "WatchdogSpec::is_default", default)]
    pub watchdog: WatchdogSpec,
}

/// `[watchdog]`: whether the machine's hardware watchdog depends on this workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchdogSpec {
    /// superd (as PID 1 with `--watchdog`) pets the watchdog only while this workload runs
    /// and is healthy: one down or unhealthy for longer than `grace` resets the machine.
    pub critical: bool,
    /// How long it may be down or unhealthy (a restart, a slow start) before the petting
    /// stops.
    #[serde(with = "duration_ms")]
    pub grace: Duration,
}

impl Default for WatchdogSpec {
    fn default() -> Self {
        WatchdogSpec {
            critical: false,
            grace: Duration::from_secs(60),
        }
    }
}

impl WatchdogSpec {
    fn is_default(&self) -> bool {
        *self == WatchdogSpec::default()
    }
}

/// `[rollout]`: how a changed manifest is tried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rollout {
    /// How long a new generation must run (and stay healthy) before its spec counts as good;
    /// one that crashes or turns unhealthy sooner is replaced by the last good spec. `None`:
    /// superd's `--rollout-bake` (off unless set).
    #[serde(with = "opt_duration_ms", default)]
    pub bake: Option<Duration>,
}

impl Rollout {
    fn is_default(&self) -> bool {
        *self == Rollout::default()
    }
}

/// The default PATH inside a container.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Spec {
    /// A spec with every default and the given name and command (handy for tests and examples).
    pub fn with_defaults(name: Name, command: Vec<String>) -> Spec {
        Spec {
            hostname: name.as_str().to_string(),
            name,
            command,
            args: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            init: true,
            rootfs: Rootfs::Host {
                writable: Writable::None,
            },
            mounts: Vec::new(),
            volumes: Vec::new(),
            tmpfs_mounts: Vec::new(),
            resources: Resources {
                pids: Some(DEFAULT_PIDS),
                ..Resources::default()
            },
            restart: Restart::default(),
            stop: Stop::default(),
            network: Network::default(),
            rlimits: default_rlimits(),
            tmpfs: TmpfsSizes::default(),
            security: Security::default(),
            logs: LogLimits::default(),
            health: None,
            start_order: StartOrder::default(),
            rollout: Rollout::default(),
            watchdog: WatchdogSpec::default(),
        }
    }

    /// Hex SHA-256 of the canonical JSON form of the whole spec.
    pub fn hash(&self) -> String {
        hash_json(self)
    }

    /// Hash of everything that cannot be changed on a running workload (all but
    /// `[resources]`, `[restart]`, `[stop]`, `[health]` and the start order). Equal core hashes mean a live update suffices.
    pub fn core_hash(&self) -> String {
        let mut core = self.clone();
        core.resources = Resources::default();
        core.restart = Restart::default();
        core.stop = Stop::default();
        core.health = None;
        core.start_order = StartOrder::default();
        core.rollout = Rollout::default();
        core.watchdog = WatchdogSpec::default();
        hash_json(&core)
    }
}

fn hash_json<T: Serialize>(v: &T) -> String {
    use sha2::{Digest, Sha256};
    // Serialising plain data with BTreeMaps cannot fail; fall back to Debug rather than panic.
    let bytes =
        serde_json::to_vec(v).unwrap_or_else(|e| format!("unserialisable: {e}").into_bytes());
    let digest = Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

pub(crate) mod opt_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

// A spec read back (from an instance record or the last good specs) is checked as the
// manifest was: names, paths and signals only as their constructors make them.
impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Name::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        AbsPath::new(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            number: i32,
        }
        let w = Wire::deserialize(d)?;
        Signal::from_number(w.number)
            .ok_or_else(|| serde::de::Error::custom(format!("no signal numbered {}", w.number)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(Name::new("web-1").is_ok());
        assert!(Name::new("Web").is_err());
        assert!(Name::new("-a").is_err());
        assert!(Name::new("a_b").is_err());
        assert!(Name::new(&"a".repeat(64)).is_err());
        assert!(Name::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn paths() {
        assert!(AbsPath::new("/").is_ok());
        assert!(AbsPath::new("/srv/data").is_ok());
        for bad in ["srv", "/srv/", "/a//b", "/a/./b", "/a/../b", ""] {
            assert!(AbsPath::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(Signal::parse("term").map(|s| s.number), Some(15));
        assert_eq!(Signal::parse("SIGKILL").map(|s| s.name), Some("SIGKILL"));
        assert!(Signal::parse("SIGFOO").is_none());
    }

    #[test]
    fn live_sections_do_not_change_core_hash() {
        let name = Name::new("web").unwrap();
        let a = Spec::with_defaults(name, vec!["true".into()]);
        let mut b = a.clone();
        b.resources.memory = Some(1 << 20);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.core_hash(), b.core_hash());
        b.command.push("x".into());
        assert_ne!(a.core_hash(), b.core_hash());
    }
}
