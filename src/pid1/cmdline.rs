//! The kernel command line: `superd.*` parameters for PID-1 mode.
//!
//! Parameters with a dot never reach init's argv or environment (the kernel keeps them for
//! modules), so superd reads `/proc/cmdline` itself. Pure: the text is an argument.

use std::path::PathBuf;

/// What the kernel command line overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `superd.manifests=DIR`.
    pub manifests: Option<PathBuf>,
    /// `superd.log=DIRECTIVE` (a tracing filter such as `debug` or `superd=trace`).
    pub log: Option<String>,
    /// `superd.watchdog=DEVICE`: the hardware watchdog superd pets (`--watchdog`).
    pub watchdog: Option<PathBuf>,
    /// `superd.watchdog_timeout=SECONDS` (`--watchdog-timeout`).
    pub watchdog_timeout: Option<u32>,
}

/// Splits a command line the way the kernel does: on spaces, with `"` quoting spaces
/// (`superd.log="a b"` and `"superd.log=a b"` both give `superd.log=a b`).
pub fn split(cmdline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Reads the `superd.*` parameters; the last occurrence wins, unknown ones are ignored.
pub fn parse(cmdline: &str) -> Overrides {
    let mut o = Overrides::default();
    for param in split(cmdline) {
        if let Some(v) = param.strip_prefix("superd.manifests=") {
            o.manifests = (!v.is_empty()).then(|| PathBuf::from(v));
        } else if let Some(v) = param.strip_prefix("superd.log=") {
            o.log = (!v.is_empty()).then(|| v.to_string());
        } else if let Some(v) = param.strip_prefix("superd.watchdog=") {
            o.watchdog = (!v.is_empty()).then(|| PathBuf::from(v));
        } else if let Some(v) = param.strip_prefix("superd.watchdog_timeout=") {
            o.watchdog_timeout = v.parse().ok().filter(|s| *s > 0);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split("console=ttyS0  quiet superd.log=\"a b\" \"x=y z\"\n"),
            ["console=ttyS0", "quiet", "superd.log=a b", "x=y z"]
        );
        assert!(split("   ").is_empty());
    }

    #[test]
    fn reads_superd_parameters() {
        let o = parse(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 superd.manifests=/srv/w superd.log=debug \
             superd.log=superd=trace superd.unknown=1 manifests=/nope",
        );
        assert_eq!(o.manifests, Some(PathBuf::from("/srv/w")));
        assert_eq!(o.log.as_deref(), Some("superd=trace"));
        assert_eq!(parse("quiet"), Overrides::default());
        assert_eq!(parse("superd.manifests=").manifests, None);
    }
}
