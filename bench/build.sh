#!/usr/bin/env bash
# imagegen end to end against peers, in one run, on a real-sized mirror (~350 MiB per arch).
#
#   bench/build.sh            (needs: nginx-light curl time; apt-get install them)
#
# 1. cold `imagegen fetch` (parallel) vs the same URLs fetched one after another with curl,
#    from nginx on 127.0.0.1 limiting each connection to $RATE like a real download host;
# 2. cold `imagegen build` (cache full, nothing staged) vs warm build vs a no-change rebuild,
#    without ISOs and with them;
# 3. peak RSS of every imagegen run (GNU time).
# Prints times and ratios; asserts nothing (targets are in the README and the closing notes).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PORT=${PORT:-18093}
RATE=${RATE:-20m}
JOBS=${JOBS:-4}
ARCH=amd64
for tool in nginx curl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found (apt-get install nginx-light curl time)" >&2; exit 1; }
done
cargo build --quiet --release --manifest-path "$root/Cargo.toml"
IMAGEGEN="${CARGO_TARGET_DIR:-$root/target}/release/imagegen"

# BENCH_DIR keeps the generated mirror between runs (it is made once); default: a temp dir.
keep=${BENCH_DIR:+1}
work=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/imagegen-bench.XXXXXX")}
mkdir -p "$work"
rm -rf "$work/cache" "$work/out"   # every run starts cold
chmod 755 "$work"   # nginx workers started by root run unprivileged
nginx_pid=
cleanup() {
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
  if [ -z "$keep" ]; then rm -rf "$work"; else rm -rf "$work/cache" "$work/out"; fi
}
trap cleanup EXIT

# Release archives in the upstream layouts, with roughly the real sizes.
www="$work/www"
if [ ! -f "$work/profile.yaml" ]; then
# Content: real ELF binaries and libraries of this machine, concatenated, so the archives
# compress about like the real Go binaries do (random bytes would not compress at all).
pool="$work/pool"
find /usr/bin /usr/lib /usr/libexec -type f -size +64k -print0 2>/dev/null | sort -z \
  | xargs -0 cat 2>/dev/null | head -c $((700 * 1024 * 1024)) >"$pool" || true
pool_mib=$(($(stat -c %s "$pool") / 1048576))
offset=0
mk() { # path MiB: the next MiB of the pool (wrapping), so no two files are alike
  mkdir -p "$(dirname "$1")"
  if [ $((offset + $2)) -gt "$pool_mib" ]; then offset=0; fi
  dd if="$pool" of="$1" bs=1M skip="$offset" count="$2" status=none
  offset=$((offset + $2))
  chmod 755 "$1"
}
s="$work/src"
# Uncompressed sizes of the v1.31-era releases, MiB (the server tarball: the binaries a control
# node takes and the largest others).
mk "$s/containerd/bin/containerd" 52; mk "$s/containerd/bin/containerd-shim-runc-v2" 12
mk "$s/containerd/bin/ctr" 25; mk "$s/containerd/bin/containerd-stress" 22
mk "$s/runc.$ARCH" 11
mk "$s/crictl/crictl" 55
for p in bandwidth bridge dhcp dummy firewall host-device host-local ipvlan loopback macvlan portmap ptp sbr static tap tuning vlan vrf; do
  mk "$s/cni/$p" 5
done
mk "$s/node/kubernetes/node/bin/kubelet" 77; mk "$s/node/kubernetes/node/bin/kube-proxy" 63
mk "$s/node/kubernetes/node/bin/kubeadm" 57; mk "$s/node/kubernetes/node/bin/kubectl" 55
mk "$s/etcd/etcd-v3.5.15-linux-$ARCH/etcd" 23; mk "$s/etcd/etcd-v3.5.15-linux-$ARCH/etcdctl" 17
mk "$s/etcd/etcd-v3.5.15-linux-$ARCH/etcdutl" 15
for b in kube-apiserver:89 kube-controller-manager:83 kube-scheduler:62 kubectl:55 kubelet:77 kube-proxy:63 kubeadm:57; do
  mk "$s/server/kubernetes/server/bin/${b%%:*}" "${b#*:}"
done
rm -f "$pool"
gh="$www/github.com"
d="$gh/containerd/containerd/releases/download/v1.7.20"; mkdir -p "$d"
tar -C "$s/containerd" -czf "$d/containerd-1.7.20-linux-$ARCH.tar.gz" bin
d="$gh/opencontainers/runc/releases/download/v1.1.13"; mkdir -p "$d"; cp "$s/runc.$ARCH" "$d/"
d="$gh/kubernetes-sigs/cri-tools/releases/download/v1.31.1"; mkdir -p "$d"
tar -C "$s/crictl" -czf "$d/crictl-v1.31.1-linux-$ARCH.tar.gz" crictl
d="$gh/containernetworking/plugins/releases/download/v1.5.1"; mkdir -p "$d"
tar -C "$s/cni" -czf "$d/cni-plugins-linux-$ARCH-v1.5.1.tgz" .
d="$www/dl.k8s.io/v1.31.0"; mkdir -p "$d"
tar -C "$s/node" -czf "$d/kubernetes-node-linux-$ARCH.tar.gz" kubernetes
tar -C "$s/server" -czf "$d/kubernetes-server-linux-$ARCH.tar.gz" kubernetes
d="$gh/etcd-io/etcd/releases/download/v3.5.15"; mkdir -p "$d"
tar -C "$s/etcd" -czf "$d/etcd-v3.5.15-linux-$ARCH.tar.gz" "etcd-v3.5.15-linux-$ARCH"
rm -rf "$s"

