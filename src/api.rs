//! Request and response types shared by `superd` (the control socket server) and `superctl`.
//!
//! The wire format is HTTP/1.1 with JSON bodies over a Unix socket, so
//! `curl --unix-socket /run/superd/superd.sock http://x/v1/status` works too.
//!
//! | method | path                         | body out                 |
//! |--------|------------------------------|--------------------------|
//! | GET    | `/v1/status`                 | [`StatusResponse`]       |
//! | GET    | `/v1/status/{name}`          | [`StatusResponse`] (one) or 404 |
//! | POST   | `/v1/workloads/{name}/restart` | [`Ack`] or 404         |
//! | POST   | `/v1/poweroff`, `/v1/reboot`, `/v1/halt` | [`Ack`] (PID-1 mode), else 500 |
//!
//! Errors carry an [`ErrorBody`].

use serde::{Deserialize, Serialize};

/// Where `superd` listens and `superctl` connects unless told otherwise
/// (`superctl --socket` / `SUPERD_SOCKET`).
pub const DEFAULT_SOCKET: &str = "/run/superd/superd.sock";

/// Longest error text one workload's status carries, in characters: a manifest's errors are
/// bounded already (see `manifest::error`), and this keeps the status of a directory full of
/// broken files well within what superctl reads.
pub const MAX_ERROR_CHARS: usize = 16 << 10;

/// A workload's lifecycle state as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Spawned; container setup is in progress.
    Starting,
    /// The workload's main process is running.
    Running,
    /// A stop signal was sent; waiting for the exit.
    Stopping,
    /// Exited; a restart is scheduled at `next_restart_at`.
    Backoff,
    /// Finished under its restart policy.
    Exited,
    /// Gave up, cannot start, or never had a valid manifest.
    Failed,
    /// Not started yet: waiting for the dependencies in `waiting_for`.
    Waiting,
    /// Stopped by `superctl stop` until `superctl start`.
    Stopped,
}

impl State {
    /// The lowercase name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Backoff => "backoff",
            State::Exited => "exited",
            State::Failed => "failed",
            State::Waiting => "waiting",
            State::Stopped => "stopped",
        }
    }
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    /// The main process exited with a code.
    Exited,
    /// The main process was killed by a signal.
    Signaled,
    /// The kernel's OOM killer killed a process of the workload.
    OomKilled,
    /// It did not stop within its stop timeout and was killed.
    StopTimeout,
    /// Container setup or exec failed.
    StartFailed,
    /// superd stopped it because its health check failed.
    Unhealthy,
    /// superd stopped it because a dependency went down (`restart_with`).
    DependencyDown,
    /// It ended while no superd watched it, and its status is unknown.
    Unknown,
}

impl ExitReason {
    /// The kebab-case name used in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Exited => "exited",
            ExitReason::Signaled => "signaled",
            ExitReason::OomKilled => "oom-killed",
            ExitReason::StopTimeout => "stop-timeout",
            ExitReason::StartFailed => "start-failed",
            ExitReason::Unhealthy => "unhealthy",
            ExitReason::DependencyDown => "dependency-down",
            ExitReason::Unknown => "unknown",
        }
    }
}

/// How the last run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExit {
    /// Exit code, or null when killed by a signal.
    pub code: Option<i32>,
    /// Signal name like `SIGKILL`, or null.
    pub signal: Option<String>,
    /// Why it ended.
    pub reason: ExitReason,
}

