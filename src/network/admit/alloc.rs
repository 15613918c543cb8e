//! Address assignment for admitted bridged candidates (the IPAM half of `admit`).
//!
//! Off limits to dynamic allocation: addresses held by any holder, static addresses of every
//! valid manifest, and the leases of names whose manifest is present but invalid. Leases of
//! other names that still have a manifest (rejected or no longer bridged) are avoided while
//! any other address is free.

use super::{is_bridge, probe_start, reject, Entry, Taken};
use crate::network::Subnet;
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Free assignable addresses, tracked so that exhaustion is known without scanning.
struct Pool<'a> {
    subnet: &'a Subnet,
    used: HashSet<Ipv4Addr>,
    /// Assignable addresses not in `used`.
    free: u64,
    /// Addresses to avoid while anything else is free.
    soft: HashSet<Ipv4Addr>,
    /// Members of `soft` not in `used`.
    soft_free: u64,
}

impl Pool<'_> {
    /// Marks `a` used; false if it was not assignable or already used.
    fn take(&mut self, a: Ipv4Addr) -> bool {
        if !self.subnet.is_assignable(a) || !self.used.insert(a) {
            return false;
        }
        self.free = self.free.saturating_sub(1);
        if self.soft.contains(&a) {
            self.soft_free = self.soft_free.saturating_sub(1);
        }
        true
    }

    fn is_free(&self, a: Ipv4Addr) -> bool {
        self.subnet.is_assignable(a) && !self.used.contains(&a)
    }

    /// The first free address probing linearly (wrapping) from the hash of `name`.
    fn allocate(&mut self, name: &str) -> Option<Ipv4Addr> {
        if self.free == 0 {
            return None;
        }
        let avoid_soft = self.free > self.soft_free;
        let count = self.subnet.host_count();
        let start = probe_start(name, count);
        for k in 0..count {
            // start < count and k < count, both below 2^24: no overflow.
            let a = self.subnet.nth_host((start + k) % count);
            if self.used.contains(&a) || (avoid_soft && self.soft.contains(&a)) {
                continue;
            }
            self.take(a);
            return Some(a);
        }
        None
    }
}

/// Gives every admitted bridged candidate its address. Candidates left without one are
/// rejected, and their indices returned.
pub(super) fn assign(subnet: &Subnet, entries: &mut [Entry<'_>], taken: &Taken<'_>) -> Vec<usize> {
    let mut pool = Pool {
        subnet,
        used: HashSet::with_capacity(entries.len()),
        free: u64::from(subnet.host_count()),
        soft: HashSet::new(),
        soft_free: 0,
    };
    // Held and admitted static addresses, every valid static claim, and the leases of broken
    // manifests. Only membership matters here, not who claimed first.
    for &a in taken.addresses.keys() {
        pool.take(a);
    }
    for e in entries.iter() {
        match e.candidate {
            Some(spec) if is_bridge(spec) => {
                if let Some(a) = spec.network.address {
                    pool.take(a);
                }
            }
            Some(_) => {}
            None if e.present => {
                if let Some(a) = e.lease {
                    pool.take(a);
                }
            }
            None => {}
        }
    }

    let mut pending = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let Some(spec) = e.admitted().filter(|s| is_bridge(s)) else {
            continue;
        };
        let held = e.held_address().filter(|a| subnet.is_assignable(*a));
        match spec.network.address.or(held) {
            Some(a) => e.address = Some(a),
            None => pending.push(i),
        }
    }
    // Persisted leases before any hashing, so that nobody's lease is handed to another.
    let mut hashed = Vec::new();
    for i in pending {
        let e = &mut entries[i];
        match e.lease {
            Some(a) if pool.is_free(a) => {
                pool.take(a);
                e.address = Some(a);
            }
            _ => hashed.push(i),
        }
    }
    // Rejected or no longer bridged candidates: the lease table keeps their lease if free.
    for e in entries.iter() {
        if let (Some(_), None, None, Some(a)) = (e.candidate, e.address, e.held_address(), e.lease)
        {
            if pool.is_free(a) && pool.soft.insert(a) {
                pool.soft_free += 1;
            }
        }
    }

    let mut exhausted = Vec::new();
    for i in hashed {
        let e = &mut entries[i];
        match pool.allocate(e.name) {
            Some(a) => e.address = Some(a),
            None => {
                let message = format!(
                    "no free address left in {subnet} ({} addresses, all in use)",
                    subnet.host_count()
                );
                e.rejection = Some(reject("network".into(), message));
                exhausted.push(i);
            }
        }
    }
    exhausted
}
