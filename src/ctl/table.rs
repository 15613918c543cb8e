//! Renders `superctl status` as a table (pure: no I/O, the clock is an argument).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::api::{ExitReason, LastExit, State, StatusResponse, WorkloadStatus};

const HEADER: [&str; 8] = [
    "NAME",
    "STATE",
    "PID",
    "ADDRESS",
    "RESTARTS",
    "UPTIME",
    "MEMORY",
    "LAST-EXIT",
];

/// The status table, then one line per workload with an error or a scheduled restart.
///
/// `now` is used for uptimes the daemon did not compute and for "next restart in …".
/// Control characters from the daemon (names, error text) are escaped so a hostile manifest
/// cannot send escape sequences to the operator's terminal.
pub fn render_status(resp: &StatusResponse, now: SystemTime) -> String {
    if resp.workloads.is_empty() {
        return "no workloads\n".to_owned();
    }
    let rows: Vec<[String; 8]> = resp.workloads.iter().map(|w| row(w, now)).collect();
    let mut out = columns(&HEADER, &rows);
    for w in &resp.workloads {
        notes(&mut out, w, now);
    }
    out
}

/// `header` and `rows` as left-aligned columns two spaces apart (cells already cleaned).
pub fn columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let head = header.map(str::to_owned);
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (cell, w) in r.iter().zip(widths) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One table row.
fn row(w: &WorkloadStatus, now: SystemTime) -> [String; 8] {
    let uptime = w.uptime_seconds.or_else(|| {
        let started = humantime::parse_rfc3339_weak(w.started_at.as_deref()?).ok()?;
        now.duration_since(started).ok().map(|d| d.as_secs())
    });
    [
        clean(&w.name),
        match &w.health {
            Some(h) => format!("{} ({})", w.state.as_str(), clean(&h.status)),
            None => w.state.as_str().to_owned(),
        },
        w.pid.map_or_else(dash, |p| p.to_string()),
        w.address.as_deref().map_or_else(dash, clean),
        w.restarts.to_string(),
        uptime.map_or_else(dash, format_uptime),
        w.memory_bytes.map_or_else(dash, format_bytes),
        w.last_exit.as_ref().map_or_else(dash, format_last_exit),
    ]
}

/// Lines under the table: errors (continuation lines indented) and backoff schedules.
fn notes(out: &mut String, w: &WorkloadStatus, now: SystemTime) {
    let name = clean(&w.name);
    let indent = " ".repeat(name.chars().count() + 2);
    if let Some(error) = &w.error {
        for (i, line) in error.trim_end().lines().enumerate() {
            let lead = if i == 0 {
                format!("{name}: ")
            } else {
                indent.clone()
            };
            let _ = writeln!(out, "{lead}{}", clean(line));
        }
    }
    if let Some(notice) = &w.notice {
        let _ = writeln!(out, "{name}: {}", clean(notice));
    }
    if w.state == State::Stopped {
        let _ = writeln!(
            out,
            "{name}: stopped by `superctl stop`; `superctl start {name}` starts it"
        );
    }
    if !w.waiting_for.is_empty() {
        let _ = writeln!(
            out,
            "{name}: waiting for {}",
            clean(&w.waiting_for.join(", "))
        );
    }
    if let Some(h) = w.health.as_ref().filter(|h| h.status != "healthy") {
        let said = h.last_output.as_deref().unwrap_or("no answer yet");
        let _ = writeln!(
            out,
            "{name}: health {} ({}, {} failed in a row): {}",
            clean(&h.status),
            clean(&h.probe),
            h.failures,
            clean(said)
        );
    }
    if let Some(image) = w.image.as_deref().filter(|i| !i.contains('@')) {
        let runs = w
            .image_digest
            .as_deref()
            .map(|d| format!(", runs {}", clean(d)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{name}: image {} is not pinned{runs} (only `superctl image pull` moves the tag)",
            clean(image)
        );
    }
    if w.state == State::Backoff {
        if let Some(at) = &w.next_restart_at {
            let _ = write!(out, "{name}: next restart at {}", clean(at));
            let wait = humantime::parse_rfc3339_weak(at)
                .ok()
                .and_then(|t| t.duration_since(now).ok());
            if let Some(wait) = wait {
                let _ = write!(out, " (in {})", format_wait(wait));
            }
            out.push('\n');
        }
    }
}

/// One event as a line: `TIME NAME KIND details`.
pub fn render_event(e: &crate::api::Event) -> String {
    let mut line = format!(
        "{} {} {}",
        clean(&e.time),
        clean(e.workload.as_deref().unwrap_or("-")),
        e.kind.as_str()
    );
    if let Some(s) = e.state {
        let _ = write!(line, " {}", s.as_str());
    }
    if let Some(x) = &e.exit {
        if let Some(c) = x.code {
            let _ = write!(line, " code={c}");
        }
        if let Some(s) = &x.signal {
            let _ = write!(line, " signal={}", clean(s));
        }
        let _ = write!(line, " reason={}", x.reason.as_str());
    }
    if let Some(h) = &e.health {
        let _ = write!(line, " {}", clean(h));
    }
    if let Some(m) = &e.message {
        let first = m.lines().next().unwrap_or_default();
        let more = if m.lines().nth(1).is_some() {
            " …"
        } else {
            ""
        };
        let _ = write!(line, ": {}{more}", clean(first));
    }
    line
}

fn dash() -> String {
    "-".to_owned()
}

/// Replaces control characters (and tabs) with their escaped form.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Uptime with its two largest units: `5s`, `3m12s`, `2h5m`, `3d4h`.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// A short wait like `1.2s`, or as [`format_uptime`] from a minute up.
fn format_wait(d: Duration) -> String {
    if d.as_secs() < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format_uptime(d.as_secs())
    }
}

