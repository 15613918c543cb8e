//! `[security]`: the seccomp profile and the devices a workload may use beyond the default set.

use super::check::Checker;
use super::raw::{RawSecurity, Val};
use super::spec::{AbsPath, DeviceAccess, DeviceRule, Seccomp, Security};

/// `"/dev/fuse"`, `"/dev/fuse:rw"`, `"/dev/kvm:rwm"` → a device rule (default access `rwm`).
pub(crate) fn parse_device(s: &str) -> Result<DeviceRule, String> {
    let (path, access) = match s.rsplit_once(':') {
        Some((p, a)) => (p, a),
        None => (s, "rwm"),
    };
    let path = AbsPath::new(path).map_err(|e| format!("{e}: expected a path such as /dev/fuse"))?;
    if path.components().next() != Some("dev") || path.components().count() < 2 {
        return Err(format!(
            "`{path}` is not below /dev: name a device node such as \"/dev/fuse:rwm\""
        ));
    }
    let mut acc = DeviceAccess::default();
    if access.is_empty() {
        return Err(format!(
            "no access given in `{s}`: use r, w and/or m (e.g. rwm)"
        ));
    }
    for c in access.chars() {
        let slot = match c {
            'r' => &mut acc.read,
            'w' => &mut acc.write,
            'm' => &mut acc.mknod,
            _ => {
                return Err(format!(
                    "invalid access `{access}` in `{s}`: use r (read), w (write) and m (mknod)"
                ))
            }
        };
        if *slot {
            return Err(format!("`{c}` appears twice in `{access}`"));
        }
        *slot = true;
    }
    Ok(DeviceRule { path, access: acc })
}

/// The `[security]` table.
pub(crate) fn security(ck: &mut Checker<'_>, raw: &RawSecurity) -> Security {
    let mut out = Security::default();
    if let Some(v) = &raw.seccomp {
        let parsed = ck.parsed(
            v,
            "security.seccomp",
            "\"default\", \"unconfined\" or the absolute path of an OCI seccomp profile",
            |s| match s {
                "default" => Ok(Seccomp::Default),
                "unconfined" => Ok(Seccomp::Unconfined),
                path => AbsPath::new(path).map(Seccomp::Profile).map_err(|e| {
                    format!(
                        "{e}: expected \"default\", \"unconfined\" or the absolute path of an \
                         OCI/Docker seccomp JSON profile"
                    )
                }),
            },
        );
        if let Some(p) = parsed {
            out.seccomp = p;
        }
    }
    if let Some(v) = &raw.devices {
        let Val::Array(items) = v.get_ref() else {
            let msg = format!(
                "expected an array such as [\"/dev/fuse:rwm\"], found {}",
                v.get_ref().type_name()
            );
            ck.error(v.span(), "security.devices", msg);
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let field = format!("security.devices[{i}]");
            let Some(rule) = ck.parsed(
                item,
                &field,
                "a string such as \"/dev/fuse:rwm\"",
                parse_device,
            ) else {
                continue;
            };
            if out.devices.iter().any(|d| d.path == rule.path) {
                let msg = format!("`{}` is listed twice", rule.path);
                ck.error(item.span(), &field, msg);
                continue;
            }
            out.devices.push(rule);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_forms() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (d.path.as_str(), d.access.to_string()),
            ("/dev/fuse", "rwm".into())
        );
        let d = parse_device("/dev/net/tun:rw").unwrap();
        assert_eq!(
            (d.path.as_str(), d.access.to_string()),
            ("/dev/net/tun", "rw".into())
        );
        assert!(parse_device("/etc/passwd:r")
            .unwrap_err()
            .contains("not below /dev"));
        assert!(parse_device("/dev").is_err());
        assert!(parse_device("/dev/kvm:rx")
            .unwrap_err()
            .contains("invalid access"));
        assert!(parse_device("/dev/kvm:rr").unwrap_err().contains("twice"));
        assert!(parse_device("dev/kvm").is_err());
    }
}
