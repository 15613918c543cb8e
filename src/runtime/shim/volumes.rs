//! Named volumes and extra tmpfs directories inside the container (after the bind mounts).
//!
//! A fresh volume is seeded from the rootfs's content at its target: the tree is copied
//! through fds (never following a symlink, owners and modes kept), the volume root takes the
//! target directory's owner and mode, and a marker beside the data records the first use.
//! A fresh volume whose target the image lacks is given to the workload's user once it is
//! known (see [`chown_fresh`]).

use super::rootfs::{mnt, Ctx, Result, StepError};
use crate::runtime::sync::{MountCfg, ShimConfig};
use crate::runtime::sys::{open_path, openat_in_root};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode};
use nix::unistd::{fchown, fchownat, Gid, Uid};
use std::os::fd::OwnedFd;

/// Mounts every volume (seeding fresh ones) and every extra tmpfs.
pub(super) fn mount_all(rootfd: std::os::fd::RawFd, cfg: &ShimConfig) -> Result<()> {
    for v in &cfg.volumes {
        if let Some(marker) = &v.seed_marker {
            let rel = v.target.trim_start_matches('/');
            match openat_in_root(rootfd, rel, libc::O_RDONLY | libc::O_DIRECTORY) {
                Ok(src) => {
                    let dst = open_path(&v.source, libc::O_DIRECTORY)
                        .and_then(|p| reopen_rw(&p))
                        .ctx(|| format!("opening volume {}", v.source))?;
                    copy_meta(&src, &dst).ctx(|| format!("seeding {}", v.target))?;
                    copy_tree(&src, &dst).ctx(|| format!("seeding the volume at {}", v.target))?;
                    std::fs::write(marker, b"image\n").ctx(|| format!("writing {marker}"))?;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // Nothing to seed from: the volume becomes the user's once the user is
                    // known (inside the container, after pivot_root).
                    UNSEEDED
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(v.target.clone());
                    std::fs::write(marker, b"empty\n").ctx(|| format!("writing {marker}"))?;
                }
                Err(e) => return Err(StepError::new(format!("opening {}", v.target), e)),
            }
        }
        super::rootfs::bind_mount(
            rootfd,
            &MountCfg {
                source: v.source.clone(),
                target: v.target.clone(),
                readonly: v.readonly,
                optional: false,
            },
        )?;
    }
    for t in &cfg.tmpfs_mounts {
        let dir = super::rootfs::mount_target_dir(rootfd, &t.target)?;
        mnt(
            "tmpfs",
            &dir,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            // Docker's default for --tmpfs: anyone may write, as in /tmp.
            Some(&format!("mode=1777,size={}", t.size)),
        )
        .ctx(|| format!("mounting a tmpfs on {}", t.target))?;
    }
    Ok(())
}

/// Targets of fresh volumes the image had nothing for (the shim is single-threaded; this is
/// only handed from setup to the step after the user is resolved).
static UNSEEDED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// After the user is resolved (inside the container): fresh volumes the image had nothing
/// for become the workload user's.
pub(super) fn chown_fresh(uid: u32, gid: u32) -> Result<()> {
    let targets = std::mem::take(&mut *UNSEEDED.lock().unwrap_or_else(|p| p.into_inner()));
    for t in targets {
        let fd = nix::fcntl::open(
            t.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening volume {t}"))?;
        fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .ctx(|| format!("giving volume {t} to {uid}:{gid}"))?;
    }
    Ok(())
}

fn reopen_rw(p: &OwnedFd) -> std::io::Result<OwnedFd> {
    openat(
        p,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(Into::into)
}

fn copy_meta(src: &OwnedFd, dst: &OwnedFd) -> nix::Result<()> {
    let st = fstat(src)?;
    fchown(
        dst,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )?;
    fchmod(dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
}

/// Copies the children of `src` into `dst` (existing names are left alone).
fn copy_tree(src: &OwnedFd, dst: &OwnedFd) -> nix::Result<()> {
    let dup = nix::unistd::dup(src)?;
    let mut dir = nix::dir::Dir::from_fd(dup)?;
    let names: Vec<std::ffi::CString> = dir
        .iter()
        .filter_map(std::result::Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for name in names {
        let n = name.as_c_str();
        let st = fstatat(src, n, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        let exists = fstatat(dst, n, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok();
        if exists {
            continue;
        }
        let (uid, gid) = (
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        );
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                mkdirat(dst, n, Mode::from_bits_truncate(0o700))?;
                let flags =
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let s = openat(src, n, flags, Mode::empty())?;
                let d = openat(dst, n, flags, Mode::empty())?;
                copy_tree(&s, &d)?;
                fchown(&d, uid, gid)?;
                fchmod(&d, perm)?;
            }
            libc::S_IFREG => {
                let s = openat(
                    src,
                    n,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                let d = openat(
                    dst,
                    n,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )?;
                let (mut s, mut d) = (std::fs::File::from(s), std::fs::File::from(d));
                std::io::copy(&mut s, &mut d).map_err(|e| {
                    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
                })?;
                fchown(&d, uid, gid)?;
                fchmod(&d, perm)?;
            }
            libc::S_IFLNK => {
                let target = nix::fcntl::readlinkat(src, n)?;
                nix::unistd::symlinkat(target.as_os_str(), dst, n)?;
                fchownat(dst, n, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            }
            _ => {} // devices, fifos and sockets are not data
        }
    }
    Ok(())
}
