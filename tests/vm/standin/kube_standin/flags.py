"""The command line and the files it names, checked as the real binaries check them.

The real binaries use spf13/pflag: `--name=value`, `--name value`, boolean `--name` or
`--name=true|false`, `-v` as shorthand of `--v`; an unknown flag, a positional argument or a
bad value is an error (exit status 1). Each program's flag set lists its real flags (the
guide's and the common ones)."""

import ipaddress
import os
import re
import ssl
import sys

from .base import BANNER, PROG, VERSION, Fatal, read_bytes, yaml_module

BOOL, INT, STR, LIST = "bool", "int", "str", "list"  # LIST: repeatable (stringArray)
FILE, CERT, KEY, PUBKEY, KUBECONFIG, OUT = "file", "cert", "key", "pubkey", "kubeconfig", "out"
FILE_KINDS = (FILE, CERT, KEY, PUBKEY, KUBECONFIG)

COMMON = {"v": INT, "vmodule": STR, "log-flush-frequency": STR, "logging-format": STR,
          "feature-gates": STR, "help": BOOL, "version": STR}

APISERVER = {
    "advertise-address": STR, "allow-privileged": BOOL, "apiserver-count": INT,
    "audit-log-maxage": INT, "audit-log-maxbackup": INT, "audit-log-maxsize": INT,
    "audit-log-path": OUT, "audit-policy-file": FILE, "authorization-mode": STR,
    "bind-address": STR, "secure-port": INT, "client-ca-file": CERT,
    "enable-admission-plugins": STR, "disable-admission-plugins": STR,
    "etcd-cafile": CERT, "etcd-certfile": CERT, "etcd-keyfile": KEY, "etcd-servers": STR,
    "etcd-prefix": STR, "event-ttl": STR, "encryption-provider-config": FILE,
    "kubelet-certificate-authority": CERT, "kubelet-client-certificate": CERT,
    "kubelet-client-key": KEY, "kubelet-preferred-address-types": STR, "kubelet-timeout": STR,
    "runtime-config": STR, "service-account-key-file": LIST,
    "service-account-signing-key-file": KEY, "service-account-issuer": LIST,
    "service-account-extend-token-expiration": BOOL, "api-audiences": STR,
    "service-cluster-ip-range": STR, "service-node-port-range": STR,
    "tls-cert-file": CERT, "tls-private-key-file": KEY, "tls-cipher-suites": STR,
    "tls-min-version": STR, "anonymous-auth": BOOL, "enable-bootstrap-token-auth": BOOL,
    "proxy-client-cert-file": CERT, "proxy-client-key-file": KEY,
    "requestheader-client-ca-file": CERT, "requestheader-allowed-names": STR,
    "requestheader-extra-headers-prefix": STR, "requestheader-group-headers": STR,
    "requestheader-username-headers": STR, "enable-aggregator-routing": BOOL,
    "endpoint-reconciler-type": STR, "profiling": BOOL, "storage-backend": STR,
    "storage-media-type": STR, "watch-cache": BOOL, "max-requests-inflight": INT,
    "max-mutating-requests-inflight": INT, "request-timeout": STR, "external-hostname": STR,
    "default-not-ready-toleration-seconds": INT, "default-unreachable-toleration-seconds": INT,
    "cors-allowed-origins": STR, "enable-priority-and-fairness": BOOL, "token-auth-file": FILE,
}
CONTROLLER_MANAGER = {
    "bind-address": STR, "secure-port": INT, "cluster-cidr": STR, "cluster-name": STR,
    "cluster-signing-cert-file": CERT, "cluster-signing-key-file": KEY,
    "kubeconfig": KUBECONFIG, "authentication-kubeconfig": KUBECONFIG,
    "authorization-kubeconfig": KUBECONFIG, "leader-elect": BOOL, "root-ca-file": CERT,
    "service-account-private-key-file": KEY, "service-cluster-ip-range": STR,
    "use-service-account-credentials": BOOL, "allocate-node-cidrs": BOOL,
    "node-cidr-mask-size": INT, "node-cidr-mask-size-ipv4": INT, "controllers": STR,
    "client-ca-file": CERT, "requestheader-client-ca-file": CERT, "profiling": BOOL,
    "configure-cloud-routes": BOOL, "cloud-provider": STR, "terminated-pod-gc-threshold": INT,
    "node-monitor-grace-period": STR, "master": STR, "concurrent-deployment-syncs": INT,
}
SCHEDULER = {
    "config": FILE, "kubeconfig": KUBECONFIG, "authentication-kubeconfig": KUBECONFIG,
    "authorization-kubeconfig": KUBECONFIG, "leader-elect": BOOL, "bind-address": STR,
    "secure-port": INT, "master": STR, "profiling": BOOL, "write-config-to": OUT,
}
KUBELET = {
    "config": FILE, "kubeconfig": KUBECONFIG, "bootstrap-kubeconfig": STR,
    "container-runtime-endpoint": STR, "image-service-endpoint": STR, "register-node": BOOL,
    "register-with-taints": STR, "node-ip": STR, "node-labels": STR, "hostname-override": STR,
    "cert-dir": STR, "root-dir": STR, "pod-infra-container-image": STR, "fail-swap-on": BOOL,
    "cgroup-driver": STR, "max-pods": INT, "provider-id": STR, "runtime-request-timeout": STR,
    "address": STR, "port": INT, "healthz-port": INT, "resolv-conf": FILE, "cluster-dns": STR,
    "cluster-domain": STR, "anonymous-auth": BOOL, "client-ca-file": CERT,
    "authorization-mode": STR, "authentication-token-webhook": BOOL, "tls-cert-file": CERT,
    "tls-private-key-file": KEY, "cloud-provider": STR,
}
PROXY = {
    "config": FILE, "kubeconfig": KUBECONFIG, "hostname-override": STR, "cluster-cidr": STR,
    "proxy-mode": STR, "master": STR, "bind-address": STR, "healthz-bind-address": STR,
    "metrics-bind-address": STR, "cleanup": BOOL, "write-config-to": OUT,
}
KUBECTL = {
    "kubeconfig": STR, "server": STR, "context": STR, "user": STR, "cluster": STR,
    "certificate-authority": FILE, "client-certificate": FILE, "client-key": FILE,
    "insecure-skip-tls-verify": BOOL, "request-timeout": STR, "namespace": STR,
    "raw": STR, "filename": LIST, "output": STR, "client": BOOL, "server-side": BOOL,
    "force-conflicts": BOOL, "field-manager": STR, "dry-run": STR, "validate": STR,
}
SHORT = {"v": "v", "h": "help", "s": "server", "n": "namespace", "f": "filename", "o": "output"}


