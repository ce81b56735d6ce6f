#!/usr/bin/env bash
# Builds the imagegen VM test guest: a Debian 12 root that resembles a stock cloud
# image (systemd, cloud-init with NoCloud, netplan + networkd + resolved, a cloud
# kernel) plus a test-only collector unit (guest/report.py) that reports the
# node's state after cloud-init and powers off.
#
#   build-guest.sh [ARCH] [--uefi]     ARCH = amd64 (default) or arm64
#
# Prints the guest directory on stdout: disk.raw (ext4 root LABEL=rootfs, no
# partition table; booted with -kernel/-initrd), vmlinuz, initrd.img, cmdline,
# info.json. Built without loop mounts (mmdebstrap + mke2fs -d) and cached under
#   ${IMAGEGEN_VM_CACHE:-$HOME/.cache/imagegen-vm}/guest-ARCH-<sha256 of the recipe>/
# in two layers: rootfs-ARCH-<sha256 of guest/rootfs.sh>.tar (the slow
# mmdebstrap part) and the disk (root + collector). Needs root, mmdebstrap,
# e2fsprogs; arm64 on an amd64 host also needs qemu-user-static.
#
# --uefi (amd64) also builds DIR/uefi/disk.qcow2: the same root as partition 2
# of a GPT disk whose EFI system partition holds a unified kernel image (the
# guest's kernel + initrd + command line on systemd's EFI stub) as the
# removable-media boot path \EFI\BOOT\BOOTX64.EFI. OVMF boots it with no boot
# entries and no NVRAM, like a cloud image (`-bios /usr/share/ovmf/OVMF.fd`), and
# it works as a qemu-img backing file. Made with mtools, sgdisk and dd, no loop
# mounts; needs ovmf (to test it), systemd-boot-efi, mtools, gdisk, binutils.
set -euo pipefail

ARCH=amd64 uefi=
for a in "$@"; do
  case "$a" in
    --uefi) uefi=1 ;;
    amd64|arm64) ARCH=$a ;;
    *) printf 'build-guest: usage: build-guest.sh [amd64|arm64] [--uefi]\n' >&2; exit 1 ;;
  esac
done
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

# The UEFI variant of a built guest (see the header): DIR/uefi/{uki.efi,cmdline,disk.qcow2}.
build_uefi() {
  [ "$ARCH" = amd64 ] || die "--uefi is for amd64 (the launcher test's architecture)"
  local stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
  for tool in objcopy objdump mformat mcopy mmd sgdisk qemu-img; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install binutils mtools gdisk qemu-utils)"
  done
  [ -f "$stub" ] || die "$stub missing (apt-get install systemd-boot-efi)"
  local start u
  start=$(date +%s)
  u=$(mktemp -d "$guest_dir/.uefi-XXXXXX")
  trap 'rm -rf "$u"' EXIT
  # The command line is baked into the image (systemd-stub ignores the firmware's when the
  # image has one and Secure Boot is on; with it off a boot entry could override it, but a
  # launcher has none). igvm.keep-running: the VM stays up after its report, as a user's VM
  # does; the harness stops QEMU once it has read the report from the serial log.
  echo "root=LABEL=rootfs rw console=tty0 console=ttyS0 igvm.keep-running" > "$u/cmdline"
  tar -xOf "$rootfs_tar" ./usr/lib/os-release > "$u/os-release"
  # systemd 252's stub (no ukify yet): each added section at its own address after the stub's
  # own sections (its image base is 0, so VMA = RVA), 4 KiB aligned.
  local end=0 align=4096 off name file size vma
  while read -r size vma; do
    [ $(( 0x$vma + 0x$size )) -le "$end" ] || end=$(( 0x$vma + 0x$size ))
  done < <(objdump -h -w "$stub" | awk 'NF >= 7 && $1 ~ /^[0-9]+$/ {print $3, $4}')
  off=$(( (end + align - 1) / align * align ))
  local sections=()
  for entry in ".osrel:$u/os-release" ".cmdline:$u/cmdline" ".linux:$guest_dir/vmlinuz" ".initrd:$guest_dir/initrd.img"; do
    name=${entry%%:*} file=${entry#*:}
    sections+=(--add-section "$name=$file" --change-section-vma "$name=$(printf '0x%x' "$off")")
    off=$(( (off + $(stat -c %s "$file") + align - 1) / align * align ))
  done
  objcopy "${sections[@]}" "$stub" "$u/uki.efi"
  # ESP: FAT with the UKI as the removable-media boot file.
  local mib=$((1024 * 1024)) uki_size esp_mib root_size root_mib
  uki_size=$(stat -c %s "$u/uki.efi")
  esp_mib=$(( uki_size / mib * 5 / 4 + 16 ))
  [ "$esp_mib" -ge 64 ] || esp_mib=64
  truncate -s "${esp_mib}M" "$u/esp.img"
  mformat -i "$u/esp.img" -F -v ESP ::
  mmd -i "$u/esp.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$u/esp.img" "$u/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
  # GPT: 1 MiB for the table, the ESP, the root (LABEL=rootfs is what the kernel looks for),
  # 1 MiB for the backup table.
  root_size=$(stat -c %s "$guest_dir/disk.raw")
  root_mib=$(( (root_size + mib - 1) / mib ))
  truncate -s $(( (1 + esp_mib + root_mib + 1) * mib )) "$u/disk.raw"
  sgdisk -o \
    -n "1:1M:+${esp_mib}M" -t 1:ef00 -c 1:ESP \
    -n "2:$(( 1 + esp_mib ))M:+${root_mib}M" -t 2:8304 -c 2:rootfs "$u/disk.raw" >/dev/null
  dd if="$u/esp.img" of="$u/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
  dd if="$guest_dir/disk.raw" of="$u/disk.raw" bs=1M seek=$(( 1 + esp_mib )) conv=notrunc,sparse status=none
  sgdisk -p "$u/disk.raw" | grep -q "EF00  ESP" || die "no ESP in the GPT of $u/disk.raw"
  qemu-img convert -q -f raw -O qcow2 "$u/disk.raw" "$u/disk.qcow2"
  rm -f "$u/disk.raw" "$u/esp.img"
  mkdir -p "$guest_dir/uefi"
  mv "$u/uki.efi" "$u/cmdline" "$u/os-release" "$u/disk.qcow2" "$guest_dir/uefi/"
  rm -rf "$u"
  trap - EXIT
  log "UEFI variant built in $(( $(date +%s) - start ))s: $guest_dir/uefi/disk.qcow2 (ESP ${esp_mib} MiB with EFI/BOOT/BOOTX64.EFI, root ${root_mib} MiB)"
}

if [ -f "$guest_dir/info.json" ]; then
  log "cached: $guest_dir"
  if [ -n "$uefi" ] && [ ! -f "$guest_dir/uefi/disk.qcow2" ]; then build_uefi; fi
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
if [ -n "$uefi" ]; then build_uefi; fi
echo "$guest_dir"
