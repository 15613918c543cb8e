//! One test per manifest field: its default, every accepted form and every rejected form.

use super::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;
#[test]
fn name() {
    assert_eq!(ok_with("name = \"web\"").name, web());
    error_with(
        "name = \"db\"",
        "name",
        "remove `name` or set it to \"web\"",
    );
    error_with("name = 1", "name", "expected a string, found an integer");
    let spec = parse(Path::new("relative/dir/api-2"), CMD).unwrap();
    assert_eq!(spec.name.as_str(), "api-2");
    for bad in ["Web.toml", "a_b.toml", "-a.toml", "web.toml.bak", ".toml"] {
        let err = parse(Path::new(bad), CMD).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        let e = &err.errors[0];
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (0, 0, "name"),
            "{bad}"
        );
        assert!(e.message.contains("rename the file"), "{}", e.message);
    }
}

#[test]
fn command() {
    let spec = ok("command = [\"/bin/sh\", \"-c\", \"exec sleep 1\"]");
    assert_eq!(spec.command, ["/bin/sh", "-c", "exec sleep 1"]);
    let missing = parse_web("init = true").unwrap_err();
    let e = &missing.errors[0];
    assert_eq!(
        (e.line, e.column, e.field.as_str(), &e.snippet),
        (1, 1, "command", &None)
    );
    assert_eq!(
        errors("command = []")[0].1,
        "must not be empty: give the program and its arguments"
    );
    assert!(errors("command = \"/bin/true\"")[0]
        .1
        .contains("expected an array of strings"));
    assert_eq!(
        errors("command = [\"a\", 1, true]"),
        [
            (
                "command[1]".into(),
                "expected a string, found an integer".into()
            ),
            (
                "command[2]".into(),
                "expected a string, found a boolean".into()
            ),
        ]
    );
    assert_eq!(
        errors("command = [\"a\\u0000b\"]")[0].1,
        "must not contain a NUL byte"
    );
    assert!(errors("command = [\"\"]")[0].1.contains("empty string"));
    assert!(errors("command = [[\"a\"]]")[0]
        .1
        .contains("found an array"));
}

