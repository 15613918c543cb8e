//! Test support shared by unit and integration tests (not part of the supervisor).

/// Reports a skipped test: prints `SKIP: <test>: <reason>` and appends it to the file named by
/// `SUPERD_SKIP_LOG`, so `tests/run.sh` can fail a CI run in which anything was skipped.
pub fn report_skip(test: &str, reason: &str) {
    let line = format!("SKIP: {test}: {reason}");
    eprintln!("{line}");
    if let Ok(path) = std::env::var("SUPERD_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Gate for privileged tests: `None` (after reporting a skip) when `SUPERD_TEST_PRIVILEGED` is
/// not `1`; panics when it is set but we are not root.
pub fn privileged(test: &str) -> Option<()> {
    if std::env::var("SUPERD_TEST_PRIVILEGED").as_deref() != Ok("1") {
        report_skip(
            test,
            "needs root and SUPERD_TEST_PRIVILEGED=1 (run `sudo tests/run.sh`)",
        );
        return None;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test}: SUPERD_TEST_PRIVILEGED=1 but not running as root"
    );
    Some(())
}
