//! Builds the container's root filesystem inside the shim's private mount namespace and pivots
//! into it. Every path under the rootfs is reached through fds (SECURITY.md).

use crate::runtime::sync::{MountCfg, ShimConfig};
use crate::runtime::sys::{
    clone_tree, fd_path, has_lowerdir_plus, lstat_at, mkdir_at, move_mount_fd, open_path,
    openat_in_root, openat_nofollow, overlay_by_fsconfig, set_mount_attr,
};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A failed setup step: what was being done and why it failed.
#[derive(Debug)]
pub struct StepError {
    /// The step, e.g. `mounting /proc`.
    pub step: String,
    /// The error.
    pub message: String,
}

impl StepError {
    pub(super) fn new(step: impl Into<String>, e: impl std::fmt::Display) -> Self {
        StepError {
            step: step.into(),
            message: e.to_string(),
        }
    }
}

pub(super) type Result<T> = std::result::Result<T, StepError>;

pub(super) trait Ctx<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T>;
}
impl<T, E: std::fmt::Display> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StepError::new(step(), e))
    }
}

/// `statfs.f_type` of a procfs.
pub(crate) const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// Paths masked with an empty read-only tmpfs (dirs) or /dev/null (files).
pub const MASKED: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/sched_debug",
    "proc/scsi",
    "proc/timer_list",
    "proc/timer_stats",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Read-only and no device nodes: every mount but the container's own /dev.
pub(super) const RDONLY_NODEV: u64 = libc::MOUNT_ATTR_RDONLY | libc::MOUNT_ATTR_NODEV;

/// Paths made read-only.
pub const READONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

pub(super) fn mnt(
    src: &str,
    target: &impl AsRawFd,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    mount(
        Some(src),
        fd_path(target).as_str(),
        Some(fstype),
        flags,
        data,
    )
}

pub(super) fn reopen_dir(parent: RawFd, name: &str) -> io::Result<OwnedFd> {
    openat_nofollow(parent, name, libc::O_PATH | libc::O_DIRECTORY)
}

fn is_symlink(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Mounts on `mountpoint` an overlay of the one directory `lower` whose upper and work
/// directories are the scratch tmpfs's.
pub(super) fn overlay_on_scratch(
    lower: &OwnedFd,
    scratch: &OwnedFd,
    mountpoint: &OwnedFd,
) -> io::Result<()> {
    let upper = reopen_dir(scratch.as_raw_fd(), "upper")?;
    let work = reopen_dir(scratch.as_raw_fd(), "work")?;
    let opts = overlay_options(&[fd_path(lower)], &upper, &work);
    mnt(
        "overlay",
        mountpoint,
        "overlay",
        MsFlags::MS_NODEV,
        Some(&opts),
    )?;
    Ok(())
}

/// mount(2) options of an overlay: `lowers` top first, upper and work named by fd.
fn overlay_options(lowers: &[String], upper: &OwnedFd, work: &OwnedFd) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        fd_path(upper),
        fd_path(work)
    )
}

/// The longest option string `mount(2)` takes (one page, less the kernel's own use).
const MAX_MOUNT_OPTIONS: usize = 4095;

