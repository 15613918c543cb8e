//! Re-executing superd in place (`superctl reexec`, the way `systemctl daemon-reexec` does):
//! the same PID runs the binary now installed at superd's path, with the same arguments. The
//! workloads' shims stay its children and keep running; the new image adopts them from their
//! instance records (see `runtime::adopt`).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The path superd was started from, read at start: after a package upgrade replaced the
/// file, `/proc/self/exe` names the old, deleted one (`/usr/bin/superd (deleted)`), and the
/// path without that suffix is where the new binary is.
pub fn own_path() -> std::io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    Ok(strip_deleted(&exe))
}

/// `/usr/bin/superd (deleted)` → `/usr/bin/superd`.
pub fn strip_deleted(exe: &Path) -> PathBuf {
    let bytes = exe.as_os_str().as_bytes();
    let path = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    PathBuf::from(OsStr::from_bytes(path))
}

/// Executes `exe` with this process's arguments, after marking every descriptor from 3 on
/// close-on-exec (what the new image needs it opens itself; nothing of this one's may leak,
/// the state directory's lock least of all). Returns only on failure, with why.
pub fn exec_self(exe: &Path) -> String {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        return format!(
            "marking descriptors close-on-exec: {}",
            std::io::Error::last_os_error()
        );
    }
    let args: Result<Vec<CString>, _> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect();
    match (CString::new(exe.as_os_str().as_bytes()), args) {
        (Ok(path), Ok(args)) => match nix::unistd::execv(&path, &args) {
            Ok(never) => match never {},
            Err(e) => format!("executing {}: {e}", exe.display()),
        },
        _ => "an argument holds a NUL byte".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_binary_is_found_at_its_path() {
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/superd (deleted)")),
            PathBuf::from("/usr/bin/superd")
        );
        assert_eq!(
            strip_deleted(Path::new("/usr/bin/superd")),
            PathBuf::from("/usr/bin/superd")
        );
        assert!(own_path().is_ok_and(|p| p.is_absolute()));
    }
}
