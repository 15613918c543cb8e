//! The appliance image booted for real: QEMU (TCG) with superd as /init on the kernel's cgroup
//! v2, checked from the serial console. `tests/appliance/manifests/check.toml` drives the
//! guest side and prints `CHECK …` lines; superd prints one `superd: <name> <state> …` line per
//! state change. A broken image (an /init that exits) and a hanging one must fail `boot.sh`.
//!
//! Needs the kernel and qemu that `packaging/appliance/deps.sh` installs (`tests/run.sh` runs
//! it). Boots run one at a time: two TCG guests on two cores would slow each other down.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use superd::testing::privileged;

/// One boot at a time (see the module docs).
static BOOTS: Mutex<()> = Mutex::new(());

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the superd and superctl this test build made.
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_superd"))
        .parent()
        .expect("binary directory")
        .to_path_buf()
}

/// Runs a packaging script; returns success and its stdout+stderr.
fn run(script: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(repo().join(script))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Builds an image into `out` with an empty /etc/workloads.d and the `extra` SRC:DEST pairs.
fn build(out: &Path, extra: &[String]) {
    build_with_images(out, extra, &[]);
}

/// [`build`], pre-seeding the image archives `images` (`build.sh --image`).
fn build_with_images(out: &Path, extra: &[String], images: &[PathBuf]) {
    let empty = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "--bin".to_string(),
        bin_dir().display().to_string(),
        "--manifests".to_string(),
        empty.path().display().to_string(),
    ];
    for e in extra {
        args.push("--extra".into());
        args.push(e.clone());
    }
    for i in images {
        args.push("--image".into());
        args.push(i.display().to_string());
    }
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, log) = run("packaging/appliance/build.sh", &args);
    assert!(ok, "build.sh failed:\n{log}");
}

/// Boots `out` with `append` on the kernel command line; returns boot.sh's verdict, its own
/// messages and the console (without CRs).
fn boot(out: &Path, timeout: u32, append: &str) -> (bool, String, String) {
    let _one = BOOTS.lock().unwrap_or_else(|p| p.into_inner());
    let t = timeout.to_string();
    let (ok, log) = run(
        "packaging/appliance/boot.sh",
        &[
            out.to_str().expect("utf-8 path"),
            "--timeout",
            &t,
            "--append",
            append,
        ],
    );
    let console = std::fs::read_to_string(out.join("console.log"))
        .unwrap_or_default()
        .replace('\r', "");
    (ok, log, console)
}

/// The multi-layer test image of `tests/images` (built offline with umoci) as a
/// docker-archive under `dir`.
fn test_image(dir: &Path) -> PathBuf {
    let out = Command::new(repo().join("tests/images/mkimage.sh"))
        .arg(dir)
        .output()
        .expect("running mkimage.sh");
    assert!(
        out.status.success(),
        "mkimage.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("docker.tar")
}

/// A minimal busybox tree under `dir` for a workload with a directory rootfs.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copying busybox");
    for applet in ["sh", "cat", "grep", "cut"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet");
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    root
}

/// The value after `CHECK key=` on the console.
fn check<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("CHECK {key}=");
    console
        .lines()
        .find_map(|l| l.split_once(&prefix).map(|(_, v)| v.trim()))
}

fn number(console: &str, key: &str) -> u64 {
    check(console, key)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number for CHECK {key}=\n{console}"))
}

