#!/usr/bin/env bash
# Boots the imagegen VM test guest once with a NoCloud seed and collects the
# report that the guest's collector unit writes after cloud-init has finished.
#
#   boot.sh --guest DIR --disk FILE.qcow2 --seed seed.iso --mac MAC --out DIR
#           [--payload payload.iso] [--address IP --net CIDR] [--paths FILE]
#           [--guestfwd tcp:IP:PORT-cmd:COMMAND]
#           [--name NAME] [--timeout SECONDS] [--accel auto|kvm|tcg] [--smp N] [--mem MiB]
#   boot.sh --detect --guest DIR            prints kvm or tcg
#
# --disk is created as a fresh qcow2 overlay over DIR/disk.raw when it does not
# exist; pass the same file again to boot the same disk a second time.
# --address/--net make QEMU's user-mode DHCP hand out the VM's address of the
# profile (net=CIDR, host=first address, dhcpstart=IP), like the guide's dnsmasq.
# --paths FILE: newline-separated paths the collector must also describe,
# attached as the last virtio drive (a raw disk starting "IMAGEGEN-VM-PATHS").
#
# The only NIC is QEMU user networking with restrict=on: no packet from the
# guest leaves QEMU (slirp answers DHCP itself and drops everything else).
#
# Writes OUT/console.log (ttyS0), OUT/report.raw (collector channel),
# OUT/report.json, OUT/qemu.log, OUT/timing.json. Exit: 0 report collected,
# 2 timed out, 3 QEMU exited without a report, 1 usage/setup error.
set -euo pipefail

guest='' disk='' seed='' payload='' mac='' out='' address='' net='' paths='' guestfwd='' name=vm
timeout_s=${IMAGEGEN_VM_TIMEOUT:-900}
accel=${IMAGEGEN_VM_ACCEL:-auto}
smp=1 mem=1024 arch='' detect_only=

log() { printf 'boot %s: %s\n' "$name" "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --guest) guest=$2; shift 2 ;;
    --disk) disk=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    --mac) mac=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --address) address=$2; shift 2 ;;
    --net) net=$2; shift 2 ;;
    --paths) paths=$2; shift 2 ;;
    --guestfwd) guestfwd=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --accel) accel=$2; shift 2 ;;
    --smp) smp=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --detect) detect_only=1; shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done

if [ -z "$arch" ] && [ -n "$guest" ] && [ -f "$guest/info.json" ]; then
  arch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["arch"])' "$guest/info.json")
fi
arch=${arch:-amd64}
case "$arch" in
  amd64) qemu=qemu-system-x86_64 machine=q35 qemu_pkg=qemu-system-x86 ;;
  arm64) qemu=qemu-system-aarch64 machine=virt qemu_pkg=qemu-system-arm ;;
  *) die "unsupported arch $arch" ;;
esac
command -v "$qemu" >/dev/null || die "$qemu not found (apt-get install -t bookworm-backports $qemu_pkg qemu-utils)"

# /dev/kvm may exist and still be unable to run this guest (here, for example,
# it is a nested "kvm-pvm" that runs a real-mode boot sector but never gets a
# stock Linux kernel to print a line). So the probe boots the guest's own
# kernel with the same CPU model, without initrd or root disk: a working KVM
# reaches the "VFS: Unable to mount root fs" panic in a few seconds and QEMU
# exits (panic=-1, -no-reboot).
detect_accel() {
  if [ "$arch" != amd64 ] || [ "$(uname -m)" != x86_64 ]; then echo tcg; return; fi
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo tcg; return; fi
  [ -f "$guest/vmlinuz" ] || die "--detect needs --guest DIR (it boots the guest's kernel)"
  local con rc=0
  con=$(mktemp)
  # In a subshell so that bash does not report an aborting QEMU on stderr.
  (timeout --kill-after=5 "${IMAGEGEN_VM_PROBE_TIMEOUT:-30}" qemu-system-x86_64 -accel "${IMAGEGEN_VM_PROBE_ACCEL:-kvm}" \
    -M q35 -cpu "${IMAGEGEN_VM_PROBE_CPU:-host}" -m 256 -display none -nodefaults -no-user-config -no-reboot \
    -kernel "$guest/vmlinuz" -append "console=ttyS0 panic=-1 root=/dev/nonexistent" \
    -serial "file:$con" >/dev/null 2>&1; exit $?) 2>/dev/null || rc=$?
  if [ "$rc" = 0 ] && grep -q 'Kernel panic' "$con"; then echo kvm; else echo tcg; fi
  rm -f "$con"
}

if [ -n "$detect_only" ]; then
  detect_accel
  exit 0
fi

if [ -z "$guest" ] || [ -z "$disk" ] || [ -z "$seed" ] || [ -z "$mac" ] || [ -z "$out" ]; then
  die "--guest, --disk, --seed, --mac and --out are required"
fi
[ -f "$guest/disk.raw" ] || die "$guest/disk.raw missing (run build-guest.sh)"
[ -f "$seed" ] || die "seed $seed missing"
[ -z "$payload" ] || [ -f "$payload" ] || die "payload $payload missing"
if [ "$accel" = auto ]; then
  accel=$(detect_accel)
fi
case "$accel" in
  kvm) cpu=host ;;
  tcg) cpu=max ;;
  *) die "--accel must be auto, kvm or tcg" ;;
