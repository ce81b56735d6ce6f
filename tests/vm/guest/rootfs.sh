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
  # growpart (cloud-guest-utils) grows the root partition of the UEFI variant with sfdisk, as on
  # a stock image booted on a bigger overlay.
  fdisk
  openssh-server sudo locales
  # What the cluster tests use on the nodes: the collector's probes (openssl, ping) and the
  # stand-ins of build-mirror.sh (Python 3 with PyYAML) that read kubeconfigs and configs.
  openssl iputils-ping python3-yaml
  # The gateway's load balancer, preinstalled because the guest is offline: the gateway's
  # `packages: [ipvsadm, ldirectord]` then finds them installed (see customize_rootfs).
  # liblwp-protocol-https-perl is what `apt install ldirectord` brings in by Recommends
  # (libwww-perl's) on a stock image: ldirectord's `service=https` checks need it.
  ipvsadm ldirectord liblwp-protocol-https-perl
)

kernel_package() {
  case "$1" in
    # The cloud flavour has br_netfilter, overlay and ip_vs (+ ip_vs_wrr) as modules, an EFI
    # stub (the UEFI variant boots it as a unified kernel image) and boots fast.
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
  # By label, so the same root works as /dev/vda (direct kernel boot), as partition 2 of the
  # UEFI variant's GPT disk, or as /dev/sda under a launcher that attaches it otherwise.
  printf 'LABEL=rootfs / ext4 defaults 0 1\n' > "$root/etc/fstab"
  printf 'LANG=C.UTF-8\n' > "$root/etc/default/locale"
  # Don't wait 2 minutes for a network that is not configured yet (no seed).
  mkdir -p "$root/etc/systemd/system/systemd-networkd-wait-online.service.d"
  printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-networkd-wait-online --timeout=90\n' \
    > "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/timeout.conf"
  # Installed but not running at boot, like on a stock image before the gateway's seed
  # configures it: the gateway's first boot enables and starts it.
  chroot "$root" systemctl disable ldirectord.service >/dev/null 2>&1 || true
  # Offline image: no apt sources and no package lists. cloud-init's `packages:` module then
  # runs `apt-get update` (nothing to fetch, rc 0) and `apt-get install ipvsadm ldirectord`,
  # which finds both installed (dpkg's status is enough; rc 0). Debian's cloud.cfg has
  # `apt: preserve_sources_list: true`, so cloud-init does not write a mirror back.
  printf '# Emptied by the imagegen VM test guest: it has no network to a mirror.\n' > "$root/etc/apt/sources.list"
  rm -f "$root/etc/apt/sources.list.d/"*
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/cache/apt/"*.bin
  find "$root/var/lib/apt/lists" -maxdepth 1 -type f ! -name lock -delete
}
