# shellcheck shell=bash
# Sourced by ../build-guest.sh. The Debian 12 root of the test guest: what a stock
# cloud image has that imagegen's seed relies on. Any change here rebuilds the
# cached root filesystem (its hash is the cache key).

# shellcheck disable=SC2034 # used by build-guest.sh
SUITE=bookworm

# shellcheck disable=SC2034 # used by build-guest.sh
PACKAGES=(
  systemd systemd-sysv systemd-resolved udev dbus
  cloud-init cloud-guest-utils python3 netplan.io
  kmod iproute2 iptables procps
  cpio gzip tar ca-certificates curl
  util-linux mount e2fsprogs
  openssh-server sudo locales
)

kernel_package() {
  case "$1" in
    # The cloud flavour has br_netfilter and overlay as modules and boots fast.
    amd64) echo linux-image-cloud-amd64 ;;
    arm64) echo linux-image-cloud-arm64 ;;
    *) echo "unsupported arch $1" >&2; return 1 ;;
  esac
}

# Runs on the host after mmdebstrap has installed everything; $1 is the root.
customize_rootfs() {
  local root=$1
  # Like a cloud image: networkd+resolved do the networking netplan renders,
  # /etc/resolv.conf is resolved's stub (the kubelet config reads
  # /run/systemd/resolve/resolv.conf).
  chroot "$root" systemctl enable systemd-networkd.service systemd-resolved.service
  ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
  # The guest must never try to reach anything: no time sync, no apt timers.
  chroot "$root" systemctl mask apt-daily.timer apt-daily-upgrade.timer \
    systemd-timesyncd.service e2scrub_all.timer fstrim.timer >/dev/null 2>&1 || true
  # Per-instance identity is created on first boot, as in a cloud image.
  : > "$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
  echo localhost > "$root/etc/hostname"
  printf '/dev/vda / ext4 defaults 0 1\n' > "$root/etc/fstab"
  printf 'LANG=C.UTF-8\n' > "$root/etc/default/locale"
  # Don't wait 2 minutes for a network that is not configured yet (no seed).
  mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
  printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --timeout=90\n' \
    > "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/timeout.conf"
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"*_Packages
}