/// Bytes in binary units with one decimal: `512B`, `1.5K`, `12.3M`, `2.0G`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    // Display only: precision loss in the conversion is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// `code=1`, `signal=SIGKILL`, `oom-killed`, `stop-timeout (SIGKILL)`, `start-failed`.
pub fn format_last_exit(e: &LastExit) -> String {
    let signal = e.signal.as_deref().map(clean);
    match (e.reason, e.code, signal) {
        (ExitReason::Exited, Some(code), _) => format!("code={code}"),
        (ExitReason::Signaled, _, Some(sig)) => format!("signal={sig}"),
        (ExitReason::StopTimeout, _, Some(sig)) => format!("stop-timeout ({sig})"),
        (reason, _, _) => reason.as_str().to_owned(),
    }
}

/// `superctl image pull`: a line for each layer whose state changed since `shown` (which it
/// updates), e.g. `sha256:3f4a5b6c7d8e  downloading  40.0 MiB`.
pub fn layer_changes(p: &crate::api::PullProgress, shown: &mut Vec<String>) -> String {
    use crate::api::LayerState;
    let mut out = String::new();
    shown.resize(p.layer_list.len(), "waiting".to_string());
    for (l, seen) in p.layer_list.iter().zip(shown.iter_mut()) {
        let state = match l.state {
            LayerState::Waiting => "waiting",
            LayerState::Present => "already present",
            LayerState::Downloading => "downloading",
            LayerState::Downloaded => "downloaded",
            LayerState::Unpacking => "unpacking",
            LayerState::Done => "done",
        };
        if seen != state {
            let short: String = clean(&l.blob).chars().take(19).collect();
            let _ = writeln!(out, "{short}  {state:<15}  {}", mib(l.size));
            *seen = state.to_string();
        }
    }
    out
}

