#!/usr/bin/env bash
# Boots the imagegen VM test guest once with a NoCloud seed and collects the
# report that the guest's collector unit writes after cloud-init has finished.
#
#   boot.sh --guest DIR --disk FILE.qcow2 --seed seed.iso --mac MAC --out DIR
#           [--payload payload.iso] [--address IP --net CIDR] [--paths FILE] [--probes FILE]
#           [--guestfwd tcp:IP:PORT-cmd:COMMAND] [--netns NAME --tap TAP] [--keep-running]
#           [--name NAME] [--timeout SECONDS] [--accel auto|kvm|tcg] [--smp N] [--mem MiB]
#   boot.sh --detect --guest DIR            prints kvm or tcg
#   boot.sh --stop OUT                      stops a VM left running by --keep-running
#
# --disk is created as a fresh qcow2 overlay over DIR/disk.raw when it does not
# exist; pass the same file again to boot the same disk a second time.
# --address/--net make QEMU's user-mode DHCP hand out the VM's address of the
# profile (net=CIDR, host=first address, dhcpstart=IP), like the guide's dnsmasq.
# --paths FILE: newline-separated paths the collector must also describe,
# attached as the last virtio drive (a raw disk starting "IMAGEGEN-VM-PATHS").
# --probes FILE: a JSON list of probes the collector runs before it reports
# (see guest/report.py), appended to that disk after a line IMAGEGEN-VM-PROBES.
#
# The NIC is QEMU user networking with restrict=on by default: no packet from
# the guest leaves QEMU (slirp answers DHCP itself and drops everything else).
# With --netns NAME --tap TAP (see netns.sh) the NIC is instead the tap device
# TAP of that namespace's bridge (QEMU runs under `ip netns exec NAME`), where
# the namespace's dnsmasq answers DHCP and DNS and the other VMs are.
#
# --keep-running adds igvm.keep-running to the kernel command line: the guest
# stays up after its report, boot.sh returns as soon as the report is in and
# leaves QEMU running (still under its --timeout) with its pid in OUT/qemu.pid;
# `boot.sh --stop OUT` stops it. A cluster case keeps every VM up until all of
# them have reported, since each one's probes need the others.
#
# Writes OUT/console.log (ttyS0), OUT/report.raw (collector channel),
# OUT/report.json, OUT/qemu.log, OUT/timing.json. Exit: 0 report collected,
# 2 timed out, 3 QEMU exited without a report (or with one that does not
# decode), 1 usage/setup error.
set -euo pipefail

guest='' disk='' seed='' payload='' mac='' out='' address='' net='' paths='' guestfwd='' name=vm
probes='' netns='' tap='' keep_running='' stop_dir=''
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
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
    --probes) probes=$2; shift 2 ;;
    --netns) netns=$2; shift 2 ;;
    --tap) tap=$2; shift 2 ;;
    --keep-running) keep_running=1; shift ;;
    --stop) stop_dir=$2; shift 2 ;;
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

# Stops a VM that --keep-running left up: TERM to its `timeout` process, which passes it on
# to QEMU (QEMU exits at once on TERM); KILL after 20 s. Quiet if it is already gone.
if [ -n "$stop_dir" ]; then
  pidfile=$stop_dir/qemu.pid
  [ -f "$pidfile" ] || exit 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
  exit 0
fi

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
rm -f "$out/console.log" "$out/report.raw" "$out/report.json" "$out/qemu.log" "$out/timing.json" "$out/qemu.pid"
if [ ! -f "$disk" ]; then
  qemu-img create -q -f qcow2 -b "$(realpath "$guest/disk.raw")" -F raw "$disk"
fi

nic="user,restrict=on,ipv6=off,model=virtio-net-pci,mac=$mac"
if [ -n "$address" ]; then
  [ -n "$net" ] || die "--address needs --net (e.g. 192.168.1.0/24)"
  host=$(python3 -c 'import ipaddress,sys; print(next(ipaddress.ip_network(sys.argv[1]).hosts()))' "$net")
  nic="$nic,net=$net,host=$host,dhcpstart=$address"
fi

