//! Manifest errors: every problem of one file, each with a position, a field path and a message,
//! printed compiler style (`file:line:col: field: message` plus the source line and a caret).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

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

/// The source line an error points into, with the width of the caret underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snippet {
    /// The whole source line, without its line terminator.
    pub text: String,
    /// Number of characters to underline, starting at the error's column (at least 1).
    pub width: usize,
}

impl FieldError {
    /// An error without a position (about the file as a whole).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            line: 0,
            column: 0,
            field: field.into(),
            message: message.into(),
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
        err.snippet = Some(Snippet {
            text: line_text.to_string(),
            width: underlined.max(1),
        });
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
            .take(self.column.saturating_sub(1))
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

/// Everything wrong with one manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file, as given to `parse`/`load_file`.
    pub file: PathBuf,
    /// The problems, sorted by position; never empty.
    pub errors: Vec<FieldError>,
}

impl ManifestError {
    /// Wraps `errors` (sorted by position, stable) for `file`.
    pub fn new(file: &Path, mut errors: Vec<FieldError>) -> Self {
        errors.sort_by_key(|e| (e.line, e.column));
        ManifestError {
            file: file.to_path_buf(),
            errors,
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
}