#[test]
fn env() {
    let spec = ok_with("env = { TZ = \"UTC\", \"A.B\" = \"\", LANG = \"C.UTF-8\" }");
    let expected: BTreeMap<String, String> = [("TZ", "UTC"), ("A.B", ""), ("LANG", "C.UTF-8")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    assert_eq!(spec.env, expected);
    assert_eq!(ok_with("[env]\nX = \"1\"").env["X"], "1");
    let e = error_with("env = { \"A=B\" = \"x\" }", "env.\"A=B\"", "no '=' or NUL");
    assert_eq!(e.column, 9, "points at the key");
    error_with("env = { \"\" = \"x\" }", "env.\"\"", "non-empty");
    error_with("env = { \"A\\u0000\" = \"x\" }", "env.\"A\\0\"", "NUL");
    error_with(
        "env = { PORT = 8080 }",
        "env.PORT",
        "expected a string, found an integer",
    );
    error_with("env = { X = \"a\\u0000\" }", "env.X", "NUL byte");
    error_with("env = [\"A=B\"]", "env", "expected a table");
}

#[test]
fn workdir() {
    assert_eq!(ok(CMD).workdir, None, "the image's, else /");
    assert_eq!(
        ok_with("workdir = \"/srv/app\"").workdir.unwrap().as_str(),
        "/srv/app"
    );
    error_with(
        "workdir = \"srv\"",
        "workdir",
        "`srv` is not an absolute path",
    );
    for bad in ["/srv/", "/a//b", "/a/./b", "/a/../b"] {
        error_with(
            &format!("workdir = \"{bad}\""),
            "workdir",
            "is not normalised",
        );
    }
    error_with("workdir = 1", "workdir", "expected an absolute path string");
}

#[test]
fn user() {
    assert_eq!(ok(CMD).user, None, "the image's, else root");
    let u = ok_with("user = \"1000:100\"").user.unwrap();
    assert_eq!(
        (u.user, u.group),
        (IdOrName::Id(1000), Some(IdOrName::Id(100)))
    );
    let u = ok_with("user = \"1000\"").user.unwrap();
    assert_eq!((u.user, u.group), (IdOrName::Id(1000), None));
    let u = ok_with("user = \"nobody:nogroup\"").user.unwrap();
    assert_eq!(u.user, IdOrName::Name("nobody".into()));
    assert_eq!(u.group, Some(IdOrName::Name("nogroup".into())));
    error_with(
        "user = \"4294967296\"",
        "user",
        "out of range (0 to 4294967295)",
    );
    error_with(
        "user = \"0:4294967296\"",
        "user",
        "group id 4294967296 is out of range",
    );
    error_with(
        "user = \"a b\"",
        "user",
        "neither a numeric id nor a user name",
    );
    error_with("user = \":0\"", "user", "the user is empty");
    error_with(
        "user = 1000",
        "user",
        "expected a string such as \"1000:1000\", found an integer",
    );
}

#[test]
fn hostname() {
    assert_eq!(ok(CMD).hostname, "web");
    assert_eq!(
        ok_with("hostname = \"Web-1.Example.com\"").hostname,
        "Web-1.Example.com"
    );
    error_with(
        "hostname = \"web_1\"",
        "hostname",
        "invalid hostname `web_1`",
    );
    error_with(
        &format!("hostname = \"{}\"", "a".repeat(64)),
        "hostname",
        "1-63",
    );
    error_with("hostname = \"\"", "hostname", "invalid hostname");
    error_with("hostname = true", "hostname", "found a boolean");
}

#[test]
fn init() {
    assert!(ok(CMD).init);
    assert!(!ok_with("init = false").init);
    error_with(
        "init = \"false\"",
        "init",
        "expected `true` or `false`, found a string",
    );
}

#[test]
fn rootfs() {
    let host = Rootfs::Host {
        writable: Writable::None,
    };
    assert_eq!(ok_with("[rootfs]\npath = \"/\"").rootfs, host);
    assert_eq!(
        ok_with("[rootfs]\npath = \"/\"\nwritable = \"none\"").rootfs,
        host
    );
    assert_eq!(ok_with("[rootfs]\nwritable = \"none\"").rootfs, host);
    let dir = |w| Rootfs::Dir {
        path: AbsPath::new("/srv/root").unwrap(),
        writable: w,
    };
    assert_eq!(
        ok_with("[rootfs]\npath = \"/srv/root\"").rootfs,
        dir(Writable::Tmpfs)
    );
    let none = "rootfs = { path = \"/srv/root\", writable = \"none\" }";
    assert_eq!(ok_with(none).rootfs, dir(Writable::None));
    let tmpfs = "[rootfs]\npath = \"/srv/root\"\nwritable = \"tmpfs\"";
    assert_eq!(ok_with(tmpfs).rootfs, dir(Writable::Tmpfs));
    let host_tmpfs = Rootfs::Host {
        writable: Writable::Tmpfs,
    };
    assert_eq!(
        ok_with("[rootfs]\npath = \"/\"\nwritable = \"tmpfs\"").rootfs,
        host_tmpfs
    );
    assert_eq!(ok_with("[rootfs]\nwritable = \"tmpfs\"").rootfs, host_tmpfs);
    // A read-only host root serialises (and so hashes) as before writable existed for it.
    assert_eq!(serde_json::to_string(&host).unwrap(), r#"{"kind":"host"}"#);
    error_with(
        "[rootfs]\nwritable = \"rw\"",
        "rootfs.writable",
        "one of \"tmpfs\", \"none\"",
    );
    error_with(
        "[rootfs]\nwritable = false",
        "rootfs.writable",
        "found a boolean",
    );
    error_with(
        "[rootfs]\npath = \"rootfs\"",
        "rootfs.path",
        "not an absolute path",
    );
    error_with(
        "[rootfs]\npath = \"/srv/./root\"",
        "rootfs.path",
        "not normalised",
    );
}

#[test]
fn mounts() {
    let spec = ok_with(
        "[[mounts]]\nsource = \"/srv/a\"\ntarget = \"/a\"\n\
         [[mounts]]\nsource = \"/srv/b\"\ntarget = \"/b\"\nreadonly = true\n",
    );
    let m = |s: &str, t: &str, readonly| Mount {
        source: AbsPath::new(s).unwrap(),
        target: AbsPath::new(t).unwrap(),
        readonly,
    };
    assert_eq!(
        spec.mounts,
        [m("/srv/a", "/a", false), m("/srv/b", "/b", true)]
    );
    let inline = ok_with("mounts = [{ source = \"/x\", target = \"/x\", readonly = false }]");
    assert_eq!(inline.mounts, [m("/x", "/x", false)]);
    let e = error_with(
        "[[mounts]]\ntarget = \"/a\"",
        "mounts[0].source",
        "needs `source`",
    );
    assert_eq!((e.line, e.column), (2, 1));
    error_with(
        "[[mounts]]\nsource = \"/a\"",
        "mounts[0].target",
        "needs `target`",
    );
    error_with(
        "[[mounts]]\nsource = \"/a\"\ntarget = \"/\"",
        "mounts[0].target",
        "root `/`",
    );
    error_with(
        "[[mounts]]\nsource = \"/a\"\ntarget = \"a\"",
        "mounts[0].target",
        "absolute",
    );
    error_with(
        "[[mounts]]\nsource = \"a/\"\ntarget = \"/a\"",
        "mounts[0].source",
        "absolute",
    );
    let ro = "[[mounts]]\nsource = \"/a\"\ntarget = \"/a\"\nreadonly = \"yes\"";
    error_with(ro, "mounts[0].readonly", "found a string");
    let dup = "[[mounts]]\nsource = \"/a\"\ntarget = \"/t\"\n[[mounts]]\nsource = \"/b\"\ntarget = \"/t\"";
    let e = error_with(
        dup,
        "mounts[1].target",
        "`/t` is already the target of mounts[0]",
    );
    assert_eq!(e.line, 7);
    error_with("mounts = \"/a:/a\"", "mounts", "expected an array");
}

#[test]
fn resources() {
    let r = ok_with("[resources]\nmemory = \"64M\"\ncpus = 0.5\npids = 64").resources;
    assert_eq!(
        (r.memory, r.cpu_millis, r.pids),
        (Some(64 << 20), Some(500), Some(64))
    );
    let defaults = ok(CMD).resources;
    assert_eq!(
        (defaults.memory, defaults.cpu_millis, defaults.pids),
        (None, None, Some(DEFAULT_PIDS))
    );
    let unlimited = ok_with("[resources]\npids = \"unlimited\"").resources;
    assert_eq!(unlimited.pids, None);
    let memory = |v: &str| {
        ok_with(&format!("[resources]\nmemory = {v}"))
            .resources
            .memory
    };
    assert_eq!(memory("6291456"), Some(6 << 20));
    assert_eq!(memory("\"2GiB\""), Some(2 << 30));
    assert_eq!(memory("\"6144k\""), Some(6 << 20));
    let cpus = |v: &str| {
        ok_with(&format!("[resources]\ncpus = {v}"))
            .resources
            .cpu_millis
    };
    assert_eq!(cpus("2"), Some(2000));
    assert_eq!(cpus("0.001"), Some(1));
    assert_eq!(cpus("1024"), Some(1_024_000));

    let bad = |v: &str, needle: &str| {
        let field = format!("resources.{}", v.split(' ').next().unwrap_or_default());
        error_with(&format!("[resources]\n{v}"), &field, needle)
    };
    let e = bad(
        "memory = \"64Q\"",
        "invalid size `64Q`: expected bytes or a number with K, M, G or T",
    );
    assert_eq!(
        (e.line, e.column, e.snippet.map(|s| s.width)),
        (3, 10, Some(5))
    );
    bad("memory = \"99999999999999999999T\"", "too large");
    bad("memory = \"8388608T\"", "too large");
    bad("memory = 0", "0 is out of range");
    bad("memory = -5", "out of range");
    bad("memory = \"0\"", "greater than 0");
    bad("memory = 1.5", "found a float");
    bad("cpus = 0", "out of range");
    bad("cpus = -1.0", "out of range");
    bad("cpus = 1025", "out of range");
    bad("cpus = 0.0001", "too small");
    bad("cpus = nan", "out of range");
    bad("cpus = \"2\"", "found a string");
    bad("pids = 0", "out of range");
    bad("pids = \"64\"", "or \"unlimited\"");
    bad("memory = 64", "below the minimum of 6M");
    bad("memory = \"5M\"", "below the minimum of 6M");
}

#[test]
fn rlimits_and_tmpfs() {
    let spec = ok(CMD);
    let nofile = spec.rlimits[&RlimitKind::Nofile];
    assert_eq!(
        (nofile.limit.soft, nofile.limit.hard, nofile.explicit),
        (Some(1024), Some(524_288), false)
    );
    assert_eq!(spec.rlimits.len(), DEFAULT_RLIMITS.len());
    let spec = ok_with(
        "[resources]\nnofile = 4096\n[resources.ulimits]\ncore = \"unlimited\"\n\
         memlock = \"64M:unlimited\"\nnproc = \"100:200\"\n",
    );
    let get = |k| spec.rlimits[&k];
    assert_eq!(get(RlimitKind::Nofile).limit, Rlimit::both(4096));
    assert!(get(RlimitKind::Nofile).explicit);
    assert_eq!(
        get(RlimitKind::Core).limit,
        Rlimit {
            soft: None,
            hard: None
        }
    );
    assert_eq!(
        get(RlimitKind::Memlock).limit,
        Rlimit {
            soft: Some(64 << 20),
            hard: None
        }
    );
    assert_eq!(get(RlimitKind::Nproc).limit.hard, Some(200));
    error_with(
        "[resources.ulimits]\nfiles = 5",
        "resources.ulimits.files",
        "unknown limit `files`: expected one of core, cpu",
    );
    error_with(
        "[resources.ulimits]\nnofile = 5",
        "resources.ulimits.nofile",
        "as `resources.nofile`",
    );
    error_with(
        "[resources]\nnofile = \"9:3\"",
        "resources.nofile",
        "above the hard",
    );
    error_with(
        "[resources]\nnofile = -1",
        "resources.nofile",
        "out of range",
    );

    assert_eq!(spec.tmpfs, TmpfsSizes::default());
    let t = ok_with("[tmpfs]\ntmp = \"1G\"\nrun = 1048576\nshm = \"128M\"").tmpfs;
    assert_eq!((t.tmp, t.run, t.shm), (1 << 30, 1 << 20, 128 << 20));
    assert_eq!(ok_with("[tmpfs]\nroot = \"1G\"").tmpfs.root, 1 << 30);
    // At its default the root size is not part of the spec's hash input.
    let json = serde_json::to_string(&TmpfsSizes::default()).unwrap();
    assert!(!json.contains("root"), "{json}");
    error_with("[tmpfs]\ntmp = 4096", "tmpfs.tmp", "too small");
    error_with("[tmpfs]\nvar = \"1M\"", "tmpfs.var", "unknown field");
}

#[test]
fn security_section() {
    assert_eq!(ok(CMD).security, Security::default());
    let s = ok_with(
        "[security]\nseccomp = \"unconfined\"\ndevices = [\"/dev/fuse\", \"/dev/net/tun:rw\"]",
    )
    .security;
    assert_eq!(s.seccomp, Seccomp::Unconfined);
    assert_eq!(s.devices.len(), 2);
    let p = ok_with("[security]\nseccomp = \"/etc/superd/strict.json\"").security;
    assert!(
        matches!(p.seccomp, Seccomp::Profile(ref p) if p.as_str() == "/etc/superd/strict.json")
    );
    error_with(
        "[security]\nseccomp = \"strict\"",
        "security.seccomp",
        "\"unconfined\"",
    );
    error_with(
        "[security]\ndevices = [\"/dev/fuse\", \"/dev/fuse:r\"]",
        "security.devices[1]",
        "listed twice",
    );
    error_with(
        "[security]\ndevices = \"/dev/fuse\"",
        "security.devices",
        "expected an array",
    );
}

#[test]
fn restart() {
    let r = ok_with(
        "[restart]\npolicy = \"on-failure\"\ninitial_delay = \"1s\"\nmax_delay = \"1m 30s\"\n\
         reset_after = \"1h\"\nmax_retries = 4294967295",
    )
    .restart;
    assert_eq!(r.policy, RestartPolicy::OnFailure);
    assert_eq!(r.initial_delay, Duration::from_secs(1));
    assert_eq!(r.max_delay, Duration::from_secs(90));
    assert_eq!(r.reset_after, Duration::from_secs(3600));
    assert_eq!(r.max_retries, u32::MAX);
    let policy = |p: &str| {
        ok_with(&format!("[restart]\npolicy = \"{p}\""))
            .restart
            .policy
    };
    assert_eq!(policy("always"), RestartPolicy::Always);
    assert_eq!(policy("never"), RestartPolicy::Never);
    let bad = |v: &str, field: &str, needle: &str| {
        error_with(&format!("[restart]\n{v}"), field, needle);
    };
    bad(
        "policy = \"on_failure\"",
        "restart.policy",
        "expected one of \"always\", \"on-failure\", \"never\"",
    );
    bad(
        "initial_delay = \"soon\"",
        "restart.initial_delay",
        "invalid duration `soon`",
    );
    bad(
        "initial_delay = 100",
        "restart.initial_delay",
        "expected a duration string",
    );
    bad(
        "reset_after = \"0ms\"",
        "restart.reset_after",
        "greater than 0",
    );
    bad(
        "max_retries = -1",
        "restart.max_retries",
        "from 0 to 4294967295",
    );
    bad(
        "max_retries = 4294967296",
        "restart.max_retries",
        "out of range",
    );
    bad(
        "max_retries = \"3\"",
        "restart.max_retries",
        "found a string",
    );
    let both = "initial_delay = \"10s\"\nmax_delay = \"5s\"";
    bad(
        both,
        "restart.max_delay",
        "max_delay (5s) is shorter than initial_delay (10s)",
    );
    bad(
        "max_delay = \"50ms\"",
        "restart.max_delay",
        "shorter than the default initial_delay",
    );
    bad(
        "initial_delay = \"1m\"",
        "restart.initial_delay",
        "longer than the default max_delay (30s)",
    );
    assert_eq!(
        ok_with("[restart]\ninitial_delay = \"30s\"")
            .restart
            .initial_delay,
        Duration::from_secs(30)
    );
}

#[test]
fn stop() {
    let s = ok_with("[stop]\nsignal = \"SIGINT\"\ntimeout = \"3s\"").stop;
    assert_eq!(
        (s.signal.unwrap().name, s.timeout),
        ("SIGINT", Duration::from_secs(3))
    );
    assert_eq!(
        ok_with("[stop]\nsignal = \"quit\"")
            .stop
            .signal
            .unwrap()
            .number,
        3
    );
    assert_eq!(
        ok_with("[stop]\nsignal = \"SIGKILL\"")
            .stop
            .signal
            .unwrap()
            .number,
        9
    );
    let bad = |v: &str, field: &str, needle: &str| {
        error_with(&format!("[stop]\n{v}"), field, needle);
    };
    bad(
        "signal = \"SIGSTOP\"",
        "stop.signal",
        "SIGSTOP cannot stop a workload",
    );
    bad(
        "signal = \"SIGTREM\"",
        "stop.signal",
        "unknown signal `SIGTREM`",
    );
    bad("signal = 15", "stop.signal", "expected a signal name");
    bad("timeout = \"0s\"", "stop.timeout", "greater than 0");
    bad("timeout = \"10\"", "stop.timeout", "invalid duration");
    bad(
        "timeout = \"301s\"",
        "stop.timeout",
        "5m 1s is too long: at most 5m",
    );
    let s = ok_with("[stop]\ntimeout = \"5m\"").stop;
    assert_eq!(s.timeout, Stop::MAX_TIMEOUT);
}

#[test]
fn network_mode() {
    assert_eq!(ok(CMD).network, Network::default());
    assert_eq!(ok(CMD).network.mode, NetworkMode::Bridge);
    let mode = |m: &str| ok_with(&format!("[network]\nmode = \"{m}\"")).network.mode;
    assert_eq!(mode("bridge"), NetworkMode::Bridge);
    assert_eq!(mode("host"), NetworkMode::Host);
    assert_eq!(
        ok_with("network = { mode = \"none\" }").network.mode,
        NetworkMode::None
    );
    let e = error_with(
        "[network]\nmode = \"Bridge\"",
        "network.mode",
        "expected one of \"bridge\", \"none\", \"host\"",
    );
    assert_eq!((e.line, e.column), (3, 8));
    error_with("[network]\nmode = 1", "network.mode", "found an integer");
}

#[test]
fn network_full() {
    let n = ok_with(
        "[network]\nmode = \"bridge\"\naddress = \"10.77.0.20\"\n\
         ports = [\"8080:80\", \"127.0.0.1:5353:53/udp\", \"0.0.0.0:8443:443/tcp\"]\n\
         aliases = [\"api\", \"web-v2\"]",
    )
    .network;
    let port = |host_ip: Option<[u8; 4]>, host_port, container_port, protocol| PortMapping {
        host_ip: host_ip.map(Ipv4Addr::from),
        host_port,
        container_port,
        protocol,
    };
    assert_eq!(
        n,
        Network {
            mode: NetworkMode::Bridge,
            address: Some(Ipv4Addr::new(10, 77, 0, 20)),
            ports: vec![
                port(None, 8080, 80, Protocol::Tcp),
                port(Some([127, 0, 0, 1]), 5353, 53, Protocol::Udp),
                port(None, 8443, 443, Protocol::Tcp),
            ],
            aliases: vec![Name::new("api").unwrap(), Name::new("web-v2").unwrap()],
        }
    );
    let shown: Vec<String> = n.ports.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        ["8080:80/tcp", "127.0.0.1:5353:53/udp", "8443:443/tcp"]
    );
    // Empty lists are the same as none, in every mode.
    let empty = ok_with("[network]\nmode = \"host\"\nports = []\naliases = []").network;
    assert_eq!((empty.ports.len(), empty.aliases.len()), (0, 0));
}

#[test]
fn network_address() {
    let address = |a: &str| {
        ok_with(&format!("[network]\naddress = \"{a}\""))
            .network
            .address
    };
    assert_eq!(address("10.77.0.20"), Some(Ipv4Addr::new(10, 77, 0, 20)));
    assert_eq!(address("192.168.1.1"), Some(Ipv4Addr::new(192, 168, 1, 1)));
    let bad = |a: &str, needle: &str| {
        let e = error_with(
            &format!("[network]\naddress = \"{a}\""),
            "network.address",
            needle,
        );
        assert_eq!((e.line, e.column), (3, 11), "{a}");
    };
    bad(
        "fd00::20",
        "`fd00::20` is an IPv6 address: only IPv4 is supported",
    );
    bad("::1", "only IPv4 is supported");
    bad("::ffff:10.0.0.1", "only IPv4 is supported");
    bad("0.0.0.0", "`0.0.0.0` is the unspecified address");
    bad("127.0.0.5", "is a loopback address");
    bad("224.0.0.1", "is a multicast address");
    bad("255.255.255.255", "is the broadcast address");
    for form in [
        "10.77.0",
        "10.77.0.256",
        "010.77.0.20",
        "10.77.0.20 ",
        "web",
        "",
    ] {
        bad(form, "expected an IPv4 address in dotted-quad form");
    }
    bad("10.77.0.20/24", "without a prefix length");
    error_with(
        "[network]\naddress = 167772180",
        "network.address",
        "expected an IPv4 address string such as \"10.77.0.20\", found an integer",
    );
}

#[test]
fn network_ports() {
    let one = |p: &str| {
        let ports = ok_with(&format!("[network]\nports = [\"{p}\"]"))
            .network
            .ports;
        assert_eq!(ports.len(), 1);
        ports[0].to_string()
    };
    assert_eq!(one("80:80"), "80:80/tcp");
    assert_eq!(one("1:65535/udp"), "1:65535/udp");
    assert_eq!(one("0.0.0.0:53:53/udp"), "53:53/udp");
    assert_eq!(one("192.168.1.10:8080:80/tcp"), "192.168.1.10:8080:80/tcp");
    // The same container port on two host ports, or one host port over both protocols.
    let ok_ports = ok_with("[network]\nports = [\"8080:80\", \"8081:80\", \"8080:80/udp\"]");
    assert_eq!(ok_ports.network.ports.len(), 3);
    // Two specific host addresses do not overlap.
    let two = ok_with("[network]\nports = [\"127.0.0.1:80:80\", \"10.0.0.1:80:81\"]");
    assert_eq!(two.network.ports.len(), 2);

    let bad = |p: &str, needle: &str| {
        let e = error_with(
            &format!("[network]\nports = [\"8000:8000\", \"{p}\"]"),
            "network.ports[1]",
            needle,
        );
        assert_eq!((e.line, e.column), (3, 23), "{p}");
    };
    let form = "expected [host_ip:]host_port:container_port[/tcp|udp]";
    for p in ["80", "", "a:b:c:d", "8080:80:", "8080:80/tcp/udp"] {
        bad(p, "invalid port mapping");
    }
    bad("80", form);
    bad("[::1]:8080:80", "only IPv4 host addresses are supported");
    bad("8080:80/TCP", "unknown protocol `TCP`");
    bad("8080:80/sctp", form);
    bad("8080:", "the container port is empty");
    bad(":80", "the host port is empty");
    bad(":8080:80", "the host_ip is empty");
    bad("x:80", "the host port `x` is not a number");
    bad("8080:+80", "the container port `+80` is not a number");
    bad("0:80", "host port 0 is out of range: ports are 1-65535");
    bad(
        "8080:65536",
        "container port 65536 is out of range: ports are 1-65535",
    );
    bad(
        "8080:99999999999999999999",
        "is out of range: ports are 1-65535",
    );
    bad("localhost:8080:80", "invalid host_ip `localhost`");
    bad("1.2.3:8080:80", form);
    bad(
        "239.1.1.1:8080:80",
        "host_ip `239.1.1.1` is a multicast address",
    );

    // Collisions: same protocol and host port on overlapping host addresses.
    let clash = |ports: &str, needle: &str| {
        let text = format!("[network]\nports = [{ports}]");
        let e = error_with(&text, "network.ports[1]", needle);
        assert_eq!(e.line, 3);
    };
    clash(
        "\"8080:80\", \"8080:81\"",
        "publishes 8080/tcp again (already in network.ports[0])",
    );
    clash(
        "\"8080:80\", \"127.0.0.1:8080:81\"",
        "publishes 127.0.0.1:8080/tcp again (already in network.ports[0], which publishes it \
         on every host address)",
    );
    clash(
        "\"127.0.0.1:8080:80\", \"0.0.0.0:8080:81\"",
        "publishes 8080/tcp again (already in network.ports[0], which publishes it on one of \
         them)",
    );
    clash(
        "\"127.0.0.1:53:53/udp\", \"127.0.0.1:53:5353/udp\"",
        "publishes 127.0.0.1:53/udp again (already in network.ports[0])",
    );
    // The error is at the later entry and names the first one it collides with.
    let e = error_with(
        "[network]\nports = [\n  \"1:1\",\n  \"2:2\",\n  \"1:3\",\n]",
        "network.ports[2]",
        "publishes 1/tcp again (already in network.ports[0])",
    );
    assert_eq!((e.line, e.column), (6, 3));

    // Wrong types.
    let e = error_with(
        "[network]\nports = \"8080:80\"",
        "network.ports",
        "expected an array of port mapping strings ([host_ip:]host_port:container_port\
         [/tcp|udp]) such as [\"8080:80\"], found a string",
    );
    assert_eq!((e.line, e.column), (3, 9));
    let e = error_with(
        "[network]\nports = [\"8080:80\", 8081]",
        "network.ports[1]",
        "expected a port mapping string ([host_ip:]host_port:container_port[/tcp|udp]), \
         found an integer",
    );
    assert_eq!((e.line, e.column), (3, 21));
    // Every bad entry at once.
    let errs = errors(&format!(
        "{CMD}[network]\nports = [\"0:1\", \"1:1\", 2, \"1:2\"]"
    ));
    let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["network.ports[0]", "network.ports[2]", "network.ports[3]"]
    );
}

