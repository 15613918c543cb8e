//! The hardware watchdog (`--watchdog /dev/watchdog`, or `superd.watchdog=` on the kernel
//! command line): superd sets its timeout and pets it only while the supervisor answers and
//! every `[watchdog] critical` workload runs healthy (see `reconcile::watchdog`); otherwise the
//! device resets the machine. An orderly poweroff or reboot disarms it with the magic close
//! (`V`), so the machine is not reset on its way down.

// ioctl(2) on the watchdog device: no safe wrapper exists.
#![allow(unsafe_code)]

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

// linux/watchdog.h: WATCHDOG_IOCTL_BASE 'W'.
nix::ioctl_read!(
    /// WDIOC_KEEPALIVE.
    wdioc_keepalive,
    b'W',
    5,
    libc::c_int
);
nix::ioctl_readwrite!(
    /// WDIOC_SETTIMEOUT.
    wdioc_settimeout,
    b'W',
    6,
    libc::c_int
);
nix::ioctl_read!(
    /// WDIOC_GETTIMEOUT.
    wdioc_gettimeout,
    b'W',
    7,
    libc::c_int
);

/// An open, armed watchdog device.
#[derive(Debug)]
pub struct Watchdog {
    file: Mutex<Option<File>>,
    timeout: Duration,
    path: String,
}

impl Watchdog {
    /// Opens (and so arms) `path` and asks for `timeout`; the device may round it, and
    /// [`Watchdog::timeout`] says what it took.
    pub fn open(path: &Path, timeout: Duration) -> std::io::Result<Watchdog> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut secs = libc::c_int::try_from(timeout.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer we pass.
        if let Err(e) = unsafe { wdioc_settimeout(file.as_raw_fd(), &mut secs) } {
            tracing::warn!(
                "{}: setting the timeout to {}s: {e}; keeping the device's",
                path.display(),
                timeout.as_secs()
            );
            // SAFETY: WDIOC_GETTIMEOUT writes one int through the pointer we pass.
            let _ = unsafe { wdioc_gettimeout(file.as_raw_fd(), &mut secs) };
        }
        Ok(Watchdog {
            file: Mutex::new(Some(file)),
            timeout: Duration::from_secs(u64::try_from(secs.max(1)).unwrap_or(1)),
            path: path.display().to_string(),
        })
    }

    /// The timeout the device runs with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Resets the device's countdown.
    pub fn pet(&self) -> std::io::Result<()> {
        let guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = guard.as_ref() else {
            return Ok(());
        };
        let mut dummy: libc::c_int = 0;
        // SAFETY: WDIOC_KEEPALIVE takes (and ignores) one int through the pointer we pass.
        unsafe { wdioc_keepalive(f.as_raw_fd(), &mut dummy) }
            .map(|_| ())
            .map_err(std::io::Error::from)
    }

    /// The magic close: `V`, then close, which stops the device (unless its driver was
    /// built with nowayout). Later pets do nothing.
    pub fn disarm(&self) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut f) = guard.take() {
            match f.write_all(b"V") {
                Ok(()) => tracing::info!("watchdog {} disarmed", self.path),
                Err(e) => tracing::warn!("disarming the watchdog {}: {e}", self.path),
            }
        }
    }
}