/// One workload in `superctl status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    /// Workload name (the manifest's file stem).
    pub name: String,
    /// Lifecycle state.
    pub state: State,
    /// Host PID of the workload's main process.
    pub pid: Option<u32>,
    /// Host PID of the init shim (null with `init = false`).
    pub init_pid: Option<u32>,
    /// Restarts since the workload was first started.
    pub restarts: u32,
    /// How the last run ended.
    pub last_exit: Option<LastExit>,
    /// The manifest error or the start error.
    pub error: Option<String>,
    /// The manifest is invalid (`error` says why): the workload keeps its last good spec.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid_manifest: bool,
    /// Something superd did to the workload that the operator did not ask for in so many
    /// words, e.g. a live update the kernel refused, turned into a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Current memory usage of the workload's cgroup.
    pub memory_bytes: Option<u64>,
    /// Hex SHA-256 of the canonical spec being run (or last good spec).
    pub spec_hash: Option<String>,
    /// RFC 3339 UTC time of the next restart attempt.
    pub next_restart_at: Option<String>,
    /// RFC 3339 UTC time the current run started.
    pub started_at: Option<String>,
    /// Seconds the current run has been up.
    pub uptime_seconds: Option<u64>,
    /// The manifest file this workload comes from.
    pub manifest: Option<String>,
    /// IPv4 address on superd's bridge (bridge mode).
    #[serde(default)]
    pub address: Option<String>,
    /// Published ports, canonical form `[host_ip:]host_port:container_port/proto`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// `[rootfs] image` as written (an image workload), of the spec being run or last good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The manifest digest the running instance's image resolved to (a tag is resolved at
    /// start from the store's names, which only a pull or an import moves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Named volumes it mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Its health check's view, when it has `[health]` and runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
    /// The dependencies it waits for before it starts: `db (healthy)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

/// The health of a running workload, in `superctl status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Consecutive failed probes.
    pub failures: u32,
    /// The probe, as written (`http://localhost:8080/healthz`).
    pub probe: String,
    /// What the last probe said (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_output: Option<String>,
    /// RFC 3339 UTC time the last probe answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_at: Option<String>,
    /// RFC 3339 UTC time the next probe runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_probe_at: Option<String>,
}

/// `GET /v1/specs` body: what each workload runs (or last ran), for `superctl plan`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpecsResponse {
    /// By workload name.
    pub workloads: std::collections::BTreeMap<String, RunningSpec>,
}

/// One workload in [`SpecsResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningSpec {
    /// Its state.
    pub state: State,
    /// Its spec as superd serialises it (the fields `spec_hash` covers).
    pub spec: serde_json::Value,
}

/// What an [`Event`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A workload changed state (`state`).
    State,
    /// A run ended (`exit`).
    Exit,
    /// A health verdict changed (`health`, `message` = the probe's answer).
    Health,
    /// A manifest became invalid (`message` = the errors) or valid again.
    Manifest,
    /// An image is being fetched for a workload, or the fetch failed (`message`).
    Image,
    /// The stream lost events: the client read too slowly (`message` says how many).
    Lost,
    /// A changed manifest failed within its bake time and was rolled back, or lasted and is
    /// the last good spec now (`message`).
    Rollout,
}

impl EventKind {
    /// The word used in filters and text output.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::State => "state",
            EventKind::Exit => "exit",
            EventKind::Health => "health",
            EventKind::Manifest => "manifest",
            EventKind::Image => "image",
            EventKind::Lost => "lost",
            EventKind::Rollout => "rollout",
        }
    }
}

/// One line of `superctl events` (`GET /v1/events`, newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases by one per event superd kept (a gap means events were lost).
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// What it is about.
    pub kind: EventKind,
    /// The workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The new state (`state` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<State>,
    /// How the run ended (`exit` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<LastExit>,
    /// The new health verdict (`health` events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Details (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Pressure stall information of one resource (cgroup v2): the share of the last 10 s in
/// which some (or all) of the workload's tasks waited for it, and the total wait.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// `some avg10`, in percent.
    pub some_avg10: f64,
    /// `some total`, in microseconds.
    pub some_total_us: u64,
    /// `full avg10`, in percent (not for CPU before Linux 5.13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_avg10: Option<f64>,
    /// `full total`, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_total_us: Option<u64>,
}

/// What a workload's cgroup reports (cumulative counters: a rate needs two samples).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// CPU time used, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Its memory limit (none: unlimited).
    pub memory_limit: Option<u64>,
    /// Processes the OOM killer killed.
    pub oom_kills: Option<u64>,
    /// Tasks.
    pub pids: Option<u64>,
    /// Its task limit.
    pub pids_limit: Option<u64>,
    /// Bytes read from block devices.
    pub io_read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub io_write_bytes: Option<u64>,
    /// CPU pressure (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pressure: Option<Pressure>,
    /// Memory pressure (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_pressure: Option<Pressure>,
    /// IO pressure (v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_pressure: Option<Pressure>,
}

