//! Thin, safe wrappers over the syscalls that nix 0.31 does not cover: `openat2`, the new mount
//! API (`open_tree`, `mount_setattr`, `move_mount`, `fsopen`/`fsconfig`/`fsmount`), `execveat`
//! and sealed memfds.
//!
//! Everything that touches a path under a workload's rootfs goes through file descriptors
//! (SECURITY.md, "Paths are file descriptors").

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens `path` relative to `dirfd` as if `dirfd` were `/`: `..` and absolute symlinks cannot
/// escape it (`RESOLVE_IN_ROOT`), and magic links (`/proc/self/fd/N`) are refused.
pub fn openat_in_root(dirfd: RawFd, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: open_how is plain old data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `p` is a valid NUL-terminated string and `how` a fully initialised struct whose
    // size we pass; the kernel returns a new fd or -1.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: the fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Reads at most `max` bytes of the regular file `path`, opened once without blocking (a
/// FIFO or device put there must not wedge superd) and checked through that fd; with
/// `nofollow` a final symlink is refused.
pub fn read_regular(path: &std::path::Path, max: u64, nofollow: bool) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A close-on-exec duplicate of `fd` numbered `min` or above (out of the way of the low fds
/// a child's `pre_exec` puts its own in place of).
pub fn dup_above(fd: &OwnedFd, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd we then own, or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A pidfd for `pid`, or `None` when no such process exists (or pidfds are unsupported).
pub fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open(2) takes no pointers; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a fresh fd from the kernel, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `name` (one path component, no symlink following) relative to `dirfd`.
pub fn openat_nofollow(dirfd: RawFd, name: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstr(name)?;
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = unsafe {
        libc::openat(
            dirfd,
            p.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens a host path with `O_PATH` (no symlink following on the last component).
pub fn open_path(path: &str, extra: libc::c_int) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | extra) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstatat(dirfd, name, AT_SYMLINK_NOFOLLOW)`; `name` empty means the fd itself.
pub fn lstat_at(dirfd: RawFd, name: &str) -> io::Result<libc::stat> {
    let p = cstr(name)?;
    let flags = if name.is_empty() {
        libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH
    } else {
        libc::AT_SYMLINK_NOFOLLOW
    };
    // SAFETY: `st` is plain old data the kernel fills in; the path is a valid C string.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let r = unsafe { libc::fstatat(dirfd, p.as_ptr(), &mut st, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `mkdirat` relative to a directory fd; an existing directory is fine.
pub fn mkdir_at(dirfd: RawFd, name: &str, mode: libc::mode_t) -> io::Result<()> {
    let p = cstr(name)?;
    // SAFETY: valid C string.
    if unsafe { libc::mkdirat(dirfd, p.as_ptr(), mode) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    }
    Ok(())
}

/// `open_tree(dirfd, "", OPEN_TREE_CLONE [| AT_RECURSIVE])`: a detached copy of the mount at `fd`.
pub fn clone_tree(fd: RawFd, recursive: bool) -> io::Result<OwnedFd> {
    let empty = c"";
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    // SAFETY: empty C string with AT_EMPTY_PATH refers to `fd` itself; returns a new fd or -1.
    let r = check(unsafe { libc::syscall(libc::SYS_open_tree, fd, empty.as_ptr(), flags) })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Sets mount attributes (e.g. `MOUNT_ATTR_RDONLY`) on the mount at `fd`, optionally recursively.
pub fn set_mount_attr(fd: RawFd, attr_set: u64, recursive: bool) -> io::Result<()> {
    let empty = c"";
    let attr = libc::mount_attr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `attr` is initialised and its size passed; the path is empty with AT_EMPTY_PATH.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            empty.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })?;
    Ok(())
}

/// Attaches the detached mount `from` onto the directory or file open as `to`.
pub fn move_mount_fd(from: RawFd, to: RawFd) -> io::Result<()> {
    let empty = c"";
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both paths are empty C strings referring to the fds themselves.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            empty.as_ptr(),
            to,
            empty.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// What the kernel logged into a filesystem context (`e overlayfs: ...` lines), for errors.
fn fs_context_log(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: reads into a buffer of its own length; the fd is an fs context.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        out.push(String::from_utf8_lossy(&buf[..n]).trim().to_string());
    }
    out.join("; ")
}

/// One `fsconfig(FSCONFIG_SET_STRING)`.
fn fsconfig_string(fd: &OwnedFd, key: &str, value: &str) -> io::Result<()> {
    let (k, v) = (cstr(key)?, cstr(value)?);
    // SAFETY: two valid C strings; aux is 0 for FSCONFIG_SET_STRING.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// Whether the running kernel's overlayfs takes `lowerdir+` (Linux 6.8). Decided by the
/// release, not by a probe: before 6.5 overlayfs parses options the legacy way, so a probe
/// only fails at create time and logs a kernel error on every start.
pub fn has_lowerdir_plus() -> bool {
    let Ok(u) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = u.release().to_string_lossy().into_owned();
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let minor: u32 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 8)
}

/// An overlay made with the new mount API, one `lowerdir+` per layer (`lowers` top first),
/// so the layer count is not bounded by one page of mount options; `MOUNT_ATTR_NODEV`.
/// Returns the detached mount, or `None` when this kernel turns the API down (EINVAL from
/// an older overlayfs, ENOSYS): then mount(2) is the way.
pub fn overlay_by_fsconfig(
    lowers: &[String],
    upper: &str,
    work: &str,
) -> io::Result<Option<OwnedFd>> {
    let name = c"overlay";
    // SAFETY: a valid C string and flags; returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOSYS) => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: fresh fd from the kernel.
    let fc = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    let fail = |what: String, e: io::Error| {
        let log = fs_context_log(&fc);
        let why = if log.is_empty() {
            e.to_string()
        } else {
            format!("{e} ({log})")
        };
        io::Error::new(e.kind(), format!("{what}: {why}"))
    };
    for (i, l) in lowers.iter().enumerate() {
        if let Err(e) = fsconfig_string(&fc, "lowerdir+", l) {
            if i == 0 && e.raw_os_error() == Some(libc::EINVAL) {
                // An unknown key: an older kernel.
                return Ok(None);
            }
            return Err(fail(
                format!("adding layer {} of {}", i + 1, lowers.len()),
                e,
            ));
        }
    }
    fsconfig_string(&fc, "upperdir", upper).map_err(|e| fail("upperdir".into(), e))?;
    fsconfig_string(&fc, "workdir", work).map_err(|e| fail("workdir".into(), e))?;
    // SAFETY: no key or value for FSCONFIG_CMD_CREATE.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fc.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })
    .map_err(|e| fail("creating the overlay".into(), e))?;
    // SAFETY: an fs context fd in the created state; returns a new mount fd or -1.
    let m = check(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fc.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            libc::MOUNT_ATTR_NODEV,
        )
    })
    .map_err(|e| fail("fsmount".into(), e))?;
    // SAFETY: fresh fd from the kernel.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(m as RawFd) }))
}

/// The `/proc/self/fd/N` path of an fd, for the legacy `mount(2)` calls that need a path. The
/// target is the inode already open, so no path is re-resolved.
pub fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Creates a sealed, close-on-exec memfd copy of the running executable (CVE-2019-5736: the
/// container can never reach a writable host binary through `/proc/1/exe`).
pub fn sealed_self_copy() -> io::Result<OwnedFd> {
    use std::io::{Read, Write};
    let name = c"superd-init";
    // SAFETY: valid C string; returns a new fd or -1.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut src = std::fs::File::open("/proc/self/exe")?;
    let mut dst = std::fs::File::from(memfd.try_clone()?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on an fd we own.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(memfd)
}

/// Writes `data` to a file (no create, no truncate), used for procfs/cgroupfs control files.
pub fn write_file(path: &str, data: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data.as_bytes())
}
