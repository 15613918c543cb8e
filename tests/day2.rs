//! Everyday control against a real superd: `superctl stop`/`start` (kept across a superd
//! restart), `status` of several names and `--check`, and `superctl plan`.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::path::Path;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

const SLEEPER: &str = "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n";

fn superctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn stop_holds_a_workload_across_a_superd_restart_until_start() {
    let Some(()) = privileged("stop_holds_a_workload_across_a_superd_restart_until_start") else {
        return;
    };
    let mut sb = Sandbox::start("hold");
    sb.write_manifest("web", SLEEPER);
    sb.write_manifest("db", SLEEPER);
    sb.wait_running("web");
    sb.wait_running("db");
    let (code, out, err) = superctl(&sb.socket, &["stop", "web"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("stays stopped until `superctl start web`"),
        "{out}"
    );
    sb.wait_for("web", "stopped", Duration::from_secs(20), |w| {
        w.state == State::Stopped && w.pid.is_none()
    });
    // A manifest change does not start it, nor does `restart`.
    sb.write_manifest("web", &format!("{SLEEPER}[resources]\nmemory = \"64M\"\n"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sb.workload("web").unwrap().state, State::Stopped);
    let (code, _, err) = superctl(&sb.socket, &["restart", "web"]);
    assert_eq!(code, 3);
    assert!(err.contains("superctl start web"), "{err}");
    // Across a restart of superd it stays stopped; the table says how to start it.
    sb.restart();
    sb.wait_running("db");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sb.workload("web").unwrap().state, State::Stopped);
    let (code, table, _) = superctl(&sb.socket, &["status", "web", "db"]);
    assert_eq!(code, 0);
    assert!(table.contains("web: stopped by `superctl stop`"), "{table}");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("db ")).count(),
        1,
        "{table}"
    );
    let (code, _, err) = superctl(&sb.socket, &["status", "web", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no workload named nope"), "{err}");
    let (code, out, _) = superctl(&sb.socket, &["start", "web"]);
    assert_eq!(code, 0, "{out}");
    let w = sb.wait_running("web");
    assert!(w.pid.is_some());
    // A second start is harmless.
    let (code, out, _) = superctl(&sb.socket, &["start", "web"]);
    assert_eq!((code, out.contains("nothing to do")), (0, true), "{out}");
    // --check fails on a broken manifest, and only then.
    assert_eq!(superctl(&sb.socket, &["status", "--check"]).0, 0);
    sb.write_manifest("db", "command = 1\n");
    sb.wait_for("db", "invalid", Duration::from_secs(20), |w| {
        w.invalid_manifest
    });
    assert_eq!(superctl(&sb.socket, &["status", "--check"]).0, 1);
    assert_eq!(
        sb.workload("db").unwrap().state,
        State::Running,
        "a broken edit stopped db"
    );
    sb.shutdown();
}

#[test]
fn plan_reports_what_applying_a_directory_would_do() {
    let Some(()) = privileged("plan_reports_what_applying_a_directory_would_do") else {
        return;
    };
    let mut sb = Sandbox::start("plan");
    for name in ["web", "db", "old", "same"] {
        sb.write_manifest(name, SLEEPER);
    }
    for name in ["web", "db", "old", "same"] {
        sb.wait_running(name);
    }
    let next = sb.dir.path().join("next");
    std::fs::create_dir(&next).unwrap();
    common::set_mode(&next, 0o755);
    let put = |name: &str, text: &str| {
        let p = next.join(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        common::set_mode(&p, 0o644);
    };
    put("same", SLEEPER);
    put("web", &format!("{SLEEPER}[resources]\nmemory = \"64M\"\n"));
    put(
        "db",
        "command = [\"/bin/sleep\", \"2000\"]\n[network]\nmode = \"none\"\n",
    );
    put("new", SLEEPER);
    put("bad", "command = [\"x\"]\nafter = [\"ghost\"]\n");
    let dir = next.to_str().unwrap();
    let (code, out, err) = superctl(&sb.socket, &["plan", dir]);
    assert_eq!(code, 1, "{out}{err}");
    for line in [
        "! rejected   bad",
        "~ recreate   db    (command)",
        "+ start      new",
        "- stop       old",
        "= unchanged  same",
        "~ update     web   live: resources.memory",
        "plan: 1 start, 1 stop, 1 recreate, 1 update, 1 unchanged, 1 rejected",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert!(
        out.contains("bad.toml:2:10: after[0]: no manifest declares `ghost`"),
        "{out}"
    );
    // Without the bad file: changes only.
    std::fs::remove_file(next.join("bad.toml")).unwrap();
    let (code, json, _) = superctl(&sb.socket, &["plan", dir, "--json"]);
    assert_eq!(code, 2);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["name"], "db");
    assert_eq!(rows[0]["action"], "recreate");
    assert_eq!(rows[0]["fields"][0], "command");
    // The directory superd runs: no change.
    let (code, out, _) = superctl(&sb.socket, &["plan", sb.manifests.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // No daemon: everything starts.
    let gone = sb.dir.path().join("nobody.sock");
    let (code, out, _) = superctl(&gone, &["plan", dir]);
    assert_eq!(code, 2);
    assert!(
        out.contains("planning against nothing") && out.contains("plan: 4 start"),
        "{out}"
    );
    sb.shutdown();
}

#[test]
fn events_stream_live_and_replay_since_with_filters() {
    let Some(()) = privileged("events_stream_live_and_replay_since_with_filters") else {
        return;
    };
    use std::io::BufRead;
    let sb = Sandbox::start("events");
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["events", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    // Give the follower time to subscribe.
    std::thread::sleep(Duration::from_millis(300));
    sb.write_manifest(
        "crash",
        "command = [\"/bin/sh\", \"-c\", \"exit 3\"]\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    sb.write_manifest("broken", "command = 1\n");
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let want = |seen: &[serde_json::Value]| {
        let exit = seen
            .iter()
            .any(|e| e["kind"] == "exit" && e["workload"] == "crash" && e["exit"]["code"] == 3);
        let manifest = seen
            .iter()
            .any(|e| e["kind"] == "manifest" && e["workload"] == "broken");
        exit && manifest
    };
    while !want(&seen) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(v) => seen.push(v),
            Err(_) => panic!("events not seen live: {seen:#?}\n{}", sb.superd_log()),
        }
    }
    let seqs: Vec<u64> = seen.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();

    // A replay after the fact, filtered: the crash's state changes and its exit, nothing else.
    let (code, out, err) = superctl(
        &sb.socket,
        &[
            "events",
            "--since",
            "1m",
            "--no-follow",
            "--filter",
            "name=crash",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().all(|l| l.contains(" crash ")), "{out}");
    assert!(out.contains("crash state starting"), "{out}");
    assert!(out.contains("crash exit code=3 reason=exited"), "{out}");
    let (code, out, _) = superctl(
        &sb.socket,
        &[
            "events",
            "--since",
            "1m",
            "--no-follow",
            "--filter",
            "kind=manifest",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["workload"], "broken");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("broken.toml:1:11"),
        "{out}"
    );
    let (code, _, err) = superctl(&sb.socket, &["events", "--filter", "kind=boom"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown event kind"), "{err}");
    sb.shutdown();
}
