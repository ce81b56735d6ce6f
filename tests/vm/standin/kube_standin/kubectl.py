"""kubectl: `get --raw PATH`, `apply -f FILE...` (RBAC kinds) and `version`, over the verified TLS
client of client.py, printing what the real kubectl prints."""

import http.client
import json
import os
import ssl
import sys
import urllib.parse

from .base import BANNER, RBAC_GROUP, RBAC_KINDS, VERSION, Fatal, read_bytes, yaml_module
from .client import https, load_kubeconfig
from .flags import KUBECTL, start


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