if [ -n "$netns" ] || [ -n "$tap" ]; then
  [ -n "$netns" ] && [ -n "$tap" ] || die "--netns and --tap go together"
  [ -z "$address$guestfwd" ] || die "--address/--guestfwd are for user networking, not --netns"
  ip netns list | awk '{print $1}' | grep -qx "$netns" || die "namespace $netns does not exist (netns.sh up)"
  ip -n "$netns" link show "$tap" >/dev/null 2>&1 || die "no tap $tap in namespace $netns"
  nic="tap,ifname=$tap,script=no,downscript=no,model=virtio-net-pci,mac=$mac"
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
  -append "$(cat "$guest/cmdline")${keep_running:+ igvm.keep-running}"
  -serial "file:$out/console.log"
  # The root disk comes first so that it is vda (root=/dev/vda).
  -drive "file=$disk,format=qcow2,if=virtio"
  # The seed exactly as a user attaches it.
  -drive "file=$seed,driver=raw,if=virtio"
)
if [ -n "$payload" ]; then
  args+=(-drive "file=$payload,driver=raw,if=virtio,readonly=on")
fi
if [ -n "$paths" ] || [ -n "$probes" ]; then
  # Last virtio drive, so that root, seed and payload keep the names a user's VM gives them
  # (a -device virtio-blk-pci would take an earlier PCI slot than the if=virtio drives).
  if [ -n "$probes" ]; then
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$probes" || die "--probes $probes is not JSON"
  fi
  { echo IMAGEGEN-VM-PATHS; [ -z "$paths" ] || cat "$paths"
    if [ -n "$probes" ]; then echo; echo IMAGEGEN-VM-PROBES; cat "$probes"; fi; } > "$out/paths.raw"
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
launcher=()
[ -z "$netns" ] || launcher=(ip netns exec "$netns")
printf '%q ' "${launcher[@]}" "$qemu" "${args[@]}" > "$out/qemu.cmdline"
start=$(date +%s.%N)
# timeout first, so that its pid (qemu.pid) stands for the VM: TERM to it reaches QEMU.
timeout --kill-after=10 "$timeout_s" "${launcher[@]}" "$qemu" "${args[@]}" > "$out/qemu.log" 2>&1 &
qpid=$!
reported=
while kill -0 "$qpid" 2>/dev/null; do
  if [ -z "$reported" ] && grep -q '=====IMAGEGEN-VM-REPORT-END=====' "$out/report.raw" 2>/dev/null; then
    reported=$(date +%s.%N)
    if [ -n "$keep_running" ]; then
      # The report is complete once its end marker is there; the VM stays up.
      echo "$qpid" > "$out/qemu.pid"
      break
    fi
  fi
  sleep 0.5
done
rc=0
if [ -n "$keep_running" ] && [ -n "$reported" ]; then
  end=$reported
else
  wait "$qpid" || rc=$?
  end=$(date +%s.%N)
fi
if [ -z "$reported" ] && grep -q '=====IMAGEGEN-VM-REPORT-END=====' "$out/report.raw" 2>/dev/null; then
  reported=$end
fi

prc=0
python3 "$here/parse-report.py" "$out/report.raw" "$out/report.json" || prc=$?
python3 - "$out" "$start" "${reported:-}" "$end" "$accel" "$rc" "${keep_running:-}" <<'PY'
import json, sys
out, start, reported, end, accel, rc, keep = sys.argv[1:]
t = {"accel": accel, "qemu_rc": None if keep and reported else int(rc),
     "to_report_s": round(float(reported) - float(start), 1) if reported else None,
     "total_s": None if keep and reported else round(float(end) - float(start), 1)}
json.dump(t, open(out + "/timing.json", "w"))
PY
if [ "$prc" = 2 ]; then
  log "the report in $out/report.raw does not decode"
  [ -z "$keep_running" ] || "$0" --stop "$out"
  exit 3
fi

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
if [ -n "$keep_running" ]; then
  log "boot time ${to_report}s to report (accel=$accel); still running (pid $(cat "$out/qemu.pid"), boot.sh --stop $out)"
else
  log "boot time ${to_report}s to report, ${total}s until QEMU exited (accel=$accel)"
fi
