//! Admission of network claims across workloads, and address management (IPAM).
//!
//! Every bridged workload claims an address, its published ports and its names (its own name
//! and its aliases). [`admit`] decides, deterministically, which desired specs may run:
//!
//! 1. workloads superd already holds keep what they hold (the one already running keeps it);
//! 2. then candidates claim in lexical name order (at a cold start, the lexically first file
//!    wins); a candidate whose claim is held by another workload is rejected as a whole;
//! 3. then admitted bridged candidates without a static address get one: the address they
//!    already hold, else their persisted lease, else the first free address probing linearly
//!    from a hash of the name. Static addresses of valid manifests and the leases of broken
//!    manifests are never handed out dynamically.
//!
//! The result also carries the lease table to persist and the `/etc/hosts` entries.

use super::Subnet;
use crate::manifest::{NetworkMode, Spec};
use claims::{check, reject, Taken};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

mod alloc;
mod claims;
#[cfg(test)]
mod tests;

/// A workload superd has instantiated (in any phase), with the spec it runs or would restart
/// with and the address it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The spec the workload runs (or would be restarted with).
    pub spec: Arc<Spec>,
    /// The bridge address it holds, if any.
    pub address: Option<Ipv4Addr>,
}

/// Why a candidate must not run its new spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Path of the offending field, e.g. `network.ports[1]`, `network.address`, `name`.
    pub field: String,
    /// What is wrong, naming the other workload where there is one.
    pub message: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// One `/etc/hosts` line: an address and the names that resolve to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    /// The workload's bridge address.
    pub address: Ipv4Addr,
    /// Its name, then its hostname if different, then its aliases.
    pub names: Vec<String>,
}

/// The outcome of [`admit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admission {
    /// Every admitted bridge-mode candidate and the address to start it with.
    pub addresses: BTreeMap<String, Ipv4Addr>,
    /// Candidates that must not run their new spec, with the first problem found.
    pub rejected: BTreeMap<String, Rejection>,
    /// The lease table to persist.
    pub leases: BTreeMap<String, Ipv4Addr>,
    /// `/etc/hosts` entries, sorted by address.
    pub hosts: Vec<HostEntry>,
}

/// Decides which candidates may claim their addresses, ports and names, and which address
/// each admitted bridged candidate starts with.
///
/// - `candidates`: the valid desired specs;
/// - `present`: every name with a manifest file, valid or not (a superset of the candidates);
/// - `holders`: the workloads that exist in the supervisor;
/// - `leases`: the persisted lease table.
///
/// The result depends only on the inputs, never on hash-map iteration order or time.
pub fn admit(
    subnet: &Subnet,
    candidates: &BTreeMap<String, Arc<Spec>>,
    present: &BTreeSet<String>,
    holders: &BTreeMap<String, Held>,
    leases: &BTreeMap<String, Ipv4Addr>,
) -> Admission {
    let mut entries = index(candidates, present, holders, leases);
    // A candidate that finds no free address is rejected after its ports and aliases were
    // claimed; rerun without it so those claims do not shut out anyone else. Every rerun
    // excludes at least one more candidate, so this ends.
    let mut exhausted = run(subnet, &mut entries);
    for _ in 0..candidates.len() {
        if exhausted.is_empty() {
            break;
        }
        for i in exhausted {
            entries[i].excluded = entries[i].rejection.clone();
        }
        exhausted = run(subnet, &mut entries);
    }
    output(subnet, &entries)
}

/// Everything known about one name, and what this round decided for it.
struct Entry<'a> {
    name: &'a str,
    /// Its valid desired spec.
    candidate: Option<&'a Spec>,
    /// It has a manifest file, valid or not.
    present: bool,
    held: Option<&'a Held>,
    lease: Option<Ipv4Addr>,
    /// Rejected for want of an address in an earlier round.
    excluded: Option<Rejection>,
    rejection: Option<Rejection>,
    /// The address an admitted bridged candidate starts with.
    address: Option<Ipv4Addr>,
}

impl<'a> Entry<'a> {
    fn held_address(&self) -> Option<Ipv4Addr> {
        self.held.and_then(|h| h.address)
    }

    /// The spec of an admitted candidate.
    fn admitted(&self) -> Option<&'a Spec> {
        self.candidate.filter(|_| self.rejection.is_none())
    }
}

/// One entry per name in any input, in lexical order: a merge of the four sorted inputs, so
/// that nothing later needs a lookup by name.
fn index<'a>(
    candidates: &'a BTreeMap<String, Arc<Spec>>,
    present: &'a BTreeSet<String>,
    holders: &'a BTreeMap<String, Held>,
    leases: &'a BTreeMap<String, Ipv4Addr>,
) -> Vec<Entry<'a>> {
    let mut c = candidates.iter().peekable();
    let mut p = present.iter().peekable();
    let mut h = holders.iter().peekable();
    let mut l = leases.iter().peekable();
    let mut out = Vec::with_capacity(present.len().max(candidates.len()) + holders.len());
    loop {
        let heads = [
            c.peek().map(|&(k, _)| k.as_str()),
            p.peek().map(|&k| k.as_str()),
            h.peek().map(|&(k, _)| k.as_str()),
            l.peek().map(|&(k, _)| k.as_str()),
        ];
        let Some(name) = heads.into_iter().flatten().min() else {
            break;
        };
        let candidate = c.next_if(|(k, _)| *k == name).map(|(_, s)| s.as_ref());
        let listed = p.next_if(|k| *k == name).is_some();
        out.push(Entry {
            name,
            candidate,
            present: listed || candidate.is_some(),
            held: h.next_if(|(k, _)| *k == name).map(|(_, held)| held),
            lease: l.next_if(|(k, _)| *k == name).map(|(_, a)| *a),
            excluded: None,
            rejection: None,
            address: None,
        });
    }
    out
}

