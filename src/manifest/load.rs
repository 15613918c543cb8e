//! Reading manifests from disk: one file, or every manifest file of a directory.

use super::error::{FieldError, ManifestError};
use super::parse::parse;
use super::spec::Spec;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Manifests larger than this are refused rather than read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One manifest file of the directory and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredEntry {
    /// The file the entry was read from.
    pub file: PathBuf,
    /// The validated spec, or every reason the file was rejected.
    pub spec: Result<Arc<Spec>, ManifestError>,
    /// The file's text as read (empty when it could not be read or is invalid), so that
    /// problems found later, such as a port another workload publishes too, can be shown at
    /// their field with [`locate`](super::locate).
    pub text: Arc<str>,
}

/// The desired state: file stem → entry. A stem that is not a valid workload name still gets
/// an entry (with an error), so the operator sees why the file is ignored.
pub type Desired = BTreeMap<String, DesiredEntry>;

/// True for names `load_dir` reads: `*.toml` with a non-empty stem, not a dotfile.
///
/// This leaves out editor and package-manager leftovers: `web.toml~`, `web.toml.swp`,
/// `web.toml.bak`, `web.toml.dpkg-new`/`-old`/`-dist` do not end in `.toml`, and vim's
/// `.web.toml.swp`, emacs's `.#web.toml` and atomic-save temporaries are dotfiles.
pub fn is_manifest_file_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    match name.strip_suffix(".toml") {
        Some(stem) => !stem.is_empty() && !name.starts_with('.'),
        None => false,
    }
}

/// Reads and parses one manifest file; the workload name is the file stem. The file is not
/// checked for who may have written it (see [`load_dir`]); [`trust_problem`] tells.
pub fn load_file(path: &Path) -> Result<Spec, ManifestError> {
    let file = open_manifest(path)?;
    let text = read_text(path, file)?;
    parse(path, &text)
}

/// Why a file or directory owned by `uid` with `mode` must not be trusted to say what superd
/// runs as root, if it must not. sudo's rule: owned by root (or superd's own `euid`) and
/// writable by nobody else. `what` names it in the message ("the manifest", "the directory").
pub fn trust_problem(what: &str, uid: u32, mode: u32, euid: u32) -> Option<String> {
    if uid != 0 && uid != euid {
        return Some(format!(
            "{what} is owned by uid {uid}, not by root: anyone who can write a manifest runs \
             programs as root, so superd reads only files owned by root (chown root)"
        ));
    }
    if mode & 0o022 != 0 {
        let who = if mode & 0o002 != 0 {
            "everyone"
        } else {
            "its group"
        };
        return Some(format!(
            "{what} is writable by {who} (mode {:04o}): anyone who can write a manifest runs \
             programs as root, so superd reads only files no one else may change (chmod go-w)",
            mode & 0o7777
        ));
    }
    None
}

/// superd's effective uid (the owner a manifest may have besides root).
#[allow(unsafe_code)]
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Reads every manifest file of `dir` (not recursive). Entries that are neither regular files
/// nor symlinks are skipped, symlinks to regular files are followed, and a file that cannot be
/// read or parsed, or that someone other than root could have written ([`trust_problem`]:
/// the directory, the file, a symlink's target), gets an `Err` entry: it never runs, and a
/// workload already running keeps its last good spec.
///
/// Fails only when the directory itself cannot be listed, including part-way: a partial
/// listing would look like deleted manifests and stop workloads.
pub fn load_dir(dir: &Path) -> io::Result<Desired> {
    let mut desired = Desired::new();
    let meta = fs::metadata(dir)?;
    let dir_problem = trust_problem(
        &format!("the manifest directory {}", dir.display()),
        meta.uid(),
        meta.mode(),
        euid(),
    );
    for (stem, file) in manifest_files(dir)? {
        let (text, spec) = match read_trusted(&file, dir_problem.as_deref()) {
            Ok(text) => {
                let spec = parse(&file, &text).map(Arc::new);
                // Only a valid manifest's text is needed later (to place an error found
                // against the other manifests); a broken one's errors are complete already.
                let text = if spec.is_ok() {
                    Arc::from(text)
                } else {
                    Arc::from("")
                };
                (text, spec)
            }
            Err(err) => (Arc::from(""), Err(err)),
        };
        if spec.is_err() && vanished(&file) {
            continue; // removed between listing and reading; the next scan agrees
        }
        desired.insert(stem, DesiredEntry { file, spec, text });
    }
    super::deps::check_start_order(&mut desired);
    Ok(desired)
}

