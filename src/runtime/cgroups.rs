//! Workload cgroups on v1 and v2, through cgroups-rs with our own `Hierarchy` impls.
//!
//! - v1: only the memory, cpu(acct), pids and freezer hierarchies (cgroups-rs would otherwise
//!   create a directory in every mounted hierarchy); each directory is
//!   `<mount>/<superd's own cgroup in that hierarchy>/<root>/<name>` unless the root is absolute.
//! - v2: a unified hierarchy at any mount point (cgroups-rs hard-codes `/sys/fs/cgroup`).
//!   superd moves itself into a `daemon` leaf so controllers can be enabled (no internal processes).
//!
//! Killing, freezing, OOM counts and removal are done directly on the control files, because
//! cgroups-rs either lacks them (v1 kill, v2 `memory.events`) or hides their errors.

use crate::manifest::Resources;
use crate::runtime::devices::Allow;
use cgroups_rs::fs::{
    cgroup::Cgroup, cpu::CpuController, hierarchies::V1, memory::MemController, pid::PidController,
    Controller, Hierarchy, MaxValue, Subsystem,
};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors from cgroup operations, with the path or step involved.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No usable cgroup hierarchy.
    #[error("no usable cgroup hierarchy found: {0}")]
    NoHierarchy(String),
    /// Reading `/proc/self/cgroup` failed.
    #[error("reading superd's own cgroup: {0}")]
    OwnCgroup(String),
    /// A cgroups-rs call failed.
    #[error("{step} for cgroup {path}: {source}")]
    Crate {
        /// What was being done.
        step: &'static str,
        /// The cgroup.
        path: String,
        /// The underlying error.
        source: cgroups_rs::fs::error::Error,
    },
    /// A file operation failed.
    #[error("{step} {path}: {source}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel refused a live limit change (v1 EBUSY when lowering memory below usage).
    #[error("the kernel refused the new limit {what}: {source}")]
    LimitRefused {
        /// Which limit.
        what: &'static str,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Processes did not leave the cgroup in time.
    #[error("cgroup {0} did not become empty")]
    NotEmpty(PathBuf),
}

fn io_err<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// cgroup v1 restricted to the controllers superd uses.
#[derive(Debug)]
struct V1Filtered(V1);

impl Hierarchy for V1Filtered {
    fn subsystems(&self) -> Vec<Subsystem> {
        self.0
            .subsystems()
            .into_iter()
            .filter(|s| {
                matches!(
                    s,
                    Subsystem::Mem(_)
                        | Subsystem::Cpu(_)
                        | Subsystem::CpuAcct(_)
                        | Subsystem::Pid(_)
                        | Subsystem::Freezer(_)
                        | Subsystem::Devices(_)
                )
            })
            .collect()
    }
    fn root(&self) -> PathBuf {
        self.0.root()
    }
    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(V1Filtered(V1::new())), "")
    }
    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().unwrap_or(Path::new(""));
        Cgroup::load(Box::new(V1Filtered(V1::new())), parent)
    }
    fn v2(&self) -> bool {
        false
    }
}

/// A cgroup2 hierarchy mounted at an arbitrary directory.
#[derive(Debug, Clone)]
pub struct UnifiedAt(pub PathBuf);

impl Hierarchy for UnifiedAt {
    fn subsystems(&self) -> Vec<Subsystem> {
        let controllers =
            std::fs::read_to_string(self.0.join("cgroup.controllers")).unwrap_or_default();
        let mut subs = Vec::new();
        let root = self.0.clone();
        for c in controllers.split_whitespace() {
            match c {
                "memory" => subs.push(Subsystem::Mem(MemController::new(
                    root.clone(),
                    PathBuf::new(),
                    true,
                ))),
                "cpu" => subs.push(Subsystem::Cpu(CpuController::new(
                    root.clone(),
                    PathBuf::new(),
                    true,
                ))),
                "pids" => subs.push(Subsystem::Pid(PidController::new(
                    root.clone(),
                    PathBuf::new(),
                    true,
                ))),
                _ => {}
            }
        }
        subs
    }
    fn root(&self) -> PathBuf {
        self.0.clone()
    }
    fn root_control_group(&self) -> Cgroup {
        Cgroup::load(Box::new(self.clone()), "")
    }
    fn parent_control_group(&self, path: &str) -> Cgroup {
        let parent = Path::new(path).parent().unwrap_or(Path::new(""));
        Cgroup::load(Box::new(self.clone()), parent)
    }
    fn v2(&self) -> bool {
        true
    }
}

