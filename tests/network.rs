//! Bridge networking against the real kernel, all inside a network namespace the test owns:
//! veths and names between workloads, published ports (TCP and UDP, loopback and the
//! sandbox's own address), stable addresses, collisions, 200 workloads, and no leftovers.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::io::Read;
use std::net::{Ipv4Addr, TcpStream, UdpSocket};
use std::time::Duration;
use superd::api::State;
use superd::testing::privileged;

/// A python3 (from the host root, which containers see read-only) serving `tcp-ok <name>` on
/// TCP 80 and echoing UDP datagrams on 53 with a `udp-ok ` prefix.
fn server(extra: &str) -> String {
    let script = r#"
import socket, sys, threading
name = sys.argv[1]
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 80)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(("tcp-ok " + name + "\n").encode()); c.close()
threading.Thread(target=tcp, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 53))
print("serving", flush=True)
while True:
    data, peer = u.recvfrom(2048); u.sendto(b"udp-ok " + data, peer)
"#;
    format!(
        "command = [\"python3\", \"-c\", '''{script}''', \"server\"]\n{extra}",
        script = script
    )
}

fn tcp_get(addr: (Ipv4Addr, u16)) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn udp_ask(addr: (Ipv4Addr, u16), msg: &str) -> std::io::Result<String> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut buf = [0u8; 256];
    let mut last = None;
    for _ in 0..10 {
        s.send_to(msg.as_bytes(), addr)?;
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no reply")))
}

