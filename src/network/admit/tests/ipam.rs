//! Address management: holders, leases, static reservations, exhaustion and hosts entries.

use super::*;

#[test]
fn leases_are_reused_across_calls() {
    let w = world().cand(spec("web")).cand(spec("db")).cand(spec("api"));
    let first = w.run();
    assert_eq!(first.leases, first.addresses);
    let mut w = w.cand(spec("zzz")).cand(spec("aaa"));
    w.leases = first.leases.clone();
    let second = w.run();
    for name in ["web", "db", "api"] {
        assert_eq!(
            second.addresses.get(name),
            first.addresses.get(name),
            "{name}"
        );
    }
    assert_eq!(second.addresses.len(), 5);
    // The hashed start makes the first allocation independent of other names.
    let alone = world().cand(spec("zzz")).run();
    assert_eq!(alone.addresses.get("zzz"), second.addresses.get("zzz"));
}

#[test]
fn holder_keeps_its_address_over_its_lease() {
    let a = world()
        .holder(spec("web"), Some("10.77.3.3"))
        .cand(spec("web"))
        .lease("web", "10.77.4.4")
        .run();
    assert_eq!(a.addresses.get("web"), Some(&ip("10.77.3.3")));
    assert_eq!(a.leases.get("web"), Some(&ip("10.77.3.3")));
}

#[test]
fn static_claim_moves_a_persisted_lease() {
    let a = world()
        .cand(spec("old"))
        .cand(at("st", "10.77.0.9"))
        .lease("old", "10.77.0.9")
        .run();
    assert_eq!(a.addresses.get("st"), Some(&ip("10.77.0.9")));
    let moved = a.addresses.get("old").copied().unwrap();
    assert_ne!(moved, ip("10.77.0.9"));
    assert_eq!(a.leases.get("old"), Some(&moved));
    // Lexical order does not matter: statics are reserved before any dynamic allocation.
    let a = world()
        .cand(spec("zz"))
        .cand(at("aa", "10.77.0.9"))
        .lease("zz", "10.77.0.9")
        .run();
    assert_ne!(a.addresses.get("zz"), Some(&ip("10.77.0.9")));
    // A broken manifest's lease is given up to the static claim.
    let a = world()
        .broken("old")
        .cand(at("st", "10.77.0.9"))
        .lease("old", "10.77.0.9")
        .run();
    assert_eq!(a.leases.get("st"), Some(&ip("10.77.0.9")));
    assert!(!a.leases.contains_key("old"));
}

#[test]
fn rejected_static_is_still_not_handed_out() {
    // "b" wants .9 but loses its port; "a"'s lease at .9 must still move.
    let b = with("b", |n| {
        n.address = Some(ip("10.77.0.9"));
        n.ports = vec![port("80:80")];
    });
    let a = world()
        .cand(ports("a", &["80:80"]))
        .cand(b)
        .lease("a", "10.77.0.9")
        .run();
    assert!(a.rejected.contains_key("b"));
    assert_ne!(a.addresses.get("a"), Some(&ip("10.77.0.9")));
}

#[test]
fn many_candidates_get_unique_addresses() {
    let mut w = world().subnet("10.77.0.0/24");
    for i in 0..200 {
        w = w.cand(spec(&format!("w{i}")));
    }
    let a = w.run();
    assert!(a.rejected.is_empty());
    assert_eq!(a.addresses.len(), 200);
    let unique: BTreeSet<_> = a.addresses.values().collect();
    assert_eq!(unique.len(), 200);
    assert!(a.addresses.values().all(|ip| w.subnet.is_assignable(*ip)));
    assert_eq!(a.hosts.len(), 200);
    assert!(a.hosts.windows(2).all(|p| p[0].address < p[1].address));
}

#[test]
fn five_hundred_candidates_with_ports_and_aliases_are_all_admitted() {
    // Speed is measured by benches/network.sh, not asserted here.
    let mut w = world();
    for i in 0..500 {
        let mut s = ports(&format!("w{i:03}"), &[&format!("{}:80", 10000 + i)]);
        s.network.aliases = vec![Name::new(&format!("alias{i}")).unwrap()];
        w = w.cand(s);
    }
    let a = admit(&w.subnet, &w.candidates, &w.present, &w.holders, &w.leases);
    assert_eq!(a.addresses.len(), 500);
    assert!(a.rejected.is_empty());
}

#[test]
fn exhaustion_is_a_rejection() {
    let a = world()
        .subnet("192.168.9.4/30")
        .cand(spec("a"))
        .cand(spec("b"))
        .run();
    assert_eq!(a.addresses.get("a"), Some(&ip("192.168.9.6")));
    assert_eq!(
        rejection(&a, "b"),
        (
            "network".into(),
            "no free address left in 192.168.9.4/30 (1 addresses, all in use)".into()
        )
    );
    assert!(!a.leases.contains_key("b"));
}

