#!/usr/bin/python3
"""imagegen VM test STAND-IN for the Kubernetes binaries: NOT the real programs.

tests/vm/build-mirror.sh installs this one file under the names kube-apiserver,
kube-controller-manager, kube-scheduler, kubectl, kubelet and kube-proxy (it dispatches on its
own name) because Kubernetes is not packaged for Debian 12 and nothing outside Debian and the
language registries can be downloaded where the tests run. Every line it logs and its
--version say that it is a stand-in.

What it does for real, so that the cluster test proves the configuration imagegen writes:
- parses the command line like the real binary's flag set (pflag syntax): an unknown flag, a
  positional argument or a bad value is an error and exit status 1, so a typo in a unit fails;
- checks that every file a flag or config file names exists and is readable, that
  certificates and keys parse and that each certificate matches its key;
- speaks real TLS: kube-apiserver serves HTTPS with --tls-cert-file/--tls-private-key-file,
  asks for (does not require) a client certificate verified against --client-ca-file and logs
  each request's client subject; /healthz, /livez and /readyz answer `ok` only while etcd
  answers its /health over TLS with the --etcd-* credentials; RBAC objects that kubectl
  applies are stored in etcd (its JSON gateway) and read back from there;
- the other daemons read their kubeconfig (embedded or file credentials), connect to its
  server verifying the server's certificate against the kubeconfig's CA under the server's
  host name, GET /healthz periodically, log the outcome and keep running when the API is down.
What it does NOT do: schedule, run pods, register nodes, proxy services, or anything else.
"""

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

VERSION = "@VERSION@"
PROG = os.path.basename(sys.argv[0])
BANNER = "STAND-IN v%s (imagegen VM test; not the real %s)" % (VERSION, PROG)
APISERVER_LOG = os.environ.get("KUBE_APISERVER_STANDIN_LOG", "/var/log/kube-apiserver-standin.log")
POLL_SECONDS = float(os.environ.get("KUBE_STANDIN_POLL_SECONDS", "10"))
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


# ---------------------------------------------------------------------------------------------
# Flags: the real binaries use spf13/pflag. `--name=value`, `--name value`, boolean `--name`
# or `--name=true|false`, `-v` as shorthand of `--v`; anything unknown is an error.

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


def read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise Fatal("%s %s: %s" % (what, path, e.strerror or e)) from None


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


# ---------------------------------------------------------------------------------------------
# kubeconfig and the TLS client.

class Kubeconfig:
    def __init__(self, path, server, ca, cert, key, user):
        self.path, self.server, self.ca, self.cert, self.key, self.user = \
            path, server, ca, cert, key, user

    def context(self):
        ctx = ssl.create_default_context(cadata=self.ca.decode("ascii", "replace"))
        if self.cert:
            with tempfile.TemporaryDirectory(prefix="kube-standin-") as d:
                c, k = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
                for p, data in ((c, self.cert), (k, self.key)):
                    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                try:
                    ctx.load_cert_chain(c, k)
                except ssl.SSLError as e:
                    raise Fatal("kubeconfig %s: client certificate and key do not match: %s"
                                % (self.path, e)) from None
        return ctx


def _named(items, name, what, path):
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(what.rstrip("s")) or {}
    raise Fatal("kubeconfig %s: no %s named %r" % (path, what.rstrip("s"), name))


def _data(entry, key, path, base):
    if entry.get(key + "-data"):
        try:
            return base64.b64decode(entry[key + "-data"], validate=False)
        except ValueError as e:
            raise Fatal("kubeconfig %s: %s-data is not base64: %s" % (path, key, e)) from None
    if entry.get(key):
        f = entry[key]
        if not os.path.isabs(f):
            f = os.path.join(base, f)
        return read_bytes(f, "kubeconfig %s: %s" % (path, key))
    return None


