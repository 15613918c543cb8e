//! The host root with `writable = "tmpfs"`: the root filesystem under an overlay whose upper
//! layer is on the scratch tmpfs (changes vanish with the instance), and every other host
//! mount put back in its place read-only, as the read-only host root has them.
//!
//! An overlay sees one filesystem: a host whose /usr, /var or /boot is a filesystem of its own
//! would otherwise show empty directories there. Those mounts stay read-only (their writes
//! fail with EROFS); `[tmpfs] mounts` or a volume makes a directory on one writable.

use super::rootfs::{overlay_on_scratch, reopen_dir, Ctx, Result, RDONLY_NODEV};
use crate::runtime::sys::{clone_tree, move_mount_fd, open_path, openat_in_root};
use std::os::fd::{AsRawFd, OwnedFd};

/// What the container mounts afresh (or never sees): host mounts there are not put back.
const REPLACED: &[&str] = &["/proc", "/sys", "/dev", "/run", "/tmp"];

/// Decodes the octal escapes (`\040` for a space) of a mountinfo path.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// The host mounts to put back over the overlay: every mount point of `mountinfo` but `/`,
/// those under [`REPLACED`] or `scratch`, and those under another one kept (a recursive clone
/// of that one brings them). Sorted, parents first.
pub fn submounts(mountinfo: &str, scratch: &str) -> Vec<String> {
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .filter(|p| p != "/" && p.starts_with('/'))
        .filter(|p| !REPLACED.iter().any(|r| under(p, r)) && !under(p, scratch))
        .collect();
    points.sort();
    points.dedup();
    let mut kept: Vec<String> = Vec::new();
    for p in points {
        if !kept.iter().any(|k| under(&p, k)) {
            kept.push(p);
        }
    }
    kept
}

/// Mounts the overlay of the host's root filesystem on `mountpoint`, then the host's other
/// mounts read-only in their places.
pub fn mount(scratch_dir: &str, scratch: &OwnedFd, mountpoint: &OwnedFd) -> Result<()> {
    let host = open_path("/", libc::O_DIRECTORY).ctx(|| "opening /".into())?;
    overlay_on_scratch(&host, scratch, mountpoint)
        .ctx(|| "mounting the overlay over the host root".into())?;
    let root = reopen_dir(scratch.as_raw_fd(), "root").ctx(|| "opening the overlay".into())?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "reading /proc/self/mountinfo".into())?;
    for path in submounts(&mountinfo, scratch_dir) {
        let rel = path.trim_start_matches('/');
        // A mount point that is not there in the overlay (below a hidden path): skipped.
        let Ok(target) = openat_in_root(root.as_raw_fd(), rel, libc::O_PATH | libc::O_NOFOLLOW)
        else {
            continue;
        };
        let Ok(src) = open_path(&path, libc::O_PATH | libc::O_NOFOLLOW) else {
            continue;
        };
        let tree = clone_tree(src.as_raw_fd(), true).ctx(|| format!("cloning {path}"))?;
        crate::runtime::sys::set_mount_attr(tree.as_raw_fd(), RDONLY_NODEV, true)
            .ctx(|| format!("making {path} read-only"))?;
        move_mount_fd(tree.as_raw_fd(), target.as_raw_fd())
            .ctx(|| format!("putting back the host mount {path}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submounts_skip_the_root_what_is_replaced_and_what_a_parent_brings() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
23 22 0:5 / /proc rw - proc proc rw
24 22 0:6 / /sys rw - sysfs sysfs rw
25 24 0:7 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 22 8:2 / /boot rw - ext4 /dev/vda2 rw
27 26 8:3 / /boot/efi rw - vfat /dev/vda3 rw
28 22 8:4 / /var rw - xfs /dev/vda4 rw
29 22 0:30 / /run rw - tmpfs tmpfs rw
30 22 0:31 / /srv/my\\040data rw - ext4 /dev/vdb rw
31 22 0:32 / /var/lib/superd/mnt rw - tmpfs superd-scratch rw
32 22 0:33 / /tmpdata rw - tmpfs t rw
33 22 8:4 / /var rw - xfs /dev/vda4 rw
";
        assert_eq!(
            submounts(info, "/var/lib/superd/mnt"),
            ["/boot", "/srv/my data", "/tmpdata", "/var"]
        );
    }

    #[test]
    fn unescape_decodes_octal_only() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/odd\\9"), "/odd\\9");
        assert_eq!(unescape("/end\\04"), "/end\\04");
    }
}
