//! The applier runs in a confined child: superd re-executes itself (argv[0]
//! [`UNPACK_ARGV0`]) with the new layer's directory as fd 3, the lower layers as fds 4…, and the
//! uncompressed tar on stdin. The child
//! 1. dies with its parent (`PR_SET_PDEATHSIG`),
//! 2. leaves the host's mount, network and IPC namespaces and chroots into the new layer, so
//!    even a resolution bug can only write inside it,
//! 3. keeps only CHOWN, DAC_OVERRIDE, FOWNER, FSETID, MKNOD and SYS_ADMIN (for the
//!    `trusted.overlay.*` xattrs), with `no_new_privs` and a 1 GiB data limit,
//! 4. prints its [`Stats`] as JSON on stdout, or one error line on stderr.
//!
//! The parent feeds the stream (and hashes it: the DiffID check is the caller's).

use super::apply::{Applier, Stats};
use crate::runtime::reaper::Reaper;
use caps::{CapSet, Capability, CapsHashSet};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// argv[0] of the unpack child.
pub const UNPACK_ARGV0: &str = "superd-unpack";
/// The fd of the new layer's root in the child.
const ROOT_FD: RawFd = 3;
/// Largest reply (stats JSON) and error text read from the child.
const MAX_REPLY: u64 = 256 * 1024;

/// Capabilities the child keeps.
const KEEP: [Capability; 6] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_MKNOD,
    Capability::CAP_SYS_ADMIN,
];

/// Starts unpack children.
#[derive(Debug, Clone)]
pub struct Unpacker {
    exe: std::path::PathBuf,
    reaper: Option<Reaper>,
}

impl Unpacker {
    /// Runs `exe` (normally `/proc/self/exe`) as the child. With a `reaper` (the daemon) its
    /// exit status comes from the reaper; without one (the daemonless import) it is waited for.
    pub fn new(exe: impl Into<std::path::PathBuf>, reaper: Option<Reaper>) -> Unpacker {
        Unpacker {
            exe: exe.into(),
            reaper,
        }
    }

