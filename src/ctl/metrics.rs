//! `GET /metrics`: the Prometheus text format (version 0.0.4), on the control socket and,
//! with `--metrics-listen ADDR`, on a TCP address (that listener answers nothing else).
//!
//! Per workload: state, restarts, health, CPU seconds, memory and its limit, tasks, OOM kills;
//! and superd's own figures. [`render`] is pure.

use super::server::ApiTx;
use crate::api::{State, StatsResponse, StatusResponse};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

/// superd's own figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Own {
    /// Resident memory.
    pub rss_bytes: Option<u64>,
    /// Start time, seconds since the epoch.
    pub start_time: f64,
    /// Events recorded since the start.
    pub events: u64,
}

const STATES: [State; 8] = [
    State::Starting,
    State::Running,
    State::Stopping,
    State::Backoff,
    State::Exited,
    State::Failed,
    State::Waiting,
    State::Stopped,
];

/// A label value, escaped as the format asks (`\`, `"` and newlines).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", label(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

/// Picks one figure of a cgroup's stats.
type Pick = fn(&crate::api::CgroupStats) -> Option<u64>;

/// The exposition text.
pub fn render(status: &StatusResponse, stats: &StatsResponse, own: Own) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.head(
        "superd_workload_state",
        "gauge",
        "1 for the state the workload is in, 0 for the others.",
    );
    for w in &status.workloads {
        for s in &STATES {
            let v = u8::from(w.state == *s);
            f.sample(
                "superd_workload_state",
                &[("workload", &w.name), ("state", s.as_str())],
                v,
            );
        }
    }
    f.head(
        "superd_workload_restarts_total",
        "counter",
        "Restarts since the workload was first started.",
    );
    for w in &status.workloads {
        f.sample(
            "superd_workload_restarts_total",
            &[("workload", &w.name)],
            w.restarts,
        );
    }
    f.head(
        "superd_workload_healthy",
        "gauge",
        "1 healthy, 0 unhealthy or no verdict yet (workloads with [health] that run).",
    );
    for w in &status.workloads {
        if let Some(h) = &w.health {
            f.sample(
                "superd_workload_healthy",
                &[("workload", &w.name)],
                u8::from(h.status == "healthy"),
            );
        }
    }
    f.head(
        "superd_workload_health_failures",
        "gauge",
        "Consecutive failed health probes.",
    );
    for w in &status.workloads {
        if let Some(h) = &w.health {
            f.sample(
                "superd_workload_health_failures",
                &[("workload", &w.name)],
                h.failures,
            );
        }
    }
    let cg = |pick: Pick| {
        stats
            .workloads
            .iter()
            .filter_map(move |w| Some((w.name.as_str(), pick(w.cgroup.as_ref()?)?)))
    };
    f.head(
        "superd_workload_cpu_seconds_total",
        "counter",
        "CPU time the running instance used.",
    );
    for (name, ns) in cg(|c| c.cpu_usage_ns) {
        // Display figure: precision loss is irrelevant.
        #[allow(clippy::cast_precision_loss)]
        let secs = ns as f64 / 1e9;
        f.sample(
            "superd_workload_cpu_seconds_total",
            &[("workload", name)],
            secs,
        );
    }
    let gauges: [(&str, &str, Pick); 6] = [
        (
            "superd_workload_memory_bytes",
            "Memory the running instance uses.",
            |c| c.memory_bytes,
        ),
        (
            "superd_workload_memory_limit_bytes",
            "Its memory limit (absent: unlimited).",
            |c| c.memory_limit,
        ),
        (
            "superd_workload_pids",
            "Tasks of the running instance.",
            |c| c.pids,
        ),
        (
            "superd_workload_io_read_bytes_total",
            "Bytes the running instance read from block devices.",
            |c| c.io_read_bytes,
        ),
        (
            "superd_workload_io_write_bytes_total",
            "Bytes the running instance wrote to block devices.",
            |c| c.io_write_bytes,
        ),
        (
            "superd_workload_oom_kills_total",
            "Processes of the running instance the OOM killer killed.",
            |c| c.oom_kills,
        ),
    ];
    for (name, help, pick) in gauges {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        f.head(name, kind, help);
        for (w, v) in cg(pick) {
            f.sample(name, &[("workload", w)], v);
        }
    }
    f.head(
        "superd_workloads",
        "gauge",
        "Workloads superd knows (declared or still running).",
    );
    f.sample("superd_workloads", &[], status.workloads.len());
    f.head(
        "superd_invalid_manifests",
        "gauge",
        "Manifests that are invalid (their workloads keep their last good spec).",
    );
    f.sample(
        "superd_invalid_manifests",
        &[],
        status
            .workloads
            .iter()
            .filter(|w| w.invalid_manifest)
            .count(),
    );
    f.head(
        "superd_events_total",
        "counter",
        "Events recorded since superd started.",
    );
    f.sample("superd_events_total", &[], own.events);
    f.head(
        "superd_start_time_seconds",
        "gauge",
        "When superd started, seconds since the epoch.",
    );
    f.sample(
        "superd_start_time_seconds",
        &[],
        format!("{:.3}", own.start_time),
    );
    if let Some(rss) = own.rss_bytes {
        f.head(
            "superd_resident_memory_bytes",
            "gauge",
            "superd's resident memory.",
        );
        f.sample("superd_resident_memory_bytes", &[], rss);
    }
    f.head(
        "superd_build_info",
        "gauge",
        "1, labelled with superd's version.",
    );
    f.sample(
        "superd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    out
}