#[test]
fn exhausted_candidate_does_not_keep_its_ports() {
    // .2-.5 are static, .6 is held by "z"; "e" finds no address, so "z" gets port 8080.
    let mut w = world().subnet("10.0.0.0/29");
    for (n, i) in [("a", 2), ("b", 3), ("c", 4), ("d", 5)] {
        w = w.cand(at(n, &format!("10.0.0.{i}")));
    }
    let a = w
        .holder(spec("z"), Some("10.0.0.6"))
        .cand(ports("z", &["8080:80"]))
        .cand(ports("e", &["8080:80"]))
        .run();
    assert_eq!(rejection(&a, "e").0, "network");
    assert!(!a.rejected.contains_key("z"), "{:?}", a.rejected);
    assert_eq!(a.addresses.get("z"), Some(&ip("10.0.0.6")));
}

#[test]
fn removed_names_lose_their_leases() {
    let a = world()
        .subnet("192.168.9.4/30")
        .cand(spec("new"))
        .lease("gone", "192.168.9.6")
        .run();
    assert_eq!(a.addresses.get("new"), Some(&ip("192.168.9.6")));
    assert_eq!(a.leases.keys().collect::<Vec<_>>(), ["new"]);
}

#[test]
fn broken_manifests_keep_their_leases() {
    let a = world()
        .subnet("192.168.9.4/30")
        .broken("broken")
        .cand(spec("new"))
        .lease("broken", "192.168.9.6")
        .run();
    assert_eq!(rejection(&a, "new").0, "network");
    assert_eq!(a.leases.get("broken"), Some(&ip("192.168.9.6")));
    // In a /29 with four of five addresses leased to broken manifests, the fifth is used.
    let mut w = world().subnet("10.0.0.0/29").cand(spec("new"));
    for i in 2..=5 {
        let name = format!("broken{i}");
        w = w.broken(&name).lease(&name, &format!("10.0.0.{i}"));
    }
    let a = w.run();
    assert_eq!(a.addresses.get("new"), Some(&ip("10.0.0.6")));
    assert_eq!(a.leases.len(), 5);
}

#[test]
fn rejected_candidates_keep_leases_while_free() {
    let a = world()
        .subnet("10.0.0.0/29")
        .cand(ports("a", &["80:80"]))
        .cand(ports("b", &["80:80"]))
        .lease("b", "10.0.0.3")
        .run();
    assert!(a.rejected.contains_key("b"));
    assert_eq!(a.leases.get("b"), Some(&ip("10.0.0.3")));
    assert_ne!(a.addresses.get("a"), Some(&ip("10.0.0.3")));
}

#[test]
fn non_bridge_candidates_get_no_address() {
    let host = with("h", |n| n.mode = NetworkMode::Host);
    let none = with("n", |n| n.mode = NetworkMode::None);
    let a = world()
        .subnet("192.168.9.4/30")
        .cand(host)
        .cand(none)
        .cand(spec("b"))
        .run();
    assert!(a.rejected.is_empty());
    assert_eq!(a.addresses.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(a.hosts.len(), 1);
}

#[test]
fn hosts_entries() {
    let mut web = aliases("web", &["www", "front"]);
    web.hostname = "www".into();
    let mut db = at("db", "10.77.0.3");
    db.hostname = "database".into();
    let a = world()
        .cand(web)
        .cand(db)
        .holder(aliases("old", &["legacy"]), Some("10.77.0.2"))
        .lease("web", "10.77.0.200")
        .run();
    assert_eq!(
        a.hosts,
        vec![
            HostEntry {
                address: ip("10.77.0.2"),
                names: vec!["old".into(), "legacy".into()],
            },
            HostEntry {
                address: ip("10.77.0.3"),
                names: vec!["db".into(), "database".into()],
            },
            HostEntry {
                address: ip("10.77.0.200"),
                names: vec!["web".into(), "www".into(), "front".into()],
            },
        ]
    );
    assert_eq!(a.leases.len(), 3);
}

#[test]
fn rejected_holder_keeps_what_it_holds() {
    let a = world()
        .holder(spec("b"), Some("10.77.0.40"))
        .cand(ports("a", &["80:80"]))
        .cand(ports("b", &["80:80"]))
        .run();
    assert!(a.rejected.contains_key("b"));
    assert_eq!(a.leases.get("b"), Some(&ip("10.77.0.40")));
    assert!(a.hosts.iter().any(|h| h.address == ip("10.77.0.40")));
}
