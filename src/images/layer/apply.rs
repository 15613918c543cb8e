//! The layer applier: executes planned operations into a fresh layer directory, the way
//! overlayfs wants a lower layer (IMAGES.md §4.4).
//!
//! - Every path is resolved from the layer's root fd with `openat2(RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, so a symlink in the layer resolves inside it;
//!   the final component is never followed (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`).
//! - Whiteouts become 0/0 character devices, opaque markers `trusted.overlay.opaque=y`.
//!   A whiteout of a path this layer itself created is ignored (image-spec: a whiteout only
//!   hides lower layers); an entry below a path this layer whited out is skipped (`rm -rf`).
//! - A parent directory the layer does not list takes its mode, owner and xattrs from the
//!   merged view of the layers below (so `/tmp` stays 1777), and the layer root takes the
//!   lower root's when the archive has no `./` entry.
//! - Hard links may only point at paths created earlier in the same layer.
//! - Directory times are set last, after every child exists.

use super::plan::{show, Kind, Meta, Op, RelPath};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags,
    FileStat, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use xattr::FileExt;

/// Most entries one layer may have (bounds the applier's memory: it remembers each path).
pub const MAX_ENTRIES: u64 = 2_000_000;
/// Warnings kept per layer; the rest are counted.
const MAX_WARNINGS: usize = 20;

/// The opaque xattr overlayfs reads (the trusted form; superd runs as root).
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What applying a layer produced.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Tar entries read.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whiteouts and opaque markers.
    pub whiteouts: u64,
    /// The first warnings (dropped xattrs, skipped entries).
    pub warnings: Vec<String>,
    /// Warnings beyond the first ones.
    pub more_warnings: u64,
}

impl Stats {
    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        } else {
            self.more_warnings += 1;
        }
    }
}

/// Writes one layer.
pub struct Applier {
    root: OwnedFd,
    /// The committed layers below, top first.
    lowers: Vec<OwnedFd>,
    created: HashSet<Vec<u8>>,
    whited: HashSet<Vec<u8>>,
    /// Directories this layer made opaque; `root_opaque` for the layer root.
    opaque: HashSet<Vec<u8>>,
    root_opaque: bool,
    dirs: Vec<(Option<RelPath>, i64)>,
    root_meta: bool,
    stats: Stats,
}

fn err(path: &dyn std::fmt::Display, doing: &str, e: Errno) -> String {
    format!("{path}: {doing}: {}", io::Error::from(e))
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV
}

impl Applier {
    /// An applier writing into the empty directory `root`, over `lowers` (top first).
    pub fn new(root: OwnedFd, lowers: Vec<OwnedFd>) -> Applier {
        Applier {
            root,
            lowers,
            created: HashSet::new(),
            whited: HashSet::new(),
            opaque: HashSet::new(),
            root_opaque: false,
            dirs: Vec::new(),
            root_meta: false,
            stats: Stats::default(),
        }
    }

    /// Counts an entry, refusing more than [`MAX_ENTRIES`].
    pub fn count_entry(&mut self) -> Result<(), String> {
        self.stats.entries += 1;
        if self.stats.entries > MAX_ENTRIES {
            return Err(format!("the layer has more than {MAX_ENTRIES} entries"));
        }
        Ok(())
    }

    /// Records a planner warning.
    pub fn warn(&mut self, w: String) {
        self.stats.warn(w);
    }

