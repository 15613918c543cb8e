//! What PID-1 mode mounts before anything else runs, and the move out of the initramfs.
//!
//! When `/` is the initramfs (`rootfs`), `pivot_root(2)` fails with EINVAL for every
//! container, so superd first copies the image into a tmpfs and switches root into it, as
//! LinuxKit's init does (then the containers' `pivot_root` works; they never chroot).

use nix::mount::{mount, MsFlags};
use std::io;
use std::path::Path;

/// The mount points listed in `/proc/self/mountinfo`, with their filesystem types.
fn mount_table() -> Vec<(String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let point = l.split_whitespace().nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split_whitespace().next()?;
            Some((point.to_string(), fstype.to_string()))
        })
        .collect()
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

/// Mounts what is missing — /proc, /sys, /dev (devtmpfs), /dev/pts, /dev/shm, /run, /tmp and the
/// unified cgroup2 hierarchy at /sys/fs/cgroup with every controller enabled for its
/// subtree — moving out of an initramfs first. Returns one line per problem (none is fatal:
/// PID 1 carries on and reports them).
pub fn early_mounts() -> Vec<String> {
    let mut problems = Vec::new();
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
        step("leaving the initramfs", switch_root_to_tmpfs());
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
    step(
        "mounting /run",
        ensure("tmpfs", "/run", "tmpfs", nosuid_nodev, Some("mode=0755")),
    );
    step(
        "mounting /tmp",
        ensure("tmpfs", "/tmp", "tmpfs", nosuid_nodev, Some("mode=1777")),
    );
    step("mounting cgroup2", cgroup2());
    problems
}

/// The unified hierarchy at /sys/fs/cgroup, controllers enabled for the root's children.
fn cgroup2() -> io::Result<()> {
    let point = "/sys/fs/cgroup";
    if !mount_table()
        .iter()
        .any(|(p, t)| p == point && t == "cgroup2")
    {
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
    }
    let available = std::fs::read_to_string(format!("{point}/cgroup.controllers"))?;
    let enable: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    std::fs::write(format!("{point}/cgroup.subtree_control"), enable.join(" "))
}

/// Copies the initramfs into a tmpfs, frees the old copy and makes the tmpfs `/`
/// (what `switch_root` does; the process keeps running, now rooted in the tmpfs).
fn switch_root_to_tmpfs() -> io::Result<()> {
    let new = "/.superd-root";
    std::fs::create_dir_all(new)?;
    mount(
        Some("rootfs"),
        new,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(io::Error::from)?;
    for entry in std::fs::read_dir("/")? {
        let entry = entry?;
        let name = entry.file_name();
        let from = entry.path();
        if from == Path::new(new) {
            continue;
        }
        let to = Path::new(new).join(&name);
        if matches!(name.to_str(), Some("proc" | "sys" | "dev")) {
            std::fs::create_dir_all(&to)?;
            continue;
        }
        copy_tree(&from, &to)?;
        // Free the initramfs copy as we go (it lives in RAM too).
        let _ = if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(&from)
        } else {
            std::fs::remove_file(&from)
        };
    }
    nix::mount::umount2("/proc", nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)?;
    std::env::set_current_dir(new)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(io::Error::from)?;
    nix::unistd::chroot(".").map_err(io::Error::from)?;
    std::env::set_current_dir("/")
}

/// Copies files, directories (with modes) and symlinks; skips other node types.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(from)?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if ft.is_dir() {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
        std::fs::set_permissions(
            to,
            std::fs::Permissions::from_mode(meta.permissions().mode()),
        )
    } else if ft.is_file() {
        std::fs::copy(from, to).map(|_| ())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