/// `(stem, path)` of every manifest file in `dir` (regular files and symlinks), sorted by stem.
/// Nothing is opened or followed here: a FIFO, socket or device is never touched.
fn manifest_files(dir: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !is_manifest_file_name(&name) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_file() || t.is_symlink() => {}
            Ok(_) => continue, // directories, FIFOs (reading one blocks), sockets, devices
            Err(_) if vanished(&entry.path()) => continue,
            Err(_) => {} // `load_file` reports why
        }
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".toml")) {
            files.push((stem.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// True when nothing at all (not even a dangling symlink) is at `path` any more.
fn vanished(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

fn refused(path: &Path, msg: impl Into<String>) -> ManifestError {
    ManifestError::new(path, vec![FieldError::new("", msg)])
}

/// Opens `path` once, without blocking (a FIFO swapped in after the listing opens at once
/// instead of waiting for a writer), and checks through the fd that it is a regular file:
/// everything after this reads the file that was checked, never the path again.
fn open_manifest(path: &Path) -> Result<fs::File, ManifestError> {
    let io_err = |e: io::Error| ManifestError::io(path, "cannot read the manifest", &e);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(refused(
            path,
            "not a regular file: a manifest must be a TOML file",
        ));
    }
    Ok(file)
}

/// [`open_manifest`], then the trust rules for the file, its symlink target and its directory
/// (`dir_problem`), then [`read_text`].
fn read_trusted(path: &Path, dir_problem: Option<&str>) -> Result<String, ManifestError> {
    let file = open_manifest(path)?;
    if let Some(problem) = dir_problem {
        return Err(refused(path, problem));
    }
    let meta = file
        .metadata()
        .map_err(|e| ManifestError::io(path, "cannot read the manifest", &e))?;
    let linked = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let what = if linked {
        "the file this symlink points to"
    } else {
        "the manifest"
    };
    if let Some(problem) = trust_problem(what, meta.uid(), meta.mode(), euid()) {
        return Err(refused(path, problem));
    }
    read_text(path, file)
}

/// Reads at most [`MAX_MANIFEST_BYTES`] of UTF-8 from an opened regular file.
fn read_text(path: &Path, file: fs::File) -> Result<String, ManifestError> {
    let io_err = |e: io::Error| ManifestError::io(path, "cannot read the manifest", &e);
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        let msg = format!("the file is larger than {MAX_MANIFEST_BYTES} bytes; is it a manifest?");
        return Err(refused(path, msg));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The valid prefix is UTF-8 by definition; it locates the bad byte.
        let prefix = String::from_utf8_lossy(valid);
        let end = prefix.len();
        let msg = "not valid UTF-8: a manifest must be UTF-8 text";
        ManifestError::new(path, vec![FieldError::at(&prefix, end..end, "", msg)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn manifest_file_names() {
        for ok in [
            "web.toml",
            "a.toml",
            "db-1.toml",
            "Bad_Name.toml",
            "x.y.toml",
        ] {
            assert!(is_manifest_file_name(OsStr::new(ok)), "{ok}");
        }
        let leftovers = [
            ".toml",
            ".web.toml",
            ".#web.toml",
            ".web.toml.swp",
            "web.toml~",
            "web.toml.swp",
            "web.toml.bak",
            "web.toml.dpkg-new",
            "web.toml.dpkg-old",
            "web.toml.dpkg-dist",
            "#web.toml#",
            "web.TOML",
            "web",
            "web.toml.tmp",
            "",
        ];
        for bad in leftovers {
            assert!(!is_manifest_file_name(OsStr::new(bad)), "{bad}");
        }
        use std::os::unix::ffi::OsStrExt;
        assert!(!is_manifest_file_name(OsStr::from_bytes(b"\xff.toml")));
    }

    #[test]
    fn load_dir_reads_manifests_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let good = "command = [\"/bin/true\"]\n";
        fs::write(d.join("web.toml"), good).unwrap();
        fs::write(d.join("bad.toml"), "command = []\n").unwrap();
        fs::write(d.join("Bad_Name.toml"), good).unwrap();
        for leftover in [
            "web.toml~",
            ".web.toml.swp",
            "web.toml.dpkg-new",
            "notes.txt",
        ] {
            fs::write(d.join(leftover), "garbage =").unwrap();
        }
        fs::create_dir(d.join("dir.toml")).unwrap();
        fs::write(d.join("target.conf"), good).unwrap();
        symlink(d.join("target.conf"), d.join("linked.toml")).unwrap();
        symlink(d.join("nowhere"), d.join("dangling.toml")).unwrap();

        let desired = load_dir(d).unwrap();
        let keys: Vec<_> = desired.keys().map(String::as_str).collect();
        assert_eq!(keys, ["Bad_Name", "bad", "dangling", "linked", "web"]);
        let web = desired["web"].spec.as_ref().unwrap();
        assert_eq!(web.name.as_str(), "web");
        assert_eq!(desired["web"].file, d.join("web.toml"));
        assert_eq!(&*desired["web"].text, good);
        assert_eq!(
            &*desired["bad"].text, "",
            "only valid manifests keep their text"
        );
        assert_eq!(
            desired["linked"].spec.as_ref().unwrap().name.as_str(),
            "linked"
        );
        let bad = desired["bad"].spec.as_ref().unwrap_err();
        assert_eq!(bad.errors[0].field, "command");
        let bad_name = desired["Bad_Name"].spec.as_ref().unwrap_err();
        assert_eq!(bad_name.errors[0].field, "name");
        let dangling = desired["dangling"].spec.as_ref().unwrap_err();
        assert!(
            dangling.to_string().contains("cannot read the manifest"),
            "{dangling}"
        );
        assert_eq!(&*desired["dangling"].text, "");
    }

    #[test]
    fn load_dir_fails_only_for_the_directory_itself() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_dir(&dir.path().join("missing")).is_err());
        assert_eq!(load_dir(dir.path()).unwrap(), Desired::new());
    }

    #[test]
    fn unreadable_file_is_an_error_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.toml");
        fs::write(&path, "command = [\"/bin/true\"]\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        // Root ignores file modes; capabilities are per thread, so read from a thread that
        // gave up the two that bypass them.
        let d = dir.path().to_path_buf();
        let desired = std::thread::spawn(move || {
            for cap in [
                caps::Capability::CAP_DAC_OVERRIDE,
                caps::Capability::CAP_DAC_READ_SEARCH,
            ] {
                let _ = caps::drop(None, caps::CapSet::Effective, cap);
            }
            load_dir(&d).unwrap()
        })
        .join()
        .unwrap();
        let err = desired["secret"].spec.as_ref().unwrap_err();
        assert_eq!((err.errors[0].line, err.errors[0].field.as_str()), (0, ""));
        assert!(err.to_string().contains("ermission denied"), "{err}");
    }

    #[test]
    fn non_utf8_and_oversized_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin.toml");
        fs::write(&path, b"command = [\"/bin/true\"]\nx = \"\xff\"\n").unwrap();
        let err = load_file(&path).unwrap_err();
        assert_eq!((err.errors[0].line, err.errors[0].column), (2, 6));
        assert!(err.errors[0].message.contains("UTF-8"));
        let big = dir.path().join("big.toml");
        fs::write(&big, vec![b'#'; MAX_MANIFEST_BYTES as usize + 1]).unwrap();
        assert!(load_file(&big)
            .unwrap_err()
            .to_string()
            .contains("larger than"));
        let not_file = load_file(dir.path()).unwrap_err();
        assert!(not_file.to_string().contains("not a regular file"));
    }

    #[test]
    fn trust_follows_sudos_rule() {
        assert_eq!(trust_problem("f", 0, 0o100644, 0), None);
        assert_eq!(trust_problem("f", 0, 0o100600, 1000), None);
        assert_eq!(
            trust_problem("f", 1000, 0o100644, 1000),
            None,
            "superd's own euid"
        );
        let owned = trust_problem("the manifest", 1000, 0o100644, 0).unwrap();
        assert!(owned.contains("owned by uid 1000"), "{owned}");
        let world = trust_problem("f", 0, 0o100666, 0).unwrap();
        assert!(
            world.contains("writable by everyone (mode 0666)"),
            "{world}"
        );
        let group = trust_problem("f", 0, 0o40775, 0).unwrap();
        assert!(group.contains("writable by its group"), "{group}");
    }

    #[test]
    fn writable_files_and_directories_are_error_entries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        let good = "command = [\"/bin/true\"]\n";
        for name in ["ok.toml", "open.toml", "target.conf"] {
            fs::write(d.join(name), good).unwrap();
            fs::set_permissions(d.join(name), fs::Permissions::from_mode(0o644)).unwrap();
        }
        fs::set_permissions(d.join("open.toml"), fs::Permissions::from_mode(0o666)).unwrap();
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("t.conf"), good).unwrap();
        fs::set_permissions(
            other.path().join("t.conf"),
            fs::Permissions::from_mode(0o646),
        )
        .unwrap();
        symlink(other.path().join("t.conf"), d.join("linked.toml")).unwrap();
        let desired = load_dir(d).unwrap();
        assert!(desired["ok"].spec.is_ok());
        let open = desired["open"].spec.as_ref().unwrap_err().to_string();
        assert!(open.contains("writable by everyone"), "{open}");
        let linked = desired["linked"].spec.as_ref().unwrap_err().to_string();
        assert!(
            linked.contains("the file this symlink points to"),
            "{linked}"
        );
        // A directory others may write taints every file in it.
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
        let desired = load_dir(d).unwrap();
        let ok = desired["ok"].spec.as_ref().unwrap_err().to_string();
        assert!(ok.contains("the manifest directory"), "{ok}");
    }

    #[test]
    #[allow(unsafe_code)]
    fn a_fifo_is_never_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.toml");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Listed entries skip it without opening it...
        assert_eq!(load_dir(dir.path()).unwrap(), Desired::new());
        // ...and one swapped in after the listing is opened without blocking and refused.
        let err = read_trusted(&fifo, None).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(load_file(&fifo).is_err());
    }
}