fn is_bridge(spec: &Spec) -> bool {
    spec.network.mode == NetworkMode::Bridge
}

/// One round of admission; returns the indices of candidates that found no free address.
fn run(subnet: &Subnet, entries: &mut [Entry<'_>]) -> Vec<usize> {
    let mut taken = Taken::with_capacity(entries.len());
    for e in entries.iter_mut() {
        e.rejection = None;
        e.address = None;
        if let Some(held) = e.held {
            taken.claim_name(e.name, e.name);
            taken.claim_network(&held.spec, held.address, e.name);
        }
    }

    // Workload names first, so that an alias never shadows another workload's own name.
    for e in entries.iter_mut().filter(|e| e.candidate.is_some()) {
        match taken.name_owner(e.name, e.name) {
            Some(owner) => {
                let message = format!(
                    "name \"{}\" is already used by workload \"{owner}\"",
                    e.name
                );
                e.rejection = Some(reject("name".into(), message));
            }
            None => taken.claim_name(e.name, e.name),
        }
    }

    for e in entries.iter_mut() {
        let Some(spec) = e.admitted() else {
            continue;
        };
        if e.excluded.is_some() {
            e.rejection = e.excluded.clone();
        } else if is_bridge(spec) {
            match check(subnet, &taken, e.name, spec) {
                Ok(()) => taken.claim_network(spec, spec.network.address, e.name),
                Err(r) => e.rejection = Some(r),
            }
        }
    }

    alloc::assign(subnet, entries, &taken)
}

fn output(subnet: &Subnet, entries: &[Entry<'_>]) -> Admission {
    let owned = |(e, a): (&Entry<'_>, Ipv4Addr)| (e.name.to_string(), a);
    Admission {
        addresses: entries
            .iter()
            .filter_map(|e| e.address.map(|a| (e, a)))
            .map(owned)
            .collect(),
        rejected: entries
            .iter()
            .filter_map(|e| Some((e.name.to_string(), e.rejection.clone()?)))
            .collect(),
        leases: lease_table(subnet, entries)
            .filter_map(|(e, a)| a.map(|a| (e, a)))
            .map(owned)
            .collect(),
        hosts: host_entries(entries),
    }
}

/// Each entry's lease: its admitted address, else the address it holds, else its old lease
/// if it still has a manifest and nobody else uses that address.
fn lease_table<'e, 'a>(
    subnet: &Subnet,
    entries: &'e [Entry<'a>],
) -> impl Iterator<Item = (&'e Entry<'a>, Option<Ipv4Addr>)> {
    let mut chosen: Vec<Option<Ipv4Addr>> = entries
        .iter()
        .map(|e| e.address.or(e.held_address()))
        .collect();
    let mut used: HashSet<Ipv4Addr> = chosen.iter().flatten().copied().collect();
    for (e, slot) in entries.iter().zip(chosen.iter_mut()) {
        if let (None, true, Some(a)) = (*slot, e.present, e.lease) {
            if subnet.is_assignable(a) && used.insert(a) {
                *slot = Some(a);
            }
        }
    }
    entries.iter().zip(chosen)
}

fn names_of(spec: &Spec) -> Vec<String> {
    let mut names = vec![spec.name.as_str().to_string()];
    let more = std::iter::once(spec.hostname.as_str())
        .chain(spec.network.aliases.iter().map(|a| a.as_str()));
    for n in more {
        if !n.is_empty() && !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    }
    names
}

/// Admitted bridged candidates, then holders that were not admitted but hold an address;
/// sorted by address, ties in name order.
fn host_entries(entries: &[Entry<'_>]) -> Vec<HostEntry> {
    let mut hosts: Vec<HostEntry> = entries
        .iter()
        .filter_map(|e| match (e.address, e.admitted(), e.held) {
            (Some(address), Some(spec), _) => Some(HostEntry {
                address,
                names: names_of(spec),
            }),
            (None, _, Some(held)) => held.address.map(|address| HostEntry {
                address,
                names: names_of(&held.spec),
            }),
            _ => None,
        })
        .collect();
    hosts.sort_by_key(|h| h.address);
    hosts
}

/// Where linear probing for `name` starts: the first four bytes of SHA-256 of the name,
/// big-endian, modulo the number of assignable addresses.
fn probe_start(name: &str, host_count: u32) -> u32 {
    let d = Sha256::digest(name.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % host_count.max(1)
}