#[test]
fn network_aliases() {
    let aliases = ok_with("[network]\naliases = [\"api\", \"api-2\", \"x\"]")
        .network
        .aliases;
    let names: Vec<&str> = aliases.iter().map(Name::as_str).collect();
    assert_eq!(names, ["api", "api-2", "x"]);
    let bad = |a: &str, field: &str, needle: &str| {
        let text = format!("[network]\naliases = [{a}]");
        error_with(&text, field, needle)
    };
    let e = bad(
        "\"api\", \"Api\"",
        "network.aliases[1]",
        "invalid alias: `Api` is not a lowercase RFC 1123 label",
    );
    assert_eq!((e.line, e.column), (3, 19));
    bad(
        "\"\"",
        "network.aliases[0]",
        "invalid alias: must not be empty",
    );
    bad(
        "\"-a\"",
        "network.aliases[0]",
        "must not start or end with '-'",
    );
    bad(
        "\"a.b\"",
        "network.aliases[0]",
        "not a lowercase RFC 1123 label",
    );
    bad(
        &format!("\"{}\"", "a".repeat(64)),
        "network.aliases[0]",
        "longer than 63 characters",
    );
    bad(
        "\"web\"",
        "network.aliases[0]",
        "`web` is the workload's own name",
    );
    let errs = errors(&format!(
        "{CMD}[network]\naliases = [\"api\", \"Bad\", \"api\"]"
    ));
    assert_eq!(
        errs[1],
        (
            "network.aliases[2]".to_string(),
            "`api` is listed twice (already network.aliases[0])".to_string()
        )
    );
    bad(
        "\"api\", 7",
        "network.aliases[1]",
        "expected a workload name string, found an integer",
    );
    let e = error_with(
        "[network]\naliases = \"api\"",
        "network.aliases",
        "expected an array of workload names such as [\"api\"], found a string",
    );
    assert_eq!((e.line, e.column), (3, 11));
    // A file name that is not a valid workload name: no own-name check, no extra errors.
    let err = parse(
        Path::new("Web.toml"),
        &format!("{CMD}[network]\naliases = [\"web\"]"),
    )
    .unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].field, "name");
}

