//! `superctl export --kubernetes` on the shipped manifests and examples, as Pods and as
//! Deployments: every object passes kubernetes-validate (the Kubernetes 1.37 schemas, strict:
//! no property Kubernetes does not know), and what does not map is reported by field.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// Installed by packaging/deps.sh.
const VALIDATOR: &str = "/var/cache/superd-test/k8s-validate/bin/kubernetes-validate";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn exported_manifests_pass_the_kubernetes_schemas_and_the_rest_is_reported() {
    if !Path::new(VALIDATOR).exists() {
        superd::testing::report_skip(
            "exported_manifests_pass_the_kubernetes_schemas_and_the_rest_is_reported",
            &format!("{VALIDATOR} is missing (packaging/deps.sh installs it, as root)"),
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (flavour, extra) in [("pods", None), ("deployments", Some("--deployment"))] {
        let dir = tmp.path().join(flavour);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_superctl"));
        cmd.args(["export", "--kubernetes", "--out"])
            .arg(&dir)
            .args(extra)
            .arg(repo().join("manifests"))
            .arg(repo().join("examples"));
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        // Reported by field, never dropped: the shipped worker's start order, the examples'
        // host root and stop signals.
        for needle in [
            "worker: after: Kubernetes starts pods in no order",
            "nginx: rootfs: the host's root filesystem has no Kubernetes equivalent",
            "nginx: stop.signal: Kubernetes stops with SIGTERM",
            "postgresql: stop.signal",
        ] {
            assert!(stderr.contains(needle), "{needle} not reported:\n{stderr}");
        }
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(files.len() >= 6, "{files:?}");
        let v = Command::new(VALIDATOR)
            .args(["--strict", "-k", "1.37.0"])
            .args(&files)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
        assert!(
            v.status.success(),
            "kubernetes-validate ({flavour}):\n{said}"
        );
        assert!(!said.contains("ERROR"), "{said}");
        let web = std::fs::read_to_string(dir.join("web.yaml")).unwrap();
        assert!(
            web.contains("livenessProbe:"),
            "the health check is kept:\n{web}"
        );
        assert!(web.contains("readinessProbe:"), "{web}");
        assert!(web.contains("seccompProfile:"), "{web}");
    }
    // A name is looked up in --manifests; an unknown one fails naming it.
    let out = Command::new(env!("CARGO_BIN_EXE_superctl"))
        .args(["export", "--kubernetes", "--manifests"])
        .arg(repo().join("manifests"))
        .arg("web")
        .output()
        .unwrap();
    assert!(out.status.success());
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(
        yaml.starts_with("---\napiVersion: \"v1\"\nkind: \"Pod\"\n"),
        "{yaml}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_superctl"))
        .args(["export", "--kubernetes", "--manifests"])
        .arg(repo().join("manifests"))
        .arg("nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}
