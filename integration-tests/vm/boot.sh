#!/usr/bin/env bash
# Boots one kernel line of the matrix under qemu (TCG: KVM hangs on these machines) with an
# initramfs holding node-daemon, vm-traffic, busybox and integration-tests/vm/init, which
# runs the network acceptance. Usage:
#
#   boot.sh LINE OUT_DIR NODE_DAEMON VM_TRAFFIC
#
# LINE is `6.1` (linux-image-6.1.0-N-cloud-amd64-unsigned, the line of Amazon Linux 2023
# and Bottlerocket) or `6.12` (linux-image-6.12.N+deb12-cloud-amd64-unsigned): the newest
# package of the line that apt knows, else the newest one cached. Kernels are cached by
# package version under $STS_VM_CACHE (default /var/cache/sts-kernel-matrix) and downloaded
# only when missing. OUT_DIR receives console.log (the VM's console), data.log (what init
# reported) and kernel-package (the package and version that ran). Needs root, qemu-system-x86,
# cpio and busybox-static (scripts/setup.sh installs them).
set -euo pipefail

line=$1 out=$2 daemon=$3 traffic=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${STS_VM_CACHE:-/var/cache/sts-kernel-matrix}
timeout_s=${STS_VM_TIMEOUT:-900}
interval=${STS_VM_INTERVAL:-5}
log() { echo "kernel-matrix $line: $*" >&2; }

case $line in
6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
*) echo "boot.sh: unknown kernel line $line (6.1 or 6.12)" >&2; exit 2 ;;
esac

newest_known() { apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$pattern" | sort -V | tail -1; }
pkg=$(newest_known)
if [[ -z $pkg ]]; then
    apt-get update -qq || true
    pkg=$(newest_known)
fi
mkdir -p "$cache"
if [[ -n $pkg ]]; then
    version=$(apt-cache policy "$pkg" | awk '/Candidate:/ { print $2 }')
    kernel="$cache/${pkg}_$version/vmlinuz"
    if [[ ! -s $kernel ]]; then
        log "downloading $pkg $version"
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        (cd "$tmp" && apt-get download -qq "$pkg=$version" && dpkg-deb -x ./*.deb root)
        mkdir -p "$(dirname "$kernel")"
        cp "$tmp"/root/boot/vmlinuz-* "$kernel.part" && mv "$kernel.part" "$kernel"
    fi
else
    kernel=$(ls -d "$cache"/*/vmlinuz 2>/dev/null | grep -E "/$(echo "$pattern" | sed 's/^\^//; s/\$$//')_[^/]*/vmlinuz$" | sort -V | tail -1 || true)
    [[ -n $kernel ]] || { echo "boot.sh: apt knows no $line kernel and none is cached" >&2; exit 2; }
    pkg=$(basename "$(dirname "$kernel")")
    version=${pkg#*_} pkg=${pkg%%_*}
fi
mkdir -p "$out"
echo "$pkg $version" > "$out/kernel-package"

# The initramfs: binaries (debug info stripped) and the libraries they load.
root="$out/initramfs"
rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,tmp}
cp /bin/busybox "$root/bin/busybox"
objcopy --strip-debug "$daemon" "$root/bin/node-daemon"
objcopy --strip-debug "$traffic" "$root/bin/vm-traffic"
for lib in $(ldd "$daemon" "$traffic" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp "$here/init" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) > "$out/initramfs.cpio"
rm -rf "$root"

log "booting $pkg $version from $kernel (TCG, timeout ${timeout_s}s)"
rm -f "$out/console.log" "$out/data.log"
start=$(date +%s)
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 \
    -kernel "$kernel" -initrd "$out/initramfs.cpio" \
    -append "console=ttyS0 panic=-1 quiet sts.interval=$interval" \
    -display none -monitor none -no-reboot -nodefaults \
    -serial "file:$out/console.log" -serial "file:$out/data.log" || {
    rc=$?
    log "qemu exited with $rc after $(($(date +%s) - start)) s"
    exit $rc
}
log "powered off after $(($(date +%s) - start)) s"
rm -f "$out/initramfs.cpio"