#[test]
fn network_fields_need_bridge_mode() {
    for mode in ["none", "host"] {
        let text = format!(
            "{CMD}[network]\nmode = \"{mode}\"\naddress = \"10.77.0.2\"\nports = [\"80:80\"]\n\
             aliases = [\"api\"]"
        );
        let err = parse_web(&text).unwrap_err();
        let got: Vec<_> = err
            .errors
            .iter()
            .map(|e| (e.line, e.column, e.field.as_str(), e.message.as_str()))
            .collect();
        let msg = format!("only valid with mode = \"bridge\" (mode is \"{mode}\")");
        assert_eq!(
            got,
            [
                (4, 11, "network.address", msg.as_str()),
                (5, 9, "network.ports", msg.as_str()),
                (6, 11, "network.aliases", msg.as_str()),
            ]
        );
    }
    error_with(
        "[network]\nmode = \"host\"\nports = [\"8080:80\"]",
        "network.ports",
        "network.ports: only valid with mode = \"bridge\" (mode is \"host\")"
            .trim_start_matches("network.ports: "),
    );
    // An invalid value is reported for itself only; an invalid mode judges nothing else.
    error_with(
        "[network]\nmode = \"host\"\naddress = \"::1\"",
        "network.address",
        "only IPv4",
    );
    error_with(
        "[network]\nmode = \"none\"\nports = [\"8080\"]",
        "network.ports[0]",
        "invalid port mapping",
    );
    error_with(
        "[network]\nmode = \"nat\"\nports = [\"8080:80\"]",
        "network.mode",
        "invalid value `nat`",
    );
}

