//! Offline claim checking for `superctl validate`: the manifests of one directory admitted
//! against each other as at a cold start (nothing running, no leases), so two files claiming
//! the same port, address or name are caught before superd sees them.

use super::{admit, Subnet};
use crate::manifest::{self, Desired, ManifestError, Spec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Every claim conflict among the valid manifests of `desired`, positioned in the losing file
/// (at a cold start the lexically first file wins).
pub fn claim_errors(subnet: &Subnet, desired: &Desired) -> Vec<ManifestError> {
    let candidates: BTreeMap<String, Arc<Spec>> = desired
        .iter()
        .filter_map(|(k, e)| e.spec.as_ref().ok().map(|s| (k.clone(), s.clone())))
        .collect();
    let present: BTreeSet<String> = desired.keys().cloned().collect();
    let admission = admit(
        subnet,
        &candidates,
        &present,
        &BTreeMap::new(),
        &BTreeMap::new(),
    );
    admission
        .rejected
        .into_iter()
        .filter_map(|(name, r)| {
            let entry = desired.get(&name)?;
            Some(manifest::locate(
                &entry.file,
                &entry.text,
                &r.field,
                r.message,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_port_claimed_twice_is_reported_in_the_later_file() {
        let dir = tempfile::tempdir().unwrap();
        let web = "command = [\"x\"]\n[network]\nports = [\"8080:80\"]\n";
        std::fs::write(dir.path().join("web.toml"), web).unwrap();
        std::fs::write(dir.path().join("api.toml"), web).unwrap();
        std::fs::write(dir.path().join("db.toml"), "command = [\"x\"]\n").unwrap();
        let desired = manifest::load_dir(dir.path()).unwrap();
        let subnet: Subnet = "10.77.0.0/16".parse().unwrap();
        let errors = claim_errors(&subnet, &desired);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].file, dir.path().join("web.toml"));
        let text = format!("{:#}", errors[0]);
        assert!(
            text.ends_with("web.toml:3:10: network.ports[0]: port 8080/tcp on all addresses is already published by workload \"api\""),
            "{text}"
        );
        assert!(claim_errors(
            &subnet,
            &manifest::load_dir(Path::new("/nonexistent")).unwrap_or_default()
        )
        .is_empty());
    }
}
