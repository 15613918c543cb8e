//! The persisted lease table: which workload had which dynamic address, so that a workload
//! keeps its address across restarts of itself and of superd.
//!
//! Format (pretty JSON): `{"subnet": "10.77.0.0/16", "leases": {"web": "10.77.0.7"}}`.

use super::Subnet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Serialize, Deserialize)]
struct LeaseFile {
    subnet: String,
    #[serde(default)]
    leases: BTreeMap<String, String>,
}

/// Serialises the lease table of `subnet` as pretty JSON with a trailing newline.
pub fn encode_leases(subnet: &Subnet, leases: &BTreeMap<String, Ipv4Addr>) -> String {
    let file = LeaseFile {
        subnet: subnet.to_string(),
        leases: leases
            .iter()
            .map(|(name, ip)| (name.clone(), ip.to_string()))
            .collect(),
    };
    // Serialising strings in maps cannot fail; fall back to an empty table rather than panic.
    let mut text = serde_json::to_string_pretty(&file)
        .unwrap_or_else(|_| format!("{{\"subnet\": \"{subnet}\", \"leases\": {{}}}}"));
    text.push('\n');
    text
}

/// Parses a lease table written by [`encode_leases`]. Entries whose address is not an
/// assignable address of `subnet` are dropped, and so is everything when the file was written
/// for a different subnet. Only text that is not a lease file at all is an error.
pub fn decode_leases(text: &str, subnet: &Subnet) -> Result<BTreeMap<String, Ipv4Addr>, String> {
    let file: LeaseFile =
        serde_json::from_str(text).map_err(|e| format!("not a superd lease file: {e}"))?;
    let recorded: Option<Subnet> = file.subnet.parse().ok();
    if recorded != Some(*subnet) {
        return Ok(BTreeMap::new());
    }
    Ok(file
        .leases
        .into_iter()
        .filter_map(|(name, ip)| {
            let ip: Ipv4Addr = ip.parse().ok()?;
            subnet.is_assignable(ip).then_some((name, ip))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet() -> Subnet {
        "10.77.0.0/16".parse().unwrap()
    }

    fn table(entries: &[(&str, &str)]) -> BTreeMap<String, Ipv4Addr> {
        entries
            .iter()
            .map(|(n, ip)| (n.to_string(), ip.parse().unwrap()))
            .collect()
    }

    #[test]
    fn encodes_pretty_json() {
        let text = encode_leases(&subnet(), &table(&[("web", "10.77.0.7")]));
        assert_eq!(
            text,
            "{\n  \"subnet\": \"10.77.0.0/16\",\n  \"leases\": {\n    \"web\": \"10.77.0.7\"\n  }\n}\n"
        );
    }

    #[test]
    fn round_trips() {
        let leases = table(&[
            ("web", "10.77.0.7"),
            ("db", "10.77.3.9"),
            ("a", "10.77.255.254"),
        ]);
        let text = encode_leases(&subnet(), &leases);
        assert_eq!(decode_leases(&text, &subnet()), Ok(leases));
        let empty = encode_leases(&subnet(), &BTreeMap::new());
        assert_eq!(decode_leases(&empty, &subnet()), Ok(BTreeMap::new()));
    }

    #[test]
    fn drops_addresses_outside_the_subnet() {
        let text = r#"{"subnet":"10.77.0.0/16","leases":{
            "ok":"10.77.0.9","out":"10.78.0.9","gw":"10.77.0.1","net":"10.77.0.0",
            "bcast":"10.77.255.255","junk":"not-an-ip"}}"#;
        assert_eq!(
            decode_leases(text, &subnet()),
            Ok(table(&[("ok", "10.77.0.9")]))
        );
    }

    #[test]
    fn different_subnet_drops_everything() {
        let other: Subnet = "10.77.0.0/24".parse().unwrap();
        let text = encode_leases(&other, &table(&[("web", "10.77.0.7")]));
        assert_eq!(decode_leases(&text, &subnet()), Ok(BTreeMap::new()));
        let text = r#"{"subnet":"garbage","leases":{"web":"10.77.0.7"}}"#;
        assert_eq!(decode_leases(text, &subnet()), Ok(BTreeMap::new()));
    }

    #[test]
    fn malformed_text_is_an_error() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"leases":{}}"#,
            r#"{"subnet":"10.77.0.0/16","leases":[]}"#,
        ] {
            let err = decode_leases(bad, &subnet()).unwrap_err();
            assert!(err.starts_with("not a superd lease file"), "{bad}: {err}");
        }
    }
}
