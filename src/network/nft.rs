//! nftables scripts (for `nft -f -`, nftables 1.0.6) for one bridge's table.
//!
//! Published ports are elements of four maps, keyed by host port (`*_any`, every local
//! address) or by host address and port (`*_at`), whose values are the container's address and
//! port. The rules never change while workloads come and go; only elements are added and
//! deleted. Traffic to a local address (from outside or from the host itself) is DNATed;
//! hairpin and host-originated connections are masqueraded so replies come back through the
//! host, and with `masquerade` the containers' outbound traffic is NATed too.

use super::Subnet;
use crate::manifest::{PortMapping, Protocol};
use std::net::Ipv4Addr;

/// Whether [`port_elements`] adds or deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementOp {
    /// `add element`.
    Add,
    /// `delete element` (by key only).
    Delete,
}

/// The whole table `ip {table}` for `bridge` and `subnet`. It starts with
/// `add table; delete table` so that a stale copy is replaced atomically.
pub fn ruleset(table: &str, bridge: &str, subnet: &Subnet, masquerade: bool) -> String {
    let mut s = delete_table(table);
    s.push_str(&format!("table ip {table} {{\n"));
    for proto in ["tcp", "udp"] {
        s.push_str(&format!(
            "  map {proto}_any {{ type inet_service : ipv4_addr . inet_service; }}\n"
        ));
        s.push_str(&format!(
            "  map {proto}_at {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}\n"
        ));
    }
    s.push_str("  chain publish {\n");
    for proto in ["tcp", "udp"] {
        s.push_str(&format!(
            "    dnat ip to ip daddr . {proto} dport map @{proto}_at\n"
        ));
        s.push_str(&format!("    dnat ip to {proto} dport map @{proto}_any\n"));
    }
    s.push_str("  }\n");
    s.push_str(
        "  chain prerouting { type nat hook prerouting priority dstnat; policy accept; \
         fib daddr type local jump publish; }\n",
    );
    s.push_str(
        "  chain output { type nat hook output priority -100; policy accept; \
         fib daddr type local jump publish; }\n",
    );
    s.push_str("  chain postrouting { type nat hook postrouting priority srcnat; policy accept;\n");
    if masquerade {
        s.push_str(&format!(
            "    ip saddr {subnet} ip daddr != {subnet} masquerade\n"
        ));
    }
    s.push_str(&format!(
        "    oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade\n"
    ));
    s.push_str(&format!(
        "    oifname \"{bridge}\" ct status dnat ip saddr {subnet} masquerade\n"
    ));
    s.push_str("  }\n");
    // Docker ≥ 28: from outside, only replies and published (DNATed) connections reach the
    // workloads; a neighbour routing the subnet through the host reaches nothing else.
    // Workload-to-workload traffic (bridged, or routed back onto the bridge) and outbound
    // traffic are not affected.
    s.push_str("  chain forward { type filter hook forward priority filter; policy accept;\n");
    for rule in [
        "ct state established,related accept",
        "ct status dnat accept",
        &format!("iifname \"{bridge}\" accept"),
        "drop",
    ] {
        s.push_str(&format!("    oifname \"{bridge}\" {rule}\n"));
    }
    s.push_str("  }\n");
    s.push_str("}\n");
    s
}

/// Deletes the table `ip {table}` whether or not it exists.
pub fn delete_table(table: &str) -> String {
    format!("add table ip {table}\ndelete table ip {table}\n")
}

