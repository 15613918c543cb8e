//! Offline checks for `superctl validate`: parse files and directories, and warn about things
//! that are allowed but will keep a workload from starting (yet).

use super::error::ManifestError;
use super::load::{load_dir, load_file, trust_problem};
use super::spec::{AbsPath, Rootfs, Spec};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Warnings about a valid spec that only the host can answer: missing rootfs or mount sources.
/// The supervisor accepts such specs and retries starting them with backoff.
pub fn warnings(spec: &Spec) -> Vec<String> {
    let mut out = Vec::new();
    match &spec.rootfs {
        Rootfs::Dir { path, .. } => out.extend(check_path("rootfs.path", path, true)),
        Rootfs::Image { image, .. } if image.digest.is_none() => out.push(format!(
            "rootfs.image `{}` is not pinned: the tag is resolved once and recorded; only \
             `superctl image pull` resolves it again (add @sha256:… to pin it)",
            image.written
        )),
        _ => {}
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        out.extend(check_path(&format!("mounts[{i}].source"), &m.source, false));
    }
    out
}

fn check_path(field: &str, path: &AbsPath, must_be_dir: bool) -> Option<String> {
    match fs::metadata(path.as_str()) {
        Ok(meta) if must_be_dir && !meta.is_dir() => Some(format!(
            "{field} `{path}` is not a directory; the workload will retry starting with backoff"
        )),
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(format!(
            "{field} `{path}` does not exist (yet); the workload will retry starting with backoff"
        )),
        Err(e) => Some(format!("{field} `{path}` cannot be checked: {e}")),
    }
}

/// The outcome of `validate_paths`: one entry per manifest file checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidateReport {
    /// `(file, spec or errors, warnings)` in the order checked.
    pub files: Vec<(PathBuf, Result<Spec, ManifestError>, Vec<String>)>,
}

impl ValidateReport {
    /// True when every file is valid (warnings do not count).
    pub fn ok(&self) -> bool {
        self.files.iter().all(|(_, spec, _)| spec.is_ok())
    }
}

/// Checks each path: a file is parsed whatever its name (and warned about when superd would
/// refuse it for who may write it); a directory is read exactly as superd reads it
/// (`load_dir`: only its manifest files, and none that someone other than root could have
/// written). A path that cannot be read is an invalid entry.
pub fn validate_paths(paths: &[PathBuf]) -> ValidateReport {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(check_file(path));
            continue;
        }
        match load_dir(path) {
            Ok(desired) => files.extend(desired.into_values().map(|entry| {
                let spec = entry.spec.map(|s| (*s).clone());
                let warnings = spec.as_ref().map(warnings).unwrap_or_default();
                (entry.file, spec, warnings)
            })),
            Err(e) => {
                let err = ManifestError::io(path, "cannot read the directory", &e);
                files.push((path.clone(), Err(err), Vec::new()));
            }
        }
    }
    ValidateReport { files }
}

fn check_file(path: &Path) -> (PathBuf, Result<Spec, ManifestError>, Vec<String>) {
    let spec = load_file(path);
    let mut warnings = spec.as_ref().map(warnings).unwrap_or_default();
    if let Ok(meta) = fs::metadata(path) {
        use std::os::unix::fs::MetadataExt;
        if let Some(p) = trust_problem("the file", meta.uid(), meta.mode(), super::load::euid()) {
            warnings.push(format!("superd would refuse it from its directory: {p}"));
        }
    }
    (path.to_path_buf(), spec, warnings)
}

/// Errors (compiler style), `path: ok` for valid files, `path: warning: …` lines, then a
/// summary such as `3 manifests checked: 2 valid, 1 invalid`.
impl fmt::Display for ValidateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, spec, warnings) in &self.files {
            match spec {
                Ok(_) => writeln!(f, "{}: ok", path.display())?,
                Err(e) => writeln!(f, "{e}\n")?,
            }
            for w in warnings {
                writeln!(f, "{}: warning: {w}", path.display())?;
            }
        }
        let total = self.files.len();
        let valid = self.files.iter().filter(|(_, s, _)| s.is_ok()).count();
        let plural = if total == 1 { "" } else { "s" };
        write!(
            f,
            "{total} manifest{plural} checked: {valid} valid, {} invalid",
            total - valid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse;

    #[test]
    fn warns_about_missing_rootfs_and_mount_sources() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let text = format!(
            "command = [\"/bin/true\"]\n[rootfs]\npath = \"{d}/missing\"\n\
             [[mounts]]\nsource = \"{d}\"\ntarget = \"/a\"\n\
             [[mounts]]\nsource = \"{d}/gone\"\ntarget = \"/b\"\n"
        );
        let spec = parse(Path::new("w.toml"), &text).unwrap();
        assert_eq!(
            warnings(&spec),
            [
                format!("rootfs.path `{d}/missing` does not exist (yet); the workload will retry starting with backoff"),
                format!("mounts[1].source `{d}/gone` does not exist (yet); the workload will retry starting with backoff"),
            ]
        );
        fs::write(dir.path().join("missing"), "").unwrap();
        assert!(warnings(&spec)[0].contains("is not a directory"));
        let host = parse(Path::new("w.toml"), "command = [\"x\"]").unwrap();
        assert!(warnings(&host).is_empty());
        let tag = parse(Path::new("w.toml"), "[rootfs]\nimage = \"busybox:1\"").unwrap();
        assert!(
            warnings(&tag)[0].contains("is not pinned"),
            "{:?}",
            warnings(&tag)
        );
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        let pinned = parse(Path::new("w.toml"), &format!("[rootfs]\nimage = \"{d}\"")).unwrap();
        assert!(warnings(&pinned).is_empty());
    }

    #[test]
    fn validates_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.toml"), "command = [\"/bin/true\"]\n").unwrap();
        fs::write(d.join("b.toml"), "command = \"/bin/true\"\n").unwrap();
        fs::write(d.join("b.toml~"), "junk").unwrap();
        fs::write(d.join("c.conf"), "command = [\"/bin/true\"]\n").unwrap();
        let report = validate_paths(&[d.to_path_buf(), d.join("c.conf"), d.join("nope.toml")]);
        let checked: Vec<_> = report.files.iter().map(|(p, _, _)| p.clone()).collect();
        assert_eq!(
            checked,
            [
                d.join("a.toml"),
                d.join("b.toml"),
                d.join("c.conf"),
                d.join("nope.toml")
            ]
        );
        assert!(!report.ok());
        let text = report.to_string();
        assert!(
            text.contains(&format!("{}: ok\n", d.join("a.toml").display())),
            "{text}"
        );
        assert!(
            text.contains("b.toml:1:11: command: expected an array"),
            "{text}"
        );
        assert!(
            text.ends_with("4 manifests checked: 2 valid, 2 invalid"),
            "{text}"
        );

        let one = validate_paths(&[d.join("a.toml")]);
        assert!(one.ok());
        assert!(one
            .to_string()
            .ends_with("1 manifest checked: 1 valid, 0 invalid"));
    }
}
