//! `superctl export --kubernetes`: reads the manifests named, maps each with
//! [`kube::export`](super::kube::export) and writes YAML (one stream, or a file per
//! workload), with the report of what does not map on stderr.

use super::kube::{export, Kind};
use crate::manifest::Spec;
use serde_json::Value;

/// `v` as block-style YAML in which every string is double-quoted (in JSON's escapes, which
/// YAML shares). The YAML crates for serde leave `no`, `on` or `yes` unquoted (dtolnay/
/// serde-yaml#380), which YAML 1.1 parsers, kubectl's among them, read as booleans: an
/// argument `no` would become `false`.
pub fn to_yaml(v: &Value) -> String {
    let mut lines = Vec::new();
    block(v, 0, &mut lines);
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        // Strings, numbers, booleans and null in their JSON form are YAML too.
        other => other.to_string(),
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        // YAML 1.1's booleans and null, which a key would be read as.
        && !matches!(
            k.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "true" | "false" | "on" | "off" | "null"
        );
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn block(v: &Value, indent: usize, lines: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, val) in m {
                if is_block(val) {
                    lines.push(format!("{pad}{}:", key(k)));
                    block(val, indent + 2, lines);
                } else {
                    lines.push(format!("{pad}{}: {}", key(k), scalar(val)));
                }
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                if is_block(item) {
                    // The item's first line goes after the dash.
                    let first = lines.len();
                    block(item, indent + 2, lines);
                    if let Some(l) = lines.get_mut(first) {
                        *l = format!("{pad}- {}", &l[indent + 2..]);
                    }
                } else {
                    lines.push(format!("{pad}- {}", scalar(item)));
                }
            }
        }
        other => lines.push(format!("{pad}{}", scalar(other))),
    }
}

/// `superctl export --kubernetes TARGET...`: each target is a manifest file, a directory of
/// manifests, or a workload name looked up in `manifests`. Writes the objects as one YAML
/// stream to `out`, or `NAME.yaml` files into `out_dir`; the report and any invalid manifest
/// go to `err`. Returns the exit code: 0, or 1 when a manifest was invalid or not found.
pub fn run(
    targets: &[String],
    manifests: &std::path::Path,
    kind: Kind,
    out_dir: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> std::io::Result<u8> {
    use std::path::PathBuf;
    let mut specs: Vec<Spec> = Vec::new();
    let mut failed = false;
    for t in targets {
        let path = PathBuf::from(t);
        let path = if path.exists() {
            path
        } else {
            manifests.join(format!("{t}.toml"))
        };
        if path.is_dir() {
            match crate::manifest::load_dir(&path) {
                Ok(desired) => {
                    for entry in desired.into_values() {
                        match entry.spec {
                            Ok(s) => specs.push((*s).clone()),
                            Err(e) => {
                                writeln!(err, "{e}")?;
                                failed = true;
                            }
                        }
                    }
                }
                Err(e) => {
                    writeln!(err, "superctl: reading {}: {e}", path.display())?;
                    failed = true;
                }
            }
            continue;
        }
        match crate::manifest::load_file(&path) {
            Ok(s) => specs.push(s),
            Err(e) => {
                writeln!(err, "{e}")?;
                failed = true;
            }
        }
    }
    let mut report = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let e = export(spec, kind);
        report.extend(e.report);
        let mut text = String::new();
        for obj in &e.objects {
            text.push_str("---\n");
            text.push_str(&to_yaml(obj));
        }
        match out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let file = dir.join(format!("{}.yaml", spec.name));
                std::fs::write(&file, text)?;
                writeln!(err, "superctl: wrote {}", file.display())?;
            }
            None => {
                if i > 0 {
                    writeln!(out)?;
                }
                write!(out, "{text}")?;
            }
        }
    }
    if !report.is_empty() {
        writeln!(
            err,
            "superctl: what does not map to Kubernetes ({} items):",
            report.len()
        )?;
        for line in &report {
            writeln!(err, "  {line}")?;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_quotes_every_string_so_no_stays_a_string() {
        let v = json!({
            "command": ["redis-server", "--appendonly", "no"],
            "app.kubernetes.io/name": "web",
            "spec": { "containers": [{ "name": "web", "ports": [{ "containerPort": 80 }] }], "volumes": [] },
            "on": true,
        });
        assert_eq!(
            to_yaml(&v),
            "app.kubernetes.io/name: \"web\"\n\
             command:\n  - \"redis-server\"\n  - \"--appendonly\"\n  - \"no\"\n\
             \"on\": true\n\
             spec:\n  containers:\n    - name: \"web\"\n      ports:\n        - containerPort: 80\n  volumes: []\n"
        );
    }
}