/// Retries `f` for up to 10 s (a server needs a moment to bind after it is `running`).
fn retry<T>(what: &str, mut f: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn address_of(sb: &mut Sandbox, name: &str) -> Ipv4Addr {
    let w = sb.wait_running(name);
    w.address
        .clone()
        .unwrap_or_else(|| panic!("{name} has no address: {w:#?}"))
        .parse()
        .unwrap()
}

#[test]
fn workloads_reach_each_other_by_address_and_name() {
    let Some(()) = privileged("workloads_reach_each_other_by_address_and_name") else {
        return;
    };
    let mut sb = Sandbox::start("net-names");
    sb.write_manifest(
        "server",
        &server("[network]\naliases = [\"api\"]\nports = [\"8080:80\"]\n"),
    );
    let server_ip = address_of(&mut sb, "server");
    sb.wait_log("server", "serving");

    // The client pings and connects by address, by name and by alias, and prints /etc/hosts.
    let client = format!(
        r#"command = ["python3", "-c", '''
import socket, sys, time
for target in sys.argv[1:]:
    for i in range(100):
        try:
            # The gateway is the host side: reach the server through its published port.
            port = 8080 if target == "10.77.0.1" else 80
            s = socket.create_connection((target, port), timeout=1)
            print("tcp", target, s.recv(100).decode().strip(), flush=True)
            break
        except OSError as e:
            time.sleep(0.05)
    else:
        print("tcp-failed", target, e, flush=True)
    if target == "10.77.0.1":
        continue  # the gateway: only the hairpin TCP check above
    # An ICMP echo over a datagram socket (allowed by net.ipv4.ping_group_range, as with podman).
    try:
        icmp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        icmp.settimeout(2)
        icmp.sendto(b"\x08\x00\x00\x00\x00\x00\x00\x01superd", (target, 0))
        reply, _ = icmp.recvfrom(128)
        print("ping", target, "ok" if reply[0] == 0 and reply.endswith(b"superd") else "bad reply", flush=True)
    except OSError as e:
        print("ping", target, "failed", e, flush=True)
print("hosts:", open("/etc/hosts").read().replace("\n", "|"), flush=True)
print("resolv:", open("/etc/resolv.conf").read().replace("\n", "|"), flush=True)
time.sleep(1000)
''', "{server_ip}", "server", "api", "10.77.0.1"]
"#
    );
    sb.write_manifest("client", &client);
    let client_ip = address_of(&mut sb, "client");
    assert_ne!(client_ip, server_ip);
    let log = sb.wait_log("client", "resolv:");
    // Hairpin: a workload reaches another through a published port on the host side.
    assert!(log.contains("tcp 10.77.0.1 tcp-ok server"), "{log}");
    for target in [server_ip.to_string().as_str(), "server", "api"] {
        assert!(
            log.contains(&format!("tcp {target} tcp-ok server")),
            "TCP to {target}:\n{log}"
        );
        assert!(
            log.contains(&format!("ping {target} ok")),
            "ping {target}:\n{log}"
        );
    }
    assert!(log.contains(&format!("{client_ip}\tclient")), "{log}");
    assert!(
        !log.contains("nameserver 127."),
        "loopback resolver leaked: {log}"
    );

    // The hosts file follows workloads as they come and go (seen through the container).
    let client_pid = sb.wait_running("client").pid.unwrap();
    let hosts = format!("/proc/{client_pid}/root/etc/hosts");
    sb.write_manifest("late", r#"command = ["sleep", "1000"]"#);
    let late_ip = address_of(&mut sb, "late");
    sb.wait_until(
        "late in the client's /etc/hosts",
        Duration::from_secs(10),
        |_| {
            std::fs::read_to_string(&hosts)
                .unwrap_or_default()
                .contains(&format!("{late_ip}\tlate"))
        },
    );
    sb.remove_manifest("late");
    sb.wait_until("late gone from /etc/hosts", Duration::from_secs(10), |_| {
        !std::fs::read_to_string(&hosts)
            .unwrap_or_default()
            .contains("late")
    });
    sb.shutdown();
}

#[test]
fn published_ports_answer_on_loopback_and_the_hosts_own_address() {
    let Some(()) = privileged("published_ports_answer_on_loopback_and_the_hosts_own_address")
    else {
        return;
    };
    let mut sb = Sandbox::start("net-ports");
    // The sandbox's "own address": an uplink interface in its namespace (a veth pair; the
    // dummy driver is not available on every kernel).
    sb.cmd_ok(&[
        "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ]);
    sb.cmd_ok(&["ip", "addr", "add", "10.200.0.1/24", "dev", "uplink0"]);
    sb.cmd_ok(&["ip", "link", "set", "uplink0", "up"]);
    sb.cmd_ok(&["ip", "link", "set", "uplink1", "up"]);
    sb.write_manifest(
        "echo",
        &server("[network]\nports = [\"8080:80\", \"5353:53/udp\", \"127.0.0.1:9090:80\"]\n"),
    );
    let ip = address_of(&mut sb, "echo");
    sb.wait_log("echo", "serving");
    let w = sb.wait_running("echo");
    assert_eq!(
        w.ports,
        ["8080:80/tcp", "5353:53/udp", "127.0.0.1:9090:80/tcp"],
        "{w:#?}"
    );

    let answers = sb.in_sandbox_net(move || {
        let lo = Ipv4Addr::LOCALHOST;
        let own = Ipv4Addr::new(10, 200, 0, 1);
        vec![
            retry("tcp 127.0.0.1:8080", || tcp_get((lo, 8080))),
            retry("tcp 10.200.0.1:8080", || tcp_get((own, 8080))),
            retry("tcp 127.0.0.1:9090", || tcp_get((lo, 9090))),
            retry("tcp direct", || tcp_get((ip, 80))),
            retry("udp 127.0.0.1:5353", || udp_ask((lo, 5353), "a")),
            retry("udp 10.200.0.1:5353", || udp_ask((own, 5353), "b")),
        ]
    });
    assert_eq!(
        answers,
        [
            "tcp-ok server\n",
            "tcp-ok server\n",
            "tcp-ok server\n",
            "tcp-ok server\n",
            "udp-ok a",
            "udp-ok b"
        ]
    );
    // 9090 is published on 127.0.0.1 only.
    let refused = sb.in_sandbox_net(|| tcp_get((Ipv4Addr::new(10, 200, 0, 1), 9090)).is_err());
    assert!(refused, "127.0.0.1:9090 must not answer on other addresses");

    // Stopping the workload removes its veth and its port elements.
    let rules = sb.cmd_ok(&["nft", "list", "table", "ip", "superd_superd0"]);
    assert!(rules.contains("8080"), "{rules}");
    sb.remove_manifest("echo");
    sb.wait_until("echo removed", Duration::from_secs(20), |s| {
        s.try_status().is_some_and(|st| st.workloads.is_empty())
    });
    let rules = sb.cmd_ok(&["nft", "list", "table", "ip", "superd_superd0"]);
    assert!(
        !rules.contains("8080") && !rules.contains("5353"),
        "{rules}"
    );
    let links = sb.cmd_ok(&["ip", "-o", "link", "show", "type", "veth"]);
    assert!(!links.contains(": sd"), "veth left after stop: {links}");
    sb.cmd_ok(&["ip", "link", "del", "uplink0"]);
    sb.shutdown();
}

#[test]
fn address_survives_workload_and_superd_restarts() {
    let Some(()) = privileged("address_survives_workload_and_superd_restarts") else {
        return;
    };
    let mut sb = Sandbox::start("net-lease");
    for name in ["a", "b", "c"] {
        sb.write_manifest(name, r#"command = ["sleep", "1000"]"#);
    }
    let ip = address_of(&mut sb, "b");
    let pid = sb.wait_running("b").pid.unwrap();
    // The kernel agrees: the workload's namespace has that address.
    let fib = std::fs::read_to_string(format!("/proc/{pid}/net/fib_trie")).unwrap();
    assert!(fib.contains(&ip.to_string()), "{fib}");

    sb.client().restart("b").unwrap();
    let w = sb.wait_for("b", "restarted", Duration::from_secs(20), |w| {
        w.state == State::Running && w.pid.is_some() && w.pid != Some(pid)
    });
    assert_eq!(w.address.as_deref(), Some(ip.to_string().as_str()));

    let before: Vec<_> = sb
        .status()
        .workloads
        .into_iter()
        .map(|w| (w.name, w.address))
        .collect();
    sb.restart();
    for name in ["a", "b", "c"] {
        sb.wait_running(name);
    }
    let after: Vec<_> = sb
        .status()
        .workloads
        .into_iter()
        .map(|w| (w.name, w.address))
        .collect();
    assert_eq!(before, after);

    // The lease file is what carries addresses over (the first probe of a name would give it
    // the same address anyway): a lease edited while superd is down is honoured.
    let leases = sb.state.join("network/leases-superd0.json");
    let text = std::fs::read_to_string(&leases).unwrap();
    assert!(text.contains(&format!("\"b\": \"{ip}\"")), "{text}");
    sb.stop();
    std::fs::write(&leases, text.replace(&ip.to_string(), "10.77.0.99")).unwrap();
    sb.spawn_superd();
    assert_eq!(address_of(&mut sb, "b"), Ipv4Addr::new(10, 77, 0, 99));
    sb.shutdown();
}

#[test]
fn port_address_and_name_collisions_are_rejected_and_the_holder_keeps_running() {
    let Some(()) =
        privileged("port_address_and_name_collisions_are_rejected_and_the_holder_keeps_running")
    else {
        return;
    };
    let mut sb = Sandbox::start("net-collide");
    sb.write_manifest(
        "web",
        "command = [\"sleep\", \"1000\"]\n[network]\naddress = \"10.77.0.20\"\nports = [\"8080:80\"]\naliases = [\"api\"]\n",
    );
    let web = sb.wait_running("web");
    assert_eq!(web.address.as_deref(), Some("10.77.0.20"));

    // "api" sorts before "web", but web already runs: web keeps the port.
    sb.write_manifest(
        "api2",
        "command = [\"sleep\", \"1000\"]\n[network]\nports = [\"127.0.0.1:8080:81\"]\n",
    );
    sb.write_manifest(
        "addr",
        "command = [\"sleep\", \"1000\"]\n[network]\naddress = \"10.77.0.20\"\n",
    );
    sb.write_manifest(
        "alias",
        "command = [\"sleep\", \"1000\"]\n[network]\naliases = [\"api\"]\n",
    );
    let cases = [
        ("api2", "network.ports[0]", "8080"),
        ("addr", "network.address", "10.77.0.20"),
        ("alias", "network.aliases[0]", "api"),
    ];
    for (name, field, what) in cases {
        let w = sb.wait_for(name, "rejected", Duration::from_secs(10), |w| {
            w.error.is_some()
        });
        let err = w.error.unwrap();
        assert!(
            err.contains(&format!("{name}.toml:3:"))
                && err.contains(field)
                && err.contains(what)
                && err.contains("\"web\""),
            "{err}"
        );
        assert_ne!(w.state, State::Running);
    }
    let again = sb.wait_running("web");
    assert_eq!(again.pid, web.pid, "the holder must not be disturbed");

    // Once the holder is gone, the lexically first claimant gets the port.
    sb.remove_manifest("web");
    sb.wait_running("api2");
    sb.wait_running("addr");
    let w = sb.wait_running("alias");
    assert!(w.error.is_none(), "{w:#?}");
    sb.shutdown();
}

#[test]
fn two_hundred_workloads_get_unique_addresses() {
    let Some(()) = privileged("two_hundred_workloads_get_unique_addresses") else {
        return;
    };
    let mut sb = Sandbox::start("net-200");
    for i in 0..200 {
        sb.write_manifest(&format!("w{i:03}"), r#"command = ["sleep", "1000"]"#);
    }
    sb.wait_until("200 running", Duration::from_secs(180), |s| {
        s.try_status().is_some_and(|st| {
            st.workloads.len() == 200 && st.workloads.iter().all(|w| w.state == State::Running)
        })
    });
    let st = sb.status();
    let mut addrs: Vec<Ipv4Addr> = st
        .workloads
        .iter()
        .map(|w| w.address.as_deref().unwrap().parse().unwrap())
        .collect();
    let subnet: superd::network::Subnet = "10.77.0.0/16".parse().unwrap();
    assert!(addrs.iter().all(|a| subnet.is_assignable(*a)), "{addrs:?}");
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 200, "addresses are not unique");
    for w in st.workloads.iter().step_by(40) {
        let fib =
            std::fs::read_to_string(format!("/proc/{}/net/fib_trie", w.pid.unwrap())).unwrap();
        assert!(
            fib.contains(w.address.as_deref().unwrap()),
            "{}: {fib}",
            w.name
        );
    }
    let veths = sb.cmd_ok(&["ip", "-o", "link", "show", "type", "veth"]);
    assert_eq!(veths.lines().count(), 200);
    sb.shutdown();
}

#[test]
fn none_and_host_modes_and_leftovers_of_a_crashed_superd_are_removed() {
    let Some(()) = privileged("none_and_host_modes_and_leftovers_of_a_crashed_superd_are_removed")
    else {
        return;
    };
    let mut sb = Sandbox::start("net-modes");
    sb.write_manifest(
        "isolated",
        "command = [\"sleep\", \"1000\"]\n[network]\nmode = \"none\"\n",
    );
    sb.write_manifest(
        "shared",
        "command = [\"sleep\", \"1000\"]\n[network]\nmode = \"host\"\n",
    );
    sb.write_manifest(
        "bridged",
        "command = [\"sleep\", \"1000\"]\n[network]\nports = [\"8080:80\"]\n",
    );
    let iso = sb.wait_running("isolated");
    let shared = sb.wait_running("shared");
    sb.wait_running("bridged");
    assert_eq!(iso.address, None);
    let dev = std::fs::read_to_string(format!("/proc/{}/net/dev", iso.pid.unwrap())).unwrap();
    let ifaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(ifaces, ["lo"], "mode = none keeps only lo");
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(
        ns(shared.pid.unwrap()),
        ns(sb.superd_pid()),
        "mode = host shares"
    );

    // A crash leaves the bridge, veths and the table; the successor removes them.
    sb.crash();
    let left = sb.net_objects();
    let links = left.lines().next().unwrap_or("");
    assert!(links.split_whitespace().any(|l| l == "superd0"), "{left}");
    assert!(left.contains("table ip superd_superd0"), "{left}");
    sb.spawn_superd();
    sb.wait_running("bridged");
    sb.shutdown();
}

#[test]
fn outbound_traffic_is_masqueraded_unless_no_nat() {
    let Some(()) = privileged("outbound_traffic_is_masqueraded_unless_no_nat") else {
        return;
    };
    let sb = Sandbox::start("net-nat");
    // "The internet": another namespace behind a veth, with a server that answers with the
    // address it sees the connection come from.
    let internet = common::new_netns();
    let mut server = std::process::Command::new("python3");
    server.args([
        "-c",
        r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
while True:
    try:
        s.bind(("10.200.0.2", 7000)); break
    except OSError:
        import time; time.sleep(0.02)
s.listen(8)
print("listening", flush=True)
while True:
    c, peer = s.accept(); c.sendall(("seen-from " + peer[0] + "\n").encode()); c.close()
"#,
    ]);
    server.stdout(std::process::Stdio::piped());
    common::in_netns(&mut server, &internet);
    let mut server = server.spawn().expect("starting the internet server");
    let server_pid = server.id().to_string();
    let guard = KillOnDrop(&mut server);
    // A new namespace copies ip_forward from the host's: start from "off".
    sb.cmd_ok(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    sb.cmd_ok(&[
        "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
    ]);
    sb.cmd_ok(&["ip", "link", "set", "uplink1", "netns", &server_pid]);
    sb.cmd_ok(&["ip", "addr", "add", "10.200.0.1/24", "dev", "uplink0"]);
    sb.cmd_ok(&["ip", "link", "set", "uplink0", "up"]);
    for argv in [
        &["ip", "addr", "add", "10.200.0.2/24", "dev", "uplink1"][..],
        &["ip", "link", "set", "uplink1", "up"],
    ] {
        let mut c = std::process::Command::new(argv[0]);
        c.args(&argv[1..]);
        common::in_netns(&mut c, &internet);
        assert!(c.status().unwrap().success(), "{argv:?}");
    }
    sb.write_manifest(
        "client",
        r#"command = ["python3", "-c", '''
import socket, time
for i in range(200):
    try:
        print(socket.create_connection(("10.200.0.2", 7000), timeout=1).recv(100).decode().strip(), flush=True)
        break
    except OSError as e:
        err = e; time.sleep(0.05)
else:
    print("failed", err, flush=True)
time.sleep(1000)
''']
"#,
    );
    let log = sb.wait_log("client", "\n");
    assert!(
        log.contains("seen-from 10.200.0.1"),
        "not masqueraded: {log}"
    );
    assert_eq!(
        sb.cmd_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    sb.cmd_ok(&["ip", "link", "del", "uplink0"]);
    sb.shutdown();
    drop(guard);
    drop(internet);

    // --no-nat: no masquerade rule for the subnet (published ports still work).
    let mut sb = Sandbox::start_with("net-nonat", &["--no-nat"]);
    sb.cmd_ok(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    sb.write_manifest(
        "web",
        "command = [\"sleep\", \"1000\"]\n[network]\nports = [\"8080:80\"]\n",
    );
    sb.wait_running("web");
    let rules = sb.cmd_ok(&["nft", "list", "table", "ip", "superd_superd0"]);
    assert!(
        !rules.contains("ip daddr != 10.77.0.0/16 masquerade"),
        "{rules}"
    );
    assert!(rules.contains("8080"), "{rules}");
    assert_eq!(
        sb.cmd_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
    sb.shutdown();
}

/// Kills (by PID, through the handle we spawned) and reaps a helper process.
struct KillOnDrop<'a>(&'a mut std::process::Child);

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tcp-ok …`, or `error …`, from a TCP connection made inside the namespace `ns`.
fn tcp_from(ns: &std::os::fd::OwnedFd, addr: &str, port: u16) -> String {
    let mut c = std::process::Command::new("python3");
    c.args([
        "-c",
        "import socket, sys\ntry:\n    print(socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).recv(100).decode().strip())\nexcept OSError as e:\n    print('error', e)",
        addr,
        &port.to_string(),
    ]);
    common::in_netns(&mut c, ns);
    String::from_utf8_lossy(&c.output().unwrap().stdout)
        .trim()
        .to_string()
}

#[test]
fn from_the_lan_only_published_ports_are_reachable() {
    let Some(()) = privileged("from_the_lan_only_published_ports_are_reachable") else {
        return;
    };
    let mut sb = Sandbox::start("net-lan");
    // A neighbour on the LAN that routes the bridge's subnet through the host.
    let lan = common::new_netns();
    sb.cmd_ok(&["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"]);
    sb.cmd_ok(&[
        "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1",
    ]);
    let lan_fd = std::os::fd::AsRawFd::as_raw_fd(&lan).to_string();
    // `ip link set … netns` takes a PID or a name; a /proc/self/fd path of ours names it.
    sb.cmd_ok(&[
        "ip",
        "link",
        "set",
        "lan1",
        "netns",
        &format!("/proc/{}/fd/{lan_fd}", std::process::id()),
    ]);
    sb.cmd_ok(&["ip", "addr", "add", "10.201.0.1/24", "dev", "lan0"]);
    sb.cmd_ok(&["ip", "link", "set", "lan0", "up"]);
    for argv in [
        &["ip", "addr", "add", "10.201.0.2/24", "dev", "lan1"][..],
        &["ip", "link", "set", "lan1", "up"],
        &["ip", "link", "set", "lo", "up"],
        &["ip", "route", "add", "10.77.0.0/16", "via", "10.201.0.1"],
    ] {
        let mut c = std::process::Command::new(argv[0]);
        c.args(&argv[1..]);
        common::in_netns(&mut c, &lan);
        assert!(c.status().unwrap().success(), "{argv:?}");
    }
    sb.write_manifest("web", &server("[network]\nports = [\"8080:80\"]\n"));
    let ip = address_of(&mut sb, "web");
    sb.wait_log("web", "serving");
    // The published port, through the host's LAN address: DNATed, allowed.
    let published = (0..100)
        .map(|_| tcp_from(&lan, "10.201.0.1", 8080))
        .find(|r| r.starts_with("tcp-ok"))
        .unwrap_or_default();
    assert_eq!(published, "tcp-ok server");
    // The container's own address, routed by the neighbour: dropped.
    let direct = tcp_from(&lan, &ip.to_string(), 80);
    assert!(
        direct.starts_with("error"),
        "reached the container directly: {direct}"
    );
    // superd turned forwarding on and turns it off again when it exits.
    assert_eq!(
        sb.cmd_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    sb.cmd_ok(&["ip", "link", "del", "lan0"]);
    sb.stop();
    assert_eq!(
        sb.cmd_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
    drop(lan);
}

#[test]
fn a_restarted_workload_is_reachable_at_once() {
    let Some(()) = privileged("a_restarted_workload_is_reachable_at_once") else {
        return;
    };
    let mut sb = Sandbox::start("net-restart");
    sb.write_manifest("web", &server("[network]\nports = [\"8080:80\"]\n"));
    let ip = address_of(&mut sb, "web");
    let published = (Ipv4Addr::LOCALHOST, 8080);
    sb.in_sandbox_net(move || retry("the published port", || tcp_get(published)));
    // The host's neighbour entry holds the MAC derived from the address.
    let neigh = sb.cmd_ok(&["ip", "neigh", "show", &ip.to_string()]);
    let o = ip.octets();
    let mac = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    assert!(neigh.contains(&mac), "{neigh}");
    let before = sb.workload("web").unwrap().pid;
    sb.client().restart("web").unwrap();
    sb.wait_for("web", "running again", Duration::from_secs(20), |w| {
        w.state == superd::api::State::Running && w.pid != before
    });
    // From the moment the new instance runs, the published port answers as soon as its
    // server has bound (it used to take 9-25 s for the stale neighbour entry to expire).
    let took = sb.in_sandbox_net(move || {
        let t0 = std::time::Instant::now();
        loop {
            let mut s =
                match TcpStream::connect_timeout(&published.into(), Duration::from_millis(200)) {
                    Ok(s) => s,
                    Err(_) if t0.elapsed() < Duration::from_secs(5) => continue,
                    Err(e) => panic!("not reachable 5 s after the restart: {e}"),
                };
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("tcp-ok") {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "no answer 5 s after the restart"
            );
        }
        t0.elapsed()
    });
    eprintln!("published port answered {took:?} after the restart");
    assert!(sb
        .cmd_ok(&["ip", "neigh", "show", &ip.to_string()])
        .contains(&mac));
    sb.shutdown();
}