def load_kubeconfig(path, context=None):
    yaml = yaml_module()
    try:
        doc = yaml.safe_load(read_bytes(path, "kubeconfig"))
    except yaml.YAMLError as e:
        raise Fatal("kubeconfig %s: not YAML: %s" % (path, e)) from None
    if not isinstance(doc, dict) or doc.get("kind") != "Config":
        raise Fatal("kubeconfig %s: not a kubeconfig (kind: Config)" % path)
    name = context or doc.get("current-context")
    if not name:
        raise Fatal("kubeconfig %s: current-context is not set" % path)
    ctx = _named(doc.get("contexts"), name, "contexts", path)
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "clusters", path)
    user = _named(doc.get("users"), ctx.get("user"), "users", path)
    server = cluster.get("server")
    if not server or not server.startswith("https://"):
        raise Fatal("kubeconfig %s: cluster %r has no https server" % (path, ctx.get("cluster")))
    base = os.path.dirname(os.path.abspath(path))
    ca = _data(cluster, "certificate-authority", path, base)
    if ca is None:
        raise Fatal("kubeconfig %s: cluster %r has no certificate-authority(-data)"
                    % (path, ctx.get("cluster")))
    cert = _data(user, "client-certificate", path, base)
    key = _data(user, "client-key", path, base)
    if bool(cert) != bool(key):
        raise Fatal("kubeconfig %s: user %r has a client certificate without key or the "
                    "other way round" % (path, ctx.get("user")))
    kc = Kubeconfig(path, server, ca, cert, key, ctx.get("user"))
    kc.context()  # fails now on a bad CA or a cert/key mismatch
    return kc


def https(url, ctx, method="GET", path="/", body=None, headers=None, timeout=10):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def subject_of(cert_pem):
    """CN and O of a PEM certificate, read by the ssl module itself."""
    with tempfile.NamedTemporaryFile(prefix="kube-standin-") as f:
        f.write(cert_pem)
        f.flush()
        try:
            # The ssl module's own certificate decoder (what getpeercert() returns), private
            # but present in every CPython 3; "?" if it ever goes away.
            decoded = ssl._ssl._test_decode_cert(f.name)  # noqa: SLF001
        except (AttributeError, ssl.SSLError, ValueError):
            return "?"
    return format_subject(decoded.get("subject", ()))


def format_subject(subject):
    cn = [v for rdn in subject for k, v in rdn if k == "commonName"]
    orgs = [v for rdn in subject for k, v in rdn if k == "organizationName"]
    return "CN=%s O=%s" % (",".join(cn) or "-", ",".join(orgs) or "-")


def poll_forever(kc, what):
    """What every client daemon does here: talk to its API server over verified TLS, forever."""
    ctx = kc.context()
    ident = subject_of(kc.cert) if kc.cert else "anonymous"
    log("%s: polling %s/healthz every %gs as %s (server verified against the kubeconfig's CA)"
        % (what, kc.server, POLL_SECONDS, ident))
    while True:
        try:
            status, body = https(kc.server, ctx, path="/healthz")
            log("GET %s/healthz as %s -> %d %s"
                % (kc.server, ident, status, body.decode("utf-8", "replace").strip()[:200]))
        except (OSError, ssl.SSLError, http.client.HTTPException) as e:
            log("GET %s/healthz as %s failed: %s (a real %s keeps retrying too)"
                % (kc.server, ident, e, PROG))
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------------------------
# The programs.

def version_line():
    return "Kubernetes v%s (%s)" % (VERSION, BANNER)


def start(spec, argv, positional_ok=False):
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


def kube_apiserver(argv):
    v, _ = start(APISERVER, argv)
    for required in ("etcd-servers", "tls-cert-file", "tls-private-key-file", "client-ca-file"):
        if not v.get(required):
            raise Fatal("--%s must be specified (this stand-in serves TLS only)" % required)
    files = check_files(v, APISERVER)
    check_pair(v["tls-cert-file"], v["tls-private-key-file"], "--tls-cert-file/--tls-private-key-file")
    if v.get("etcd-certfile") or v.get("etcd-keyfile"):
        check_pair(v.get("etcd-certfile", ""), v.get("etcd-keyfile", ""), "--etcd-certfile/--etcd-keyfile")
    if v.get("kubelet-client-certificate") or v.get("kubelet-client-key"):
        check_pair(v.get("kubelet-client-certificate", ""), v.get("kubelet-client-key", ""),
                   "--kubelet-client-certificate/--kubelet-client-key")
    if v.get("service-account-signing-key-file") and not v.get("service-account-issuer"):
        raise Fatal("service-account-issuer is a required flag when "
                    "--service-account-signing-key-file is set")
    for name in ("advertise-address", "bind-address"):
        if v.get(name):
            check_ip(v[name], "--" + name)
    if v.get("service-cluster-ip-range"):
        check_cidr(v["service-cluster-ip-range"], "--service-cluster-ip-range")
    if v.get("encryption-provider-config"):
        check_encryption_config(v["encryption-provider-config"])
    servers = [s.strip() for s in v["etcd-servers"].split(",") if s.strip()]
    for s in servers:
        if not s.startswith(("https://", "http://")):
            raise Fatal("--etcd-servers: %r is not a URL" % s)
    api = Api(v, servers)
    port = int(v.get("secure-port", 6443))
    bind = v.get("bind-address", "0.0.0.0")
    log("flags ok; %d files checked (%s)" % (len(files), " ".join(files)))
    api.serve(bind, port)


