//! superd's state directory: the exclusive lock that makes a second instance exit before it
//! touches anything, and the record of every instance it starts, so that a successor cleans up
//! (or, later, re-adopts) exactly what was started, wherever either superd runs.
//!
//! ```text
//! <state-dir>/superd.lock                  flock(LOCK_EX) held for superd's lifetime; holds its PID
//! <state-dir>/instances/<name>.<gen>.json  one InstanceRecord per live instance
//! <state-dir>/instances/<name>.<gen>.exit  the workload's wait status, written by its init shim
//! ```
//! Records are written tmp + fsync + rename + fsync of the directory, and removed once the
//! instance has ended and its cgroup is gone. A garbled record is reported and set aside.

use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Why the state directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "another superd (PID {pid}) is using the state directory {dir}; \
         this one exits without changing anything"
    )]
    Held {
        /// The state directory.
        dir: PathBuf,
        /// The holder's PID as it wrote it, or `unknown`.
        pid: String,
    },
    /// Creating, opening or locking failed.
    #[error("{step} {path}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn lock_io<'a>(step: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LockError + 'a {
    move |source| LockError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The locked state directory; the lock is released when this is dropped (or superd dies).
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    _lock: nix::fcntl::Flock<File>,
}

impl StateDir {
    /// Creates `dir` (mode 0700) if needed and takes its lock without waiting; writes our PID
    /// into the lock file for the error a second instance prints.
    pub fn lock(dir: &Path) -> Result<StateDir, LockError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(lock_io("creating the state directory", dir))?;
        let path = dir.join("superd.lock");
        let lock = crate::durable::lock_exclusive(&path).map_err(|f| match f {
            crate::durable::LockFailure::Held(pid) => LockError::Held {
                dir: dir.to_path_buf(),
                pid,
            },
            crate::durable::LockFailure::Io(step, e) => lock_io(step, &path)(e),
        })?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The instance records kept in this directory.
    pub fn records(&self) -> Records {
        Records {
            dir: self.dir.join("instances"),
        }
    }
}

/// What superd records about an instance it started: enough for a successor to find and stop
/// it (cgroup directories, the shim by PID and start time) and, later, to re-adopt it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Workload name.
    pub name: String,
    /// Instance generation.
    pub gen: u64,
    /// The superd that started it.
    pub superd_pid: u32,
    /// Host PID of the init shim (the workload itself with `init = false`).
    pub shim_pid: i32,
    /// The shim's start time in clock ticks since boot (`/proc/PID/stat` field 22), which
    /// tells the shim from a process that reused its PID; 0 when it could not be read.
    pub shim_start: u64,
    /// The instance's cgroup directory in every hierarchy, absolute.
    pub cgroup_dirs: Vec<PathBuf>,
    /// Whether those are cgroup v2 directories.
    pub cgroup_v2: bool,
    /// The bridged workload's address.
    pub address: Option<Ipv4Addr>,
    /// Hex SHA-256 of the spec it runs.
    pub spec_hash: String,
    /// The spec it runs, as JSON: what a successor adopts it with. Kept as a JSON value so
    /// that a spec this superd cannot read (written by another version) still leaves the
    /// record readable, and the instance is stopped rather than lost.
    #[serde(default)]
    pub spec: Option<serde_json::Value>,
    /// The workload's host PID once it runs (0 before; the shim's with `init = false`).
    #[serde(default)]
    pub workload_pid: i32,
    /// When the workload started running, in milliseconds since the Unix epoch (0 before).
    #[serde(default)]
    pub started_unix_ms: u64,
    /// Restarts of the workload before this instance, for its status after an adoption.
    #[serde(default)]
    pub restarts: u32,
    /// The manifest digest of its image, and the ChainIDs of the layers it has mounted
    /// (held from garbage collection by a successor too).
    #[serde(default)]
    pub image_digest: Option<String>,
    /// See `image_digest`.
    #[serde(default)]
    pub layers: Vec<String>,
    /// The image's StopSignal by number, used when the manifest names none.
    #[serde(default)]
    pub image_stop_signal: Option<i32>,
    /// The kernel's boot id when it started (`/proc/sys/kernel/random/boot_id`): a record of
    /// an earlier boot is of an instance the reboot ended, whose PID and start time may
    /// name another process now.
    #[serde(default)]
    pub boot_id: String,
}

