//! Positioning errors that are found after parsing, by code that only has a [`Spec`] and the
//! manifest text (cross-workload checks in the daemon, such as a host port published twice).
//!
//! [`Spec`]: super::Spec

use super::error::{FieldError, ManifestError};
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// An error about `field` of the manifest `file` whose text is `text`, positioned at the
/// field's value (with a source snippet).
///
/// `field` is a path as used in error messages: `network.ports[1]`, `network.address`,
/// `mounts[0].target`, `env."A.B"`, `network`. When the value cannot be found the error points
/// at the nearest enclosing value that can (the `[network]` table for a missing
/// `network.address`), and at the start of the file when nothing can (for example when `text`
/// is empty because the file could not be read).
pub fn locate(file: &Path, text: &str, field: &str, message: impl Into<String>) -> ManifestError {
    let message = message.into();
    let error = match span_of(text, field) {
        Some(span) => FieldError::at(text, span, field, message),
        None => FieldError::at_start(field, message),
    };
    ManifestError::new(file, vec![error])
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The span of the deepest value along `field` that exists in `text`.
fn span_of(text: &str, field: &str) -> Option<Range<usize>> {
    let segments = segments(field)?;
    // Recoverable: a file with a syntax error somewhere else still locates what it can.
    let (doc, _errors) = DeTable::parse_recoverable(text);
    let mut found: Option<&Spanned<DeValue<'_>>> = None;
    for segment in &segments {
        let next = match (found.map(Spanned::get_ref), segment) {
            (None, Segment::Key(key)) => lookup(doc.get_ref(), key),
            (Some(DeValue::Table(table)), Segment::Key(key)) => lookup(table, key),
            (Some(DeValue::Array(items)), Segment::Index(i)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(value) => found = Some(value),
            None => break,
        }
    }
    found.map(|v| v.span()).filter(|span| !span.is_empty())
}

fn lookup<'a, 'i>(table: &'a DeTable<'i>, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref() == key)
        .map(|(_, v)| v)
}

/// Splits `a.b[1]."c.d"` into keys and indices; `None` for a malformed path.
fn segments(field: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    let mut chars = field.chars().peekable();
    let mut expect_key = true;
    while let Some(&c) = chars.peek() {
        match c {
            '[' => {
                chars.next();
                let mut digits = String::new();
                loop {
                    match chars.next()? {
                        ']' => break,
                        c if c.is_ascii_digit() => digits.push(c),
                        _ => return None,
                    }
                }
                out.push(Segment::Index(digits.parse().ok()?));
                expect_key = false;
            }
            '.' if !expect_key => {
                chars.next();
                expect_key = true;
            }
            '"' if expect_key => {
                chars.next();
                out.push(Segment::Key(quoted(&mut chars)?));
                expect_key = false;
            }
            _ if expect_key => {
                let mut key = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        break;
                    }
                    key.push(c);
                    chars.next();
                }
                if key.is_empty() {
                    return None;
                }
                out.push(Segment::Key(key));
                expect_key = false;
            }
            _ => return None,
        }
    }
    (!out.is_empty() && !expect_key).then_some(out)
}

/// The rest of a key quoted as `{:?}` prints it (see `check::key_segment`), after the opening
/// quote.
fn quoted(chars: &mut impl Iterator<Item = char>) -> Option<String> {
    let mut key = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(key),
            '\\' => key.push(match chars.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                'u' => {
                    let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                other => other,
            }),
            c => key.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "command = [\"/bin/true\"]\n\
                        env = { \"A.B\" = \"1\" }\n\
                        \n\
                        [[mounts]]\n\
                        source = \"/a\"\n\
                        target = \"/a\"\n\
                        \n\
                        [network]\n\
                        mode = \"bridge\"\n\
                        ports = [\"8080:80\", \"127.0.0.1:5353:53/udp\"]\n\
                        aliases = [\"api\"]\n";

    fn at(field: &str) -> (usize, usize, usize) {
        let err = locate(Path::new("web.toml"), TEXT, field, "taken");
        assert_eq!(err.errors.len(), 1);
        let e = &err.errors[0];
        assert_eq!((e.field.as_str(), e.message.as_str()), (field, "taken"));
        (e.line, e.column, e.snippet.as_ref().map_or(0, |s| s.width))
    }

    #[test]
    fn locates_values_along_the_path() {
        assert_eq!(at("network.ports[1]"), (10, 21, 23));
        assert_eq!(at("network.ports[0]"), (10, 10, 9));
        assert_eq!(at("network.ports"), (10, 9, 36));
        assert_eq!(at("network.aliases[0]"), (11, 12, 5));
        assert_eq!(at("network.mode"), (9, 8, 8));
        assert_eq!(at("mounts[0].target"), (6, 10, 4));
        assert_eq!(at("env.\"A.B\""), (2, 17, 3));
        assert_eq!(at("command[0]"), (1, 12, 11));
    }

    #[test]
    fn falls_back_to_the_enclosing_value_then_the_start() {
        let table = at("network");
        assert_eq!((table.0, table.1), (8, 1), "the [network] table");
        assert_eq!(at("network.address"), at("network"));
        assert_eq!(at("network.ports[7]"), at("network.ports"));
        assert_eq!(at("mounts[3].source"), at("mounts"));
        assert_eq!(
            (at("mounts").0, at("mounts").1),
            (4, 1),
            "the first [[mounts]]"
        );
        for nowhere in ["rootfs.path", "", "network..x", "network.ports[x]", "a[1"] {
            let err = locate(Path::new("web.toml"), TEXT, nowhere, "m");
            let e = &err.errors[0];
            assert_eq!((e.line, e.column, &e.snippet), (1, 1, &None), "{nowhere:?}");
        }
        let unread = locate(Path::new("web.toml"), "", "network.ports[0]", "m");
        assert_eq!((unread.errors[0].line, unread.errors[0].column), (1, 1));
        let broken = "[network]\nports = [\"80:80\"]\nmode = \n";
        let err = locate(Path::new("web.toml"), broken, "network.ports[0]", "m");
        assert_eq!((err.errors[0].line, err.errors[0].column), (2, 10));
    }

    #[test]
    fn display_is_compiler_style() {
        let err = locate(
            Path::new("/etc/workloads.d/web.toml"),
            TEXT,
            "network.ports[0]",
            "port 8080/tcp is already published by workload `api`",
        );
        assert_eq!(
            err.to_string(),
            "/etc/workloads.d/web.toml:10:10: network.ports[0]: port 8080/tcp is already \
             published by workload `api`\n   |\n10 | ports = [\"8080:80\", \
             \"127.0.0.1:5353:53/udp\"]\n   |          ^^^^^^^^^"
        );
    }

    #[test]
    fn field_paths() {
        use Segment::{Index, Key};
        let key = |s: &str| Key(s.into());
        assert_eq!(
            segments("network.ports[1]"),
            Some(vec![key("network"), key("ports"), Index(1)])
        );
        assert_eq!(
            segments("env.\"A.B\\\"\\u{0}\""),
            Some(vec![key("env"), key("A.B\"\0")])
        );
        assert_eq!(
            segments("a[0][2].b"),
            Some(vec![key("a"), Index(0), Index(2), key("b")])
        );
        for bad in ["", "a.", ".a", "a[", "a[x]", "a..b", "a\"b\"", "\"a"] {
            assert_eq!(segments(bad), None, "{bad:?}");
        }
    }
}
