//! Durable file updates: a power cut leaves the old file or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `bytes` to `dir/name`: a temporary `.name.tmp` (mode `mode`), fsync, rename over
/// the target, fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// fsync(2) of a directory, so a rename or unlink in it is on disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A lock file held for the life of the value.
pub type Lock = nix::fcntl::Flock<File>;

/// Why [`lock_exclusive`] did not get the lock.
#[derive(Debug)]
pub enum LockFailure {
    /// Another process holds it; its PID as it wrote it ("unknown" if unreadable).
    Held(String),
    /// Opening or locking failed (with what was being done).
    Io(&'static str, io::Error),
}

/// Takes `path` (created mode 0600, never through a symlink) with `flock(LOCK_EX|LOCK_NB)` and
/// writes our PID into it, for the message a second process prints.
pub fn lock_exclusive(path: &Path) -> Result<Lock, LockFailure> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| LockFailure::Io("opening", e))?;
    let mut lock = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    {
        Ok(l) => l,
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockFailure::Held(match pid.trim() {
                "" => "unknown".to_string(),
                p => p.chars().take(20).collect(),
            }));
        }
        Err((_, e)) => return Err(LockFailure::Io("locking", e.into())),
    };
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(std::process::id().to_string().as_bytes()))
        .map_err(|e| LockFailure::Io("writing our PID to", e))?;
    Ok(lock)
}