#[test]
fn appliance_boots_runs_workloads_on_cgroup_v2_and_powers_off() {
    let Some(()) = privileged("appliance_boots_runs_workloads_on_cgroup_v2_and_powers_off") else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    // The manifests are not in /etc/workloads.d: superd finds them through the kernel
    // command line (superd.manifests=).
    let manifests = repo().join("tests/appliance/manifests");
    let rootfs = busybox_rootfs(out.path());
    let fixture = tempfile::tempdir().expect("tempdir");
    let image = test_image(fixture.path());
    let many = fixture.path().join("many.tar");
    let made = Command::new("python3")
        .arg(repo().join("tests/images/fixture.py"))
        .arg("many")
        .arg(&many)
        .arg("300")
        .status()
        .expect("running fixture.py");
    assert!(made.success());
    build_with_images(
        out.path(),
        &[
            format!("{}:/srv/workloads.d", manifests.display()),
            format!("{}:/srv/rootfs", rootfs.display()),
        ],
        &[image, many],
    );
    // `single` is not the kernel's: it reaches /init as an argument superd does not take,
    // which as PID 1 must be reported and ignored, never end the process.
    let (ok, log, console) = boot(out.path(), 150, "superd.manifests=/srv/workloads.d single");
    assert!(ok, "the VM did not power off cleanly: {log}\n{console}");
    let has = |needle: &str| console.lines().any(|l| l.contains(needle));

    // superd is PID 1, on cgroup v2 with the memory, cpu and pids controllers.
    let started = console
        .lines()
        .find(|l| l.contains(concat!("superd ", env!("CARGO_PKG_VERSION"), " started")))
        .unwrap_or_else(|| panic!("no start line\n{console}"));
    assert!(
        started.contains("pid=1")
            && started.contains("init=true")
            && started.contains("cgroup_v2=true"),
        "{started}"
    );
    let controllers: Vec<&str> = started
        .split("controllers=")
        .nth(1)
        .unwrap_or("")
        .split(|c: char| c == ',' || c.is_whitespace())
        .collect();
    for c in ["memory", "cpu", "pids"] {
        assert!(
            controllers.contains(&c),
            "controller {c} missing: {started}"
        );
    }
    assert!(
        has("superd: ignoring the command line [\"single\"] as PID 1"),
        "{console}"
    );
    // The kernel command line chose the manifests; /etc/hostname named the machine.
    assert!(started.contains("manifests=/srv/workloads.d"), "{started}");
    assert!(started.contains("hostname=superd-appliance"), "{started}");
    // After leaving the initramfs superd re-executed its copy in the tmpfs, so the deleted
    // initramfs binary is not held in memory any more.
    assert!(
        started.contains("exe=/bin/superd ") && !started.contains("(deleted)"),
        "{started}"
    );
    // The kernel modules were loaded (the bridge and NAT exist only through them).
    assert!(!has("early setup"), "early setup problems:\n{console}");

    // Every state change is one console line in the documented form.
    assert!(has("superd: web running"), "{console}");
    // The memory limit is enforced: the OOM killer ends hog, and superd says so.
    assert!(
        has("superd: hog exited signal=SIGKILL reason=oom-killed"),
        "{console}"
    );
    assert!(has("Memory cgroup out of memory"), "{console}");
    assert!(check(&console, "hog-survived").is_none(), "{console}");
    // pids.max = 8 holds (the shim and the shells included).
    let pids = number(&console, "pids-running");
    assert!((2..=8).contains(&pids), "pids limit not enforced: {pids}");
    // cpu.max 20000/100000: a busy loop gets at most about a fifth of a CPU, never all of
    // it. The quota is a ceiling: on the VM's one CPU, shared with every workload starting
    // at boot, the loop may get less (the lower bound only says that it ran).
    let share = number(&console, "cpu-share");
    assert!(
        (1..=30).contains(&share),
        "cpu limit not enforced (or the loop never ran): {share}%\n{console}"
    );
    // The limits as the kernel holds them, the cgroup namespace, and a live change.
    assert_eq!(check(&console, "cgroupns"), Some("0::/"), "{console}");
    assert_eq!(
        check(&console, "web-memory.max"),
        Some("33554432 web-cpu.max=50000/100000 web-pids.max=32"),
        "{console}"
    );
    assert!(number(&console, "web-memory.current") > 0, "{console}");
    let live = check(&console, "live-memory.max").unwrap_or("");
    let fields: Vec<&str> = live.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"50331648"), "{console}");
    let pid = |k: &str| fields.iter().find_map(|f| f.strip_prefix(k));
    assert!(
        pid("pid-before=").is_some_and(|p| !p.is_empty())
            && pid("pid-before=") == pid("pid-after="),
        "a live limit change restarted web: {live}"
    );
    assert!(has("superd: applied [resources]"), "{console}");
    // Orphans: none left a zombie, in the container or anywhere in the VM.
    assert_eq!(number(&console, "zombies"), 0, "{console}");
    assert_eq!(number(&console, "vm-zombies"), 0, "{console}");
    // A workload that ignores SIGTERM is killed with its whole cgroup after its stop timeout.
    assert!(
        has("superd: stubborn removed signal=SIGKILL reason=stop-timeout"),
        "{console}"
    );
    // A workload from the pre-seeded image, offline: every layer's work is visible and the
    // image's user applies.
    assert!(has("read-only image store"), "{console}");
    assert_eq!(
        check(&console, "seeded"),
        Some("key=1 data=c rpc-gone uid=65534"),
        "{console}"
    );
    // Past what mount(2) takes on 6.1, the error names the layer count and the kernel.
    assert!(
        has("the image has 300 layers: more than this kernel (6.1"),
        "{console}"
    );
    // The cgroups of workloads that ended are gone; those of running ones remain.
    let cgroups: Vec<&str> = check(&console, "cgroups")
        .unwrap_or("")
        .split_whitespace()
        .collect();
    for gone in ["hog", "cpu", "hostnet", "overlay", "devices", "seeded"] {
        assert!(
            !cgroups.contains(&gone),
            "cgroup of {gone} left: {cgroups:?}"
        );
    }
    for kept in ["web", "check", "stubborn", "late"] {
        assert!(cgroups.contains(&kept), "no cgroup for {kept}: {cgroups:?}");
    }
    // `superctl reexec` as PID 1: the same process runs a new image, which adopts every
    // running workload (this script included) and then powers the VM off.
    let reexec = check(&console, "reexec").unwrap_or("");
    assert!(
        reexec.contains("re-executed") && reexec.contains("(PID 1)"),
        "{console}"
    );
    let web_after: Vec<&str> = check(&console, "reexec-web")
        .unwrap_or("")
        .split('/')
        .collect();
    assert!(
        web_after.len() == 3 && web_after[0] == web_after[1] && web_after[2] == "running",
        "web after the re-exec: {web_after:?}\n{console}"
    );
    assert!(has("superd: web adopted pid="), "{console}");
    assert!(has("superd: check adopted pid="), "{console}");
    // Start order at boot: `late` waits until `web` is healthy, then starts.
    let line_of = |needle: &str| {
        console
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` on the console\n{console}"))
    };
    let (waiting, healthy, starting) = (
        line_of("superd: late waiting"),
        line_of("superd: web healthy"),
        line_of("superd: late starting"),
    );
    assert!(
        waiting < healthy && healthy < starting,
        "late waiting at line {waiting}, web healthy at {healthy}, late starting at {starting}"
    );
    // `superctl stats` on cgroup v2: CPU from two samples, memory against the limit set live,
    // tasks, and the three PSI averages.
    let stats: serde_json::Value = serde_json::from_str(check(&console, "stats").unwrap_or(""))
        .unwrap_or_else(|e| {
            panic!("CHECK stats= is not JSON ({e})\n{console}");
        });
    let web = &stats[0];
    assert_eq!(web["name"], "web", "{stats}");
    assert!(web["cpu_percent"].as_f64().is_some(), "{stats}");
    assert!(web["memory_bytes"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert_eq!(web["memory_limit"].as_u64(), Some(48 << 20), "{stats}");
    assert!(web["pids"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let pressure = web["pressure"].as_array().cloned().unwrap_or_default();
    assert!(
        pressure.len() == 3 && pressure.iter().all(|p| p.as_f64().is_some()),
        "no PSI for web: {stats}"
    );
    // A directory rootfs with a tmpfs overlay (the overlay module, pivot_root out of the
    // tmpfs root): the workload wrote into its own root.
    assert_eq!(
        check(&console, "overlay"),
        Some("written-in-overlay overlay"),
        "{console}"
    );
    // PID 1 brought lo up: a host-network workload reaches web's port on 127.0.0.1.
    assert_eq!(
        check(&console, "loopback"),
        Some("hello-from-web"),
        "{console}"
    );
    // A bridged workload is reached by name and through the published port.
    assert_eq!(
        check(&console, "by-name"),
        Some("hello-from-web"),
        "{console}"
    );
    assert_eq!(
        check(&console, "via-port"),
        Some("hello-from-web"),
        "{console}"
    );
    // cgroup v2 hardening: the BPF device program, the container's own cgroup at
    // /sys/fs/cgroup, an mqueue, and the seccomp filter.
    assert_eq!(
        check(&console, "devices"),
        Some("tty-read-open tty-write-denied"),
        "{console}"
    );
    assert_eq!(
        check(&console, "own-cgroup"),
        Some("25165824 2048"),
        "{console}"
    );
    assert_eq!(check(&console, "mqueue"), Some("1"), "{console}");
    assert_eq!(check(&console, "seccomp"), Some("Seccomp:2"), "{console}");
    // superctl poweroff stops everything, then the VM powers off without a panic.
    assert!(has("superd: poweroff requested"), "{console}");
    assert!(has("superd: web removed"), "{console}");
    assert!(has("superd: all workloads stopped"), "{console}");
    assert!(has("reboot: Power down"), "{console}");
    assert!(!has("Kernel panic"), "{console}");
}

#[test]
fn a_broken_or_hanging_image_is_a_failed_boot() {
    let Some(()) = privileged("a_broken_or_hanging_image_is_a_failed_boot") else {
        return;
    };
    // An /init that exits: the kernel panics, QEMU (-no-reboot, panic=-1) exits 0, and
    // boot.sh must still report a failure from the console.
    let broken = tempfile::tempdir().expect("tempdir");
    let init = repo().join("tests/appliance/broken-init");
    build(broken.path(), &[format!("{}:/init", init.display())]);
    let (ok, log, console) = boot(broken.path(), 60, "");
    assert!(!ok, "a panicking guest passed: {log}\n{console}");
    assert!(console.contains("broken-init: exiting"), "{console}");
    assert!(console.contains("Kernel panic"), "{console}");
    assert!(log.contains("panicked"), "{log}");

    // An /init that never powers off: the timeout kills the VM and boot.sh fails.
    let hanging = tempfile::tempdir().expect("tempdir");
    let init = repo().join("tests/appliance/hanging-init");
    build(hanging.path(), &[format!("{}:/init", init.display())]);
    let (ok, log, console) = boot(hanging.path(), 20, "");
    assert!(!ok, "a hanging guest passed: {log}\n{console}");
    assert!(log.contains("no power-off within 20s"), "{log}\n{console}");
}
