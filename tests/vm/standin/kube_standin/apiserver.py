"""kube-apiserver: HTTPS with client certificates requested and logged, health from etcd over
TLS, RBAC objects stored in etcd through its JSON gateway."""

import base64
import datetime
import http.client
import http.server
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
import uuid

from .base import (BANNER, PLURALS, RBAC_GROUP, VERSION, Fatal, log, read_bytes,
                   yaml_module)
from .client import format_subject, https
from .flags import APISERVER, check_cidr, check_files, check_ip, check_pair, start

APISERVER_LOG = os.environ.get("KUBE_APISERVER_STANDIN_LOG", "/var/log/kube-apiserver-standin.log")


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
