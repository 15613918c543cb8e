//! Manifest errors: every problem of one file, each with a position, a field path and a message,
//! printed compiler style (`file:line:col: field: message` plus the source line and a caret).
//!
//! Everything an error holds is bounded, whatever the file: a manifest is operator input that
//! may be hostile or simply broken, and its errors travel into logs and status replies. A
//! snippet is a window of at most [`SNIPPET_CHARS`] characters around the column, a field path
//! or message at most [`TEXT_CHARS`], and a file keeps its first [`MAX_ERRORS`] errors plus a
//! count of the rest.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Most errors kept per file; the rest are counted ([`ManifestError::more`]).
pub const MAX_ERRORS: usize = 20;
/// Widest source window shown under an error, in characters.
pub const SNIPPET_CHARS: usize = 200;
/// Longest field path or message kept, in characters.
pub const TEXT_CHARS: usize = 512;

/// Cuts `s` to at most `max` characters, marking the cut with `…`.
pub fn bound_text(mut s: String, max: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max) {
        s.truncate(i);
        s.push('…');
    }
    s
}

/// One problem in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// 1-based line; 0 when the problem has no position (I/O errors, a bad file name).
    pub line: usize,
    /// 1-based column in characters; 0 when `line` is 0.
    pub column: usize,
    /// The field path, e.g. `resources.memory` or `mounts[1].target`; empty for syntax errors.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub message: String,
    /// The offending source line, when the position is known.
    pub snippet: Option<Snippet>,
}

/// The part of the source line an error points into, with the caret underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The source line without its terminator, or a window of at most [`SNIPPET_CHARS`]
    /// characters around the column of a longer one (cut ends marked with `…`).
    pub text: String,
    /// Characters of `text` before the caret.
    pub caret: usize,
    /// Number of characters to underline, starting at the caret (at least 1).
    pub width: usize,
}

impl FieldError {
    /// An error without a position (about the file as a whole).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            line: 0,
            column: 0,
            field: bound_text(field.into(), TEXT_CHARS),
            message: bound_text(message.into(), TEXT_CHARS),
            snippet: None,
        }
    }

    /// An error about something missing from the document: reported at 1:1, without a snippet.
    pub fn at_start(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            line: 1,
            column: 1,
            ..FieldError::new(field, message)
        }
    }

    /// An error at byte range `span` of `text`.
    pub fn at(
        text: &str,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let mut err = FieldError::at_start(field, message);
        // Spans come from the TOML parser and should be in range on char boundaries; anything
        // else degrades to "position unknown" rather than panicking.
        let Some(before) = text.get(..span.start) else {
            return err;
        };
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[span.start..]
            .find('\n')
            .map_or(text.len(), |i| span.start + i);
        let line_text = text[line_start..line_end].trim_end_matches('\r');
        let underlined = text
            .get(span.start..span.end.min(line_end))
            .map_or(0, |s| s.chars().count());
        err.line = before.matches('\n').count() + 1;
        err.column = before[line_start..].chars().count() + 1;
        err.snippet = Some(Snippet::window(
            line_text,
            err.column - 1,
            underlined.max(1),
        ));
        err
    }

    fn fmt_head(&self, file: &Path, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", file.display())?;
        if self.line > 0 {
            write!(f, "{}:{}:", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, " {}:", self.field)?;
        }
        write!(f, " {}", self.message)
    }

    fn fmt_snippet(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(snippet) = &self.snippet else {
            return Ok(());
        };
        let gutter = " ".repeat(self.line.to_string().len());
        // Keep tabs in the indentation so the caret lines up with the source line.
        let indent: String = snippet
            .text
            .chars()
            .take(snippet.caret)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(
            f,
            "\n{gutter} |\n{} | {}\n{gutter} | {indent}{}",
            self.line,
            snippet.text,
            "^".repeat(snippet.width)
        )
    }
}