#[test]
fn rootfs_image() {
    let d = format!("sha256:{}", "a".repeat(64));
    let spec = ok(&format!(
        "[rootfs]\nimage = \"127.0.0.1:5000/team/web:1.4@{d}\"\n"
    ));
    assert!(
        spec.command.is_empty(),
        "with an image, command is optional"
    );
    let Rootfs::Image {
        image,
        writable,
        pull,
    } = spec.rootfs
    else {
        panic!("{:?}", spec.rootfs)
    };
    assert_eq!(image.name, "127.0.0.1:5000/team/web:1.4");
    assert_eq!(image.digest.as_deref(), Some(d.as_str()));
    assert_eq!((writable, pull), (Writable::Tmpfs, Pull::Missing));
    let spec = ok(
        "args = [\"-v\"]\n[rootfs]\nimage = \"busybox\"\nwritable = \"none\"\npull = \"never\"\n",
    );
    assert_eq!(spec.args, Some(vec!["-v".to_string()]));
    assert!(matches!(
        spec.rootfs,
        Rootfs::Image { writable: Writable::None, pull: Pull::Never, ref image, .. }
            if image.name == "docker.io/library/busybox:latest" && image.digest.is_none()
    ));
    let e = error_with(
        "[rootfs]\nimage = \"busybox\"\npath = \"/srv\"",
        "rootfs.path",
        "exclusive",
    );
    assert_eq!(e.line, 4);
    error_with(
        "[rootfs]\npull = \"never\"",
        "rootfs.pull",
        "needs an `image`",
    );
    error_with(
        "[rootfs]\nimage = \"Bad Name\"",
        "rootfs.image",
        "not a valid image reference",
    );
    error_with(
        "[rootfs]\nimage = \"web@sha256:abc\"",
        "rootfs.image",
        "image reference",
    );
    error_with(
        "[rootfs]\nimage = \"busybox\"\npull = \"always\"",
        "rootfs.pull",
        "one of",
    );
    error_with("args = [\"x\"]", "args", "without [rootfs] image");
}

