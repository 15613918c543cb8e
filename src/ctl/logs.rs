//! `GET /v1/workloads/{name}/logs`: reads a workload's log files (`runtime::logfmt` records,
//! the current file and its rotated predecessors) for `superctl logs`. The control server
//! answers it itself, from the files: the supervisor holds no log state.
//!
//! Query: `tail=N` (the last N records), `since=T` (at or after T), `after=T` (strictly after
//! T, the cursor of `superctl logs -f`). A reply holds at most [`MAX_RECORDS`] records and
//! [`MAX_REPLY_BYTES`] of text, the newest kept.

use crate::api::{LogRecord, LogsResponse};
use crate::runtime::logfmt::{self, Nanos};
use std::path::Path;

/// Most records in one reply.
pub const MAX_RECORDS: usize = 10_000;
/// Most text in one reply.
pub const MAX_REPLY_BYTES: usize = 4 << 20;
/// Largest log file read (a rotated file is at most `max_size`, up to this).
const MAX_FILE_BYTES: u64 = 256 << 20;

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// The last N records.
    pub tail: Option<usize>,
    /// Records at or after this.
    pub since: Option<Nanos>,
    /// Records strictly after this.
    pub after: Option<Nanos>,
}

/// Parses `tail=N&since=T&after=T`.
pub fn parse_query(q: &str) -> Result<LogQuery, String> {
    let mut out = LogQuery::default();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = super::http::decode_segment(v).ok_or_else(|| format!("bad value for {k}"))?;
        let time = |v: &str| {
            logfmt::parse_timestamp(v).ok_or_else(|| format!("{k}: `{v}` is not an RFC 3339 time"))
        };
        match k {
            "tail" => {
                out.tail = Some(
                    v.parse()
                        .map_err(|_| format!("tail: `{v}` is not a number"))?,
                )
            }
            "since" => out.since = Some(time(&v)?),
            "after" => out.after = Some(time(&v)?),
            other => return Err(format!("unknown parameter `{other}`")),
        }
    }
    Ok(out)
}

/// The log files of `name` in `dir`, oldest first.
fn files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let base = format!("{name}.log");
    let mut found: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let rest = n.strip_prefix(&base)?;
                    let gen = match rest {
                        "" => 0,
                        r => r.strip_prefix('.')?.parse().ok()?,
                    };
                    Some((gen, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn read(path: &Path) -> Option<String> {
    let bytes = crate::runtime::sys::read_regular(path, MAX_FILE_BYTES, true).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The records of `name`'s log matching `q`; `None` when it has no log at all.
pub fn read_logs(dir: &Path, name: &str, q: &LogQuery) -> Option<LogsResponse> {
    let files = files(dir, name);
    if files.is_empty() {
        return None;
    }
    let lower = q.after.map(|a| a + 1).max(q.since).unwrap_or(0);
    // Newest file first, back until a file starts before what is asked for.
    let mut texts = Vec::new();
    for path in files.iter().rev() {
        let Some(text) = read(path) else { continue };
        let first = text
            .lines()
            .find_map(|l| logfmt::parse_record(l).map(|r| r.ts));
        texts.push(text);
        if first.is_some_and(|t| t <= lower) {
            break;
        }
    }
    let mut records = Vec::new();
    for text in texts.iter().rev() {
        for line in text.lines() {
            let Some(r) = logfmt::parse_record(line) else {
                continue;
            };
            if r.ts >= lower {
                records.push(LogRecord {
                    time: r.time.to_string(),
                    stream: r.stream.to_string(),
                    partial: r.partial,
                    text: r.text.to_string(),
                });
            }
        }
    }
    let mut keep = q.tail.unwrap_or(usize::MAX).min(MAX_RECORDS);
    let mut bytes = 0;
    let mut truncated = false;
    for (i, r) in records.iter().rev().enumerate() {
        bytes += r.text.len() + 64;
        if bytes > MAX_REPLY_BYTES {
            keep = keep.min(i);
            break;
        }
    }
    if records.len() > keep {
        truncated = q.tail.is_none_or(|t| t > keep);
        records.drain(..records.len() - keep);
    }
    Some(LogsResponse { records, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::logfmt::Stream;

    fn write(dir: &Path, file: &str, recs: &[(Nanos, &str)]) {
        let mut text = Vec::new();
        for (ts, t) in recs {
            text.extend(logfmt::record(*ts, Stream::Stdout, false, t.as_bytes()));
        }
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn reads_across_rotated_files_with_tail_since_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let s = 1_764_583_200_000_000_000u128;
        write(d, "w.log.2", &[(s + 1, "a"), (s + 2, "b")]);
        write(d, "w.log.1", &[(s + 3, "c")]);
        write(d, "w.log", &[(s + 4, "d"), (s + 5, "e")]);
        write(d, "other.log", &[(s + 9, "x")]);
        let texts = |q: LogQuery| -> Vec<String> {
            read_logs(d, "w", &q)
                .unwrap()
                .records
                .into_iter()
                .map(|r| r.text)
                .collect()
        };
        assert_eq!(texts(LogQuery::default()), ["a", "b", "c", "d", "e"]);
        assert_eq!(
            texts(LogQuery {
                tail: Some(2),
                ..Default::default()
            }),
            ["d", "e"]
        );
        assert_eq!(
            texts(LogQuery {
                since: Some(s + 3),
                ..Default::default()
            }),
            ["c", "d", "e"]
        );
        assert_eq!(
            texts(LogQuery {
                after: Some(s + 4),
                ..Default::default()
            }),
            ["e"]
        );
        assert!(read_logs(d, "none", &LogQuery::default()).is_none());
        let q = parse_query("tail=3&after=2025-12-01T09%3A20%3A00.000000001Z").unwrap();
        assert_eq!(q.tail, Some(3));
        assert!(q.after.is_some());
        assert!(parse_query("follow=1").is_err());
    }
}