/// Which cgroup layout superd manages.
#[derive(Debug, Clone)]
enum Layout {
    /// cgroup v1; own cgroup path per controller name (from `/proc/self/cgroup`).
    V1 { own: HashMap<String, String> },
    /// Unified cgroup2 at `mount`.
    V2 { mount: PathBuf },
}

/// Creates, limits, kills and removes workload cgroups below one root.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    layout: Layout,
    /// The root relative to each hierarchy's mount (no leading '/').
    root: String,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// superd's own cgroup in the unified hierarchy (the `0::` line of `/proc/self/cgroup`).
fn own_unified_cgroup() -> Result<String, CgroupError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| CgroupError::OwnCgroup(e.to_string()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|s| s.to_string())
        .ok_or_else(|| CgroupError::OwnCgroup("no 0:: line in /proc/self/cgroup".into()))
}

impl CgroupManager {
    /// Detects the layout: a unified cgroup2 at `/sys/fs/cgroup`, else v1 controllers.
    /// `root` is relative to superd's own cgroup unless it starts with `/`.
    pub fn detect(root: &str) -> Result<Self, CgroupError> {
        let sys = Path::new("/sys/fs/cgroup");
        if is_cgroup2(sys) {
            return Self::v2_at(sys, root);
        }
        if !sys.join("memory").exists() && !sys.join("pids").exists() {
            return Err(CgroupError::NoHierarchy(
                "/sys/fs/cgroup is neither cgroup2 nor has v1 controllers".into(),
            ));
        }
        let own = if root.starts_with('/') {
            HashMap::new()
        } else {
            cgroups_rs::fs::cgroup::get_cgroups_relative_paths()
                .map_err(|e| CgroupError::OwnCgroup(e.to_string()))?
        };
        Ok(CgroupManager {
            layout: Layout::V1 { own },
            root: root.trim_matches('/').to_string(),
        })
    }

    /// Uses the cgroup2 hierarchy mounted at `mount` (also used by tests on a tempdir tree).
    /// A relative `root` is placed below superd's own cgroup, and superd moves itself into a
    /// `daemon` leaf there so that controllers can be enabled for the workloads.
    pub fn v2_at(mount: &Path, root: &str) -> Result<Self, CgroupError> {
        let rel = if root.starts_with('/') {
            root.trim_matches('/').to_string()
        } else {
            let own = own_unified_cgroup()?;
            let own = own.trim_matches('/');
            if !own.is_empty() && is_cgroup2(mount) {
                // No internal processes: leave our own cgroup for a leaf before enabling
                // controllers in it.
                let leaf = mount.join(own).join("daemon");
                std::fs::create_dir_all(&leaf).map_err(io_err("creating", &leaf))?;
                let procs = leaf.join("cgroup.procs");
                std::fs::write(&procs, std::process::id().to_string())
                    .map_err(io_err("moving superd into", &procs))?;
            }
            [own, root.trim_matches('/')]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/")
        };
        Ok(CgroupManager {
            layout: Layout::V2 {
                mount: mount.to_path_buf(),
            },
            root: rel,
        })
    }

    /// True on a unified (v2) hierarchy.
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    fn hierarchy(&self) -> Box<dyn Hierarchy> {
        match &self.layout {
            Layout::V1 { .. } => Box::new(V1Filtered(V1::new())),
            Layout::V2 { mount } => Box::new(UnifiedAt(mount.clone())),
        }
    }

