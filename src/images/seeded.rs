//! Read-only image stores: pre-seeded images an appliance ships (IMAGES.md §4.10).
//!
//! A build host fills a store with `superd image import --store DIR` and packs it into a
//! squashfs or erofs file; cpio (an initramfs) cannot carry the store itself, because its
//! opaque markers and file capabilities are xattrs. At start superd attaches that file to a
//! loop device read-only and mounts it, and the store searches it after its own (GC never
//! touches it). A directory is used as it is.
//!
//! The loop ioctls are written here: two calls and one struct of the stable kernel uapi
//! (`<linux/loop.h>`); the crates that wrap them generate bindings with bindgen at build
//! time (libclang) for the same few lines.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// `LOOP_CTL_GET_FREE` on `/dev/loop-control`.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
/// `LOOP_CONFIGURE` (Linux 5.8): fd, flags and status in one call.
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

/// Filesystems tried, in order, for a store image file.
const FILESYSTEMS: [&str; 2] = ["squashfs", "erofs"];

fn ctx(doing: String) -> impl FnOnce(io::Error) -> io::Error {
    move |e| io::Error::new(e.kind(), format!("{doing}: {e}"))
}

/// A store image superd mounted; detached (lazily: a workload using it keeps it) when
/// dropped.
#[derive(Debug)]
pub struct Mounted(PathBuf);

impl Mounted {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A read-only store ready for [`Store::with_read_only`](super::store::Store::with_read_only).
#[derive(Debug)]
pub enum Prepared {
    /// A directory given as it is.
    Dir(PathBuf),
    /// A file mounted by superd.
    Mounted(Mounted),
}

impl Prepared {
    /// The store directory.
    pub fn path(&self) -> &Path {
        match self {
            Prepared::Dir(p) => p,
            Prepared::Mounted(m) => m.path(),
        }
    }
}

/// Makes `path` usable as a read-only store: a directory as it is; a file is mounted
/// read-only at `mount_dir/<n>` (a mount left there by an earlier run is detached first;
/// workloads still using it keep it).
pub fn prepare(path: &Path, mount_dir: &Path, n: usize) -> io::Result<Prepared> {
    let meta = std::fs::metadata(path).map_err(ctx(format!("{}", path.display())))?;
    if meta.is_dir() {
        return Ok(Prepared::Dir(path.to_path_buf()));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: neither a directory nor a squashfs/erofs file",
                path.display()
            ),
        ));
    }
    let target = mount_dir.join(n.to_string());
    std::fs::create_dir_all(&target).map_err(ctx(format!("creating {}", target.display())))?;
    // EINVAL: nothing mounted there.
    let _ = umount2(&target, MntFlags::MNT_DETACH);
    mount_file(path, &target)?;
    Ok(Prepared::Mounted(Mounted(target)))
}

/// Attaches `file` to a free loop device (read-only, cleared on unmount) and mounts it
/// read-only at `target`.
pub fn mount_file(file: &Path, target: &Path) -> io::Result<()> {
    let backing = File::open(file).map_err(ctx(format!("opening {}", file.display())))?;
    // The loop device stays open until mounted: with autoclear, its last close before the
    // mount would detach it.
    let (dev, _open) = attach(&backing).map_err(ctx(format!(
        "attaching {} to a loop device (is the loop module loaded?)",
        file.display()
    )))?;
    let mut tried = Vec::new();
    for fs in FILESYSTEMS {
        match mount(
            Some(dev.as_path()),
            target,
            Some(fs),
            MsFlags::MS_RDONLY,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(e) => tried.push(format!("{fs}: {}", io::Error::from(e))),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "mounting {} ({}) at {}: not a squashfs or erofs image the kernel can mount \
             ({})",
            file.display(),
            dev.display(),
            target.display(),
            tried.join("; ")
        ),
    ))
}

/// A free loop device bound to `backing`, and the device opened; another process may take
/// the free one first, so this retries.
fn attach(backing: &File) -> io::Result<(PathBuf, File)> {
    let ctl = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/loop-control")?;
    let mut last = io::Error::other("no free loop device");
    for _ in 0..10 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = match File::open(&path) {
            Ok(d) => d,
            // devtmpfs may not have made the node yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                last = e;
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(ctx(format!("opening {}", path.display()))(e)),
        };
        let fd = u32::try_from(backing.as_raw_fd()).map_err(io::Error::other)?;
        let cfg = LoopConfig {
            fd,
            block_size: 0,
            info: LoopInfo64 {
                device: 0,
                inode: 0,
                rdevice: 0,
                offset: 0,
                sizelimit: 0,
                number: 0,
                encrypt_type: 0,
                encrypt_key_size: 0,
                flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
                file_name: [0; 64],
                crypt_name: [0; 64],
                encrypt_key: [0; 32],
                init: [0; 2],
            },
            reserved: [0; 8],
        };
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which `cfg` is (layout
        // checked above) and which outlives the call.
        let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE, &cfg as *const LoopConfig) };
        if r == 0 {
            return Ok((path, dev));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(ctx(format!("configuring {}", path.display()))(e));
        }
        last = e;
    }
    Err(last)
}