/// `superctl image ls`: one row per image.
pub fn render_images(resp: &crate::api::ImagesResponse) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "DIGEST".to_string(),
        "PLATFORM".to_string(),
        "SIZE".to_string(),
        "SHARED".to_string(),
        "USED BY".to_string(),
    ]];
    for img in &resp.images {
        let i = &img.info;
        for (n, name) in i.names.iter().enumerate() {
            let first = n == 0;
            let or_blank = |s: String| if first { s } else { String::new() };
            rows.push([
                if i.read_only {
                    format!("{} (read-only)", clean(name))
                } else {
                    clean(name)
                },
                or_blank(i.digest.short().to_string()),
                or_blank(clean(&i.platform)),
                or_blank(mib(i.size)),
                or_blank(mib(i.shared)),
                or_blank(if img.used_by.is_empty() {
                    "-".to_string()
                } else {
                    img.used_by.join(",")
                }),
            ]);
        }
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(name: &str, state: State) -> WorkloadStatus {
        WorkloadStatus {
            health: None,
            waiting_for: Vec::new(),
            invalid_manifest: false,
            name: name.into(),
            state,
            pid: None,
            init_pid: None,
            restarts: 0,
            last_exit: None,
            error: None,
            memory_bytes: None,
            spec_hash: None,
            next_restart_at: None,
            notice: None,
            started_at: None,
            uptime_seconds: None,
            manifest: None,
            address: None,
            ports: Vec::new(),
            image: None,
            image_digest: None,
            volumes: Vec::new(),
        }
    }

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("valid time")
    }

    #[test]
    fn renders_table_and_notes() {
        let now = at("2025-01-01T00:00:00Z");
        let mut web = workload("web", State::Running);
        web.pid = Some(4242);
        web.address = Some("10.77.0.9".into());
        web.restarts = 2;
        web.uptime_seconds = Some(192);
        web.memory_bytes = Some(12_900_000);
        web.last_exit = Some(LastExit {
            code: Some(1),
            signal: None,
            reason: ExitReason::Exited,
        });
        let mut db = workload("database", State::Backoff);
        db.restarts = 11;
        db.next_restart_at = Some("2025-01-01T00:00:01.200Z".into());
        db.last_exit = Some(LastExit {
            code: None,
            signal: Some("SIGKILL".into()),
            reason: ExitReason::OomKilled,
        });
        let mut bad = workload("bad", State::Failed);
        bad.error = Some("invalid manifest:\n  line 3: unknown field `imgae`\n".into());
        let resp = StatusResponse {
            workloads: vec![bad, db, web],
        };
        let expected = "\
NAME      STATE    PID   ADDRESS    RESTARTS  UPTIME  MEMORY  LAST-EXIT
bad       failed   -     -          0         -       -       -
database  backoff  -     -          11        -       -       oom-killed
web       running  4242  10.77.0.9  2         3m12s   12.3M   code=1
bad: invalid manifest:
       line 3: unknown field `imgae`
database: next restart at 2025-01-01T00:00:01.200Z (in 1.2s)
";
        assert_eq!(render_status(&resp, now), expected);
    }

    #[test]
    fn an_image_by_tag_is_shown_not_pinned_with_what_it_runs() {
        let mut tagged = workload("web", State::Running);
        tagged.image = Some("registry.example/web:1.4".into());
        tagged.image_digest = Some(format!("sha256:{}", "ab".repeat(32)));
        let mut pinned = workload("db", State::Running);
        pinned.image = Some(format!("db:2@sha256:{}", "cd".repeat(32)));
        let out = render_status(
            &StatusResponse {
                workloads: vec![pinned, tagged],
            },
            SystemTime::now(),
        );
        assert!(
            out.contains(&format!(
                "web: image registry.example/web:1.4 is not pinned, runs sha256:{}",
                "ab".repeat(32)
            )),
            "{out}"
        );
        assert!(!out.contains("db: image"), "{out}");
    }

    #[test]
    fn pull_progress_prints_each_layer_once_per_change() {
        use crate::api::{LayerProgress, LayerState, PullProgress};
        let layer = |n: char, state| LayerProgress {
            blob: format!("sha256:{}", n.to_string().repeat(64)),
            size: 2 << 20,
            fetched: 0,
            state,
        };
        let mut p = PullProgress {
            layer_list: vec![
                layer('a', LayerState::Present),
                layer('b', LayerState::Waiting),
            ],
            ..PullProgress::default()
        };
        let mut shown = Vec::new();
        assert_eq!(
            layer_changes(&p, &mut shown),
            "sha256:aaaaaaaaaaaa  already present  2.0 MiB\n"
        );
        assert_eq!(layer_changes(&p, &mut shown), "");
        p.layer_list[1].state = LayerState::Downloading;
        assert_eq!(
            layer_changes(&p, &mut shown),
            "sha256:bbbbbbbbbbbb  downloading      2.0 MiB\n"
        );
        p.layer_list[1].state = LayerState::Done;
        assert!(layer_changes(&p, &mut shown).contains("bbbb  done"));
    }

    #[test]
    fn empty_status() {
        let resp = StatusResponse { workloads: vec![] };
        assert_eq!(render_status(&resp, SystemTime::now()), "no workloads\n");
    }

    #[test]
    fn uptime_falls_back_to_started_at() {
        let mut w = workload("w", State::Running);
        w.started_at = Some("2025-01-01T00:00:00Z".into());
        let r = row(&w, at("2025-01-01T02:05:09Z"));
        assert_eq!(r[5], "2h5m");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut w = workload("evil\u{1b}[2J", State::Failed);
        w.error = Some("bad\u{7}".into());
        let out = render_status(&StatusResponse { workloads: vec![w] }, SystemTime::now());
        assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
        assert!(out.contains("evil\\u{1b}[2J: bad\\u{7}"), "{out}");
    }

    #[test]
    fn uptimes() {
        assert_eq!(format_uptime(0), "0s");
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(192), "3m12s");
        assert_eq!(format_uptime(2 * 3600 + 5 * 60 + 59), "2h5m");
        assert_eq!(format_uptime(3 * 86_400 + 4 * 3600 + 1), "3d4h");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(format_bytes(512), "512B");
        assert_eq!(format_bytes(1536), "1.5K");
        assert_eq!(format_bytes(12_900_000), "12.3M");
        assert_eq!(format_bytes(2 << 30), "2.0G");
    }

    #[test]
    fn last_exits() {
        let e = |reason, code, signal: Option<&str>| {
            format_last_exit(&LastExit {
                code,
                signal: signal.map(str::to_owned),
                reason,
            })
        };
        assert_eq!(e(ExitReason::Exited, Some(0), None), "code=0");
        assert_eq!(
            e(ExitReason::Signaled, None, Some("SIGKILL")),
            "signal=SIGKILL"
        );
        assert_eq!(
            e(ExitReason::OomKilled, None, Some("SIGKILL")),
            "oom-killed"
        );
        assert_eq!(
            e(ExitReason::StopTimeout, None, Some("SIGKILL")),
            "stop-timeout (SIGKILL)"
        );
        assert_eq!(e(ExitReason::StopTimeout, None, None), "stop-timeout");
        assert_eq!(e(ExitReason::StartFailed, None, None), "start-failed");
    }
}
