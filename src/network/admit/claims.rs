//! Claims on ports, addresses and names, and the check of a candidate against them.

use super::{is_bridge, Rejection};
use crate::manifest::{PortMapping, Protocol, Spec};
use crate::network::Subnet;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Claims on one protocol and host port: the host address (`None` = all) and the claimant.
type PortClaims<'a> = Vec<(Option<Ipv4Addr>, &'a str)>;

/// Who claimed what so far; the first claimant of anything keeps it. Everything is borrowed
/// from the inputs of `admit`.
pub(super) struct Taken<'a> {
    pub(super) addresses: HashMap<Ipv4Addr, &'a str>,
    names: HashMap<&'a str, &'a str>,
    ports: HashMap<(Protocol, u16), PortClaims<'a>>,
}

impl<'a> Taken<'a> {
    /// Room for about `n` workloads without rehashing.
    pub(super) fn with_capacity(n: usize) -> Self {
        Taken {
            addresses: HashMap::with_capacity(n),
            names: HashMap::with_capacity(2 * n),
            ports: HashMap::with_capacity(n),
        }
    }

    pub(super) fn claim_name(&mut self, name: &'a str, owner: &'a str) {
        self.names.entry(name).or_insert(owner);
    }

    /// Claims the address, ports, hostname (when it differs from the name) and aliases of a
    /// bridged spec (not its name): all of them are published in the shared /etc/hosts.
    pub(super) fn claim_network(
        &mut self,
        spec: &'a Spec,
        address: Option<Ipv4Addr>,
        owner: &'a str,
    ) {
        if let Some(a) = address {
            self.addresses.entry(a).or_insert(owner);
        }
        if !is_bridge(spec) {
            return;
        }
        for p in &spec.network.ports {
            self.ports
                .entry((p.protocol, p.host_port))
                .or_default()
                .push((p.host_ip, owner));
        }
        if spec.hostname != spec.name.as_str() {
            self.claim_name(spec.hostname.as_str(), owner);
        }
        for alias in &spec.network.aliases {
            self.claim_name(alias.as_str(), owner);
        }
    }

    pub(super) fn name_owner(&self, name: &str, me: &str) -> Option<&'a str> {
        self.names.get(name).copied().filter(|o| *o != me)
    }

    pub(super) fn address_owner(&self, address: Ipv4Addr, me: &str) -> Option<&'a str> {
        self.addresses.get(&address).copied().filter(|o| *o != me)
    }

    pub(super) fn port_conflict(
        &self,
        p: &PortMapping,
        me: &str,
    ) -> Option<(Option<Ipv4Addr>, &'a str)> {
        self.ports
            .get(&(p.protocol, p.host_port))?
            .iter()
            .find(|(ip, owner)| *owner != me && overlaps(*ip, p.host_ip))
            .copied()
    }
}

/// Two host addresses overlap when equal or when either is "every address".
fn overlaps(a: Option<Ipv4Addr>, b: Option<Ipv4Addr>) -> bool {
    a.is_none() || b.is_none() || a == b
}

fn on(ip: Option<Ipv4Addr>) -> String {
    match ip {
        None => "all addresses".to_string(),
        Some(ip) => ip.to_string(),
    }
}

pub(super) fn reject(field: String, message: String) -> Rejection {
    Rejection { field, message }
}

/// A static address that is not assignable in `subnet`, described.
fn bad_static(subnet: &Subnet, a: Ipv4Addr) -> Option<String> {
    if !subnet.contains(a) {
        Some(format!("address {a} is outside the bridge subnet {subnet}"))
    } else if a == subnet.network() {
        Some(format!("address {a} is the network address of {subnet}"))
    } else if a == subnet.gateway() {
        Some(format!(
            "address {a} is the bridge's own address (the gateway of {subnet})"
        ))
    } else if a == subnet.broadcast() {
        Some(format!("address {a} is the broadcast address of {subnet}"))
    } else {
        None
    }
}

/// The first claim of a bridged candidate that is unusable or held by someone else.
pub(super) fn check(
    subnet: &Subnet,
    taken: &Taken<'_>,
    name: &str,
    spec: &Spec,
) -> Result<(), Rejection> {
    if let Some(a) = spec.network.address {
        if let Some(why) = bad_static(subnet, a) {
            return Err(reject("network.address".into(), why));
        }
        if let Some(owner) = taken.address_owner(a, name) {
            return Err(reject(
                "network.address".into(),
                format!("address {a} is already used by workload \"{owner}\""),
            ));
        }
    }
    for (i, p) in spec.network.ports.iter().enumerate() {
        if let Some((ip, owner)) = taken.port_conflict(p, name) {
            let what = format!("port {}/{}", p.host_port, p.protocol.as_str());
            let message = if ip == p.host_ip {
                format!(
                    "{what} on {} is already published by workload \"{owner}\"",
                    on(ip)
                )
            } else {
                format!(
                    "{what} on {} overlaps {what} on {}, already published by workload \
                     \"{owner}\"",
                    on(p.host_ip),
                    on(ip)
                )
            };
            return Err(reject(format!("network.ports[{i}]"), message));
        }
    }
    if spec.hostname != spec.name.as_str() {
        if let Some(owner) = taken.name_owner(&spec.hostname, name) {
            return Err(reject(
                "hostname".into(),
                format!(
                    "name \"{}\" is already used by workload \"{owner}\" (a bridged \
                     workload's hostname is published in /etc/hosts)",
                    spec.hostname
                ),
            ));
        }
    }
    for (i, alias) in spec.network.aliases.iter().enumerate() {
        if let Some(owner) = taken.name_owner(alias.as_str(), name) {
            return Err(reject(
                format!("network.aliases[{i}]"),
                format!("name \"{alias}\" is already used by workload \"{owner}\""),
            ));
        }
    }
    Ok(())
}