/// This boot's id (empty when the kernel does not say).
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What a superd finds of an instance its predecessor recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The shim still runs: its PID has the recorded start time.
    Running,
    /// The shim is gone. Its exit file holds the workload's raw wait status, or nothing when
    /// the workload never ran or was PID 1 itself (`init = false`).
    Ended(Option<i32>),
}

/// Judges a recorded instance from what is observed now: the start time of the process that
/// has the recorded shim PID (`None`: no such process) and the exit file's status. A PID with
/// another start time (or a record without one) is another process: the instance is gone.
pub fn judge(rec: &InstanceRecord, start_now: Option<u64>, exit: Option<i32>) -> Found {
    match start_now {
        Some(t) if rec.shim_start != 0 && t == rec.shim_start => Found::Running,
        _ => Found::Ended(exit),
    }
}

/// The start time of process `pid` in clock ticks since boot, from `/proc/PID/stat`; `None`
/// when there is no such process or it has ended and waits to be reaped (a zombie).
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Field 22 of a `/proc/PID/stat` line; the command (field 2) may hold spaces and `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // Fields after the command start at 3 (state); starttime is field 22.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// The directory of instance records.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Records in `dir` (for tests and tools; superd gets them from [`StateDir::records`]).
    pub fn at(dir: PathBuf) -> Records {
        Records { dir }
    }

    fn file(&self, name: &str, gen: u64) -> PathBuf {
        self.dir.join(format!("{name}.{gen}.json"))
    }

    fn exit_path(&self, name: &str, gen: u64) -> PathBuf {
        self.dir.join(format!("{name}.{gen}.exit"))
    }

    /// Creates the empty exit file of `name` generation `gen` and returns it open for
    /// writing (close-on-exec), for the instance's init shim. It needs no fsync: it only has
    /// to outlive superd, not the machine.
    pub fn create_exit(&self, name: &str, gen: u64) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(self.exit_path(name, gen))?;
        Ok(f.into())
    }

    /// The raw wait status the shim of `name` generation `gen` wrote, if it wrote one.
    pub fn exit_status(&self, name: &str, gen: u64) -> Option<i32> {
        let bytes = super::sys::read_regular(&self.exit_path(name, gen), 64, true).ok()?;
        parse_exit(&bytes)
    }

    /// Writes `rec` durably: tmp + fsync + rename + fsync of the directory.
    pub fn write(&self, rec: &InstanceRecord) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let bytes = serde_json::to_vec(rec).map_err(io::Error::other)?;
        crate::durable::write_atomic(
            &self.dir,
            &format!("{}.{}.json", rec.name, rec.gen),
            &bytes,
            0o600,
        )
    }

    /// Removes the record of `name` generation `gen` and its exit file (missing is fine).
    pub fn remove(&self, name: &str, gen: u64) -> io::Result<()> {
        let _ = fs::remove_file(self.exit_path(name, gen));
        match fs::remove_file(self.file(name, gen)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => sync_dir(&self.dir).or(Ok(())),
        }
    }

    /// Every record, and a message for each file that could not be used (garbled files are
    /// renamed to `*.corrupt` so they are reported once).
    pub fn load(&self) -> (Vec<InstanceRecord>, Vec<String>) {
        let mut recs: Vec<(String, InstanceRecord)> = Vec::new();
        let mut problems = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (Vec::new(), problems);
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                let _ = fs::remove_file(&path); // a write cut short
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let parsed = super::sys::read_regular(&path, MAX_RECORD_BYTES, true)
                .and_then(|b| serde_json::from_slice::<InstanceRecord>(&b).map_err(Into::into));
            match parsed {
                Ok(r) => recs.push((name, r)),
                Err(err) => {
                    problems.push(format!("instance record {}: {err}", path.display()));
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        recs.sort_by(|a, b| a.0.cmp(&b.0));
        (recs.into_iter().map(|(_, r)| r).collect(), problems)
    }
}

use crate::durable::sync_dir;

/// The largest instance record read back: a spec with every field at its bound is far less.
const MAX_RECORD_BYTES: u64 = 4 << 20;

/// The text of an exit file: the raw wait status in decimal and a newline.
pub fn format_exit(status: i32) -> String {
    format!("{status}\n")
}

/// The raw wait status of an exit file's text; `None` for an empty or cut-short file.
pub fn parse_exit(bytes: &[u8]) -> Option<i32> {
    std::str::from_utf8(bytes)
        .ok()?
        .strip_suffix('\n')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_instance_runs_only_with_its_own_start_time() {
        let mut r = rec("web", 3);
        r.shim_start = 4242;
        assert_eq!(judge(&r, Some(4242), None), Found::Running);
        // The shim ended; what its exit file says is kept.
        assert_eq!(judge(&r, None, Some(1792)), Found::Ended(Some(1792)));
        assert_eq!(judge(&r, None, None), Found::Ended(None));
        // The PID is another process's now.
        assert_eq!(judge(&r, Some(9999), Some(9)), Found::Ended(Some(9)));
        // A record without a start time cannot tell its shim from another process.
        r.shim_start = 0;
        assert_eq!(judge(&r, Some(0), None), Found::Ended(None));
    }

    #[test]
    fn exit_files_round_trip_and_a_cut_one_says_nothing() {
        use std::io::Write;
        assert_eq!(parse_exit(format_exit(7 << 8).as_bytes()), Some(1792));
        assert_eq!(parse_exit(format_exit(libc::SIGKILL).as_bytes()), Some(9));
        assert_eq!(parse_exit(b""), None);
        assert_eq!(parse_exit(b"17"), None, "a write cut short");
        assert_eq!(parse_exit(b"x\n"), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let records = Records::at(dir.path().join("instances"));
        let fd = records.create_exit("web", 3).expect("exit file");
        assert_eq!(records.exit_status("web", 3), None, "nothing written yet");
        std::fs::File::from(fd)
            .write_all(format_exit(256).as_bytes())
            .expect("write");
        assert_eq!(records.exit_status("web", 3), Some(256));
        records.remove("web", 3).expect("remove");
        assert!(!dir.path().join("instances/web.3.exit").exists());
    }

    fn rec(name: &str, gen: u64) -> InstanceRecord {
        InstanceRecord {
            name: name.into(),
            gen,
            superd_pid: 1,
            shim_pid: 42,
            shim_start: 7,
            cgroup_dirs: vec!["/sys/fs/cgroup/x".into()],
            cgroup_v2: true,
            address: Some(Ipv4Addr::new(10, 77, 0, 2)),
            spec_hash: "ab".into(),
            ..InstanceRecord::default()
        }
    }

    #[test]
    fn start_time_survives_odd_command_names() {
        let line = "123 (a) b ) c) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 \
                    1000 10 18446744073709551615";
        assert_eq!(parse_start_time(line), Some(98765));
        assert_eq!(parse_start_time("garbage"), None);
        // A zombie has ended: its start time says nothing about a live shim.
        assert_eq!(parse_start_time(&line.replace(") S ", ") Z ")), None);
        let me = std::process::id() as i32;
        assert!(process_start_time(me).is_some_and(|t| t > 0));
    }

    #[test]
    fn records_round_trip_and_garbage_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let recs = Records::at(dir.path().join("instances"));
        recs.write(&rec("web", 1)).unwrap();
        recs.write(&rec("web", 2)).unwrap();
        recs.write(&rec("db", 1)).unwrap();
        recs.remove("web", 1).unwrap();
        recs.remove("web", 1).unwrap();
        fs::write(dir.path().join("instances/bad.1.json"), "{\"name\": ").unwrap();
        let (found, problems) = recs.load();
        let names: Vec<_> = found.iter().map(|r| (r.name.as_str(), r.gen)).collect();
        assert_eq!(names, [("db", 1), ("web", 2)]);
        assert_eq!(found[0], rec("db", 1));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(dir.path().join("instances/bad.1.corrupt").exists());
        assert!(recs.load().1.is_empty(), "reported once");
    }

    #[test]
    fn a_second_lock_fails_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = StateDir::lock(&state).unwrap();
        let err = StateDir::lock(&state).unwrap_err().to_string();
        assert!(
            err.contains(&format!("another superd (PID {})", std::process::id())),
            "{err}"
        );
        drop(first);
        StateDir::lock(&state).unwrap();
    }
}
