//! `[health]`, `after` and `[start_order]`.

use super::*;
use crate::manifest::{Condition, OnUnhealthy, Probe};
use std::time::Duration;

#[test]
fn health_probes_and_their_timing() {
    let h = ok_with("[health]\nhttp = \"http://localhost:8080/healthz\"\ninterval = \"5s\"\ntimeout = \"1s\"\nretries = 2\nstart_period = \"20s\"\nstart_interval = \"500ms\"\non_unhealthy = \"stop\"")
        .health
        .expect("a check");
    assert_eq!(
        h.probe,
        Probe::Http {
            port: 8080,
            path: "/healthz".into(),
            host: "localhost:8080".into()
        }
    );
    assert_eq!(
        (
            h.interval,
            h.timeout,
            h.retries,
            h.start_period,
            h.start_interval,
            h.on_unhealthy
        ),
        (
            Duration::from_secs(5),
            Duration::from_secs(1),
            2,
            Duration::from_secs(20),
            Duration::from_millis(500),
            OnUnhealthy::Stop
        )
    );
    let e = ok_with("[health]\nexec = [\"pg_isready\", \"-q\"]")
        .health
        .expect("a check");
    assert_eq!(
        e.probe,
        Probe::Exec {
            argv: vec!["pg_isready".into(), "-q".into()]
        }
    );
    let t = ok_with("[health]\ntcp = 5432").health.expect("a check");
    assert_eq!(t.probe, Probe::Tcp { port: 5432 });
    assert_eq!(
        (t.interval, t.retries, t.on_unhealthy),
        (Duration::from_secs(30), 3, OnUnhealthy::Restart)
    );
    assert!(ok(CMD).health.is_none());

    let bad = |v: &str, field: &str, needle: &str| {
        error_with(&format!("[health]\n{v}"), field, needle);
    };
    bad("interval = \"5s\"", "health", "missing a probe");
    bad(
        "tcp = 1\nhttp = \"http://localhost/\"",
        "health.tcp",
        "give one probe",
    );
    bad("tcp = 70000", "health.tcp", "");
    bad(
        "http = \"http://example.com/\"",
        "health.http",
        "must be localhost",
    );
    bad(
        "http = \"https://localhost/\"",
        "health.http",
        "only http://",
    );
    bad("exec = \"pg_isready\"", "health.exec", "expected an array");
    bad("exec = [\"x\"]\ntcp = 1", "health.exec", "give one probe");
    bad("tcp = 1\nretries = 0", "health.retries", "");
    bad(
        "tcp = 1\non_unhealthy = \"reboot\"",
        "health.on_unhealthy",
        "\"restart\", \"stop\", \"none\"",
    );
    bad(
        "tcp = 1\ninterval = \"1s\"\ntimeout = \"2s\"",
        "health.timeout",
        "longer than interval",
    );
    bad("tcp = 1\nprobe = 3", "health.probe", "");
}

#[test]
fn after_with_conditions_and_defaults() {
    let s = ok_with("after = [\"db:healthy\", \"cache\"]\n").start_order;
    let deps: Vec<(&str, Condition)> = s
        .after
        .iter()
        .map(|d| (d.name.as_str(), d.condition))
        .collect();
    assert_eq!(
        deps,
        [("db", Condition::Healthy), ("cache", Condition::Started)]
    );
    assert!(!s.restart_with);
    let s = ok_with("after = [\"db\", \"cache:started\"]\n[start_order]\ncondition = \"healthy\"\nrestart_with = true").start_order;
    let deps: Vec<Condition> = s.after.iter().map(|d| d.condition).collect();
    assert_eq!(deps, [Condition::Healthy, Condition::Started]);
    assert!(s.restart_with);
    // Neither changes how the workload runs: a live change.
    let plain = ok(CMD);
    let with = ok_with("after = [\"db\"]\n[health]\ntcp = 80");
    assert_eq!(plain.core_hash(), with.core_hash());
    assert_ne!(plain.hash(), with.hash());

    error_with("after = \"db\"\n", "after", "expected an array");
    error_with("after = [\"db\", \"db\"]\n", "after[1]", "already listed");
    error_with(
        "after = [\"web\"]\n",
        "after[0]",
        "cannot start after itself",
    );
    error_with("after = [\"db:ready\"]\n", "after[0]", "unknown condition");
    error_with("after = [\"Db\"]\n", "after[0]", "RFC 1123");
    error_with(
        "[start_order]\ncondition = \"up\"",
        "start_order.condition",
        "\"started\", \"healthy\"",
    );
}
