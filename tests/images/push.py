#!/usr/bin/env python3
"""push.py LAYOUT_DIR REGISTRY REPO TAG: pushes the image of an OCI layout (its only, or first,
index entry; an index is pushed with its children) to a registry over plain HTTP
(distribution API: HEAD blob, POST uploads, PUT ?digest=, PUT manifest). Prints the digest."""
import json, os, sys, urllib.request

layout, registry, repo, tag = sys.argv[1:5]
base = f"http://{registry}/v2/{repo}"


def blob(d):
    with open(os.path.join(layout, "blobs", "sha256", d.split(":")[1]), "rb") as f:
        return f.read()


def req(method, url, data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        return urllib.request.urlopen(r)
    except urllib.error.HTTPError as e:
        if method == "HEAD" and e.code == 404:
            return None
        raise SystemExit(f"{method} {url}: {e.code} {e.read()[:300]!r}")


def push_blob(d):
    if req("HEAD", f"{base}/blobs/{d}") is not None:
        return
    loc = req("POST", f"{base}/blobs/uploads/").headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{registry}{loc}"
    sep = "&" if "?" in loc else "?"
    req("PUT", f"{loc}{sep}digest={d}", blob(d), {"Content-Type": "application/octet-stream"})


def push_manifest(d, ref):
    body = blob(d)
    m = json.loads(body)
    mt = m.get("mediaType") or ("application/vnd.oci.image.index.v1+json" if "manifests" in m
                                else "application/vnd.oci.image.manifest.v1+json")
    if "manifests" in m:
        for c in m["manifests"]:
            push_manifest(c["digest"], c["digest"])
    else:
        push_blob(m["config"]["digest"])
        for l in m["layers"]:
            push_blob(l["digest"])
    req("PUT", f"{base}/manifests/{ref}", body, {"Content-Type": mt})


idx = json.load(open(os.path.join(layout, "index.json")))
d = idx["manifests"][0]["digest"]
push_manifest(d, tag)
print(d)