    /// Executes one operation; a regular file's content is read from `data`.
    pub fn apply(&mut self, op: Op, data: &mut dyn Read) -> Result<(), String> {
        match op {
            Op::Skip => Ok(()),
            Op::Opaque { dir } => {
                self.stats.whiteouts += 1;
                let fd = match &dir {
                    None => self.open_dir_rw(None)?,
                    Some(d) => {
                        if self.below_whiteout(d) {
                            return Ok(());
                        }
                        self.ensure_dir(d)?;
                        self.open_dir_rw(Some(d))?
                    }
                };
                File::from(fd)
                    .set_xattr(OPAQUE_XATTR, b"y")
                    .map_err(|e| format!("{}: marking opaque: {e}", shown(&dir)))?;
                self.drop_whiteouts_below(dir.as_ref())?;
                match dir {
                    None => self.root_opaque = true,
                    Some(d) => {
                        self.opaque.insert(d.as_bytes().to_vec());
                    }
                }
                Ok(())
            }
            Op::Whiteout { path, uid, gid } => {
                self.stats.whiteouts += 1;
                if self.created.contains(path.as_bytes()) || self.below_whiteout(&path) {
                    // Same-layer content survives its own layer's whiteout.
                    return Ok(());
                }
                if self.under_opaque(&path) {
                    // An opaque directory already hides everything below it, and overlayfs
                    // would list a whiteout there as a broken entry.
                    self.whited.insert(path.as_bytes().to_vec());
                    return Ok(());
                }
                let parent = self.parent_fd(&path)?;
                let name = path.file_name();
                self.make(&parent, &path, |p| {
                    mknodat(p, name, SFlag::S_IFCHR, Mode::empty(), 0)
                })?;
                fchownat(
                    &parent,
                    name,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| err(&path, "owning the whiteout", e))?;
                self.whited.insert(path.as_bytes().to_vec());
                Ok(())
            }
            Op::Create {
                path: None, meta, ..
            } => {
                self.root_meta = true;
                let fd = self.open_dir_rw(None)?;
                set_fd_meta(&fd, &meta, &mut self.stats).map_err(|e| format!("/: {e}"))?;
                self.dirs.push((None, meta.mtime));
                Ok(())
            }
            Op::Create {
                path: Some(path),
                kind,
                meta,
            } => {
                if self.below_whiteout(&path) {
                    self.stats
                        .warn(format!("{path}: skipped: below a path this layer deletes"));
                    return Ok(());
                }
                self.create(&path, kind, &meta, data)?;
                self.whited.remove(path.as_bytes());
                self.created.insert(path.as_bytes().to_vec());
                Ok(())
            }
        }
    }

    /// Sets the root's metadata (from the lower root when the archive had none) and every
    /// directory's time; returns the counts.
    pub fn finish(mut self) -> Result<Stats, String> {
        if !self.root_meta {
            if let Some(lower) = self.lowers.first() {
                let src = openat(
                    lower,
                    ".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY,
                    Mode::empty(),
                )
                .map_err(|e| err(&"/", "opening the lower root", e))?;
                let root = self.open_dir_rw(None)?;
                copy_dir_meta(&src, &root).map_err(|e| format!("/: {e}"))?;
            }
        }
        for (dir, mtime) in std::mem::take(&mut self.dirs) {
            let t = TimeSpec::new(mtime, 0);
            let fd = self.open_dir_rw(dir.as_ref())?;
            futimens(&fd, &t, &t).map_err(|e| err(&shown(&dir), "setting times", e))?;
        }
        Ok(self.stats)
    }

    fn under_opaque(&self, path: &RelPath) -> bool {
        self.root_opaque
            || (!self.opaque.is_empty()
                && path.ancestors().any(|a| self.opaque.contains(a.as_bytes())))
    }

    /// Removes the whiteout nodes this layer already wrote below `dir`, which just became
    /// opaque (the marker may come after them in the archive).
    fn drop_whiteouts_below(&mut self, dir: Option<&RelPath>) -> Result<(), String> {
        let below = |w: &RelPath| match dir {
            None => true,
            Some(d) => w.ancestors().any(|a| a == *d),
        };
        let found: Vec<RelPath> = self
            .whited
            .iter()
            .filter_map(|w| RelPath::normalize(w).ok().flatten())
            .filter(|w| below(w))
            .collect();
        for w in found {
            let parent = self.parent_fd(&w)?;
            match unlinkat(&parent, w.file_name(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(err(&w, "removing a whiteout below an opaque directory", e)),
            }
        }
        Ok(())
    }

    fn below_whiteout(&self, path: &RelPath) -> bool {
        !self.whited.is_empty() && path.ancestors().any(|a| self.whited.contains(a.as_bytes()))
    }

    fn resolve(&self, path: &RelPath, flags: OFlag) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(resolve_flags());
        openat2(&self.root, path.as_bytes(), how)
    }

