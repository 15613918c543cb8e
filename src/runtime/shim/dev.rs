//! The container's `/dev`: a fresh tmpfs with only the standard nodes (SECURITY.md), devpts
//! with its own instance, a sized `/dev/shm`, and a POSIX message queue filesystem for the
//! container's own IPC namespace at `/dev/mqueue`.

use super::rootfs::{mnt, reopen_dir, Ctx, Result, StepError};
use crate::runtime::sync::ShimConfig;
use crate::runtime::sys::{lstat_at, mkdir_at, openat_nofollow};
use nix::mount::MsFlags;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Mounts a fresh tmpfs on /dev with only the standard nodes; returns an fd of its null device.
pub(super) fn build(rootfd: RawFd, dev: &OwnedFd, cfg: &ShimConfig) -> Result<OwnedFd> {
    mnt(
        "tmpfs",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=65536k"),
    )
    .ctx(|| "mounting /dev".into())?;
    let dev = reopen_dir(rootfd, "dev").ctx(|| "opening /dev".into())?;
    // O_PATH fds cannot be used for mknodat's dirfd on all kernels: use a real directory fd.
    let devdir = openat_nofollow(dev.as_raw_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY)
        .ctx(|| "opening /dev".into())?;
    let d = devdir.as_raw_fd();
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0) };
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let c = std::ffi::CString::new(name).ctx(|| "node name".into())?;
        // SAFETY: valid C string, dirfd owned by us.
        let r = unsafe {
            libc::mknodat(
                d,
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        if r < 0 {
            // SAFETY: restoring the umask.
            unsafe { libc::umask(old) };
            return Err(StepError::new(
                format!("creating /dev/{name}"),
                io::Error::last_os_error(),
            ));
        }
    }
    let made = own_devices(d, &cfg.devices);
    // SAFETY: restoring the umask.
    unsafe { libc::umask(old) };
    made?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        nix::unistd::symlinkat(target, &devdir, link).ctx(|| format!("creating /dev/{link}"))?;
    }
    for sub in ["pts", "shm"] {
        mkdir_at(d, sub, 0o755).ctx(|| format!("creating /dev/{sub}"))?;
    }
    let pts = reopen_dir(d, "pts").ctx(|| "opening /dev/pts".into())?;
    mnt(
        "devpts",
        &pts,
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .ctx(|| "mounting /dev/pts".into())?;
    let shm = reopen_dir(d, "shm").ctx(|| "opening /dev/shm".into())?;
    mnt(
        "shm",
        &shm,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(&format!("mode=1777,size={}", cfg.tmpfs.shm)),
    )
    .ctx(|| "mounting /dev/shm".into())?;
    // POSIX message queues of the container's own IPC namespace (as runc and podman mount).
    mkdir_at(d, "mqueue", 0o755).ctx(|| "creating /dev/mqueue".into())?;
    let mq = reopen_dir(d, "mqueue").ctx(|| "opening /dev/mqueue".into())?;
    mnt(
        "mqueue",
        &mq,
        "mqueue",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .ctx(|| "mounting /dev/mqueue".into())?;
    let null = openat_nofollow(d, "null", libc::O_PATH).ctx(|| "opening /dev/null".into())?;
    let st = lstat_at(null.as_raw_fd(), "").ctx(|| "stat /dev/null".into())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(StepError::new(
            "checking /dev/null",
            "not the character device 1:3",
        ));
    }
    Ok(null)
}

/// Creates the device nodes the manifest opts into (`[security] devices`), with their
/// directories (`net/` for `net/tun`), at the host node's mode.
fn own_devices(dev: RawFd, nodes: &[crate::runtime::sync::DeviceNodeCfg]) -> Result<()> {
    for n in nodes {
        let parts: Vec<&str> = n.rel.split('/').collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == "..")
        {
            return Err(StepError::new(
                "creating a device node",
                format!("bad path /dev/{}", n.rel),
            ));
        }
        let (name, dirs) = parts.split_last().unwrap_or((&"", &[]));
        let mut parent = openat_nofollow(dev, ".", libc::O_RDONLY | libc::O_DIRECTORY)
            .ctx(|| "opening /dev".into())?;
        for d in dirs {
            match mkdir_at(parent.as_raw_fd(), d, 0o755) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(StepError::new(format!("creating /dev/{d}"), e))
                }
                _ => {}
            }
            parent = openat_nofollow(parent.as_raw_fd(), d, libc::O_RDONLY | libc::O_DIRECTORY)
                .ctx(|| format!("opening /dev/{d}"))?;
        }
        let c = std::ffi::CString::new(*name).ctx(|| "device name".into())?;
        let kind = if n.block {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        };
        // SAFETY: valid C string and a directory fd we own.
        let r = unsafe {
            libc::mknodat(
                parent.as_raw_fd(),
                c.as_ptr(),
                kind | (n.mode & 0o777),
                libc::makedev(n.major, n.minor),
            )
        };
        if r < 0 {
            return Err(StepError::new(
                format!("creating /dev/{}", n.rel),
                io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