def check_encryption_config(path):
    yaml = yaml_module()
    doc = yaml.safe_load(read_bytes(path, "--encryption-provider-config"))
    if not isinstance(doc, dict) or doc.get("kind") != "EncryptionConfiguration" or \
            doc.get("apiVersion") not in ("apiserver.config.k8s.io/v1", "v1"):
        raise Fatal("--encryption-provider-config %s: not an EncryptionConfiguration" % path)
    for res in doc.get("resources") or []:
        for prov in res.get("providers") or []:
            for name in ("aescbc", "aesgcm", "secretbox"):
                for key in (prov.get(name) or {}).get("keys") or []:
                    try:
                        raw = base64.b64decode(key.get("secret", ""), validate=True)
                    except ValueError:
                        raise Fatal("--encryption-provider-config %s: key %r is not base64"
                                    % (path, key.get("name"))) from None
                    if len(raw) not in (16, 24, 32):
                        raise Fatal("--encryption-provider-config %s: key %r has %d bytes, "
                                    "want 16, 24 or 32" % (path, key.get("name"), len(raw)))


def kube_controller_manager(argv):
    v, _ = start(CONTROLLER_MANAGER, argv)
    if not v.get("kubeconfig") and not v.get("master"):
        raise Fatal("invalid configuration: no configuration has been provided (--kubeconfig)")
    files = check_files(v, CONTROLLER_MANAGER)
    if v.get("cluster-signing-cert-file") or v.get("cluster-signing-key-file"):
        check_pair(v.get("cluster-signing-cert-file", ""), v.get("cluster-signing-key-file", ""),
                   "--cluster-signing-cert-file/--cluster-signing-key-file")
    for name in ("cluster-cidr", "service-cluster-ip-range"):
        if v.get(name):
            check_cidr(v[name], "--" + name)
    if v.get("bind-address"):
        check_ip(v["bind-address"], "--bind-address")
    log("flags ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(v["kubeconfig"]), "kube-controller-manager")


SCHEDULER_FIELDS = ["clientConnection", "leaderElection", "parallelism", "percentageOfNodesToScore",
                    "podInitialBackoffSeconds", "podMaxBackoffSeconds", "profiles", "extenders",
                    "enableProfiling", "enableContentionProfiling", "delayCacheUntilActive"]


def kube_scheduler(argv):
    v, _ = start(SCHEDULER, argv)
    files = check_files(v, SCHEDULER)
    kubeconfig = v.get("kubeconfig")
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubescheduler.config.k8s.io/v1",
                               "KubeSchedulerConfiguration", SCHEDULER_FIELDS, "--config")
        kubeconfig = (cfg.get("clientConnection") or {}).get("kubeconfig") or kubeconfig
        if kubeconfig:
            load_kubeconfig(kubeconfig)
            files.append(kubeconfig)
    if not kubeconfig:
        raise Fatal("invalid configuration: no configuration has been provided "
                    "(clientConnection.kubeconfig in --config, or --kubeconfig)")
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(kubeconfig), "kube-scheduler")


