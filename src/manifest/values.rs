//! Parsers for the string forms of single manifest values: sizes, durations, users, hostnames,
//! signals and CPU counts. Each returns a message that says what was wrong and what is accepted.

use super::spec::{IdOrName, Signal, User};
use std::time::Duration;

/// The largest memory limit: cgroup v1 takes the limit as a signed 64-bit number.
pub(crate) const MAX_MEMORY: u64 = i64::MAX as u64;

/// `64M`, `1GiB`, `512k`, `4096` (1024-based) → bytes, > 0.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let invalid =
        || format!("invalid size `{s}`: expected bytes or a number with K, M, G or T (1024-based)");
    let trimmed = s.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(invalid());
    }
    let shift = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        _ => return Err(invalid()),
    };
    let too_large = || format!("size `{s}` is too large: the maximum is {MAX_MEMORY} bytes");
    let number: u64 = digits.parse().map_err(|_| too_large())?;
    let bytes = number
        .checked_mul(1u64 << shift)
        .filter(|&b| b <= MAX_MEMORY)
        .ok_or_else(too_large)?;
    if bytes == 0 {
        return Err(format!("size `{s}` must be greater than 0"));
    }
    Ok(bytes)
}

/// `100ms`, `30s`, `1m 30s` → a duration > 0.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration `{s}` ({e}): expected e.g. \"100ms\", \"30s\" or \"1m 30s\"")
    })?;
    if d.is_zero() {
        return Err(format!("duration `{s}` must be greater than 0"));
    }
    Ok(d)
}

const USER_FORMS: &str = "expected \"uid:gid\", \"uid\", \"name\" or \"name:group\"";

/// `uid:gid`, `uid`, `name`, `name:group` (ids are u32, range-checked).
pub(crate) fn parse_user(s: &str) -> Result<User, String> {
    let (user, group) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let part = |p: &str, what: &str| -> Result<IdOrName, String> {
        if p.is_empty() {
            return Err(format!(
                "invalid user `{s}`: the {what} is empty; {USER_FORMS}"
            ));
        }
        if p.bytes().all(|b| b.is_ascii_digit()) {
            return p.parse::<u32>().map(IdOrName::Id).map_err(|_| {
                format!(
                    "invalid user `{s}`: {what} id {p} is out of range (0 to {})",
                    u32::MAX
                )
            });
        }
        let valid_name = p.len() <= 32
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name {
            return Err(format!(
                "invalid user `{s}`: `{p}` is neither a numeric id nor a {what} name \
                 (letters, digits, '_', '-', '.'; at most 32); {USER_FORMS}"
            ));
        }
        Ok(IdOrName::Name(p.to_string()))
    };
    Ok(User {
        user: part(user, "user")?,
        group: group.map(|g| part(g, "group")).transpose()?,
    })
}

/// RFC 1123 hostname: dot-separated labels of letters, digits and '-', each 1-63 characters,
/// not starting or ending with '-'; at most 253 characters in all.
pub(crate) fn check_hostname(s: &str) -> Result<(), String> {
    let rule = "a hostname is dot-separated labels of letters, digits and '-' \
                (1-63 characters each, not starting or ending with '-'), at most 253 characters";
    if s.is_empty() || s.len() > 253 {
        return Err(format!("invalid hostname `{s}`: {rule}"));
    }
    for label in s.split('.') {
        let ok = (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(format!("invalid hostname `{s}`: {rule}"));
        }
    }
    Ok(())
}

/// `SIGTERM`, `term`, `SigKill`…; SIGSTOP is refused (it cannot make a process exit).
pub(crate) fn parse_signal(s: &str) -> Result<Signal, String> {
    let sig = Signal::parse(s).ok_or_else(|| {
        format!("unknown signal `{s}`: expected a name such as \"SIGTERM\", \"INT\" or \"SIGQUIT\"")
    })?;
    if sig.name == "SIGSTOP" {
        return Err("SIGSTOP cannot stop a workload (it only pauses it); \
                    use e.g. \"SIGTERM\", \"SIGINT\" or \"SIGKILL\""
            .into());
    }
    Ok(sig)
}

