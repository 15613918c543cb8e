//! What PID-1 mode mounts before anything else runs, and the move out of the initramfs.
//!
//! When `/` is the initramfs (`rootfs`), `pivot_root(2)` fails with EINVAL for every
//! container, so superd first copies the image into a tmpfs and switches root into it, as
//! LinuxKit's init does (then the containers' `pivot_root` works; they never chroot).

use nix::mount::{mount, MsFlags};
use std::io;
use std::path::Path;

/// The mount points listed in `/proc/self/mountinfo`, with their filesystem types.
pub(crate) fn mount_table() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let point = l.split_whitespace().nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split_whitespace().next()?;
            Some((unescape_mount_path(point), fstype.to_string()))
        })
        .collect()
}

/// A mount point as `/proc/self/mounts` writes it, with space, tab, newline and backslash as
/// octal escapes (`\040`), decoded.
fn unescape_mount_path(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                u8::try_from(v).ok()
            });
        match (b[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mounted(point: &str) -> bool {
    mount_table().iter().any(|(p, _)| p == point)
}

/// Mounts `fstype` on `target` unless something is mounted there; creates the directory.
fn ensure(
    source: &str,
    target: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<()> {
    if is_mounted(target) {
        return Ok(());
    }
    std::fs::create_dir_all(target)?;
    mount(Some(source), target, Some(fstype), flags, data).map_err(io::Error::from)
}

/// A tmpfs on the scratch directory `target` (/run, /tmp) unless something is mounted there
/// or it holds files: those belong to someone (a VM's disk, the checkout of a test), and a
/// tmpfs on top would hide them.
fn ensure_scratch(target: &str, mode: &str) -> io::Result<()> {
    if is_mounted(target) || !dir_is_empty(Path::new(target)) {
        return Ok(());
    }
    ensure(
        "tmpfs",
        target,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(mode),
    )
}

/// True for a missing or empty directory.
fn dir_is_empty(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// What [`early_mounts`] did.
#[derive(Debug, Default)]
pub struct EarlyMounts {
    /// One line per problem (none is fatal: PID 1 carries on and reports them).
    pub problems: Vec<String>,
    /// `/` was the initramfs and is now a tmpfs copy of it.
    pub left_initramfs: bool,
}

/// Mounts what is missing — /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run, /tmp and the
/// unified cgroup2 hierarchy at /sys/fs/cgroup with every controller enabled for its
/// subtree — moving out of an initramfs first.
pub fn early_mounts() -> EarlyMounts {
    let mut problems = Vec::new();
    let mut left_initramfs = false;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut step = |what: &str, r: io::Result<()>| {
        if let Err(e) = r {
            problems.push(format!("{what}: {e}"));
        }
    };
    step(
        "mounting /proc",
        ensure(
            "proc",
            "/proc",
            "proc",
            nosuid_nodev | MsFlags::MS_NOEXEC,
            None,
        ),
    );
    if mount_table().iter().any(|(p, t)| p == "/" && t == "rootfs") {
        let r = switch_root_to_tmpfs();
        left_initramfs = r.is_ok();
        step("leaving the initramfs", r);
        step(
            "mounting /proc",
            ensure(
                "proc",
                "/proc",
                "proc",
                nosuid_nodev | MsFlags::MS_NOEXEC,
                None,
            ),
        );
    }
    step(
        "mounting /sys",
        ensure(
            "sysfs",
            "/sys",
            "sysfs",
            nosuid_nodev | MsFlags::MS_NOEXEC,
            None,
        ),
    );
    step(
        "mounting /dev",
        ensure(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        ),
    );
    step(
        "mounting /dev/pts",
        ensure(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("mode=0620,ptmxmode=0666"),
        ),
    );
    step(
        "mounting /dev/shm",
        ensure("shm", "/dev/shm", "tmpfs", nosuid_nodev, Some("mode=1777")),
    );
    step("mounting /run", ensure_scratch("/run", "mode=0755"));
    step("mounting /tmp", ensure_scratch("/tmp", "mode=1777"));
    step("mounting cgroup2", cgroup2());
    EarlyMounts {
        problems,
        left_initramfs,
    }
}

/// The unified hierarchy at /sys/fs/cgroup. When superd mounts it (a machine it boots), it
/// enables every controller for the root's children, one by one so that one the kernel
/// refuses does not cost the others. A hierarchy someone else mounted (a container's, or the
/// host's when superd is PID 1 of a PID namespace) keeps its configuration: its owner decides.
fn cgroup2() -> io::Result<()> {
    let point = "/sys/fs/cgroup";
    if mount_table()
        .iter()
        .any(|(p, t)| p == point && t == "cgroup2")
    {
        return Ok(());
    }
    if is_mounted(point) {
        return Err(io::Error::other(format!(
            "{point} holds something other than cgroup2 (v1?)"
        )));
    }
    std::fs::create_dir_all(point)?;
    mount(
        Some("cgroup2"),
        point,
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("nsdelegate"),
    )
    .map_err(io::Error::from)?;
    let available = std::fs::read_to_string(format!("{point}/cgroup.controllers"))?;
    let control = format!("{point}/cgroup.subtree_control");
    let refused: Vec<String> = available
        .split_whitespace()
        .filter_map(|c| {
            let r = std::fs::write(&control, format!("+{c}"));
            r.err().map(|e| format!("{c} ({e})"))
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "enabling cgroup controllers: {}",
            refused.join(", ")
        )))
    }
}

/// Where the copy of the initramfs is assembled before it becomes `/`.
const NEW_ROOT: &str = "/.superd-root";

/// Copies the initramfs into a tmpfs, makes the tmpfs `/` and then frees the initramfs (what
/// `switch_root` does; the process keeps running, now rooted in the tmpfs). Nothing of the
/// initramfs is deleted before the switch has succeeded: a failed copy (a full tmpfs) or
/// switch leaves it as it was, and superd runs on it (containers then cannot start, and
/// say why).
fn switch_root_to_tmpfs() -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(NEW_ROOT)?;
    mount(
        Some("rootfs"),
        NEW_ROOT,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(io::Error::from)?;
    let undo = |e: io::Error, what: &str| {
        let _ = nix::mount::umount2(NEW_ROOT, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(NEW_ROOT);
        io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    // Mount points (/proc now, /dev or /sys if the kernel made them) are not the image.
    let mounted: Vec<String> = mount_table().into_iter().map(|(p, _)| p).collect();
    let is_mount = |p: &Path| mounted.iter().any(|m| Path::new(m) == p);
    let copied = std::fs::read_dir("/").and_then(|entries| {
        entries.into_iter().try_for_each(|entry| {
            let entry = entry?;
            let from = entry.path();
            let to = Path::new(NEW_ROOT).join(entry.file_name());
            if from == Path::new(NEW_ROOT) {
                Ok(())
            } else if is_mount(&from) {
                std::fs::create_dir_all(&to)
            } else {
                copy_tree(&from, &to)
            }
        })
    });
    if let Err(e) = copied {
        return Err(undo(e, "copying the initramfs into a tmpfs"));
    }
    // A handle on the initramfs, to free it once it is no longer `/`.
    let old_root = std::fs::File::open("/").map_err(|e| undo(e, "opening /"))?;
    let old_dev = old_root.metadata().map_err(|e| undo(e, "stat /"))?.dev();
    for point in mounted
        .iter()
        .filter(|p| !matches!(p.as_str(), "/" | NEW_ROOT))
    {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let switched = std::env::set_current_dir(NEW_ROOT)
        .and_then(|()| {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(io::Error::from)
        })
        .and_then(|()| nix::unistd::chroot(".").map_err(io::Error::from))
        .and_then(|()| std::env::set_current_dir("/"));
    if let Err(e) = switched {
        let _ = std::env::set_current_dir("/");
        return Err(undo(e, "switching root to the tmpfs"));
    }
    // Free the initramfs (it lives in RAM too), never crossing into another filesystem: the
    // new root must be elsewhere by now, or nothing is deleted.
    let new_dev = std::fs::metadata("/")?.dev();
    if new_dev == old_dev {
        return Err(io::Error::other(
            "the new root is on the initramfs' device; not freeing the initramfs",
        ));
    }
    // The switch is done either way: a failure here only costs memory.
    if let Err(e) = remove_contents(old_root.into(), old_dev) {
        eprintln!("superd: WARN early setup: freeing the initramfs: {e}");
    }
    Ok(())
}

/// Deletes everything below the directory `dir` that is on the device `dev`, through file
/// descriptors only (the directory is no longer reachable by any path).
fn remove_contents(dir: std::os::fd::OwnedFd, dev: u64) -> io::Result<()> {
    use nix::fcntl::{AtFlags, OFlag};
    use nix::sys::stat::{fstatat, Mode, SFlag};
    use nix::unistd::{unlinkat, UnlinkatFlags};
    use std::os::fd::AsFd;
    let fd = dir.as_fd().try_clone_to_owned()?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(io::Error::from)?;
    let names: Vec<std::ffi::CString> = listing
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let st = fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if st.st_dev != dev {
            continue; // something mounted here: not the initramfs
        }
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let sub = nix::fcntl::openat(
                &dir,
                name.as_c_str(),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            remove_contents(sub, dev)?;
            unlinkat(&dir, name.as_c_str(), UnlinkatFlags::RemoveDir)?;
        } else {
            unlinkat(&dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(())
}

/// Copies files, directories and symlinks with their modes and owners (not their xattrs or
/// hard links); skips other node types.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    let own = |to: &Path| {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
    };
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)?;
        own(to)
    } else if ft.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        own(to)?;
        std::fs::set_permissions(
            to,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
    } else if ft.is_file() {
        std::fs::copy(from, to)?;
        own(to)?;
        // chown clears set-id bits: restore the mode.
        std::fs::set_permissions(
            to,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path("/x\\011y\\134z"), "/x\ty\\z");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape_mount_path("/big\\777"), "/big\\777");
    }

    #[test]
    fn removes_a_tree_through_its_fd_without_following_links() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let keep = d.path().join("keep");
        std::fs::create_dir(&keep).unwrap();
        std::fs::write(keep.join("precious"), "x").unwrap();
        let doomed = d.path().join("doomed");
        std::fs::create_dir_all(doomed.join("a/b")).unwrap();
        std::fs::write(doomed.join("a/b/file"), "x").unwrap();
        std::fs::write(doomed.join("top"), "x").unwrap();
        std::os::unix::fs::symlink(&keep, doomed.join("link-to-keep")).unwrap();
        let dir = std::fs::File::open(&doomed).unwrap();
        let dev = dir.metadata().unwrap().dev();
        remove_contents(dir.into(), dev).unwrap();
        assert_eq!(std::fs::read_dir(&doomed).unwrap().count(), 0);
        assert_eq!(std::fs::read_to_string(keep.join("precious")).unwrap(), "x");
    }

    #[test]
    fn copies_files_dirs_and_symlinks_with_modes() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::write(src.join("bin/tool"), "x").unwrap();
        std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::os::unix::fs::symlink("tool", src.join("bin/alias")).unwrap();
        copy_tree(&src, &d.path().join("dst")).unwrap();
        let dst = d.path().join("dst/bin");
        assert_eq!(std::fs::read_to_string(dst.join("tool")).unwrap(), "x");
        let mode = std::fs::metadata(dst.join("tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            std::fs::read_link(dst.join("alias")).unwrap(),
            Path::new("tool")
        );
    }
}
