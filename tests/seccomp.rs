//! The seccomp filter against the real kernel: what the default profile refuses (and an
//! unconfined workload can do), and an OCI profile from a file.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::collections::BTreeMap;
use superd::testing::privileged;

/// Calls each syscall (x86-64 numbers) and prints `name=ok` or `name=ERRNO`, then the
/// Seccomp line of /proc/self/status.
const PROBE: &str = r#"
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def sc(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    e = ctypes.get_errno() if r < 0 else 0
    print(f"{name}={errno.errorcode.get(e, e) if e else 'ok'}", flush=True)
sc("unshare_user", 272, 0x10000000)
sc("keyctl", 250, 0, -3, 1)
sc("add_key", 248, 0, 0, 0, 0, -3)
sc("request_key", 249, 0, 0, 0, 0)
sc("io_uring_setup", 425, 1, 0)
sc("userfaultfd", 323, 0)
sc("perf_event_open", 298, 0, 0, -1, -1, 0)
sc("bpf", 321, 0, 0, 0)
sc("socket_vsock", 41, 40, 1, 0)
sc("socket_inet", 41, 2, 1, 0)
sc("clone3", 435, 0, 0)
sc("mount", 165, 0, 0, 0, 0, 0)
sc("getcwd", 79, 0, 0)
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("fork=ok", flush=True)
for line in open("/proc/self/status"):
    if line.startswith("Seccomp:"):
        print("seccomp=" + line.split()[1], flush=True)
print("END", flush=True)
"#;

fn results(log: &str) -> BTreeMap<String, String> {
    log.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn probe_manifest(script: &std::path::Path, security: &str) -> String {
    format!(
        "command = [\"/usr/bin/python3\", \"/run/probe.py\"]\n\
         [network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n{security}\n\
         [[mounts]]\nsource = \"{}\"\ntarget = \"/run/probe.py\"\nreadonly = true\n",
        script.display()
    )
}

#[test]
fn the_default_filter_refuses_what_workloads_must_not_do() {
    let Some(()) = privileged("the_default_filter_refuses_what_workloads_must_not_do") else {
        return;
    };
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "the probe uses x86-64 syscall numbers"
    );
    let sb = Sandbox::start("seccomp");
    let script = sb.dir.path().join("probe.py");
    std::fs::write(&script, PROBE).unwrap();
    let profile = sb.dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    )
    .unwrap();
    sb.write_manifest("dflt", &probe_manifest(&script, ""));
    sb.write_manifest(
        "open",
        &probe_manifest(&script, "[security]\nseccomp = \"unconfined\"\n"),
    );
    sb.write_manifest(
        "custom",
        &probe_manifest(
            &script,
            &format!("[security]\nseccomp = \"{}\"\n", profile.display()),
        ),
    );
    let dflt = results(&sb.wait_log("dflt", "END"));
    let open = results(&sb.wait_log("open", "END"));
    let custom = results(&sb.wait_log("custom", "END"));
    for call in [
        "unshare_user",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "userfaultfd",
        "perf_event_open",
        "bpf",
        "socket_vsock",
        "mount",
    ] {
        assert_eq!(dflt[call], "EPERM", "{call}: {dflt:?}");
    }
    assert_eq!(dflt["clone3"], "ENOSYS", "{dflt:?}");
    assert_eq!(
        (
            dflt["socket_inet"].as_str(),
            dflt["getcwd"].as_str(),
            dflt["fork"].as_str()
        ),
        ("ok", "ERANGE", "ok"),
        "{dflt:?}"
    );
    assert_eq!(dflt["seccomp"], "2");
    // Without the filter the same calls reach the kernel (which allows or rejects them on
    // their merits): the refusals above are the filter's.
    assert_eq!(open["seccomp"], "0", "{open:?}");
    assert_eq!(open["unshare_user"], "ok", "{open:?}");
    assert_eq!(open["keyctl"], "ok", "{open:?}");
    assert_eq!(open["io_uring_setup"], "EFAULT", "{open:?}");
    assert_eq!(open["clone3"], "EINVAL", "{open:?}");
    // The profile from the file: everything allowed but getcwd, which fails with EACCES.
    assert_eq!(custom["seccomp"], "2", "{custom:?}");
    assert_eq!(custom["getcwd"], "EACCES", "{custom:?}");
    assert_eq!(custom["unshare_user"], "ok", "{custom:?}");
    sb.shutdown();
}
