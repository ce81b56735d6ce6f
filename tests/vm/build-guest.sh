#!/usr/bin/env bash
# Builds the imagegen VM test guest: a Debian 12 root that resembles a stock cloud
# image (systemd, cloud-init with NoCloud, netplan + networkd + resolved, a cloud
# kernel) plus a test-only collector unit (guest/report.py) that prints the
# node's state on ttyS1 after cloud-init and powers off.
#
#   build-guest.sh [ARCH]     ARCH = amd64 (default) or arm64
#
# Prints the guest directory on stdout: disk.raw (ext4 root, no partition
# table), vmlinuz, initrd.img, cmdline, info.json. Built without loop mounts
# (mmdebstrap + mke2fs -d) and cached under
#   ${IMAGEGEN_VM_CACHE:-$HOME/.cache/imagegen-vm}/guest-ARCH-<sha256 of the recipe>/
# in two layers: rootfs-ARCH-<sha256 of guest/rootfs.sh>.tar (the slow
# mmdebstrap part) and the disk (root + collector). Needs root, mmdebstrap,
# e2fsprogs; arm64 on an amd64 host also needs qemu-user-static.
set -euo pipefail

ARCH=${1:-amd64}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IMAGEGEN_VM_CACHE:-$HOME/.cache/imagegen-vm}
mirror=${IMAGEGEN_VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${IMAGEGEN_VM_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
disk_size=${IMAGEGEN_VM_DISK_SIZE:-3G}

log() { printf 'build-guest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root keeps file owners for mke2fs -d)"
for tool in mmdebstrap mke2fs sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install mmdebstrap e2fsprogs)"
done

# shellcheck source=guest/rootfs.sh
. "$here/guest/rootfs.sh"
kernel=$(kernel_package "$ARCH")

# Content and name of every recipe file, in a fixed order.
recipe_hash() {
  (cd "$here" && { echo build-guest.sh; find guest -type f ! -name '*.pyc' | LC_ALL=C sort; } \
    | xargs -d '\n' sha256sum | sha256sum | cut -d' ' -f1)
}
rootfs_key=$(printf '%s\n' "$ARCH" "$mirror" | cat - "$here/guest/rootfs.sh" | sha256sum | cut -d' ' -f1)
guest_key=$( (printf '%s %s\n' "$ARCH" "$rootfs_key"; recipe_hash) | sha256sum | cut -d' ' -f1)
rootfs_tar=$cache/rootfs-$ARCH-$rootfs_key.tar
guest_dir=$cache/guest-$ARCH-$guest_key

mkdir -p "$cache"
exec 9>"$cache/.lock-$ARCH"
flock 9

if [ -f "$guest_dir/info.json" ]; then
  log "cached: $guest_dir"
  echo "$guest_dir"
  exit 0
fi

start=$(date +%s)
if [ ! -f "$rootfs_tar" ]; then
  log "mmdebstrap $SUITE $ARCH with $kernel (cold build, a few minutes)"
  tmp_tar=$(mktemp "$cache/.rootfs-XXXXXX.tar")
  trap 'rm -f "$tmp_tar"' EXIT
  # mmdebstrap runs hooks with sh; rootfs.sh is bash, so hand it to bash.
  mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --format=tar \
    --include="$(IFS=,; echo "${PACKAGES[*]},$kernel")" \
    --customize-hook="bash -c '. \"\$0\" && customize_rootfs \"\$1\"' '$here/guest/rootfs.sh' \"\$1\"" \
    "$SUITE" "$tmp_tar" \
    "deb $mirror $SUITE main" "deb $mirror $SUITE-updates main" "deb $security $SUITE-security main" \
    >&2
  mv "$tmp_tar" "$rootfs_tar"
  trap - EXIT
  log "rootfs built in $(( $(date +%s) - start ))s: $rootfs_tar"
fi

work=$(mktemp -d "$cache/.guest-XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir "$root"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$rootfs_tar"

install -D -m 0755 "$here/guest/report.py" "$root/usr/lib/imagegen-vm/report.py"
install -D -m 0644 "$here/guest/imagegen-vm-report.service" "$root/etc/systemd/system/imagegen-vm-report.service"
install -D -m 0644 "$here/guest/90-imagegen-vm.cfg" "$root/etc/cloud/cloud.cfg.d/90-imagegen-vm.cfg"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../imagegen-vm-report.service "$root/etc/systemd/system/multi-user.target.wants/imagegen-vm-report.service"

vmlinuz=$(find "$root/boot" -maxdepth 1 -name 'vmlinuz-*' | sort | tail -n1)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort | tail -n1)
if [ -z "$vmlinuz" ] || [ -z "$initrd" ]; then die "no kernel/initrd in the root (is $kernel installed?)"; fi
cp "$vmlinuz" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
case "$ARCH" in
  amd64) console=ttyS0 ;;
  arm64) console=ttyAMA0 ;;
esac
echo "root=/dev/vda rw console=$console panic=-1" > "$work/cmdline"

# shellcheck disable=SC2016 # dpkg-query's own ${field} syntax
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$work/packages.txt"
kver=$(basename "$vmlinuz" | sed 's/^vmlinuz-//')
cloud_init_version=$(awk '$1=="cloud-init"{print $2}' "$work/packages.txt")

# -d copies the tree into the new filesystem without mounting it.
mke2fs -q -t ext4 -L rootfs -E root_owner=0:0 -d "$root" "$work/disk.raw" "$disk_size" >&2
rm -rf "$root"

cat > "$work/info.json" <<JSON
{"arch": "$ARCH", "suite": "$SUITE", "kernel": "$kver", "cloud_init": "$cloud_init_version",
 "rootfs_key": "$rootfs_key", "guest_key": "$guest_key", "built_seconds": $(( $(date +%s) - start ))}
JSON
mv "$work" "$guest_dir"
trap - EXIT
# Only the current recipe is kept: each guest is ~600 MB.
find "$cache" -maxdepth 1 \( -name "guest-$ARCH-*" ! -name "${guest_dir##*/}" \
  -o -name "rootfs-$ARCH-*.tar" ! -name "${rootfs_tar##*/}" \) -exec rm -rf {} +
log "guest built in $(( $(date +%s) - start ))s: $guest_dir (kernel $kver, cloud-init $cloud_init_version)"
echo "$guest_dir"
