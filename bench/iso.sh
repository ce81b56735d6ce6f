#!/usr/bin/env bash
# Seed-ISO writer benchmark: 7 seeds (user-data ~20 KB, meta-data, network-config) each with a
# ~400 MB payload, written by our writer and by its peers, plus plain copies of the same bytes.
#   ISO_CMD   writer command taking the seed-iso CLI (default: imagegen seed-iso from a release build)
#   BENCH_DIR work directory (default /tmp/iso-bench; the payload is created there once)
#   RUNS      timed runs per command (default 5)
# Needs: hyperfine, genisoimage, xorriso, cloud-image-utils, dosfstools, mtools, time (apt), python3.
# The 'small' set also compares FAT seeds (`-f vfat`: ours, and cloud-localds' mkfs.vfat + mcopy).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z ${ISO_CMD:-} ]]; then
  cargo build --release --quiet --manifest-path "$here/Cargo.toml"
  ISO_CMD="${CARGO_TARGET_DIR:-$here/target}/release/imagegen seed-iso"
fi
dir=${BENCH_DIR:-/tmp/iso-bench}
runs=${RUNS:-5}
for t in hyperfine:hyperfine genisoimage:genisoimage xorriso:xorriso cloud-localds:cloud-image-utils mkfs.vfat:dosfstools mcopy:mtools /usr/bin/time:time; do
  command -v "${t%%:*}" >/dev/null || { echo "missing ${t%%:*}: apt-get install ${t#*:}" >&2; exit 1; }
done
mkdir -p "$dir/out"
payload="$dir/overlay-worker.cpio.gz"
if [[ ! -f $payload ]]; then
  head -c 400000000 /dev/urandom >"$payload.tmp" && mv "$payload.tmp" "$payload"
fi
for i in 1 2 3 4 5 6 7; do
  s="$dir/seed$i"
  mkdir -p "$s"
  { echo '#cloud-config'; echo "hostname: node$i"; echo 'write_files:';
    for k in $(seq 1 150); do echo "  - path: /etc/bench/f$k"; echo "    content: $(printf 'x%.0s' $(seq 1 100))"; done; } >"$s/user-data"
  printf 'instance-id: node%s\nlocal-hostname: node%s\n' "$i" "$i" >"$s/meta-data"
  printf 'network: {version: 2, ethernets: {}}\n' >"$s/network-config"
done
echo "user-data: $(stat -c %s "$dir/seed1/user-data") bytes; payload: $(stat -c %s "$payload") bytes; 7 seeds"

loop() { echo "for i in 1 2 3 4 5 6 7; do s=$dir/seed\$i; $1; done"; }
ours="$ISO_CMD -o $dir/out/\$i.iso --user-data \$s/user-data --meta-data \$s/meta-data --network-config \$s/network-config"
geniso="genisoimage -quiet -input-charset utf-8 -J -R -V cidata -o $dir/out/\$i.iso \$s/user-data \$s/meta-data \$s/network-config"
xorr="xorriso -as mkisofs -quiet -J -R -V cidata -o $dir/out/\$i.iso \$s/user-data \$s/meta-data \$s/network-config"
localds="cloud-localds -N \$s/network-config $dir/out/\$i.iso \$s/user-data \$s/meta-data"
ours_vfat="$ISO_CMD -f vfat -N \$s/network-config $dir/out/\$i.img \$s/user-data \$s/meta-data"
localds_vfat="cloud-localds -f vfat -N \$s/network-config $dir/out/\$i.img \$s/user-data \$s/meta-data"
declare -A full=(
  [ours]=$(loop "$ours $payload")
  [genisoimage]=$(loop "$geniso $payload")
  [xorriso]=$(loop "$xorr $payload 2>/dev/null")
  [cp]=$(loop "mkdir -p $dir/out/\$i && cp \$s/user-data \$s/meta-data \$s/network-config $payload $dir/out/\$i/")
  # The peers with their output made durable, as ours is (fdatasync before the rename).
  [geniso+sync]=$(loop "$geniso $payload && sync $dir/out/\$i.iso")
  [cp+sync]=$(loop "mkdir -p $dir/out/\$i && cp \$s/user-data \$s/meta-data \$s/network-config $payload $dir/out/\$i/ && sync $dir/out/\$i/*")
  [dd]=$(loop "cat \$s/user-data \$s/meta-data \$s/network-config $payload | dd of=$dir/out/\$i.bin bs=1M status=none")
)
declare -A small=(
  [ours]=$(loop "$ours")
  [genisoimage]=$(loop "$geniso")
  [xorriso]=$(loop "$xorr 2>/dev/null")
  [cloud-localds]=$(loop "$localds")
  [ours-vfat]=$(loop "$ours_vfat")
  [localds-vfat]=$(loop "$localds_vfat")
)

bench() { # name of assoc array, order...
  local -n cmds=$1
  local set=$1; shift
  local args=() n
  for n in "$@"; do args+=(-n "$n" "${cmds[$n]}"); done
  hyperfine --style basic --runs "$runs" --warmup 1 --prepare "rm -rf $dir/out/*; sync" \
    --export-json "$dir/$set.json" "${args[@]}" >"$dir/$set.hyperfine.txt"
  for n in "$@"; do
    rm -rf "$dir/out/"*
    /usr/bin/time -v bash -c "${cmds[$n]}" 2>"$dir/$set.$n.time" >/dev/null
  done
  python3 - "$dir" "$set" "$@" <<'PY'
import json, re, sys
d, set_, names = sys.argv[1], sys.argv[2], sys.argv[3:]
res = {r["command"]: r for r in json.load(open(f"{d}/{set_}.json"))["results"]}
ours = res["ours"]["mean"]
print(f"\n== {set_} ==")
print(f"{'tool':<14}{'mean s':>9}{'± s':>7}{'ours/this':>11}{'peak RSS MB':>13}")
for n in names:
    r = res[n]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{d}/{set_}.{n}.time").read()).group(1))
    sd = r["stddev"] or 0.0  # hyperfine gives none for a single run
    print(f"{n:<14}{r['mean']:>9.3f}{sd:>7.3f}{ours / r['mean']:>11.2f}{rss / 1024:>13.1f}")
PY
}
echo "writer: $ISO_CMD   runs: $runs"
bench full ours genisoimage geniso+sync xorriso cp cp+sync dd
bench small ours genisoimage xorriso cloud-localds ours-vfat localds-vfat
echo "(ours/this < 1 means ours is faster; peak RSS is the largest single process of one 7-seed loop)"
echo "(cloud-localds cannot add extra files, so it appears only in the 'small' set without the payload)"
echo "(ours checks user-data against cloud-init's schema before writing; the peers write what they are given)"
echo "(ours writes a temp file, fdatasyncs it and renames it into place: a crash never leaves a half-written image, and the time includes the writeback; the peers write in place and leave the data in the page cache, except the +sync rows)"
rm -rf "$dir/out"