    /// Applies the tar `input` into the empty directory `target` over `lowers` (top first).
    /// Blocks; call from a blocking thread.
    pub fn apply(
        &self,
        target: &Path,
        lowers: &[std::path::PathBuf],
        input: &mut dyn Read,
    ) -> Result<Stats, String> {
        let open = |p: &Path| -> Result<OwnedFd, String> {
            let f = std::fs::File::open(p).map_err(|e| format!("opening {}: {e}", p.display()))?;
            // Out of the way of 0..=3+n, where pre_exec puts them.
            dup_high(&OwnedFd::from(f)).map_err(|e| format!("dup {}: {e}", p.display()))
        };
        let mut fds = vec![open(target)?];
        for l in lowers {
            fds.push(open(l)?);
        }
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut cmd = Command::new(&self.exe);
        cmd.arg0(UNPACK_ARGV0)
            .arg(lowers.len().to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only calls dup2, which
        // is async-signal-safe; the source fds are open (owned by `fds`, alive until spawn
        // returns) and above the targets, so no dup2 clobbers a later source.
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, ROOT_FD + i as RawFd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let (mut child, exit) = match &self.reaper {
            Some(r) => {
                let mut child = None;
                let (_pid, rx) = r
                    .spawn_with(|| {
                        let c = cmd.spawn()?;
                        let pid = c.id() as i32;
                        child = Some(c);
                        Ok::<i32, io::Error>(pid)
                    })
                    .map_err(|e| format!("starting the unpack child: {e}"))?;
                let child = child.ok_or("the unpack child did not start")?;
                (child, Some(rx))
            }
            None => (
                cmd.spawn()
                    .map_err(|e| format!("starting the unpack child: {e}"))?,
                None,
            ),
        };
        drop(fds);
        let fed = match child.stdin.take() {
            Some(mut stdin) => io::copy(input, &mut stdin).map(drop),
            None => Err(io::Error::other("no stdin")),
        };
        let mut out = Vec::new();
        let mut errs = Vec::new();
        if let Some(s) = child.stdout.take() {
            let _ = s.take(MAX_REPLY).read_to_end(&mut out);
        }
        if let Some(s) = child.stderr.take() {
            let _ = s.take(MAX_REPLY).read_to_end(&mut errs);
        }
        let status = match exit {
            Some(rx) => {
                drop(child); // the reaper owns its exit status
                rx.blocking_recv()
                    .map_err(|_| "the reaper dropped the unpack child's status".to_string())?
            }
            None => {
                use std::os::unix::process::ExitStatusExt;
                child
                    .wait()
                    .map_err(|e| format!("waiting for the unpack child: {e}"))?
                    .into_raw()
            }
        };
        let errs = String::from_utf8_lossy(&errs).trim().to_string();
        if status != 0 {
            let (code, sig) = crate::runtime::reaper::decode(status);
            return Err(if errs.is_empty() {
                format!("the unpack child failed (exit {code:?}, signal {sig:?})")
            } else {
                errs
            });
        }
        if let Err(e) = fed {
            // The child succeeded, so it read everything; an input error is the source's.
            return Err(format!("reading the layer: {e}"));
        }
        serde_json::from_slice(&out).map_err(|e| format!("the unpack child's reply: {e}"))
    }
}

fn dup_high(fd: &OwnedFd) -> io::Result<OwnedFd> {
    crate::runtime::sys::dup_above(fd, 100)
}

/// The child's whole life (never returns).
pub fn child_main() -> ! {
    let code = match child() {
        Ok(stats) => {
            let json = serde_json::to_vec(&stats).unwrap_or_default();
            let mut out = io::stdout();
            if out.write_all(&json).and_then(|()| out.flush()).is_ok() {
                0
            } else {
                1
            }
        }
        Err(e) => {
            let mut e = e;
            e.truncate(8192);
            let _ = writeln!(io::stderr(), "{e}");
            1
        }
    };
    std::process::exit(code)
}

fn child() -> Result<Stats, String> {
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .filter(|n| *n <= 1024)
        .ok_or("usage: superd-unpack N (internal)")?;
    confine()?;
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("opening the layer root: {e}"))?;
    let lowers = (0..n)
        // SAFETY: the parent put the lower layers' directory fds at 4..4+n; we own them.
        .map(|i| unsafe { OwnedFd::from_raw_fd(ROOT_FD + 1 + i as RawFd) })
        .collect();
    let mut stdin = io::stdin().lock();
    let stats = super::apply_stream(&mut stdin, Applier::new(root, lowers))?;
    // Whatever follows the end-of-archive blocks is part of the DiffID: let it all through.
    io::copy(&mut stdin, &mut io::sink()).map_err(|e| format!("reading the layer: {e}"))?;
    Ok(stats)
}

fn confine() -> Result<(), String> {
    use nix::sched::{unshare, CloneFlags};
    let step = |what: &'static str| move |e: nix::Error| format!("unpack sandbox: {what}: {e}");
    unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC)
        .map_err(step("unshare"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(step("making / private"))?;
    // SAFETY: ROOT_FD is the directory fd the parent passed; fchdir only reads it.
    if unsafe { libc::fchdir(ROOT_FD) } != 0 {
        return Err(format!(
            "unpack sandbox: fchdir: {}",
            io::Error::last_os_error()
        ));
    }
    nix::unistd::chroot(".").map_err(step("chroot"))?;
    nix::unistd::chdir("/").map_err(step("chdir"))?;
    // The root fd itself is not needed any more (we reopen "/").
    // SAFETY: closing the inherited fd 3, which nothing else uses.
    unsafe { libc::close(ROOT_FD) };
    let limit = 1 << 30;
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, limit, limit)
        .map_err(step("RLIMIT_DATA"))?;
    let keep: CapsHashSet = KEEP.into_iter().collect();
    let capfail = |what: &'static str| {
        move |e: caps::errors::CapsError| format!("unpack sandbox: {what}: {e}")
    };
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(capfail("bounding set"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(capfail("ambient set"))?;
    caps::set(None, CapSet::Inheritable, &CapsHashSet::new()).map_err(capfail("inheritable"))?;
    caps::set(None, CapSet::Effective, &keep).map_err(capfail("effective"))?;
    caps::set(None, CapSet::Permitted, &keep).map_err(capfail("permitted"))?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "unpack sandbox: no_new_privs: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(())
}
