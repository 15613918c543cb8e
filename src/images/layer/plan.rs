//! PURE: one tar entry of a layer → the filesystem operation it stands for.
//!
//! Names are normalised and checked here (no `..`, bounded lengths), OCI whiteouts are
//! recognised (`.wh.<name>`, `.wh..wh..opq`), and xattrs that would steer overlayfs
//! (`trusted.overlay.*`, `user.overlay.*`) are dropped. Nothing here touches the disk; the
//! applier executes what this decides.

use std::fmt;

/// Longest path the applier accepts (PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest name of one component (NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Most xattrs one entry may carry.
pub const MAX_XATTRS: usize = 128;
/// Largest xattr value (XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 65536;

/// The opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// A normalised path inside a layer: non-empty components joined by `/`, none of them `.`,
/// `..` or longer than [`MAX_NAME`]; no leading slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    /// Normalises a tar name: leading `/` and `./`, empty and `.` components go; `..`, NUL
    /// and overlong names are refused. `Ok(None)` is the layer root itself.
    pub fn normalize(raw: &[u8]) -> Result<Option<RelPath>, String> {
        if raw.contains(&0) {
            return Err(format!("{}: the name contains a NUL byte", show(raw)));
        }
        if raw.len() > MAX_PATH {
            return Err(format!(
                "{}…: the name is longer than {MAX_PATH} bytes",
                show(&raw[..64])
            ));
        }
        let mut out: Vec<u8> = Vec::with_capacity(raw.len());
        for comp in raw.split(|b| *b == b'/') {
            match comp {
                b"" | b"." => continue,
                b".." => return Err(format!("{}: the name leaves the layer (`..`)", show(raw))),
                c if c.len() > MAX_NAME => {
                    return Err(format!(
                        "{}: a component is longer than {MAX_NAME} bytes",
                        show(raw)
                    ))
                }
                c => {
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(c);
                }
            }
        }
        Ok(if out.is_empty() {
            None
        } else {
            Some(RelPath(out))
        })
    }

    /// The bytes, `a/b/c`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The parent directory (`None` = the layer root).
    pub fn parent(&self) -> Option<RelPath> {
        let i = self.0.iter().rposition(|b| *b == b'/')?;
        Some(RelPath(self.0[..i].to_vec()))
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|b| *b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// `self/name`.
    pub fn join(parent: Option<&RelPath>, name: &[u8]) -> RelPath {
        match parent {
            None => RelPath(name.to_vec()),
            Some(p) => {
                let mut v = p.0.clone();
                v.push(b'/');
                v.extend_from_slice(name);
                RelPath(v)
            }
        }
    }

    /// Every proper ancestor, outermost first (`a`, `a/b` for `a/b/c`).
    pub fn ancestors(&self) -> impl Iterator<Item = RelPath> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(i, _)| RelPath(self.0[..i].to_vec()))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(&self.0))
    }
}

/// A bounded, printable form of a raw name.
pub fn show(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(&raw[..raw.len().min(256)]);
    let s: String = s.escape_debug().collect();
    if raw.len() > 256 {
        format!("{s}…")
    } else {
        s
    }
}

/// An extended attribute: (name, value).
pub type Xattr = (Vec<u8>, Vec<u8>);

/// Owner, mode and times of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes to set (overlay's own already dropped).
    pub xattrs: Vec<Xattr>,
}

/// What a tar entry creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file whose `size` bytes follow in the archive.
    File {
        /// Content length.
        size: u64,
    },
    /// A symbolic link (its target is never resolved by the applier).
    Symlink {
        /// The link's text.
        target: Vec<u8>,
    },
    /// A hard link to a path created earlier in the same layer.
    HardLink {
        /// The existing path.
        target: RelPath,
    },
    /// A character device.
    Char {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    Block {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One filesystem operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `dir/.wh..wh..opq`: hide everything below `dir` in lower layers (`None` = the root).
    Opaque {
        /// The directory made opaque.
        dir: Option<RelPath>,
    },
    /// `.wh.<name>`: hide `path` of lower layers (a 0/0 character device in the layer).
    Whiteout {
        /// The hidden path.
        path: RelPath,
        /// Owner of the whiteout node.
        uid: u32,
        /// Group of the whiteout node.
        gid: u32,
    },
    /// Create (or, for two directories, merge) an object. `path: None` is the layer root's
    /// own metadata (an entry `./`).
    Create {
        /// Where.
        path: Option<RelPath>,
        /// What.
        kind: Kind,
        /// With which owner, mode, times and xattrs.
        meta: Meta,
    },
    /// Nothing to do (a PAX global header, an aufs `.wh..wh.*` metadata file).
    Skip,
}

/// The type of a tar entry, as far as the planner cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// `0`, `\0` or `7`.
    Regular,
    /// `5`.
    Dir,
    /// `2`.
    Symlink,
    /// `1`.
    HardLink,
    /// `3`.
    Char,
    /// `4`.
    Block,
    /// `6`.
    Fifo,
    /// `g`: a PAX global header.
    GlobalHeader,
    /// Anything else (the raw type byte).
    Other(u8),
}