/// Mounts an image's layers (top first) on `mountpoint`: an overlay whose upper layer is on
/// the scratch tmpfs. A read-only image gets the same overlay, so that the mountpoints superd
/// needs (`/proc`, `/dev`, volume targets…) can be made where the image lacks them, and the
/// root is made read-only once they exist ([`build`]). Layers are named by fd
/// (`/proc/self/fd/N`), which fits about 220 of them in one page.
fn mount_image(cfg: &ShimConfig, scratch: &OwnedFd, mountpoint: &OwnedFd) -> Result<()> {
    let mut fds = Vec::with_capacity(cfg.layers.len());
    for l in &cfg.layers {
        fds.push(open_path(l, libc::O_DIRECTORY).ctx(|| format!("opening image layer {l}"))?);
    }
    // Held until the mount is made: the options name them by fd.
    let upper = reopen_dir(scratch.as_raw_fd(), "upper").ctx(|| "opening upper".into())?;
    let work = reopen_dir(scratch.as_raw_fd(), "work").ctx(|| "opening work".into())?;
    let lower: Vec<String> = fds.iter().map(fd_path).collect();
    let what = || format!("mounting the overlay of {} image layers", fds.len());
    // Linux >= 6.8: one `lowerdir+` per layer, up to overlayfs's 500.
    if has_lowerdir_plus() {
        match overlay_by_fsconfig(&lower, &fd_path(&upper), &fd_path(&work)) {
            Ok(Some(m)) => {
                return move_mount_fd(m.as_raw_fd(), mountpoint.as_raw_fd()).ctx(what);
            }
            Ok(None) => {}
            Err(e) => return Err(e).ctx(what),
        }
    }
    // Older kernels: mount(2), whose options must fit in a page.
    let opts = overlay_options(&lower, &upper, &work);
    if opts.len() > MAX_MOUNT_OPTIONS {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        return Err(StepError::new(
            "mounting the image",
            format!(
                "the image has {} layers: more than this kernel ({kernel}) takes through \
                 mount(2) (about 220; Linux 6.8 and later take 500)",
                fds.len()
            ),
        ));
    }
    mnt(
        "overlay",
        mountpoint,
        "overlay",
        MsFlags::MS_NODEV,
        Some(&opts),
    )
    .ctx(what)
}