KUBELET_FIELDS = """enableServer staticPodPath podLogsDir syncFrequency fileCheckFrequency
httpCheckFrequency staticPodURL staticPodURLHeader address port readOnlyPort tlsCertFile
tlsPrivateKeyFile tlsCipherSuites tlsMinVersion rotateCertificates serverTLSBootstrap
authentication authorization registryPullQPS registryBurst eventRecordQPS eventBurst
enableDebuggingHandlers enableContentionProfiling healthzPort healthzBindAddress oomScoreAdj
clusterDomain clusterDNS streamingConnectionIdleTimeout nodeStatusUpdateFrequency
nodeStatusReportFrequency nodeLeaseDurationSeconds imageMinimumGCAge imageMaximumGCAge
imageGCHighThresholdPercent imageGCLowThresholdPercent volumeStatsAggPeriod kubeletCgroups
systemCgroups cgroupRoot cgroupsPerQOS cgroupDriver cpuManagerPolicy cpuManagerPolicyOptions
cpuManagerReconcilePeriod memoryManagerPolicy topologyManagerPolicy topologyManagerScope
topologyManagerPolicyOptions qosReserved runtimeRequestTimeout hairpinMode maxPods podCIDR
podPidsLimit resolvConf runOnce cpuCFSQuota cpuCFSQuotaPeriod nodeStatusMaxImages maxOpenFiles
contentType kubeAPIQPS kubeAPIBurst serializeImagePulls maxParallelImagePulls evictionHard
evictionSoft evictionSoftGracePeriod evictionPressureTransitionPeriod evictionMaxPodGracePeriod
evictionMinimumReclaim podsPerCore enableControllerAttachDetach protectKernelDefaults
makeIPTablesUtilChains iptablesMasqueradeBit iptablesDropBit featureGates failSwapOn memorySwap
containerLogMaxSize containerLogMaxFiles containerLogMaxWorkers containerLogMonitorInterval
configMapAndSecretChangeDetectionStrategy systemReserved kubeReserved reservedSystemCPUs
showHiddenMetricsForVersion systemReservedCgroup kubeReservedCgroup enforceNodeAllocatable
allowedUnsafeSysctls volumePluginDir providerID kernelMemcgNotification logging
enableSystemLogHandler enableSystemLogQuery shutdownGracePeriod shutdownGracePeriodCriticalPods
shutdownGracePeriodByPodPriority reservedMemory enableProfilingHandler enableDebugFlagsHandler
seccompDefault memoryThrottlingFactor registerWithTaints registerNode tracing
localStorageCapacityIsolation containerRuntimeEndpoint imageServiceEndpoint
failCgroupV1""".split()


def kubelet(argv):
    v, _ = start(KUBELET, argv)
    files = check_files(v, KUBELET)
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration",
                               KUBELET_FIELDS, "--config")
        x509 = ((cfg.get("authentication") or {}).get("x509") or {})
        named = [("authentication.x509.clientCAFile", x509.get("clientCAFile"), CERT),
                 ("tlsCertFile", cfg.get("tlsCertFile"), CERT),
                 ("tlsPrivateKeyFile", cfg.get("tlsPrivateKeyFile"), KEY),
                 ("resolvConf", cfg.get("resolvConf"), FILE)]
        for field, path, kind in named:
            if not path:
                continue
            what = "--config %s: %s" % (v["config"], field)
            if kind == FILE:
                read_bytes(path, what)
            else:
                check_pem(path, kind, what)
            files.append(path)
        if cfg.get("tlsCertFile") or cfg.get("tlsPrivateKeyFile"):
            check_pair(cfg.get("tlsCertFile", ""), cfg.get("tlsPrivateKeyFile", ""),
                       "--config %s: tlsCertFile/tlsPrivateKeyFile" % v["config"])
        endpoint = cfg.get("containerRuntimeEndpoint") or v.get("container-runtime-endpoint")
        if endpoint:
            log("container runtime endpoint %s: %s" % (endpoint, cri_state(endpoint)))
        if cfg.get("registerWithTaints"):
            log("registerWithTaints: %s" % json.dumps(cfg["registerWithTaints"]))
    if not v.get("kubeconfig"):
        raise Fatal("this stand-in needs --kubeconfig (standalone mode is not simulated)")
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(load_kubeconfig(v["kubeconfig"]), "kubelet")


def cri_state(endpoint):
    path = endpoint[len("unix://"):] if endpoint.startswith("unix://") else endpoint
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
        return "accepting connections"
    except OSError as e:
        return "not reachable (%s); a real kubelet would keep retrying" % e
    finally:
        s.close()


PROXY_FIELDS = """bindAddress healthzBindAddress metricsBindAddress bindAddressHardFail
enableProfiling showHiddenMetricsForVersion mode clientConnection hostnameOverride iptables ipvs
nftables winkernel detectLocalMode detectLocal clusterCIDR nodePortAddresses oomScoreAdj
conntrack configSyncPeriod portRange featureGates logging windowsRunAsService""".split()