    /// The directories of the root in every managed hierarchy.
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        self.dirs_of("")
    }

    fn dirs_of(&self, name: &str) -> Vec<PathBuf> {
        let rel = if name.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{}", self.root, name)
        };
        match &self.layout {
            Layout::V2 { mount } => vec![mount.join(&rel)],
            Layout::V1 { own } => {
                let cg = Cgroup::load_with_relative_paths(self.hierarchy(), &rel, own.clone());
                let mut dirs: Vec<PathBuf> = cg
                    .subsystems()
                    .iter()
                    .map(|s| s.to_controller().path().to_path_buf())
                    .collect();
                dirs.sort();
                dirs.dedup();
                dirs
            }
        }
    }

    /// Creates the cgroup for workload `name`, applies `res` and lets its processes use only
    /// the `devices` listed (v1 `devices.allow`, v2 a BPF device program; `None` leaves the
    /// devices alone, for a fake tree in tests).
    pub fn create(
        &self,
        name: &str,
        res: &Resources,
        devices: Option<&[Allow]>,
    ) -> Result<WorkloadCgroup, CgroupError> {
        let rel = format!("{}/{}", self.root, name);
        let rel = rel.trim_start_matches('/').to_string();
        let cg = match &self.layout {
            Layout::V1 { own } => {
                Cgroup::new_with_relative_paths(self.hierarchy(), &rel, own.clone())
            }
            Layout::V2 { .. } => Cgroup::new(self.hierarchy(), &rel),
        }
        .map_err(|source| CgroupError::Crate {
            step: "creating",
            path: rel.clone(),
            source,
        })?;
        let wc = WorkloadCgroup {
            dirs: self.dirs_of(name),
            v2: self.is_v2(),
            rel,
            cg,
        };
        let checked = if wc.v2 {
            wc.check_v2_controllers(res)
        } else {
            Ok(())
        };
        if let Err(e) = checked
            .and_then(|()| wc.apply(res))
            .and_then(|()| wc.limit_devices(devices))
        {
            let _ = wc.remove(Duration::from_secs(1));
            return Err(e);
        }
        Ok(wc)
    }

    /// Removes everything below the root that a crashed predecessor left behind, but the
    /// cgroups of the workloads in `keep` (adopted instances): kills the processes in each
    /// leftover cgroup and removes it. Returns the names removed.
    pub fn remove_stale(&self, keep: &std::collections::BTreeSet<String>) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for dir in self.root_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // Never the leaf superd itself lives in (with an empty --cgroup-root the
                // root is superd's own cgroup, which holds its `daemon` leaf).
                let me = std::process::id() as i32;
                if e.path().is_dir() && !pids_in(&e.path()).contains(&me) {
                    names.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        names.dedup();
        names.retain(|name| !keep.contains(name));
        names.retain(|name| self.load(name).remove(Duration::from_secs(2)).is_ok());
        names
    }

    /// A handle on the existing cgroup of workload `name`, for an adopted instance; `None`
    /// when its directories are not `dirs` (they were made under another cgroup root).
    pub fn open(&self, name: &str, dirs: &[PathBuf]) -> Option<WorkloadCgroup> {
        (self.dirs_of(name) == dirs).then(|| self.load(name))
    }

    /// A handle on an existing workload cgroup (no directories are created).
    fn load(&self, name: &str) -> WorkloadCgroup {
        let rel = format!("{}/{}", self.root, name)
            .trim_start_matches('/')
            .to_string();
        let cg = match &self.layout {
            Layout::V1 { own } => {
                Cgroup::load_with_relative_paths(self.hierarchy(), &rel, own.clone())
            }
            Layout::V2 { .. } => Cgroup::load(self.hierarchy(), &rel),
        };
        WorkloadCgroup {
            dirs: self.dirs_of(name),
            v2: self.is_v2(),
            rel,
            cg,
        }
    }

    /// What a container mounts at /sys/fs/cgroup to see its own cgroup (its cgroup namespace
    /// makes that the root): cgroup2 itself, or on v1 each hierarchy superd manages (memory,
    /// cpu, cpuacct, pids, freezer, devices) as mounted on the host.
    pub fn container_mounts(&self) -> Vec<crate::runtime::sync::CgroupFsCfg> {
        use crate::runtime::sync::CgroupFsCfg;
        if self.is_v2() {
            return vec![CgroupFsCfg {
                dir: String::new(),
                fstype: "cgroup2".into(),
                options: String::new(),
            }];
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        v1_hierarchies(&info)
            .into_iter()
            .map(|(dir, options)| CgroupFsCfg {
                dir,
                fstype: "cgroup".into(),
                options,
            })
            .collect()
    }

    /// Removes the (empty) root directories superd created; used on shutdown.
    pub fn remove_root(&self) {
        for dir in self.root_dirs() {
            let _ = remove_dir_retry(&dir, Duration::from_millis(500));
        }
    }
}

/// One workload's cgroup (a directory per hierarchy on v1, one on v2).
#[derive(Debug)]
pub struct WorkloadCgroup {
    cg: Cgroup,
    dirs: Vec<PathBuf>,
    v2: bool,
    rel: String,
}

/// The v1 controllers superd places workloads in (see `V1Filtered`).
const MANAGED_V1: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "freezer", "devices", "blkio",
];

