//! Container images against the real kernel: the test image is built offline with umoci
//! (`tests/images/mkimage.sh`: four layers, a deleted file and directory, an opaque directory
//! whose marker follows a sibling that must survive, implicit parents, a hard link), imported
//! in each archive format, unpacked by superd's sandboxed applier, compared with `umoci
//! unpack` of the same image, and run as a workload through overlayfs.

// Test helpers: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::Sandbox;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use superd::testing::privileged;

/// The test image, built into a temporary directory of the test's own (umoci takes a
/// second or two, and each test cleans up what it made).
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn build() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images/mkimage.sh");
        let out = Command::new(script).arg(dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "mkimage.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Fixture(dir)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.path().join(p)
    }
}

fn import(store: &Path, what: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_superd"))
        .args(["image", "import", "--store"])
        .arg(store)
        .args(what)
        .output()
        .unwrap()
}

fn import_ok(store: &Path, what: &[&Path]) -> String {
    let out = import(store, what);
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn layer_dirs(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("layers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp_is_empty(store: &Path) -> bool {
    std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .next()
        .is_none()
}

#[test]
fn every_archive_format_imports_and_layers_are_stored_once() {
    if privileged("every_archive_format_imports_and_layers_are_stored_once").is_none() {
        return;
    }
    let fx = Fixture::build();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("images");
    let out = import_ok(
        &store,
        &[
            &fx.join("oci.tar"),
            &fx.join("docker.tar"),
            &fx.join("zstd"),
        ],
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.contains("superd-test/busybox:oci (4 layers, 4 new)"),
        "{out}"
    );
    assert!(
        out.contains("superd-test/busybox:docker (4 layers, 0 new)"),
        "{out}"
    );
    assert!(
        out.contains("superd-test/busybox:zstd (4 layers, 0 new)"),
        "{out}"
    );
    assert_eq!(layer_dirs(&store).len(), 4, "one directory per ChainID");
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("refs.json")).unwrap()).unwrap();
    assert_eq!(refs["refs"].as_object().unwrap().len(), 3);
    assert!(tmp_is_empty(&store));
    // A second import of the same archive adds nothing.
    let again = import_ok(&store, &[&fx.join("oci.tar")]);
    assert!(again.contains("0 new"), "{again}");
    // A docker-archive's image ID (its config digest) names the image too.
    let st = superd::images::store::Store::open(
        &store,
        superd::images::layer::sandbox::Unpacker::new(env!("CARGO_BIN_EXE_superd"), None),
    )
    .unwrap();
    let by_tag = st
        .resolve(
            &superd::images::reference::ImageName::parse("superd-test/busybox:docker").unwrap(),
        )
        .unwrap();
    let by_config = st
        .resolve(
            &superd::images::reference::ImageName::parse(&format!(
                "superd-test/busybox@{}",
                by_tag.config
            ))
            .unwrap(),
        )
        .unwrap();
    assert_eq!(by_config.config, by_tag.config);
}

