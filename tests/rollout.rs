//! Health-gated rollback against the real kernel: a change whose new generation turns
//! unhealthy within its bake time is replaced by the last good spec, the operator's file stays
//! as written, the failure survives a restart of superd, and the next edit is tried afresh.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

/// A web server answering on `port`, checked on 8080: healthy only when `port` is 8080.
fn web(port: u16, tag: &str) -> String {
    format!(
        "command = [\"python3\", \"-m\", \"http.server\", \"{port}\", \"--bind\", \"127.0.0.1\", \"--directory\", \"/etc\"]\n\
         env = {{ TAG = \"{tag}\" }}\n\
         [network]\nmode = \"none\"\n\
         [health]\nhttp = \"http://localhost:8080/hostname\"\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
         retries = 2\nstart_interval = \"200ms\"\n\
         [rollout]\nbake = \"3s\"\n"
    )
}

fn status_of(sb: &Sandbox, name: &str) -> Option<superd::api::WorkloadStatus> {
    sb.try_status()?
        .workloads
        .into_iter()
        .find(|w| w.name == name)
}

/// The TAG of the running instance, from its environment.
fn tag_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"TAG="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn wait_tag(sb: &Sandbox, tag: &str, what: &str) -> superd::api::WorkloadStatus {
    let mut found = None;
    sb.wait_until(what, Duration::from_secs(30), |s| {
        found = status_of(s, "web").filter(|w| {
            w.state == State::Running
                && w.health.as_ref().is_some_and(|h| h.status == "healthy")
                && w.pid.is_some_and(|p| tag_of(p) == tag)
        });
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn a_change_that_turns_unhealthy_within_its_bake_is_rolled_back_until_the_next_edit() {
    let Some(()) = privileged(
        "a_change_that_turns_unhealthy_within_its_bake_is_rolled_back_until_the_next_edit",
    ) else {
        return;
    };
    let mut sb = Sandbox::start("rollout");
    sb.write_manifest("web", &web(8080, "v1"));
    wait_tag(&sb, "v1", "v1 healthy");
    let good = sb.state.join("rollout/web.json");
    sb.wait_until("v1 is the last good spec", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&good).is_ok_and(|t| t.contains("\"good_hash\":\""))
    });

    // v2 listens on the wrong port: its check fails within the bake time.
    let v2 = web(8081, "v2");
    sb.write_manifest("web", &v2);
    sb.wait_until("v2 rolled back", Duration::from_secs(30), |s| {
        status_of(s, "web").is_some_and(|w| {
            w.notice
                .is_some_and(|n| n.contains("running the previous spec"))
        })
    });
    let back = wait_tag(&sb, "v1", "v1 running again after v2 failed");
    let notice = back.notice.unwrap_or_default();
    assert!(
        notice.contains("running the previous spec")
            && notice.contains("web.toml")
            && notice.contains("it turned unhealthy"),
        "{notice}"
    );
    assert_eq!(
        std::fs::read_to_string(sb.manifests.join("web.toml")).unwrap(),
        v2,
        "the operator's file stays as written"
    );
    let log = sb.superd_log();
    assert!(log.contains("web rolled back: the change at"), "{log}");

    // A restart of superd (every workload stops and starts) comes up on v1: the failure is
    // kept with the last good spec.
    sb.restart();
    let again = wait_tag(&sb, "v1", "v1 after a restart of superd");
    assert!(
        again
            .notice
            .unwrap_or_default()
            .contains("running the previous spec"),
        "the failure was forgotten"
    );

    // The next edit is tried afresh (and lasts).
    sb.write_manifest("web", &web(8080, "v3"));
    sb.wait_until("v3 tried", Duration::from_secs(30), |s| {
        status_of(s, "web").is_some_and(|w| {
            !w.notice
                .is_some_and(|n| n.contains("running the previous spec"))
        })
    });
    let v3 = wait_tag(&sb, "v3", "v3 running");
    assert_eq!(v3.notice, None);
    sb.shutdown();
}