/// One `add element` or `delete element` line per port, publishing `ports` to the container
/// at `container`. Empty for no ports.
pub fn port_elements(
    op: ElementOp,
    table: &str,
    ports: &[PortMapping],
    container: Ipv4Addr,
) -> String {
    let mut s = String::new();
    for p in ports {
        let proto = match p.protocol {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        let (map, key) = match p.host_ip {
            None => (format!("{proto}_any"), p.host_port.to_string()),
            Some(ip) => (format!("{proto}_at"), format!("{ip} . {}", p.host_port)),
        };
        match op {
            ElementOp::Add => s.push_str(&format!(
                "add element ip {table} {map} {{ {key} : {container} . {} }}\n",
                p.container_port
            )),
            ElementOp::Delete => {
                s.push_str(&format!("delete element ip {table} {map} {{ {key} }}\n"))
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &str = r#"add table ip superd_sd0
delete table ip superd_sd0
table ip superd_sd0 {
  map tcp_any { type inet_service : ipv4_addr . inet_service; }
  map tcp_at { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  map udp_any { type inet_service : ipv4_addr . inet_service; }
  map udp_at { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  chain publish {
    dnat ip to ip daddr . tcp dport map @tcp_at
    dnat ip to tcp dport map @tcp_any
    dnat ip to ip daddr . udp dport map @udp_at
    dnat ip to udp dport map @udp_any
  }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; fib daddr type local jump publish; }
  chain output { type nat hook output priority -100; policy accept; fib daddr type local jump publish; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 masquerade
    oifname "sd0" ip saddr 127.0.0.0/8 masquerade
    oifname "sd0" ct status dnat ip saddr 10.77.0.0/16 masquerade
  }
  chain forward { type filter hook forward priority filter; policy accept;
    oifname "sd0" ct state established,related accept
    oifname "sd0" ct status dnat accept
    oifname "sd0" iifname "sd0" accept
    oifname "sd0" drop
  }
}
"#;

    fn subnet() -> Subnet {
        "10.77.0.0/16".parse().unwrap()
    }

    #[test]
    fn ruleset_with_masquerade() {
        assert_eq!(ruleset("superd_sd0", "sd0", &subnet(), true), EXPECTED);
    }

    #[test]
    fn ruleset_without_masquerade() {
        let expected = EXPECTED.replace(
            "    ip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 masquerade\n",
            "",
        );
        assert_ne!(expected, EXPECTED);
        assert_eq!(ruleset("superd_sd0", "sd0", &subnet(), false), expected);
    }

    #[test]
    fn delete_is_idempotent_text() {
        assert_eq!(
            delete_table("superd_x"),
            "add table ip superd_x\ndelete table ip superd_x\n"
        );
    }

    fn port(host_ip: Option<&str>, host: u16, container: u16, protocol: Protocol) -> PortMapping {
        PortMapping {
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port: host,
            container_port: container,
            protocol,
        }
    }

    #[test]
    fn elements() {
        let ports = [
            port(None, 8080, 80, Protocol::Tcp),
            port(Some("127.0.0.1"), 5353, 53, Protocol::Udp),
            port(Some("192.168.1.5"), 443, 8443, Protocol::Tcp),
            port(None, 53, 53, Protocol::Udp),
        ];
        let container: Ipv4Addr = "10.77.0.5".parse().unwrap();
        assert_eq!(
            port_elements(ElementOp::Add, "T", &ports, container),
            "add element ip T tcp_any { 8080 : 10.77.0.5 . 80 }\n\
             add element ip T udp_at { 127.0.0.1 . 5353 : 10.77.0.5 . 53 }\n\
             add element ip T tcp_at { 192.168.1.5 . 443 : 10.77.0.5 . 8443 }\n\
             add element ip T udp_any { 53 : 10.77.0.5 . 53 }\n"
        );
        assert_eq!(
            port_elements(ElementOp::Delete, "T", &ports, container),
            "delete element ip T tcp_any { 8080 }\n\
             delete element ip T udp_at { 127.0.0.1 . 5353 }\n\
             delete element ip T tcp_at { 192.168.1.5 . 443 }\n\
             delete element ip T udp_any { 53 }\n"
        );
        assert_eq!(port_elements(ElementOp::Add, "T", &[], container), "");
        assert_eq!(port_elements(ElementOp::Delete, "T", &[], container), "");
    }
}
