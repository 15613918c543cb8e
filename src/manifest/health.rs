//! `[health]` (a probe superd runs against the workload) and `after` / `[start_order]` (the
//! workloads it waits for): their types and parsers.

use super::check::Checker;
use super::raw::{RawHealth, RawStartOrder, Val};
use super::spec::Name;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use toml::Spanned;

/// What a health probe does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// An HTTP GET from inside the workload's network namespace; any 2xx or 3xx passes.
    Http {
        /// The TCP port on the workload's loopback.
        port: u16,
        /// The path and query sent (`/` when the URL has none).
        path: String,
        /// The `Host` header: the URL's host and port as written.
        host: String,
    },
    /// A TCP connect from inside the workload's network namespace.
    Tcp {
        /// The port on the workload's loopback.
        port: u16,
    },
    /// A command run inside the workload as `superctl exec` runs one (its user, capabilities
    /// and seccomp filter); exit 0 passes.
    Exec {
        /// The command; `argv[0]` is resolved through the container's PATH.
        argv: Vec<String>,
    },
}

impl Probe {
    /// How an operator wrote it (`http://localhost:8080/healthz`, `tcp 5432`).
    pub fn describe(&self) -> String {
        match self {
            Probe::Http { host, path, .. } => format!("http://{host}{path}"),
            Probe::Tcp { port } => format!("tcp {port}"),
            Probe::Exec { argv } => format!("exec {}", argv.join(" ")),
        }
    }
}

/// What happens when a workload turns unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnhealthy {
    /// Stop it; the run counts as failed, and `[restart]` decides (with its backoff).
    Restart,
    /// Stop it and leave it failed until the manifest changes or `superctl restart`.
    Stop,
    /// Only report it.
    None,
}

/// `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HealthCheck {
    /// The probe.
    pub probe: Probe,
    /// Time between probes once the workload has been healthy or unhealthy.
    #[serde(with = "super::spec::duration_ms")]
    pub interval: Duration,
    /// A probe that takes longer fails.
    #[serde(with = "super::spec::duration_ms")]
    pub timeout: Duration,
    /// Consecutive failures that make it unhealthy.
    pub retries: u32,
    /// Failures during this time after the start do not count.
    #[serde(with = "super::spec::duration_ms")]
    pub start_period: Duration,
    /// Time between probes until the first verdict (so a dependent starts soon).
    #[serde(with = "super::spec::duration_ms")]
    pub start_interval: Duration,
    /// What an unhealthy verdict does.
    pub on_unhealthy: OnUnhealthy,
}

impl HealthCheck {
    /// Default `interval`.
    pub const INTERVAL: Duration = Duration::from_secs(30);
    /// Default `timeout`.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// Default `retries`.
    pub const RETRIES: u32 = 3;
    /// Default `start_interval`.
    pub const START_INTERVAL: Duration = Duration::from_secs(1);

    /// A TCP check on `port` with every default (handy for tests).
    pub fn tcp(port: u16) -> Self {
        HealthCheck {
            probe: Probe::Tcp { port },
            interval: Self::INTERVAL,
            timeout: Self::TIMEOUT,
            retries: Self::RETRIES,
            start_period: Duration::ZERO,
            start_interval: Self::START_INTERVAL,
            on_unhealthy: OnUnhealthy::Restart,
        }
    }
}

/// What a dependency must have reached before its dependent starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Its main process runs.
    Started,
    /// Its health check passed.
    Healthy,
}

impl Condition {
    /// The word used in manifests and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Healthy => "healthy",
        }
    }
}

/// One entry of `after`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dependency {
    /// The workload waited for.
    pub name: Name,
    /// What it must have reached.
    pub condition: Condition,
}

/// `after` and `[start_order]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StartOrder {
    /// The workloads this one starts after (and stops before).
    pub after: Vec<Dependency>,
    /// Stop this one while a dependency is down, and start it again once the dependency is
    /// back.
    pub restart_with: bool,
}

impl StartOrder {
    /// No dependencies (skipped when serialising, so specs without them keep their hash).
    pub fn is_empty(&self) -> bool {
        self.after.is_empty() && !self.restart_with
    }
}

