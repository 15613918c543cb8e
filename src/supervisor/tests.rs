//! The supervisor driven through a fake runtime on a paused tokio clock: restarts, backoff,
//! stop timeouts and live updates in milliseconds, without root. The real-kernel tests in
//! `tests/` stay.

use super::seam::{InstanceHandle, WorkloadRuntime};
use super::*;
use crate::api::WorkloadStatus;
use crate::manifest::{DesiredEntry, Name, Resources};
use std::sync::Mutex;
use std::time::Duration;

/// What the fake saw of one instance.
#[derive(Debug, Default)]
struct Seen {
    signals: Vec<i32>,
    killed: bool,
    updates: Vec<Resources>,
    probes: u32,
}

/// One start the supervisor asked for.
struct Started {
    name: String,
    spec: Option<Arc<Spec>>,
    gen: u64,
    events: mpsc::UnboundedSender<Event>,
    seen: Arc<Mutex<Seen>>,
}

/// A runtime that runs nothing: it records what the supervisor asks for, and the test plays
/// the instances' part by sending their events.
/// An instance a predecessor left: spec, generation, restarts, how it ended if it did.
type Left = (Spec, u64, u32, Option<RunEnd>);

#[derive(Default)]
struct Fake {
    starts: Mutex<Vec<Started>>,
    refuse_updates: bool,
    /// What a predecessor left (for `adopt`): spec, generation, restarts, and how it ended
    /// if it did.
    left: Mutex<Vec<Left>>,
    /// The instances adopted, for the test to play.
    adopted: Mutex<Vec<Started>>,
}

#[derive(Debug)]
struct FakeInstance {
    gen: u64,
    seen: Arc<Mutex<Seen>>,
    refuse_updates: bool,
}

