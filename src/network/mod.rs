//! Pure network decisions for superd: addressing, admission of claims, file contents and
//! firewall text.
//!
//! Nothing here performs I/O. The side-effect half lives in `runtime::net`, which feeds these
//! functions what it read and applies what they return:
//!
//! - [`subnet`]: the bridge subnet and its address arithmetic;
//! - [`admit`](mod@admit): which desired workloads may claim which addresses, published ports
//!   and names, and the address each one starts with (deterministic IPAM);
//! - [`files`]: the shared `/etc/hosts` and `/etc/resolv.conf` given to bridged containers;
//! - [`nft`]: the nftables script for the bridge's table and its port-publishing elements;
//! - [`leases`]: the persisted lease table;
//! - [`check`]: claim conflicts among the files of a directory, for `superctl validate`;
//! - [`veth_name`], [`table_name`], [`link_alias`]: the names of the kernel objects superd owns.

pub mod admit;
pub mod check;
pub mod files;
pub mod leases;
pub mod nft;
pub mod subnet;

pub use admit::{admit, Admission, Held, HostEntry, Rejection};
pub use check::claim_errors;
pub use leases::{decode_leases, encode_leases};
pub use subnet::{Subnet, SubnetError};

use sha2::{Digest, Sha256};

/// Prefix of every link alias superd sets, so its links can be found again after a crash.
pub const ALIAS_PREFIX: &str = "superd:";

/// The host-side veth name of `workload` on `bridge`: `sd` and the first 12 hex digits of
/// SHA-256 of `"{bridge}/{workload}"` (14 characters, within IFNAMSIZ).
pub fn veth_name(bridge: &str, workload: &str) -> String {
    let digest = Sha256::digest(format!("{bridge}/{workload}").as_bytes());
    let mut name = String::from("sd");
    for b in digest.iter().take(6) {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// The nftables table of `bridge`: `superd_` and the bridge name, with every byte other than
/// ASCII letters and digits written as `_xx` (hex), so distinct bridges never share a table
/// (`br-0` → `superd_br_2d0`, `br_0` → `superd_br_5f0`).
pub fn table_name(bridge: &str) -> String {
    let mut name = String::from("superd_");
    for b in bridge.bytes() {
        if b.is_ascii_alphanumeric() {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("_{b:02x}"));
        }
    }
    name
}

/// The MAC address of the workload with `address` (as Docker derives it: `02:42` and the
/// four address bytes; locally administered, unicast). A restarted workload keeps its address
/// and so its MAC, and the host's and its peers' neighbour entries stay right.
pub fn mac_for(address: std::net::Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

/// The alias that marks a link as superd's: `superd:{bridge}` on the bridge it created, and
/// `superd:{bridge}:{workload}` for per-workload links (removed at start-up if found; workload
/// veths currently carry no alias, see `runtime::net`).
pub fn link_alias(bridge: &str, workload: Option<&str>) -> String {
    match workload {
        Some(w) => format!("{ALIAS_PREFIX}{bridge}:{w}"),
        None => format!("{ALIAS_PREFIX}{bridge}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_ifnamsiz() {
        let a = veth_name("superd0", "web");
        assert_eq!(a.len(), 14);
        assert!(a.starts_with("sd"));
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, veth_name("superd0", "web"), "deterministic");
        assert_ne!(a, veth_name("superd1", "web"));
        assert_ne!(a, veth_name("superd0", "web2"));
        assert!(veth_name("superd0", &"x".repeat(63)).len() <= 15);
    }

    #[test]
    fn veth_name_is_sha256_prefix() {
        // Expected values from coreutils: printf 'br/w' | sha256sum
        assert_eq!(veth_name("br", "w"), "sd3257d581646c");
        assert_eq!(veth_name("superd0", "web"), "sdd4a7261f4565");
    }

    #[test]
    fn table_names_are_sanitised() {
        assert_eq!(table_name("superd0"), "superd_superd0");
        assert_eq!(table_name("br-lan.2"), "superd_br_2dlan_2e2");
        assert_eq!(table_name("a_B9"), "superd_a_5fB9");
        assert_ne!(table_name("br-0"), table_name("br_0"));
        assert_eq!(table_name("bré"), "superd_br_c3_a9");
    }

    #[test]
    fn link_aliases() {
        assert_eq!(link_alias("superd0", None), "superd:superd0");
        assert_eq!(link_alias("superd0", Some("web")), "superd:superd0:web");
    }

    #[test]
    fn macs_follow_addresses() {
        let mac = mac_for("10.77.0.20".parse().unwrap());
        assert_eq!(mac, [0x02, 0x42, 10, 77, 0, 20]);
        assert_eq!(mac[0] & 0x03, 0x02, "locally administered unicast");
    }
}
