//! Turning the shim (or its child) into the workload: user and groups, capabilities,
//! `no_new_privs`, environment, working directory, fds, and the final `execve`.
//! Runs after `pivot_root`, so every lookup here stays inside the container.

use super::rootfs::StepError;
use crate::manifest::DEFAULT_PATH;
use crate::runtime::sync::{IdOrNameCfg, RlimitCfg, ShimConfig};
use caps::{CapSet, Capability, CapsHashSet};
use std::ffi::CString;

/// The default capability set for root workloads (SECURITY.md).
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_KILL,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_CHROOT,
];

/// The resolved identity and the exec arguments, computed before any privilege is dropped.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    groups: Vec<u32>,
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: String,
    rlimits: Vec<RlimitCfg>,
    seccomp: std::sync::Arc<Vec<crate::runtime::seccomp::WireProgram>>,
}

fn step(s: impl Into<String>, m: impl std::fmt::Display) -> StepError {
    StepError {
        step: s.into(),
        message: m.to_string(),
    }
}

/// One `/etc/passwd` entry: (name, uid, gid, home).
fn passwd() -> Vec<(String, u32, u32, String)> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 6 {
                return None;
            }
            Some((
                f[0].to_string(),
                f[2].parse().ok()?,
                f[3].parse().ok()?,
                f[5].to_string(),
            ))
        })
        .collect()
}

/// `/etc/group` entries: (name, gid, members).
fn groups() -> Vec<(String, u32, Vec<String>)> {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            let members = f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some((f[0].to_string(), f[2].parse().ok()?, members))
        })
        .collect()
}

fn cstring(s: &str, what: &str) -> Result<CString, StepError> {
    CString::new(s).map_err(|_| step(format!("preparing {what}"), "contains a NUL byte"))
}

/// The uid `user` names in the container's `/etc/passwd`.
pub fn resolve_uid(user: &crate::runtime::sync::UserCfg) -> Result<u32, StepError> {
    resolve_user(&passwd(), user).map(|u| u.0)
}

/// `(uid, name, primary gid, home)` of `user` in `pw`.
fn resolve_user(
    pw: &[(String, u32, u32, String)],
    user: &crate::runtime::sync::UserCfg,
) -> Result<(u32, Option<String>, Option<u32>, String), StepError> {
    Ok(match &user.user {
        IdOrNameCfg::Id(uid) => match pw.iter().find(|e| e.1 == *uid) {
            Some(e) => (*uid, Some(e.0.clone()), Some(e.2), e.3.clone()),
            None => (*uid, None, None, "/".to_string()),
        },
        IdOrNameCfg::Name(n) => match pw.iter().find(|e| &e.0 == n) {
            Some(e) => (e.1, Some(e.0.clone()), Some(e.2), e.3.clone()),
            None => {
                return Err(step(
                    "resolving the user",
                    format!("no user `{n}` in the container's /etc/passwd"),
                ))
            }
        },
    })
}

/// Resolves the user, the command path and the environment inside the container.
pub fn prepare(cfg: &ShimConfig) -> Result<Prepared, StepError> {
    let pw = passwd();
    let (uid, name, pw_gid, home) = resolve_user(&pw, &cfg.user)?;
    let grp = groups();
    let gid = match &cfg.user.group {
        Some(IdOrNameCfg::Id(g)) => *g,
        Some(IdOrNameCfg::Name(n)) => {
            grp.iter().find(|g| &g.0 == n).map(|g| g.1).ok_or_else(|| {
                step(
                    "resolving the group",
                    format!("no group `{n}` in the container's /etc/group"),
                )
            })?
        }
        None => pw_gid.unwrap_or(0),
    };
    let mut supplementary: Vec<u32> = match &name {
        Some(n) => grp
            .iter()
            .filter(|g| g.2.iter().any(|m| m == n))
            .map(|g| g.1)
            .collect(),
        None => Vec::new(),
    };
    supplementary.retain(|g| *g != gid);
    supplementary.insert(0, gid);
    supplementary.dedup();

    let env_path = cfg
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| DEFAULT_PATH.to_string());
    let cmd = cfg
        .argv
        .first()
        .ok_or_else(|| step("resolving the command", "empty command"))?;
    let path = if cmd.contains('/') {
        cmd.clone()
    } else {
        env_path
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .find(|p| is_executable(p))
            .ok_or_else(|| {
                step(
                    "resolving the command",
                    format!("`{cmd}` not found in PATH {env_path} inside the container"),
                )
            })?
    };

    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), env_path.clone()),
        (
            "HOME".into(),
            if home.is_empty() { "/".into() } else { home },
        ),
        ("HOSTNAME".into(), cfg.hostname.clone()),
    ];
    for (k, v) in &cfg.env {
        if let Some(e) = env.iter_mut().find(|e| &e.0 == k) {
            e.1 = v.clone();
        } else {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok(Prepared {
        uid,
        gid,
        groups: supplementary,
        path: cstring(&path, "the command path")?,
        argv: cfg
            .argv
            .iter()
            .map(|a| cstring(a, "argv"))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|(k, v)| cstring(&format!("{k}={v}"), "the environment"))
            .collect::<Result<_, _>>()?,
        workdir: cfg.workdir.clone(),
        rlimits: cfg.rlimits.clone(),
        seccomp: cfg.seccomp.clone(),
    })
}

