//! The error collector used while turning a raw manifest into a `Spec`: typed accessors for
//! spanned leaves that record a positioned error and return `None` instead of stopping.

use super::error::{FieldError, MAX_ERRORS};
use super::raw::Val;
use super::spec::AbsPath;
use super::values;
use std::ops::Range;
use std::time::Duration;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Collects the errors of one file: the first [`MAX_ERRORS`] in full, the rest only counted,
/// so that a hostile file with a million bad values costs no more than one with twenty.
pub(crate) struct Checker<'t> {
    pub text: &'t str,
    pub errors: Vec<FieldError>,
    /// Errors found beyond `errors`.
    pub suppressed: usize,
}

impl<'t> Checker<'t> {
    /// An empty collector for `text`.
    pub fn new(text: &'t str) -> Self {
        Checker {
            text,
            errors: Vec::new(),
            suppressed: 0,
        }
    }

    /// Every error found so far, kept or counted.
    pub fn count(&self) -> usize {
        self.errors.len() + self.suppressed
    }

    /// Records `make()`'s error, or only counts it once [`MAX_ERRORS`] are kept.
    pub fn push(&mut self, make: impl FnOnce() -> FieldError) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(make());
        } else {
            self.suppressed += 1;
        }
    }

    /// Records an error at `span`.
    pub fn error(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        let text = self.text;
        self.push(|| FieldError::at(text, span, field, message));
    }

    /// Records an error from the TOML parser or deserializer; `doc` (when the document parsed)
    /// lets us name the field the error points at.
    pub fn toml_error(&mut self, err: &toml::de::Error, doc: Option<&DeTable<'_>>) {
        // serde's words for TOML's types.
        let message = err
            .message()
            .trim()
            .replace('\n', "; ")
            .replace("type: sequence", "type: an array")
            .replace("type: map", "type: a table")
            .replace("expected a sequence", "expected an array")
            .replace("expected a map", "expected a table");
        let Some(span) = err.span() else {
            self.push(|| FieldError::at_start("", message));
            return;
        };
        let field = doc.and_then(|t| field_at(t, &span, "")).unwrap_or_default();
        self.error(span, &field, message);
    }

    fn wrong_type(&mut self, v: &Spanned<Val>, field: &str, expected: &str) {
        let found = v.get_ref().type_name();
        self.error(
            v.span(),
            field,
            format!("expected {expected}, found {found}"),
        );
    }

    /// The leaf as a string without NUL bytes.
    pub fn string<'v>(&mut self, v: &'v Spanned<Val>, field: &str) -> Option<&'v str> {
        match v.get_ref() {
            Val::Str(s) if s.contains('\0') => {
                self.error(v.span(), field, "must not contain a NUL byte");
                None
            }
            Val::Str(s) => Some(s),
            _ => {
                self.wrong_type(v, field, "a string");
                None
            }
        }
    }

    /// The leaf as a string, then through `parse`; `expected` describes the accepted form for
    /// a wrong type.
    pub fn parsed<T>(
        &mut self,
        v: &Spanned<Val>,
        field: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let Val::Str(s) = v.get_ref() else {
            self.wrong_type(v, field, expected);
            return None;
        };
        parse(s)
            .map_err(|msg| self.error(v.span(), field, msg))
            .ok()
    }

    /// A boolean leaf.
    pub fn boolean(&mut self, v: &Spanned<Val>, field: &str) -> Option<bool> {
        match v.get_ref() {
            Val::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(v, field, "`true` or `false`");
                None
            }
        }
    }

    /// An integer leaf in `min..=max`.
    pub fn integer(&mut self, v: &Spanned<Val>, field: &str, min: i128, max: i128) -> Option<i128> {
        match v.get_ref() {
            Val::Int(n) if (min..=max).contains(n) => Some(*n),
            Val::Int(n) => {
                let msg = format!("{n} is out of range: expected an integer from {min} to {max}");
                self.error(v.span(), field, msg);
                None
            }
            _ => {
                self.wrong_type(v, field, &format!("an integer from {min} to {max}"));
                None
            }
        }
    }

    /// An absolute, normalised path.
    pub fn path(&mut self, v: &Spanned<Val>, field: &str) -> Option<AbsPath> {
        self.parsed(v, field, "an absolute path string", |s| {
            AbsPath::new(s).map_err(|e| format!("{e}: expected an absolute, normalised path"))
        })
    }

    /// A humantime duration > 0.
    pub fn duration(&mut self, v: &Spanned<Val>, field: &str) -> Option<Duration> {
        self.parsed(
            v,
            field,
            "a duration string such as \"100ms\" or \"30s\"",
            values::parse_duration,
        )
    }

    /// One of a fixed set of strings.
    pub fn choice<T: Copy>(
        &mut self,
        v: &Spanned<Val>,
        field: &str,
        options: &[(&str, T)],
    ) -> Option<T> {
        let list = options
            .iter()
            .map(|(name, _)| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let expected = format!("one of {list}");
        self.parsed(v, field, &expected, |s| {
            options
                .iter()
                .find(|(name, _)| *name == s)
                .map(|&(_, t)| t)
                .ok_or_else(|| format!("invalid value `{s}`: expected {expected}"))
        })
    }
}

/// Renders one key of a field path, quoting it when it is not a bare TOML key.
pub fn key_segment(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key_segment(key)
    } else {
        format!("{prefix}.{}", key_segment(key))
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The path of the key or value in `table` whose span is `span`, else of the deepest one whose
/// span contains it.
fn field_at(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    for (key, value) in table.iter() {
        let path = join(prefix, key.get_ref());
        if key.span() == *span || value.span() == *span {
            return Some(path);
        }
        if let Some(deeper) = value_field_at(value, span, &path) {
            return Some(deeper);
        }
        if contains(&key.span(), span) || contains(&value.span(), span) {
            return Some(path);
        }
    }
    None
}

fn value_field_at(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &str) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => field_at(t, span, path),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let item_path = format!("{path}[{i}]");
            if item.span() == *span {
                return Some(item_path);
            }
            value_field_at(item, span, &item_path)
                .or_else(|| contains(&item.span(), span).then_some(item_path))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str, needle: &str) -> Option<String> {
        let doc = DeTable::parse(text).unwrap();
        let start = text.find(needle).unwrap();
        field_at(doc.get_ref(), &(start..start + needle.len()), "")
    }

    #[test]
    fn field_paths_from_spans() {
        let text = "a = 1\n[resources]\nmemroy = 2\n[[mounts]]\nx = 1\n[[mounts]]\nsrc = 1\n";
        assert_eq!(
            field_of(text, "memroy").as_deref(),
            Some("resources.memroy")
        );
        assert_eq!(field_of(text, "src").as_deref(), Some("mounts[1].src"));
        assert_eq!(field_of(text, "a").as_deref(), Some("a"));
        let text = "env = { \"A.B\" = 1 }\ncommand = [\"a\", 7]";
        assert_eq!(field_of(text, "1").as_deref(), Some("env.\"A.B\""));
        assert_eq!(field_of(text, "7").as_deref(), Some("command[1]"));
    }
}