def parse_flags(argv, spec, positional_ok=False):
    spec = dict(COMMON, **spec)
    values, args = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            args.extend(argv[i:])
            break
        if a.startswith("--"):
            name, eq, value = a[2:].partition("=")
        elif a.startswith("-") and len(a) > 1:
            name, eq, value = a[1:].partition("=")
            if name not in SHORT:
                raise Fatal("unknown shorthand flag: %r in %s" % (name[:1], a))
            name = SHORT[name]
        else:
            if not positional_ok:
                raise Fatal("%r does not take any arguments, got %r" % (PROG, argv[i - 1:]))
            args.append(a)
            continue
        kind = spec.get(name)
        if kind is None:
            raise Fatal("unknown flag: --%s" % name)
        if kind == BOOL:
            if eq and value not in ("true", "false", "1", "0", "True", "False"):
                raise Fatal('invalid argument "%s" for "--%s" flag: strconv.ParseBool: parsing '
                            '"%s": invalid syntax' % (value, name, value))
            values[name] = (value in ("true", "1", "True")) if eq else True
            continue
        if not eq:
            if i >= len(argv) or (name != "version" and argv[i].startswith("--")):
                if name == "version":  # --version alone prints the version, like the real ones
                    values[name] = "true"
                    continue
                raise Fatal("flag needs an argument: --%s" % name)
            value = argv[i]
            i += 1
        if kind == INT:
            try:
                int(value)
            except ValueError:
                raise Fatal('invalid argument "%s" for "--%s" flag: strconv.ParseInt: parsing '
                            '"%s": invalid syntax' % (value, name, value)) from None
        if kind == LIST:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    return values, args, spec


