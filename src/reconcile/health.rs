//! Health verdicts: what a probe's answer does to a running workload's health. Pure: the
//! time is an input.
//!
//! The rules follow Docker's, with its one gap closed by the planner (an unhealthy workload
//! is acted on, see `OnUnhealthy`):
//! - a passing probe makes the workload healthy and clears the failure count;
//! - a failing probe counts, except during `start_period` while the workload has not been
//!   healthy yet; `retries` consecutive counted failures make it unhealthy;
//! - until the first verdict probes run every `start_interval`, then every `interval`.

use crate::manifest::HealthCheck;
use std::time::Instant;

/// The verdict shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthStatus {
    /// No verdict yet.
    Starting,
    /// The last probe passed.
    Healthy,
    /// `retries` probes in a row failed.
    Unhealthy,
}

impl HealthStatus {
    /// The word shown in status and events.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// The health of one running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Consecutive counted failures.
    pub failures: u32,
    /// When the next probe is due.
    pub next_probe: Instant,
    /// A probe was sent and has not answered yet.
    pub probing: bool,
}

impl Health {
    /// The health of an instance that started running at `now`.
    #[must_use]
    pub fn new(check: &HealthCheck, now: Instant) -> Self {
        Health {
            status: HealthStatus::Starting,
            failures: 0,
            next_probe: now + check.start_interval.min(check.interval),
            probing: false,
        }
    }
}

/// The health after a probe answered `ok` at `now`, for an instance running since `since`.
#[must_use]
pub fn after_probe(
    check: &HealthCheck,
    h: Health,
    since: Instant,
    ok: bool,
    now: Instant,
) -> Health {
    let (status, failures) = if ok {
        (HealthStatus::Healthy, 0)
    } else if h.status == HealthStatus::Starting && now < since + check.start_period {
        (HealthStatus::Starting, 0)
    } else {
        let failures = h.failures.saturating_add(1);
        let status = if failures >= check.retries {
            HealthStatus::Unhealthy
        } else {
            h.status
        };
        (status, failures)
    };
    let gap = if status == HealthStatus::Starting {
        check.start_interval.min(check.interval)
    } else {
        check.interval
    };
    Health {
        status,
        failures,
        next_probe: now + gap,
        probing: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn check() -> HealthCheck {
        let mut c = HealthCheck::tcp(80);
        c.interval = Duration::from_secs(10);
        c.start_interval = Duration::from_secs(1);
        c.retries = 2;
        c.start_period = Duration::from_secs(5);
        c
    }

    #[test]
    fn verdicts() {
        let t0 = Instant::now() + Duration::from_secs(3_600);
        let c = check();
        let s = |n| t0 + Duration::from_secs(n);
        let h = Health::new(&c, t0);
        assert_eq!((h.status, h.next_probe), (HealthStatus::Starting, s(1)));
        // Failures in the start period do not count, and probes stay frequent.
        let h = after_probe(&c, h, t0, false, s(1));
        assert_eq!(
            (h.status, h.failures, h.next_probe),
            (HealthStatus::Starting, 0, s(2))
        );
        // After it, they count: the second makes it unhealthy.
        let h = after_probe(&c, h, t0, false, s(6));
        assert_eq!(
            (h.status, h.failures, h.next_probe),
            (HealthStatus::Starting, 1, s(7))
        );
        let h = after_probe(&c, h, t0, false, s(7));
        assert_eq!(
            (h.status, h.failures, h.next_probe),
            (HealthStatus::Unhealthy, 2, s(17))
        );
        // One pass heals it and clears the count.
        let h = after_probe(&c, h, t0, true, s(17));
        assert_eq!(
            (h.status, h.failures, h.next_probe),
            (HealthStatus::Healthy, 0, s(27))
        );
        // Once healthy, the start period no longer excuses a failure.
        let fresh = after_probe(&c, Health::new(&c, t0), t0, true, s(1));
        let h = after_probe(&c, fresh, t0, false, s(2));
        assert_eq!((h.status, h.failures), (HealthStatus::Healthy, 1));
        let h = after_probe(&c, h, t0, false, s(3));
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }
}
