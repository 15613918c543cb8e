#!/usr/bin/env bash
# Builds a bootable superd appliance: OUT_DIR/vmlinuz (Debian's cloud kernel) and
# OUT_DIR/initramfs.img, a gzip'd newc cpio whose /init is superd.
#
#   packaging/appliance/build.sh [--manifests DIR] [--image FILE]... [--extra SRC:DEST]...
#                                [--bin DIR] [--kernel current|generic] [--module M]... OUT_DIR
#
#   --manifests DIR   what becomes /etc/workloads.d (default: the repo's manifests/)
#   --image FILE      pre-seed an image archive (docker save, OCI archive or layout dir;
#                     repeatable): manifests name it with pull = "never" and boot offline
#   --extra SRC:DEST  copy a file or directory SRC into the image at DEST (repeatable; applied
#                     last, so it may replace anything, /init included)
#   --bin DIR         take superd and superctl from DIR instead of `cargo build --release`
#   --kernel NAME     current (Debian's cloud kernel, the default) or generic (Debian's
#                     full kernel, with drivers the cloud one lacks, e.g. i6300esb)
#   --module M        load kernel module M at boot too (repeatable)
#
# Pre-seeded images are imported on this host (`superd image import --store`, which checks
# every digest) and the store is packed into a squashfs at /usr/lib/superd/images.img, which
# superd mounts read-only as PID 1: cpio cannot carry the store itself (its opaque markers
# and file capabilities are xattrs), and the squashfs stays compressed in RAM.
#
# The image holds superd (/init, /bin/superd), superctl, busybox-static with its applets in
# /bin, nft and the shared libraries of all three, the kernel modules superd needs (bridge,
# veth, overlay and the nftables NAT modules, with their dependencies and a modules.dep),
# listed in /etc/modules-load.d/superd.conf, and a minimal /etc (passwd, group, hostname).
# Needs what packaging/appliance/deps.sh installs (run it first, as root).
#
# Environment: SUPERD_APPLIANCE_CACHE (default /var/cache/superd-appliance).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${SUPERD_APPLIANCE_CACHE:-/var/cache/superd-appliance}
# What superd loads in PID-1 mode: networking (bridge, veth), overlay rootfs, and every
# nftables expression of its NAT table (src/network/nft.rs): nat chains, dnat, masquerade,
# fib, ct status. Dependencies (llc, stp, nf_conntrack, nf_nat, ...) come from modules.dep.
modules=(overlay bridge veth nf_tables nf_conntrack nf_nat nft_chain_nat nft_nat nft_masq
    nft_fib nft_fib_ipv4 nft_ct)
# A pre-seeded image store (--image) is a squashfs on a loop device.
seed_modules=(loop squashfs)

say() { printf 'build.sh: %s\n' "$*" >&2; }
die() { printf 'build.sh: error: %s\n' "$*" >&2; exit 1; }
usage() {
    sed -n '4,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

manifests=$repo/manifests
bin=
extras=()
images=()
out=
kernel=current
while [ $# -gt 0 ]; do
    case $1 in
    --manifests) [ $# -ge 2 ] || usage; manifests=$2; shift 2 ;;
    --extra) [ $# -ge 2 ] || usage; extras+=("$2"); shift 2 ;;
    --image) [ $# -ge 2 ] || usage; [ -e "$2" ] || die "--image $2 does not exist"
        images+=("$2"); shift 2 ;;
    --bin) [ $# -ge 2 ] || usage; bin=$2; shift 2 ;;
    --kernel) [ $# -ge 2 ] || usage; kernel=$2; shift 2
        case $kernel in current | generic) ;; *) die "--kernel $kernel: current or generic" ;; esac ;;
    --module) [ $# -ge 2 ] || usage; modules+=("$2"); shift 2 ;;
    -h | --help) usage ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$out" ] || die "more than one OUT_DIR ($out, $1)"; out=$1; shift ;;
    esac
