//! The Debian package and the systemd unit: built from the repo by `packaging/deb/build.sh`
//! (with this build's binaries), unpacked into a temp root with `dpkg-deb -x`, and run from
//! there. Needs no root.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use superd::manifest::Stop;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds the package; returns its path (inside `out`).
fn build_deb(out: &Path) -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_superd"))
        .parent()
        .expect("binary directory");
    let (ok, stdout, stderr) = output(
        Command::new(repo().join("packaging/deb/build.sh"))
            .arg("--bin")
            .arg(bin)
            .arg(out),
    );
    assert!(ok, "deb/build.sh failed:\n{stdout}{stderr}");
    PathBuf::from(stdout.trim())
}

/// `Key=Value` of the unit's `[Service]` section.
fn service_key<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .skip_while(|l| l.trim() != "[Service]")
        .take_while(|l| !l.starts_with('[') || l.trim() == "[Service]")
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

#[test]
fn the_debian_package_installs_binaries_unit_manifest_dir_and_man_pages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(tmp.path());
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        deb.ends_with(format!(
            "superd_{version}_{}.deb",
            output(Command::new("dpkg").arg("--print-architecture"))
                .1
                .trim()
        )),
        "{}",
        deb.display()
    );
    let (ok, field, _) = output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"));
    assert!(ok);
    assert_eq!(field.trim(), version);

    let root = tmp.path().join("root");
    let (ok, _, err) = output(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    assert!(ok, "dpkg-deb -x: {err}");
    for (bin, want) in [
        ("superd", format!("superd {version}")),
        ("superctl", format!("superctl {version}")),
    ] {
        let (ok, out, err) = output(Command::new(root.join("usr/bin").join(bin)).arg("--version"));
        assert!(ok, "{bin} --version from the unpacked package: {err}");
        assert_eq!(out.trim(), want);
    }
    assert!(root.join("etc/workloads.d").is_dir());
    for page in ["superd.8.gz", "superctl.8.gz", "superctl-status.8.gz"] {
        let path = root.join("usr/share/man/man8").join(page);
        let (ok, text, err) = output(Command::new("zcat").arg(&path));
        assert!(ok, "{}: {err}", path.display());
        assert!(text.contains(".TH "), "{page} is not a man page");
    }
    let (_, superd8, _) =
        output(Command::new("zcat").arg(root.join("usr/share/man/man8/superd.8.gz")));
    assert!(superd8.contains("manifests"), "{superd8}");
    assert!(
        superd8.contains("SIGHUP"),
        "superd.8 lacks the signals: {superd8}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/doc/superd/README.md")).ok(),
        std::fs::read_to_string(repo().join("README.md")).ok()
    );
}

#[test]
fn the_systemd_unit_delegates_notifies_and_outlasts_every_stop_timeout() {
    let unit_path = repo().join("packaging/systemd/superd.service");
    let unit = std::fs::read_to_string(&unit_path).expect("reading the unit");
    assert_eq!(service_key(&unit, "Type"), Some("notify"));
    assert_eq!(service_key(&unit, "Delegate"), Some("yes"));
    // superd's own end (a crash, SIGKILL) must leave the workloads for its successor.
    assert_eq!(service_key(&unit, "KillMode"), Some("process"));
    assert_eq!(service_key(&unit, "ExecStart"), Some("/usr/bin/superd"));
    assert_eq!(service_key(&unit, "RuntimeDirectory"), Some("superd"));
    assert_eq!(service_key(&unit, "StateDirectory"), Some("superd"));
    assert_eq!(
        service_key(&unit, "ConfigurationDirectory"),
        Some("workloads.d")
    );
    let stop = service_key(&unit, "TimeoutStopSec").expect("TimeoutStopSec");
    let stop = humantime::parse_duration(stop).expect("TimeoutStopSec as a duration");
    assert!(
        stop >= Stop::MAX_TIMEOUT + Duration::from_secs(30),
        "TimeoutStopSec {stop:?} must exceed the longest stop.timeout {:?} with room to clean up",
        Stop::MAX_TIMEOUT
    );

    // systemd's own parser, against a root holding the unit, the binary and the targets it
    // names (systemd-analyze verify exits 0 on unknown keys, so its warnings count too).
    let Ok(sa) = which("systemd-analyze") else {
        superd::testing::report_skip(
            "the_systemd_unit_delegates_notifies_and_outlasts_every_stop_timeout",
            "systemd-analyze is missing (packaging/deps.sh installs systemd)",
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let units = root.join("lib/systemd/system");
    std::fs::create_dir_all(&units).expect("unit dir");
    std::fs::create_dir_all(root.join("usr/bin")).expect("bin dir");
    std::fs::create_dir_all(root.join("bin")).expect("bin dir");
    std::fs::copy(&unit_path, units.join("superd.service")).expect("copy unit");
    std::fs::copy(env!("CARGO_BIN_EXE_superd"), root.join("usr/bin/superd")).expect("copy superd");
    std::fs::copy("/bin/kill", root.join("bin/kill"))
        .or_else(|_| std::fs::copy("/usr/bin/kill", root.join("bin/kill")))
        .expect("copy kill");
    for target in [
        "sysinit.target",
        "basic.target",
        "network-online.target",
        "multi-user.target",
        "shutdown.target",
    ] {
        std::fs::write(units.join(target), "[Unit]\n").expect("target");
    }
    let (ok, out, err) = output(
        Command::new(sa)
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.display()))
            .arg("superd.service"),
    );
    assert!(
        ok && err.trim().is_empty(),
        "systemd-analyze verify:\n{out}{err}"
    );
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
