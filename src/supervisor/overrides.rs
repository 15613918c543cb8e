//! Operator overrides that outlive superd: the workloads `superctl stop` stopped, kept in
//! `<state-dir>/overrides.json` until `superctl start`.

use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;

/// The file name in the state directory.
pub const FILE: &str = "overrides.json";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct OnDisk {
    /// Workloads stopped by `superctl stop`.
    stopped: BTreeSet<String>,
}

/// The stopped set and where it is kept.
#[derive(Debug, Default)]
pub struct Overrides {
    dir: Option<PathBuf>,
    held: BTreeSet<String>,
}

impl Overrides {
    /// Reads the overrides kept in `dir` (none yet, or unreadable: an empty set, logged).
    pub fn load(dir: PathBuf) -> Self {
        let path = dir.join(FILE);
        let held = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) => d.stopped,
                Err(e) => {
                    tracing::error!(
                        "ignoring {}: {e}; no workload is held stopped",
                        path.display()
                    );
                    BTreeSet::new()
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::error!(
                    "reading {}: {e}; no workload is held stopped",
                    path.display()
                );
                BTreeSet::new()
            }
        };
        Overrides {
            dir: Some(dir),
            held,
        }
    }

    /// The workloads held stopped.
    pub fn held(&self) -> &BTreeSet<String> {
        &self.held
    }

    /// Holds `name` stopped (kept on disk before it takes effect).
    pub fn hold(&mut self, name: &str) -> io::Result<()> {
        if self.held.contains(name) {
            return Ok(());
        }
        self.held.insert(name.to_string());
        self.save().inspect_err(|_| {
            self.held.remove(name);
        })
    }

    /// Releases `name`; says whether it was held.
    pub fn release(&mut self, name: &str) -> io::Result<bool> {
        if !self.held.remove(name) {
            return Ok(false);
        }
        self.save().inspect_err(|_| {
            self.held.insert(name.to_string());
        })?;
        Ok(true)
    }

    fn save(&self) -> io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(&OnDisk {
            stopped: self.held.clone(),
        })
        .map_err(io::Error::other)?;
        crate::durable::write_atomic(dir, FILE, &bytes, 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_across_loads() {
        let dir = tempfile::tempdir().expect("a directory");
        let mut o = Overrides::load(dir.path().to_path_buf());
        assert!(o.held().is_empty());
        o.hold("web").expect("saved");
        o.hold("db").expect("saved");
        assert_eq!(o.release("db").ok(), Some(true));
        assert_eq!(o.release("db").ok(), Some(false));
        let again = Overrides::load(dir.path().to_path_buf());
        assert_eq!(again.held().iter().collect::<Vec<_>>(), ["web"]);
        std::fs::write(dir.path().join(FILE), "{not json").expect("written");
        assert!(Overrides::load(dir.path().to_path_buf()).held().is_empty());
    }
}