/// Builds the rootfs and pivots into it. On return the process's `/` is the container root.
pub fn build(cfg: &ShimConfig) -> Result<()> {
    // Nothing we mount may propagate back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .ctx(|| "making / rslave".into())?;

    // A scratch tmpfs holds the new root's mountpoint and the overlay's upper and work dirs.
    mount(
        Some("superd-scratch"),
        cfg.scratch_dir.as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=0700,size={}", cfg.tmpfs.root).as_str()),
    )
    .ctx(|| format!("mounting the scratch tmpfs on {}", cfg.scratch_dir))?;
    mount(
        None::<&str>,
        cfg.scratch_dir.as_str(),
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .ctx(|| "making the scratch tmpfs private".into())?;
    let scratch = open_path(&cfg.scratch_dir, libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .ctx(|| format!("opening {}", cfg.scratch_dir))?;
    for d in ["root", "upper", "work"] {
        mkdir_at(scratch.as_raw_fd(), d, 0o755).ctx(|| format!("creating scratch/{d}"))?;
    }
    let mountpoint =
        reopen_dir(scratch.as_raw_fd(), "root").ctx(|| "opening scratch/root".into())?;

    match &cfg.rootfs {
        None if !cfg.layers.is_empty() => mount_image(cfg, &scratch, &mountpoint)?,
        None if cfg.writable => super::hostroot::mount(&cfg.scratch_dir, &scratch, &mountpoint)?,
        None => {
            let host = open_path("/", libc::O_DIRECTORY).ctx(|| "opening /".into())?;
            let tree = clone_tree(host.as_raw_fd(), true).ctx(|| "cloning the host root".into())?;
            set_mount_attr(tree.as_raw_fd(), RDONLY_NODEV, true)
                .ctx(|| "making the host root read-only".into())?;
            move_mount_fd(tree.as_raw_fd(), mountpoint.as_raw_fd())
                .ctx(|| "attaching the host root".into())?;
        }
        Some(dir) => {
            let lower =
                open_path(dir, libc::O_DIRECTORY).ctx(|| format!("opening rootfs {dir}"))?;
            if cfg.writable {
                overlay_on_scratch(&lower, &scratch, &mountpoint)
                    .ctx(|| format!("mounting the overlay over {dir}"))?;
            } else {
                let tree = clone_tree(lower.as_raw_fd(), true).ctx(|| format!("cloning {dir}"))?;
                set_mount_attr(tree.as_raw_fd(), RDONLY_NODEV, true)
                    .ctx(|| format!("making {dir} read-only"))?;
                move_mount_fd(tree.as_raw_fd(), mountpoint.as_raw_fd())
                    .ctx(|| format!("attaching {dir}"))?;
            }
        }
    }
    // The fd above still names the covered directory: open the new mount.
    let root = reopen_dir(scratch.as_raw_fd(), "root").ctx(|| "opening the new root".into())?;
    let rootfd = root.as_raw_fd();
    // Where missing mountpoints may be made: a writable root, or an image's overlay (made
    // read-only below once they exist).
    let image_readonly = !cfg.layers.is_empty() && !cfg.writable;
    let scaffold = cfg.writable || !cfg.layers.is_empty();

    let proc_dir = special_dir(rootfd, "proc", scaffold)?;
    mnt(
        "proc",
        &proc_dir,
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .ctx(|| "mounting /proc".into())?;
    let proc_mnt = reopen_dir(rootfd, "proc").ctx(|| "opening the new /proc".into())?;
    let st = nix::sys::statfs::fstatfs(&proc_mnt).ctx(|| "statfs /proc".into())?;
    if st.filesystem_type().0 != PROC_SUPER_MAGIC {
        return Err(StepError::new("checking /proc", "not a procfs"));
    }

    let dev = special_dir(rootfd, "dev", scaffold)?;
    let dev_null = super::dev::build(rootfd, &dev, cfg)?;

    let sys_dir = special_dir(rootfd, "sys", scaffold)?;
    mount_sysfs(rootfd, &sys_dir)?;

    // Sized: their pages count against the workload's memory, and unsized each could take
    // half of the host's RAM.
    for (d, mode, size) in [
        ("tmp", "1777", cfg.tmpfs.tmp),
        ("run", "0755", cfg.tmpfs.run),
    ] {
        let dir = special_dir(rootfd, d, scaffold)?;
        mnt(
            "tmpfs",
            &dir,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&format!("mode={mode},size={size}")),
        )
        .ctx(|| format!("mounting /{d}"))?;
    }

    super::cgroupfs::mount(rootfd, &cfg.cgroupfs)?;

    // Host secrets and superd's own files, hidden from a host-root workload before the bind
    // mounts, so that an explicit mount of one brings it back.
    for path in &cfg.hide {
        mask(rootfd, path.trim_start_matches('/'), &dev_null)?;
    }

    for m in &cfg.mounts {
        bind_mount(rootfd, m)?;
    }
    super::volumes::mount_all(rootfd, cfg)?;

    for path in MASKED {
        mask(rootfd, path, &dev_null)?;
    }
    for path in READONLY {
        match openat_in_root(rootfd, path, libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => {
                let tree = clone_tree(fd.as_raw_fd(), true).ctx(|| format!("cloning /{path}"))?;
                set_mount_attr(tree.as_raw_fd(), libc::MOUNT_ATTR_RDONLY, true)
                    .ctx(|| format!("making /{path} read-only"))?;
                move_mount_fd(tree.as_raw_fd(), fd.as_raw_fd())
                    .ctx(|| format!("remounting /{path} read-only"))?;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(StepError::new(format!("opening /{path}"), e)),
        }
    }

    if image_readonly {
        // Only the root's own mount: /tmp, /run, volumes and tmpfs mounts keep theirs.
        set_mount_attr(rootfd, RDONLY_NODEV, false)
            .ctx(|| "making the image's root read-only".into())?;
    }

    nix::unistd::sethostname(&cfg.hostname).ctx(|| format!("setting hostname {}", cfg.hostname))?;

    // pivot_root(".", ".") stacks the old root on top of the new one; detach it at once.
    nix::unistd::fchdir(&root).ctx(|| "entering the new root".into())?;
    nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    if cfg.writable && cfg.workdir != "/" {
        // Docker's WORKDIR rule: a missing working directory is made (in the tmpfs upper).
        // We are inside the container's root now, so nothing outside it can be reached.
        std::fs::create_dir_all(&cfg.workdir)
            .ctx(|| format!("creating the working directory {}", cfg.workdir))?;
    }
    Ok(())
}

/// Opens `/proc`, `/sys`, `/dev`, `/tmp` or `/run` in the new root, refusing symlinks
/// (CVE-2019-19921 and friends) and creating the directory when the rootfs is writable.
fn special_dir(rootfd: RawFd, name: &str, writable: bool) -> Result<OwnedFd> {
    match lstat_at(rootfd, name) {
        Ok(st) if is_symlink(&st) => {
            return Err(StepError::new(
                format!("checking /{name}"),
                format!("the rootfs's /{name} is a symlink; refusing to mount over it"),
            ))
        }
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => {
            return Err(StepError::new(
                format!("checking /{name}"),
                format!("the rootfs's /{name} is not a directory"),
            ))
        }
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) && writable => {
            mkdir_at(rootfd, name, 0o755).ctx(|| format!("creating /{name}"))?;
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(StepError::new(
                format!("checking /{name}"),
                format!(
                "the rootfs has no /{name} and is read-only (create the directory in the rootfs)"
            ),
            ))
        }
        Err(e) => return Err(StepError::new(format!("checking /{name}"), e)),
    }
    reopen_dir(rootfd, name).ctx(|| format!("opening /{name}"))
}

/// Masks `path` (relative to the root): an empty read-only tmpfs on a directory, /dev/null on a
/// file. Missing paths are fine.
pub(super) fn mask(rootfd: RawFd, path: &str, dev_null: &OwnedFd) -> Result<()> {
    let fd = match openat_in_root(rootfd, path, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(StepError::new(format!("opening /{path} to mask it"), e)),
    };
    let st = lstat_at(fd.as_raw_fd(), "").ctx(|| format!("stat /{path}"))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        mnt(
            "tmpfs",
            &fd,
            "tmpfs",
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0"),
        )
        .ctx(|| format!("masking /{path}"))?;
    } else {
        let tree = clone_tree(dev_null.as_raw_fd(), false).ctx(|| "cloning /dev/null".into())?;
        move_mount_fd(tree.as_raw_fd(), fd.as_raw_fd()).ctx(|| format!("masking /{path}"))?;
    }
    Ok(())
}

/// Mounts a read-only sysfs on `/sys`. sysfs has one superblock per network namespace, and
/// the kernel refuses (EBUSY) to mount a superblock on top of itself: that happens when the
/// workload shares the host's network namespace (`mode = "host"`) on the host root, whose
/// clone brought the host's own `/sys` along. Then that `/sys` (with whatever is mounted below
/// it) is detached first, and a fresh read-only sysfs takes its place.
fn mount_sysfs(rootfd: RawFd, sys_dir: &OwnedFd) -> Result<()> {
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mnt("sysfs", sys_dir, "sysfs", flags, None) {
        Ok(()) => return Ok(()),
        Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => return Err(StepError::new("mounting /sys", e)),
    }
    umount2(fd_path(sys_dir).as_str(), MntFlags::MNT_DETACH)
        .ctx(|| "detaching the host's /sys from the container".into())?;
    let sys = reopen_dir(rootfd, "sys").ctx(|| "opening /sys".into())?;
    mnt("sysfs", &sys, "sysfs", flags, None).ctx(|| "mounting /sys".into())
}

/// Bind-mounts a host path onto a target resolved inside the rootfs.
pub(super) fn bind_mount(rootfd: RawFd, m: &MountCfg) -> Result<()> {
    let src = open_path(&m.source, 0).ctx(|| format!("opening mount source {}", m.source))?;
    let st = lstat_at(src.as_raw_fd(), "").ctx(|| format!("stat {}", m.source))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let rel = m.target.trim_start_matches('/');
    let target = match openat_in_root(rootfd, rel, libc::O_PATH) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            match create_target(rootfd, rel, is_dir) {
                Err(e) if m.optional && e.raw_os_error() == Some(libc::EROFS) => {
                    super::logs::shim_message(&format!(
                        "{} is missing in the read-only rootfs; not providing it",
                        m.target
                    ));
                    return Ok(());
                }
                other => other,
            }
            .map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EROFS) {
                    " (the target does not exist and that part of the rootfs is read-only)"
                } else {
                    ""
                };
                StepError::new(
                    format!("creating mount target {}", m.target),
                    format!("{e}{hint}"),
                )
            })?
        }
        Err(e) => {
            return Err(StepError::new(
                format!("opening mount target {}", m.target),
                e,
            ))
        }
    };
    let tree = clone_tree(src.as_raw_fd(), true).ctx(|| format!("cloning {}", m.source))?;
    // Device nodes work only in the container's own /dev ([security] devices).
    let attrs = if m.readonly {
        RDONLY_NODEV
    } else {
        libc::MOUNT_ATTR_NODEV
    };
    set_mount_attr(tree.as_raw_fd(), attrs, true)
        .ctx(|| format!("setting the mount options of {}", m.target))?;
    move_mount_fd(tree.as_raw_fd(), target.as_raw_fd())
        .ctx(|| format!("mounting {} on {}", m.source, m.target))
}