    fn open_dir_rw(&self, dir: Option<&RelPath>) -> Result<OwnedFd, String> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW;
        match dir {
            None => openat(&self.root, ".", flags | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| err(&"/", "opening", e)),
            Some(d) => self.resolve(d, flags).map_err(|e| err(d, "opening", e)),
        }
    }

    /// The parent directory of `path`, created (with lower metadata) where missing.
    fn parent_fd(&mut self, path: &RelPath) -> Result<OwnedFd, String> {
        match path.parent() {
            None => openat(
                &self.root,
                ".",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| err(&"/", "opening", e)),
            Some(p) => {
                self.ensure_dir(&p)?;
                self.resolve(&p, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| err(&p, "opening the parent", e))
            }
        }
    }

    /// Makes sure `dir` and all its ancestors exist in this layer.
    fn ensure_dir(&mut self, dir: &RelPath) -> Result<(), String> {
        match self.resolve(dir, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(_) => return Ok(()),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err(dir, "resolving", e)),
        }
        let mut chain: Vec<RelPath> = dir.ancestors().collect();
        chain.push(dir.clone());
        for p in chain {
            match self.resolve(&p, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(_) => continue,
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(err(&p, "resolving", e)),
            }
            let parent = match p.parent() {
                None => openat(
                    &self.root,
                    ".",
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ),
                Some(pp) => self.resolve(&pp, OFlag::O_PATH | OFlag::O_DIRECTORY),
            }
            .map_err(|e| err(&p, "opening the parent", e))?;
            match mkdirat(&parent, p.file_name(), Mode::from_bits_truncate(0o755)) {
                Ok(()) => {}
                Err(Errno::EEXIST) => {
                    return Err(format!(
                        "{p}: a parent directory is a symbolic link that leads nowhere \
                         inside the layer"
                    ))
                }
                Err(e) => return Err(err(&p, "creating the implicit parent", e)),
            }
            if let Some(src) = self.lower_dir(&p) {
                let fd = self.open_dir_rw(Some(&p))?;
                copy_dir_meta(&src, &fd).map_err(|e| format!("{p}: {e}"))?;
            }
            self.created.insert(p.as_bytes().to_vec());
        }
        Ok(())
    }

    /// The directory at `path` in the merged view of the lower layers, if it is one there.
    fn lower_dir(&self, path: &RelPath) -> Option<OwnedFd> {
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
                .resolve(resolve_flags() | ResolveFlag::RESOLVE_NO_SYMLINKS)
        };
        for lower in &self.lowers {
            match openat2(lower, path.as_bytes(), how()) {
                Ok(fd) => return Some(fd),
                Err(Errno::ENOENT) => {}
                // A non-directory or a whiteout (a device) hides what is below.
                Err(_) => return None,
            }
            // Not in this layer: does it hide the layers below (a whiteout or an opaque
            // ancestor)?
            for anc in path.ancestors().chain(std::iter::once(path.clone())) {
                let fd = match openat2(lower, anc.as_bytes(), how()) {
                    Ok(fd) => fd,
                    Err(Errno::ENOENT) => break,
                    Err(_) => return None,
                };
                if File::from(fd)
                    .get_xattr(OPAQUE_XATTR)
                    .ok()
                    .flatten()
                    .is_some_and(|v| v == b"y")
                {
                    return None;
                }
            }
            let name_hidden = path
                .ancestors()
                .chain(std::iter::once(path.clone()))
                .any(|p| {
                    fstatat(lower, p.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| is_whiteout(&st))
                });
            if name_hidden {
                return None;
            }
        }
        None
    }

    /// Runs `mk` in `parent`; when the name exists, removes what is there (a directory
    /// tree too) and tries once more.
    fn make(
        &self,
        parent: &OwnedFd,
        path: &RelPath,
        mk: impl Fn(&OwnedFd) -> nix::Result<()>,
    ) -> Result<(), String> {
        match mk(parent) {
            Err(Errno::EEXIST) => {
                remove_any(parent, path.file_name()).map_err(|e| err(path, "replacing", e))?;
                mk(parent).map_err(|e| err(path, "creating", e))
            }
            r => r.map_err(|e| err(path, "creating", e)),
        }
    }

    fn create(
        &mut self,
        path: &RelPath,
        kind: Kind,
        meta: &Meta,
        data: &mut dyn Read,
    ) -> Result<(), String> {
        let parent = self.parent_fd(path)?;
        let name = path.file_name();
        let perm = Mode::from_bits_truncate(meta.mode);
        match kind {
            Kind::Dir => {
                match mkdirat(&parent, name, Mode::from_bits_truncate(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EEXIST) => {
                        let st = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                            .map_err(|e| err(path, "inspecting", e))?;
                        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                            remove_any(&parent, name).map_err(|e| err(path, "replacing", e))?;
                            mkdirat(&parent, name, Mode::from_bits_truncate(0o700))
                                .map_err(|e| err(path, "creating", e))?;
                        }
                    }
                    Err(e) => return Err(err(path, "creating", e)),
                }
                let fd = self.open_dir_rw(Some(path))?;
                set_fd_meta(&fd, meta, &mut self.stats).map_err(|e| format!("{path}: {e}"))?;
                self.dirs.push((Some(path.clone()), meta.mtime));
            }
            Kind::File { size } => {
                let flags = OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_WRONLY
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC;
                let open = |p: &OwnedFd| openat(p, name, flags, Mode::from_bits_truncate(0o600));
                let fd = match open(&parent) {
                    Err(Errno::EEXIST) => {
                        remove_any(&parent, name).map_err(|e| err(path, "replacing", e))?;
                        open(&parent)
                    }
                    r => r,
                }
                .map_err(|e| err(path, "creating", e))?;
                let mut file = File::from(fd);
                let n = io::copy(&mut data.take(size), &mut file)
                    .map_err(|e| format!("{path}: writing: {e}"))?;
                if n != size {
                    return Err(format!(
                        "{path}: the archive ends inside the file ({n} of {size} bytes)"
                    ));
                }
                self.stats.files += 1;
                self.stats.bytes += n;
                set_fd_meta(file.as_fd(), meta, &mut self.stats)
                    .map_err(|e| format!("{path}: {e}"))?;
                let t = TimeSpec::new(meta.mtime, 0);
                futimens(&file, &t, &t).map_err(|e| err(path, "setting times", e))?;
            }
            Kind::Symlink { target } => {
                self.make(&parent, path, |p| symlinkat(&target[..], p, name))?;
                self.set_path_meta(&parent, path, meta, false)?;
            }
            Kind::HardLink { target } => {
                if !self.created.contains(target.as_bytes()) {
                    return Err(format!(
                        "{path}: a hard link to {target}, which this layer does not contain"
                    ));
                }
                let tparent = self.parent_fd(&target)?;
                self.make(&parent, path, |p| {
                    linkat(&tparent, target.file_name(), p, name, AtFlags::empty())
                })?;
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                let t = if matches!(kind, Kind::Char { .. }) {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                let dev = libc::makedev(major, minor);
                self.make(&parent, path, |p| mknodat(p, name, t, perm, dev))?;
                self.set_path_meta(&parent, path, meta, true)?;
            }
            Kind::Fifo => {
                self.make(&parent, path, |p| mknodat(p, name, SFlag::S_IFIFO, perm, 0))?;
                self.set_path_meta(&parent, path, meta, true)?;
            }
        }
        Ok(())
    }

    /// Owner, mode and times of an object that is not opened (symlinks, devices, fifos);
    /// their xattrs are dropped with a warning (opening a device could run its driver).
    fn set_path_meta(
        &mut self,
        parent: &OwnedFd,
        path: &RelPath,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), String> {
        let name = path.file_name();
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err(path, "chown", e))?;
        if chmod {
            // Not a symlink (we just made it), so following is moot; chmod after chown,
            // which clears setuid.
            fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::NoFollowSymlink,
            )
            .or_else(|e| match e {
                // Older kernels cannot chmod with AT_SYMLINK_NOFOLLOW at all.
                Errno::EOPNOTSUPP => fchmodat(
                    parent,
                    name,
                    Mode::from_bits_truncate(meta.mode),
                    FchmodatFlags::FollowSymlink,
                ),
                e => Err(e),
            })
            .map_err(|e| err(path, "chmod", e))?;
        }
        if !meta.xattrs.is_empty() {
            self.stats
                .warn(format!("{path}: xattrs on a special file are not kept"));
        }
        let t = TimeSpec::new(meta.mtime, 0);
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| err(path, "setting times", e))
    }
}