const CONDITIONS: [(&str, Condition); 2] = [
    ("started", Condition::Started),
    ("healthy", Condition::Healthy),
];

/// Parses `after = ["db:healthy", "cache"]` with `[start_order]`'s defaults.
pub(crate) fn start_order(
    ck: &mut Checker<'_>,
    after: Option<&Spanned<Val>>,
    raw: Option<&RawStartOrder>,
    own: Option<&Name>,
) -> StartOrder {
    let default = raw
        .and_then(|r| r.condition.as_ref())
        .and_then(|v| ck.choice(v, "start_order.condition", &CONDITIONS))
        .unwrap_or(Condition::Started);
    let restart_with = raw
        .and_then(|r| r.restart_with.as_ref())
        .and_then(|v| ck.boolean(v, "start_order.restart_with"))
        .unwrap_or(false);
    let mut deps: Vec<Dependency> = Vec::new();
    let items = match after.map(|v| (v, v.get_ref())) {
        None => &[][..],
        Some((_, Val::Array(items))) => &items[..],
        Some((v, other)) => {
            let msg = format!(
                "expected an array of workload names such as [\"db\", \"cache:healthy\"], found {}",
                other.type_name()
            );
            ck.error(v.span(), "after", msg);
            &[][..]
        }
    };
    for (i, item) in items.iter().enumerate() {
        let field = format!("after[{i}]");
        let expected = "a workload name, optionally with \":started\" or \":healthy\"";
        let Some(dep) = ck.parsed(item, &field, expected, |s| dependency(s, default)) else {
            continue;
        };
        if own == Some(&dep.name) {
            ck.error(item.span(), &field, "a workload cannot start after itself");
        } else if deps.iter().any(|d| d.name == dep.name) {
            let msg = format!("`{}` is already listed", dep.name);
            ck.error(item.span(), &field, msg);
        } else {
            deps.push(dep);
        }
    }
    StartOrder {
        after: deps,
        restart_with,
    }
}

fn dependency(s: &str, default: Condition) -> Result<Dependency, String> {
    let (name, condition) = match s.split_once(':') {
        None => (s, default),
        Some((name, c)) => {
            let condition = CONDITIONS
                .iter()
                .find(|(word, _)| *word == c)
                .map(|&(_, c)| c)
                .ok_or_else(|| {
                    format!("unknown condition `{c}`: expected \"started\" or \"healthy\"")
                })?;
            (name, condition)
        }
    };
    let name = Name::new(name).map_err(|e| format!("workload name {e}"))?;
    Ok(Dependency { name, condition })
}

