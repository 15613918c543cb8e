//! Every TOML example in the README parses as a manifest, so the docs cannot drift from the
//! schema.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;

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
        if let Err(e) = superd::manifest::parse(Path::new("web.toml"), &text) {
            panic!("README.md line {line}: the example does not parse:\n{e}");
        }
    }
}

#[test]
fn every_manifest_in_examples_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = superd::manifest::parse(&path, &text) {
            panic!("{}: the example does not parse:\n{e}", path.display());
        }
        seen += 1;
    }
    assert!(
        seen >= 4,
        "expected the packaged-daemon examples in {}",
        dir.display()
    );
}