def kube_proxy(argv):
    v, _ = start(PROXY, argv)
    files = check_files(v, PROXY)
    kubeconfig = v.get("kubeconfig")
    if v.get("config"):
        cfg = load_yaml_config(v["config"], "kubeproxy.config.k8s.io/v1alpha1",
                               "KubeProxyConfiguration", PROXY_FIELDS, "--config")
        if cfg.get("mode", "") not in ("", "iptables", "ipvs", "nftables", "kernelspace"):
            raise Fatal("--config %s: invalid mode %r" % (v["config"], cfg["mode"]))
        if cfg.get("clusterCIDR"):
            check_cidr(cfg["clusterCIDR"], "clusterCIDR in " + v["config"])
        kubeconfig = (cfg.get("clientConnection") or {}).get("kubeconfig") or kubeconfig
        if kubeconfig:
            files.append(kubeconfig)
    if not kubeconfig:
        raise Fatal("invalid configuration: no configuration has been provided")
    kc = load_kubeconfig(kubeconfig)
    log("flags and --config ok; %d files checked (%s)" % (len(files), " ".join(files)))
    poll_forever(kc, "kube-proxy")


# ---------------------------------------------------------------------------------------------
# kubectl: `get --raw PATH`, `apply -f FILE...`, `version`, over verified TLS.

def kubectl(argv):
    v, args = start(KUBECTL, argv, positional_ok=True)
    if not args:
        raise Fatal("kubectl stand-in: a command is required (get --raw, apply -f, version)")
    cmd = args[0]
    if cmd == "version":
        print("Client Version: v%s (%s)" % (VERSION, BANNER))
        if v.get("client"):
            return
    path = v.get("kubeconfig") or os.environ.get("KUBECONFIG") or \
        os.path.expanduser("~/.kube/config")
    kc = load_kubeconfig(path, v.get("context"))
    for flag, attr in (("certificate-authority", "ca"), ("client-certificate", "cert"),
                       ("client-key", "key")):
        if v.get(flag):
            setattr(kc, attr, read_bytes(v[flag], "--" + flag))
    if v.get("server"):
        kc.server = v["server"]
    ctx = kc.context()
    if v.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cmd == "version":
        status, body = call(kc, ctx, "GET", "/version")
        print("Server Version: %s" % json.loads(body).get("gitVersion"))
    elif cmd == "get" and v.get("raw"):
        status, body = call(kc, ctx, "GET", v["raw"])
        sys.stdout.write(body.decode("utf-8", "replace"))
        if not body.endswith(b"\n"):
            sys.stdout.write("\n")
    elif cmd == "apply":
        if not v.get("filename"):
            raise Fatal("must specify one of -f and -k")
        for f in v["filename"]:
            apply_file(kc, ctx, f)
    else:
        raise Fatal("kubectl stand-in: unsupported command %r (supported: get --raw PATH, "
                    "apply -f FILE, version)" % " ".join(args))


def call(kc, ctx, method, path, body=None, ctype="application/json", ok=(200, 201)):
    headers = {"Accept": "application/json", "User-Agent": "kubectl-standin/v" + VERSION}
    if body is not None:
        headers["Content-Type"] = ctype
    try:
        status, data = https(kc.server, ctx, method, path, body, headers)
    except (OSError, ssl.SSLError, http.client.HTTPException) as e:
        u = urllib.parse.urlsplit(kc.server)
        raise Fatal("Unable to connect to the server: dial tcp %s:%s: %s"
                    % (u.hostname, u.port or 443, e)) from None
    if status not in ok:
        try:
            st = json.loads(data)
            msg = "Error from server (%s): %s" % (st.get("reason"), st.get("message"))
        except ValueError:
            msg = "Error from server (InternalError): an error on the server (%r) has prevented " \
                  "the request from succeeding (HTTP %d)" % (data.decode("utf-8", "replace").strip(), status)
        print(msg, file=sys.stderr)
        sys.exit(1)
    return status, data


