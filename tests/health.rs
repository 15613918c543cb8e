//! Health checks and start order against the real kernel: HTTP and TCP probes that superd
//! runs from inside each workload's own network namespace, an unhealthy workload restarted,
//! and dependents that wait for, stop with and stop before their dependencies.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::{ExitReason, State, WorkloadStatus};
use superd::testing::privileged;

fn health(w: &WorkloadStatus) -> Option<&str> {
    w.health.as_ref().map(|h| h.status.as_str())
}

/// python3's http.server on the workload's loopback only, serving `/srv`.
fn web_manifest(srv: &std::path::Path) -> String {
    format!(
        r#"command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", "/srv", "8080"]
[network]
mode = "none"
[[mounts]]
source = "{}"
target = "/srv"
readonly = true
[stop]
timeout = "2s"
[health]
http = "http://localhost:8080/ok"
interval = "1s"
timeout = "1s"
retries = 2
start_period = "10s"
start_interval = "200ms"
"#,
        srv.display()
    )
}

#[test]
fn probes_run_inside_the_workload_and_an_unhealthy_one_is_restarted() {
    let Some(()) = privileged("probes_run_inside_the_workload_and_an_unhealthy_one_is_restarted")
    else {
        return;
    };
    let mut sb = Sandbox::start("health");
    let srv = sb.dir.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::write(srv.join("ok"), "fine\n").unwrap();
    common::set_mode(&srv, 0o755);
    sb.write_manifest("web", &web_manifest(&srv));
    // Nothing listens in superd's namespace: only a probe from inside the workload passes.
    sb.write_manifest(
        "quiet",
        "command = [\"sleep\", \"600\"]\n[network]\nmode = \"none\"\n[health]\ntcp = 9\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 1\non_unhealthy = \"none\"\n",
    );
    let w = sb.wait_for("web", "healthy", Duration::from_secs(30), |w| {
        health(w) == Some("healthy")
    });
    let h = w.health.clone().unwrap();
    assert!(
        h.last_output.as_deref().unwrap_or("").contains("200"),
        "{h:?}"
    );
    assert_eq!(h.probe, "http://localhost:8080/ok");
    assert!(h.next_probe_at.is_some());
    let refused = sb.in_sandbox_net(|| std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err());
    assert!(refused, "something listens on 8080 in superd's namespace");

    // A TCP probe on a closed port: unhealthy, reported, and left running (on_unhealthy = none).
    let q = sb.wait_for("quiet", "unhealthy", Duration::from_secs(20), |w| {
        health(w) == Some("unhealthy")
    });
    assert_eq!((q.state, q.restarts), (State::Running, 0));
    let said = q.health.unwrap().last_output.unwrap_or_default();
    assert!(
        said.contains("127.0.0.1:9") && said.contains("refused"),
        "{said}"
    );

    // The file goes: 404, two failures, a restart that says why.
    std::fs::remove_file(srv.join("ok")).unwrap();
    let w = sb.wait_for(
        "web",
        "restarted as unhealthy",
        Duration::from_secs(30),
        |w| w.last_exit.as_ref().map(|e| e.reason) == Some(ExitReason::Unhealthy),
    );
    let notice = w.notice.clone().unwrap_or_default();
    assert!(
        notice.contains("unhealthy") && notice.contains("404"),
        "{notice}"
    );
    std::fs::write(srv.join("ok"), "fine\n").unwrap();
    let w = sb.wait_for("web", "healthy again", Duration::from_secs(30), |w| {
        health(w) == Some("healthy")
    });
    assert!(w.restarts >= 1);
    assert!(sb.superd_log().contains("web unhealthy"));
    sb.shutdown();
}

#[test]
fn dependents_wait_for_a_healthy_dependency_restart_with_it_and_stop_first() {
    let Some(()) =
        privileged("dependents_wait_for_a_healthy_dependency_restart_with_it_and_stop_first")
    else {
        return;
    };
    let mut sb = Sandbox::start("after");
    // db takes two seconds before it listens.
    sb.write_manifest(
        "db",
        "command = [\"sh\", \"-c\", \"sleep 2; exec python3 -m http.server --bind 127.0.0.1 5432\"]\n[network]\nmode = \"none\"\n[stop]\ntimeout = \"2s\"\n[health]\ntcp = 5432\ninterval = \"1s\"\ntimeout = \"1s\"\nstart_period = \"20s\"\nstart_interval = \"200ms\"\n",
    );
    sb.write_manifest(
        "app",
        "command = [\"sleep\", \"600\"]\nafter = [\"db:healthy\"]\n[network]\nmode = \"none\"\n[start_order]\nrestart_with = true\n",
    );
    let app = sb.wait_for("app", "waiting", Duration::from_secs(20), |w| {
        w.state == State::Waiting
    });
    assert_eq!(app.waiting_for, ["db (healthy)"]);
    assert!(app.pid.is_none());
    sb.wait_for("app", "running", Duration::from_secs(30), |w| {
        w.state == State::Running
    });
    let db = sb.workload("db").unwrap();
    assert_eq!(
        health(&db),
        Some("healthy"),
        "app started before db was healthy"
    );

    // db restarts: app (restart_with) stops, waits, and comes back after db is healthy.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["restart", "db"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let app = sb.wait_for("app", "stopped for db", Duration::from_secs(30), |w| {
        w.last_exit.as_ref().map(|e| e.reason) == Some(ExitReason::DependencyDown)
    });
    assert_ne!(app.state, State::Running);
    let app = sb.wait_for("app", "back", Duration::from_secs(30), |w| {
        w.state == State::Running
    });
    assert_eq!(app.restarts, 1);

    // superd's shutdown stops app first, and db only once app is gone.
    sb.stop();
    let log = sb.superd_log();
    let gone = log.rfind("app removed").expect("app removed");
    let db_stop = log.rfind("db stopping").expect("db stopping");
    assert!(
        gone < db_stop,
        "db was stopped before its dependent was gone:\n{log}"
    );
}

#[test]
fn an_exec_probe_runs_inside_the_workload_as_its_user() {
    let Some(()) = privileged("an_exec_probe_runs_inside_the_workload_as_its_user") else {
        return;
    };
    let mut sb = Sandbox::start("exec-probe");
    sb.write_manifest(
        "svc",
        "command = [\"sleep\", \"600\"]\nuser = \"65534:65534\"\n[network]\nmode = \"none\"\n[health]\nexec = [\"sh\", \"-c\", \"id -u; test -e /tmp/ready\"]\ninterval = \"1s\"\ntimeout = \"1s\"\nretries = 1\nstart_interval = \"200ms\"\non_unhealthy = \"none\"\n",
    );
    let w = sb.wait_for("svc", "unhealthy", Duration::from_secs(20), |w| {
        health(w) == Some("unhealthy")
    });
    let said = w.health.unwrap().last_output.unwrap_or_default();
    assert_eq!(said, "exit 1: 65534", "{said}");
    // The probe sees the workload's own /tmp: create the file there with exec.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["exec", "svc", "--", "touch", "/tmp/ready"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let w = sb.wait_for("svc", "healthy", Duration::from_secs(20), |w| {
        health(w) == Some("healthy")
    });
    assert_eq!(
        w.health.unwrap().last_output.as_deref(),
        Some("exit 0: 65534")
    );
    assert_eq!(w.restarts, 0);
    sb.shutdown();
}
