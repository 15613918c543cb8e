//! The workload's log, written by the init shim (or, with `init = false`, by a logger process
//! it forks before it becomes the workload): the workload's stdout and stderr are pipes, each
//! line becomes a timestamped record (`runtime::logfmt`), and the file is rotated by size,
//! keeping `max_files` files. The writer is the only one that appends or rotates, so no line
//! is lost or written twice, and it is not superd: logs keep flowing while superd restarts.
//!
//! A write that fails (a full disk) drops the record, counts it, and says so in the log once
//! writing works again; the first failure is also reported to superd for its status.

use crate::runtime::logfmt::{self, LineSplitter, Nanos, Stream};
use crate::runtime::sync::{LogCfg, LOG_DIR_FD};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// The writer. Records go to fd 1 and 2 (the current log file, opened by superd in append
/// mode); rotation renames through the log directory's fd [`LOG_DIR_FD`], which stays valid
/// after `pivot_root`.
pub struct LogWriter {
    file: String,
    max_size: u64,
    max_files: u32,
    size: u64,
    last_ts: Nanos,
    dropped: u64,
    /// The first write error since the last successful write.
    failing: Option<String>,
    /// Set once a failure was reported (superd is told once per episode).
    pub reported: bool,
    /// Records not yet written: one write per read from the pipes, not one per line.
    buf: Vec<u8>,
}

fn fd_size(fd: RawFd) -> u64 {
    // SAFETY: fstat(2) into a zeroed struct, on a caller-owned fd.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_size.max(0) as u64
    } else {
        0
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: write(2) from a valid buffer.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

impl LogWriter {
    /// A writer for the workload `name` with `cfg`'s bounds, appending to fd 1.
    pub fn new(name: &str, cfg: &LogCfg) -> LogWriter {
        LogWriter {
            file: format!("{name}.log"),
            max_size: cfg.max_size.max(4096),
            max_files: cfg.max_files.max(1),
            size: fd_size(1),
            last_ts: 0,
            dropped: 0,
            failing: None,
            reported: false,
            buf: Vec::with_capacity(128 << 10),
        }
    }

    /// The error writes are failing with, if they are.
    pub fn failing(&self) -> Option<&str> {
        self.failing.as_deref()
    }

    /// Adds one record, rotating first when it would not fit in the current file. Records
    /// are buffered until [`flush`](Self::flush) (after every read from the pipes).
    pub fn write(&mut self, stream: Stream, partial: bool, payload: &[u8]) {
        let ts = logfmt::next_timestamp(self.last_ts);
        self.last_ts = ts;
        let rec = logfmt::record(ts, stream, partial, payload);
        let pending = self.size + self.buf.len() as u64;
        if pending > 0 && pending + rec.len() as u64 > self.max_size {
            self.flush();
            if let Err(e) = self.rotate() {
                self.fail(rec.len(), &format!("rotating the log: {e}"));
                return;
            }
        }
        self.buf.extend_from_slice(&rec);
    }

    /// Writes the buffered records (or counts them as dropped when that fails).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.dropped > 0 {
            let note = format!(
                "superd-init: {} bytes of output were dropped: {}",
                self.dropped,
                self.failing
                    .as_deref()
                    .unwrap_or("the log could not be written")
            );
            self.last_ts = logfmt::next_timestamp(self.last_ts);
            let marker = logfmt::record(self.last_ts, Stream::Stderr, false, note.as_bytes());
            if write_all(1, &marker).is_err() {
                let n = self.buf.len();
                self.buf.clear();
                self.fail(n, "still failing");
                return;
            }
            self.size += marker.len() as u64;
            self.dropped = 0;
        }
        match write_all(1, &self.buf) {
            Ok(()) => {
                self.size += self.buf.len() as u64;
                self.failing = None;
                self.reported = false;
            }
            Err(e) => {
                let n = self.buf.len();
                self.fail(n, &e.to_string());
            }
        }
        self.buf.clear();
    }

    fn fail(&mut self, bytes: usize, why: &str) {
        self.dropped += bytes as u64;
        if self.failing.is_none() {
            self.failing = Some(why.to_string());
        }
    }

    /// `name.log.(n-1)` … `name.log.1` move up one (the oldest falls off), `name.log` becomes
    /// `name.log.1`, and a fresh `name.log` takes fd 1 and 2.
    fn rotate(&mut self) -> std::io::Result<()> {
        // SAFETY: LOG_DIR_FD was placed by the spawner and stays open for our whole life.
        let dir = unsafe { BorrowedFd::borrow_raw(LOG_DIR_FD) };
        if self.max_files == 1 {
            // SAFETY: ftruncate(2) on our own fd 1.
            if unsafe { libc::ftruncate(1, 0) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
            self.size = 0;
            return Ok(());
        }
        for i in (1..self.max_files - 1).rev() {
            let from = format!("{}.{i}", self.file);
            let to = format!("{}.{}", self.file, i + 1);
            match nix::fcntl::renameat(dir, from.as_str(), dir, to.as_str()) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let first = format!("{}.1", self.file);
        nix::fcntl::renameat(dir, self.file.as_str(), dir, first.as_str())?;
        let fresh: OwnedFd = nix::fcntl::openat(
            dir,
            self.file.as_str(),
            nix::fcntl::OFlag::O_WRONLY
                | nix::fcntl::OFlag::O_CREAT
                | nix::fcntl::OFlag::O_APPEND
                | nix::fcntl::OFlag::O_CLOEXEC
                | nix::fcntl::OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::from_bits_truncate(0o640),
        )?;
        for target in [1, 2] {
            // SAFETY: dup2(2) onto our own stdout/stderr.
            if unsafe { libc::dup2(fresh.as_raw_fd(), target) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        self.size = 0;
        Ok(())
    }
}

/// The two pipes of a workload's output and what reads them.
pub struct Outputs {
    /// Read ends (stdout, stderr).
    pub read: [OwnedFd; 2],
    /// Write ends (stdout, stderr), for the workload.
    pub write: [OwnedFd; 2],
}

/// Creates the pipes (close-on-exec; the workload gets the write ends as its fd 1 and 2).
pub fn pipes() -> nix::Result<Outputs> {
    let (r1, w1) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (r2, w2) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok(Outputs {
        read: [r1, r2],
        write: [w1, w2],
    })
}

/// Reads what is available on `fd` (one of the read ends) and writes its records; false at
/// EOF (the stream's last unfinished line is written then).
pub fn pump(fd: RawFd, stream: Stream, split: &mut LineSplitter, log: &mut LogWriter) -> bool {
    let mut buf = [0u8; 64 << 10];
    loop {
        // SAFETY: read(2) into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            split.finish(|p, b| log.write(stream, p, b));
            log.flush();
            return false;
        }
        if n == 0 {
            split.finish(|p, b| log.write(stream, p, b));
            log.flush();
            return false;
        }
        split.push(&buf[..n as usize], |p, b| log.write(stream, p, b));
        log.flush();
        return true;
    }
}

/// Writes one of the shim's own messages as a stderr record (before a writer exists, or
/// from code that has none at hand), appending to fd 2.
pub fn shim_message(msg: &str) {
    let rec = logfmt::record(
        logfmt::next_timestamp(0),
        Stream::Stderr,
        false,
        format!("superd-init: {msg}").as_bytes(),
    );
    let _ = write_all(2, &rec);
}