def apply_file(kc, ctx, path):
    yaml = yaml_module()
    data = sys.stdin.buffer.read() if path == "-" else read_bytes(path, "error: the path")
    try:
        docs = [d for d in yaml.safe_load_all(data) if d]
    except yaml.YAMLError as e:
        raise Fatal("error parsing %s: %s" % (path, e)) from None
    for doc in docs:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        name = (doc.get("metadata") or {}).get("name")
        if kind not in RBAC_KINDS or api != RBAC_GROUP + "/v1":
            raise Fatal('resource mapping not found for name: "%s" from "%s": no matches for kind '
                        '"%s" in version "%s" (this stand-in knows the RBAC kinds only)'
                        % (name, path, kind, api))
        if not name:
            raise Fatal("error validating %s: metadata.name is required" % path)
        plural, namespaced = RBAC_KINDS[kind]
        ns = (doc.get("metadata") or {}).get("namespace") or "default"
        base = "/apis/%s/v1/%s%s" % (RBAC_GROUP, "namespaces/%s/" % ns if namespaced else "", plural)
        last = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        obj = json.loads(last)
        obj.setdefault("metadata", {}).setdefault("annotations", {})[
            "kubectl.kubernetes.io/last-applied-configuration"] = last + "\n"
        status, body = call(kc, ctx, "GET", base + "/" + name, ok=(200, 404))
        if status == 404:
            call(kc, ctx, "POST", base, json.dumps(obj).encode())
            action = "created"
        else:
            current = json.loads(body)
            previous = ((current.get("metadata") or {}).get("annotations") or {}).get(
                "kubectl.kubernetes.io/last-applied-configuration", "").strip()
            if previous == last:
                action = "unchanged"
            else:
                call(kc, ctx, "PATCH", base + "/" + name, json.dumps(obj).encode(),
                     "application/merge-patch+json")
                action = "configured"
        print("%s.%s/%s %s" % (kind.lower(), RBAC_GROUP, name, action))


# ---------------------------------------------------------------------------------------------
# kube-apiserver: HTTPS, client certificates, health from etcd, RBAC objects stored in etcd.

