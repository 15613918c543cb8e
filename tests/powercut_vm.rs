//! Power-loss safety, in the VM: superd as PID 1 keeps its state (and the manifests) on a
//! virtio disk with ext4 (`/etc/fstab`), while a workload changes manifests (each renamed into
//! place), adds and removes one, imports images, a change goes through its rollout trial and
//! another workload's log rotates all the time. The power is cut (QEMU killed) at a random
//! moment; then the VM boots again and must find every state file readable (superd warns of
//! any it cannot read), the image store open, the manifests valid, each workload running
//! exactly once, and the filesystem clean after its orderly poweroff (e2fsck). N cuts:
//! `SUPERD_POWERCUTS` (2 by default; `benches/powercut.sh` runs more).

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::run_script;
use std::path::Path;
use std::process::Command;
use superd::testing::privileged;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A pseudo-random number in `lo..hi` (the cut moments differ from run to run; each is
/// printed, to replay one).
fn random_in(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64 ^ d.as_secs())
        .unwrap_or(7);
    lo + (nanos.wrapping_mul(6364136223846793005) >> 33) % (hi - lo)
}

/// Warnings superd gives about state it cannot read.
const CORRUPTION: &[&str] = &[
    "unreadable",
    "corrupt",
    "ignoring the lease file",
    "cannot read the lease file",
    "opening the image store",
    "not valid",
    "Kernel panic",
    "EXT4-fs error",
];

#[test]
fn a_power_cut_at_any_moment_leaves_state_that_boots() {
    let Some(()) = privileged("a_power_cut_at_any_moment_leaves_state_that_boots") else {
        return;
    };
    let cuts: u32 = std::env::var("SUPERD_POWERCUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let out = tempfile::tempdir().unwrap();
    let fixture = tempfile::tempdir().unwrap();
    // The image the workload imports again and again.
    let made = Command::new(repo().join("tests/images/mkimage.sh"))
        .arg(fixture.path())
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let img = fixture.path().join("docker.tar");
    let srv = fixture.path().join("srv");
    std::fs::create_dir(&srv).unwrap();
    std::fs::copy(&img, srv.join("img.tar")).unwrap();
    std::fs::create_dir(srv.join("m")).unwrap();
    let empty = fixture.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_superd")).parent().unwrap();
    let here = repo().join("tests/appliance/powercut");
    let (code, log) = run_script(
        "packaging/appliance/build.sh",
        &[
            "--bin",
            bin.to_str().unwrap(),
            "--manifests",
            empty.to_str().unwrap(),
            "--module",
            "virtio_pci",
            "--module",
            "virtio_blk",
            "--extra",
            &format!("{}:/etc/fstab", here.join("fstab").display()),
            "--extra",
            &format!("{}:/srv", srv.display()),
            out.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "build.sh:\n{log}");

    // The disk: ext4 holding the manifests superd reads (and, once it runs, its state).
    let seed = fixture.path().join("seed");
    std::fs::create_dir_all(seed.join("workloads.d")).unwrap();
    for m in ["churn.toml", "chatty.toml", "svc.toml"] {
        std::fs::copy(here.join(m), seed.join("workloads.d").join(m)).unwrap();
    }
    let disk = out.path().join("state.img");
    let f = std::fs::File::create(&disk).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let mk = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&seed)
        .arg(&disk)
        .output()
        .unwrap();
    assert!(mk.status.success(), "{mk:?}");

    let append = "superd.manifests=/var/lib/superd/workloads.d";
    let boot = |mode: &str, cut: Option<u64>| {
        let cmdline = format!("{append} pc.mode={mode}");
        let cut_s = cut.map(|c| c.to_string());
        let mut args = vec![
            out.path().to_str().unwrap(),
            "--disk",
            disk.to_str().unwrap(),
            "--timeout",
            "150",
            "--append",
            &cmdline,
        ];
        if let Some(c) = &cut_s {
            args.extend(["--cut", c.as_str()]);
        }
        let (code, log) = run_script("packaging/appliance/boot.sh", &args);
        let console = std::fs::read_to_string(out.path().join("console.log"))
            .unwrap_or_default()
            .replace('\r', "");
        (code, log, console)
    };
    for n in 1..=cuts {
        // TCG boots to superd in about 5 s: cut somewhere in the churn after it.
        let at = random_in(9, 20);
        eprintln!("power cut {n} of {cuts} after {at} s");
        let (code, log, console) = boot("churn", Some(at));
        assert_eq!(code, Some(4), "cut {n} at {at}s:\n{log}\n{console}");
        assert!(
            console.contains("CHECK churning"),
            "cut {n} at {at}s: the churn never ran\n{console}"
        );

        let (code, log, console) = boot("check", None);
        assert_eq!(code, Some(0), "after cut {n} at {at}s:\n{log}\n{console}");
        for bad in CORRUPTION {
            let hits: Vec<&str> = console.lines().filter(|l| l.contains(bad)).collect();
            assert!(
                hits.is_empty(),
                "after cut {n} at {at}s: {bad}: {hits:?}\n{console}"
            );
        }
        for want in [
            "CHECK svc=running",
            "CHECK chatty=running",
            "CHECK svc-processes=1 chatty-processes=1",
            "CHECK store=ok",
            "CHECK manifests=ok",
        ] {
            assert!(
                console.contains(want),
                "after cut {n} at {at}s: no {want}\n{console}"
            );
        }
        let fsck = Command::new("e2fsck")
            .args(["-f", "-n"])
            .arg(&disk)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "after cut {n} at {at}s, e2fsck: {}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
    }
}
