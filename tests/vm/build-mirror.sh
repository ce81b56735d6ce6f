#!/usr/bin/env bash
# Builds a local release mirror for imagegen's VM tests, laid out like upstream
# (<mirror>/<host>/<path of the upstream URL>), plus test profiles whose digests
# match it.
#
#   build-mirror.sh ARCH DIR
#
# Real binaries where Debian 12 packages them: containerd (containerd,
# containerd-shim*, ctr), runc, the CNI plugins and etcd (etcd, etcdctl) come
# from Debian's containerd, runc, containernetworking-plugins, etcd-server and
# etcd-client packages (older versions than the profile pins, repackaged under
# the pinned file names and archive layouts). Kubernetes and cri-tools are not
# packaged for Debian 12: kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy and kubectl are STAND-INS written in
# Python (standin/kube_standin/, one zip application: real flag parsing, file checks and TLS, no
# orchestration), kubeadm and crictl are shell stand-ins that log their
# arguments. Every stand-in says so in --version and in every log line.
# Tarballs are deterministic (sorted, mtime 0, owner 0, gzip -n).
#
# Writes DIR/<mirror tree>, DIR/profile.yaml (the built-in kthw-1.31 profile
# with this mirror's digests), DIR/profile-cilium.yaml (cni: cilium),
# DIR/profile-static.yaml (addressing: static), DIR/profile-cluster.yaml
# (gateway, control0 and worker0 only, with the cluster keys and the
# kubernetes-server component of notes/cluster-design.md added when the
# built-in profile lacks them), DIR/STAND-INS.txt. The repackaged tree is
# cached under ${IMAGEGEN_VM_CACHE:-$HOME/.cache/imagegen-vm} keyed by the
# .deb versions, this script and the stand-in.
set -euo pipefail