fn shown(p: &Option<RelPath>) -> String {
    p.as_ref()
        .map_or_else(|| "/".to_string(), |p| p.to_string())
}

/// A whiteout as overlayfs writes it: a character device 0/0.
pub fn is_whiteout(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// chown, then chmod (chown clears setuid), then xattrs, on an open file or directory.
fn set_fd_meta(fd: impl AsFd, meta: &Meta, stats: &mut Stats) -> Result<(), String> {
    let fd = fd.as_fd();
    fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(|e| format!("chown {}:{}: {}", meta.uid, meta.gid, io::Error::from(e)))?;
    fchmod(fd, Mode::from_bits_truncate(meta.mode))
        .map_err(|e| format!("chmod {:o}: {}", meta.mode, io::Error::from(e)))?;
    if !meta.xattrs.is_empty() {
        let file = File::from(fd.try_clone_to_owned().map_err(|e| e.to_string())?);
        for (name, value) in &meta.xattrs {
            let n = std::ffi::OsStr::new(std::str::from_utf8(name).unwrap_or("\u{fffd}"));
            match file.set_xattr(n, value) {
                Ok(()) => {}
                // containerd's rule: a filesystem without user xattrs loses them quietly.
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {
                    stats.warn(format!("xattr {} not supported here", show(name)));
                }
                Err(e) => return Err(format!("setting xattr {}: {e}", show(name))),
            }
        }
    }
    Ok(())
}

/// Copies mode, owner and xattrs (overlay's own excepted) from one directory to another.
fn copy_dir_meta(src: &OwnedFd, dst: &OwnedFd) -> Result<(), String> {
    let st = fstat(src).map_err(|e| format!("stat of the lower directory: {e}"))?;
    let src_file = File::from(src.try_clone().map_err(|e| e.to_string())?);
    let mut xattrs = Vec::new();
    if let Ok(names) = src_file.list_xattr() {
        for n in names {
            let b = n.as_encoded_bytes();
            if b.starts_with(b"trusted.overlay.") || b.starts_with(b"user.overlay.") {
                continue;
            }
            if let Ok(Some(v)) = src_file.get_xattr(&n) {
                xattrs.push((b.to_vec(), v));
            }
        }
    }
    let meta = Meta {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime: st.st_mtime,
        xattrs,
    };
    set_fd_meta(dst, &meta, &mut Stats::default())
}

/// Removes whatever `name` is in `dir`: a file, a link, a device or a whole directory tree
/// (never following a symlink).
fn remove_any(dir: &OwnedFd, name: &[u8]) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        r => return r,
    }
    let sub = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(sub)?;
    let names: Vec<Vec<u8>> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    let sub = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for n in names {
        remove_any(&sub, &n)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
mod tests;