/// One workload in [`StatsResponse`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadStats {
    /// The workload.
    pub name: String,
    /// Its state.
    pub state: State,
    /// Restarts since it was first started.
    pub restarts: u32,
    /// Its health verdict, when it is checked and runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// What its cgroup says (none when nothing runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupStats>,
}

/// `GET /v1/stats` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Nanoseconds on superd's monotonic clock when the sample was taken (for rates).
    pub monotonic_ns: u64,
    /// Every workload.
    pub workloads: Vec<WorkloadStats>,
}

/// One line of the answer to `POST /v1/workloads/{name}/exec` (newline-delimited JSON):
/// first the PID, then how the command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecEvent {
    /// The exec helper's host PID (its child is the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The command's exit code (126: it could not be run, 127: not found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, e.g. `SIGKILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

/// The longest probe output kept for status.
pub const MAX_PROBE_OUTPUT: usize = 512;

/// `GET /v1/volumes` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumesResponse {
    /// Every volume.
    pub volumes: Vec<crate::runtime::volumes::VolumeInfo>,
}

/// `GET /v1/images` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImagesResponse {
    /// Every named image in the store.
    pub images: Vec<ImageRow>,
}

/// One image of `superctl image ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRow {
    /// What the store knows.
    #[serde(flatten)]
    pub info: crate::images::store::ImageInfo,
    /// Workloads whose manifest names it.
    pub used_by: Vec<String>,
}

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerState {
    /// Queued for download.
    #[default]
    Waiting,
    /// Already in the store.
    Present,
    /// Being fetched.
    Downloading,
    /// Fetched and checked, waiting for the layers below to be unpacked.
    Downloaded,
    /// Being unpacked.
    Unpacking,
    /// Committed to the store.
    Done,
}

/// One layer of a pull.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerProgress {
    /// The compressed blob's digest.
    pub blob: String,
    /// Its size.
    pub size: u64,
    /// Bytes of it fetched so far (or present).
    pub fetched: u64,
    /// Where it is.
    pub state: LayerState,
}

/// How far a pull got (shown in status while a workload waits for its image, and layer by
/// layer by `superctl image pull`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Layers committed (present before or unpacked now).
    pub layers_done: usize,
    /// Layers of the image.
    pub layers: usize,
    /// Compressed bytes fetched or already present.
    pub bytes_done: u64,
    /// Compressed bytes of all layers.
    pub bytes: u64,
    /// The last error, when the pull failed.
    pub error: Option<String>,
    /// The pull ended (successfully or not).
    pub finished: bool,
    /// When it ended.
    #[serde(skip)]
    pub ended_at: Option<std::time::Instant>,
    /// Each layer, bottom first.
    pub layer_list: Vec<LayerProgress>,
}

impl std::fmt::Display for PullProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        if let Some(e) = &self.error {
            return write!(f, "the last pull failed: {e}");
        }
        if self.layers == 0 {
            return f.write_str("pulling: resolving the manifest");
        }
        write!(
            f,
            "pulling {}/{} layers, {:.1} MiB of {:.1} MiB",
            self.layers_done,
            self.layers,
            mib(self.bytes_done),
            mib(self.bytes)
        )
    }
}

/// `POST /v1/images/import` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportResponse {
    /// What was imported.
    pub images: Vec<crate::images::import::Imported>,
    /// Workloads restarted because a pull moved the tag they name.
    #[serde(default)]
    pub restarted: Vec<String>,
}

/// `GET /v1/status` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Workloads, sorted by name.
    pub workloads: Vec<WorkloadStatus>,
}

/// A plain success reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// What was done.
    pub message: String,
}

/// The body of every non-2xx reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A human-readable message.
    pub error: String,
}

/// Something handed between the control server and the supervisor that is neither data nor
/// copyable (descriptors, a running exec): taken once by whoever needs it. Equal only to
/// itself.
pub struct Passed<T>(pub std::sync::Arc<std::sync::Mutex<Option<T>>>);

impl<T> Passed<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Passed(std::sync::Arc::new(std::sync::Mutex::new(Some(value))))
    }

    /// Takes the value (once).
    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl<T> Clone for Passed<T> {
    fn clone(&self) -> Self {
        Passed(std::sync::Arc::clone(&self.0))
    }
}