ARCH=${1:?usage: build-mirror.sh ARCH DIR}
DIR=${2:?usage: build-mirror.sh ARCH DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${IMAGEGEN_VM_CACHE:-$HOME/.cache/imagegen-vm}
profile=${IMAGEGEN_VM_PROFILE:-$here/../../profiles/kthw-1.31.yaml}
mirror=${IMAGEGEN_VM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${IMAGEGEN_VM_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
DEBS=(containerd runc containernetworking-plugins etcd-server etcd-client)
standin_pkg=$here/standin/kube_standin

log() { printf 'build-mirror: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ -f "$profile" ] || die "profile $profile not found (set IMAGEGEN_VM_PROFILE)"

# Read the pinned versions from the profile so the file names follow it.
version_of() {
  awk -v c="$1:" '/^  [^ ]/ {f = ($1 == c); next} /^[^ ]/ {f = 0} f && $1 == "version:" {print $2; exit}' "$profile"
}
V_CONTAINERD=$(version_of containerd)
V_RUNC=$(version_of runc)
V_CRICTL=$(version_of crictl)
V_CNI=$(version_of cni-plugins)
V_K8S=$(version_of kubernetes-node)
V_ETCD=$(version_of etcd)
# kubernetes-server is new with issue #10; until the built-in profile pins it, its version
# is the node tarball's (cluster-design.md: the two must be equal).
V_K8S_SERVER=$(version_of kubernetes-server)
V_K8S_SERVER=${V_K8S_SERVER:-$V_K8S}
for v in V_CONTAINERD V_RUNC V_CRICTL V_CNI V_K8S V_ETCD; do
  [ -n "${!v}" ] || die "no version for $v in $profile"
done

# A private apt state, so any ARCH works without touching the host's dpkg
# architectures or lists.
apt_dir=$cache/apt-$ARCH
apt_opts=(-o "APT::Architecture=$ARCH" -o "APT::Architectures=$ARCH"
  -o "Dir::State=$apt_dir/state" -o "Dir::Cache=$apt_dir/cache"
  -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\ndeb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm-updates main\ndeb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm-security main\n' \
  "$mirror" "$mirror" "$security" > "$apt_dir/sources.list"
exec 9>"$cache/.lock-mirror-$ARCH"
flock 9
if [ ! -f "$apt_dir/updated" ] || [ -n "$(find "$apt_dir/updated" -mmin +1440)" ]; then
  apt-get "${apt_opts[@]}" -qq update >&2
  touch "$apt_dir/updated"
fi
versions=$(for d in "${DEBS[@]}"; do
  apt-cache "${apt_opts[@]}" show --no-all-versions "$d" | awk -v d="$d" '/^Version:/ {print d, $2; exit}'
done)
[ "$(echo "$versions" | wc -l)" = ${#DEBS[@]} ] || die "could not find versions of ${DEBS[*]} for $ARCH"
key=$( (echo "$ARCH $V_CONTAINERD $V_RUNC $V_CRICTL $V_CNI $V_K8S $V_K8S_SERVER $V_ETCD"; echo "$versions"
  cat "${BASH_SOURCE[0]}"; find "$standin_pkg" -name '*.py' | LC_ALL=C sort | xargs cat) \
  | sha256sum | cut -d' ' -f1)
tree=$cache/mirror-$ARCH-$key

tgz() { # tgz OUT DIR TOP...: deterministic tar.gz of TOP and everything under it, relative to DIR
  local out=$1 dir=$2; shift 2
  mkdir -p "$(dirname "$out")"
  (cd "$dir" && find "$@" -print0 | LC_ALL=C sort -z) \
    | tar -C "$dir" --no-recursion --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --format=gnu --null -T - -cf - | gzip -n -9 > "$out"
}

standin() { # standin PATH NAME KIND VERSION
  local kind=$3 body
  if [ "$kind" = daemon ]; then body='exec sleep infinity'; else body='exit 0'; fi
  cat > "$1" <<SH
#!/bin/sh
# imagegen VM test STAND-IN for $2 $4: not the real program. It logs its
# arguments and $( [ "$kind" = daemon ] && echo "stays up so its unit is active" || echo "exits 0" ).
case "\${1:-}" in
  --version|version|-v) echo "$2 version v$4 (imagegen test stand-in)"; exit 0 ;;
esac
echo "imagegen test stand-in $2 $4 started with: \$*" >&2
$body
SH
  chmod 0755 "$1"
}

pystandin() { # pystandin PATH VERSION: the Python stand-in, dispatching on its installed name
  # A zip application (`python3 FILE` runs its __main__.py) made deterministic by hand: entries
  # sorted, dated 1980-01-01, the version written into base.py.
  python3 - "$standin_pkg" "$1" "$2" <<'PY'
import os, sys, zipfile
pkg, out, version = sys.argv[1:]
names = sorted(n for n in os.listdir(pkg) if n.endswith(".py"))
with open(out, "wb") as f:
    f.write(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        def add(arcname, text):
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, text)
        add("__main__.py", "import runpy\nrunpy.run_module('kube_standin', run_name='__main__')\n")
        for n in names:
            text = open(os.path.join(pkg, n), encoding="utf-8").read()
            add("kube_standin/" + n, text.replace("@VERSION@", version))
os.chmod(out, 0o755)
PY
}

if [ ! -d "$tree" ]; then
  log "repackaging Debian's ${DEBS[*]} for $ARCH: ${versions//$'\n'/, }"
  work=$(mktemp -d "$cache/.mirror-XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get "${apt_opts[@]}" -qq download "${DEBS[@]}" >&2)
  for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done
  out=$work/tree
  gh=$out/github.com

  # containerd: upstream has bin/ and every binary under it.
  mkdir -p "$work/c/bin"
  for f in containerd containerd-shim containerd-shim-runc-v1 containerd-shim-runc-v2 containerd-stress ctr; do
    [ -f "$work/x/usr/bin/$f" ] && install -m 0755 "$work/x/usr/bin/$f" "$work/c/bin/$f"
  done
  for f in containerd ctr containerd-shim-runc-v2; do
    [ -f "$work/c/bin/$f" ] || die "Debian's containerd package has no $f"
  done
  tgz "$gh/containerd/containerd/releases/download/v$V_CONTAINERD/containerd-$V_CONTAINERD-linux-$ARCH.tar.gz" \
    "$work/c" bin

  # runc: a bare binary.
  runc_bin=$(find "$work/x" -path '*/sbin/runc' -o -path '*/bin/runc' | head -n1)
  [ -n "$runc_bin" ] || die "no runc in Debian's runc package"
  install -D -m 0755 "$runc_bin" "$gh/opencontainers/runc/releases/download/v$V_RUNC/runc.$ARCH"

  # CNI plugins: upstream entries are ./bridge, ./loopback, ... plus ./ itself.
  mkdir -p "$work/cni"
  for f in "$work"/x/usr/lib/cni/*; do install -m 0755 "$f" "$work/cni/"; done
  for f in bridge loopback host-local; do
    [ -f "$work/cni/$f" ] || die "Debian's containernetworking-plugins has no $f"
  done
  tgz "$gh/containernetworking/plugins/releases/download/v$V_CNI/cni-plugins-linux-$ARCH-v$V_CNI.tgz" \
    "$work/cni" .

  # Kubernetes node tarball (stand-ins), layout as upstream's.
  mkdir -p "$work/k/kubernetes/node/bin"
  for b in kubelet kube-proxy kubectl; do pystandin "$work/k/kubernetes/node/bin/$b" "$V_K8S"; done
  standin "$work/k/kubernetes/node/bin/kubeadm" kubeadm cli "$V_K8S"
  tgz "$out/dl.k8s.io/v$V_K8S/kubernetes-node-linux-$ARCH.tar.gz" "$work/k" kubernetes

  # Kubernetes server tarball (stand-ins): upstream's kubernetes/server/bin holds every server
  # and node binary (and more: kubeadm here stands for those imagegen must leave out).
  mkdir -p "$work/ks/kubernetes/server/bin"
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
    pystandin "$work/ks/kubernetes/server/bin/$b" "$V_K8S_SERVER"
  done
  standin "$work/ks/kubernetes/server/bin/kubeadm" kubeadm cli "$V_K8S_SERVER"
  tgz "$out/dl.k8s.io/v$V_K8S_SERVER/kubernetes-server-linux-$ARCH.tar.gz" "$work/ks" kubernetes

  # crictl (stand-in): upstream's tarball holds the single entry "crictl".
  mkdir -p "$work/cri"
  standin "$work/cri/crictl" crictl cli "$V_CRICTL"
  tgz "$gh/kubernetes-sigs/cri-tools/releases/download/v$V_CRICTL/crictl-v$V_CRICTL-linux-$ARCH.tar.gz" "$work/cri" crictl

  # etcd: Debian's real etcd and etcdctl (and etcdutl when the package has it; 3.4 does not)
  # in the release layout etcd-vV-linux-ARCH/{etcd,etcdctl,etcdutl,README*.md}. The READMEs
  # are there because upstream's are: the node must get only the files named etcd*.
  e=etcd-v$V_ETCD-linux-$ARCH
  mkdir -p "$work/etcd/$e"
  for f in etcd etcdctl etcdutl; do
    [ -f "$work/x/usr/bin/$f" ] && install -m 0755 "$work/x/usr/bin/$f" "$work/etcd/$e/$f"
  done
  for f in etcd etcdctl; do
    [ -f "$work/etcd/$e/$f" ] || die "Debian's etcd-server/etcd-client packages have no /usr/bin/$f"
  done
  # etcdutl (offline maintenance: snapshot restore, defrag) came with etcd 3.5; Debian 12 has
  # 3.4, so the tarball gets a shell stand-in under that name, as upstream's has the binary.
  [ -f "$work/etcd/$e/etcdutl" ] || standin "$work/etcd/$e/etcdutl" etcdutl cli "$V_ETCD"
  etcd_deb=$(echo "$versions" | awk '$1=="etcd-server"{print $2}')
  for f in README.md README-etcdctl.md; do
    printf '# %s\n\nimagegen VM test mirror: Debian %s etcd binaries in the layout of etcd v%s.\n' \
      "$f" "$etcd_deb" "$V_ETCD" > "$work/etcd/$e/$f"
  done
  tgz "$gh/etcd-io/etcd/releases/download/v$V_ETCD/$e.tar.gz" "$work/etcd" "$e"

  {
    echo "Stand-ins (not the real programs), built by tests/vm/build-mirror.sh:"
    echo "  kubernetes-server-linux-$ARCH.tar.gz (v$V_K8S_SERVER): kube-apiserver, kube-controller-manager,"
    echo "    kube-scheduler, kubectl, kubelet, kube-proxy = tests/vm/standin/kube_standin/ (Python 3:"
    echo "    real flag parsing, file checks and TLS; no scheduling, no pods); kubeadm (shell)"
    echo "  kubernetes-node-linux-$ARCH.tar.gz (v$V_K8S): kubelet, kube-proxy, kubectl (the same Python"
    echo "    stand-in), kubeadm (shell)"
    echo "  crictl-v$V_CRICTL-linux-$ARCH.tar.gz: crictl (shell)"
    grep -q STAND-IN "$work/etcd/$e/etcdutl" && echo "  $e.tar.gz: etcdutl (shell; Debian's etcd 3.4 has none)"
    echo "Real binaries from Debian 12 packages (older than the pinned versions):"
    printf '  %s\n' "${versions//$'\n'/$'\n'  }"
    echo "  ($e.tar.gz holds Debian's etcd $etcd_deb: etcd, etcdctl)"
  } > "$out/STAND-INS.txt"
  mv "$out" "$tree"
  find "$cache" -maxdepth 1 -name "mirror-$ARCH-*" ! -name "${tree##*/}" -exec rm -rf {} +
  rm -rf "$work"
  trap - EXIT
fi

mkdir -p "$DIR"
cp -a "$tree/." "$DIR/"
sed 's/^/build-mirror: /' "$DIR/STAND-INS.txt" >&2

python3 - "$profile" "$DIR" "$ARCH" "$V_CONTAINERD" "$V_RUNC" "$V_CRICTL" "$V_CNI" "$V_K8S" "$V_ETCD" "$V_K8S_SERVER" <<'PY'
import hashlib, re, sys
profile, d, arch, containerd, runc, crictl, cni, k8s, etcd, k8s_server = sys.argv[1:]
gh = d + "/github.com/"
files = {
    "containerd": ("sha256", f"{gh}containerd/containerd/releases/download/v{containerd}/containerd-{containerd}-linux-{arch}.tar.gz"),
    "runc": ("sha256", f"{gh}opencontainers/runc/releases/download/v{runc}/runc.{arch}"),
    "crictl": ("sha256", f"{gh}kubernetes-sigs/cri-tools/releases/download/v{crictl}/crictl-v{crictl}-linux-{arch}.tar.gz"),
    "cni-plugins": ("sha256", f"{gh}containernetworking/plugins/releases/download/v{cni}/cni-plugins-linux-{arch}-v{cni}.tgz"),
    "kubernetes-node": ("sha512", f"{d}/dl.k8s.io/v{k8s}/kubernetes-node-linux-{arch}.tar.gz"),
    "etcd": ("sha256", f"{gh}etcd-io/etcd/releases/download/v{etcd}/etcd-v{etcd}-linux-{arch}.tar.gz"),
    "kubernetes-server": ("sha512", f"{d}/dl.k8s.io/v{k8s_server}/kubernetes-server-linux-{arch}.tar.gz"),
}
# Optional in the built-in profile until issue #10 pins it; required in profile-cluster.yaml.
OPTIONAL = {"kubernetes-server"}
def digest(algo, path):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"
def pin(source, required):
    """The profile text with this mirror's digests for arch."""
    lines, comp, done = [], None, set()
    for line in source.splitlines():
        m = re.match(r"^  ([a-z0-9-]+):", line)
        if m:
            comp = m.group(1)
        if re.match(r"^[a-z]", line):
            comp = None
        m = re.match(rf"^(\s+){re.escape(arch)}: (sha256|sha512):[0-9a-f]+(.*)$", line)
        if m and comp in files:
            algo, path = files[comp]
            line = f"{m.group(1)}{arch}: {digest(algo, path)}{m.group(3)}"
            done.add(comp)
        lines.append(line)
    missing = set(required) - done
    if missing:
        sys.exit(f"build-mirror: no {arch} digest line for {sorted(missing)} in {profile}")
    return "\n".join(lines) + "\n"
source = open(profile, encoding="utf-8").read()
head = "# Test profile written by tests/vm/build-mirror.sh: digests of the local test mirror.\n"
text = head + pin(source, set(files) - OPTIONAL)
def variant(key, value):
    out, n = re.subn(rf"^(  {key}:\s*)\S+", lambda m: m.group(1) + value, text, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"build-mirror: no cluster.{key} in {profile}")
    return out
open(d + "/profile.yaml", "w").write(text)
open(d + "/profile-cilium.yaml", "w").write(variant("cni", "cilium"))
open(d + "/profile-static.yaml", "w").write(variant("addressing", "static"))

# profile-cluster.yaml: the cluster case of issue #10 (gateway, control0, worker0 booted
# together). What notes/cluster-design.md adds to the profile is added here when the built-in
# profile does not have it yet, so the test profile already has the shape imagegen will read.
cluster = source
added = []
if not re.search(r"^  api_vip:", cluster, re.M):
    cluster, n = re.subn(r"^(  cni:.*\n)", r"\1  api_vip: 192.168.1.21         # added by build-mirror.sh (cluster-design.md)\n"
                         r"  host_domain: kubenet           # added by build-mirror.sh (cluster-design.md)\n",
                         cluster, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"build-mirror: no cluster.cni line in {profile} to add api_vip after")
    added.append("cluster.api_vip, cluster.host_domain")
if not re.search(r"^  kubernetes-server:", cluster, re.M):
    # Published sha512s (../shared/checksums.md, CHANGELOG-1.31.md); this arch's is replaced below.
    block = (f"  kubernetes-server:             # added by build-mirror.sh (cluster-design.md)\n"
             f"    version: {k8s_server}\n"
             f"    url: https://dl.k8s.io/v{{version}}/kubernetes-server-linux-{{arch}}.tar.gz\n"
             f"    digests:\n"
             f"      arm64: sha512:3978a6cd8bed01efbaf6955a741122e3d39173e2a380396214672c96c7dbf5da8e275c4cea716a1789d3034ed9649417ad43d3d73c2dcaae5df4c91ff0f4bdaf\n"
             f"      amd64: sha512:4d73777e4f139c67c4551c1ca30aefa4782b2d9f3e5c48b8b010ffc329065e90ae9df3fd515cc13534c586f6edd58c3324943ce9ac48e60bb4fa49113a2e09d4\n")
    cluster, n = re.subn(r"^(  etcd:)", lambda m: block + m.group(1), cluster, count=1, flags=re.M)
    if n != 1:
        sys.exit(f"build-mirror: no etcd component in {profile} to add kubernetes-server before")
    added.append("components.kubernetes-server")
keep = ("gateway", "control0", "worker0")
node_lines = re.findall(r"^  - \{ name: ([a-z0-9-]+),.*$", cluster, re.M)
if not set(keep) <= set(node_lines):
    sys.exit(f"build-mirror: {profile} lacks one of the nodes {keep}")
cluster = "\n".join(l for l in cluster.split("\n")
                    if not (m := re.match(r"^  - \{ name: ([a-z0-9-]+),", l)) or m.group(1) in keep)
note = "# The cluster test's profile: gateway, control0 and worker0 only.\n"
if added:
    note += "# Added here because the built-in profile lacks them: " + "; ".join(added) + ".\n"
open(d + "/profile-cluster.yaml", "w").write(head + note + pin(cluster, set(files)))
PY
log "mirror for $ARCH in $DIR (profiles: profile.yaml, profile-cilium.yaml, profile-static.yaml, profile-cluster.yaml)"