/// `(directory below /sys/fs/cgroup, controllers)` of every v1 hierarchy in `mountinfo` that
/// holds a controller superd manages.
fn v1_hierarchies(mountinfo: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let (Some("cgroup"), Some(_source), Some(opts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        let Some(dir) = left
            .split_whitespace()
            .nth(4)
            .and_then(|m| m.strip_prefix("/sys/fs/cgroup/"))
        else {
            continue;
        };
        let controllers: Vec<&str> = opts.split(',').filter(|o| MANAGED_V1.contains(o)).collect();
        if !controllers.is_empty() && !dir.contains('/') && !out.iter().any(|(d, _)| d == dir) {
            out.push((dir.to_string(), controllers.join(",")));
        }
    }
    out
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed_u64(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// The PIDs in the cgroup directory `dir` (none when it cannot be read).
pub fn pids_in(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn set_frozen(dir: &Path, v2: bool, frozen: bool) -> io::Result<()> {
    if v2 {
        std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    } else {
        std::fs::write(
            dir.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        )
    }
}

/// rmdir with retries: the kernel may report EBUSY right after the last task exits.
fn remove_dir_retry(dir: &Path, budget: Duration) -> io::Result<()> {
    let deadline = Instant::now() + budget;
    let mut delay = Duration::from_millis(1);
    loop {
        // Children first (stale trees may be nested).
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                // Never the leaf superd itself lives in (with an empty --cgroup-root the
                // root is superd's own cgroup, which holds its `daemon` leaf).
                let me = std::process::id() as i32;
                if e.path().is_dir() && !pids_in(&e.path()).contains(&me) {
                    let _ = remove_dir_retry(&e.path(), Duration::from_millis(100));
                }
            }
        }
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
        }
    }
}

impl WorkloadCgroup {
    /// The relative path of this cgroup in each hierarchy.
    pub fn rel_path(&self) -> &str {
        &self.rel
    }

    /// The `cgroup.procs` file of every hierarchy; the spawned child writes `0` to each before
    /// it executes the shim, so everything it starts is charged and limited from the first page.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    fn check_v2_controllers(&self, res: &Resources) -> Result<(), CgroupError> {
        let Some(dir) = self.dirs.first() else {
            return Ok(());
        };
        let avail = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
        let need = [
            ("memory", res.memory.is_some()),
            ("cpu", res.cpu_millis.is_some()),
            ("pids", res.pids.is_some()),
        ];
        for (c, needed) in need {
            if needed && !avail.split_whitespace().any(|a| a == c) {
                return Err(CgroupError::NoHierarchy(format!(
                    "the {c} controller is not enabled for {} (cgroup.controllers: `{}`)",
                    dir.display(),
                    avail.trim()
                )));
            }
        }
        Ok(())
    }

    /// Applies (or lifts) every limit. Used at creation and for live updates.
    pub fn apply(&self, res: &Resources) -> Result<(), CgroupError> {
        let crate_err = |step: &'static str, rel: &str| {
            let path = rel.to_string();
            move |source| CgroupError::Crate { step, path, source }
        };
        if let Some(mem) = self.cg.controller_of::<MemController>() {
            let limit = res
                .memory
                .map(|m| m.min(i64::MAX as u64) as i64)
                .unwrap_or(-1);
            if self.v2 {
                mem.set_limit(limit)
                    .map_err(|e| refused_or(e, "memory.max", &self.rel))?;
                // Swap is capped too: no swap beyond the memory limit.
                let _ = mem.set_memswap_limit(if res.memory.is_some() { 0 } else { -1 });
            } else {
                let dir = mem.path().to_path_buf();
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let cur = read_u64(&dir.join("memory.limit_in_bytes")).unwrap_or(u64::MAX);
                let raising = limit < 0 || (limit as u64) > cur;
                // memory.limit_in_bytes <= memory.memsw.limit_in_bytes must hold at every step.
                if raising && memsw.exists() {
                    let _ = mem.set_memswap_limit(limit);
                }
                mem.set_limit(limit)
                    .map_err(|e| refused_or(e, "memory.limit_in_bytes", &self.rel))?;
                if !raising && memsw.exists() {
                    mem.set_memswap_limit(limit)
                        .map_err(|e| refused_or(e, "memory.memsw.limit_in_bytes", &self.rel))?;
                }
            }
        } else if res.memory.is_some() {
            return Err(CgroupError::NoHierarchy("no memory controller".into()));
        }
        if let Some(cpu) = self.cg.controller_of::<CpuController>() {
            let quota = res.cpu_millis.map(|m| i64::from(m) * 100).unwrap_or(-1);
            cpu.set_cfs_quota_and_period(Some(quota), Some(100_000))
                .map_err(crate_err("setting the cpu quota", &self.rel))?;
        } else if res.cpu_millis.is_some() {
            return Err(CgroupError::NoHierarchy("no cpu controller".into()));
        }
        if let Some(pids) = self.cg.controller_of::<PidController>() {
            let max = match res.pids {
                Some(n) => MaxValue::Value(n.min(i64::MAX as u64) as i64),
                None => MaxValue::Max,
            };
            pids.set_pid_max(max)
                .map_err(crate_err("setting pids.max", &self.rel))?;
        } else if res.pids.is_some() {
            return Err(CgroupError::NoHierarchy("no pids controller".into()));
        }
        Ok(())
    }

    fn mem_dir(&self) -> Option<PathBuf> {
        self.cg
            .controller_of::<MemController>()
            .map(|m| m.path().to_path_buf())
    }

    /// Current memory usage in bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        let dir = self.mem_dir()?;
        if self.v2 {
            read_u64(&dir.join("memory.current"))
        } else {
            read_u64(&dir.join("memory.usage_in_bytes"))
        }
    }

    /// The memory limit in bytes (`None`: unlimited or unknown).
    pub fn memory_limit(&self) -> Option<u64> {
        let dir = self.mem_dir()?;
        let file = if self.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        // "max" on v2 and a huge page-aligned number on v1 mean unlimited.
        read_u64(&dir.join(file)).filter(|&b| b < (1 << 62))
    }

    /// Everything the cgroup reports (see [`super::cgstats`]).
    pub fn stats(&self) -> crate::api::CgroupStats {
        use super::cgstats::{read, Dirs};
        match (self.v2, self.dirs.first()) {
            (true, Some(d)) => read(Dirs::V2(d)),
            _ => read(Dirs::V1(&self.dirs)),
        }
    }

    /// How many processes the OOM killer killed in this cgroup (`None` if unknown).
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.mem_dir()?;
        if self.v2 {
            keyed_u64(&dir.join("memory.events"), "oom_kill")
        } else {
            keyed_u64(&dir.join("memory.oom_control"), "oom_kill")
        }
    }

    /// PIDs currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        self.dirs.first().map(|d| pids_in(d)).unwrap_or_default()
    }

    /// Kills every process in the cgroup.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        kill_dirs(&self.dirs, self.v2)
    }

    /// Kills what is left, waits until the cgroup is empty and removes it (blocking; bounded by
    /// `budget`).
    pub fn remove(&self, budget: Duration) -> Result<(), CgroupError> {
        remove_dirs(&self.dirs, self.v2, budget)
    }

    /// Lets the cgroup's processes use only `allowed` (v1 `devices.allow`, v2 a BPF device
    /// program); `None` leaves the devices alone.
    fn limit_devices(&self, allowed: Option<&[Allow]>) -> Result<(), CgroupError> {
        match (allowed, self.v2, self.dirs.first()) {
            (None, _, _) | (Some(_), true, None) => Ok(()),
            (Some(allowed), true, Some(dir)) => crate::runtime::devices_bpf::attach(dir, allowed)
                .map_err(io_err("limiting the devices of", dir)),
            (Some(allowed), false, _) => self.allow_devices(allowed),
        }
    }

    /// v1: deny every device, then allow each of `allowed` (`devices.deny`/`devices.allow`).
    fn allow_devices(&self, allowed: &[Allow]) -> Result<(), CgroupError> {
        let Some(dir) = self.dirs.iter().find(|d| d.join("devices.allow").exists()) else {
            return Err(CgroupError::NoHierarchy(
                "the v1 devices controller is not mounted: superd cannot limit the devices a \
                 workload may open"
                    .into(),
            ));
        };
        let deny = dir.join("devices.deny");
        std::fs::write(&deny, "a").map_err(io_err("writing", &deny))?;
        let allow = dir.join("devices.allow");
        for rule in allowed {
            std::fs::write(&allow, rule.to_string()).map_err(io_err("writing", &allow))?;
        }
        Ok(())
    }

    /// The cgroup's directory in every hierarchy (absolute), for the instance record.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Kills every process in a cgroup given by its directories (one per hierarchy; v1 freezes