/// The directory `target` in the root, created (as a bind-mount target is) when missing.
pub(super) fn mount_target_dir(rootfd: RawFd, target: &str) -> Result<OwnedFd> {
    let rel = target.trim_start_matches('/');
    match openat_in_root(rootfd, rel, libc::O_PATH | libc::O_DIRECTORY) {
        Ok(fd) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => create_target(rootfd, rel, true)
            .map_err(|e| {
                let hint = if e.raw_os_error() == Some(libc::EROFS) {
                    " (it does not exist and that part of the rootfs is read-only)"
                } else {
                    ""
                };
                StepError::new(format!("creating {target}"), format!("{e}{hint}"))
            }),
        Err(e) => Err(StepError::new(format!("opening {target}"), e)),
    }
}

/// Creates the missing components of `rel` inside the root, like `mkdir -p` with every
/// symlink resolved as if the root were `/` (runc's `MkdirAllInRoot`): `..` stops at the root
/// and absolute links restart from it. The last component becomes an empty file when the mount
/// source is a file.
fn create_target(rootfd: RawFd, rel: &str, is_dir: bool) -> io::Result<OwnedFd> {
    let mut todo: std::collections::VecDeque<String> = rel
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let dir = openat_in_root(rootfd, &rel_path(&done), libc::O_RDONLY | libc::O_DIRECTORY)?;
        match lstat_at(dir.as_raw_fd(), &c) {
            Ok(st) if is_symlink(&st) => {
                links += 1;
                if links > 40 {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = nix::fcntl::readlinkat(&dir, c.as_str())?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                for (i, t) in target.split('/').filter(|t| !t.is_empty()).enumerate() {
                    todo.insert(i, t.to_string());
                }
            }
            Ok(_) => done.push(c),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if todo.is_empty() && !is_dir {
                    let flags = nix::fcntl::OFlag::O_CREAT
                        | nix::fcntl::OFlag::O_EXCL
                        | nix::fcntl::OFlag::O_WRONLY
                        | nix::fcntl::OFlag::O_CLOEXEC
                        | nix::fcntl::OFlag::O_NOFOLLOW;
                    let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
                    drop(nix::fcntl::openat(&dir, c.as_str(), flags, mode)?);
                } else {
                    mkdir_at(dir.as_raw_fd(), &c, 0o755)?;
                }
                done.push(c);
            }
            Err(e) => return Err(e),
        }
    }
    openat_in_root(rootfd, &rel_path(&done), libc::O_PATH)
}

/// Joins resolved components into a path relative to the root (`.` for the root itself).
fn rel_path(components: &[String]) -> String {
    if components.is_empty() {
        ".".to_string()
    } else {
        components.join("/")
    }
}
