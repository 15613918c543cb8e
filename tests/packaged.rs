//! The manifests in `examples/` run Debian's nginx, redis, postgresql and mosquitto under a
//! real superd with their packaged binaries and configs on the host root, and each is driven
//! by its own real client (ab and curl, redis-benchmark, pgbench, mosquitto_pub/sub) through
//! its published port, with a restart in the middle that must be graceful and keep the data.
//!
//! The examples are used as shipped. superd runs in a private mount namespace in which scratch
//! directories stand over the paths the daemons write (`/var/lib/redis`, `/run/postgresql`, …)
//! and over the few configuration files an operator adds (the mosquitto listener, a pg_hba line,
//! an `/etc/hosts` name), so the host's own data and configuration are never touched.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use superd::testing::{privileged, report_skip};

/// A host path that a scratch directory (or file) stands over while superd runs.
struct Over {
    target: &'static str,
    /// `user:group` owning the scratch directory (root when `None`).
    owner: Option<&'static str>,
    /// A file with this content instead of a directory.
    file: Option<String>,
}

fn dir(target: &'static str, owner: Option<&'static str>) -> Over {
    Over {
        target,
        owner,
        file: None,
    }
}

/// `None` (after reporting a skip) unless privileged and every program in `needs` exists.
fn gate(test: &str, needs: &[&str]) -> Option<()> {
    privileged(test)?;
    for program in needs {
        if !Path::new(program).exists() {
            report_skip(
                test,
                &format!("{program} is missing (packaging/deps.sh installs it)"),
            );
            return None;
        }
    }
    Some(())
}

/// Starts superd in a private mount namespace with `overs` mounted over their targets, after
/// running `setup` (shell) there, and applies `examples/<example>.toml` as shipped.
fn start(example: &str, overs: Vec<Over>, setup: &str) -> Sandbox {
    // The sandbox is named after the example: a socket path must fit in sun_path.
    let sb = Sandbox::start_wrapped(example, &std::env::temp_dir(), &[], |sb| {
        let scratch = sb.dir.path().join("host");
        std::fs::create_dir(&scratch).unwrap();
        let mut script = String::from("set -e\n");
        for (i, over) in overs.iter().enumerate() {
            let source = scratch.join(format!("{i}"));
            match &over.file {
                Some(text) => std::fs::write(&source, text).unwrap(),
                None => {
                    std::fs::create_dir(&source).unwrap();
                    common::set_mode(&source, 0o755);
                }
            }
            if let Some(owner) = over.owner {
                script.push_str(&format!("chown {owner} {}\n", source.display()));
            }
            script.push_str(&format!(
                "mount --bind {} {}\n",
                source.display(),
                over.target
            ));
        }
        script.push_str(setup);
        script.push_str("\nexec \"$0\" \"$@\"\n");
        Some(script)
    });
    let text = std::fs::read_to_string(example_path(example)).unwrap();
    sb.write_manifest(example, &text);
    sb
}

fn example_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("examples/{name}.toml"))
}

fn superctl(sb: &Sandbox, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_superctl"))
        .arg("--socket")
        .arg(&sb.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn superctl_ok(sb: &Sandbox, args: &[&str]) -> String {
    let (ok, text) = superctl(sb, args);
    assert!(ok, "superctl {args:?} failed: {text}");
    text
}

/// Runs a client in the sandbox's network namespace; panics unless it succeeds.
fn client(sb: &Sandbox, argv: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]).envs(env.iter().copied());
    sb.in_net(&mut cmd);
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{argv:?} failed: {text}");
    text
}

fn wait_healthy(sb: &mut Sandbox, name: &str) -> u32 {
    let w = sb.wait_for(name, "healthy", Duration::from_secs(60), |w| {
        w.health.as_ref().is_some_and(|h| h.status == "healthy")
    });
    w.restarts
}