/// through whichever of them is in the freezer hierarchy).
pub fn kill_dirs(dirs: &[PathBuf], v2: bool) -> Result<(), CgroupError> {
    let Some(dir) = dirs.first() else {
        return Ok(());
    };
    if v2 && dir.join("cgroup.kill").exists() {
        return std::fs::write(dir.join("cgroup.kill"), "1")
            .map_err(io_err("killing the processes of", dir));
    }
    // Freeze (v1 freezer hierarchy, or v2 cgroup.freeze on kernels before 5.14), kill, thaw.
    let freezer = if v2 {
        Some(dir.clone())
    } else {
        dirs.iter()
            .find(|d| d.join("freezer.state").exists())
            .cloned()
    };
    let frozen = freezer
        .as_ref()
        .map(|f| set_frozen(f, v2, true).is_ok())
        .unwrap_or(false);
    if frozen && !v2 {
        if let Some(f) = &freezer {
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                match std::fs::read_to_string(f.join("freezer.state")) {
                    Ok(s) if s.trim() == "FROZEN" => break,
                    _ => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
    }
    for pid in pids_in(dir) {
        // SAFETY: kill(2) on a PID listed in this workload's cgroup.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    if let (true, Some(f)) = (frozen, &freezer) {
        set_frozen(f, v2, false).map_err(io_err("thawing", f))?;
    }
    Ok(())
}

/// Kills what is left in a cgroup given by its directories, waits until it is empty and
/// removes the directories that exist (blocking; bounded by `budget`).
pub fn remove_dirs(dirs: &[PathBuf], v2: bool, budget: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + budget;
    let first = dirs.first().cloned().unwrap_or_default();
    loop {
        if pids_in(&first).is_empty() {
            break;
        }
        let _ = kill_dirs(dirs, v2);
        if Instant::now() >= deadline {
            return Err(CgroupError::NotEmpty(first));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    for dir in dirs.iter().filter(|d| d.exists()) {
        let left = deadline.saturating_duration_since(Instant::now());
        remove_dir_retry(dir, left.max(Duration::from_millis(100)))
            .map_err(io_err("removing", dir))?;
    }
    Ok(())
}

fn refused_or(e: cgroups_rs::fs::error::Error, what: &'static str, rel: &str) -> CgroupError {
    use std::error::Error as _;
    let busy = e
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(|io| io.raw_os_error())
        == Some(libc::EBUSY);
    if busy {
        CgroupError::LimitRefused {
            what,
            source: io::Error::from_raw_os_error(libc::EBUSY),
        }
    } else {
        CgroupError::Crate {
            step: "setting the memory limit",
            path: format!("{rel} ({what})"),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v2 code path against a tempdir tree that looks like a delegated cgroup2 subtree.
    #[test]
    fn v2_limits_on_a_tempdir_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let mgr = CgroupManager::v2_at(root, "/superd-test").unwrap();
        assert!(mgr.is_v2());
        // Pre-create the files the kernel would provide in the new cgroup.
        let dir = root.join("superd-test/web");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("cgroup.controllers", "cpu memory pids"),
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("cpu.max", "max 100000"),
            ("pids.max", "max"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n"),
            ("memory.current", "4096"),
            ("cgroup.procs", ""),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
        let res = Resources {
            memory: Some(64 << 20),
            cpu_millis: Some(500),
            pids: Some(64),
        };
        let cg = mgr.create("web", &res, None).unwrap();
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "64");
        assert_eq!(cg.oom_kills(), Some(2));
        assert_eq!(cg.memory_bytes(), Some(4096));
        assert_eq!(
            cg.procs_files(),
            vec![root.join("superd-test/web/cgroup.procs")]
        );
        // Lifting the limits writes "max".
        cg.apply(&Resources::default()).unwrap();
        assert_eq!(read("memory.max"), "max");
        assert_eq!(read("pids.max"), "max");
        assert!(read("cpu.max").starts_with("max"));
    }

    #[test]
    fn v2_missing_controller_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("cgroup.controllers"), "pids").unwrap();
        let dir = root.join("r/web");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup.controllers"), "pids").unwrap();
        let mgr = CgroupManager::v2_at(root, "/r").unwrap();
        let res = Resources {
            memory: Some(1 << 20),
            ..Default::default()
        };
        let err = mgr.create("web", &res, None).unwrap_err().to_string();
        assert!(err.contains("memory controller is not enabled"), "{err}");
    }

    #[test]
    fn v1_hierarchies_from_mountinfo() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
            35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices\n\
            38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio\n\
            40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_hierarchies(info),
            [
                ("cpu,cpuacct".to_string(), "cpu,cpuacct".to_string()),
                ("memory".into(), "memory".into()),
                ("devices".into(), "devices".into()),
                ("blkio".into(), "blkio".into()),
            ]
        );
    }
}