/// The overlay of superd's layer directories against umoci's flattened unpack: the same
/// names, types, modes, owners, link targets and contents.
#[test]
fn the_unpacked_layers_match_an_independent_unpacker() {
    if privileged("the_unpacked_layers_match_an_independent_unpacker").is_none() {
        return;
    }
    let fx = Fixture::build();
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("images");
    import_ok(&store, &[&fx.join("oci.tar")]);
    let oracle = t.path().join("umoci");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:final", fx.join("oci").display()))
        .arg(&oracle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Layers top first, as overlayfs lists them: follow the manifest's ChainIDs.
    let lowers = chain_dirs(&store, "docker.io/superd-test/busybox:oci");
    let merged = t.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    // The overlay lives in a private mount namespace that ends with this command.
    let script = format!(
        "mount -t overlay -o ro,lowerdir={} overlay {} && python3 {} {} {}",
        lowers.join(":"),
        merged.display(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images/treediff.py"),
        merged.display(),
        oracle.join("rootfs").display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the trees differ:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("identical"), "{summary}");
}

/// The layer directories of an image in the store, top first.
fn chain_dirs(store: &Path, name: &str) -> Vec<String> {
    let refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("refs.json")).unwrap()).unwrap();
    let digest = refs["refs"][name]["digest"].as_str().unwrap().to_string();
    let blob = |d: &str| -> serde_json::Value {
        let p = store
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let m = blob(&digest);
    let c = blob(m["config"]["digest"].as_str().unwrap());
    let diffs: Vec<superd::images::digest::Digest> = c["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| superd::images::digest::Digest::parse(d.as_str().unwrap()).unwrap())
        .collect();
    superd::images::digest::chain_ids(&diffs)
        .iter()
        .rev()
        .map(|c| {
            store
                .join("layers")
                .join(c.hex())
                .join("fs")
                .display()
                .to_string()
        })
        .collect()
}

/// Copies the oci-only layout so a test can damage it.
fn layout_copy(fx: &Fixture, to: &Path) -> PathBuf {
    let dst = to.join("layout");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fx.join("oci-only"))
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    dst
}

fn manifest_of(layout: &Path) -> (String, serde_json::Value) {
    let idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let d = idx["manifests"][0]["digest"].as_str().unwrap().to_string();
    let m = serde_json::from_slice(&std::fs::read(blob_path(layout, &d)).unwrap()).unwrap();
    (d, m)
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let d = superd::images::digest::Digest::of(bytes);
    std::fs::write(blob_path(layout, d.as_str()), bytes).unwrap();
    (d.to_string(), bytes.len())
}

#[test]
fn a_corrupt_blob_or_a_wrong_diff_id_commits_nothing() {
    if privileged("a_corrupt_blob_or_a_wrong_diff_id_commits_nothing").is_none() {
        return;
    }
    let fx = Fixture::build();
    let t = tempfile::tempdir().unwrap();
    // 1. A flipped byte in the last layer's blob (gzip still decodes or fails: either way
    //    the blob digest cannot match).
    let layout = layout_copy(&fx, t.path());
    let (_, m) = manifest_of(&layout);
    let last = m["layers"][3]["digest"].as_str().unwrap();
    let p = blob_path(&layout, last);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&p, &bytes).unwrap();
    let store = t.path().join("images");
    let out = import(&store, &[&layout]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("layer"), "{err}");
    assert_eq!(
        layer_dirs(&store).len(),
        3,
        "the three good layers only: {err}"
    );
    assert!(tmp_is_empty(&store), "nothing half-written is left");
    assert!(!store.join("refs.json").exists(), "no image was named");

    // 2. A config whose DiffID for layer 4 is wrong (manifest and index rewritten to match,
    //    so only the DiffID check can catch it).
    let t2 = tempfile::tempdir().unwrap();
    let layout = layout_copy(&fx, t2.path());
    let (_, mut m) = manifest_of(&layout);
    let cfg_digest = m["config"]["digest"].as_str().unwrap().to_string();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob_path(&layout, &cfg_digest)).unwrap()).unwrap();
    cfg["rootfs"]["diff_ids"][3] = serde_json::json!(format!("sha256:{}", "0".repeat(64)));
    let (cd, cs) = put_blob(&layout, &serde_json::to_vec(&cfg).unwrap());
    m["config"]["digest"] = serde_json::json!(cd);
    m["config"]["size"] = serde_json::json!(cs);
    let (md, ms) = put_blob(&layout, &serde_json::to_vec(&m).unwrap());
    let mut idx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    idx["manifests"][0]["digest"] = serde_json::json!(md);
    idx["manifests"][0]["size"] = serde_json::json!(ms);
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    let store = t2.path().join("images");
    let out = import(&store, &[&layout]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the image config says"), "{err}");
    assert_eq!(layer_dirs(&store).len(), 3, "{err}");
    assert!(tmp_is_empty(&store));
}

