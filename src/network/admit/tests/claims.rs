//! Conflicts between workloads' ports, addresses and names, and who wins them.

use super::*;

#[test]
fn cold_start_port_goes_to_lexically_first() {
    let a = world()
        .cand(ports("web", &["8080:80"]))
        .cand(ports("api", &["9090:90", "8080:8080"]))
        .run();
    assert!(!a.rejected.contains_key("api"));
    assert_eq!(
        rejection(&a, "web"),
        (
            "network.ports[0]".into(),
            "port 8080/tcp on all addresses is already published by workload \"api\"".into()
        )
    );
    assert!(a.addresses.contains_key("api"));
    assert!(!a.addresses.contains_key("web"));
    assert!(!a.leases.contains_key("web"));
}

#[test]
fn cold_start_address_and_alias_go_to_lexically_first() {
    let a = world()
        .cand(at("db", "10.77.0.20"))
        .cand(at("cache", "10.77.0.20"))
        .cand(aliases("x2", &["shared"]))
        .cand(aliases("x1", &["other", "shared"]))
        .run();
    assert_eq!(a.addresses.get("cache"), Some(&ip("10.77.0.20")));
    assert_eq!(
        rejection(&a, "db"),
        (
            "network.address".into(),
            "address 10.77.0.20 is already used by workload \"cache\"".into()
        )
    );
    assert_eq!(
        rejection(&a, "x2"),
        (
            "network.aliases[0]".into(),
            "name \"shared\" is already used by workload \"x1\"".into()
        )
    );
    assert_eq!(a.rejected.len(), 2);
}

#[test]
fn alias_cannot_take_another_workloads_name() {
    // "a" sorts before "b", but "b" is a workload's own name.
    let a = world().cand(aliases("a", &["b"])).cand(spec("b")).run();
    assert_eq!(rejection(&a, "a").0, "network.aliases[0]");
    assert!(a.addresses.contains_key("b"));
    // A non-bridged workload's name counts too.
    let host = with("h", |n| n.mode = NetworkMode::Host);
    let a = world().cand(aliases("a", &["h"])).cand(host).run();
    assert_eq!(
        rejection(&a, "a").1,
        "name \"h\" is already used by workload \"h\""
    );
    // But a running workload keeps its alias against a new workload of that name.
    let a = world()
        .holder(aliases("web", &["api"]), Some("10.77.0.9"))
        .cand(aliases("web", &["api"]))
        .cand(spec("api"))
        .run();
    assert_eq!(
        rejection(&a, "api"),
        (
            "name".into(),
            "name \"api\" is already used by workload \"web\"".into()
        )
    );
    assert_eq!(a.addresses.get("web"), Some(&ip("10.77.0.9")));
}

#[test]
fn running_holder_keeps_its_port() {
    let web = ports("web", &["8080:80"]);
    let a = world()
        .holder(web.clone(), Some("10.77.0.50"))
        .cand(web)
        .cand(ports("api", &["8080:80"]))
        .run();
    assert_eq!(
        rejection(&a, "api").1,
        "port 8080/tcp on all addresses is already published by workload \"web\""
    );
    assert_eq!(a.addresses.get("web"), Some(&ip("10.77.0.50")));
    // Even when the holder is no longer desired (stopping), it holds the port this round.
    let a = world()
        .holder(ports("web", &["8080:80"]), Some("10.77.0.50"))
        .cand(ports("api", &["8080:80"]))
        .run();
    assert!(a.rejected.contains_key("api"));
    assert_eq!(a.leases.get("web"), Some(&ip("10.77.0.50")));
}

#[test]
fn holder_with_same_claims_is_admitted() {
    let s = with("db", |n| {
        n.address = Some(ip("10.77.0.20"));
        n.ports = vec![port("5432:5432"), port("127.0.0.1:53:53/udp")];
        n.aliases = vec![Name::new("postgres").unwrap()];
    });
    let a = world().holder(s.clone(), Some("10.77.0.20")).cand(s).run();
    assert!(a.rejected.is_empty(), "{:?}", a.rejected);
    assert_eq!(a.addresses.get("db"), Some(&ip("10.77.0.20")));
}

#[test]
fn host_ip_overlap() {
    let a = world()
        .cand(ports("a", &["8080:80"]))
        .cand(ports("b", &["127.0.0.1:8080:80"]))
        .run();
    assert_eq!(
        rejection(&a, "b").1,
        "port 8080/tcp on 127.0.0.1 overlaps port 8080/tcp on all addresses, \
         already published by workload \"a\""
    );
    let a = world()
        .cand(ports("a", &["127.0.0.1:8080:80"]))
        .cand(ports("b", &["8080:80"]))
        .run();
    assert_eq!(rejection(&a, "b").0, "network.ports[0]");
    let a = world()
        .cand(ports("a", &["127.0.0.1:8080:80"]))
        .cand(ports("b", &["10.0.0.1:8080:80"]))
        .cand(ports("c", &["10.0.0.1:8080:81"]))
        .run();
    assert_eq!(a.rejected.keys().collect::<Vec<_>>(), ["c"]);
    assert!(rejection(&a, "c")
        .1
        .starts_with("port 8080/tcp on 10.0.0.1 is already published by workload \"b\""));
}

#[test]
fn udp_and_tcp_do_not_conflict() {
    let a = world()
        .cand(ports("a", &["53:53/udp"]))
        .cand(ports("b", &["53:53/tcp"]))
        .run();
    assert!(a.rejected.is_empty());
    assert_eq!(a.addresses.len(), 2);
}

#[test]
fn static_address_must_be_assignable() {
    let cases = [
        (
            "10.78.0.5",
            "address 10.78.0.5 is outside the bridge subnet 10.77.0.0/16",
        ),
        (
            "10.77.0.1",
            "address 10.77.0.1 is the bridge's own address (the gateway of 10.77.0.0/16)",
        ),
        (
            "10.77.0.0",
            "address 10.77.0.0 is the network address of 10.77.0.0/16",
        ),
        (
            "10.77.255.255",
            "address 10.77.255.255 is the broadcast address of 10.77.0.0/16",
        ),
    ];
    for (address, message) in cases {
        let a = world().cand(at("s", address)).run();
        assert_eq!(
            rejection(&a, "s"),
            ("network.address".into(), message.into())
        );
        assert!(a.addresses.is_empty() && a.leases.is_empty());
    }
}

#[test]
fn a_hostname_published_in_hosts_is_a_name_claim() {
    let mut cache = spec("cache");
    cache.hostname = "db".into();
    let a = world().cand(cache).cand(spec("db")).run();
    assert!(!a.rejected.contains_key("db"));
    let (field, message) = rejection(&a, "cache");
    assert_eq!(field, "hostname");
    assert!(
        message.contains("\"db\" is already used by workload \"db\""),
        "{message}"
    );
}