/// Sets one rlimit. A default the shim may not grant (raising a hard limit above superd's own
/// needs CAP_SYS_RESOURCE) is lowered to the current hard limit; an explicit one is an error.
fn set_rlimit(r: &RlimitCfg) -> Result<(), StepError> {
    let set = |soft: u64, hard: u64| {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit(2) with a valid struct.
        if unsafe { libc::setrlimit(r.resource, &lim) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    match set(r.soft, r.hard) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            let mut now = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit(2) into a valid struct.
            unsafe { libc::getrlimit(r.resource, &mut now) };
            if r.explicit {
                return Err(step(
                    format!("setting the {} limit", r.name),
                    format!(
                        "{e}: the hard limit {} is above superd's own ({}), and raising it \
                         needs CAP_SYS_RESOURCE",
                        show_limit(r.hard),
                        show_limit(now.rlim_max)
                    ),
                ));
            }
            let hard = r.hard.min(now.rlim_max);
            set(r.soft.min(hard), hard)
                .map_err(|e| step(format!("setting the {} limit", r.name), e))
        }
        Err(e) => Err(step(format!("setting the {} limit", r.name), e)),
    }
}

fn show_limit(n: u64) -> String {
    if n == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn is_executable(p: &str) -> bool {
    let Ok(c) = CString::new(p) else { return false };
    // SAFETY: valid C string.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Drops the bounding set to the default set (root) or to nothing (non-root). Called in the shim
/// itself before it forks the workload, so neither can regain a dropped capability.
pub fn restrict_bounding(root: bool) -> Result<(), StepError> {
    let keep: CapsHashSet = if root {
        DEFAULT_CAPS.iter().copied().collect()
    } else {
        CapsHashSet::new()
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap)
                .map_err(|e| step(format!("dropping {cap} from the bounding set"), e))?;
        }
    }
    Ok(())
}

/// True when the prepared workload runs as uid 0.
pub fn is_root(p: &Prepared) -> bool {
    p.uid == 0
}

/// Applies identity, capabilities, `no_new_privs` and the working directory, closes every fd
/// above 2, and executes the workload. Only returns on failure.
pub fn exec(p: &Prepared) -> StepError {
    match exec_inner(p) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn exec_inner(p: &Prepared) -> Result<std::convert::Infallible, StepError> {
    let root = p.uid == 0;
    // Before the user changes: RLIMIT_NPROC is checked against the new user at setuid.
    for r in &p.rlimits {
        set_rlimit(r)?;
    }
    restrict_bounding(root)?;
    let groups: Vec<nix::unistd::Gid> = p
        .groups
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&groups).map_err(|e| step("setgroups", e))?;
    nix::unistd::setresgid(
        nix::unistd::Gid::from_raw(p.gid),
        nix::unistd::Gid::from_raw(p.gid),
        nix::unistd::Gid::from_raw(p.gid),
    )
    .map_err(|e| step(format!("setgid {}", p.gid), e))?;
    nix::unistd::setresuid(
        nix::unistd::Uid::from_raw(p.uid),
        nix::unistd::Uid::from_raw(p.uid),
        nix::unistd::Uid::from_raw(p.uid),
    )
    .map_err(|e| step(format!("setuid {}", p.uid), e))?;
    let set: CapsHashSet = if root {
        DEFAULT_CAPS.iter().copied().collect()
    } else {
        CapsHashSet::new()
    };
    caps::clear(None, CapSet::Ambient).map_err(|e| step("clearing ambient capabilities", e))?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new())
        .map_err(|e| step("clearing inheritable capabilities", e))?;
    caps::set(None, CapSet::Effective, &set)
        .map_err(|e| step("setting effective capabilities", e))?;
    caps::set(None, CapSet::Permitted, &set)
        .map_err(|e| step("setting permitted capabilities", e))?;
    nix::sys::prctl::set_no_new_privs().map_err(|e| step("setting no_new_privs", e))?;

    nix::unistd::chdir(p.workdir.as_str()).map_err(|e| step(format!("chdir {}", p.workdir), e))?;
    // CVE-2024-21626: the working directory must be inside the container.
    let cwd = nix::unistd::getcwd().map_err(|e| step("getcwd", e))?;
    if !cwd.starts_with("/") {
        return Err(step(
            "checking the working directory",
            "it is outside the container",
        ));
    }
    // SAFETY: close_range on fds >= 3 of this process; nothing we still need is above 2 except
    // the sync socket, which is close-on-exec anyway and must not reach the workload.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    reset_signals();
    let argv: Vec<&std::ffi::CStr> = p.argv.iter().map(|a| a.as_c_str()).collect();
    let envp: Vec<&std::ffi::CStr> = p.envp.iter().map(|a| a.as_c_str()).collect();
    // Last: from here on only what the filter allows runs, and `execve` is all that is left.
    crate::runtime::seccomp::install(&p.seccomp)
        .map_err(|e| step("installing the seccomp filter", e))?;
    let err = nix::unistd::execve(&p.path, &argv, &envp).err();
    Err(step(
        format!("executing {}", p.path.to_string_lossy()),
        err.map(|e| e.to_string()).unwrap_or_default(),
    ))
}

/// Restores default dispositions for every signal and unblocks them all (Rust ignores SIGPIPE,
/// and ignored signals survive exec).
pub fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: setting SIG_DFL is always valid; invalid numbers just fail with EINVAL.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set built by sigemptyset.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}
