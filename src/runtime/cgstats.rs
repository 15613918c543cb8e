//! What a workload's cgroup says it uses: CPU time, memory and its limit, OOM kills, tasks,
//! block IO and (cgroup v2) pressure stall information. The parsers are pure; [`read`] reads
//! the files of one cgroup, v1 (a directory per hierarchy) or v2 (one directory).

use crate::api::{CgroupStats, Pressure};
use std::path::{Path, PathBuf};

/// Where one workload's cgroup lives.
#[derive(Debug, Clone)]
pub enum Dirs<'a> {
    /// The unified hierarchy's directory.
    V2(&'a Path),
    /// One directory per v1 hierarchy (`/sys/fs/cgroup/<controllers>/<path>`).
    V1(&'a [PathBuf]),
}

fn text(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn number(s: &str) -> Option<u64> {
    s.trim().parse().ok()
}

/// The value of `key` in a `key value` per line file (`cpu.stat`, `memory.events`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

/// Read and written bytes summed over devices from v2 `io.stat`
/// (`8:0 rbytes=… wbytes=… rios=…`).
pub fn io_v2(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut written = 0u64;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=").and_then(number) {
            read = read.saturating_add(v);
        } else if let Some(v) = field.strip_prefix("wbytes=").and_then(number) {
            written = written.saturating_add(v);
        }
    }
    (read, written)
}

/// Read and written bytes from v1 `blkio.throttle.io_service_bytes_recursive`
/// (`8:0 Read 4096`, …, `Total 8192`).
pub fn io_v1(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut written = 0u64;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_dev, op, v] = f[..] {
            match (op, number(v)) {
                ("Read", Some(v)) => read = read.saturating_add(v),
                ("Write", Some(v)) => written = written.saturating_add(v),
                _ => {}
            }
        }
    }
    (read, written)
}

/// `some avg10=…` and `full avg10=…` of a PSI file, with the totals (µs).
pub fn pressure(text: &str) -> Option<Pressure> {
    let mut p = Pressure::default();
    let mut any = false;
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let which = it.next();
        let mut avg10 = None;
        let mut total = None;
        for kv in it {
            match kv.split_once('=') {
                Some(("avg10", v)) => avg10 = v.parse::<f64>().ok(),
                Some(("total", v)) => total = v.parse::<u64>().ok(),
                _ => {}
            }
        }
        match which {
            Some("some") => {
                p.some_avg10 = avg10?;
                p.some_total_us = total?;
                any = true;
            }
            Some("full") => {
                p.full_avg10 = avg10;
                p.full_total_us = total;
            }
            _ => {}
        }
    }
    any.then_some(p)
}

/// Everything the cgroup at `dirs` says (what cannot be read is left out).
pub fn read(dirs: Dirs<'_>) -> CgroupStats {
    let mut s = CgroupStats::default();
    match dirs {
        Dirs::V2(d) => {
            let f = |name: &str| text(&d.join(name));
            s.cpu_usage_ns = f("cpu.stat")
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(|us| us.saturating_mul(1000));
            s.memory_bytes = f("memory.current").and_then(|t| number(&t));
            s.memory_limit = f("memory.max").and_then(|t| number(&t));
            s.oom_kills = f("memory.events").and_then(|t| keyed(&t, "oom_kill"));
            s.pids = f("pids.current").and_then(|t| number(&t));
            s.pids_limit = f("pids.max").and_then(|t| number(&t));
            if let Some((r, w)) = f("io.stat").map(|t| io_v2(&t)) {
                s.io_read_bytes = Some(r);
                s.io_write_bytes = Some(w);
            }
            s.cpu_pressure = f("cpu.pressure").and_then(|t| pressure(&t));
            s.memory_pressure = f("memory.pressure").and_then(|t| pressure(&t));
            s.io_pressure = f("io.pressure").and_then(|t| pressure(&t));
        }
        Dirs::V1(dirs) => {
            let find = |controller: &str| {
                dirs.iter().find(|d| {
                    d.strip_prefix("/sys/fs/cgroup")
                        .ok()
                        .and_then(|rel| rel.components().next())
                        .and_then(|c| c.as_os_str().to_str())
                        .is_some_and(|h| h.split(',').any(|c| c == controller))
                })
            };
            let f =
                |controller: &str, name: &str| find(controller).and_then(|d| text(&d.join(name)));
            s.cpu_usage_ns = f("cpuacct", "cpuacct.usage").and_then(|t| number(&t));
            s.memory_bytes = f("memory", "memory.usage_in_bytes").and_then(|t| number(&t));
            // A huge page-aligned number means unlimited.
            s.memory_limit = f("memory", "memory.limit_in_bytes")
                .and_then(|t| number(&t))
                .filter(|&b| b < (1 << 62));
            s.oom_kills = f("memory", "memory.oom_control").and_then(|t| keyed(&t, "oom_kill"));
            s.pids = f("pids", "pids.current").and_then(|t| number(&t));
            s.pids_limit = f("pids", "pids.max").and_then(|t| number(&t));
            if let Some((r, w)) =
                f("blkio", "blkio.throttle.io_service_bytes_recursive").map(|t| io_v1(&t))
            {
                s.io_read_bytes = Some(r);
                s.io_write_bytes = Some(w);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"),
            Some(1500)
        );
        assert_eq!(keyed("oom 0\noom_kill 2\n", "oom_kill"), Some(2));
        assert_eq!(
            io_v2("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=10 wbytes=0\n"),
            (4106, 8192)
        );
        assert_eq!(
            io_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:0 Total 4608\nTotal 4608\n"),
            (4096, 512)
        );
        let p = pressure(
            "some avg10=1.50 avg60=0.00 avg300=0.00 total=1234\nfull avg10=0.25 avg60=0.00 avg300=0.00 total=99\n",
        )
        .expect("parsed");
        assert_eq!(
            (p.some_avg10, p.some_total_us, p.full_avg10, p.full_total_us),
            (1.5, 1234, Some(0.25), Some(99))
        );
        // cpu.pressure before 5.13 has no `full` line.
        let cpu = pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").expect("parsed");
        assert_eq!(cpu.full_avg10, None);
        assert!(pressure("").is_none());
    }

    #[test]
    fn a_v2_directory() {
        let d = tempfile::tempdir().expect("a directory");
        let w = |n: &str, t: &str| std::fs::write(d.path().join(n), t).expect("written");
        w("cpu.stat", "usage_usec 2000\n");
        w("memory.current", "1048576\n");
        w("memory.max", "max\n");
        w("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
        w("pids.current", "4\n");
        w("pids.max", "64\n");
        w(
            "io.stat",
            "8:0 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0\n",
        );
        w("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n");
        let s = read(Dirs::V2(d.path()));
        assert_eq!(s.cpu_usage_ns, Some(2_000_000));
        assert_eq!(
            (s.memory_bytes, s.memory_limit, s.oom_kills),
            (Some(1 << 20), None, Some(1))
        );
        assert_eq!((s.pids, s.pids_limit), (Some(4), Some(64)));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (Some(1), Some(2)));
        assert_eq!(s.memory_pressure.map(|p| p.some_total_us), Some(5));
        assert!(s.cpu_pressure.is_none());
    }
}
