//! `/sys/fs/cgroup` in the container: the workload's own cgroup, read-only. Runtimes such as
//! the JVM, .NET and Go's automaxprocs size themselves from these files. The shim has
//! unshared its cgroup namespace inside the workload's cgroup, so a cgroup filesystem mounted
//! here shows that cgroup as its root.

use super::rootfs::{mnt, reopen_dir, Ctx, Result, StepError};
use crate::runtime::sync::CgroupFsCfg;
use crate::runtime::sys::{mkdir_at, openat_in_root, set_mount_attr};
use nix::mount::MsFlags;
use std::os::fd::{AsRawFd, RawFd};

const FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// Mounts `mounts` at the rootfs's `sys/fs/cgroup` (present in every sysfs).
pub(super) fn mount(rootfd: RawFd, mounts: &[CgroupFsCfg]) -> Result<()> {
    if mounts.is_empty() {
        return Ok(());
    }
    let at = openat_in_root(rootfd, "sys/fs/cgroup", libc::O_PATH | libc::O_DIRECTORY)
        .ctx(|| "opening /sys/fs/cgroup".into())?;
    if let [only] = mounts {
        if only.dir.is_empty() {
            return mnt(&only.fstype, &at, &only.fstype, FLAGS, None)
                .ctx(|| "mounting the cgroup2 filesystem at /sys/fs/cgroup".into());
        }
    }
    // v1: a small tmpfs holding one directory per hierarchy (and a link per controller of a
    // combined one, as hosts have), made read-only once filled.
    mnt(
        "tmpfs",
        &at,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k"),
    )
    .ctx(|| "mounting a tmpfs at /sys/fs/cgroup".into())?;
    let top = openat_in_root(rootfd, "sys/fs/cgroup", libc::O_RDONLY | libc::O_DIRECTORY)
        .ctx(|| "opening /sys/fs/cgroup".into())?;
    for m in mounts {
        if m.dir.is_empty() || m.dir.contains('/') || m.dir.starts_with('.') {
            return Err(StepError::new(
                "mounting /sys/fs/cgroup",
                format!("bad hierarchy directory {:?}", m.dir),
            ));
        }
        mkdir_at(top.as_raw_fd(), &m.dir, 0o755)
            .ctx(|| format!("creating /sys/fs/cgroup/{}", m.dir))?;
        let dir = reopen_dir(top.as_raw_fd(), &m.dir)
            .ctx(|| format!("opening /sys/fs/cgroup/{}", m.dir))?;
        mnt("cgroup", &dir, &m.fstype, FLAGS, Some(&m.options)).ctx(|| {
            format!(
                "mounting the {} cgroup at /sys/fs/cgroup/{}",
                m.options, m.dir
            )
        })?;
        if m.dir.contains(',') {
            for part in m.dir.split(',') {
                if !mounts.iter().any(|o| o.dir == part) {
                    nix::unistd::symlinkat(m.dir.as_str(), &top, part)
                        .ctx(|| format!("linking /sys/fs/cgroup/{part}"))?;
                }
            }
        }
    }
    // `top` names the tmpfs (`at` still names the sysfs directory below it).
    set_mount_attr(top.as_raw_fd(), libc::MOUNT_ATTR_RDONLY, false)
        .ctx(|| "making /sys/fs/cgroup read-only".into())
}
