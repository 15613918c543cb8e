#!/usr/bin/env python3
"""Test-image helpers (the standard library only).

fixture.py layer4 OUT.tar          the hand-made layer 4 (an opaque marker after a sibling)
fixture.py archives LAYOUT TAG OUT  OUT/oci.tar, OUT/docker.tar and OUT/zstd from LAYOUT:TAG
fixture.py many OUT.tar N           a docker-archive "superd-test/many:N" of N layers: busybox,
                                    then one file /layers/K per layer
"""
import gzip, hashlib, io, json, os, shutil, subprocess, sys, tarfile


def layer4(path):
    t = tarfile.open(path, "w", format=tarfile.PAX_FORMAT)

    def add(name, data=None):
        ti = tarfile.TarInfo(name)
        ti.mtime = 1700000000
        if data is None:
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        else:
            ti.mode, ti.size = 0o644, len(data)
            t.addfile(ti, io.BytesIO(data))

    add("opt/")
    add("opt/data/")
    add("opt/data/c", b"c\n")
    add("opt/data/.wh..wh..opq", b"")
    t.close()


def blob(layout, digest):
    with open(os.path.join(layout, "blobs", "sha256", digest.split(":")[1]), "rb") as f:
        return f.read()


def put(layout, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(layout, "blobs", "sha256", d)
    with open(p, "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def find(layout, tag):
    idx = json.load(open(os.path.join(layout, "index.json")))
    for m in idx["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m
    raise SystemExit(f"no tag {tag}")


def tar_dir(src, out):
    with tarfile.open(out, "w") as t:
        for name in sorted(os.listdir(src)):
            t.add(os.path.join(src, name), arcname=name)


def archives(layout, tag, out):
    desc = find(layout, tag)
    manifest = json.loads(blob(layout, desc["digest"]))
    config = blob(layout, manifest["config"]["digest"])
    # oci-archive: the layout with only this image, tagged.
    oci = os.path.join(out, "oci-only")
    shutil.rmtree(oci, ignore_errors=True)
    os.makedirs(os.path.join(oci, "blobs", "sha256"))
    shutil.copy(os.path.join(layout, "oci-layout"), oci)
    for d in [desc["digest"], manifest["config"]["digest"]] + [l["digest"] for l in manifest["layers"]]:
        shutil.copy(os.path.join(layout, "blobs", "sha256", d.split(":")[1]), os.path.join(oci, "blobs", "sha256"))
    d2 = dict(desc)
    d2["annotations"] = {"org.opencontainers.image.ref.name": "superd-test/busybox:oci"}
    json.dump({"schemaVersion": 2, "manifests": [d2]}, open(os.path.join(oci, "index.json"), "w"))
    tar_dir(oci, os.path.join(out, "oci.tar"))
    # docker-archive: manifest.json FIRST, then config and uncompressed layer tars.
    with tarfile.open(os.path.join(out, "docker.tar"), "w") as t:
        layers = []
        payload = []
        for l in manifest["layers"]:
            raw = gzip.decompress(blob(layout, l["digest"]))
            name = hashlib.sha256(raw).hexdigest() + "/layer.tar"
            layers.append(name)
            payload.append((name, raw))
        cname = hashlib.sha256(config).hexdigest() + ".json"
        mj = json.dumps([{"Config": cname, "RepoTags": ["superd-test/busybox:docker"], "Layers": layers}]).encode()

        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

        add("manifest.json", mj)
        add(cname, config)
        for name, raw in payload:
            add(name, raw)
    # zstd: the same layers recompressed, so the same DiffIDs.
    z = os.path.join(out, "zstd")
    shutil.rmtree(z, ignore_errors=True)
    shutil.copytree(oci, z)
    zl = []
    for l in manifest["layers"]:
        raw = gzip.decompress(blob(layout, l["digest"]))
        comp = subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, stdout=subprocess.PIPE, check=True).stdout
        dg, size = put(z, comp)
        zl.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": dg, "size": size})
    zm = dict(manifest)
    zm["layers"] = zl
    mdg, msize = put(z, json.dumps(zm).encode())
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
              "digest": mdg, "size": msize,
              "annotations": {"org.opencontainers.image.ref.name": "superd-test/busybox:zstd"}}]},
              open(os.path.join(z, "index.json"), "w"))
    print(json.dumps({"manifest": desc["digest"], "config": manifest["config"]["digest"], "zstd": mdg}))


def many(out, n):
    def tar_of(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            for name, kind, data in entries:
                ti = tarfile.TarInfo(name)
                ti.mtime = 1700000000
                if kind == "dir":
                    ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(ti)
                elif kind == "link":
                    ti.type, ti.linkname = tarfile.SYMTYPE, data
                    t.addfile(ti)
                else:
                    ti.mode, ti.size = kind, len(data)
                    t.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    base = [("bin/", "dir", None), ("bin/busybox", 0o755, open("/bin/busybox", "rb").read())]
    base += [(f"bin/{a}", "link", "busybox") for a in ("sh", "ls", "wc", "cat")]
    layers = [tar_of(base)]
    for k in range(1, n):
        layers.append(tar_of([("layers/", "dir", None), (f"layers/{k:03}", 0o644, b"%d\n" % k)]))
    diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c", "echo layers=$(ls /layers | wc -l)"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    names = [d.split(":")[1] + "/layer.tar" for d in diff_ids]
    with tarfile.open(out, "w") as t:
        def add(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
        add("manifest.json", json.dumps([{"Config": cname, "RepoTags": [f"superd-test/many:{n}"], "Layers": names}]).encode())
        add(cname, config)
        for name, data in zip(names, layers):
            add(name, data)


if __name__ == "__main__":
    if sys.argv[1] == "many":
        many(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if sys.argv[1] == "layer4":
        layer4(sys.argv[2])
    else:
        archives(sys.argv[2], sys.argv[3], sys.argv[4])