impl Snippet {
    /// The window of `line` shown for a caret `caret` characters in, `width` wide: the whole
    /// line when it is short, else [`SNIPPET_CHARS`] characters with the caret about a quarter
    /// in, cut ends marked with `…` (which then counts toward the caret).
    fn window(line: &str, caret: usize, width: usize) -> Snippet {
        let len = line.chars().count();
        if len <= SNIPPET_CHARS {
            return Snippet {
                text: line.to_string(),
                caret,
                width,
            };
        }
        let start = caret
            .saturating_sub(SNIPPET_CHARS / 4)
            .min(len - SNIPPET_CHARS);
        let end = start + SNIPPET_CHARS;
        let mut text: String = if start > 0 {
            "…".into()
        } else {
            String::new()
        };
        text.extend(line.chars().skip(start).take(SNIPPET_CHARS));
        if end < len {
            text.push('…');
        }
        let lead = usize::from(start > 0);
        let caret_in = caret - start + lead;
        Snippet {
            text,
            caret: caret_in,
            width: width.min(end.saturating_sub(caret).max(1)),
        }
    }
}

/// Everything wrong with one manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file, as given to `parse`/`load_file`.
    pub file: PathBuf,
    /// The first [`MAX_ERRORS`] problems, sorted by position; never empty.
    pub errors: Vec<FieldError>,
    /// How many more problems the file has beyond `errors`.
    pub more: usize,
}

impl ManifestError {
    /// Wraps `errors` (sorted by position, stable) for `file`, keeping the first
    /// [`MAX_ERRORS`] and counting the rest.
    pub fn new(file: &Path, errors: Vec<FieldError>) -> Self {
        ManifestError::with_more(file, errors, 0)
    }

    /// As [`new`](Self::new), with `more` problems already left out by the caller.
    pub fn with_more(file: &Path, mut errors: Vec<FieldError>, more: usize) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        let more = more + errors.len().saturating_sub(MAX_ERRORS);
        errors.truncate(MAX_ERRORS);
        ManifestError {
            file: file.to_path_buf(),
            errors,
            more,
        }
    }

    /// A single position-less error for an I/O failure while `doing` something with `file`.
    pub fn io(file: &Path, doing: &str, err: &std::io::Error) -> Self {
        ManifestError::new(file, vec![FieldError::new("", format!("{doing}: {err}"))])
    }
}