impl<T> PartialEq for Passed<T> {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl<T> Eq for Passed<T> {}

impl<T> std::fmt::Debug for Passed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passed(..)")
    }
}

/// The descriptors of an exec: stdin, stdout and stderr, and with a tty the console socket.
#[derive(Debug)]
pub struct ExecFds {
    /// The command's stdin, stdout and stderr.
    pub stdio: [std::os::fd::OwnedFd; 3],
    /// The client's console socket (with a tty).
    pub console: Option<std::os::fd::OwnedFd>,
}

/// A decoded control request, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// All workloads, or the one named.
    Status {
        /// Restrict to this workload.
        name: Option<String>,
    },
    /// Restart a workload now (resets its backoff).
    Restart {
        /// The workload.
        name: String,
    },
    /// Stop a workload and keep it stopped, across superd restarts, until [`Request::Start`].
    Stop {
        /// The workload.
        name: String,
    },
    /// Undo a [`Request::Stop`].
    Start {
        /// The workload.
        name: String,
    },
    /// Every workload's running (or last) spec, for `superctl plan`.
    Specs,
    /// What every workload uses, for `superctl stats` and `/metrics`.
    Stats,
    /// Run a command inside a running workload.
    Exec {
        /// The workload.
        name: String,
        /// What to run.
        req: crate::runtime::exec::ExecRequest,
        /// Its descriptors.
        fds: Passed<ExecFds>,
    },
    /// Stop every workload, then power off, reboot or halt (PID-1 mode only).
    Power {
        /// What to do at the end.
        action: PowerAction,
    },
    /// Re-execute superd in place, keeping every workload running (`superctl reexec`).
    Reexec,
    /// Which superd answers: PID, version, start time.
    Daemon,
    /// May the hardware watchdog be petted now (PID-1 mode, from superd itself; no route)?
    Watchdog,
}

impl Request {
    /// True for requests that change nothing (members of `--socket-group` may make only these).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::Status { .. } | Request::Specs | Request::Stats | Request::Daemon
        )
    }

    /// The verb, for messages: `status`, `restart`, `poweroff`.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Status { .. } => "status",
            Request::Restart { .. } => "restart",
            Request::Stop { .. } => "stop",
            Request::Start { .. } => "start",
            Request::Specs => "plan",
            Request::Stats => "stats",
            Request::Exec { .. } => "exec",
            Request::Power { action } => action.as_str(),
            Request::Reexec => "reexec",
            Request::Daemon => "daemon",
            Request::Watchdog => "watchdog",
        }
    }
}

/// One record of a workload's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// RFC 3339 UTC with nanoseconds; strictly increasing within a log (a cursor).
    pub time: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Part of a longer line continued in the next record of the stream.
    pub partial: bool,
    /// The text (invalid UTF-8 replaced).
    pub text: String,
}

/// `GET /v1/workloads/{name}/logs?tail=N&since=T&after=T`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The records, oldest first.
    pub records: Vec<LogRecord>,
    /// More records matched than one reply carries (the newest are kept); ask again with
    /// `after` set to the last record's time for a follow.
    pub truncated: bool,
}

/// `GET /v1/daemon`: which superd answers (a re-exec keeps the PID and changes the rest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// Its PID.
    pub pid: u32,
    /// Its version.
    pub version: String,
    /// When this image of it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// Workloads it supervises, and how many of them it adopted from its predecessor.
    pub workloads: usize,
    /// See `workloads`.
    pub adopted: usize,
}

/// What the machine does at the end of an orderly shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerAction {
    /// Stop the CPU (the machine stays on).
    Halt,
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

impl PowerAction {
    /// `halt`, `poweroff` or `reboot`.
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Halt => "halt",
            PowerAction::Poweroff => "poweroff",
            PowerAction::Reboot => "reboot",
        }
    }
}

/// The supervisor's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// Status of the requested workloads.
    Status(StatusResponse),
    /// Done.
    Ack(Ack),
    /// Every workload's spec.
    Specs(SpecsResponse),
    /// What every workload uses.
    Stats(StatsResponse),
    /// An exec started.
    Exec(Passed<crate::runtime::exec::Running>),
    /// Which superd answers.
    Daemon(DaemonInfo),
    /// No such workload.
    NotFound(String),
    /// Something went wrong.
    Error(String),
}
