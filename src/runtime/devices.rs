//! Which device nodes a workload may use: runc's default allowlist plus what its manifest
//! opts into (`[security] devices`), enforced by the devices cgroup (v1 `devices.allow`,
//! v2 a BPF program, see `devices_bpf`) on top of `nodev` on every mount but the fresh /dev.

use crate::manifest::{DeviceAccess, DeviceRule};
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `c`.
    Char,
    /// `b`.
    Block,
}

/// One allowed device (class): `c 1:3 rwm`, `c 136:* rwm`, `b *:* m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allow {
    /// Character or block.
    pub kind: Kind,
    /// Major number; `None` = any.
    pub major: Option<u32>,
    /// Minor number; `None` = any.
    pub minor: Option<u32>,
    /// What is allowed.
    pub access: DeviceAccess,
}

const RWM: DeviceAccess = DeviceAccess {
    read: true,
    write: true,
    mknod: true,
};

const fn chr(major: u32, minor: Option<u32>) -> Allow {
    Allow {
        kind: Kind::Char,
        major: Some(major),
        minor,
        access: RWM,
    }
}

/// Creating any node of `kind` (which alone opens nothing).
const fn mknod_any(kind: Kind) -> Allow {
    Allow {
        kind,
        major: None,
        minor: None,
        access: DeviceAccess {
            read: false,
            write: false,
            mknod: true,
        },
    }
}

/// runc's default: creating any node (opening it is what counts), and using null, zero, full,
/// tty, random, urandom, console, ptmx and the pts. Not fuse, not tun, nothing else.
pub const DEFAULT_ALLOWED: &[Allow] = &[
    mknod_any(Kind::Char),
    mknod_any(Kind::Block),
    chr(1, Some(3)), // null
    chr(1, Some(5)), // zero
    chr(1, Some(7)), // full
    chr(1, Some(8)), // random
    chr(1, Some(9)), // urandom
    chr(5, Some(0)), // tty
    chr(5, Some(1)), // console
    chr(5, Some(2)), // ptmx
    chr(136, None),  // pts/*
];

impl fmt::Display for Allow {
    /// The devices cgroup v1 form, e.g. `c 136:* rwm`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::Char => 'c',
            Kind::Block => 'b',
        };
        write!(
            f,
            "{kind} {}:{} {}",
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

/// A manifest device resolved on the host: the rule and the node to create in /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// The cgroup rule.
    pub allow: Allow,
    /// The path below /dev (`fuse`, `net/tun`).
    pub rel: String,
    /// Permission bits of the host node.
    pub mode: u32,
}

/// Looks up each manifest device on the host (it must exist and be a device node).
pub fn resolve(rules: &[DeviceRule]) -> Result<Vec<HostDevice>, String> {
    rules
        .iter()
        .map(|r| {
            let meta = std::fs::metadata(r.path.as_str())
                .map_err(|e| format!("device {}: {e}", r.path))?;
            let ft = meta.file_type();
            let kind = if ft.is_char_device() {
                Kind::Char
            } else if ft.is_block_device() {
                Kind::Block
            } else {
                return Err(format!("{} is not a device node", r.path));
            };
            let rdev = meta.rdev();
            Ok(HostDevice {
                allow: Allow {
                    kind,
                    major: Some(libc::major(rdev)),
                    minor: Some(libc::minor(rdev)),
                    access: r.access,
                },
                rel: r.path.as_str().trim_start_matches("/dev/").to_string(),
                mode: meta.mode() & 0o777,
            })
        })
        .collect()
}

/// Every allowed device of a workload: the default list, then its own.
pub fn allowlist(own: &[HostDevice]) -> Vec<Allow> {
    DEFAULT_ALLOWED
        .iter()
        .copied()
        .chain(own.iter().map(|d| d.allow))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_print_as_the_v1_cgroup_reads_them() {
        let text: Vec<String> = allowlist(&[]).iter().map(ToString::to_string).collect();
        assert_eq!(text[0], "c *:* m");
        assert_eq!(text[2], "c 1:3 rwm");
        assert_eq!(text.last().map(String::as_str), Some("c 136:* rwm"));
        assert!(
            !text.iter().any(|r| r.starts_with("c 10:229")),
            "fuse is not allowed"
        );
    }

    #[test]
    fn host_devices_resolve_to_their_numbers() {
        let rule = DeviceRule {
            path: crate::manifest::AbsPath::new("/dev/null").unwrap(),
            access: DeviceAccess {
                read: true,
                write: false,
                mknod: false,
            },
        };
        let d = resolve(&[rule]).unwrap();
        assert_eq!(d[0].allow.to_string(), "c 1:3 r");
        assert_eq!(d[0].rel, "null");
        let bad = DeviceRule {
            path: crate::manifest::AbsPath::new("/dev/shm").unwrap(),
            access: DeviceAccess::default(),
        };
        assert!(resolve(&[bad]).unwrap_err().contains("not a device node"));
    }
}
