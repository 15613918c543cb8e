//! The event stream: every state change, exit, health verdict, manifest error and image
//! fetch, kept in a bounded ring (so `superctl events --since` works across a short
//! disconnect) and sent live to every subscriber. The supervisor is its only writer; the
//! control server reads it.

use crate::api::{Event, EventKind, LastExit, State};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;
use tokio::sync::broadcast;

/// Events kept for `--since`.
pub const RING: usize = 4096;
/// Events a live subscriber may fall behind before it is told it lost some.
const LAG: usize = 1024;
/// The longest message kept in an event.
pub const MAX_MESSAGE: usize = 1024;

/// The ring and the live channel.
#[derive(Debug)]
pub struct EventHub {
    inner: Mutex<Inner>,
    live: broadcast::Sender<Event>,
}

#[derive(Debug)]
struct Inner {
    ring: VecDeque<(SystemTime, Event)>,
    next: u64,
}

/// What a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only events at or after this time (from the ring), then live ones.
    pub since: Option<SystemTime>,
    /// Only these workloads (empty: all).
    pub names: Vec<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let name_ok = self.names.is_empty()
            || e.workload.as_ref().is_some_and(|w| self.names.contains(w))
            || e.kind == EventKind::Lost;
        let kind_ok =
            self.kinds.is_empty() || self.kinds.contains(&e.kind) || e.kind == EventKind::Lost;
        name_ok && kind_ok
    }
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// An empty hub.
    pub fn new() -> Self {
        EventHub {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(64),
                next: 1,
            }),
            live: broadcast::channel(LAG).0,
        }
    }

    /// Records an event (its sequence number and time are set here).
    pub fn emit(&self, kind: EventKind, workload: Option<&str>, fill: impl FnOnce(&mut Event)) {
        let now = SystemTime::now();
        let mut e = Event {
            seq: 0,
            time: humantime::format_rfc3339_millis(now).to_string(),
            kind,
            workload: workload.map(str::to_string),
            state: None,
            exit: None,
            health: None,
            message: None,
        };
        fill(&mut e);
        if let Some(m) = e.message.take() {
            e.message = Some(crate::manifest::bound_text(m, MAX_MESSAGE));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        e.seq = inner.next;
        inner.next += 1;
        if inner.ring.len() == RING {
            inner.ring.pop_front();
        }
        inner.ring.push_back((now, e.clone()));
        // Sent under the lock, so that a subscriber's replay and its live events neither
        // overlap nor leave a gap.
        let _ = self.live.send(e);
    }

    /// Events recorded so far.
    pub fn recorded(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).next - 1
    }

    /// A state change.
    pub fn state(&self, name: &str, state: State) {
        self.emit(EventKind::State, Some(name), |e| e.state = Some(state));
    }

    /// A run that ended.
    pub fn exit(&self, name: &str, exit: &LastExit, message: Option<String>) {
        self.emit(EventKind::Exit, Some(name), |e| {
            e.exit = Some(exit.clone());
            e.message = message;
        });
    }

    /// The events of the ring that pass `filter`, and a receiver of the live ones after them.
    pub fn subscribe(&self, filter: &Filter) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let replay = match filter.since {
            None => Vec::new(),
            Some(since) => inner
                .ring
                .iter()
                .filter(|(t, e)| *t >= since && filter.matches(e))
                .map(|(_, e)| e.clone())
                .collect(),
        };
        (replay, self.live.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_ring_replays_since_then_the_live_stream_follows_without_gap() {
        let hub = EventHub::new();
        let before = SystemTime::now() - Duration::from_secs(1);
        hub.state("web", State::Starting);
        hub.state("db", State::Running);
        let filter = Filter {
            since: Some(before),
            names: vec!["web".into()],
            kinds: vec![],
        };
        let (replay, mut live) = hub.subscribe(&filter);
        assert_eq!(replay.len(), 1);
        assert_eq!((replay[0].seq, replay[0].state), (1, Some(State::Starting)));
        hub.state("web", State::Running);
        let next = live.try_recv().expect("a live event");
        assert_eq!(next.seq, 3);
        // Without `since`, nothing is replayed.
        assert!(hub.subscribe(&Filter::default()).0.is_empty());
        // The ring is bounded; sequence numbers keep counting.
        for _ in 0..RING + 10 {
            hub.state("x", State::Running);
        }
        let (all, _) = hub.subscribe(&Filter {
            since: Some(before),
            ..Filter::default()
        });
        assert_eq!(all.len(), RING);
        assert_eq!(all.last().map(|e| e.seq), Some(3 + RING as u64 + 10));
        // Long messages are bounded.
        hub.emit(EventKind::Manifest, Some("m"), |e| {
            e.message = Some("x".repeat(10_000))
        });
        let (m, _) = hub.subscribe(&Filter {
            since: Some(before),
            kinds: vec![EventKind::Manifest],
            ..Filter::default()
        });
        assert!(m[0]
            .message
            .as_ref()
            .is_some_and(|t| t.len() <= MAX_MESSAGE + 64));
    }
}