done
[ -n "$out" ] || usage
[ -d "$manifests" ] || die "--manifests $manifests is not a directory"
for e in "${extras[@]}"; do
    case $e in
    *:/*) [ -e "${e%%:*}" ] || die "--extra $e: ${e%%:*} does not exist" ;;
    *) die "--extra $e: expected SRC:DEST with an absolute DEST" ;;
    esac
done

kroot=$cache/kernel/$kernel
[ -e "$kroot/.complete" ] || die "no kernel in $kroot: run packaging/appliance/deps.sh (as root) first"
kdir=$(find "$kroot/lib/modules/" -mindepth 1 -maxdepth 1 -type d -print -quit 2>/dev/null || true)
[ -n "$kdir" ] || die "no lib/modules/<version> in $kroot: run packaging/appliance/deps.sh again"
kver=$(basename "$kdir")
[ -f "$kroot/boot/vmlinuz-$kver" ] || die "$kroot has no boot/vmlinuz-$kver"
[ ${#images[@]} -eq 0 ] || modules+=("${seed_modules[@]}")
for tool in cpio gzip depmod; do
    command -v "$tool" >/dev/null || die "$tool is missing: run packaging/appliance/deps.sh"
done
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox is missing: run packaging/appliance/deps.sh (busybox-static)"
nft=$(command -v nft || true)
[ -n "$nft" ] || die "nft is missing: run packaging/deps.sh (nftables)"

if [ -z "$bin" ]; then
    say "cargo build --release"
    (cd "$repo" && cargo build --release --bins --quiet)
    bin=$repo/target/release
fi
for b in superd superctl; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing"
done

mkdir -p "$out"
stage=$(mktemp -d "${TMPDIR:-/tmp}/superd-appliance.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# --- directories and /etc --------------------------------------------------------------------
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc/workloads.d,etc/modules-load.d,lib,lib64}
mkdir -p "$stage"/{proc,sys,dev,run,tmp,var/lib,root,mnt}
chmod 1777 "$stage/tmp"
chmod 0700 "$stage/root"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
    >"$stage/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$stage/etc/group"
echo superd-appliance >"$stage/etc/hostname"
# Names of the host itself; superd's bridged workloads get their own /etc/hosts.
printf '127.0.0.1\tlocalhost\n' >"$stage/etc/hosts"

# --- binaries and their libraries ------------------------------------------------------------
copy_with_libs() { # SRC DEST: copies an executable (stripped) and every library ldd names
    local src=$1 dest=$2 lib
    install -D -m 0755 "$src" "$stage$dest"
    strip --strip-all "$stage$dest" 2>/dev/null || true
    # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
    # ldd fails on a static binary (nothing to copy): not an error.
    { ldd "$src" 2>/dev/null || true; } | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
        while read -r lib; do
            [ -e "$stage$lib" ] && continue
            install -D -m 0755 "$(readlink -f "$lib")" "$stage$lib"
        done
}
copy_with_libs "$bin/superd" /bin/superd
copy_with_libs "$bin/superctl" /bin/superctl
copy_with_libs "$nft" /usr/sbin/nft
# nft reads its own tables at runtime only for names (iproute2's rt_* files); not needed.
install -m 0755 "$busybox" "$stage/bin/busybox"
# Every applet as a symlink, where nothing of ours sits (sh, sleep, wget, httpd, ...).
"$busybox" --list-full | while read -r applet; do
    [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
done
ln -s /bin/superd "$stage/init"

# --- kernel modules ----------------------------------------------------------------------------
moddir=lib/modules/$kver
mkdir -p "$stage/$moddir"
needed=$(awk -v want="${modules[*]}" '
    BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) wanted[w[i]] = 1 }
    {
        path = $1; sub(/:$/, "", path)
        name = path; sub(/.*\//, "", name); sub(/\.ko.*/, "", name); gsub(/-/, "_", name)
        if (name in wanted) { found[name] = 1; print path; for (i = 2; i <= NF; i++) print $i }
    }
    END { for (m in wanted) if (!(m in found)) print "MISSING " m }
' "$kroot/$moddir/modules.dep" | sort -u)
if grep -q '^MISSING ' <<<"$needed"; then
    # Not fatal: the module may be built into this kernel (modules.builtin).
    for m in $(sed -n 's/^MISSING //p' <<<"$needed"); do
        grep -q "/$m.ko" "$kroot/$moddir/modules.builtin" ||
            die "kernel $kver has no module $m (neither in modules.dep nor built in)"
    done
fi
{ grep -v '^MISSING ' <<<"$needed" || true; } | while read -r path; do
    install -D -m 0644 "$kroot/$moddir/$path" "$stage/$moddir/$path"
done
cp "$kroot/$moddir"/modules.{order,builtin,builtin.modinfo} "$stage/$moddir/" 2>/dev/null || true
depmod -b "$stage" "$kver"
{
    echo "# Loaded by superd in PID-1 mode (written by packaging/appliance/build.sh)."
    printf '%s\n' "${modules[@]}"
} >"$stage/etc/modules-load.d/superd.conf"

# --- pre-seeded images ---------------------------------------------------------------------------
if [ ${#images[@]} -gt 0 ]; then
    command -v mksquashfs >/dev/null || die "mksquashfs is missing: run packaging/appliance/deps.sh"
    store=$stage.store
    trap 'rm -rf "$stage" "$store"' EXIT
    "$bin/superd" image import --store "$store" "${images[@]}" | sed 's/^/build.sh: /' >&2 ||
        die "importing ${images[*]} failed (see above)"
    mkdir -p "$stage/usr/lib/superd"
    # Owners, modes, whiteouts (0/0 char devices) and xattrs as they are; not the lock and
    # the scratch directories.
    mksquashfs "$store" "$stage/usr/lib/superd/images.img" -noappend -quiet -no-progress \
        -e .lock tmp ingest trash >/dev/null ||
        die "mksquashfs of the image store failed"
fi

# --- manifests and extras ----------------------------------------------------------------------
# superd reads only manifests no one but root may write (cpio -R 0:0 makes root the owner).
find "$manifests" -maxdepth 1 -type f -name '*.toml' -exec install -m 0644 {} "$stage/etc/workloads.d/" \;
chmod 0755 "$stage/etc/workloads.d"
for e in "${extras[@]}"; do
    src=${e%%:*} dest=${e#*:}
    mkdir -p "$(dirname "$stage$dest")"
    rm -rf "${stage:?}$dest"
    cp -a "$src" "$stage$dest"
done

# --- pack ----------------------------------------------------------------------------------------
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -1 >"$out/initramfs.img.tmp"
mv "$out/initramfs.img.tmp" "$out/initramfs.img"
say "kernel $kver; $(find "$stage/$moddir" -name '*.ko*' | wc -l) modules; \
$(find "$stage/etc/workloads.d" -name '*.toml' | wc -l) manifests; \
initramfs $(du -k "$out/initramfs.img" | cut -f1) KiB -> $out"
