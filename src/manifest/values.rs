//! Parsers for the string forms of single manifest values: sizes, durations, users, hostnames,
//! signals, CPU counts, addresses and port mappings. Each returns a message that says what was
//! wrong and what is accepted.

use super::spec::{IdOrName, PortMapping, Protocol, Signal, User};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The largest memory limit: cgroup v1 takes the limit as a signed 64-bit number.
pub(crate) const MAX_MEMORY: u64 = i64::MAX as u64;

/// `64M`, `1GiB`, `512k`, `4096` (1024-based) → bytes, > 0.
pub fn parse_size(s: &str) -> Result<u64, String> {
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
/// Parses `user` (`uid[:gid]`, `name[:group]`).
pub fn parse_user(s: &str) -> Result<User, String> {
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

/// The accepted form of a `[network] ports` entry, for messages.
pub(crate) const PORT_FORM: &str = "[host_ip:]host_port:container_port[/tcp|udp]";

/// An IPv4 address in dotted-quad form; IPv6 gets its own message.
fn parse_ipv4(s: &str, what: &str) -> Result<Ipv4Addr, String> {
    if s.parse::<Ipv6Addr>().is_ok() || (s.contains(':') && !s.contains('.')) {
        return Err(format!(
            "`{s}` is an IPv6 address: only IPv4 is supported for the {what}"
        ));
    }
    s.parse::<Ipv4Addr>().map_err(|_| {
        let hint = if s.contains('/') {
            " (without a prefix length: the subnet is the daemon's)"
        } else {
            ""
        };
        format!(
            "invalid {what} `{s}`: expected an IPv4 address in dotted-quad form (a.b.c.d){hint}"
        )
    })
}

/// `[network] address`: a unicast IPv4 address (not 0.0.0.0, loopback, multicast or
/// broadcast). Whether it lies in the bridge subnet is checked later, by the daemon.
pub(crate) fn parse_address(s: &str) -> Result<Ipv4Addr, String> {
    let ip = parse_ipv4(s, "address")?;
    let kind = if ip.is_unspecified() {
        "the unspecified address"
    } else if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if ip.is_broadcast() {
        "the broadcast address"
    } else {
        return Ok(ip);
    };
    Err(format!(
        "`{s}` is {kind}: expected a unicast IPv4 address inside the bridge subnet"
    ))
}

/// One port number of a mapping: 1-65535.
fn parse_port(p: &str, what: &str, s: &str) -> Result<u16, String> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        let shown = if p.is_empty() {
            "is empty".to_string()
        } else {
            format!("`{p}` is not a number")
        };
        return Err(format!(
            "invalid port mapping `{s}`: the {what} {shown}; expected {PORT_FORM}"
        ));
    }
    // Only digits: a parse failure means the number is too large for u16.
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "invalid port mapping `{s}`: {what} {p} is out of range: ports are 1-65535"
        )),
    }
}

/// `[host_ip:]host_port:container_port[/tcp|udp]`; host_ip `0.0.0.0` (all addresses) becomes
/// `None`.
pub(crate) fn parse_port_mapping(s: &str) -> Result<PortMapping, String> {
    let (ports, protocol) = match s.split_once('/') {
        None => (s, Protocol::Tcp),
        Some((ports, "tcp")) => (ports, Protocol::Tcp),
        Some((ports, "udp")) => (ports, Protocol::Udp),
        Some((_, other)) => {
            return Err(format!(
                "invalid port mapping `{s}`: unknown protocol `{other}` (expected `tcp` or \
                 `udp`, lowercase); expected {PORT_FORM}"
            ))
        }
    };
    let parts: Vec<&str> = ports.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [host, container] => (None, *host, *container),
        [ip, host, container] => (Some(*ip), *host, *container),
        _ => {
            let hint = if s.starts_with('[') || parts.len() > 3 {
                " (only IPv4 host addresses are supported)"
            } else {
                ""
            };
            return Err(format!(
                "invalid port mapping `{s}`: expected {PORT_FORM}, e.g. \"8080:80\" or \
                 \"127.0.0.1:5353:53/udp\"{hint}"
            ));
        }
    };
    let host_ip = match host_ip {
        None => None,
        Some("") => {
            return Err(format!(
                "invalid port mapping `{s}`: the host_ip is empty; expected {PORT_FORM}"
            ))
        }
        Some(ip) => {
            let addr = parse_ipv4(ip, "host_ip")
                .map_err(|e| format!("invalid port mapping `{s}`: {e}; expected {PORT_FORM}"))?;
            if addr.is_multicast() {
                return Err(format!(
                    "invalid port mapping `{s}`: host_ip `{ip}` is a multicast address; \
                     ports are published on a unicast address or 0.0.0.0 (every address)"
                ));
            }
            Some(addr).filter(|a| !a.is_unspecified())
        }
    };
    Ok(PortMapping {
        host_ip,
        host_port: parse_port(host, "host port", s)?,
        container_port: parse_port(container, "container port", s)?,
        protocol,
    })
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

    #[test]
    fn addresses() {
        assert_eq!(
            parse_address("10.77.0.20"),
            Ok(Ipv4Addr::new(10, 77, 0, 20))
        );
        let cases = [
            ("0.0.0.0", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("239.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("fe80::1", "only IPv4 is supported"),
            ("1.2.3", "dotted-quad"),
            ("01.2.3.4", "dotted-quad"),
            ("10.0.0.1/8", "prefix length"),
        ];
        for (bad, needle) in cases {
            let err = parse_address(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn port_mappings() {
        let p = |s: &str| parse_port_mapping(s).map(|m| m.to_string());
        assert_eq!(p("8080:80"), Ok("8080:80/tcp".into()));
        assert_eq!(p("8080:80/tcp"), Ok("8080:80/tcp".into()));
        assert_eq!(
            p("127.0.0.1:5353:53/udp"),
            Ok("127.0.0.1:5353:53/udp".into())
        );
        assert_eq!(p("0.0.0.0:1:65535"), Ok("1:65535/tcp".into()));
        let m = parse_port_mapping("10.0.0.1:53:5353/udp").unwrap();
        assert_eq!(
            (m.host_ip, m.host_port, m.container_port, m.protocol),
            (Some(Ipv4Addr::new(10, 0, 0, 1)), 53, 5353, Protocol::Udp)
        );
        let cases = [
            ("80", PORT_FORM),
            ("1:2:3:4", PORT_FORM),
            ("[::1]:80:80", "only IPv4"),
            ("80:80/UDP", "unknown protocol `UDP`"),
            ("80:80/", "unknown protocol ``"),
            ("0:80", "host port 0 is out of range: ports are 1-65535"),
            ("80:65536", "container port 65536 is out of range"),
            ("80:-1", "`-1` is not a number"),
            (" 80:80", "` 80` is not a number"),
            ("80:", "container port is empty"),
            (":80:80", "host_ip is empty"),
            ("224.0.0.1:80:80", "multicast"),
            ("1.2.3.256:80:80", "invalid host_ip `1.2.3.256`"),
        ];
        for (bad, needle) in cases {
            let err = parse_port_mapping(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }
}
