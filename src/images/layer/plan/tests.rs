use super::*;

fn entry(path: &str, kind: EntryType) -> RawEntry {
    RawEntry {
        path: path.as_bytes().to_vec(),
        link: None,
        kind,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        size: 0,
        major: 0,
        minor: 0,
        xattrs: Vec::new(),
    }
}

fn rel(s: &str) -> RelPath {
    RelPath::normalize(s.as_bytes()).unwrap().unwrap()
}

#[test]
fn names_are_normalised_and_never_leave_the_layer() {
    assert_eq!(rel("./usr//bin/./sh").as_bytes(), b"usr/bin/sh");
    assert_eq!(rel("/etc/passwd").as_bytes(), b"etc/passwd");
    assert_eq!(RelPath::normalize(b"./").unwrap(), None);
    assert_eq!(RelPath::normalize(b"/").unwrap(), None);
    for bad in ["../etc/passwd", "a/../../b", "a/..", "/.."] {
        assert!(RelPath::normalize(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(RelPath::normalize(&[b'a'; 300]).is_err());
    assert!(RelPath::normalize(&vec![b'a'; 5000]).is_err());
    assert!(RelPath::normalize(b"a\0b").is_err());
}

#[test]
fn parents_and_ancestors() {
    let p = rel("a/b/c");
    assert_eq!(p.parent(), Some(rel("a/b")));
    assert_eq!(p.file_name(), b"c");
    assert_eq!(rel("a").parent(), None);
    let anc: Vec<_> = p.ancestors().collect();
    assert_eq!(anc, vec![rel("a"), rel("a/b")]);
}

#[test]
fn whiteouts_and_opaque_markers() {
    let w = plan(&entry("etc/.wh.rpc", EntryType::Regular)).unwrap();
    assert_eq!(
        w.op,
        Op::Whiteout {
            path: rel("etc/rpc"),
            uid: 0,
            gid: 0
        }
    );
    let top = plan(&entry(".wh.srv", EntryType::Regular)).unwrap();
    assert_eq!(
        top.op,
        Op::Whiteout {
            path: rel("srv"),
            uid: 0,
            gid: 0
        }
    );
    let o = plan(&entry("opt/data/.wh..wh..opq", EntryType::Regular)).unwrap();
    assert_eq!(
        o.op,
        Op::Opaque {
            dir: Some(rel("opt/data"))
        }
    );
    let root = plan(&entry(".wh..wh..opq", EntryType::Regular)).unwrap();
    assert_eq!(root.op, Op::Opaque { dir: None });
    // aufs metadata is skipped, an empty or dot name is an error.
    assert_eq!(
        plan(&entry(".wh..wh.plnk/1.2", EntryType::Regular))
            .unwrap()
            .op,
        Op::Create {
            path: Some(rel(".wh..wh.plnk/1.2")),
            kind: Kind::File { size: 0 },
            meta: Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 1_700_000_000,
                xattrs: vec![]
            }
        },
        "only the marker file itself is special"
    );
    assert_eq!(
        plan(&entry("a/.wh..wh.aufs", EntryType::Regular))
            .unwrap()
            .op,
        Op::Skip
    );
    for bad in ["a/.wh.", "a/.wh..", "a/.wh..."] {
        assert!(plan(&entry(bad, EntryType::Regular)).is_err(), "{bad}");
    }
    assert!(plan(&entry("../.wh.x", EntryType::Regular)).is_err());
}

#[test]
fn kinds_modes_and_owners() {
    let mut d = entry("tmp/", EntryType::Dir);
    d.mode = 0o41777;
    d.uid = 1000;
    let p = plan(&d).unwrap();
    let Op::Create { path, kind, meta } = p.op else {
        panic!("{:?}", p.op)
    };
    assert_eq!(path, Some(rel("tmp")));
    assert_eq!(kind, Kind::Dir);
    assert_eq!((meta.mode, meta.uid), (0o1777, 1000));

    let mut big = entry("x", EntryType::Regular);
    big.uid = u64::from(u32::MAX) + 1;
    assert!(plan(&big).is_err());

    let mut l = entry("bin/sh", EntryType::Symlink);
    l.link = Some(b"/bin/busybox".to_vec());
    assert!(matches!(
        plan(&l).unwrap().op,
        Op::Create {
            kind: Kind::Symlink { .. },
            ..
        }
    ));
    let mut h = entry("bin/ls", EntryType::HardLink);
    h.link = Some(b"./bin/busybox".to_vec());
    assert!(matches!(
        plan(&h).unwrap().op,
        Op::Create { kind: Kind::HardLink { target }, .. } if target == rel("bin/busybox")
    ));
    h.link = Some(b"../../etc/shadow".to_vec());
    assert!(plan(&h).is_err(), "a hard link may not leave the layer");
    h.link = None;
    assert!(plan(&h).is_err());

    assert!(plan(&entry("x", EntryType::Other(b'Z'))).is_err());
    assert_eq!(
        plan(&entry("pax_global_header", EntryType::GlobalHeader))
            .unwrap()
            .op,
        Op::Skip
    );
    assert!(
        plan(&entry("./", EntryType::Regular)).is_err(),
        "the root is a directory"
    );
    assert!(matches!(
        plan(&entry("./", EntryType::Dir)).unwrap().op,
        Op::Create { path: None, .. }
    ));
}

#[test]
fn overlay_xattrs_from_the_archive_are_dropped() {
    let mut e = entry("etc/", EntryType::Dir);
    e.xattrs = vec![
        (b"trusted.overlay.opaque".to_vec(), b"y".to_vec()),
        (b"user.overlay.redirect".to_vec(), b"/x".to_vec()),
        (b"security.capability".to_vec(), vec![1, 2, 3]),
        (b"user.mime".to_vec(), b"text".to_vec()),
    ];
    let p = plan(&e).unwrap();
    let Op::Create { meta, .. } = p.op else {
        panic!()
    };
    let names: Vec<_> = meta.xattrs.iter().map(|(n, _)| n.as_slice()).collect();
    assert_eq!(names, vec![&b"security.capability"[..], b"user.mime"]);
    assert!(p.warning.unwrap().contains("trusted.overlay.opaque"));

    e.xattrs = vec![(b"user.big".to_vec(), vec![0; MAX_XATTR_VALUE + 1])];
    assert!(plan(&e).is_err());
}
