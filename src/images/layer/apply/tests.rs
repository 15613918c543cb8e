//! The applier on hand-built tars, into temporary directories. Whiteouts and opaque markers
//! need root (mknod, trusted xattrs): those tests are privileged.

use super::super::apply_stream;
use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

struct Layer {
    b: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
}

impl Layer {
    fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
            uid: u64::from(nix::unistd::getuid().as_raw()),
            gid: u64::from(nix::unistd::getgid().as_raw()),
        }
    }
    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(1_700_000_000);
        h.set_size(size);
        h
    }
    fn dir(mut self, name: &str, mode: u32) -> Self {
        let mut h = self.header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, name, &[][..]).unwrap();
        self
    }
    fn file(mut self, name: &str, data: &[u8]) -> Self {
        let mut h = self.header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.b.append_data(&mut h, name, data).unwrap();
        self
    }
    fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
        let mut h = self.header(kind, 0o777, 0);
        self.b.append_link(&mut h, name, target).unwrap();
        self
    }
    fn pax_file(mut self, name: &str, xattrs: &[(&str, &[u8])]) -> Self {
        let recs: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(name, b"x")
    }
    fn bytes(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

fn dir_fd(p: &Path) -> OwnedFd {
    OwnedFd::from(std::fs::File::open(p).unwrap())
}

fn apply_to(tar: &[u8], target: &Path, lowers: &[&Path]) -> Result<Stats, String> {
    std::fs::create_dir_all(target).unwrap();
    let lowers = lowers.iter().map(|p| dir_fd(p)).collect();
    apply_stream(tar, Applier::new(dir_fd(target), lowers))
}

#[test]
fn files_dirs_symlinks_and_hard_links() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file("bin/busybox", b"#!/bin/true\n")
        .link(tar::EntryType::Symlink, "bin/sh", "busybox")
        .link(tar::EntryType::Link, "bin/ls", "bin/busybox")
        .dir("tmp", 0o1777)
        .file("etc/implicit/conf", b"k=v\n")
        .bytes();
    let root = t.path().join("l1");
    let stats = apply_to(&l, &root, &[]).unwrap();
    assert_eq!(stats.files, 2);
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    let a = std::fs::metadata(root.join("bin/busybox")).unwrap();
    let b = std::fs::metadata(root.join("bin/ls")).unwrap();
    assert_eq!(a.ino(), b.ino(), "a hard link shares the inode");
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    assert_eq!(tmp.mtime(), 1_700_000_000, "directory times are set last");
    let implicit = std::fs::metadata(root.join("etc")).unwrap();
    assert_eq!(implicit.permissions().mode() & 0o7777, 0o755);
}

#[test]
fn a_symlinked_parent_resolves_inside_the_layer() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let rel_outside = outside
        .strip_prefix("/")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let l = Layer::new()
        // The same path inside the layer, so the absolute link has somewhere to go.
        .file(&format!("{rel_outside}/.keep"), b"")
        .link(tar::EntryType::Symlink, "lib", outside.to_str().unwrap())
        .file("lib/passwd", b"owned\n")
        .link(tar::EntryType::Symlink, "up", "../../../..")
        .file("up/escaped", b"owned\n")
        .link(tar::EntryType::Symlink, "nowhere", "/does/not/exist")
        .bytes();
    let root = t.path().join("l1");
    apply_to(&l, &root, &[]).unwrap();
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing was written outside the layer"
    );
    // The absolute link resolved inside the layer root: the file landed at <root>/<outside>.
    let inside = root.join(outside.strip_prefix("/").unwrap()).join("passwd");
    assert!(inside.exists(), "{}", inside.display());
    assert!(
        root.join("escaped").exists(),
        "`..` stops at the layer root"
    );

    let dangling = Layer::new()
        .link(tar::EntryType::Symlink, "nowhere", "/does/not/exist")
        .file("nowhere/x", b"")
        .bytes();
    let e = apply_to(&dangling, &t.path().join("l2"), &[]).unwrap_err();
    assert!(e.contains("leads nowhere"), "{e}");
}

#[test]
fn a_final_symlink_is_replaced_never_followed() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    std::fs::write(&victim, b"original").unwrap();
    let l = Layer::new()
        .link(tar::EntryType::Symlink, "f", victim.to_str().unwrap())
        .file("f", b"new")
        .bytes();
    let root = t.path().join("l1");
    apply_to(&l, &root, &[]).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"original");
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"new");
}

#[test]
fn a_hard_link_must_point_into_its_own_layer() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    apply_to(&Layer::new().file("etc/shadow", b"s").bytes(), &lower, &[]).unwrap();
    let l = Layer::new()
        .link(tar::EntryType::Link, "copy", "etc/shadow")
        .bytes();
    let e = apply_to(&l, &t.path().join("l2"), &[&lower]).unwrap_err();
    assert!(e.contains("does not contain"), "{e}");
    let l = Layer::new()
        .link(tar::EntryType::Link, "copy", "../../etc/passwd")
        .bytes();
    assert!(apply_to(&l, &t.path().join("l3"), &[]).is_err());
}