#[test]
fn an_imported_image_runs_with_its_config() {
    if privileged("an_imported_image_runs_with_its_config").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-run");
    // The store is the daemon's: import while it is down (the daemonless build-host path).
    sb.stop();
    import_ok(&sb.state.join("images"), &[&fx.join("oci.tar")]);
    sb.spawn_superd();
    sb.write_manifest(
        "img",
        "[rootfs]\nimage = \"superd-test/busybox:oci\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    let log = sb.wait_log("img", "rpc-gone");
    assert!(
        log.contains("hello from superd in /opt as 65534"),
        "Entrypoint + Cmd, Env, WorkingDir and User from the image: {log}"
    );
    let lines: Vec<&str> = log.lines().collect();
    assert!(
        lines.contains(&"c") && !lines.contains(&"a") && !lines.contains(&"b"),
        "the opaque /opt/data keeps only its own layer's c: {log}"
    );
    // The manifest overrides: args replace Cmd, env merges, workdir and user win.
    sb.write_manifest(
        "over",
        "args = [\"echo $GREETING $EXTRA $(pwd) $(id -u); touch /etc/x && echo writable\"]\nworkdir = \"/srv/new\"\nuser = \"0:0\"\n[env]\nEXTRA = \"more\"\n[rootfs]\nimage = \"superd-test/busybox:oci\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    let log = sb.wait_log("over", "writable");
    assert!(log.contains("superd more /srv/new 0"), "{log}");
    // Read-only: writes fail.
    sb.write_manifest(
        "ro",
        "command = [\"/bin/sh\", \"-c\", \"touch /etc/x 2>/dev/null || echo cannot-write\"]\n[rootfs]\nimage = \"superd-test/busybox:oci\"\nwritable = \"none\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    sb.wait_log("ro", "cannot-write");
    // Not in the store: a start error naming the image, retried, nothing else disturbed.
    sb.write_manifest(
        "missing",
        "[rootfs]\nimage = \"superd-test/nothere:1\"\npull = \"never\"\n[network]\nmode = \"none\"\n",
    );
    sb.wait_until(
        "a start error for the missing image",
        std::time::Duration::from_secs(20),
        |s| {
            s.superd_log()
                .contains("superd-test/nothere:1 is not in the store")
        },
    );
    sb.shutdown();
}

fn superctl(sb: &Sandbox, args: &[&str], stdin: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_superctl"));
    cmd.arg("--socket").arg(&sb.socket).args(args);
    if let Some(p) = stdin {
        cmd.stdin(std::fs::File::open(p).unwrap());
    }
    cmd.output().unwrap()
}

/// `tar -C dir -cf out .`: an OCI layout directory as an archive; returns `out`.
fn tar_dir(dir: &Path, out: &Path) -> PathBuf {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    out.to_path_buf()
}

/// `superctl image import FILE` through the sandbox's daemon, which must succeed.
fn import_via_daemon(sb: &Sandbox, file: &Path) -> String {
    let out = superctl(sb, &["image", "import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn superctl_imports_through_the_daemon_and_rm_refuses_an_image_in_use() {
    if privileged("superctl_imports_through_the_daemon_and_rm_refuses_an_image_in_use").is_none() {
        return;
    }
    let fx = Fixture::build();
    let sb = Sandbox::start("image-ctl");
    // A workload waiting for its image: a start error, retried until the image is there.
    sb.write_manifest(
        "web",
        "[rootfs]\nimage = \"superd-test/busybox:docker\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    // stdin, as `ssh box superctl image import - < img.tar` would give it.
    let out = superctl(&sb, &["image", "import", "-"], Some(&fx.join("docker.tar")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("superd-test/busybox:docker (4 layers, 4 new)"),
        "{text}"
    );
    let out = superctl(
        &sb,
        &["image", "import", fx.join("oci.tar").to_str().unwrap()],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 new"));
    sb.wait_log("web", "rpc-gone");
    // Each import is an event.
    let out = superctl(
        &sb,
        &[
            "events",
            "--since",
            "5m",
            "--no-follow",
            "--filter",
            "kind=image",
        ],
        None,
    );
    let events = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        events
            .lines()
            .filter(|l| l.contains("image: import: docker.io/superd-test/busybox:"))
            .count(),
        2,
        "{events}"
    );

    let out = superctl(&sb, &["image", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let images = ls["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{ls}");
    let docker = images
        .iter()
        .find(|i| i["names"][0] == "docker.io/superd-test/busybox:docker")
        .unwrap();
    assert_eq!(docker["used_by"], serde_json::json!(["web"]));
    assert_eq!(
        docker["size"], docker["shared"],
        "both images are the same layers, stored once"
    );
    let table = superctl(&sb, &["image", "ls"], None);
    assert!(String::from_utf8_lossy(&table.stdout).contains("USED BY"));

    let out = superctl(&sb, &["image", "rm", "superd-test/busybox:docker"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by web"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = superctl(&sb, &["image", "rm", "superd-test/busybox:oci"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = superctl(&sb, &["image", "rm", "superd-test/busybox:oci"], None);
    assert_eq!(out.status.code(), Some(1), "no such image any more");
    sb.shutdown();
}

/// A child process killed (by its PID) and waited for when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A registry and, in front of it, a proxy that cuts the first long blob response after
/// 30000 bytes; both on 127.0.0.1 inside the sandbox's network namespace.
struct Registry {
    _registry: Killed,
    _proxy: Killed,
    /// `127.0.0.1:PORT` of the proxy.
    proxy: String,
    /// `127.0.0.1:PORT` of the registry itself.
    direct: String,
    log: PathBuf,
}

fn wait_port(sb: &Sandbox, addr: &str) {
    let url = format!("http://{addr}/v2/");
    sb.wait_until(
        &format!("{addr} answers"),
        std::time::Duration::from_secs(20),
        |s| {
            s.cmd(&["curl", "-sf", "-o", "/dev/null", &url])
                .status
                .success()
        },
    );
}

fn start_registry(sb: &Sandbox, dir: &Path, port: u16) -> Registry {
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut reg = Command::new("docker-registry");
    reg.arg("serve")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("registry.log")).unwrap());
    sb.in_net(&mut reg);
    let registry = Killed(reg.spawn().unwrap());
    let direct = format!("127.0.0.1:{port}");
    wait_port(sb, &direct);
    let log = dir.join("proxy.log");
    let mut proxy = Command::new("python3");
    proxy
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/images/cutproxy.py"
        ))
        .args([(port + 1).to_string(), port.to_string(), "30000".into()])
        .arg(&log)
        .stdout(std::process::Stdio::null());
    sb.in_net(&mut proxy);
    let proxy_child = Killed(proxy.spawn().unwrap());
    let proxy = format!("127.0.0.1:{}", port + 1);
    wait_port(sb, &proxy);
    Registry {
        _registry: registry,
        _proxy: proxy_child,
        proxy,
        direct,
        log,
    }
}

fn push(sb: &Sandbox, layout: &Path, registry: &str, tag: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/images/push.py");
    let layout = layout.to_str().unwrap();
    let out = sb.cmd(&[
        "python3",
        script,
        layout,
        registry,
        "superd-test/busybox",
        tag,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_pull_from_a_real_registry_resumes_a_cut_layer_and_runs() {
    if privileged("a_pull_from_a_real_registry_resumes_a_cut_layer_and_runs").is_none() {
        return;
    }
    let fx = Fixture::build();
    // The sandbox has a network namespace of its own, so any port is free in it.
    let port = 5000;
    let mut sb = Sandbox::start_with(
        "image-pull",
        &[
            "--insecure-registry",
            "127.0.0.1:5001",
            "--insecure-registry",
            "127.0.0.1:5000",
        ],
    );
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = start_registry(&sb, reg_dir.path(), port);
    assert_eq!(reg.proxy, "127.0.0.1:5001");
    let digest = push(&sb, &fx.join("oci-only"), &reg.direct, "1");
    push(&sb, &fx.join("zstd"), &reg.direct, "1-zstd");

    // Pinned by digest, fetched on demand through the cutting proxy.
    sb.write_manifest(
        "pulled",
        &format!(
            "[rootfs]\nimage = \"{}/superd-test/busybox:1@{digest}\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
            reg.proxy
        ),
    );
    let log = sb.wait_log("pulled", "rpc-gone");
    assert!(log.contains("hello from superd in /opt as 65534"), "{log}");
    let proxy_log = std::fs::read_to_string(&reg.log).unwrap();
    assert!(
        proxy_log.contains("range: bytes=30000-"),
        "the cut layer was resumed with a Range request:\n{proxy_log}"
    );
    assert!(
        sb.superd_log().contains("layer download interrupted"),
        "{}",
        sb.superd_log()
    );
    let ingest = sb.state.join("images/ingest");
    assert!(
        std::fs::read_dir(&ingest).unwrap().next().is_none(),
        "no download is left behind"
    );

    // The zstd variant has the same DiffIDs: nothing new to store.
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            &format!("{}/superd-test/busybox:1-zstd", reg.direct),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("(4 layers, 0 new)"), "{text}");
    // Layer by layer: each was already in the store.
    assert_eq!(text.matches("already present").count(), 4, "{text}");
    // A workload naming a tag: pulled on demand; when an explicit pull moves the tag, the
    // workload is restarted onto the new image at once (never silently at a later restart).
    sb.write_manifest(
        "tagged",
        &format!(
            "command = [\"/bin/sh\", \"-c\", \"echo up; exec sleep 1000\"]\n[rootfs]\nimage = \"{}/superd-test/busybox:1\"\n[network]\nmode = \"none\"\n",
            reg.direct
        ),
    );
    sb.wait_log("tagged", "up");
    let first = sb.wait_running("tagged").pid;
    push(&sb, &fx.join("zstd"), &reg.direct, "1");
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            &format!("{}/superd-test/busybox:1", reg.direct),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("restarted tagged"), "{text}");
    sb.wait_until(
        "tagged restarted",
        std::time::Duration::from_secs(20),
        |s| {
            s.try_status().is_some_and(|st| {
                st.workloads.iter().any(|w| {
                    w.name == "tagged" && w.state == superd::api::State::Running && w.pid != first
                })
            })
        },
    );

    // A registry not listed as insecure is spoken to over HTTPS only.
    let out = superctl(
        &sb,
        &["image", "pull", "127.0.0.2:5000/superd-test/busybox:1"],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("https://127.0.0.2:5000/"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A name the registry does not have: a clear error.
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            &format!("{}/superd-test/nothere:1", reg.direct),
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(reg);
    sb.shutdown();
}

/// A one-layer OCI layout whose layer holds `/extra` with `content` (a layer no other test
/// image has).
fn extra_image(dir: &Path, content: &[u8]) -> PathBuf {
    let layout = dir.join("extra");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "extra", content).unwrap();
    let layer = b.into_inner().unwrap();
    let (ld, ls) = put_blob(&layout, &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/extra"]},
        "rootfs": {"type": "layers", "diff_ids": [ld]},
    });
    let (cd, cs) = put_blob(&layout, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": ls}],
    });
    let (md, ms) = put_blob(&layout, &serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
        "annotations": {"org.opencontainers.image.ref.name": "superd-test/extra:1"}}]});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    layout
}

/// Ages every name of the store at `store` past the grace period (as if imported yesterday).
fn age_names(store: &Path) {
    let refs_path = store.join("refs.json");
    let mut refs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&refs_path).unwrap()).unwrap();
    for r in refs["refs"].as_object_mut().unwrap().values_mut() {
        r["at"] = serde_json::json!(0);
    }
    std::fs::write(&refs_path, serde_json::to_vec(&refs).unwrap()).unwrap();
}

#[test]
fn prune_removes_exactly_what_no_manifest_needs() {
    if privileged("prune_removes_exactly_what_no_manifest_needs").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-gc");
    sb.stop();
    let store = sb.state.join("images");
    let extra = extra_image(fx.0.path(), b"only here\n");
    import_ok(
        &store,
        &[&fx.join("oci.tar"), &fx.join("docker.tar"), &extra],
    );
    assert_eq!(layer_dirs(&store).len(), 5);
    age_names(&store);
    sb.spawn_superd();
    sb.write_manifest(
        "web",
        "[rootfs]\nimage = \"superd-test/busybox:docker\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    sb.wait_log("web", "rpc-gone");

    let out = superctl(&sb, &["image", "prune", "--dry-run"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("would remove name docker.io/superd-test/busybox:oci"),
        "{text}"
    );
    assert!(
        text.contains("would remove name docker.io/superd-test/extra:1"),
        "{text}"
    );
    assert!(
        !text.contains("busybox:docker"),
        "the manifest's image stays: {text}"
    );
    assert!(text.contains("2 names, 1 layers"), "{text}");
    assert_eq!(layer_dirs(&store).len(), 5, "a dry run removes nothing");

    let out = superctl(&sb, &["image", "prune"], None);
    assert!(out.status.success());
    assert_eq!(
        layer_dirs(&store).len(),
        4,
        "only the layer no image needs is gone"
    );
    let ls = superctl(&sb, &["image", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(ls["images"].as_array().unwrap().len(), 1, "{ls}");
    assert!(std::fs::read_dir(store.join("trash"))
        .unwrap()
        .next()
        .is_none());
    // The workload's image still runs after a restart.
    sb.client().restart("web").unwrap();
    sb.wait_until("a second run", std::time::Duration::from_secs(20), |s| {
        s.workload_log("web").matches("rpc-gone").count() >= 2
    });
    sb.shutdown();
}

#[test]
fn a_full_store_fails_cleanly_and_frees_what_it_took() {
    if privileged("a_full_store_fails_cleanly_and_frees_what_it_took").is_none() {
        return;
    }
    let fx = Fixture::build();
    // The store on a 3 MiB tmpfs in superd's own mount namespace (gone with it).
    let mut sb = Sandbox::start_wrapped("image-full", &std::env::temp_dir(), &[], |sb| {
        let store = sb.state.join("images");
        Some(format!(
            "mkdir -p {0} && mount -t tmpfs -o size=3m superd-test-store {0} && exec \"$0\" \"$@\"",
            store.display()
        ))
    });
    sb.write_manifest(
        "steady",
        "command = [\"/bin/sleep\", \"1000\"]\n[network]\nmode = \"none\"\n",
    );
    let pid = sb.wait_running("steady").pid;
    let out = superctl(
        &sb,
        &["image", "import", fx.join("oci.tar").to_str().unwrap()],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("disk full") && err.contains("MiB are free"),
        "{err}"
    );
    // What the failed import spooled and unpacked is gone: a small image fits.
    let extra = extra_image(fx.0.path(), b"small\n");
    let tarball = tar_dir(&extra, &fx.join("extra.tar"));
    let out = superctl(&sb, &["image", "import", tarball.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ls = superctl(&sb, &["image", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(ls["images"].as_array().unwrap().len(), 1, "{ls}");
    assert_eq!(
        sb.wait_running("steady").pid,
        pid,
        "the running workload was not touched"
    );
    sb.shutdown();
}

#[test]
fn named_volumes_are_seeded_from_the_image_and_survive_restarts() {
    if privileged("named_volumes_are_seeded_from_the_image_and_survive_restarts").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-vol");
    sb.stop();
    import_ok(&sb.state.join("images"), &[&fx.join("oci.tar")]);
    sb.spawn_superd();
    // A read-only root with a seeded volume, a fresh one, and a sized tmpfs.
    let manifest = "command = [\"/bin/sh\", \"-c\", \"echo data=$(ls /opt/data); echo fresh-owner=$(stat -c %u:%g /srv/fresh); echo fresh=$(ls /srv/fresh); touch /srv/fresh/f; echo t > /var/lib/app/t && echo tmpfs-ok; exec sleep 1000\"]\n\
        [rootfs]\nimage = \"superd-test/busybox:oci\"\nwritable = \"none\"\n\
        [tmpfs]\nmounts = [\"/var/lib/app:1M\"]\n\
        [[volumes]]\nname = \"seeded\"\ntarget = \"/opt/data\"\n\
        [[volumes]]\nname = \"fresh\"\ntarget = \"/srv/fresh\"\n\
        [network]\nmode = \"none\"\n";
    sb.write_manifest("db", manifest);
    let log = sb.wait_log("db", "tmpfs-ok");
    assert!(
        log.contains("data=c\n"),
        "seeded from the image's merged /opt/data: {log}"
    );
    assert!(
        log.contains("fresh-owner=65534:65534"),
        "given to the image's user: {log}"
    );
    assert!(log.contains("fresh=\n"), "{log}");
    sb.client().restart("db").unwrap();
    sb.wait_until("the second run", std::time::Duration::from_secs(20), |s| {
        s.workload_log("db").matches("tmpfs-ok").count() >= 2
    });
    let log = sb.workload_log("db");
    assert!(
        log.contains("fresh=f\n"),
        "what the workload wrote survived: {log}"
    );
    assert_eq!(log.matches("data=c\n").count(), 2, "{log}");

    let ls = superctl(&sb, &["volume", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let vols = ls["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 2, "{ls}");
    assert!(
        vols.iter()
            .all(|v| v["used_by"] == serde_json::json!(["db"])),
        "{ls}"
    );
    let out = superctl(&sb, &["volume", "rm", "fresh"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by db"));
    sb.remove_manifest("db");
    sb.wait_until("db is gone", std::time::Duration::from_secs(20), |s| {
        s.try_status().is_some_and(|st| st.workloads.is_empty())
    });
    let out = superctl(&sb, &["volume", "rm", "fresh"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!sb.state.join("volumes/fresh").exists());
    sb.shutdown();
}

#[test]
fn a_multi_arch_index_pulls_this_machines_image() {
    if privileged("a_multi_arch_index_pulls_this_machines_image").is_none() {
        return;
    }
    let fx = Fixture::build();
    let sb = Sandbox::start_with("image-index", &["--insecure-registry", "127.0.0.1:5000"]);
    let reg_dir = tempfile::tempdir().unwrap();
    let reg = start_registry(&sb, reg_dir.path(), 5000);
    // One layout with both manifests (gzip and zstd layers) and an index over them:
    // arm64 → zstd, amd64 → gzip.
    let layout = reg_dir.path().join("multi");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fx.join("zstd"))
        .arg(&layout)
        .status()
        .unwrap();
    assert!(st.success());
    for e in std::fs::read_dir(fx.join("oci-only/blobs/sha256"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), layout.join("blobs/sha256").join(e.file_name())).unwrap();
    }
    let (gzip, gsize) = {
        let (d, m) = manifest_of(&fx.join("oci-only"));
        (d, serde_json::to_vec(&m).unwrap().len())
    };
    let gsize = std::fs::metadata(blob_path(&layout, &gzip)).map_or(gsize as u64, |m| m.len());
    let (zstd, _) = manifest_of(&fx.join("zstd"));
    let zsize = std::fs::metadata(blob_path(&layout, &zstd)).unwrap().len();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": mt, "digest": zstd, "size": zsize,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": mt, "digest": gzip, "size": gsize,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": mt, "digest": zstd, "size": zsize,
             "platform": {"os": "unknown", "architecture": "unknown"}},
        ],
    });
    let (idx_digest, idx_size) = put_blob(&layout, &serde_json::to_vec(&index).unwrap());
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": idx_digest, "size": idx_size}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    push(&sb, &layout, &reg.direct, "multi");
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            &format!("{}/superd-test/busybox:multi", reg.direct),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (os, arch) = superd::images::image::host_platform();
    if (os, arch) == ("linux", "amd64") {
        assert!(text.contains(&gzip), "the amd64 entry was chosen: {text}");
    }
    // Pinned by the index digest, the workload runs this machine's image.
    sb.write_manifest(
        "multi",
        &format!(
            "[rootfs]\nimage = \"{}/superd-test/busybox@{idx_digest}\"\npull = \"never\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
            reg.direct
        ),
    );
    sb.wait_log("multi", "rpc-gone");
    // --platform picks another entry (here arm64 → the zstd manifest).
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            "--platform",
            "linux/arm64",
            &format!("{}/superd-test/busybox:multi", reg.direct),
        ],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&zstd), "the arm64 entry was chosen: {text}");
    let out = superctl(
        &sb,
        &[
            "image",
            "pull",
            "--platform",
            "linux/s390x",
            &format!("{}/superd-test/busybox:multi", reg.direct),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no image for linux/s390x"), "{err}");
    drop(reg);
    sb.shutdown();
}

#[test]
fn a_squashfs_store_serves_pre_seeded_images_read_only() {
    if privileged("a_squashfs_store_serves_pre_seeded_images_read_only").is_none() {
        return;
    }
    let fx = Fixture::build();
    // What an appliance build does: a daemonless import, then the store packed read-only.
    let seed = fx.join("seed");
    import_ok(&seed, &[&fx.join("docker.tar")]);
    let img = fx.join("images.img");
    let out = Command::new("mksquashfs")
        .arg(&seed)
        .arg(&img)
        .args([
            "-noappend",
            "-quiet",
            "-e",
            ".lock",
            "tmp",
            "ingest",
            "trash",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mksquashfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // superd mounts it through a loop device in its own mount namespace (gone with it).
    let img_arg = img.to_str().unwrap();
    let sb = Sandbox::start_wrapped(
        "image-ro",
        &std::env::temp_dir(),
        &["--image-store-ro", img_arg],
        |_| Some("exec \"$0\" \"$@\"".to_string()),
    );
    sb.write_manifest(
        "seeded",
        "[rootfs]\nimage = \"superd-test/busybox:docker\"\npull = \"never\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    let log = sb.wait_log("seeded", "rpc-gone");
    assert!(log.contains("hello from superd"), "{log}");
    assert!(
        layer_dirs(&sb.state.join("images")).is_empty(),
        "nothing was copied into the writable store"
    );
    let ls = superctl(&sb, &["image", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let images = ls["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{ls}");
    assert_eq!(images[0]["read_only"], true, "{ls}");
    let table = superctl(&sb, &["image", "ls"], None);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("(read-only)"),
        "{}",
        String::from_utf8_lossy(&table.stdout)
    );
    // The same layers imported again are found in the read-only store.
    let out = superctl(
        &sb,
        &["image", "import", fx.join("oci.tar").to_str().unwrap()],
        None,
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 new"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(layer_dirs(&sb.state.join("images")).is_empty());
    // Unused, its name still cannot be removed, and prune leaves it.
    sb.remove_manifest("seeded");
    sb.wait_until("seeded is gone", std::time::Duration::from_secs(10), |sb| {
        sb.try_status()
            .is_some_and(|s| s.workloads.iter().all(|w| w.name != "seeded"))
    });
    let out = superctl(&sb, &["image", "rm", "superd-test/busybox:docker"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("read-only image store"), "{err}");
    let out = superctl(&sb, &["image", "prune"], None);
    assert!(out.status.success());
    let ls = superctl(&sb, &["image", "ls", "--json"], None);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert!(
        ls["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["names"][0] == "docker.io/superd-test/busybox:docker"),
        "{ls}"
    );
    sb.shutdown();
}

/// A docker-archive `superd-test/many:N` of `n` layers in `dir` (tests/images/fixture.py).
fn many_layer_archive(dir: &Path, n: u32) -> PathBuf {
    let tarball = dir.join("many.tar");
    let st = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/images/fixture.py"
        ))
        .arg("many")
        .arg(&tarball)
        .arg(n.to_string())
        .status()
        .unwrap();
    assert!(st.success());
    tarball
}

#[test]
fn a_300_layer_image_mounts_or_fails_naming_the_layer_count() {
    if privileged("a_300_layer_image_mounts_or_fails_naming_the_layer_count").is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tarball = many_layer_archive(dir.path(), 300);
    let sb = Sandbox::start("image-many");
    let out = superctl(&sb, &["image", "import", tarball.to_str().unwrap()], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("(300 layers, 300 new)"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sb.write_manifest(
        "many",
        "[rootfs]\nimage = \"superd-test/many:300\"\npull = \"never\"\n[network]\nmode = \"none\"\n[restart]\npolicy = \"never\"\n",
    );
    if superd::runtime::sys::has_lowerdir_plus() {
        // fsconfig `lowerdir+`, one call per layer: past the page that mount(2) takes.
        sb.wait_log("many", "layers=299");
    } else {
        sb.wait_until(
            "the start error names the layer count",
            std::time::Duration::from_secs(20),
            |sb| sb.superd_log().contains("the image has 300 layers"),
        );
    }
    sb.shutdown();
}

#[test]
fn a_changed_image_is_fetched_before_the_running_instance_stops() {
    if privileged("a_changed_image_is_fetched_before_the_running_instance_stops").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-prepull");
    import_via_daemon(&sb, &fx.join("docker.tar"));
    let manifest = |image: &str, pull: &str| {
        format!(
            "command = [\"/bin/sleep\", \"1000\"]\n[rootfs]\nimage = \"{image}\"\npull = \"{pull}\"\n[network]\nmode = \"none\"\n"
        )
    };
    sb.write_manifest("svc", &manifest("superd-test/busybox:docker", "never"));
    let old = sb.wait_running("svc").pid;
    // The new image is not there and may not be pulled: the old instance keeps serving.
    sb.write_manifest("svc", &manifest("superd-test/busybox:oci", "never"));
    let w = sb.wait_for(
        "svc",
        "a notice about the new image",
        Duration::from_secs(10),
        |w| {
            w.notice
                .as_deref()
                .is_some_and(|n| n.contains("superd-test/busybox:oci is not in the store yet"))
        },
    );
    assert_eq!(
        (w.state, w.pid),
        (superd::api::State::Running, old),
        "{w:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sb.wait_running("svc").pid,
        old,
        "stopped before its image was there"
    );
    // The image arrives: the change goes through within the poll interval.
    import_via_daemon(&sb, &fx.join("oci.tar"));
    let w = sb.wait_for("svc", "the new instance", Duration::from_secs(10), |w| {
        w.state == superd::api::State::Running && w.pid != old && w.pid.is_some()
    });
    assert_eq!(w.image.as_deref(), Some("superd-test/busybox:oci"));
    assert_eq!(w.notice, None, "{w:?}");
    // A tag: shown as not pinned, with the digest it resolved to.
    let digest = w.image_digest.clone().unwrap_or_default();
    assert!(digest.starts_with("sha256:"), "{w:?}");
    let table = superctl(&sb, &["status"], None);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "svc: image superd-test/busybox:oci is not pinned, runs {digest}"
        )),
        "{table}"
    );
    // A pull that fails (nothing listens there) leaves the running instance as it is, and
    // says why.
    let current = w.pid;
    sb.write_manifest(
        "svc",
        &manifest("127.0.0.1:1/superd-test/none:1", "missing"),
    );
    let w = sb.wait_for("svc", "the failed pull", Duration::from_secs(20), |w| {
        w.notice
            .as_deref()
            .is_some_and(|n| n.contains("the last pull failed"))
    });
    assert_eq!(
        (w.state, w.pid),
        (superd::api::State::Running, current),
        "{w:?}"
    );
    sb.shutdown();
}

#[test]
fn garbage_is_collected_at_start_and_when_a_workload_lets_go() {
    if privileged("garbage_is_collected_at_start_and_when_a_workload_lets_go").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-autogc");
    sb.stop();
    let store = sb.state.join("images");
    let extra = extra_image(fx.0.path(), b"only here\n");
    import_ok(&store, &[&fx.join("docker.tar"), &extra]);
    assert_eq!(layer_dirs(&store).len(), 5);
    age_names(&store);
    sb.write_manifest(
        "web",
        "command = [\"/bin/sleep\", \"1000\"]\n[rootfs]\nimage = \"superd-test/busybox:docker\"\n[network]\nmode = \"none\"\n",
    );
    // At start, with no prune: what no manifest names goes, the rest stays.
    sb.spawn_superd();
    sb.wait_running("web");
    sb.wait_until("the startup collection", Duration::from_secs(20), |_| {
        layer_dirs(&store).len() == 4
    });
    // The manifest goes; once its instance has let go of the layers, they go too.
    sb.remove_manifest("web");
    sb.wait_until(
        "the collection after web ended",
        Duration::from_secs(20),
        |_| layer_dirs(&store).is_empty(),
    );
    assert!(
        sb.superd_log().contains("image garbage collection removed"),
        "{}",
        sb.superd_log()
    );
    sb.shutdown();
}

#[test]
fn a_crash_in_the_middle_of_an_import_leaves_a_store_that_opens_clean() {
    if privileged("a_crash_in_the_middle_of_an_import_leaves_a_store_that_opens_clean").is_none() {
        return;
    }
    // Long enough to be cut: 300 layers, one sandboxed unpack each.
    let dir = tempfile::tempdir().unwrap();
    let tarball = many_layer_archive(dir.path(), 300);
    let mut sb = Sandbox::start("image-crash");
    let store = sb.state.join("images");
    let mut import = Killed(
        Command::new(env!("CARGO_BIN_EXE_superctl"))
            .arg("--socket")
            .arg(&sb.socket)
            .args(["image", "import"])
            .arg(&tarball)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    sb.wait_until("the import is under way", Duration::from_secs(30), |_| {
        layer_dirs(&store).len() >= 20
    });
    sb.crash();
    let _ = import.0.wait();
    let committed = layer_dirs(&store);
    assert!(
        committed.len() < 300,
        "the import finished before the crash"
    );
    // The successor opens the store: unfinished work is gone, committed layers are whole,
    // and the image has no name (it never finished).
    sb.spawn_superd();
    assert!(tmp_is_empty(&store));
    for l in &committed {
        let d = store.join("layers").join(l);
        assert!(
            d.join("meta.json").is_file() && d.join("fs").is_dir(),
            "{l} is not whole"
        );
    }
    let refs = std::fs::read_to_string(store.join("refs.json")).unwrap_or_default();
    assert!(!refs.contains("superd-test/many"), "{refs}");
    // Importing again reuses what was committed.
    let out = superctl(&sb, &["image", "import", tarball.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = 300 - committed.len();
    assert!(
        text.contains(&format!("(300 layers, {new} new)")),
        "{text} (committed before the crash: {})",
        committed.len()
    );
    sb.shutdown();
}

#[test]
fn an_import_that_moves_a_tag_restarts_the_workloads_naming_it() {
    if privileged("an_import_that_moves_a_tag_restarts_the_workloads_naming_it").is_none() {
        return;
    }
    let fx = Fixture::build();
    let mut sb = Sandbox::start("image-import-move");
    import_via_daemon(&sb, &fx.join("oci.tar"));
    sb.write_manifest(
        "tagged",
        "command = [\"/bin/sleep\", \"1000\"]\n[rootfs]\nimage = \"superd-test/busybox:oci\"\n[network]\nmode = \"none\"\n",
    );
    let first = sb.wait_running("tagged");
    // The same tag for another manifest (the zstd variant: same layers, another digest).
    let moved = fx.join("moved");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fx.join("zstd"))
        .arg(&moved)
        .status()
        .unwrap();
    assert!(st.success());
    let index = std::fs::read_to_string(moved.join("index.json")).unwrap();
    std::fs::write(
        moved.join("index.json"),
        index.replace("superd-test/busybox:zstd", "superd-test/busybox:oci"),
    )
    .unwrap();
    let tarball = tar_dir(&moved, &fx.join("moved.tar"));
    let out = superctl(&sb, &["image", "import", tarball.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("restarted tagged"), "{text}");
    let w = sb.wait_for(
        "tagged",
        "the restart onto the moved tag",
        Duration::from_secs(20),
        |w| w.state == superd::api::State::Running && w.pid != first.pid && w.pid.is_some(),
    );
    assert_ne!(w.image_digest, first.image_digest, "{w:?}");
    // The same import again moves nothing and restarts nothing.
    let out = superctl(&sb, &["image", "import", tarball.to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("restarted"),
        "{text}"
    );
    sb.shutdown();
}
