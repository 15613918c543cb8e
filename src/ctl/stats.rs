//! `superctl stats`: rates from two samples of `GET /v1/stats`, as a table like `docker stats`
//! or as JSON rows (pure: the samples are arguments).

use super::table::{clean, format_bytes};
use crate::api::{StatsResponse, WorkloadStats};
use serde::Serialize;
use std::fmt::Write as _;

/// One workload's figures over the interval between two samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The workload.
    pub name: String,
    /// Its state.
    pub state: String,
    /// CPU used over the interval, in percent of one CPU.
    pub cpu_percent: Option<f64>,
    /// Memory in use.
    pub memory_bytes: Option<u64>,
    /// Its memory limit.
    pub memory_limit: Option<u64>,
    /// Tasks.
    pub pids: Option<u64>,
    /// Bytes read and written since the instance started.
    pub io_read_bytes: Option<u64>,
    /// Bytes written since the instance started.
    pub io_write_bytes: Option<u64>,
    /// OOM kills since the instance started.
    pub oom_kills: Option<u64>,
    /// `some avg10` of CPU, memory and IO pressure (cgroup v2).
    pub pressure: Option<[Option<f64>; 3]>,
}

/// The rows for `names` (all when empty) from samples `before` and `after`.
pub fn rows(before: &StatsResponse, after: &StatsResponse, names: &[String]) -> Vec<Row> {
    let elapsed = after.monotonic_ns.saturating_sub(before.monotonic_ns);
    after
        .workloads
        .iter()
        .filter(|w| names.is_empty() || names.contains(&w.name))
        .map(|w| {
            row(
                before.workloads.iter().find(|b| b.name == w.name),
                w,
                elapsed,
            )
        })
        .collect()
}

fn row(before: Option<&WorkloadStats>, w: &WorkloadStats, elapsed_ns: u64) -> Row {
    let cg = w.cgroup.as_ref();
    let cpu = |s: Option<&WorkloadStats>| s.and_then(|s| s.cgroup.as_ref()?.cpu_usage_ns);
    // Display figures: precision loss in the conversions is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let cpu_percent = match (cpu(before), cpu(Some(w))) {
        (Some(a), Some(b)) if elapsed_ns > 0 && b >= a => {
            Some((b - a) as f64 * 100.0 / elapsed_ns as f64)
        }
        _ => None,
    };
    let pressure = cg.and_then(|c| {
        let p = [c.cpu_pressure, c.memory_pressure, c.io_pressure].map(|p| p.map(|p| p.some_avg10));
        p.iter().any(Option::is_some).then_some(p)
    });
    let mut state = w.state.as_str().to_string();
    if let Some(h) = &w.health {
        let _ = write!(state, " ({h})");
    }
    Row {
        name: w.name.clone(),
        state,
        cpu_percent,
        memory_bytes: cg.and_then(|c| c.memory_bytes),
        memory_limit: cg.and_then(|c| c.memory_limit),
        pids: cg.and_then(|c| c.pids),
        io_read_bytes: cg.and_then(|c| c.io_read_bytes),
        io_write_bytes: cg.and_then(|c| c.io_write_bytes),
        oom_kills: cg.and_then(|c| c.oom_kills),
        pressure,
    }
}

/// The table: `NAME STATE CPU % MEM USAGE / LIMIT MEM % PIDS BLOCK I/O OOM PSI cpu/mem/io`.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "NAME",
        "STATE",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "PIDS",
        "BLOCK I/O",
        "OOM",
        "PSI CPU/MEM/IO",
    ];
    let dash = || "-".to_string();
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let mem = match (r.memory_bytes, r.memory_limit) {
                (Some(m), Some(l)) => format!("{} / {}", format_bytes(m), format_bytes(l)),
                (Some(m), None) => format!("{} / -", format_bytes(m)),
                _ => dash(),
            };
            #[allow(clippy::cast_precision_loss)]
            let mem_pct = match (r.memory_bytes, r.memory_limit) {
                (Some(m), Some(l)) if l > 0 => format!("{:.2}%", m as f64 * 100.0 / l as f64),
                _ => dash(),
            };
            let io = match (r.io_read_bytes, r.io_write_bytes) {
                (Some(a), Some(b)) => format!("{} / {}", format_bytes(a), format_bytes(b)),
                _ => dash(),
            };
            let psi = r.pressure.map_or_else(dash, |p| {
                p.map(|v| v.map_or_else(dash, |v| format!("{v:.1}")))
                    .join("/")
            });
            [
                clean(&r.name),
                clean(&r.state),
                r.cpu_percent.map_or_else(dash, |c| format!("{c:.2}%")),
                mem,
                mem_pct,
                r.pids.map_or_else(dash, |p| p.to_string()),
                io,
                r.oom_kills.map_or_else(dash, |o| o.to_string()),
                psi,
            ]
        })
        .collect();
    super::table::columns(&header, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CgroupStats, Pressure, State};

    fn sample(ns: u64, cpu: u64) -> StatsResponse {
        StatsResponse {
            monotonic_ns: ns,
            workloads: vec![
                WorkloadStats {
                    name: "web".into(),
                    state: State::Running,
                    restarts: 0,
                    health: Some("healthy".into()),
                    cgroup: Some(CgroupStats {
                        cpu_usage_ns: Some(cpu),
                        memory_bytes: Some(16 << 20),
                        memory_limit: Some(64 << 20),
                        pids: Some(3),
                        io_read_bytes: Some(4096),
                        io_write_bytes: Some(0),
                        oom_kills: Some(0),
                        memory_pressure: Some(Pressure {
                            some_avg10: 1.25,
                            ..Pressure::default()
                        }),
                        ..CgroupStats::default()
                    }),
                },
                WorkloadStats {
                    name: "done".into(),
                    state: State::Exited,
                    restarts: 2,
                    health: None,
                    cgroup: None,
                },
            ],
        }
    }

    #[test]
    fn rates_and_the_table() {
        let rows = rows(
            &sample(1_000_000_000, 0),
            &sample(2_000_000_000, 250_000_000),
            &[],
        );
        assert_eq!(rows[0].cpu_percent, Some(25.0));
        assert_eq!(rows[1].cpu_percent, None);
        let text = render(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME  STATE"), "{text}");
        assert!(lines[1].contains("running (healthy)  25.00%  16.0M / 64.0M      25.00%  3     4.0K / 0B  0    -/1.2/-"), "{text}");
        assert!(
            lines[2].starts_with("done  exited") && lines[2].ends_with("-"),
            "{text}"
        );
        let only = super::rows(&sample(0, 0), &sample(1, 1), &["done".to_string()]);
        assert_eq!(only.len(), 1);
    }
}
