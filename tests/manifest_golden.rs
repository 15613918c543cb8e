//! Golden tests for manifest errors: every `tests/golden/manifest/<case>.toml` is parsed with its
//! relative path; `<case>.err` holds the expected `Display` of the error, `<case>.ok` marks a
//! case that must parse (its content is the expected spec's `Debug`).
//!
//! `UPDATE_GOLDEN=1 cargo test --test manifest_golden` rewrites the expected files.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use superd::manifest::parse;

const DIR: &str = "tests/golden/manifest";

#[test]
fn golden_manifests() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cases: Vec<PathBuf> = fs::read_dir(root.join(DIR))
        .expect("golden dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 12, "expected at least 12 golden cases");

    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().expect("file name");
        let relative = Path::new(DIR).join(name);
        let text = fs::read_to_string(case).expect("read case");
        let (actual, expected_file) = match parse(&relative, &text) {
            Ok(spec) => (format!("{spec:#?}\n"), case.with_extension("ok")),
            Err(err) => (format!("{err}\n"), case.with_extension("err")),
        };
        let other = if expected_file.extension().is_some_and(|e| e == "ok") {
            case.with_extension("err")
        } else {
            case.with_extension("ok")
        };
        if update {
            let _ = fs::remove_file(&other);
            fs::write(&expected_file, &actual).expect("write golden");
            continue;
        }
        if other.exists() {
            failures.push(format!(
                "{}: expected {}, but got:\n{actual}",
                relative.display(),
                if other.extension().is_some_and(|e| e == "ok") {
                    "success"
                } else {
                    "an error"
                },
            ));
            continue;
        }
        match fs::read_to_string(&expected_file) {
            Ok(expected) if expected == actual => {}
            Ok(expected) => failures.push(format!(
                "{}: output differs\n--- expected\n{expected}--- actual\n{actual}",
                relative.display()
            )),
            Err(_) => failures.push(format!(
                "{}: missing {} (run with UPDATE_GOLDEN=1), actual:\n{actual}",
                relative.display(),
                expected_file.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
