//! The supervisor's network bookkeeping: runs the pure admission (`network::admit`) over the
//! desired set and the workloads that exist, turns rejections into positioned manifest errors,
//! and persists leases and the shared hosts file when they change.

use super::workload::Workload;
use crate::manifest::{self, Desired, ManifestError, Spec};
use crate::network::{self, Admission, Held};
use crate::runtime::net::Network;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Leases, the last admission and what was last written.
#[derive(Debug, Default)]
pub struct NetState {
    leases: BTreeMap<String, Ipv4Addr>,
    addresses: BTreeMap<String, Ipv4Addr>,
    rejections: BTreeMap<String, ManifestError>,
    hosts: Option<String>,
    lease_error: Option<String>,
}

impl NetState {
    /// Starts from the persisted leases.
    pub fn new(network: Option<&Network>) -> NetState {
        NetState {
            leases: network.map(|n| n.load_leases()).unwrap_or_default(),
            ..NetState::default()
        }
    }

    /// The address a bridged workload gets when it starts now.
    pub fn address(&self, name: &str) -> Option<Ipv4Addr> {
        self.addresses.get(name).copied()
    }

    /// Why a valid manifest may not run (a port, address or name another workload holds).
    pub fn rejection(&self, name: &str) -> Option<&ManifestError> {
        self.rejections.get(name)
    }

    /// Admits the valid specs of `desired` against each other and against `workloads`; returns
    /// the specs the planner may run (rejected ones are `None`, like an invalid manifest).
    pub fn admit(
        &mut self,
        network: Option<&Network>,
        desired: &Desired,
        workloads: &BTreeMap<String, Workload>,
    ) -> BTreeMap<String, Option<Arc<Spec>>> {
        let mut valid: BTreeMap<String, Option<Arc<Spec>>> = desired
            .iter()
            .map(|(k, e)| (k.clone(), e.spec.as_ref().ok().cloned()))
            .collect();
        let Some(network) = network else {
            return valid;
        };
        let candidates: BTreeMap<String, Arc<Spec>> = valid
            .iter()
            .filter_map(|(k, s)| s.clone().map(|s| (k.clone(), s)))
            .collect();
        let present: BTreeSet<String> = desired.keys().cloned().collect();
        let holders: BTreeMap<String, Held> = workloads
            .iter()
            .map(|(k, w)| {
                (
                    k.clone(),
                    Held {
                        spec: w.spec.clone(),
                        address: w.address,
                    },
                )
            })
            .collect();
        let Admission {
            addresses,
            rejected,
            leases,
            hosts,
        } = network::admit(
            network.subnet(),
            &candidates,
            &present,
            &holders,
            &self.leases,
        );

        let mut rejections = BTreeMap::new();
        for (name, r) in rejected {
            let Some(entry) = desired.get(&name) else {
                continue;
            };
            let err = manifest::locate(&entry.file, &entry.text, &r.field, r.message);
            if self.rejections.get(&name) != Some(&err) {
                tracing::error!(workload = %name, "manifest not applied (the workload keeps its last good spec):\n{err}");
            }
            valid.insert(name.clone(), None);
            rejections.insert(name, err);
        }
        self.rejections = rejections;
        self.addresses = addresses;

        if leases != self.leases {
            // On failure the table in memory stays the old one, so the next pass retries.
            match network.save_leases(&leases) {
                Ok(()) => {
                    self.leases = leases;
                    self.lease_error = None;
                }
                Err(e) => {
                    let e = e.to_string();
                    if self.lease_error.as_ref() != Some(&e) {
                        tracing::warn!("saving leases: {e}");
                    }
                    self.lease_error = Some(e);
                }
            }
        }
        let content = network.render_hosts(&hosts);
        if self.hosts.as_deref() != Some(content.as_str()) {
            match network.write_hosts(&content) {
                Ok(()) => self.hosts = Some(content),
                Err(e) => tracing::warn!("writing the hosts file: {e}"),
            }
        }
        valid
    }
}
