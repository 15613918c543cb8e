#!/usr/bin/env bash
# Builds the Debian package of superd from this repository, with dpkg-deb only (no debhelper):
#
#   packaging/deb/build.sh [--bin DIR] OUT_DIR      -> OUT_DIR/superd_<version>_<arch>.deb
#
#   --bin DIR   take superd and superctl from DIR instead of `cargo build --release`
#
# The package installs /usr/bin/superd and /usr/bin/superctl (stripped), the systemd unit
# (/lib/systemd/system/superd.service: Type=notify, Delegate=yes, KillMode=process), an empty
# /etc/workloads.d/, man pages superd(8) and superctl(8) generated from the command-line
# definitions, and README, CHANGELOG and the example manifests under /usr/share/doc/superd/.
# The version is the one the binary reports (`superd --version`, from Cargo.toml).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
say() { printf 'deb/build.sh: %s\n' "$*" >&2; }
die() { printf 'deb/build.sh: error: %s\n' "$*" >&2; exit 1; }
usage() {
    sed -n '4,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

bin=
out=
while [ $# -gt 0 ]; do
    case $1 in
    --bin) [ $# -ge 2 ] || usage; bin=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$out" ] || die "more than one OUT_DIR ($out, $1)"; out=$1; shift ;;
    esac
done
[ -n "$out" ] || usage
for tool in dpkg-deb dpkg gzip strip; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if [ -z "$bin" ]; then
    say "cargo build --release"
    (cd "$repo" && cargo build --release --bins --quiet)
    bin=$repo/target/release
fi
for b in superd superctl; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing"
done

version=$("$bin/superd" --version | awk '{ print $2 }')
[[ $version =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "unexpected version '$version' from superd --version"
arch=$(dpkg --print-architecture)
mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/superd-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/superd_${version}_$arch
doc=$root/usr/share/doc/superd

install -d -m 0755 "$root"/{DEBIAN,usr/bin,lib/systemd/system,usr/share/man/man8} "$doc/examples"
install -d -m 0755 "$root/etc/workloads.d"
for b in superd superctl; do
    install -m 0755 "$bin/$b" "$root/usr/bin/$b"
    strip --strip-all "$root/usr/bin/$b"
done
install -m 0644 "$repo/packaging/systemd/superd.service" "$root/lib/systemd/system/superd.service"

# Man pages from the clap definitions, so they cannot drift from --help.
"$root/usr/bin/superd" --man >"$root/usr/share/man/man8/superd.8"
"$root/usr/bin/superctl" man "$root/usr/share/man/man8"
gzip -9n "$root"/usr/share/man/man8/*.8

install -m 0644 "$repo/README.md" "$doc/README.md"
gzip -9nc "$repo/CHANGELOG.md" >"$doc/changelog.gz"
install -m 0644 "$repo"/manifests/*.toml "$doc/examples/"
cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: superd

Files: *
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$doc/copyright"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: superd
Version: $version
Architecture: $arch
Maintainer: superd developers <dev@superd.invalid>
Installed-Size: $size
Depends: libc6 (>= 2.34), nftables
Section: admin
Priority: optional
Homepage: https://superd.invalid/
Description: declarative workload supervisor (a directory of TOML manifests)
 superd runs every manifest in /etc/workloads.d as an isolated, supervised
 container: its own namespaces, root filesystem, bridge network and cgroup
 limits, with an init that reaps orphans and forwards signals. A broken edit
 never stops a running workload. superctl shows status and controls it.
EOF

# Maintainer scripts: what debhelper's systemd snippets do, for a package that has no
# debhelper. Enable and start on first install; re-exec in place on upgrade (postinst, a
# file of its own so that a test runs it); stop on removal.
install -m 0755 "$repo/packaging/deb/postinst" "$root/DEBIAN/postinst"
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop superd.service || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl disable superd.service >/dev/null 2>&1 || true
        systemctl daemon-reload >/dev/null || true
    fi
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/superd
fi
EOF
chmod 0755 "$root"/DEBIAN/{postinst,prerm,postrm}

deb=$out/superd_${version}_$arch.deb
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
say "$deb ($(du -k "$deb" | cut -f1) KiB)"
echo "$deb"