/// `cpus` (0 < cpus <= 1024) → thousandths of a CPU, at least 1.
pub(crate) fn cpus_to_millis(cpus: f64) -> Result<u32, String> {
    // `!(x > 0)` also rejects NaN.
    if !(cpus > 0.0 && cpus <= 1024.0) {
        return Err(format!(
            "cpus = {cpus} is out of range: expected a number of CPUs greater than 0 and at most 1024"
        ));
    }
    let millis = (cpus * 1000.0).round();
    if millis < 1.0 {
        return Err(format!(
            "cpus = {cpus} is too small: the smallest limit is 0.001"
        ));
    }
    // In range: 1 <= millis <= 1_024_000.
    Ok(millis as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("64Mi"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size(" 64 M "), Ok(64 << 20));
        for bad in [
            "", "M", "64Q", "1.5G", "-1", "64 MiBs", "0x10", "64iB", "1P",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(
                err.contains("expected bytes or a number with K, M, G or T"),
                "{bad}: {err}"
            );
        }
        assert!(parse_size("0").unwrap_err().contains("greater than 0"));
        assert!(parse_size("0G").unwrap_err().contains("greater than 0"));
        assert!(parse_size("8388608T").unwrap_err().contains("too large")); // 2^63
        assert_eq!(parse_size("8388607T"), Ok(8388607u64 << 40));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999999999999999")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").unwrap_err().contains("greater than 0"));
        for bad in ["", "10", "ten seconds", "-1s", "1.5.s"] {
            assert!(
                parse_duration(bad)
                    .unwrap_err()
                    .contains("invalid duration"),
                "{bad}"
            );
        }
    }

    #[test]
    fn users() {
        let id = IdOrName::Id;
        let name = |s: &str| IdOrName::Name(s.into());
        let user = |u, g| User { user: u, group: g };
        assert_eq!(parse_user("0:0"), Ok(User::root()));
        assert_eq!(parse_user("1000"), Ok(user(id(1000), None)));
        assert_eq!(
            parse_user("4294967295:1"),
            Ok(user(id(u32::MAX), Some(id(1))))
        );
        assert_eq!(parse_user("nobody"), Ok(user(name("nobody"), None)));
        assert_eq!(
            parse_user("www-data:adm"),
            Ok(user(name("www-data"), Some(name("adm"))))
        );
        assert_eq!(parse_user("svc:100"), Ok(user(name("svc"), Some(id(100)))));
        let err = parse_user("4294967296").unwrap_err();
        assert!(err.contains("out of range (0 to 4294967295)"), "{err}");
        assert!(parse_user("0:99999999999999999999")
            .unwrap_err()
            .contains("group id"));
        for bad in [
            "", ":", "0:", ":0", "a:b:c", "-1", "bad name", "x/y", "1:-1",
        ] {
            assert!(parse_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hostnames() {
        for ok in ["web", "Web-1", "a.b.c", "x", &"a".repeat(63)] {
            assert!(check_hostname(ok).is_ok(), "{ok}");
        }
        let long = ["a".repeat(63).as_str(); 4].join(".") + ".ab"; // 255 chars
        for bad in [
            "",
            "-web",
            "web-",
            "a..b",
            ".a",
            "a.",
            "we_b",
            "wéb",
            &"a".repeat(64),
            &long,
        ] {
            assert!(check_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").map(|s| s.number), Ok(15));
        assert_eq!(parse_signal("int").map(|s| s.name), Ok("SIGINT"));
        assert_eq!(parse_signal("SigKill").map(|s| s.number), Ok(9));
        assert!(parse_signal("SIGSTOP")
            .unwrap_err()
            .contains("SIGSTOP cannot"));
        assert!(parse_signal("stop").is_err());
        assert!(parse_signal("SIGFOO")
            .unwrap_err()
            .contains("unknown signal"));
        assert!(parse_signal("15").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(cpus_to_millis(0.5), Ok(500));
        assert_eq!(cpus_to_millis(2.0), Ok(2000));
        assert_eq!(cpus_to_millis(0.001), Ok(1));
        assert_eq!(cpus_to_millis(0.0015), Ok(2));
        assert_eq!(cpus_to_millis(1024.0), Ok(1_024_000));
        assert!(cpus_to_millis(0.0004).unwrap_err().contains("too small"));
        for bad in [0.0, -1.0, 1024.5, f64::NAN, f64::INFINITY] {
            assert!(
                cpus_to_millis(bad).unwrap_err().contains("out of range"),
                "{bad}"
            );
        }
    }
}