/// `{}` prints one compiler-style block per error (with source snippets), separated by blank
/// lines; `{:#}` prints one line per error without snippets (for status displays and logs).
impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str(if f.alternate() { "\n" } else { "\n\n" })?;
            }
            err.fmt_head(&self.file, f)?;
            if !f.alternate() {
                err.fmt_snippet(f)?;
            }
        }
        if self.more > 0 {
            let s = if self.more == 1 { "" } else { "s" };
            f.write_str(if f.alternate() { "\n" } else { "\n\n" })?;
            write!(
                f,
                "{}: … and {} more error{s} (fix the ones above first)",
                self.file.display(),
                self.more
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ManifestError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_and_snippet() {
        let text = "a = 1\n\tmemory = \"64Q\"\n";
        let start = text.find('"').unwrap();
        let e = FieldError::at(text, start..start + 5, "resources.memory", "bad");
        assert_eq!((e.line, e.column), (2, 11));
        let m = ManifestError::new(Path::new("w.toml"), vec![e]);
        assert_eq!(
            m.to_string(),
            "w.toml:2:11: resources.memory: bad\n  |\n2 | \tmemory = \"64Q\"\n  | \t         ^^^^^"
        );
        assert_eq!(format!("{m:#}"), "w.toml:2:11: resources.memory: bad");
    }

    #[test]
    fn multi_line_span_is_cut_at_line_end_and_eof_span_is_one_caret() {
        let text = "command = [\n  1,\n]";
        let e = FieldError::at(text, 10..text.len(), "command", "bad");
        assert_eq!(e.snippet.as_ref().map(|s| s.width), Some(1));
        let e = FieldError::at(text, text.len()..text.len(), "", "eof");
        assert_eq!((e.line, e.column), (3, 2));
        let e = FieldError::at(text, 999..1000, "", "out of range");
        assert_eq!((e.line, e.column, e.snippet), (1, 1, None));
    }

    #[test]
    fn sorted_and_io_errors_have_no_position() {
        let text = "a\nb\n";
        let m = ManifestError::new(
            Path::new("f"),
            vec![
                FieldError::at(text, 2..3, "b", "second"),
                FieldError::at(text, 0..1, "a", "first"),
                FieldError::new("", "file level"),
            ],
        );
        let fields: Vec<_> = m.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(fields, ["file level", "first", "second"]);
        let io = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let m = ManifestError::io(Path::new("/x/web.toml"), "cannot read", &io);
        assert_eq!(m.to_string(), "/x/web.toml: cannot read: permission denied");
    }

    #[test]
    fn a_long_line_shows_a_bounded_window_with_the_caret_in_place() {
        let line = format!("env = {{ {} }}", "a = 1, ".repeat(20_000));
        let col = line.len() / 2;
        let start = line[col..].find('a').unwrap() + col;
        let e = FieldError::at(&line, start..start + 1, "env.a", "bad");
        assert_eq!(e.column, start + 1);
        let snip = e.snippet.as_ref().unwrap();
        assert!(
            snip.text.chars().count() <= SNIPPET_CHARS + 2,
            "{}",
            snip.text
        );
        assert!(snip.text.starts_with('…') && snip.text.ends_with('…'));
        assert_eq!(snip.text.chars().nth(snip.caret), Some('a'));
        let shown = ManifestError::new(Path::new("w.toml"), vec![e]).to_string();
        assert!(shown.len() < 1000, "{} bytes", shown.len());
        // The caret sits under the character the column names.
        let lines: Vec<&str> = shown.lines().collect();
        let caret_at = lines[3].chars().position(|c| c == '^').unwrap();
        assert_eq!(lines[2].chars().nth(caret_at), Some('a'), "{shown}");
    }

    #[test]
    fn near_the_line_ends_the_window_is_cut_on_one_side_only() {
        let line = "x".repeat(1000);
        let e = FieldError::at(&line, 2..4, "", "start");
        let snip = e.snippet.unwrap();
        assert!(!snip.text.starts_with('…') && snip.text.ends_with('…'));
        assert_eq!((snip.caret, snip.width), (2, 2));
        let e = FieldError::at(&line, 999..1000, "", "end");
        let snip = e.snippet.unwrap();
        assert!(snip.text.starts_with('…') && !snip.text.ends_with('…'));
        assert_eq!(snip.text.chars().count(), SNIPPET_CHARS + 1);
        assert_eq!(snip.caret, SNIPPET_CHARS);
    }

    #[test]
    fn fields_messages_and_error_counts_are_bounded() {
        let huge = "k".repeat(100_000);
        let e = FieldError::new(format!("env.{huge}"), format!("bad key {huge}"));
        assert!(e.field.chars().count() <= TEXT_CHARS + 1);
        assert!(e.message.chars().count() <= TEXT_CHARS + 1);
        let errors = (0..1000)
            .map(|i| FieldError::at("a\n".repeat(1000).as_str(), 2 * i..2 * i + 1, "a", "x"))
            .collect();
        let m = ManifestError::new(Path::new("f.toml"), errors);
        assert_eq!((m.errors.len(), m.more), (MAX_ERRORS, 1000 - MAX_ERRORS));
        assert_eq!(m.errors[0].line, 1, "the first errors by position are kept");
        let one_line = format!("{m:#}");
        assert_eq!(one_line.lines().count(), MAX_ERRORS + 1);
        assert!(one_line.ends_with("… and 980 more errors (fix the ones above first)"));
    }
}