/// Parses `[health]`.
pub(crate) fn health(
    ck: &mut Checker<'_>,
    span: std::ops::Range<usize>,
    raw: &RawHealth,
) -> Option<HealthCheck> {
    let http = raw.http.as_ref().and_then(|v| {
        ck.parsed(
            v,
            "health.http",
            "a URL string such as \"http://localhost:8080/healthz\"",
            http_url,
        )
    });
    let tcp = raw.tcp.as_ref().and_then(|v| {
        ck.integer(v, "health.tcp", 1, 65_535)
            .and_then(|n| u16::try_from(n).ok())
            .map(|port| Probe::Tcp { port })
    });
    let exec = raw.exec.as_ref().and_then(|v| {
        super::parse::parse_argv(ck, v, "health.exec").map(|argv| Probe::Exec { argv })
    });
    let given = [&raw.http, &raw.tcp, &raw.exec]
        .iter()
        .filter(|v| v.is_some())
        .count();
    let probe = match given {
        2.. => {
            let second = [&raw.tcp, &raw.exec].into_iter().flatten().last();
            if let Some(v) = second {
                let field = if raw.exec.is_some() {
                    "health.exec"
                } else {
                    "health.tcp"
                };
                ck.error(v.span(), field, "give one probe: `http`, `tcp` or `exec`");
            }
            None
        }
        0 => {
            ck.error(
                span,
                "health",
                "missing a probe: `http = \"http://localhost:PORT/PATH\"`, `tcp = PORT` or \
                 `exec = [\"cmd\", \"arg\"]`",
            );
            None
        }
        _ => http.or(tcp).or(exec),
    };
    let dur = |ck: &mut Checker<'_>, v: &Option<Spanned<Val>>, field: &str| {
        v.as_ref().and_then(|v| ck.duration(v, field))
    };
    let interval = dur(ck, &raw.interval, "health.interval");
    let timeout = dur(ck, &raw.timeout, "health.timeout");
    let start_period = raw.start_period.as_ref().and_then(|v| {
        // Zero is the default and may be written.
        if matches!(v.get_ref(), Val::Str(s) if s.trim() == "0s" || s.trim() == "0") {
            return Some(Duration::ZERO);
        }
        ck.duration(v, "health.start_period")
    });
    let start_interval = dur(ck, &raw.start_interval, "health.start_interval");
    let retries = raw.retries.as_ref().and_then(|v| {
        ck.integer(v, "health.retries", 1, 1_000)
            .and_then(|n| u32::try_from(n).ok())
    });
    let choices = [
        ("restart", OnUnhealthy::Restart),
        ("stop", OnUnhealthy::Stop),
        ("none", OnUnhealthy::None),
    ];
    let on_unhealthy = raw
        .on_unhealthy
        .as_ref()
        .and_then(|v| ck.choice(v, "health.on_unhealthy", &choices));
    let interval = interval.unwrap_or(HealthCheck::INTERVAL);
    let timeout = timeout.unwrap_or(HealthCheck::TIMEOUT);
    if timeout > interval {
        if let Some(v) = raw.timeout.as_ref().or(raw.interval.as_ref()) {
            let msg = format!(
                "timeout ({}) is longer than interval ({}): a probe would still run when the \
                 next is due",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            );
            ck.error(v.span(), "health.timeout", msg);
        }
    }
    Some(HealthCheck {
        probe: probe?,
        interval,
        timeout,
        retries: retries.unwrap_or(HealthCheck::RETRIES),
        start_period: start_period.unwrap_or(Duration::ZERO),
        start_interval: start_interval.unwrap_or(HealthCheck::START_INTERVAL),
        on_unhealthy: on_unhealthy.unwrap_or(OnUnhealthy::Restart),
    })
}

/// `http://localhost[:port][/path]`: the host must be the workload's own loopback.
fn http_url(s: &str) -> Result<Probe, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{s}`: only http:// is probed (the probe runs on the workload's own loopback)"
        ));
    }
    let auth = uri
        .authority()
        .ok_or_else(|| format!("`{s}` has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("`{s}`: credentials in the URL are not supported"));
    }
    let host = auth.host();
    if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
        return Err(format!(
            "`{s}`: the host must be localhost, 127.0.0.1 or [::1] — superd probes the \
             workload from inside its own network namespace"
        ));
    }
    let port = auth.port_u16().unwrap_or(80);
    if port == 0 {
        return Err(format!("`{s}`: port 0 cannot be probed"));
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".to_string());
    Ok(Probe::Http {
        port,
        path,
        host: auth.as_str().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls() {
        let Ok(Probe::Http { port, path, host }) = http_url("http://localhost:8080/healthz?x=1")
        else {
            panic!("not parsed")
        };
        assert_eq!(
            (port, path.as_str(), host.as_str()),
            (8080, "/healthz?x=1", "localhost:8080")
        );
        assert!(
            matches!(http_url("http://127.0.0.1"), Ok(Probe::Http { port: 80, ref path, .. }) if path == "/")
        );
        assert!(http_url("http://[::1]:81/").is_ok());
        for bad in [
            "https://localhost/",
            "http://example.com/",
            "http://10.0.0.1/",
            "localhost:80",
            "http://u:p@localhost/",
            "http://localhost:0/",
        ] {
            assert!(http_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dependencies() {
        let d = dependency("db", Condition::Healthy).map_err(|e| e.to_string());
        assert_eq!(d.map(|d| d.condition), Ok(Condition::Healthy));
        let d = dependency("db:started", Condition::Healthy).map(|d| d.condition);
        assert_eq!(d, Ok(Condition::Started));
        assert!(dependency("db:ready", Condition::Started).is_err());
        assert!(dependency("Db", Condition::Started).is_err());
    }
}