/// The fields of a tar entry the planner reads (header and PAX records already merged).
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The entry's name.
    pub path: Vec<u8>,
    /// Its link name (hard and symbolic links).
    pub link: Option<Vec<u8>>,
    /// Its type.
    pub kind: EntryType,
    /// Mode bits from the header.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time.
    pub mtime: u64,
    /// Content size.
    pub size: u64,
    /// Device numbers.
    pub major: u32,
    /// Device numbers.
    pub minor: u32,
    /// `SCHILY.xattr.*` records: (name, value).
    pub xattrs: Vec<Xattr>,
}

/// What the planner decided, and anything worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The operation.
    pub op: Op,
    /// A dropped xattr or the like (at most one per entry).
    pub warning: Option<String>,
}

/// Decides what one entry does.
pub fn plan(e: &RawEntry) -> Result<Planned, String> {
    let ok = |op| Ok(Planned { op, warning: None });
    if e.kind == EntryType::GlobalHeader {
        return ok(Op::Skip);
    }
    let path = RelPath::normalize(&e.path)?;
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| format!("{}: {what} {v} is out of range", show(&e.path)))
    };
    let (uid, gid) = (id(e.uid, "uid")?, id(e.gid, "gid")?);
    if let Some(p) = &path {
        let name = p.file_name();
        if name == OPAQUE_MARKER {
            return ok(Op::Opaque { dir: p.parent() });
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): never content.
                return ok(Op::Skip);
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(format!("{}: an invalid whiteout name", show(&e.path)));
            }
            return ok(Op::Whiteout {
                path: RelPath::join(p.parent().as_ref(), hidden),
                uid,
                gid,
            });
        }
    }
    let link = |what: &str| {
        e.link
            .clone()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| format!("{}: a {what} without a target", show(&e.path)))
    };
    let kind = match e.kind {
        EntryType::Regular => Kind::File { size: e.size },
        EntryType::Dir => Kind::Dir,
        EntryType::Symlink => {
            let target = link("symbolic link")?;
            if target.len() > MAX_PATH || target.contains(&0) {
                return Err(format!("{}: an invalid link target", show(&e.path)));
            }
            Kind::Symlink { target }
        }
        EntryType::HardLink => {
            let target = RelPath::normalize(&link("hard link")?)?
                .ok_or_else(|| format!("{}: a hard link to the layer root", show(&e.path)))?;
            Kind::HardLink { target }
        }
        EntryType::Char => Kind::Char {
            major: e.major,
            minor: e.minor,
        },
        EntryType::Block => Kind::Block {
            major: e.major,
            minor: e.minor,
        },
        EntryType::Fifo => Kind::Fifo,
        EntryType::GlobalHeader => return ok(Op::Skip),
        EntryType::Other(t) => {
            return Err(format!(
                "{}: unsupported tar entry type {:?}",
                show(&e.path),
                char::from(t)
            ))
        }
    };
    if path.is_none() && kind != Kind::Dir {
        return Err(format!(
            "{}: the layer root is not a directory",
            show(&e.path)
        ));
    }
    let (xattrs, warning) = filter_xattrs(&e.path, &e.xattrs)?;
    let meta = Meta {
        mode: e.mode & 0o7777,
        uid,
        gid,
        mtime: i64::try_from(e.mtime).unwrap_or(i64::MAX),
        xattrs,
    };
    Ok(Planned {
        op: Op::Create { path, kind, meta },
        warning,
    })
}

/// Drops overlayfs's own xattrs (a layer must not steer the overlay: metacopy, redirect,
/// opaque) and bounds the rest.
fn filter_xattrs(path: &[u8], xattrs: &[Xattr]) -> Result<(Vec<Xattr>, Option<String>), String> {
    if xattrs.len() > MAX_XATTRS {
        return Err(format!(
            "{}: {} xattrs (at most {MAX_XATTRS})",
            show(path),
            xattrs.len()
        ));
    }
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for (name, value) in xattrs {
        if value.len() > MAX_XATTR_VALUE || name.len() > MAX_NAME || name.contains(&0) {
            return Err(format!("{}: an oversized or invalid xattr", show(path)));
        }
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            dropped.push(show(name));
        } else {
            kept.push((name.clone(), value.clone()));
        }
    }
    let warning = (!dropped.is_empty()).then(|| {
        format!(
            "{}: dropped the overlayfs xattrs {} from the archive",
            show(path),
            dropped.join(", ")
        )
    });
    Ok((kept, warning))
}

#[cfg(test)]
mod tests;