impl WorkloadRuntime for Fake {
    fn start(
        &self,
        spec: &Arc<Spec>,
        gen: u64,
        _restarts: u32,
        _address: Option<std::net::Ipv4Addr>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Box<dyn InstanceHandle>, String> {
        let seen = Arc::new(Mutex::new(Seen::default()));
        lock(&self.starts).push(Started {
            name: spec.name.to_string(),
            spec: Some(Arc::clone(spec)),
            gen,
            events,
            seen: Arc::clone(&seen),
        });
        Ok(Box::new(FakeInstance {
            gen,
            seen,
            refuse_updates: self.refuse_updates,
        }))
    }

    fn adopt(&self, events: &mpsc::UnboundedSender<Event>) -> Vec<seam::Adopted> {
        let started = std::time::SystemTime::now() - Duration::from_secs(60);
        std::mem::take(&mut *lock(&self.left))
            .into_iter()
            .map(|(spec, gen, restarts, ended)| {
                let run = match ended {
                    Some(end) => seam::AdoptedRun::Ended {
                        gen,
                        end,
                        reason: crate::api::ExitReason::Exited,
                    },
                    None => {
                        let seen = Arc::new(Mutex::new(Seen::default()));
                        lock(&self.adopted).push(Started {
                            name: spec.name.to_string(),
                            spec: None,
                            gen,
                            events: events.clone(),
                            seen: Arc::clone(&seen),
                        });
                        seam::AdoptedRun::Running {
                            instance: Box::new(FakeInstance {
                                gen,
                                seen,
                                refuse_updates: false,
                            }),
                            pid: 99,
                            init_pid: Some(98),
                        }
                    }
                };
                seam::Adopted {
                    spec: Arc::new(spec),
                    restarts,
                    started,
                    address: None,
                    run,
                }
            })
            .collect()
    }
}

impl InstanceHandle for FakeInstance {
    fn gen(&self) -> u64 {
        self.gen
    }
    fn signal(&self, sig: i32) {
        lock(&self.seen).signals.push(sig);
    }
    fn kill_all(&self) -> Result<(), String> {
        lock(&self.seen).killed = true;
        Ok(())
    }
    fn update(&self, resources: &Resources) -> Result<(), String> {
        if self.refuse_updates {
            return Err("memory.limit_in_bytes: Device or resource busy".into());
        }
        lock(&self.seen).updates.push(*resources);
        Ok(())
    }
    fn memory_bytes(&self) -> Option<u64> {
        Some(8 << 20)
    }
    fn probe(
        &self,
        _name: &str,
        _check: &crate::manifest::HealthCheck,
        _events: mpsc::UnboundedSender<Event>,
    ) {
        lock(&self.seen).probes += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Harness {
    fake: Arc<Fake>,
    events: Arc<super::events::EventHub>,
    msgs: mpsc::Sender<Msg>,
    api: mpsc::Sender<(Request, oneshot::Sender<Response>)>,
}

fn harness(fake: Fake) -> Harness {
    harness_with(fake, |s| s)
}

fn harness_with(fake: Fake, configure: impl FnOnce(Supervisor) -> Supervisor) -> Harness {
    let fake = Arc::new(fake);
    let (msg_tx, msg_rx) = mpsc::channel(64);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (api_tx, api_rx) = mpsc::channel(8);
    let events = Arc::new(super::events::EventHub::new());
    let sup = configure(
        Supervisor::new(Arc::clone(&fake) as Arc<dyn WorkloadRuntime>, ev_tx)
            .with_events(Arc::clone(&events)),
    );
    tokio::spawn(sup.run(Inbox {
        msgs: msg_rx,
        events: ev_rx,
        api: api_rx,
    }));
    Harness {
        fake,
        events,
        msgs: msg_tx,
        api: api_tx,
    }
}

fn spec(name: &str) -> Spec {
    let mut s = Spec::with_defaults(
        Name::new(name).expect("a valid name"),
        vec!["sleep".into(), "60".into()],
    );
    s.network.mode = NetworkMode::None;
    s
}

impl Harness {
    async fn desire(&self, specs: &[Spec]) {
        let d: Desired = specs
            .iter()
            .map(|s| {
                let entry = DesiredEntry {
                    file: format!("/manifests/{}.toml", s.name).into(),
                    spec: Ok(Arc::new(s.clone())),
                    text: Arc::from(""),
                };
                (s.name.to_string(), entry)
            })
            .collect();
        self.msgs
            .send(Msg::Desired(d))
            .await
            .expect("supervisor runs");
        settle().await;
    }

    async fn status(&self, name: &str) -> Option<WorkloadStatus> {
        let (tx, rx) = oneshot::channel();
        let req = Request::Status {
            name: Some(name.to_string()),
        };
        self.api.send((req, tx)).await.expect("supervisor runs");
        match rx.await.expect("an answer") {
            Response::Status(mut s) => s.workloads.pop(),
            _ => None,
        }
    }

    fn starts(&self) -> usize {
        lock(&self.fake.starts).len()
    }

    /// The last start's name, generation and event channel.
    fn last(&self) -> (String, u64, mpsc::UnboundedSender<Event>) {
        let starts = lock(&self.fake.starts);
        let s = starts.last().expect("a start");
        (s.name.clone(), s.gen, s.events.clone())
    }

    /// Plays the last instance's part: it runs.
    async fn run_last(&self) {
        let (name, gen, events) = self.last();
        let _ = events.send(Event::Started {
            at: std::time::SystemTime::now(),
            name,
            gen,
            pid: 4242,
            init_pid: Some(4241),
        });
        settle().await;
    }

    /// Plays the last instance's part: it ends with `end`.
    async fn end_last(&self, end: RunEnd) {
        let (name, gen, events) = self.last();
        let _ = events.send(Event::Ended {
            name,
            gen,
            end,
            reason: crate::api::ExitReason::Exited,
            error: None,
        });
        settle().await;
    }

    /// The last start of `name`: its generation, events and what it saw.
    fn of(&self, name: &str) -> (u64, mpsc::UnboundedSender<Event>, Arc<Mutex<Seen>>) {
        let starts = lock(&self.fake.starts);
        let s = starts
            .iter()
            .rev()
            .find(|s| s.name == name)
            .expect("started");
        (s.gen, s.events.clone(), Arc::clone(&s.seen))
    }

    /// Names in start order.
    fn started(&self) -> Vec<String> {
        lock(&self.fake.starts)
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// Plays `name`'s last instance: it runs.
    async fn run(&self, name: &str) {
        let (gen, events, _) = self.of(name);
        let _ = events.send(Event::Started {
            at: std::time::SystemTime::now(),
            name: name.into(),
            gen,
            pid: 4242,
            init_pid: Some(4241),
        });
        settle().await;
    }

    /// Plays `name`'s last instance: its probe answers.
    async fn answer(&self, name: &str, ok: bool) {
        let (gen, events, _) = self.of(name);
        let _ = events.send(Event::Probed {
            name: name.into(),
            gen,
            ok,
            output: if ok {
                "HTTP 200 OK"
            } else {
                "connection refused"
            }
            .into(),
        });
        settle().await;
    }

    fn last_seen(&self) -> Arc<Mutex<Seen>> {
        let starts = lock(&self.fake.starts);
        Arc::clone(&starts.last().expect("a start").seen)
    }
}

/// Lets the supervisor task handle what was sent (the clock does not move).
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_crash_is_restarted_after_the_backoff_and_not_before() {
    let h = harness(Fake::default());
    h.desire(&[spec("web")]).await;
    assert_eq!(h.starts(), 1);
    h.run_last().await;
    let w = h.status("web").await.expect("web");
    assert_eq!((w.state, w.pid), (State::Running, Some(4242)));

    h.end_last(RunEnd::Exited(1)).await;
    assert_eq!(h.status("web").await.map(|w| w.state), Some(State::Backoff));
    tokio::time::advance(Duration::from_millis(99)).await;
    settle().await;
    assert_eq!(h.starts(), 1, "restarted before its 100 ms backoff");
    tokio::time::advance(Duration::from_millis(2)).await;
    settle().await;
    assert_eq!(h.starts(), 2);

    // A second crash right away doubles the delay.
    h.run_last().await;
    h.end_last(RunEnd::Exited(1)).await;
    tokio::time::advance(Duration::from_millis(150)).await;
    settle().await;
    assert_eq!(h.starts(), 2, "the second backoff is 200 ms");
    tokio::time::advance(Duration::from_millis(60)).await;
    settle().await;
    assert_eq!(h.starts(), 3);
    assert_eq!(h.status("web").await.map(|w| w.restarts), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_removed_workload_gets_its_stop_signal_then_sigkill_at_the_timeout() {
    let h = harness(Fake::default());
    let mut s = spec("db");
    s.stop.signal = Some(Signal::from_number(libc::SIGINT).expect("SIGINT"));
    s.stop.timeout = Duration::from_secs(3);
    h.desire(&[s]).await;
    h.run_last().await;
    let seen = h.last_seen();

    h.desire(&[]).await;
    assert_eq!(lock(&seen).signals, [libc::SIGINT]);
    assert_eq!(h.status("db").await.map(|w| w.state), Some(State::Stopping));
    tokio::time::advance(Duration::from_millis(2_900)).await;
    settle().await;
    assert!(!lock(&seen).killed, "killed before its stop timeout");
    tokio::time::advance(Duration::from_millis(200)).await;
    settle().await;
    assert!(lock(&seen).killed, "not killed at its stop timeout");

    h.end_last(RunEnd::Signaled(libc::SIGKILL)).await;
    assert!(h.status("db").await.is_none(), "removed once it ended");
    assert_eq!(h.starts(), 1, "never started again");
}

#[tokio::test(start_paused = true)]
async fn a_live_change_is_applied_in_place_and_a_refused_one_restarts() {
    let h = harness(Fake::default());
    h.desire(&[spec("web")]).await;
    h.run_last().await;
    let mut more = spec("web");
    more.resources.memory = Some(64 << 20);
    h.desire(&[more.clone()]).await;
    let seen = h.last_seen();
    assert_eq!(lock(&seen).updates.len(), 1);
    assert_eq!(lock(&seen).updates[0].memory, Some(64 << 20));
    assert!(lock(&seen).signals.is_empty(), "a live change stopped it");
    let w = h.status("web").await.expect("web");
    assert_eq!(w.spec_hash, Some(more.hash()));
    assert_eq!(h.starts(), 1);

    // The kernel refuses (v1 cannot lower memory below usage): a restart applies it.
    let h = harness(Fake {
        refuse_updates: true,
        ..Fake::default()
    });
    h.desire(&[spec("web")]).await;
    h.run_last().await;
    h.desire(&[more]).await;
    let seen = h.last_seen();
    assert_eq!(lock(&seen).signals, [libc::SIGTERM]);
    let w = h.status("web").await.expect("web");
    assert!(
        w.notice
            .as_deref()
            .is_some_and(|n| n.contains("live update refused")),
        "{w:?}"
    );
    h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
    assert_eq!(h.starts(), 2, "the new spec starts at once");
}

fn checked(name: &str) -> Spec {
    let mut s = spec(name);
    let mut c = crate::manifest::HealthCheck::tcp(5432);
    c.interval = Duration::from_secs(10);
    c.start_interval = Duration::from_secs(1);
    c.retries = 2;
    s.health = Some(c);
    s
}

async fn advance(ms: u64) {
    tokio::time::advance(Duration::from_millis(ms)).await;
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_workload_is_restarted_with_backoff_and_says_why() {
    let h = harness(Fake::default());
    h.desire(&[checked("db")]).await;
    h.run("db").await;
    let (_, _, seen) = h.of("db");
    advance(999).await;
    assert_eq!(lock(&seen).probes, 0, "probed before start_interval");
    advance(1).await;
    assert_eq!(lock(&seen).probes, 1);
    // No second probe while one is in flight.
    advance(5_000).await;
    assert_eq!(lock(&seen).probes, 1);
    h.answer("db", true).await;
    let w = h.status("db").await.expect("db");
    let health = w.health.expect("a health view");
    assert_eq!(
        (health.status.as_str(), w.state),
        ("healthy", State::Running)
    );
    assert_eq!(health.last_output.as_deref(), Some("HTTP 200 OK"));
    // Healthy: the next probe comes `interval` later.
    advance(9_999).await;
    assert_eq!(lock(&seen).probes, 1);
    advance(1).await;
    assert_eq!(lock(&seen).probes, 2);
    h.answer("db", false).await;
    assert!(
        lock(&seen).signals.is_empty(),
        "one failure of two stopped it"
    );
    advance(10_000).await;
    h.answer("db", false).await;
    // Two failures: unhealthy, stopped, and restarted as a failed run (100 ms backoff).
    assert_eq!(lock(&seen).signals, [libc::SIGTERM]);
    let w = h.status("db").await.expect("db");
    assert!(
        w.notice.as_deref().is_some_and(|n| n.contains("unhealthy")),
        "{w:?}"
    );
    h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
    let w = h.status("db").await.expect("db");
    let reason = w.last_exit.map(|e| e.reason);
    assert_eq!(
        (w.state, reason),
        (State::Backoff, Some(crate::api::ExitReason::Unhealthy))
    );
    advance(100).await;
    assert_eq!(h.starts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dependent_starts_once_its_dependency_is_healthy_and_stops_first() {
    let h = harness(Fake::default());
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    let mut app = spec("app");
    app.start_order.after = vec![crate::manifest::Dependency {
        name: Name::new("db").expect("a name"),
        condition: crate::manifest::Condition::Healthy,
    }];
    h.desire(&[checked("db"), app]).await;
    assert_eq!(h.started(), ["db"]);
    let w = h.status("app").await.expect("app");
    assert_eq!(
        (w.state, w.waiting_for.clone()),
        (State::Waiting, vec!["db (healthy)".to_string()])
    );
    // Waiting is announced once (an event, and a console line in PID-1 mode).
    let waits: Vec<String> = h
        .events
        .subscribe(&super::events::Filter {
            since: Some(since),
            ..Default::default()
        })
        .0
        .iter()
        .filter(|e| e.state == Some(State::Waiting))
        .map(crate::ctl::table::render_event)
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0].ends_with("app state waiting: waiting for db (healthy)"),
        "{waits:?}"
    );
    h.run("db").await;
    advance(1_000).await;
    assert_eq!(h.started(), ["db"], "started before db was healthy");
    h.answer("db", true).await;
    assert_eq!(h.started(), ["db", "app"]);
    h.run("app").await;
    // Removing both stops app first; db only once app is gone.
    h.desire(&[]).await;
    let (_, _, app_seen) = h.of("app");
    let (_, _, db_seen) = h.of("db");
    assert_eq!(lock(&app_seen).signals, [libc::SIGTERM]);
    assert!(
        lock(&db_seen).signals.is_empty(),
        "db stopped before its dependent"
    );
    let (gen, events, _) = h.of("app");
    let _ = events.send(Event::Ended {
        name: "app".into(),
        gen,
        end: RunEnd::Signaled(libc::SIGTERM),
        reason: crate::api::ExitReason::Signaled,
        error: None,
    });
    settle().await;
    assert_eq!(lock(&db_seen).signals, [libc::SIGTERM]);
}

async fn ask(h: &Harness, req: Request) -> Response {
    let (tx, rx) = oneshot::channel();
    h.api.send((req, tx)).await.expect("supervisor runs");
    let resp = rx.await.expect("an answer");
    settle().await;
    resp
}

#[tokio::test(start_paused = true)]
async fn an_operator_stop_holds_until_start_whatever_the_manifest_says() {
    let h = harness(Fake::default());
    h.desire(&[spec("web")]).await;
    h.run("web").await;
    let stop = ask(&h, Request::Stop { name: "web".into() }).await;
    assert!(matches!(stop, Response::Ack(_)), "{stop:?}");
    assert_eq!(lock(&h.last_seen()).signals, [libc::SIGTERM]);
    h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
    assert_eq!(h.status("web").await.map(|w| w.state), Some(State::Stopped));
    // Neither a changed manifest, a backoff nor a restart request starts it.
    let mut changed = spec("web");
    changed.command = vec!["true".into()];
    h.desire(&[changed]).await;
    advance(10_000).await;
    assert_eq!(h.starts(), 1);
    let restart = ask(&h, Request::Restart { name: "web".into() }).await;
    assert!(matches!(restart, Response::Error(ref m) if m.contains("superctl start web")));
    assert_eq!(h.starts(), 1);
    // Start releases it: the changed spec runs.
    let start = ask(&h, Request::Start { name: "web".into() }).await;
    assert!(matches!(start, Response::Ack(_)), "{start:?}");
    assert_eq!(h.starts(), 2);
    let unknown = ask(
        &h,
        Request::Stop {
            name: "nope".into(),
        },
    )
    .await;
    assert!(matches!(unknown, Response::NotFound(_)));
}

#[tokio::test(start_paused = true)]
async fn every_state_change_exit_and_health_verdict_is_an_event() {
    let h = harness(Fake::default());
    let since = std::time::SystemTime::now() - Duration::from_secs(1);
    h.desire(&[checked("db")]).await;
    h.run("db").await;
    advance(1_000).await;
    h.answer("db", true).await;
    h.end_last(RunEnd::Exited(1)).await;
    let filter = super::events::Filter {
        since: Some(since),
        ..Default::default()
    };
    let got: Vec<String> = h
        .events
        .subscribe(&filter)
        .0
        .iter()
        .map(crate::ctl::table::render_event)
        .map(|l| {
            l.split_once(' ')
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(l)
        })
        .collect();
    assert_eq!(
        got,
        [
            "db state starting",
            "db state running",
            "db health healthy: HTTP 200 OK",
            "db exit code=1 reason=exited",
            "db state backoff",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn adopted_instances_run_on_unless_their_manifest_changed() {
    let mut changed = spec("db");
    changed.command = vec!["sleep".into(), "120".into()];
    let mut job = spec("job");
    job.restart.policy = crate::manifest::RestartPolicy::OnFailure;
    let fake = Fake::default();
    *lock(&fake.left) = vec![
        (spec("web"), 7, 3, None),
        (spec("db"), 5, 0, None),
        (job.clone(), 6, 1, Some(RunEnd::Exited(2))),
    ];
    let h = harness(fake);
    // Nothing is decided before the manifests are read.
    settle().await;
    assert_eq!(h.starts(), 0);
    h.desire(&[spec("web"), changed.clone(), job]).await;

    // Unchanged: runs on as it was, with its PID, restart count and uptime.
    let web = h.status("web").await.expect("web");
    assert_eq!(
        (web.state, web.pid, web.init_pid, web.restarts),
        (State::Running, Some(99), Some(98), 3)
    );
    assert!(web.uptime_seconds.is_some_and(|u| u >= 60), "{web:?}");
    let adopted_seen = |name: &str| {
        lock(&h.fake.adopted)
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.gen, s.events.clone(), Arc::clone(&s.seen)))
            .expect("adopted")
    };
    assert!(lock(&adopted_seen("web").2).signals.is_empty());
    // Changed while superd was away: the adopted instance stops, then the new spec starts
    // with a generation above every adopted one.
    let (gen, events, seen) = adopted_seen("db");
    assert_eq!(lock(&seen).signals, [libc::SIGTERM]);
    let _ = events.send(Event::Ended {
        name: "db".into(),
        gen,
        end: RunEnd::Signaled(libc::SIGTERM),
        reason: crate::api::ExitReason::Signaled,
        error: None,
    });
    settle().await;
    let (g, _, _) = h.of("db");
    assert!(g > 7, "generation {g}");
    assert_eq!(h.status("db").await.map(|w| w.restarts), Some(1));
    // Ended while superd was away with a failure: its restart policy applies, after the
    // backoff, and the count goes on from the record.
    let job = h.status("job").await.expect("job");
    assert_eq!(job.state, State::Backoff);
    assert_eq!(job.last_exit.and_then(|e| e.code), Some(2));
    tokio::time::advance(Duration::from_millis(150)).await;
    settle().await;
    assert!(h.started().contains(&"job".to_string()));
    assert_eq!(h.status("job").await.map(|w| w.restarts), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_change_that_crashes_within_its_bake_time_is_rolled_back_until_the_next_edit() {
    let h = harness_with(Fake::default(), |s| {
        s.with_rollout_bake(Duration::from_secs(10))
    });
    let v1 = spec("web");
    h.desire(std::slice::from_ref(&v1)).await;
    h.run_last().await;
    // It lasts its bake time: the last good spec.
    tokio::time::advance(Duration::from_secs(11)).await;
    settle().await;
    let filter = super::events::Filter {
        since: Some(std::time::UNIX_EPOCH),
        kinds: vec![api::EventKind::Rollout],
        ..Default::default()
    };
    assert_eq!(
        h.events.subscribe(&filter).0.len(),
        1,
        "the bake's end is an event"
    );

    let mut v2 = spec("web");
    v2.command = vec!["false".into()];
    h.desire(&[v2.clone()]).await;
    h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
    let started = |i: usize| lock(&h.fake.starts)[i].spec.clone().expect("a spec");
    assert_eq!(*started(1), v2);
    h.run_last().await;
    tokio::time::advance(Duration::from_secs(2)).await;
    h.end_last(RunEnd::Exited(1)).await;
    // Rolled back at once (no backoff: another spec starts), with the reason shown.
    settle().await;
    assert_eq!(h.starts(), 3);
    assert_eq!(*started(2), v1);
    h.run_last().await;
    let w = h.status("web").await.expect("web");
    let notice = w.notice.unwrap_or_default();
    assert!(
        notice.contains("running the previous spec")
            && notice.contains("/manifests/web.toml")
            && notice.contains("it exited with code 1"),
        "{notice}"
    );
    // The same manifest again changes nothing; the next edit is tried afresh.
    h.desire(&[v2.clone()]).await;
    assert_eq!(h.starts(), 3);
    let mut v3 = spec("web");
    v3.command = vec!["sleep".into(), "99".into()];
    h.desire(&[v3.clone()]).await;
    h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
    assert_eq!(*started(3), v3);
    assert_eq!(h.status("web").await.and_then(|w| w.notice), None);
}

#[tokio::test(start_paused = true)]
async fn a_restart_in_the_middle_of_a_trial_comes_up_on_the_last_good_spec() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().to_path_buf();
    let bake = Duration::from_secs(10);
    let configure = |s: Supervisor| s.with_state_dir(state.clone()).with_rollout_bake(bake);
    let v1 = spec("web");
    let mut v2 = spec("web");
    v2.command = vec!["sleep".into(), "7".into()];
    {
        let h = harness_with(Fake::default(), configure);
        h.desire(std::slice::from_ref(&v1)).await;
        h.run_last().await;
        tokio::time::advance(Duration::from_secs(11)).await;
        settle().await;
        h.desire(&[v2.clone()]).await;
        h.end_last(RunEnd::Signaled(libc::SIGTERM)).await;
        h.run_last().await;
        // The power goes: nothing more is written, nothing is adopted.
    }
    let h = harness_with(Fake::default(), configure);
    h.desire(&[v2.clone()]).await;
    let first = lock(&h.fake.starts)[0].spec.clone().expect("a spec");
    assert_eq!(*first, v1, "it came up on the change that was on trial");
    h.run_last().await;
    let notice = h
        .status("web")
        .await
        .and_then(|w| w.notice)
        .unwrap_or_default();
    assert!(
        notice.contains("restarted before the change had run"),
        "{notice}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_manifest_broken_before_a_restart_comes_up_on_its_last_good_spec() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = dir.path().to_path_buf();
    let configure = |s: Supervisor| {
        s.with_state_dir(state.clone())
            .with_rollout_bake(Duration::from_secs(5))
    };
    let v1 = spec("web");
    {
        let h = harness_with(Fake::default(), configure);
        h.desire(std::slice::from_ref(&v1)).await;
        h.run_last().await;
        tokio::time::advance(Duration::from_secs(6)).await;
        settle().await;
    }
    // The next superd (after a reboot) reads a manifest that is broken now.
    let h = harness_with(Fake::default(), configure);
    let broken =
        crate::manifest::parse(std::path::Path::new("/manifests/web.toml"), "command = 3\n")
            .expect_err("an invalid manifest");
    let d: Desired = [(
        "web".to_string(),
        DesiredEntry {
            file: "/manifests/web.toml".into(),
            spec: Err(broken),
            text: Arc::from("command = 3\n"),
        },
    )]
    .into_iter()
    .collect();
    h.msgs.send(Msg::Desired(d)).await.expect("supervisor runs");
    settle().await;
    let started = lock(&h.fake.starts)[0].spec.clone().expect("a spec");
    assert_eq!(*started, v1);
}
