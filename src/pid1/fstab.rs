//! `/etc/fstab` in PID-1 mode: the persistent filesystems of an appliance (its state
//! partition at `/var/lib/superd`, say), mounted once the modules of `/etc/modules-load.d`
//! are loaded. A line is `DEVICE MOUNTPOINT TYPE OPTIONS [DUMP [PASS]]`; `#` starts a comment;
//! swap and `noauto` entries are skipped. A device that has not appeared yet (a module's
//! probe is asynchronous) is waited for, a few seconds at most.

// mount(2) through nix; the path handling is safe.
use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One entry to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The block device.
    pub device: PathBuf,
    /// Where it goes.
    pub target: PathBuf,
    /// The filesystem type.
    pub fstype: String,
    /// The mount flags its options name.
    pub flags: MsFlags,
    /// The options the filesystem itself takes (`data` of mount(2)).
    pub data: String,
}

/// The entries of an fstab's `text`, and a problem for each line that cannot be used.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            problems.push(format!(
                "/etc/fstab line {}: expected DEVICE MOUNTPOINT TYPE [OPTIONS]",
                n + 1
            ));
            continue;
        }
        let (device, target, fstype) = (f[0], f[1], f[2]);
        if fstype == "swap" || target == "none" {
            continue;
        }
        if !device.starts_with('/') || !target.starts_with('/') {
            problems.push(format!(
                "/etc/fstab line {}: {device} on {target}: only absolute device paths and mount points",
                n + 1
            ));
            continue;
        }
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        let mut skip = false;
        for opt in f.get(3).copied().unwrap_or("defaults").split(',') {
            match opt {
                "defaults" | "rw" | "auto" | "nofail" => {}
                "noauto" => skip = true,
                "ro" => flags |= MsFlags::MS_RDONLY,
                "nosuid" => flags |= MsFlags::MS_NOSUID,
                "nodev" => flags |= MsFlags::MS_NODEV,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
                "dirsync" => flags |= MsFlags::MS_DIRSYNC,
                "noatime" => flags |= MsFlags::MS_NOATIME,
                "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
                "relatime" => flags |= MsFlags::MS_RELATIME,
                other => data.push(other),
            }
        }
        if skip {
            continue;
        }
        entries.push(Entry {
            device: PathBuf::from(device),
            target: PathBuf::from(target),
            fstype: fstype.to_string(),
            flags,
            data: data.join(","),
        });
    }
    (entries, problems)
}

/// Mounts every entry of `/etc/fstab`; returns the problems (an entry that fails is
/// reported and skipped: superd runs on what it has).
pub fn mount_all(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (entries, mut problems) = parse(&text);
    for e in entries {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !e.device.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Err(err) = std::fs::create_dir_all(&e.target) {
            problems.push(format!("creating {}: {err}", e.target.display()));
            continue;
        }
        let data = (!e.data.is_empty()).then_some(e.data.as_str());
        if let Err(err) = mount(
            Some(&e.device),
            &e.target,
            Some(e.fstype.as_str()),
            e.flags,
            data,
        ) {
            problems.push(format!(
                "mounting {} ({}) on {}: {err}",
                e.device.display(),
                e.fstype,
                e.target.display()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_lines_become_mounts_and_the_rest_is_said() {
        let (e, p) = parse(
            "# state\n/dev/vda /var/lib/superd ext4 noatime,commit=1 0 2\n\
             /dev/vdb none swap sw 0 0\n/dev/vdc /mnt ext4 noauto\nLABEL=x /y ext4\nbad\n",
        );
        assert_eq!(
            e,
            [Entry {
                device: "/dev/vda".into(),
                target: "/var/lib/superd".into(),
                fstype: "ext4".into(),
                flags: MsFlags::MS_NOATIME,
                data: "commit=1".into(),
            }]
        );
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].contains("LABEL=x") && p[1].contains("line 6"), "{p:?}");
    }
}
