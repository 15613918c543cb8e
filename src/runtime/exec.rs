//! `superctl exec` on the daemon's side: the exec helper's config, built from the config the
//! instance's shim started with (so the command gets the workload's user, environment,
//! rlimits and seccomp filter unless the request narrows them), and its spawn from the sealed
//! copy of superd's binary, through the reaper.

use super::reaper::{RawStatus, Reaper};
use super::sync::{ShimConfig, UserCfg};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// argv[0] of the exec helper (`superd-exec: <name>`).
pub const EXEC_ARGV0_PREFIX: &str = "superd-exec:";
/// The helper reads its config from this fd.
pub const CONFIG_FD: RawFd = 3;
/// A pidfd of the instance's init, whose namespaces the helper joins.
pub const NS_FD: RawFd = 4;
/// The client's console socket (with a tty).
pub const CONSOLE_FD: RawFd = 5;

/// What the helper needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecConfig {
    /// The command as a process config (the shim's, with the request's argv, user, workdir
    /// and environment).
    pub process: ShimConfig,
    /// The `cgroup.procs` files of the workload's cgroup, one per hierarchy.
    pub cgroup_procs: Vec<String>,
    /// The workload has a network namespace of its own.
    pub own_netns: bool,
    /// Open a pty inside the container and send its master over the console socket.
    pub tty: bool,
    /// The workload's own user: a command may run as root only if the workload does (root
    /// gets the default capabilities, everyone else none).
    pub workload_user: UserCfg,
}

/// A request, as the daemon checked it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command; `argv[0]` is resolved through the container's PATH.
    pub argv: Vec<String>,
    /// `uid[:gid]` or `name[:group]` (default: the workload's user).
    #[serde(default)]
    pub user: Option<String>,
    /// The working directory (default: the workload's).
    #[serde(default)]
    pub workdir: Option<String>,
    /// `KEY=VALUE` pairs added to the workload's environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Allocate a pty inside the container (the client passes a console socket).
    #[serde(default)]
    pub tty: bool,
}

/// The most arguments, environment entries and bytes a request may carry.
const MAX_ITEMS: usize = 4096;

impl ExecRequest {
    /// The process config for this request, from the shim's `base`.
    pub fn process(&self, base: &ShimConfig) -> Result<ShimConfig, String> {
        if self.argv.is_empty() {
            return Err("no command given".into());
        }
        if self.argv.len() > MAX_ITEMS || self.env.len() > MAX_ITEMS {
            return Err(format!(
                "at most {MAX_ITEMS} arguments and environment entries"
            ));
        }
        if self.argv.iter().chain(&self.env).any(|s| s.contains('\0')) {
            return Err("an argument or environment entry contains a NUL byte".into());
        }
        let mut p = base.clone();
        p.argv = self.argv.clone();
        for kv in &self.env {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("`{kv}`: environment entries are KEY=VALUE"))?;
            match p.env.iter_mut().find(|(key, _)| key == k) {
                Some(e) => e.1 = v.to_string(),
                None => p.env.push((k.to_string(), v.to_string())),
            }
        }
        if let Some(w) = &self.workdir {
            let w = crate::manifest::AbsPath::new(w)
                .map_err(|e| format!("workdir {e}: expected an absolute, normalised path"))?;
            p.workdir = w.as_str().to_string();
        }
        if let Some(u) = &self.user {
            let u = crate::manifest::values_parse_user(u).map_err(|e| format!("user: {e}"))?;
            p.user = super::user_cfg(&u);
        }
        Ok(p)
    }
}

/// What the instance keeps for execs.
#[derive(Debug)]
pub struct ExecBase {
    /// The shim's config (shared with its driver).
    pub shim: Arc<ShimConfig>,
    /// The sealed copy of superd's binary.
    pub memfd: Arc<OwnedFd>,
    /// The reaper (the helper is superd's child).
    pub reaper: Reaper,
    /// `cgroup.procs` of each hierarchy.
    pub cgroup_procs: Vec<String>,
}

/// A running exec.
#[derive(Debug)]
pub struct Running {
    /// The helper's PID (its child is the command).
    pub pid: i32,
    /// A pidfd of the helper, to signal it.
    pub pidfd: OwnedFd,
    /// Its wait status, from the reaper.
    pub exit: tokio::sync::oneshot::Receiver<RawStatus>,
}

/// Starts the helper for `req` with `stdio` (stdin, stdout, stderr) and, with a tty, the
/// client's `console` socket; `init` is a pidfd of the instance's init.
pub fn spawn(
    base: &ExecBase,
    name: &str,
    init: &OwnedFd,
    own_netns: bool,
    req: &ExecRequest,
    stdio: [OwnedFd; 3],
    console: Option<OwnedFd>,
) -> Result<Running, String> {
    use std::os::unix::process::CommandExt;
    let cfg = ExecConfig {
        process: req.process(&base.shim)?,
        cgroup_procs: base.cgroup_procs.clone(),
        own_netns,
        tty: req.tty,
        workload_user: base.shim.user.clone(),
    };
    let bytes = serde_json::to_vec(&cfg).map_err(|e| format!("encoding the exec config: {e}"))?;
    let (config_r, config_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("a pipe: {e}"))?;
    let fd_err = |e: std::io::Error| format!("preparing the exec's fds: {e}");
    let high = |fd: &OwnedFd| super::sys::dup_above(fd, 100).map_err(fd_err);
    let sources = [
        high(&stdio[0])?,
        high(&stdio[1])?,
        high(&stdio[2])?,
        high(&config_r)?,
        high(init)?,
    ];
    let console = console.as_ref().map(high).transpose()?;
    drop(config_r);
    let mut raw: Vec<RawFd> = sources.iter().map(|f| f.as_raw_fd()).collect();
    raw.push(console.as_ref().map_or(-1, |f| f.as_raw_fd()));
    let exe = format!("/proc/self/fd/{}", base.memfd.as_raw_fd());
    let mut cmd = std::process::Command::new(exe);
    cmd.arg0(format!("{EXEC_ARGV0_PREFIX} {name}")).env_clear();
    // SAFETY: the closure runs in the forked child before exec and only calls dup2 and
    // close, which are async-signal-safe; every source is open (owned by `sources` and
    // `console`, alive until spawn returns) and above 99, so no dup2 clobbers a later source.
    unsafe {
        cmd.pre_exec(move || {
            for (target, fd) in raw.iter().enumerate() {
                let target = target as RawFd;
                if *fd < 0 {
                    libc::close(target);
                } else if libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = None;
    let (pid, exit) = base
        .reaper
        .spawn_with(|| {
            let c = cmd.spawn()?;
            let pid = c.id() as i32;
            child = Some(c);
            Ok::<i32, std::io::Error>(pid)
        })
        .map_err(|e| format!("starting the exec helper: {e}"))?;
    drop(child); // the reaper owns its exit status
    drop(sources);
    drop(console);
    let pidfd = super::sys::pidfd_open(pid).ok_or("opening a pidfd of the exec helper")?;
    // The config goes in after the spawn: a pipe holds 64 KiB, a config may be larger.
    std::thread::Builder::new()
        .name("superd-exec-config".into())
        .spawn(move || {
            use std::io::Write;
            let mut w = std::fs::File::from(config_w);
            let _ = w.write_all(&bytes);
        })
        .map_err(|e| format!("writing the exec config: {e}"))?;
    Ok(Running { pid, pidfd, exit })
}
