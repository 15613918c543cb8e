//! `superctl exec` against the real kernel: the command runs in the workload's namespaces,
//! cgroup and root filesystem, as its user, with its capabilities, no_new_privs and seccomp
//! filter; pipes or a pty made inside the container, never a host terminal; exit codes.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::io::Write;
use std::path::Path;
use superd::testing::privileged;

fn exec(socket: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(socket)
        .arg("exec")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_field(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

#[test]
fn exec_runs_as_the_workload_with_its_restrictions() {
    let Some(()) = privileged("exec_runs_as_the_workload_with_its_restrictions") else {
        return;
    };
    let mut sb = Sandbox::start("exec");
    sb.write_manifest(
        "nobody",
        "command = [\"/bin/sleep\", \"600\"]\nuser = \"65534:65534\"\n[network]\nmode = \"none\"\n",
    );
    sb.write_manifest(
        "root",
        "command = [\"/bin/sleep\", \"600\"]\n[network]\nmode = \"none\"\n",
    );
    let nobody = sb.wait_running("nobody").pid.unwrap();
    let root = sb.wait_running("root").pid.unwrap();
    let sock = sb.socket.clone();

    // Identity, exit codes, environment and working directory.
    let (code, out, err) = exec(&sock, &["nobody", "--", "id", "-u"], None);
    assert_eq!((code, out.trim()), (0, "65534"), "{err}");
    assert_eq!(
        exec(&sock, &["nobody", "--", "sh", "-c", "exit 7"], None).0,
        7
    );
    let (code, _, err) = exec(&sock, &["nobody", "--", "no-such-command"], None);
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("not found in PATH"), "{err}");
    let (code, out, err) = exec(
        &sock,
        &[
            "-u",
            "1000",
            "-w",
            "/tmp",
            "-e",
            "A=b",
            "root",
            "--",
            "sh",
            "-c",
            "id -u; pwd; echo $A",
        ],
        None,
    );
    assert_eq!((code, out.as_str()), (0, "1000\n/tmp\nb\n"), "{err}");

    // The same capabilities, no_new_privs and seccomp as the workload; root only where the
    // workload is root.
    for (name, pid) in [("nobody", nobody), ("root", root)] {
        let host = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let (code, inside, err) = exec(&sock, &[name, "--", "cat", "/proc/self/status"], None);
        assert_eq!(code, 0, "{err}");
        for field in ["CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"] {
            assert_eq!(
                status_field(&inside, field),
                status_field(&host, field),
                "{name} {field}"
            );
        }
        assert_eq!(status_field(&inside, "NoNewPrivs"), "1");
        assert_eq!(status_field(&inside, "Seccomp"), "2");
        // Its namespaces and cgroup.
        for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
            let want = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            let (_, got, _) = exec(
                &sock,
                &[name, "--", "readlink", &format!("/proc/self/ns/{ns}")],
                None,
            );
            assert_eq!(got.trim(), want.to_str().unwrap(), "{name} {ns}");
        }
        let want = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let (_, got, _) = exec(&sock, &[name, "--", "cat", "/proc/1/cgroup"], None);
        let (_, mine, _) = exec(&sock, &[name, "--", "cat", "/proc/self/cgroup"], None);
        assert_eq!(got, mine, "{name}: not in the workload's cgroup");
        assert!(!want.is_empty());
    }
    let (code, _, err) = exec(&sock, &["-u", "0", "nobody", "--", "id"], None);
    assert_eq!(code, 126);
    assert!(err.contains("more privileged than the workload"), "{err}");

    // stdin with -i; pipes, never a host terminal, without -t.
    let (code, out, _) = exec(&sock, &["-i", "nobody", "--", "cat"], Some("hello\n"));
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (_, out, _) = exec(
        &sock,
        &[
            "nobody",
            "--",
            "readlink",
            "/proc/self/fd/0",
            "/proc/self/fd/1",
        ],
        None,
    );
    assert!(out.lines().all(|l| l.starts_with("pipe:")), "{out}");

    // -t: a pty from the container's own devpts, its size set by superctl.
    let (code, out, err) = exec(
        &sock,
        &[
            "-t",
            "nobody",
            "--",
            "sh",
            "-c",
            "tty; stty size; ls -1 /dev/pts; test -t 0 && echo on-a-tty",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["/dev/pts/0", "24 80", "0", "ptmx", "on-a-tty"],
        "{out}"
    );
    let (code, _, _) = exec(&sock, &["-t", "nobody", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(code, 3);

    // A workload that is not running, or not there.
    let (code, _, err) = exec(&sock, &["ghost", "--", "true"], None);
    assert_eq!(code, 1, "{err}");
    sb.shutdown();
}