class Api:
    def __init__(self, v, servers):
        self.v, self.servers = v, servers
        self.lock = threading.Lock()
        self.health = (0.0, False, "not checked yet")
        self.etcd_ctx = ssl.create_default_context(cafile=v.get("etcd-cafile"))
        if v.get("etcd-certfile"):
            self.etcd_ctx.load_cert_chain(v["etcd-certfile"], v["etcd-keyfile"])
        self.logfile = open(APISERVER_LOG, "a", buffering=1, encoding="utf-8")
        self.audit = open(v["audit-log-path"], "a", buffering=1, encoding="utf-8") \
            if v.get("audit-log-path") and v["audit-log-path"] != "-" else None

    def record(self, msg):
        log(msg)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.logfile.write("%s kube-apiserver %s: %s\n" % (stamp, BANNER, msg))

    # etcd over TLS ------------------------------------------------------------------------
    def etcd(self, path, payload):
        errors = []
        for server in self.servers:
            try:
                status, body = https(server, self.etcd_ctx, "POST", path, json.dumps(payload).encode(),
                                     {"Content-Type": "application/json"}, timeout=5)
                if status == 200:
                    return json.loads(body)
                errors.append("%s: HTTP %d %s" % (server, status, body[:200]))
            except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
                errors.append("%s: %s" % (server, e))
        raise RuntimeError("etcd unavailable: " + "; ".join(errors))

    def etcd_healthy(self):
        with self.lock:
            at, ok, why = self.health
            if time.monotonic() - at < 1.0:
                return ok, why
            reasons = []
            ok = False
            for server in self.servers:
                try:
                    status, body = https(server, self.etcd_ctx, path="/health", timeout=3)
                    if status == 200 and json.loads(body).get("health") in ("true", True):
                        ok = True
                        reasons = ["%s healthy" % server]
                        break
                    reasons.append("%s: HTTP %d %s" % (server, status, body.decode(errors="replace")[:100]))
                except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
                    reasons.append("%s: %s" % (server, e))
            why = "; ".join(reasons)
            if ok != self.health[1] or self.health[0] == 0.0:
                self.record("etcd is %s: %s" % ("healthy" if ok else "NOT healthy", why))
            self.health = (time.monotonic(), ok, why)
            return ok, why

    def get(self, key):
        r = self.etcd("/v3/kv/range", {"key": b64(key)})
        kvs = r.get("kvs") or []
        if not kvs:
            return None
        obj = json.loads(base64.b64decode(kvs[0]["value"]))
        obj.setdefault("metadata", {})["resourceVersion"] = str(kvs[0].get("mod_revision", ""))
        return obj

    def list(self, prefix):
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        r = self.etcd("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end)})
        items = []
        for kv in r.get("kvs") or []:
            obj = json.loads(base64.b64decode(kv["value"]))
            obj.setdefault("metadata", {})["resourceVersion"] = str(kv.get("mod_revision", ""))
            items.append(obj)
        return items, str((r.get("header") or {}).get("revision", ""))

    def put(self, key, obj):
        obj = json.loads(json.dumps(obj))
        obj.get("metadata", {}).pop("resourceVersion", None)
        self.etcd("/v3/kv/put", {"key": b64(key), "value": b64(json.dumps(obj, sort_keys=True))})
        return self.get(key)

    def serve(self, bind, port):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.v["tls-cert-file"], self.v["tls-private-key-file"])
        ctx.verify_mode = ssl.CERT_OPTIONAL  # like Go's VerifyClientCertIfGiven
        ctx.load_verify_locations(self.v["client-ca-file"])
        api = self

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET

            def finish_request(self, request, client_address):
                # The TLS handshake runs in the request's thread, not the accept loop.
                try:
                    request.settimeout(30)
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    api.record("TLS handshake from %s:%s failed: %s"
                               % (client_address[0], client_address[1], e))
                    return
                try:
                    Handler(tls, client_address, self)
                finally:
                    try:
                        tls.close()
                    except OSError:
                        pass

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "kube-apiserver-standin/v" + VERSION

            def log_message(self, *a):  # every request is recorded by respond()
                pass

            def who(self):
                cert = self.connection.getpeercert()
                if not cert:
                    return None, "client no certificate (system:anonymous)"
                return cert, "client " + format_subject(cert.get("subject", ()))

            def respond(self, code, body, ctype="application/json", note=""):
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                cert, who = self.who()
                api.record("%s:%s %s %s %s -> %d%s" % (self.client_address[0], self.client_address[1],
                                                       who, self.command, self.path, code,
                                                       " (%s)" % note if note else ""))
                if api.audit:
                    subj = cert.get("subject", ()) if cert else ()
                    cn = [x for rdn in subj for k, x in rdn if k == "commonName"]
                    groups = [x for rdn in subj for k, x in rdn if k == "organizationName"]
                    api.audit.write(json.dumps({
                        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "stage": "ResponseComplete",
                        "requestURI": self.path, "verb": self.command.lower(),
                        "user": {"username": cn[0] if cn else "system:anonymous", "groups": groups},
                        "sourceIPs": [self.client_address[0]], "responseStatus": {"code": code},
                        "annotations": {"imagegen.test/stand-in": "true"}}) + "\n")

            def status(self, code, reason, message):
                self.respond(code, json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                               "status": "Failure", "message": message,
                                               "reason": reason, "code": code}), note=message)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def handle_any(self):
                path = urllib.parse.urlsplit(self.path).path
                if path in ("/healthz", "/livez", "/readyz", "/healthz/etcd", "/livez/etcd",
                            "/readyz/etcd"):
                    ok, why = api.etcd_healthy()
                    verbose = "verbose" in urllib.parse.urlsplit(self.path).query
                    if ok:
                        text = "[+]ping ok\n[+]etcd ok\nhealthz check passed\n" if verbose else "ok"
                        return self.respond(200, text, "text/plain; charset=utf-8")
                    return self.respond(500, "[+]ping ok\n[-]etcd failed: reason withheld\n"
                                             "healthz check failed\n", "text/plain; charset=utf-8",
                                        note="etcd: " + why)
                if path == "/version":
                    return self.respond(200, json.dumps({"major": "1", "minor": VERSION.split(".")[1],
                                                         "gitVersion": "v" + VERSION,
                                                         "platform": "linux/stand-in"}))
                m = re.match(r"^/apis/rbac\.authorization\.k8s\.io/v1/(?:namespaces/([^/]+)/)?"
                             r"(clusterroles|clusterrolebindings|roles|rolebindings)(?:/([^/]+))?$", path)
                if not m:
                    return self.status(404, "NotFound", "the server could not find the requested "
                                                        "resource (stand-in serves health, /version "
                                                        "and RBAC only)")
                cert, _ = self.who()
                if not cert:
                    return self.status(401, "Unauthorized", "Unauthorized")
                groups = [x for rdn in cert.get("subject", ()) for k, x in rdn if k == "organizationName"]
                if "system:masters" not in groups:
                    return self.status(403, "Forbidden", "%s is forbidden: the stand-in lets only "
                                                         "system:masters manage RBAC" % path)
                return self.rbac(*m.groups())

            def rbac(self, ns, plural, name):
                kind, namespaced = PLURALS[plural]
                if bool(ns) != namespaced:
                    return self.status(404, "NotFound", "%s is %snamespaced"
                                       % (plural, "" if namespaced else "not "))
                prefix = "/registry/%s/%s" % (plural, ns + "/" if ns else "")
                try:
                    if self.command == "GET" and not name:
                        items, rv = api.list(prefix)
                        return self.respond(200, json.dumps({
                            "kind": kind + "List", "apiVersion": RBAC_GROUP + "/v1",
                            "metadata": {"resourceVersion": rv}, "items": items}))
                    if self.command == "GET":
                        obj = api.get(prefix + name)
                        if obj is None:
                            return self.status(404, "NotFound", '%s.%s "%s" not found'
                                               % (plural, RBAC_GROUP, name))
                        return self.respond(200, json.dumps(obj))
                    if self.command in ("POST", "PUT", "PATCH"):
                        return self.write(kind, plural, ns, prefix, name)
                    if self.command == "DELETE" and name:
                        api.etcd("/v3/kv/deleterange", {"key": b64(prefix + name)})
                        return self.respond(200, json.dumps({"kind": "Status", "apiVersion": "v1",
                                                             "status": "Success"}), note="deleted")
                    return self.status(405, "MethodNotAllowed", "method not allowed")
                except RuntimeError as e:
                    return self.status(500, "InternalError", str(e))

            def write(self, kind, plural, ns, prefix, name):
                try:
                    incoming = json.loads(self.body() or b"{}")
                except ValueError as e:
                    return self.status(400, "BadRequest", "body is not JSON: %s" % e)
                if not isinstance(incoming, dict):
                    return self.status(400, "BadRequest", "body is not an object")
                target = name or (incoming.get("metadata") or {}).get("name")
                if not target:
                    return self.status(422, "Invalid", "metadata.name: Required value")
                if self.command == "POST" and name:
                    return self.status(405, "MethodNotAllowed", "POST goes to the collection")
                existing = api.get(prefix + target)
                if self.command == "POST" and existing is not None:
                    return self.status(409, "AlreadyExists", '%s.%s "%s" already exists'
                                       % (plural, RBAC_GROUP, target))
                if self.command == "PATCH":
                    if existing is None:
                        return self.status(404, "NotFound", '%s.%s "%s" not found'
                                           % (plural, RBAC_GROUP, target))
                    ctype = (self.headers.get("Content-Type") or "").split(";")[0]
                    if ctype not in ("application/merge-patch+json",
                                     "application/strategic-merge-patch+json"):
                        return self.status(415, "UnsupportedMediaType",
                                           "stand-in PATCH takes merge patches only, got %s" % ctype)
                    obj = merge_patch(existing, incoming)
                else:
                    obj = incoming
                if obj.get("kind") not in (None, kind):
                    return self.status(400, "BadRequest", "kind %s sent to %s" % (obj.get("kind"), plural))
                obj["kind"], obj["apiVersion"] = kind, RBAC_GROUP + "/v1"
                meta = obj.setdefault("metadata", {})
                meta["name"] = target
                if ns:
                    meta["namespace"] = ns
                old = (existing or {}).get("metadata", {})
                meta["uid"] = old.get("uid") or str(uuid.uuid4())
                meta["creationTimestamp"] = old.get("creationTimestamp") or \
                    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                stored = api.put(prefix + target, obj)
                created = existing is None
                return self.respond(201 if created else 200, json.dumps(stored),
                                    note="%s %s %s, stored in etcd at %s%s"
                                    % (kind, target, "created" if created else "updated", prefix, target))

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        server = Server((bind, port), Handler)
        self.record("serving HTTPS on %s:%d (client certificates requested, verified against %s); "
                    "etcd: %s" % (bind, port, self.v["client-ca-file"], ",".join(self.servers)))
        self.etcd_healthy()
        server.serve_forever()


def b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (for RBAC objects what a strategic merge patch does too: their
    lists have no merge keys and are replaced)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


PROGRAMS = {
    "kube-apiserver": kube_apiserver,
    "kube-controller-manager": kube_controller_manager,
    "kube-scheduler": kube_scheduler,
    "kubelet": kubelet,
    "kube-proxy": kube_proxy,
    "kubectl": kubectl,
}


def main():
    prog = PROGRAMS.get(PROG)
    if prog is None:
        print("kube-standin: installed as %r; expected one of %s" % (PROG, ", ".join(PROGRAMS)),
              file=sys.stderr)
        return 2
    if PROG != "kubectl" and not ({"--version", "--help", "-h"} & set(sys.argv[1:])):
        log("started with: %s" % " ".join(sys.argv[1:]))
    try:
        prog(sys.argv[1:])
    except Fatal as e:
        die(str(e))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
