//! The workload log format, shared by the writer (the init shim) and the readers (the control
//! server for `superctl logs`): one record per line, as the CRI (kubelet, containerd, podman's
//! `k8s-file`) writes them:
//!
//! ```text
//! 2026-12-01T10:00:00.123456789Z stdout F a whole line
//! 2026-12-01T10:00:00.123456790Z stderr P the first 16 KiB of a longer line…
//! ```
//!
//! `F` ends a line, `P` is part of one that continues in the next record of the same stream.
//! Every record of a log has a strictly later timestamp than the one before, so a timestamp
//! is a cursor: "everything after T" is exact.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest payload of one record; a longer line becomes `P` records.
pub const MAX_RECORD: usize = 16 << 10;

/// Which output a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2 (and superd-init's own messages).
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Nanoseconds since the epoch, as a record's timestamp.
pub type Nanos = u128;

/// The current time in nanoseconds, at least `after + 1`.
pub fn next_timestamp(after: Nanos) -> Nanos {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    now.max(after + 1)
}

/// RFC 3339 with nanoseconds, UTC.
pub fn format_timestamp(ns: Nanos) -> String {
    let secs = u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX);
    let t = UNIX_EPOCH + Duration::new(secs, (ns % 1_000_000_000) as u32);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses [`format_timestamp`]'s output (or any RFC 3339 time).
pub fn parse_timestamp(s: &str) -> Option<Nanos> {
    let t = humantime::parse_rfc3339(s).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_nanos())
}

/// One record, with its line terminator.
pub fn record(ts: Nanos, stream: Stream, partial: bool, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "{} {} {} ",
        format_timestamp(ts),
        stream.as_str(),
        if partial { 'P' } else { 'F' }
    );
    let mut out = Vec::with_capacity(head.len() + payload.len() + 1);
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// A record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its timestamp.
    pub ts: Nanos,
    /// The timestamp as written.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// Part of a longer line.
    pub partial: bool,
    /// The payload.
    pub text: &'a str,
}

/// Parses one line of a log; `None` for anything else (a raw line from an older superd).
pub fn parse_record(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    if !matches!(stream, "stdout" | "stderr") || !matches!(tag, "P" | "F") {
        return None;
    }
    Some(Record {
        ts: parse_timestamp(time)?,
        time,
        stream,
        partial: tag == "P",
        text,
    })
}

/// Splits a stream's bytes into records: complete lines, and parts of at most
/// [`MAX_RECORD`] of longer ones. Keeps an unfinished line until more arrives or [`finish`].
///
/// [`finish`]: LineSplitter::finish
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds `data`; calls `emit(partial, payload)` for every record it completes.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (line, rest) = data.split_at(nl);
            if self.pending.is_empty() {
                emit_line(line, &mut emit);
            } else {
                self.pending.extend_from_slice(line);
                let whole = std::mem::take(&mut self.pending);
                emit_line(&whole, &mut emit);
            }
            data = &rest[1..];
        }
        self.pending.extend_from_slice(data);
        while self.pending.len() >= MAX_RECORD {
            let rest = self.pending.split_off(MAX_RECORD);
            emit(true, &self.pending);
            self.pending = rest;
        }
    }

    /// The stream ended: the unfinished line, if any, as a complete record.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            emit(false, &last);
        }
    }
}

fn emit_line(line: &[u8], emit: &mut impl FnMut(bool, &[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut chunks = line.chunks(MAX_RECORD).peekable();
    if chunks.peek().is_none() {
        emit(false, b"");
    }
    while let Some(c) = chunks.next() {
        emit(chunks.peek().is_some(), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let ts = 1_764_583_200_123_456_789u128;
        let r = record(ts, Stream::Stderr, false, b"hello world");
        let text = String::from_utf8(r).unwrap();
        assert!(text.ends_with(" stderr F hello world\n"), "{text}");
        let back = parse_record(text.trim_end()).unwrap();
        assert_eq!(
            (back.ts, back.stream, back.partial, back.text),
            (ts, "stderr", false, "hello world")
        );
        assert!(parse_record("a raw line").is_none());
        assert!(next_timestamp(u128::MAX - 1) == u128::MAX);
        let a = next_timestamp(0);
        assert!(next_timestamp(a) > a);
    }

    #[test]
    fn lines_split_and_long_ones_become_parts() {
        let mut s = LineSplitter::default();
        let mut got: Vec<(bool, Vec<u8>)> = Vec::new();
        s.push(b"one\ntw", |p, b| got.push((p, b.to_vec())));
        s.push(b"o\r\n\nthr", |p, b| got.push((p, b.to_vec())));
        s.finish(|p, b| got.push((p, b.to_vec())));
        let want: Vec<(bool, Vec<u8>)> = vec![
            (false, b"one".to_vec()),
            (false, b"two".to_vec()),
            (false, b"".to_vec()),
            (false, b"thr".to_vec()),
        ];
        assert_eq!(got, want);
        let mut got = Vec::new();
        let long = vec![b'x'; MAX_RECORD * 2 + 5];
        s.push(&long, |p, b| got.push((p, b.len())));
        s.push(b"\n", |p, b| got.push((p, b.len())));
        assert_eq!(got, [(true, MAX_RECORD), (true, MAX_RECORD), (false, 5)]);
    }
}
