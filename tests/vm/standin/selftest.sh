#!/usr/bin/env bash
# Runs selftest.py (the Kubernetes stand-ins against Debian's real etcd, on the host) in fresh
# network, mount and pid namespaces: only loopback, `kubernetes` -> 127.0.0.1 by a bind-mounted
# hosts file, and every process it starts dies with it. Needs root, openssl, curl, python3-yaml.
#
#   selftest.sh MIRROR_DIR WORK_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mirror=${1:?usage: selftest.sh MIRROR_DIR WORK_DIR}
work=${2:?usage: selftest.sh MIRROR_DIR WORK_DIR}
[ "$(id -u)" = 0 ] || { echo "selftest: must run as root (namespaces)" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
exec unshare --net --mount --pid --fork --mount-proc --propagation private \
  python3 "$here/selftest.py" "$(realpath "$mirror")" "$(realpath "$work")"
