//! The bridge subnet: CIDR parsing and address arithmetic.
//!
//! The first address after the network address is the bridge's gateway; the addresses between
//! the gateway and the broadcast address are the ones workloads can be given.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Smallest accepted prefix length (a /8 has about 16.7 million addresses).
pub const MIN_PREFIX: u8 = 8;
/// Largest accepted prefix length (a /30 has one assignable address).
pub const MAX_PREFIX: u8 = 30;

/// An IPv4 subnet such as `10.77.0.0/16`, with a prefix between /8 and /30 and no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubnetError {
    /// No `/prefix` part.
    #[error("`{0}` is not in CIDR form a.b.c.d/prefix (for example 10.77.0.0/16)")]
    NotCidr(String),
    /// The address part is not a dotted-quad IPv4 address.
    #[error("`{0}` is not an IPv4 address")]
    BadAddress(String),
    /// The prefix part is not a number.
    #[error("`/{0}` is not a prefix length (expected a number from 8 to 30)")]
    BadPrefix(String),
    /// The prefix is outside /8../30.
    #[error("prefix /{0} is out of range: the bridge subnet must be between /8 and /30")]
    PrefixRange(u32),
    /// The address has bits set below the prefix.
    #[error("{given} has host bits set; did you mean {suggested}?")]
    HostBits {
        /// The subnet as written.
        given: String,
        /// The same prefix with the host bits cleared.
        suggested: Subnet,
    },
}

impl Subnet {
    /// Builds a subnet from its network address and prefix length, with the same checks as
    /// parsing.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Subnet, SubnetError> {
        if !(MIN_PREFIX..=MAX_PREFIX).contains(&prefix) {
            return Err(SubnetError::PrefixRange(u32::from(prefix)));
        }
        let mask = mask(prefix);
        let bits = u32::from(network);
        if bits & !mask != 0 {
            return Err(SubnetError::HostBits {
                given: format!("{network}/{prefix}"),
                suggested: Subnet {
                    network: Ipv4Addr::from(bits & mask),
                    prefix,
                },
            });
        }
        Ok(Subnet { network, prefix })
    }

    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's own address: the network address plus one.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// The broadcast address (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() | !mask(self.prefix))
    }

    /// True if `ip` lies inside the subnet (network and broadcast addresses included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.base()
    }

    /// True if `ip` can be given to a workload: inside the subnet and neither the network,
    /// the gateway nor the broadcast address.
    pub fn is_assignable(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network && ip != self.gateway() && ip != self.broadcast()
    }

    /// How many addresses can be given to workloads (the subnet size minus three).
    pub fn host_count(&self) -> u32 {
        (1u32 << (32 - u32::from(self.prefix))) - 3
    }

    /// The `i`-th assignable address, counting from the network address plus two. `i` should be
    /// below [`Subnet::host_count`]; larger values wrap around rather than leave the subnet.
    pub fn nth_host(&self, i: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 2 + i % self.host_count())
    }

    /// The inverse of [`Subnet::nth_host`]: the index of an assignable address, or `None`.
    pub fn host_index(&self, ip: Ipv4Addr) -> Option<u32> {
        self.is_assignable(ip)
            .then(|| u32::from(ip) - self.base() - 2)
    }

    fn base(&self) -> u32 {
        u32::from(self.network)
    }
}

fn mask(prefix: u8) -> u32 {
    // Prefixes are 8..=30 by construction, so the shift never overflows.
    u32::MAX << (32 - u32::from(prefix))
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = SubnetError;

    fn from_str(s: &str) -> Result<Subnet, SubnetError> {
        let text = s.trim();
        let Some((addr, prefix)) = text.split_once('/') else {
            return Err(SubnetError::NotCidr(text.to_string()));
        };
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| SubnetError::BadAddress(addr.to_string()))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SubnetError::BadPrefix(prefix.to_string()));
        }
        let prefix: u32 = prefix
            .parse()
            .map_err(|_| SubnetError::BadPrefix(prefix.to_string()))?;
        let prefix = u8::try_from(prefix).map_err(|_| SubnetError::PrefixRange(prefix))?;
        Subnet::new(network, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_displays() {
        let s: Subnet = "10.77.0.0/16".parse().unwrap();
        assert_eq!(s.network(), ip("10.77.0.0"));
        assert_eq!(s.prefix(), 16);
        assert_eq!(s.to_string(), "10.77.0.0/16");
        assert_eq!(" 192.168.5.0/24 ".parse::<Subnet>().unwrap().prefix(), 24);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "10.77.0.0",
            "10.77.0/16",
            "x/16",
            "10.77.0.0/",
            "10.77.0.0/a",
            "/16",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        for (bad, prefix) in [
            ("10.0.0.0/7", 7),
            ("10.0.0.0/31", 31),
            ("10.0.0.0/300", 300),
        ] {
            assert_eq!(
                bad.parse::<Subnet>(),
                Err(SubnetError::PrefixRange(prefix)),
                "{bad}"
            );
        }
        assert!("10.0.0.0/8".parse::<Subnet>().is_ok());
        assert!("10.0.0.0/30".parse::<Subnet>().is_ok());
    }

    #[test]
    fn host_bits_suggest_the_network() {
        let err = "10.77.0.1/16".parse::<Subnet>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.77.0.1/16 has host bits set; did you mean 10.77.0.0/16?"
        );
        let err = "192.168.1.77/26".parse::<Subnet>().unwrap_err();
        assert!(
            err.to_string().ends_with("did you mean 192.168.1.64/26?"),
            "{err}"
        );
    }

    #[test]
    fn arithmetic() {
        let s: Subnet = "10.77.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), ip("10.77.0.1"));
        assert_eq!(s.broadcast(), ip("10.77.255.255"));
        assert_eq!(s.host_count(), 65533);
        assert_eq!(s.nth_host(0), ip("10.77.0.2"));
        assert_eq!(s.nth_host(65532), ip("10.77.255.254"));
        assert_eq!(
            s.nth_host(65533),
            ip("10.77.0.2"),
            "wraps instead of leaving"
        );
        assert!(s.contains(ip("10.77.255.255")));
        assert!(!s.contains(ip("10.78.0.2")));
        for not in ["10.77.0.0", "10.77.0.1", "10.77.255.255", "10.76.255.254"] {
            assert!(!s.is_assignable(ip(not)), "{not}");
        }
        assert!(s.is_assignable(ip("10.77.0.2")));
        assert_eq!(s.host_index(ip("10.77.1.0")), Some(254));
        assert_eq!(s.host_index(ip("10.77.0.1")), None);
    }

    #[test]
    fn smallest_and_largest() {
        let s: Subnet = "192.168.9.4/30".parse().unwrap();
        assert_eq!(s.host_count(), 1);
        assert_eq!(s.gateway(), ip("192.168.9.5"));
        assert_eq!(s.nth_host(0), ip("192.168.9.6"));
        assert_eq!(s.broadcast(), ip("192.168.9.7"));
        let s: Subnet = "10.0.0.0/8".parse().unwrap();
        assert_eq!(s.host_count(), (1 << 24) - 3);
        assert_eq!(s.broadcast(), ip("10.255.255.255"));
    }

    #[test]
    fn every_host_index_round_trips() {
        let s: Subnet = "172.20.0.0/24".parse().unwrap();
        for i in 0..s.host_count() {
            let a = s.nth_host(i);
            assert!(s.is_assignable(a));
            assert_eq!(s.host_index(a), Some(i));
        }
    }
}
