//! Named volumes: `<state-dir>/volumes/<name>/data`, kept across restarts, image changes and
//! superd upgrades until `superctl volume rm`. A volume is seeded from the image's content at
//! its target the first time a workload mounts it (Docker's rule); `seeded` beside `data`
//! records that, so a later start never copies over what the workload wrote.

use crate::runtime::sync::VolumeCfg;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The marker of a volume whose first use is over.
pub const SEEDED: &str = "seeded";

/// One volume as `superctl volume ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Where its data is on the host.
    pub path: String,
    /// Bytes of file content (apparent sizes).
    pub bytes: u64,
    /// Workloads whose manifests mount it.
    pub used_by: Vec<String>,
}

fn root(state: &Path) -> PathBuf {
    state.join("volumes")
}

/// Creates the volumes `spec` mounts (if new) and says which ones still need seeding.
pub fn prepare(state: &Path, volumes: &[crate::manifest::Volume]) -> io::Result<Vec<VolumeCfg>> {
    let mut out = Vec::new();
    for v in volumes {
        let dir = root(state).join(&v.name);
        let data = dir.join("data");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&data)?;
        let fresh = !dir.join(SEEDED).exists();
        out.push(VolumeCfg {
            source: data.to_string_lossy().into_owned(),
            target: v.target.to_string(),
            readonly: v.readonly,
            seed_marker: fresh.then(|| dir.join(SEEDED).to_string_lossy().into_owned()),
        });
    }
    Ok(out)
}

/// Every volume, with its size.
pub fn list(state: &Path) -> Vec<VolumeInfo> {
    let Ok(rd) = std::fs::read_dir(root(state)) else {
        return Vec::new();
    };
    let mut out: Vec<VolumeInfo> = rd
        .flatten()
        .filter(|e| e.path().join("data").is_dir())
        .map(|e| {
            let data = e.path().join("data");
            VolumeInfo {
                name: e.file_name().to_string_lossy().into_owned(),
                path: data.to_string_lossy().into_owned(),
                bytes: tree_bytes(&data),
                used_by: Vec::new(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn tree_bytes(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| tree_bytes(&e.path())).sum())
        .unwrap_or(0)
}

/// Deletes a volume and its data; false when there is none.
pub fn remove(state: &Path, name: &str) -> io::Result<bool> {
    if crate::manifest::Name::new(name).is_err() {
        return Ok(false);
    }
    let dir = root(state).join(name);
    if !dir.join("data").is_dir() {
        return Ok(false);
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(true)
}
