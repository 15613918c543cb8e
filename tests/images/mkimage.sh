#!/usr/bin/env bash
# Builds the test image offline with umoci (IMAGES.md §3.2) into OUT/oci, tag "final":
#   layer 1: busybox-static, /bin/sh, passwd and group, /tmp 1777
#   layer 2: a Debian package's files (netbase) and /opt/data/{a,b}, a hard link
#   layer 3: deletes /etc/rpc and /usr/share/doc/netbase; no usr/ entries (implicit parents)
#   layer 4: opt/data/c, THEN opt/data/.wh..wh..opq (c must survive, a and b must not)
# and, from it, OUT/oci.tar (oci-archive), OUT/docker.tar (docker-archive) and
# OUT/zstd (the same image with zstd layers: same DiffIDs).
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
cd "$out"
rm -rf oci b1 b2 b3 netbase_*.deb
umoci init --layout oci
umoci new --image oci:base
umoci unpack --rootless --image oci:base b1 >/dev/null 2>&1 || umoci unpack --image oci:base b1
mkdir -p b1/rootfs/bin b1/rootfs/etc b1/rootfs/tmp
chmod 1777 b1/rootfs/tmp
cp /bin/busybox b1/rootfs/bin/busybox
for t in sh ls cat id echo test pwd sleep stat touch mkdir; do ln -s busybox "b1/rootfs/bin/$t"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' > b1/rootfs/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' > b1/rootfs/etc/group
umoci repack --image oci:l1 b1
umoci unpack --image oci:l1 b2 >/dev/null
# A Debian package's files, through apt (the package archive is reachable; stale lists are
# refreshed once).
if ! apt-get download netbase >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || true
    if ! apt-get download netbase >/dev/null 2>&1; then
        echo "mkimage.sh: apt-get download netbase failed" >&2
        exit 1
    fi
fi
dpkg-deb -x netbase_*.deb b2/rootfs
mkdir -p b2/rootfs/opt/data
echo a > b2/rootfs/opt/data/a
echo b > b2/rootfs/opt/data/b
ln b2/rootfs/opt/data/a b2/rootfs/opt/data/a-link
umoci repack --image oci:l2 b2
umoci unpack --image oci:l2 b3 >/dev/null
rm b3/rootfs/etc/rpc
rm -rf b3/rootfs/usr/share/doc/netbase
mkdir -p b3/rootfs/etc/app
echo key=1 > b3/rootfs/etc/app/config
umoci repack --image oci:l3 b3
python3 "$here/fixture.py" layer4 layer4.tar
umoci raw add-layer --image oci:l3 --tag l4 layer4.tar
umoci config --image oci:l4 --tag final --config.entrypoint /bin/sh --config.entrypoint -c \
  --config.cmd 'echo "hello from $GREETING in $(pwd) as $(id -u)"; ls /opt/data; test -e /etc/rpc && echo RPC-PRESENT || echo rpc-gone' \
  --config.env GREETING=superd --config.env PATH=/bin --config.workingdir /opt --config.user 65534:65534 \
  --config.exposedports 8080/tcp --config.stopsignal SIGINT --config.label org.example.test=1
umoci gc --layout oci
rm -rf b1 b2 b3 netbase_*.deb layer4.tar
python3 "$here/fixture.py" archives oci final "$out"
