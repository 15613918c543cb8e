//! `superctl stats` and `/metrics` against a real superd and real cgroups; the exposition is
//! checked with a real Prometheus parser (python3-prometheus-client).

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::io::{Read, Write};
use std::time::Duration;
use superd::testing::privileged;

const BUSY: &str = "command = [\"/bin/sh\", \"-c\", \"while :; do :; done\"]\n[network]\nmode = \"none\"\n[resources]\nmemory = \"64M\"\ncpus = 0.5\npids = 32\n";

/// Parses `text` with prometheus_client's parser; returns `family sample-name labels value`
/// lines.
fn parse_exposition(text: &str) -> String {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(fam.type, s.name, labels, s.value)
"#;
    // Debian's python, where python3-prometheus-client (packaging/deps.sh) installs.
    let mut child = std::process::Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn http_get_metrics(stream: &mut impl ReadWrite) -> String {
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    stream.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        resp.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{resp}"
    );
    resp.split_once("\r\n\r\n").unwrap().1.to_string()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn stats_and_metrics_report_what_the_cgroups_say() {
    let Some(()) = privileged("stats_and_metrics_report_what_the_cgroups_say") else {
        return;
    };
    let mut sb = Sandbox::start_with("observe", &["--metrics-listen", "127.0.0.1:19469"]);
    sb.write_manifest("busy", BUSY);
    sb.wait_running("busy");
    std::thread::sleep(Duration::from_millis(500));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["stats", "--no-stream", "--json", "busy"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    assert_eq!(row["name"], "busy");
    let cpu = row["cpu_percent"].as_f64().unwrap();
    // The loop runs, and no faster than its 0.5-CPU quota allows (with a little slack for
    // the sampling window).
    assert!((1.0..=60.0).contains(&cpu), "cpu {cpu}%: {row}");
    assert_eq!(row["memory_limit"], 64 << 20);
    assert!(row["pids"].as_u64().unwrap() >= 1, "{row}");
    assert!(row["memory_bytes"].as_u64().unwrap() > 0, "{row}");
    // The table form.
    let table = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(["stats", "--no-stream"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.starts_with("NAME") && table.contains("64.0M"),
        "{table}"
    );

    // /metrics on the control socket, parsed by a real Prometheus parser.
    let mut unix = std::os::unix::net::UnixStream::connect(&sb.socket).unwrap();
    let text = http_get_metrics(&mut unix);
    let parsed = parse_exposition(&text);
    for want in [
        "gauge superd_workload_state state=running,workload=busy 1.0",
        "gauge superd_workload_state state=failed,workload=busy 0.0",
        "gauge superd_workload_memory_limit_bytes workload=busy 67108864.0",
        "gauge superd_workloads  1.0",
    ] {
        assert!(
            parsed.lines().any(|l| l == want),
            "missing `{want}` in:\n{parsed}"
        );
    }
    assert!(
        parsed
            .lines()
            .any(|l| l.starts_with("counter superd_workload_cpu_seconds_total workload=busy ")),
        "{parsed}"
    );
    assert!(
        parsed
            .lines()
            .any(|l| l.starts_with("gauge superd_resident_memory_bytes ")),
        "{parsed}"
    );
    // The same on the TCP address, inside the sandbox's namespace only.
    let text = sb.in_sandbox_net(|| {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", 19469)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        http_get_metrics(&mut tcp)
    });
    assert!(parse_exposition(&text).contains("superd_workload_state"));
    let other = sb.in_sandbox_net(|| {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", 19469)).unwrap();
        tcp.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        let _ = tcp.read_to_string(&mut r);
        r
    });
    assert!(
        other.starts_with("HTTP/1.1 404"),
        "the metrics port answered more: {other}"
    );
    sb.shutdown();
}