#[test]
fn implicit_parents_copy_the_lower_metadata() {
    let t = tempfile::tempdir().unwrap();
    let lower = t.path().join("lower");
    let base = Layer::new()
        .dir("./", 0o711)
        .dir("tmp/", 0o1777)
        .dir("usr/", 0o750)
        .bytes();
    apply_to(&base, &lower, &[]).unwrap();
    let upper = t.path().join("upper");
    let l = Layer::new()
        .file("tmp/x", b"x")
        .file("usr/share/y", b"y")
        .bytes();
    apply_to(&l, &upper, &[&lower]).unwrap();
    let mode = |p: &str| {
        std::fs::metadata(upper.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("tmp"), 0o1777, "/tmp keeps 1777 through the stack");
    assert_eq!(mode("usr"), 0o750);
    assert_eq!(mode("usr/share"), 0o755, "not in any layer: 0755");
    assert_eq!(mode(""), 0o711, "the root takes the lower root's metadata");
}

#[test]
fn a_truncated_stream_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new().file("big", &[7u8; 4096]).bytes();
    let e = apply_to(&l[..512 + 1000], &t.path().join("l"), &[]).unwrap_err();
    assert!(!e.is_empty());
}

#[test]
fn pax_xattrs_are_applied_and_overlay_ones_dropped() {
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .pax_file(
            "f",
            &[
                ("user.note", b"kept"),
                ("trusted.overlay.redirect", b"/etc"),
            ],
        )
        .bytes();
    let root = t.path().join("l");
    let stats = apply_to(&l, &root, &[]).unwrap();
    assert!(
        stats
            .warnings
            .iter()
            .any(|w| w.contains("trusted.overlay.redirect")),
        "{stats:?}"
    );
    let f = std::fs::File::open(root.join("f")).unwrap();
    // tmpfs and ext4 keep user xattrs; a filesystem without them only warns.
    if let Ok(Some(v)) = f.get_xattr("user.note") {
        assert_eq!(v, b"kept");
    }
    assert!(f
        .get_xattr("trusted.overlay.redirect")
        .unwrap_or(None)
        .is_none());
}

#[test]
fn whiteouts_respect_same_layer_content_and_order() {
    if crate::testing::privileged("whiteouts_respect_same_layer_content_and_order").is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .dir("opt/", 0o755)
        .dir("opt/data/", 0o755)
        .file("opt/data/c", b"c")
        // The opaque marker after a sibling: the sibling survives.
        .file("opt/data/.wh..wh..opq", b"")
        .file("etc/keep", b"k")
        // A whiteout of this layer's own file is ignored.
        .file("etc/.wh.keep", b"")
        .file("etc/.wh.rpc", b"")
        // rm -rf of a dir, then an entry below it: skipped.
        .file(".wh.srv", b"")
        .file("srv/.wh.x", b"")
        .bytes();
    let root = t.path().join("l");
    apply_to(&l, &root, &[]).unwrap();
    assert_eq!(std::fs::read(root.join("opt/data/c")).unwrap(), b"c");
    let data = std::fs::File::open(root.join("opt/data")).unwrap();
    assert_eq!(
        data.get_xattr(OPAQUE_XATTR).unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"k");
    let rpc = nix::sys::stat::lstat(&root.join("etc/rpc")).unwrap();
    assert!(is_whiteout(&rpc), "etc/rpc is a 0/0 char device");
    let srv = nix::sys::stat::lstat(&root.join("srv")).unwrap();
    assert!(is_whiteout(&srv));
    assert!(!root.join(".wh.srv").exists() && !root.join("etc/.wh.rpc").exists());
}

#[test]
fn a_whited_out_lower_dir_gives_no_metadata() {
    if crate::testing::privileged("a_whited_out_lower_dir_gives_no_metadata").is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l1 = t.path().join("l1");
    apply_to(&Layer::new().dir("var/", 0o700).bytes(), &l1, &[]).unwrap();
    let l2 = t.path().join("l2");
    apply_to(&Layer::new().file(".wh.var", b"").bytes(), &l2, &[&l1]).unwrap();
    let l3 = t.path().join("l3");
    apply_to(
        &Layer::new().file("var/log", b"x").bytes(),
        &l3,
        &[&l2, &l1],
    )
    .unwrap();
    let m = std::fs::metadata(l3.join("var"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(m, 0o755, "the 0700 var below the whiteout is gone");
}

#[test]
fn no_whiteout_is_left_below_an_opaque_directory() {
    // overlayfs lists a whiteout below an opaque lower directory as a broken entry
    // (`c?????????`), so the opaque marker alone must do the hiding.
    if crate::testing::privileged("no_whiteout_is_left_below_an_opaque_directory").is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l = Layer::new()
        .dir("d/", 0o755)
        .file("d/.wh.before", b"")
        .file("d/sub/.wh.deep", b"")
        .file("d/.wh..wh..opq", b"")
        .file("d/.wh.after", b"")
        .file("d/keep", b"k")
        .file("e/.wh.gone", b"")
        .bytes();
    let root = t.path().join("l");
    apply_to(&l, &root, &[]).unwrap();
    for name in ["d/before", "d/sub/deep", "d/after"] {
        assert!(
            nix::sys::stat::lstat(&root.join(name)).is_err(),
            "{name} must not exist"
        );
    }
    assert_eq!(std::fs::read(root.join("d/keep")).unwrap(), b"k");
    assert!(is_whiteout(
        &nix::sys::stat::lstat(&root.join("e/gone")).unwrap()
    ));
}