/// Restarts `name` with `superctl restart` and waits until it is healthy again, with one
/// restart more than before.
fn restart(sb: &mut Sandbox, name: &str) {
    let before = sb.workload(name).unwrap().restarts;
    superctl_ok(sb, &["restart", name]);
    sb.wait_for(
        name,
        "healthy after the restart",
        Duration::from_secs(90),
        |w| w.restarts > before && w.health.as_ref().is_some_and(|h| h.status == "healthy"),
    );
}

#[test]
fn nginx_serves_ab_and_curl_and_finishes_a_download_across_a_graceful_restart() {
    let test = "nginx_serves_ab_and_curl_and_finishes_a_download_across_a_graceful_restart";
    let Some(()) = gate(test, &["/usr/sbin/nginx", "/usr/bin/ab", "/usr/bin/curl"]) else {
        return;
    };
    let hosts = format!(
        "{}\n192.0.2.10\tnas.example nas\n",
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    );
    let mut sb = start(
        "nginx",
        vec![
            dir("/var/log/nginx", None),
            dir("/var/lib/nginx", None),
            dir("/var/www/html", None),
            Over {
                target: "/etc/hosts",
                owner: None,
                file: Some(hosts),
            },
        ],
        // The default site's root: a page and 32 MiB to download slowly.
        "echo 'hello from nginx' > /var/www/html/index.html\n\
         head -c 33554432 /dev/zero > /var/www/html/big.bin",
    );
    wait_healthy(&mut sb, "nginx");

    let page = client(&sb, &["curl", "-sS", "http://127.0.0.1:8080/"], &[]);
    assert_eq!(page, "hello from nginx\n");
    let ab = client(
        &sb,
        &[
            "ab",
            "-q",
            "-n",
            "2000",
            "-c",
            "8",
            "http://127.0.0.1:8080/",
        ],
        &[],
    );
    assert!(ab.contains("Complete requests:      2000"), "{ab}");
    assert!(ab.contains("Failed requests:        0"), "{ab}");

    // A download at 4 MiB/s takes 8 s; the restart 1 s into it stops nginx with SIGQUIT
    // (the example's stop signal), which lets the worker finish writing it (SIGTERM would
    // cut it), and superd keeps the veth until the kernel has delivered what nginx wrote.
    let mut download = Command::new("curl");
    download
        .args(["-sS", "-o", "/dev/null", "-w", "%{size_download}"])
        .args(["--limit-rate", "4M", "http://127.0.0.1:8080/big.bin"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sb.in_net(&mut download);
    let download = download.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    restart(&mut sb, "nginx");
    let out = download.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the download was cut by the restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "33554432");
    let ab = client(
        &sb,
        &["ab", "-q", "-n", "500", "-c", "4", "http://127.0.0.1:8080/"],
        &[],
    );
    assert!(ab.contains("Failed requests:        0"), "{ab}");

    // Requests arrive from the gateway; names in the host's /etc/hosts resolve inside.
    let access = std::fs::read_to_string(sb.dir.path().join("host/0/access.log")).unwrap();
    // (superd's own probe runs inside the namespace: it comes from 127.0.0.1.)
    let clients: Vec<&str> = access
        .lines()
        .filter(|l| !l.starts_with("127.0.0.1 "))
        .collect();
    let odd: Vec<&&str> = clients
        .iter()
        .filter(|l| !l.starts_with("10.77.0.1 "))
        .collect();
    assert!(clients.len() >= 2500 && odd.is_empty(), "{odd:?}");
    let names = superctl_ok(
        &sb,
        &[
            "exec",
            "nginx",
            "--",
            "getent",
            "hosts",
            "nas.example",
            "host.superd.internal",
        ],
    );
    assert!(
        names.contains("192.0.2.10") && names.contains("10.77.0.1"),
        "{names}"
    );
    sb.shutdown();
}

#[test]
fn redis_serves_redis_benchmark_and_keeps_its_dataset_across_a_restart() {
    let test = "redis_serves_redis_benchmark_and_keeps_its_dataset_across_a_restart";
    let Some(()) = gate(
        test,
        &[
            "/usr/bin/redis-server",
            "/usr/bin/redis-cli",
            "/usr/bin/redis-benchmark",
        ],
    ) else {
        return;
    };
    let mut sb = start(
        "redis",
        vec![dir("/var/lib/redis", Some("redis:redis"))],
        "",
    );
    wait_healthy(&mut sb, "redis");
    let cli = |sb: &Sandbox, args: &[&str]| {
        let mut argv = vec!["redis-cli", "-h", "127.0.0.1"];
        argv.extend_from_slice(args);
        client(sb, &argv, &[]).trim().to_string()
    };
    let bench = client(
        &sb,
        &[
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-q",
            "-n",
            "20000",
            "-c",
            "8",
            "-t",
            "set,get",
        ],
        &[],
    );
    assert!(bench.contains("SET:") && bench.contains("GET:"), "{bench}");
    // The limit the example sets is what redis needed: maxclients is not lowered.
    assert_eq!(
        cli(&sb, &["config", "get", "maxclients"]),
        "maxclients\n10000"
    );
    assert!(cli(&sb, &["client", "list"]).contains("addr=10.77.0.1:"));

    assert_eq!(cli(&sb, &["set", "kept", "across-restarts"]), "OK");
    restart(&mut sb, "redis");
    assert_eq!(cli(&sb, &["get", "kept"]), "across-restarts");
    let log = sb.workload_log("redis");
    assert!(log.contains("DB saved on disk"), "{log}");
    client(
        &sb,
        &[
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-q",
            "-n",
            "5000",
            "-t",
            "get",
        ],
        &[],
    );
    sb.shutdown();
}

#[test]
fn postgresql_serves_pgbench_and_shuts_down_fast_with_a_client_connected() {
    let test = "postgresql_serves_pgbench_and_shuts_down_fast_with_a_client_connected";
    let Some(()) = gate(
        test,
        &[
            "/usr/lib/postgresql/15/bin/postgres",
            "/usr/bin/pg_createcluster",
            "/usr/bin/pgbench",
        ],
    ) else {
        return;
    };
    let mut sb = start(
        "postgresql",
        vec![
            dir("/etc/postgresql", None),
            dir("/var/lib/postgresql", Some("postgres:postgres")),
            dir("/var/log/postgresql", Some("postgres:postgres")),
            dir("/run/postgresql", Some("postgres:postgres")),
        ],
        // The cluster the package would have made, and the line the example asks for.
        // pg_createcluster asks systemd to reload when it runs: it must not see it.
        "chmod 2775 /run/postgresql\n\
         if [ -d /run/systemd/system ]; then mount -t tmpfs none /run/systemd; fi\n\
         pg_createcluster 15 main >/dev/null\n\
         echo 'host all all 10.77.0.0/16 scram-sha-256' >> /etc/postgresql/15/main/pg_hba.conf",
    );
    wait_healthy(&mut sb, "postgresql");
    // A password through the socket (peer authentication), for the clients over TCP.
    superctl_ok(
        &sb,
        &[
            "exec",
            "postgresql",
            "--",
            "psql",
            "-qc",
            "ALTER USER postgres PASSWORD 'bench'",
        ],
    );
    let pg = |args: &[&str]| {
        let mut argv = vec!["pgbench", "-h", "127.0.0.1", "-U", "postgres"];
        argv.extend_from_slice(args);
        argv.push("postgres");
        argv.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let env = [("PGPASSWORD", "bench")];
    let run = |sb: &Sandbox, argv: Vec<String>| {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        client(sb, &argv, &env)
    };
    run(&sb, pg(&["-i", "-q", "-s", "1"]));
    let out = run(&sb, pg(&["-c", "4", "-T", "3"]));
    assert!(out.contains("number of failed transactions: 0"), "{out}");

    // An idle client keeps its connection open through the restart: SIGINT (fast
    // shutdown) ends it at once, where SIGTERM (smart) would wait for it until the stop
    // timeout and then SIGKILL.
    let mut idle = Command::new("psql");
    idle.args(["-h", "127.0.0.1", "-U", "postgres", "-q", "postgres"])
        .env("PGPASSWORD", "bench")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    sb.in_net(&mut idle);
    let mut idle = idle.spawn().unwrap();
    sb.wait_until(
        "the idle client is connected",
        Duration::from_secs(20),
        |sb| {
            let out = superctl(
                sb,
                &[
                    "exec",
                    "postgresql",
                    "--",
                    "psql",
                    "-Atc",
                    "select count(*) from pg_stat_activity where client_addr = '10.77.0.1'",
                ],
            );
            out.0 && out.1.trim() == "1"
        },
    );
    restart(&mut sb, "postgresql");
    let _ = idle.kill();
    let _ = idle.wait();
    let log = sb.workload_log("postgresql");
    assert!(log.contains("received fast shutdown request"), "{log}");
    assert!(!log.contains("not properly shut down"), "{log}");
    let w = sb.workload("postgresql").unwrap();
    assert!(
        w.last_exit.as_ref().is_some_and(|e| e.code == Some(0)),
        "{w:#?}"
    );

    // The tables pgbench made are still there, and /dev/shm has the example's size.
    let out = run(&sb, pg(&["-c", "2", "-T", "2"]));
    assert!(out.contains("number of failed transactions: 0"), "{out}");
    let shm = superctl_ok(&sb, &["exec", "postgresql", "--", "df", "-k", "/dev/shm"]);
    assert!(shm.contains(" 262144 "), "{shm}");
    sb.shutdown();
}

#[test]
fn mosquitto_relays_messages_and_keeps_retained_ones_across_a_restart() {
    let test = "mosquitto_relays_messages_and_keeps_retained_ones_across_a_restart";
    let Some(()) = gate(
        test,
        &[
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto_pub",
            "/usr/bin/mosquitto_sub",
        ],
    ) else {
        return;
    };
    let mut sb = start(
        "mosquitto",
        vec![
            dir("/var/lib/mosquitto", Some("mosquitto")),
            dir("/var/log/mosquitto", Some("mosquitto")),
            Over {
                target: "/etc/mosquitto/conf.d",
                owner: None,
                file: None,
            },
        ],
        // The listener the example's comment asks for.
        "printf 'listener 1883\\nallow_anonymous true\\n' > /etc/mosquitto/conf.d/superd.conf",
    );
    wait_healthy(&mut sb, "mosquitto");

    // 500 messages from one publisher reach a subscriber.
    let mut sub = Command::new("mosquitto_sub");
    sub.args(["-h", "127.0.0.1", "-t", "load", "-C", "500", "-W", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sb.in_net(&mut sub);
    let sub = sub.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let mut publisher = Command::new("mosquitto_pub");
    publisher
        .args(["-h", "127.0.0.1", "-t", "load", "-q", "1", "-l"])
        .stdin(Stdio::piped());
    sb.in_net(&mut publisher);
    let mut publisher = publisher.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = publisher.stdin.take().unwrap();
        for i in 0..500 {
            writeln!(stdin, "message {i}").unwrap();
        }
    }
    assert!(publisher.wait().unwrap().success());
    let out = sub.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 500);

    client(
        &sb,
        &[
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-t",
            "state",
            "-r",
            "-m",
            "kept",
            "-q",
            "1",
        ],
        &[],
    );
    restart(&mut sb, "mosquitto");
    let retained = client(
        &sb,
        &[
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-t",
            "state",
            "-C",
            "1",
            "-W",
            "10",
        ],
        &[],
    );
    assert_eq!(retained.trim(), "kept");
    let log = std::fs::read_to_string(sb.dir.path().join("host/1/mosquitto.log")).unwrap();
    assert!(log.contains("Saving in-memory database"), "{log}");
    assert!(
        log.contains("New client connected from 10.77.0.1:"),
        "{log}"
    );
    sb.shutdown();
}
