//! Tests of `parse`: helpers and whole-document behaviour here, one test per field in `fields`.

mod fields;
mod health;

use super::*;
use std::path::Path;

const CMD: &str = "command = [\"/bin/true\"]\n";

fn parse_web(text: &str) -> Result<Spec, ManifestError> {
    parse(Path::new("/etc/workloads.d/web.toml"), text)
}

fn ok(text: &str) -> Spec {
    parse_web(text).unwrap_or_else(|e| panic!("unexpected errors:\n{e}"))
}

/// A manifest with the default command plus `extra`.
fn ok_with(extra: &str) -> Spec {
    ok(&format!("{CMD}{extra}"))
}

/// `(field, message)` of every error.
fn errors(text: &str) -> Vec<(String, String)> {
    match parse_web(text) {
        Ok(spec) => panic!("expected errors, got {spec:?}"),
        Err(e) => e.errors.into_iter().map(|e| (e.field, e.message)).collect(),
    }
}

/// The single error of `CMD + extra`; checks its field and that its message contains `needle`.
fn error_with(extra: &str, field: &str, needle: &str) -> FieldError {
    let text = format!("{CMD}{extra}");
    let err = parse_web(&text).expect_err("expected an error");
    assert_eq!(err.errors.len(), 1, "{err}");
    let e = err.errors.into_iter().next().unwrap();
    assert_eq!(e.field, field, "{}", e.message);
    assert!(
        e.message.contains(needle),
        "`{}` lacks `{needle}`",
        e.message
    );
    e
}

fn web() -> Name {
    Name::new("web").unwrap()
}

#[test]
fn minimal_manifest_gets_every_default() {
    let spec = ok(CMD);
    assert_eq!(spec, Spec::with_defaults(web(), vec!["/bin/true".into()]));
    assert_eq!(spec.hostname, "web");
    assert_eq!(
        spec.rootfs,
        Rootfs::Host {
            writable: Writable::None
        }
    );
    assert_eq!(spec.restart, Restart::default());
    assert_eq!(spec.stop, Stop::default());
    // Empty tables mean the same as omitted ones.
    let empty = "[rootfs]\n[resources]\n[restart]\n[stop]\n[network]\nenv = {}\nmounts = []\n";
    let with_empty = ok(&format!(
        "{CMD}{}",
        empty.replace("env = {}\nmounts = []\n", "")
    ));
    assert_eq!(with_empty, spec);
    assert_eq!(ok(&format!("{CMD}env = {{}}\nmounts = []\n")), spec);
}

#[test]
fn unknown_keys_everywhere_are_rejected_with_their_path() {
    let cases = [
        ("memory = \"1G\"", "memory", 2),
        ("[rootfs]\nreadonly = true", "rootfs.readonly", 3),
        (
            "[[mounts]]\nsource = \"/a\"\ntarget = \"/a\"\nro = true",
            "mounts[0].ro",
            5,
        ),
        ("[resources]\nmemory_max = 1", "resources.memory_max", 3),
        ("[restart]\ndelay = \"1s\"", "restart.delay", 3),
        ("[stop]\ngrace = \"1s\"", "stop.grace", 3),
        ("[network]\nbridge = \"br0\"", "network.bridge", 3),
        ("[resources.memory]\nmax = 1", "resources.memory", 2),
    ];
    for (extra, field, line) in cases {
        let text = format!("{CMD}{extra}");
        let err = parse_web(&text).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        let e = &err.errors[0];
        assert_eq!((e.field.as_str(), e.line), (field, line), "{err}");
    }
    let e = error_with(
        "[rootfs]\nreadonly = true",
        "rootfs.readonly",
        "unknown field `readonly`",
    );
    assert!(
        e.message
            .contains("expected one of `path`, `image`, `writable`, `pull`"),
        "{}",
        e.message
    );
}

#[test]
fn wrong_table_types_are_structural_errors() {
    error_with(
        "stop = 5",
        "stop",
        "invalid type: integer `5`, expected a table",
    );
    error_with("rootfs = \"/srv\"", "rootfs", "expected a table");
    error_with(
        "[[resources]]\npids = 1",
        "resources",
        "an array, expected a table",
    );
    error_with(
        "network = [\"host\"]",
        "network",
        "invalid type: an array, expected a table",
    );
    error_with(
        "mounts = [[\"/a\", \"/a\"]]",
        "mounts[0]",
        "an array, expected a table",
    );
    error_with(
        "mounts = { source = \"/a\" }",
        "mounts",
        "a table, expected an array",
    );
}

#[test]
fn syntax_errors_have_a_position_and_no_field() {
    let err = parse_web("command = [\"a\"\nenv = 1\n").unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!((err.errors[0].line, err.errors[0].field.as_str()), (2, ""));
    let dup = parse_web(&format!("{CMD}{CMD}")).unwrap_err();
    assert_eq!(dup.errors[0].line, 2, "{dup}");
    assert!(dup.errors[0].message.contains("duplicate"), "{dup}");
    error_with("init = 1979-05-27", "init", "found a date-time");
}

#[test]
fn every_semantic_error_is_reported_sorted_by_position() {
    let text = "[stop]\nsignal = \"nope\"\n[resources]\nmemory = \"1X\"\npids = 0\n\
                [restart]\npolicy = \"often\"\n";
    let err = parse_web(&format!("name = \"api\"\nworkdir = \"x\"\n{text}")).unwrap_err();
    let got: Vec<_> = err
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "command"),
            (1, "name"),
            (2, "workdir"),
            (4, "stop.signal"),
            (6, "resources.memory"),
            (7, "resources.pids"),
            (9, "restart.policy"),
        ]
    );
}

#[test]
fn columns_count_characters_and_crlf_is_trimmed() {
    let text = "command = [\"/bin/true\"]\r\nenv = { A = \"é\", B = 1 }\r\n";
    let err = parse_web(text).unwrap_err();
    let e = &err.errors[0];
    assert_eq!((e.line, e.column), (2, 22));
    assert_eq!(
        e.snippet.as_ref().map(|s| s.text.as_str()),
        Some("env = { A = \"é\", B = 1 }")
    );
}

#[test]
fn a_one_line_manifest_with_thousands_of_bad_values_costs_twenty_errors() {
    let entries: Vec<String> = (0..4000).map(|i| format!("a{i} = 1")).collect();
    let text = format!("{CMD}env = {{ {} }}\n", entries.join(", "));
    let err = parse_web(&text).unwrap_err();
    assert_eq!(err.errors.len(), error::MAX_ERRORS);
    assert_eq!(err.more, 4000 - error::MAX_ERRORS);
    assert_eq!(err.errors[0].field, "env.a0");
    let shown = err.to_string();
    assert!(shown.len() < 20_000, "{} bytes", shown.len());
}

#[test]
fn a_document_of_too_many_tokens_is_refused_before_it_is_parsed() {
    let entries: Vec<String> = (0..10_000).map(|i| format!("a{i} = 1")).collect();
    let text = format!("{CMD}env = {{ {} }}\n", entries.join(", "));
    let err = parse_web(&text).unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err:#}");
    assert!(err.errors[0].message.contains("too complex"), "{err:#}");
    assert_eq!(err.errors[0].line, 2);
    let blank_lines = format!("{CMD}{}", "\n".repeat(40_000));
    assert!(parse_web(&blank_lines).is_err());
    // Many real variables are fine.
    let many: String = (0..5000).map(|i| format!("V{i} = \"{i}\"\n")).collect();
    let spec = ok(&format!("{CMD}[env]\n{many}"));
    assert_eq!(spec.env.len(), 5000);
}
