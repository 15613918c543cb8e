//! Every TOML example in the README parses as a manifest, so the docs cannot drift from the
//! schema; and each spec survives the JSON form superd records it in (instance records), so
//! a successor reads back exactly what ran.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;

/// The spec read back from its recorded JSON is the same spec, with the same hash.
fn assert_round_trips(what: &str, spec: &superd::manifest::Spec) {
    let json = serde_json::to_string(spec).unwrap();
    let back: superd::manifest::Spec =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{what}: reading back {json}: {e}"));
    assert_eq!(&back, spec, "{what}");
    assert_eq!(back.hash(), spec.hash(), "{what}");
}

#[test]
fn every_toml_block_in_the_readme_is_a_valid_manifest() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("reading README.md");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some((i + 2, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), l) => {
                text.push_str(l);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(!blocks.is_empty(), "no ```toml block in the README");
    for (line, text) in blocks {
        match superd::manifest::parse(Path::new("web.toml"), &text) {
            Ok(spec) => assert_round_trips(&format!("README.md line {line}"), &spec),
            Err(e) => panic!("README.md line {line}: the example does not parse:\n{e}"),
        }
    }
}

#[test]
fn every_manifest_in_examples_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut seen = 0;
    let entries = std::fs::read_dir(&dir)
        .unwrap()
        .chain(std::fs::read_dir(&shipped).unwrap());
    for entry in entries {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        match superd::manifest::parse(&path, &text) {
            Ok(spec) => assert_round_trips(&path.display().to_string(), &spec),
            Err(e) => panic!("{}: the example does not parse:\n{e}", path.display()),
        }
        seen += 1;
    }
    assert!(
        seen >= 4,
        "expected the packaged-daemon examples in {}",
        dir.display()
    );
}