def pem_blocks(data, label_re):
    return re.findall(rb"-----BEGIN (%s)-----\r?\n.+?-----END \1-----" % label_re, data, re.S)


def check_pem(path, kind, what):
    data = read_bytes(path, what)
    if kind == CERT:
        if not pem_blocks(data, rb"CERTIFICATE"):
            raise Fatal("%s %s: no PEM certificate in it" % (what, path))
        try:
            ssl.create_default_context(cadata=data.decode("ascii", "replace"))
        except ssl.SSLError as e:
            raise Fatal("%s %s: not a valid certificate: %s" % (what, path, e)) from None
    elif kind == KEY:
        if not pem_blocks(data, rb"(?:RSA |EC )?PRIVATE KEY"):
            raise Fatal("%s %s: no PEM private key in it" % (what, path))
    elif kind == PUBKEY:
        if not pem_blocks(data, rb"(?:RSA |EC )?(?:PRIVATE|PUBLIC) KEY|CERTIFICATE"):
            raise Fatal("%s %s: no PEM key or certificate in it" % (what, path))


def check_pair(cert, key, what):
    try:
        ssl.create_default_context().load_cert_chain(cert, key)
    except ssl.SSLError as e:
        raise Fatal("%s: certificate %s and key %s do not match or do not load: %s"
                    % (what, cert, key, e)) from None


def check_files(values, spec):
    """Every file a flag names exists, is readable and has the content its flag expects."""
    checked = []
    for name, value in sorted(values.items()):
        kind = spec.get(name)
        paths = value if isinstance(value, list) else [value]
        if kind == LIST and name == "service-account-key-file":
            kind = PUBKEY
        if kind not in FILE_KINDS and kind != OUT:
            continue
        for path in paths:
            if not path:
                continue
            if kind == OUT:
                parent = os.path.dirname(path) or "."
                if not os.path.isdir(parent):
                    raise Fatal("--%s=%s: directory %s does not exist" % (name, path, parent))
                continue
            if kind == KUBECONFIG:
                from .client import load_kubeconfig  # client imports this module
                load_kubeconfig(path)
            elif kind in (CERT, KEY, PUBKEY):
                check_pem(path, kind, "--" + name)
            else:
                read_bytes(path, "--" + name)
            checked.append(path)
    return checked


def check_cidr(value, what):
    try:
        for part in value.split(","):
            ipaddress.ip_network(part.strip(), strict=True)
    except ValueError as e:
        raise Fatal("invalid %s %r: %s" % (what, value, e)) from None


def check_ip(value, what):
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise Fatal("invalid %s %r: not an IP address" % (what, value)) from None


def load_yaml_config(path, api_version, kind, known, what):
    yaml = yaml_module()
    try:
        doc = yaml.safe_load(read_bytes(path, what))
    except yaml.YAMLError as e:
        raise Fatal("%s %s: not YAML: %s" % (what, path, e)) from None
    if not isinstance(doc, dict):
        raise Fatal("%s %s: not a YAML mapping" % (what, path))
    if doc.get("apiVersion") != api_version or doc.get("kind") != kind:
        raise Fatal('%s %s: no kind "%s" is registered for version "%s" (want %s %s)'
                    % (what, path, doc.get("kind"), doc.get("apiVersion"), api_version, kind))
    unknown = sorted(set(doc) - set(known) - {"apiVersion", "kind"})
    if unknown:
        raise Fatal('%s %s: strict decoding error: unknown field%s %s'
                    % (what, path, "s" if len(unknown) > 1 else "",
                       ", ".join('"%s"' % u for u in unknown)))
    return doc


def version_line():
    return "Kubernetes v%s (%s)" % (VERSION, BANNER)


def start(spec, argv, positional_ok=False):
    """The flags of a program's command line; --help and --version answer and exit."""
    values, args, full = parse_flags(argv, spec, positional_ok)
    if values.get("help"):
        print("%s %s\nFlags:" % (PROG, BANNER))
        for name in sorted(full):
            print("      --%s %s" % (name, full[name]))
        sys.exit(0)
    if values.get("version"):
        print(version_line())
        sys.exit(0)
    return values, args