/// superd's resident memory, from `/proc/self/status`.
pub fn own_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Asks the supervisor for what `/metrics` shows, and renders it.
pub async fn collect(tx: &ApiTx, own: Own) -> Result<String, String> {
    use crate::api::{Request, Response};
    let ask = |req: Request| async move {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        tx.send((req, reply_tx))
            .await
            .map_err(|_| "superd is shutting down".to_string())?;
        reply_rx
            .await
            .map_err(|_| "superd is shutting down".to_string())
    };
    let status = match ask(Request::Status { name: None }).await? {
        Response::Status(s) => s,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    let stats = match ask(Request::Stats).await? {
        Response::Stats(s) => s,
        other => return Err(format!("unexpected answer {other:?}")),
    };
    Ok(render(&status, &stats, own))
}

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` (only) on `listener`, at most 8 connections at once, each answered
/// within 5 s.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    tx: ApiTx,
    own: impl Fn() -> Own + Send + Sync + 'static,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(8));
    let own = Arc::new(own);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (tx, own) = (tx.clone(), Arc::clone(&own));
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (tx, own) = (tx.clone(), Arc::clone(&own));
                    async move {
                        let (status, body, ctype) = if req.uri().path() != "/metrics" {
                            (
                                404,
                                "only /metrics is served here\n".to_string(),
                                "text/plain",
                            )
                        } else if req.method() != hyper::Method::GET {
                            (405, "use GET\n".to_string(), "text/plain")
                        } else {
                            match collect(&tx, own()).await {
                                Ok(text) => (200, text, CONTENT_TYPE),
                                Err(e) => (503, format!("{e}\n"), "text/plain"),
                            }
                        };
                        hyper::Response::builder()
                            .status(status)
                            .header(hyper::header::CONTENT_TYPE, ctype)
                            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                    }
                });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CgroupStats, HealthView, WorkloadStats, WorkloadStatus};

    #[test]
    fn families_and_samples() {
        let w: WorkloadStatus = serde_json::from_value(serde_json::json!({
            "name": "web", "state": "running", "pid": 1, "init_pid": null, "restarts": 2,
            "last_exit": null, "error": null, "memory_bytes": 1, "spec_hash": null,
            "next_restart_at": null, "started_at": null, "uptime_seconds": null, "manifest": null
        }))
        .expect("a status");
        let mut w2 = w.clone();
        w2.name = "q\"x".into();
        w2.health = Some(HealthView {
            status: "unhealthy".into(),
            failures: 3,
            probe: "tcp 1".into(),
            last_output: None,
            last_probe_at: None,
            next_probe_at: None,
        });
        let status = StatusResponse {
            workloads: vec![w, w2],
        };
        let stats = StatsResponse {
            monotonic_ns: 0,
            workloads: vec![WorkloadStats {
                name: "web".into(),
                state: State::Running,
                restarts: 2,
                health: None,
                cgroup: Some(CgroupStats {
                    cpu_usage_ns: Some(1_500_000_000),
                    memory_bytes: Some(4096),
                    ..CgroupStats::default()
                }),
            }],
        };
        let text = render(
            &status,
            &stats,
            Own {
                rss_bytes: Some(10),
                start_time: 1.5,
                events: 7,
            },
        );
        for line in [
            "superd_workload_state{workload=\"web\",state=\"running\"} 1",
            "superd_workload_state{workload=\"web\",state=\"failed\"} 0",
            "superd_workload_restarts_total{workload=\"web\"} 2",
            "superd_workload_healthy{workload=\"q\\\"x\"} 0",
            "superd_workload_cpu_seconds_total{workload=\"web\"} 1.5",
            "superd_workload_memory_bytes{workload=\"web\"} 4096",
            "superd_events_total 7",
            "# TYPE superd_workload_oom_kills_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        // Each family's TYPE line appears once.
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.dedup();
        assert_eq!(types, unique);
    }
}