esac
# TCG emulates arm64 pointer authentication with QARMA by default, which is slow;
# the implementation-defined algorithm is much cheaper and the guest cannot tell.
if [ "$arch" = arm64 ] && [ "$accel" = tcg ]; then cpu=max,pauth-impdef=on; fi

mkdir -p "$out"
rm -f "$out/console.log" "$out/report.raw" "$out/report.json" "$out/qemu.log" "$out/timing.json"
if [ ! -f "$disk" ]; then
  qemu-img create -q -f qcow2 -b "$(realpath "$guest/disk.raw")" -F raw "$disk"
fi

nic="user,restrict=on,ipv6=off,model=virtio-net-pci,mac=$mac"
if [ -n "$address" ]; then
  [ -n "$net" ] || die "--address needs --net (e.g. 192.168.1.0/24)"
  host=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$net")
  nic="$nic,net=$net,host=$host,dhcpstart=$address"
fi

if [ -n "$guestfwd" ]; then
  # One address in the guest's network that QEMU answers by running a command per connection
  # (the fetch tests relay it to their mirror on 127.0.0.1); restrict=on leaves only this open.
  case "$guestfwd" in *,*) die "--guestfwd must not contain a comma" ;; esac
  nic="$nic,guestfwd=$guestfwd"
fi

args=(
  -accel "$accel" -M "$machine" -cpu "$cpu" -smp "$smp" -m "$mem"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$guest/vmlinuz" -initrd "$guest/initrd.img"
  -append "$(cat "$guest/cmdline")"
  -serial "file:$out/console.log"
  # The root disk comes first so that it is vda (root=/dev/vda).
  -drive "file=$disk,format=qcow2,if=virtio"
  # The seed exactly as a user attaches it.
  -drive "file=$seed,driver=raw,if=virtio"
)
if [ -n "$payload" ]; then
  args+=(-drive "file=$payload,driver=raw,if=virtio,readonly=on")
fi
if [ -n "$paths" ]; then
  # Last virtio drive, so that root, seed and payload keep the names a user's VM gives them
  # (a -device virtio-blk-pci would take an earlier PCI slot than the if=virtio drives).
  { echo IMAGEGEN-VM-PATHS; cat "$paths"; } > "$out/paths.raw"
  truncate -s %512 "$out/paths.raw"
  args+=(-drive "file=$out/paths.raw,format=raw,if=virtio,readonly=on")
fi
args+=(
  -nic "$nic"
  -device virtio-serial-pci
  -chardev "file,id=igvmreport,path=$out/report.raw"
  -device "virtserialport,chardev=igvmreport,name=igvm.report"
)

log "accel=$accel smp=$smp mem=${mem}M timeout=${timeout_s}s disk=$disk seed=$seed${payload:+ payload=$payload}"
printf '%q ' "$qemu" "${args[@]}" > "$out/qemu.cmdline"
start=$(date +%s.%N)
timeout --kill-after=10 "$timeout_s" "$qemu" "${args[@]}" > "$out/qemu.log" 2>&1 &
qpid=$!
reported=
while kill -0 "$qpid" 2>/dev/null; do
  if [ -z "$reported" ] && grep -q '=====IMAGEGEN-VM-REPORT-END=====' "$out/report.raw" 2>/dev/null; then
    reported=$(date +%s.%N)
  fi
  sleep 0.5
done
rc=0
wait "$qpid" || rc=$?
end=$(date +%s.%N)
if [ -z "$reported" ] && grep -q '=====IMAGEGEN-VM-REPORT-END=====' "$out/report.raw" 2>/dev/null; then
  reported=$end
fi

python3 - "$out" "$start" "${reported:-}" "$end" "$accel" "$rc" <<'PY'
import json, sys
out, start, reported, end, accel, rc = sys.argv[1:]
raw = open(out + "/report.raw", "rb").read().decode("utf-8", "replace") if __import__("os").path.exists(out + "/report.raw") else ""
begin, endm = "=====IMAGEGEN-VM-REPORT-BEGIN=====", "=====IMAGEGEN-VM-REPORT-END====="
if begin in raw and endm in raw:
    body = raw.rsplit(begin, 1)[1].split(endm, 1)[0].strip()
    json.loads(body)  # fail loudly here on a corrupt report
    open(out + "/report.json", "w").write(body)
t = {"accel": accel, "qemu_rc": int(rc),
     "to_report_s": round(float(reported) - float(start), 1) if reported else None,
     "total_s": round(float(end) - float(start), 1)}
json.dump(t, open(out + "/timing.json", "w"))
PY

to_report=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["to_report_s"])' "$out/timing.json")
total=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(t["total_s"])' "$out/timing.json")
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  log "TIMED OUT after ${timeout_s}s (accel=$accel); last console lines:"
  tail -n 25 "$out/console.log" >&2 || true
  exit 2
fi
if [ ! -f "$out/report.json" ]; then
  log "QEMU exited (rc=$rc) after ${total}s without a report; qemu.log and last console lines:"
  cat "$out/qemu.log" >&2 || true
  tail -n 25 "$out/console.log" >&2 || true
  exit 3
fi
log "boot time ${to_report}s to report, ${total}s until QEMU exited (accel=$accel)"
