//! Unit tests for `admit`: shared builders; the tests are in `claims` (conflicts between
//! workloads) and `ipam` (address management, leases and hosts entries).

mod claims;
mod ipam;

use super::*;
use crate::manifest::{Name, Network, PortMapping, Protocol};

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub(super) fn net() -> Subnet {
    "10.77.0.0/16".parse().unwrap()
}

/// `[ip:]host:container[/proto]`.
pub(super) fn port(s: &str) -> PortMapping {
    let (s, protocol) = match s.split_once('/') {
        Some((s, "udp")) => (s, Protocol::Udp),
        Some((s, _)) => (s, Protocol::Tcp),
        None => (s, Protocol::Tcp),
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (host_ip, rest) = match parts.len() {
        3 => (Some(ip(parts[0])), &parts[1..]),
        _ => (None, &parts[..]),
    };
    PortMapping {
        host_ip,
        host_port: rest[0].parse().unwrap(),
        container_port: rest[1].parse().unwrap(),
        protocol,
    }
}

pub(super) fn spec(name: &str) -> Spec {
    Spec::with_defaults(Name::new(name).unwrap(), vec!["true".into()])
}

pub(super) fn with(name: &str, f: impl FnOnce(&mut Network)) -> Spec {
    let mut s = spec(name);
    f(&mut s.network);
    s
}

pub(super) fn ports(name: &str, p: &[&str]) -> Spec {
    with(name, |n| n.ports = p.iter().map(|s| port(s)).collect())
}

pub(super) fn at(name: &str, address: &str) -> Spec {
    with(name, |n| n.address = Some(ip(address)))
}

pub(super) fn aliases(name: &str, a: &[&str]) -> Spec {
    with(name, |n| {
        n.aliases = a.iter().map(|s| Name::new(s).unwrap()).collect()
    })
}

#[derive(Clone)]
pub(super) struct World {
    pub(super) subnet: Subnet,
    pub(super) candidates: BTreeMap<String, Arc<Spec>>,
    pub(super) present: BTreeSet<String>,
    pub(super) holders: BTreeMap<String, Held>,
    pub(super) leases: BTreeMap<String, Ipv4Addr>,
}

pub(super) fn world() -> World {
    World {
        subnet: net(),
        candidates: BTreeMap::new(),
        present: BTreeSet::new(),
        holders: BTreeMap::new(),
        leases: BTreeMap::new(),
    }
}

impl World {
    pub(super) fn subnet(mut self, s: &str) -> Self {
        self.subnet = s.parse().unwrap();
        self
    }
    pub(super) fn cand(mut self, s: Spec) -> Self {
        let name = s.name.as_str().to_string();
        self.present.insert(name.clone());
        self.candidates.insert(name, Arc::new(s));
        self
    }
    pub(super) fn broken(mut self, name: &str) -> Self {
        self.present.insert(name.into());
        self
    }
    pub(super) fn holder(mut self, s: Spec, address: Option<&str>) -> Self {
        let held = Held {
            spec: Arc::new(s),
            address: address.map(ip),
        };
        self.holders.insert(held.spec.name.as_str().into(), held);
        self
    }
    pub(super) fn lease(mut self, name: &str, address: &str) -> Self {
        self.leases.insert(name.into(), ip(address));
        self
    }
    pub(super) fn run(&self) -> Admission {
        let a = admit(
            &self.subnet,
            &self.candidates,
            &self.present,
            &self.holders,
            &self.leases,
        );
        assert_eq!(
            a,
            admit(
                &self.subnet,
                &self.candidates,
                &self.present,
                &self.holders,
                &self.leases
            ),
            "deterministic"
        );
        a
    }
}

pub(super) fn rejection(a: &Admission, name: &str) -> (String, String) {
    let r = a
        .rejected
        .get(name)
        .unwrap_or_else(|| panic!("{name} admitted: {a:?}"));
    (r.field.clone(), r.message.clone())
}
