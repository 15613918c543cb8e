//! Hostile and careless input to the manifest directory, against the real superd: what an
//! error may cost, files that are not files, and files that anybody could have written.

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

/// Peak resident memory of a process, from `/proc/PID/status` (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A single-line manifest just under the 1 MiB cap whose every `env` value is wrong.
fn one_line_of_errors(bytes: usize) -> String {
    let mut s = String::from("command = [\"/bin/true\"]\nenv = { ");
    let mut i = 0;
    while s.len() + 32 < bytes {
        s.push_str(&format!("a{i} = 1, "));
        i += 1;
    }
    s.push_str("z = 1 }\n");
    s
}

#[test]
fn malformed_manifests_cost_bounded_memory_log_and_status() {
    let Some(()) = privileged("malformed_manifests_cost_bounded_memory_log_and_status") else {
        return;
    };
    let mut sb = Sandbox::start("malformed");
    sb.write_manifest(
        "good",
        "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n",
    );
    let pid = sb.wait_running("good").pid;
    let idle = peak_rss_kib(sb.superd_pid());
    // Three 1 MiB one-liners (refused as too complex before they are parsed), three of
    // 12 000 bad values each (parsed: twenty errors shown, the rest counted), 194 small ones.
    let big = one_line_of_errors((1 << 20) - 64);
    let many = one_line_of_errors(100_000);
    for i in 0..200 {
        let text = if i < 3 {
            big.clone()
        } else if i < 6 {
            many.clone()
        } else {
            format!("command = [\"/bin/true\"]\n[resources]\nmemory = \"{i}Q\"\npids = -1\n")
        };
        sb.write_manifest(&format!("bad{i:03}"), &text);
    }
    sb.wait_until("200 errors listed", Duration::from_secs(60), |s| {
        s.try_status().is_some_and(|st| {
            st.workloads
                .iter()
                .filter(|w| w.state == State::Failed && w.error.is_some())
                .count()
                == 200
        })
    });
    let st = sb.status();
    let reply = serde_json::to_vec(&st).unwrap().len();
    assert!(reply < 4 << 20, "status reply of {reply} bytes");
    let error_of = |name: &str| {
        let w = st.workloads.iter().find(|w| w.name == name).unwrap();
        w.error.clone().unwrap_or_default()
    };
    assert!(
        error_of("bad000").contains("too complex"),
        "{}",
        error_of("bad000")
    );
    let err = error_of("bad003");
    assert!(err.contains("more errors"), "{err}");
    assert!(err.len() < 32 << 10, "{} bytes of error", err.len());
    let good = sb.workload("good").unwrap();
    assert_eq!(
        (good.state, good.pid),
        (State::Running, pid),
        "the good workload was disturbed"
    );
    let log = sb.superd_log().len();
    assert!(log < 8 << 20, "superd wrote {log} bytes of log");
    // A safety net against the old behaviour (hundreds of MiB); the real figure (≤ 2× idle)
    // is measured by benches/malformed.sh.
    let peak = peak_rss_kib(sb.superd_pid());
    eprintln!("superd peak RSS: idle {idle} KiB, after 200 malformed files {peak} KiB");
    assert!(
        peak < idle + (128 << 10),
        "superd's peak RSS grew from {idle} KiB to {peak} KiB"
    );
    sb.shutdown();
}