#[test]
fn volumes_and_tmpfs_mounts() {
    let spec = ok_with(
        "[tmpfs]\nmounts = [\"/var/lib/nginx\", \"/var/cache/app:32M\"]\n\
         [[volumes]]\nname = \"pgdata\"\ntarget = \"/var/lib/postgresql/data\"\n\
         [[volumes]]\nname = \"conf\"\ntarget = \"/etc/app\"\nreadonly = true\n",
    );
    assert_eq!(spec.volumes.len(), 2);
    assert_eq!(spec.volumes[0].name, "pgdata");
    assert!(spec.volumes[1].readonly);
    assert_eq!(spec.tmpfs_mounts[0].size, 16 << 20, "the default size");
    assert_eq!(spec.tmpfs_mounts[1].size, 32 << 20);
    error_with(
        "[[volumes]]\nname = \"Bad\"\ntarget = \"/x\"",
        "volumes[0].name",
        "invalid volume name",
    );
    error_with("[[volumes]]\nname = \"a\"", "volumes[0].target", "missing");
    error_with(
        "[[volumes]]\nname = \"a\"\ntarget = \"/proc/x\"",
        "volumes[0].target",
        "mounted by superd itself",
    );
    error_with(
        "[[mounts]]\nsource = \"/srv\"\ntarget = \"/data\"\n[[volumes]]\nname = \"a\"\ntarget = \"/data\"",
        "volumes[0].target",
        "already the target of mounts[0]",
    );
    error_with(
        "[[volumes]]\nname = \"a\"\ntarget = \"/a\"\n[[volumes]]\nname = \"a\"\ntarget = \"/b\"",
        "volumes[1].name",
        "already mounted by volumes[0]",
    );
    error_with(
        "[tmpfs]\nmounts = [\"/x:1K\"]",
        "tmpfs.mounts[0]",
        "at least 64K",
    );
    error_with(
        "[tmpfs]\nmounts = \"/x\"",
        "tmpfs.mounts",
        "expected an array",
    );
    error_with(
        "[tmpfs]\nmounts = [\"relative\"]",
        "tmpfs.mounts[0]",
        "not an absolute path",
    );
}