# The built-in profile with this mirror's digests for $ARCH.
python3 - "$root/profiles/kthw-1.31.yaml" "$www" "$ARCH" >"$work/profile.yaml" <<'PY'
import hashlib, re, sys
src, www, arch = sys.argv[1:]
comp = None
url = {}
out = []
lines = open(src).read().splitlines()
for l in lines:
    m = re.match(r"^  ([a-z-]+):", l)
    if m: comp = m.group(1)
    m = re.match(r"^    url: (\S+)", l)
    if m: url[comp] = m.group(1)
versions = {}
for l in lines:
    m = re.match(r"^  ([a-z-]+):", l)
    if m: comp = m.group(1)
    m = re.match(r"^    version: (\S+)", l)
    if m: versions[comp] = m.group(1)
comp = None
for l in lines:
    m = re.match(r"^  ([a-z-]+):", l)
    if m: comp = m.group(1)
    # The VMs' disk image: `imagegen launch` fetches it, a build never does; not benchmarked
    # (it is the last component of the profile).
    if comp == "base-image":
        continue
    m = re.match(r"^(\s+)" + arch + r": (sha256|sha512):", l)
    if m:
        u = url[comp].replace("{version}", versions[comp]).replace("{arch}", arch)
        path = www + "/" + u.split("://", 1)[1]
        h = hashlib.new(m.group(2)); h.update(open(path, "rb").read())
        l = f"{m.group(1)}{arch}: {m.group(2)}:{h.hexdigest()}"
    out.append(l)
print("\n".join(out))
PY
fi
total=$(du -sm "$www" | cut -f1)

mkdir -p "$work/logs"
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 2;
pid $work/nginx.pid;
error_log $work/logs/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  client_body_temp_path $work/logs/body;
  proxy_temp_path $work/logs/proxy;
  fastcgi_temp_path $work/logs/fastcgi;
  uwsgi_temp_path $work/logs/uwsgi;
  scgi_temp_path $work/logs/scgi;
  server { listen 127.0.0.1:$PORT; root $www; limit_rate $RATE; }
}
CONF
nginx -e "$work/logs/error.log" -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!
mirror="http://127.0.0.1:$PORT"
for _ in $(seq 50); do curl -sf -o /dev/null "$mirror/dl.k8s.io/v1.31.0/kubernetes-node-linux-$ARCH.tar.gz" -r 0-0 && break; sleep 0.1; done

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
peak() { awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }
timed() { # label timefile cmd...
  local label=$1 tf=$2; shift 2
  local t0 t1
  t0=$(now); /usr/bin/time -v -o "$tf" "$@" >"$tf.out" 2>&1 || { cat "$tf.out" >&2; exit 1; }; t1=$(now)
  printf '%-44s %8.3f s   peak RSS %6s MiB\n' "$label" "$(calc "$t1 - $t0")" "$(peak "$tf")" >&2
  calc "$t1 - $t0"
}
ig=("$IMAGEGEN")
common=(--arch "$ARCH" --profile "$work/profile.yaml" --cache "$work/cache" --quiet)

echo "bench: $total MiB mirror ($ARCH), nginx limit_rate $RATE per connection, $(nproc) cores" >&2
seq_s=$(timed "curl, one URL after another" "$work/t.seq" bash -c '
  cd "$1" && find . -type f | sort | while read -r f; do curl -sSf -o /dev/null "$2/${f#./}"; done' _ "$www" "$mirror")
fetch_s=$(timed "imagegen fetch, cold, --jobs $JOBS" "$work/t.fetch" "${ig[@]}" fetch "${common[@]}" --mirror "$mirror" --jobs "$JOBS")
cold_s=$(timed "imagegen build --no-iso, nothing staged" "$work/t.cold" "${ig[@]}" build "${common[@]}" --out "$work/out" --no-iso --offline)
rm -rf "$work/out/$ARCH"
warm_s=$(timed "imagegen build --no-iso, again from scratch" "$work/t.warm" "${ig[@]}" build "${common[@]}" --out "$work/out" --no-iso --offline)
nochg_s=$(timed "imagegen build --no-iso, no change" "$work/t.nochg" "${ig[@]}" build "${common[@]}" --out "$work/out" --no-iso --offline)
iso_s=$(timed "imagegen build (7 seed ISOs, embedded payload)" "$work/t.iso" "${ig[@]}" build "${common[@]}" --out "$work/out" --offline)
isonc_s=$(timed "imagegen build with ISOs, no change" "$work/t.isonc" "${ig[@]}" build "${common[@]}" --out "$work/out" --offline)
echo
printf 'cold fetch vs sequential curl:        %6.2fx faster\n' "$(calc "$seq_s / $fetch_s")"
printf 'build from a full cache:              %6.3f s\n' "$warm_s"
printf 'no-change rebuild (no ISOs):          %6.3f s\n' "$nochg_s"
printf 'no-change rebuild (ISOs):             %6.3f s (ISOs written: %s)\n' "$isonc_s" "$(grep -o 'ISOs: .*' "$work/t.isonc.out" || true)"
printf 'first build with ISOs:                %6.3f s\n' "$iso_s"
: "$cold_s"
