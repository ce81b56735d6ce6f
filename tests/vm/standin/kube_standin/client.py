"""kubeconfigs and the TLS client every stand-in daemon and kubectl use: the server is verified
against the kubeconfig's CA under the host name of its URL, the client shows its certificate."""

import base64
import http.client
import os
import ssl
import tempfile
import time
import urllib.parse

from .base import PROG, Fatal, log, read_bytes, yaml_module

POLL_SECONDS = float(os.environ.get("KUBE_STANDIN_POLL_SECONDS", "10"))


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
