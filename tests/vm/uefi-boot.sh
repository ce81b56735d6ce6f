#!/usr/bin/env bash
# Boots the UEFI variant of the test guest (build-guest.sh --uefi) the way a user's launcher
# does, to prove the image and to show what the launcher test needs: OVMF as -bios, a qcow2
# overlay on the image as the only root disk, the seed ISO as a virtio drive, no virtio-serial
# port (so the collector's report comes on the serial console, framed, and is read from the
# log), QEMU's user networking restricted to QEMU itself.
#
#   uefi-boot.sh --guest DIR --seed seed.iso --mac MAC --out DIR
#                [--address IP --net CIDR] [--size 20G] [--accel auto|kvm|tcg] [--timeout S]
#
# Writes OUT/disk.qcow2 (overlay, backing file DIR/uefi/disk.qcow2), OUT/console.log,
# OUT/report.json, OUT/qemu.cmdline, OUT/timing.json. The guest keeps running after its report
# (igvm.keep-running is in its baked command line); QEMU is stopped once the report is read.
# Exit as boot.sh: 0 report, 2 timed out, 3 no report.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ovmf=${IMAGEGEN_VM_OVMF:-/usr/share/ovmf/OVMF.fd}
guest='' seed='' mac='' out='' address='' net='' size=20G accel=${IMAGEGEN_VM_ACCEL:-auto}
timeout_s=${IMAGEGEN_VM_TIMEOUT:-900}
die() { printf 'uefi-boot: error: %s\n' "$*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --guest) guest=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --mac) mac=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --address) address=$2; shift 2 ;;
    --net) net=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    *) die "unknown argument $1" ;;
  esac
done
[ -n "$guest" ] && [ -n "$seed" ] && [ -n "$mac" ] && [ -n "$out" ] || die "--guest, --seed, --mac and --out are required"
base=$guest/uefi/disk.qcow2
[ -f "$base" ] || die "$base missing (build-guest.sh amd64 --uefi)"
[ -f "$ovmf" ] || die "$ovmf missing (apt-get install ovmf)"
if [ "$accel" = auto ]; then accel=$("$here/boot.sh" --detect --guest "$guest"); fi
case "$accel" in kvm) cpu=host ;; tcg) cpu=max ;; *) die "--accel must be auto, kvm or tcg" ;; esac

mkdir -p "$out"
rm -f "$out/disk.qcow2" "$out/console.log" "$out/report.json" "$out/timing.json"
# As a launcher (and the guide) does: a bigger overlay on the cloud image; cloud-init's
# growpart and resizefs then grow the root partition and filesystem at first boot.
qemu-img create -q -f qcow2 -F qcow2 -b "$(realpath "$base")" "$out/disk.qcow2" "$size"
nic="user,restrict=on,ipv6=off,model=virtio-net-pci,mac=$mac"
if [ -n "$address" ]; then
  host=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$net")
  nic="$nic,net=$net,host=$host,dhcpstart=$address"
fi
args=(-machine "q35,accel=$accel" -cpu "$cpu" -smp 1 -m 1024 -nodefaults -no-user-config
  -display none -bios "$ovmf"
  -drive "file=$out/disk.qcow2,if=virtio,format=qcow2"
  -drive "file=$seed,driver=raw,if=virtio"
  -nic "$nic" -serial "file:$out/console.log")
printf '%q ' qemu-system-x86_64 "${args[@]}" > "$out/qemu.cmdline"
start=$(date +%s.%N)
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 "${args[@]}" > "$out/qemu.log" 2>&1 &
qpid=$!
rc=0
python3 "$here/await-report.py" "$out/console.log" "$out/report.json" --pid "$qpid" \
  --timeout "$timeout_s" --stop || rc=$?
wait "$qpid" 2>/dev/null || true
python3 - "$out" "$start" "$(date +%s.%N)" "$accel" "$rc" <<'PY'
import json, sys
out, start, end, accel, rc = sys.argv[1:]
json.dump({"accel": accel, "await_rc": int(rc), "total_s": round(float(end) - float(start), 1)},
          open(out + "/timing.json", "w"))
PY
if [ "$rc" != 0 ]; then tail -n 30 "$out/console.log" >&2 || true; fi
exit "$rc"
