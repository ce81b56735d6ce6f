"""What every stand-in shares: its name and version, the banner that says it is a stand-in,
logging, the fatal error of the real binaries (exit status 1), and reading files."""

import os
import sys

VERSION = "@VERSION@"
PROG = os.path.basename(sys.argv[0])
BANNER = "STAND-IN v%s (imagegen VM test; not the real %s)" % (VERSION, PROG)
RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_KINDS = {
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
}
PLURALS = {plural: (kind, namespaced) for kind, (plural, namespaced) in RBAC_KINDS.items()}


def log(msg):
    print("%s %s: %s" % (PROG, BANNER, msg), file=sys.stderr, flush=True)


class Fatal(Exception):
    """An error the real binary would exit on (status 1)."""


def die(msg):
    log("error: " + msg)
    print("Error: " + msg, file=sys.stderr, flush=True)
    sys.exit(1)


def yaml_module():
    try:
        import yaml
    except ImportError:
        die("python3-yaml is missing (the stand-ins read YAML configs and kubeconfigs)")
    return yaml



def read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Fatal("%s %s: %s" % (what, path, e.strerror or e)) from None
