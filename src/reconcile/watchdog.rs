//! Whether the hardware watchdog may be petted: pure. Every `[watchdog] critical` workload
//! must run healthy; one that does not may take its `grace` (a restart, a slow start) before
//! the petting stops and the watchdog resets the machine.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One critical workload as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Critical {
    /// Its name.
    pub name: String,
    /// It runs, and passes its health check if it has one.
    pub healthy: bool,
    /// How long it may not be.
    pub grace: Duration,
}

/// `Ok` to pet; `Err` says which workload stopped it. `bad_since` remembers since when each
/// critical workload has not been healthy (entries of healthy or gone workloads are dropped).
pub fn verdict(
    critical: &[Critical],
    bad_since: &mut BTreeMap<String, Instant>,
    now: Instant,
) -> Result<(), String> {
    bad_since.retain(|name, _| critical.iter().any(|c| c.name == *name && !c.healthy));
    let mut failed = None;
    for c in critical.iter().filter(|c| !c.healthy) {
        let since = *bad_since.entry(c.name.clone()).or_insert(now);
        let down = now.saturating_duration_since(since);
        if down > c.grace && failed.is_none() {
            failed = Some(format!(
                "the critical workload {} has not run healthy for {}s (its grace is {}s)",
                c.name,
                down.as_secs(),
                c.grace.as_secs()
            ));
        }
    }
    failed.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, healthy: bool) -> Critical {
        Critical {
            name: name.into(),
            healthy,
            grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_critical_workload_stops_the_petting_only_after_its_grace() {
        let t0 = Instant::now();
        let mut bad = BTreeMap::new();
        assert_eq!(verdict(&[c("db", true)], &mut bad, t0), Ok(()));
        // Down: its grace runs from the first time it is seen down.
        assert_eq!(verdict(&[c("db", false)], &mut bad, t0), Ok(()));
        assert_eq!(
            verdict(&[c("db", false)], &mut bad, t0 + Duration::from_secs(10)),
            Ok(())
        );
        let e = verdict(&[c("db", false)], &mut bad, t0 + Duration::from_secs(11));
        assert!(e.is_err_and(|m| m.contains("db") && m.contains("grace is 10s")));
        // Healthy again: forgiven, and the next fault gets its whole grace.
        assert_eq!(
            verdict(&[c("db", true)], &mut bad, t0 + Duration::from_secs(12)),
            Ok(())
        );
        assert!(bad.is_empty());
        assert_eq!(
            verdict(&[c("db", false)], &mut bad, t0 + Duration::from_secs(20)),
            Ok(())
        );
        // No critical workload: always fine.
        assert_eq!(verdict(&[], &mut bad, t0 + Duration::from_secs(99)), Ok(()));
    }
}
