#!/usr/bin/python3
"""Proves the Kubernetes stand-ins on the host, without a VM: Debian's real etcd (from the test
mirror) with the guide's TLS flags, the kube-apiserver stand-in with the guide's flags, curl and
Python's ssl as independent clients, kubectl apply/get, and the client daemons with kubeconfigs
that embed their certificates. Certificates are made here with openssl.

    selftest.sh MIRROR_DIR WORK_DIR        (runs this in fresh net, mount and pid namespaces)

Inside the namespaces only loopback exists, `kubernetes` resolves to 127.0.0.1 through a hosts
file bind-mounted over /etc/hosts, and every process started here dies with the namespace.
Prints one line per check and exits 1 if any failed.
"""

import base64
import glob
import json
import os
import signal
import ssl
import subprocess
import sys
import tarfile
import time
import urllib.request

MIRROR, WORK = sys.argv[1], sys.argv[2]
BIN, PKI = os.path.join(WORK, "bin"), os.path.join(WORK, "pki")
API = "https://kubernetes:6443"
FAILED = []
PROCS = {}


def check(ok, what, detail=""):
    print("%s %s%s" % ("PASS" if ok else "FAIL", what, "" if ok else ": " + str(detail)[-2000:]),
          flush=True)
    if not ok:
        FAILED.append(what)
    return ok


def sh(*cmd, ok=(0,), env=None, input=None, timeout=60):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if ok is not None and p.returncode not in ok:
        raise RuntimeError("%s -> %d\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def wait_for(what, fn, timeout=30):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(0.3)
    raise RuntimeError("timed out waiting for %s: %s" % (what, last))


# -- setup ---------------------------------------------------------------------------------------

def unpack():
    os.makedirs(BIN, exist_ok=True)
    etcd = glob.glob(MIRROR + "/github.com/etcd-io/etcd/releases/download/*/etcd-*.tar.gz")[0]
    server = glob.glob(MIRROR + "/dl.k8s.io/*/kubernetes-server-linux-*.tar.gz")[0]
    with tarfile.open(etcd) as t:
        for m in t.getmembers():
            if m.isfile() and os.path.basename(m.name).startswith("etcd"):
                m.name = os.path.basename(m.name)
                t.extract(m, BIN)
    with tarfile.open(server) as t:
        for m in t.getmembers():
            if m.isfile() and m.name.startswith("kubernetes/server/bin/"):
                m.name = os.path.basename(m.name)
                t.extract(m, BIN)


def openssl_cert(name, cn, org, sans=None, ca="ca"):
    key, csr, crt = ("%s/%s%s" % (PKI, name, s) for s in ("-key.pem", ".csr", ".pem"))
    sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    args = ["openssl", "req", "-new", "-key", key, "-subj", "/CN=%s/O=%s" % (cn, org), "-out", csr,
            "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext", "extendedKeyUsage=serverAuth,clientAuth"]
    if sans:
        args += ["-addext", "subjectAltName=" + ",".join(sans)]
    sh(*args)
    sh("openssl", "x509", "-req", "-in", csr, "-CA", "%s/%s.pem" % (PKI, ca), "-CAkey",
       "%s/%s-key.pem" % (PKI, ca), "-CAcreateserial", "-days", "2", "-copy_extensions", "copy",
       "-out", crt)
    os.chmod(key, 0o600)


def make_pki():
    os.makedirs(PKI, exist_ok=True)
    for ca in ("ca", "other-ca"):
        sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", "%s/%s-key.pem" % (PKI, ca), "-out", "%s/%s.pem" % (PKI, ca),
           "-subj", "/CN=%s/O=Kubernetes" % ca, "-days", "2")
    openssl_cert("kubernetes", "kubernetes", "Kubernetes",
                 ["DNS:kubernetes", "DNS:kubernetes.default", "DNS:localhost", "IP:127.0.0.1",
                  "IP:10.32.0.1"])
    openssl_cert("admin", "admin", "system:masters")
    openssl_cert("worker0", "system:node:worker0", "system:nodes", ["DNS:worker0", "IP:127.0.0.1"])
    openssl_cert("kube-proxy", "system:kube-proxy", "system:node-proxier")
    openssl_cert("kube-controller-manager", "system:kube-controller-manager",
                 "system:kube-controller-manager")
    openssl_cert("kube-scheduler", "system:kube-scheduler", "system:kube-scheduler")
    openssl_cert("service-account", "service-accounts", "Kubernetes")
    openssl_cert("intruder", "system:node:worker0", "system:nodes", ca="other-ca")
    key = base64.b64encode(os.urandom(32)).decode()
    write("%s/encryption-config.yaml" % PKI, ENCRYPTION % key, 0o600)
    for user, cert in (("admin", "admin"), ("system:node:worker0", "worker0"),
                       ("system:kube-proxy", "kube-proxy"),
                       ("system:kube-controller-manager", "kube-controller-manager"),
                       ("system:kube-scheduler", "kube-scheduler")):
        write("%s/%s.kubeconfig" % (PKI, cert), kubeconfig(API, "ca", user, cert), 0o600)
    write("%s/worker0-wrong-ca.kubeconfig" % PKI,
          kubeconfig(API, "other-ca", "system:node:worker0", "worker0"), 0o600)
    write("%s/worker0-nowhere.kubeconfig" % PKI,
          kubeconfig("https://kubernetes:6999", "ca", "system:node:worker0", "worker0"), 0o600)


ENCRYPTION = """kind: EncryptionConfiguration
apiVersion: apiserver.config.k8s.io/v1
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: %s
      - identity: {}
"""


def b64file(path):
    return base64.b64encode(open(path, "rb").read()).decode()


def kubeconfig(server, ca, user, cert):
    return """apiVersion: v1
kind: Config
clusters:
- name: kubernetes-the-harder-way
  cluster:
    certificate-authority-data: %s
    server: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: default
  context:
    cluster: kubernetes-the-harder-way
    user: %s
current-context: default
""" % (b64file("%s/%s.pem" % (PKI, ca)), server, user, b64file("%s/%s.pem" % (PKI, cert)),
       b64file("%s/%s-key.pem" % (PKI, cert)), user)


def write(path, text, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def isolate():
    sh("ip", "link", "set", "lo", "up")
    write(WORK + "/hosts", "127.0.0.1 localhost\n127.0.0.1 kubernetes\n")
    sh("mount", "--bind", WORK + "/hosts", "/etc/hosts")


def spawn(name, argv, env=None):
    log = open("%s/%s.log" % (WORK, name), "ab")
    e = dict(os.environ, KUBE_APISERVER_STANDIN_LOG=WORK + "/kube-apiserver-standin.log",
             KUBE_STANDIN_POLL_SECONDS="1", **(env or {}))
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=e)
    PROCS[name] = p
    return p


def logtext(name):
    try:
        return open("%s/%s.log" % (WORK, name), encoding="utf-8", errors="replace").read()
    except OSError:
        return ""


def stop(name):
    p = PROCS.pop(name)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# -- the guide's units, with this host's paths -----------------------------------------------

def etcd_argv():
    return [BIN + "/etcd", "--name", "control0",
            "--cert-file=%s/kubernetes.pem" % PKI, "--key-file=%s/kubernetes-key.pem" % PKI,
            "--peer-cert-file=%s/kubernetes.pem" % PKI, "--peer-key-file=%s/kubernetes-key.pem" % PKI,
            "--trusted-ca-file=%s/ca.pem" % PKI, "--peer-trusted-ca-file=%s/ca.pem" % PKI,
            "--peer-client-cert-auth", "--client-cert-auth",
            "--initial-advertise-peer-urls", "https://127.0.0.1:2380",
            "--listen-peer-urls", "https://127.0.0.1:2380",
            "--listen-client-urls", "https://127.0.0.1:2379",
            "--advertise-client-urls", "https://127.0.0.1:2379",
            "--initial-cluster-token", "etcd-cluster-0",
            "--initial-cluster", "control0=https://127.0.0.1:2380",
            "--initial-cluster-state", "new", "--data-dir=%s/etcd-data" % WORK]


def apiserver_argv(extra=()):
    k = PKI
    return [BIN + "/kube-apiserver", "--advertise-address=127.0.0.1", "--allow-privileged=true",
            "--audit-log-maxage=30", "--audit-log-maxbackup=3",
            "--audit-log-maxsize=100", "--audit-log-path=%s/audit.log" % WORK,
            "--authorization-mode=Node,RBAC", "--bind-address=0.0.0.0",
            "--client-ca-file=%s/ca.pem" % k,
            "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,"
            "ServiceAccount,DefaultStorageClass,ResourceQuota",
            "--etcd-cafile=%s/ca.pem" % k, "--etcd-certfile=%s/kubernetes.pem" % k,
            "--etcd-keyfile=%s/kubernetes-key.pem" % k, "--etcd-servers=https://127.0.0.1:2379",
            "--event-ttl=1h", "--encryption-provider-config=%s/encryption-config.yaml" % k,
            "--kubelet-certificate-authority=%s/ca.pem" % k,
            "--kubelet-client-certificate=%s/kubernetes.pem" % k,
            "--kubelet-client-key=%s/kubernetes-key.pem" % k, "--runtime-config=api/all=true",
            "--service-account-key-file=%s/service-account.pem" % k,
            "--service-account-signing-key-file=%s/service-account-key.pem" % k,
            "--service-account-issuer=https://192.168.1.21:6443",
            "--service-cluster-ip-range=10.32.0.0/16", "--service-node-port-range=30000-32767",
            "--tls-cert-file=%s/kubernetes.pem" % k, "--tls-private-key-file=%s/kubernetes-key.pem" % k,
            "--v=2"] + list(extra)


def kcm_argv(extra=()):
    k = PKI
    return [BIN + "/kube-controller-manager", "--bind-address=0.0.0.0", "--cluster-cidr=10.0.0.0/12",
            "--cluster-name=kubernetes", "--cluster-signing-cert-file=%s/ca.pem" % k,
            "--cluster-signing-key-file=%s/ca-key.pem" % k,
            "--kubeconfig=%s/kube-controller-manager.kubeconfig" % k, "--leader-elect=true",
            "--root-ca-file=%s/ca.pem" % k,
            "--service-account-private-key-file=%s/service-account-key.pem" % k,
            "--service-cluster-ip-range=10.32.0.0/16", "--use-service-account-credentials=true",
            "--v=2"] + list(extra)


KUBELET_CONFIG = """kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: "%(pki)s/ca.pem"
authorization:
  mode: Webhook
clusterDomain: "cluster.local"
clusterDNS:
  - "10.32.0.10"
resolvConf: "%(work)s/hosts"
runtimeRequestTimeout: "15m"
tlsCertFile: "%(pki)s/worker0.pem"
tlsPrivateKeyFile: "%(pki)s/worker0-key.pem"
containerRuntimeEndpoint: "unix:///var/run/containerd/containerd.sock"
cgroupDriver: "systemd"
registerWithTaints:
  - key: "node-role.kubernetes.io/control-plane"
    value: ""
    effect: "NoSchedule"
"""

RBAC = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  annotations:
    rbac.authorization.kubernetes.io/autoupdate: "true"
  labels:
    kubernetes.io/bootstrapping: rbac-defaults
  name: system:kube-apiserver-to-kubelet
rules:
  - apiGroups:
      - ""
    resources:
      - nodes/proxy
      - nodes/stats
      - nodes/log
      - nodes/spec
      - nodes/metrics
    verbs:
      - "*"
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:kube-apiserver
  namespace: ""
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: system:kube-apiserver-to-kubelet
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: kubernetes
"""


def curl(path, *args):
    return sh("curl", "-sS", "--max-time", "10", "--cacert", PKI + "/ca.pem", *args,
              API + path, ok=None)


def client_cert(name):
    return ["--cert", "%s/%s.pem" % (PKI, name), "--key", "%s/%s-key.pem" % (PKI, name)]


def kubectl(kubeconfig, *args, input=None):
    return sh(BIN + "/kubectl", "--kubeconfig", "%s/%s.kubeconfig" % (PKI, kubeconfig), *args,
              ok=None, input=input)


def etcdctl(*args):
    return sh(BIN + "/etcdctl", "--endpoints=https://127.0.0.1:2379", "--cacert=%s/ca.pem" % PKI,
              "--cert=%s/kubernetes.pem" % PKI, "--key=%s/kubernetes-key.pem" % PKI, *args, ok=None)


def api_log():
    try:
        return open(WORK + "/kube-apiserver-standin.log", encoding="utf-8").read()
    except OSError:
        return ""


# -- the checks ----------------------------------------------------------------------------------

def main():
    unpack()
    make_pki()
    isolate()
    os.makedirs(WORK + "/etcd-data", mode=0o700, exist_ok=True)

    r = sh(BIN + "/etcd", "--version")
    check("etcd " in r.stdout, "etcd is Debian's real etcd: " + r.stdout.splitlines()[0], r.stdout)
    for prog in ("kube-apiserver", "kubelet"):
        r = sh(BIN + "/" + prog, "--version")
        check("STAND-IN" in r.stdout and "Kubernetes v" in r.stdout, prog + " --version says stand-in",
              r.stdout)

    # Flags: a typo, a missing file, a bad value are fatal like in the real binaries.
    r = sh(*apiserver_argv(["--etcd-server=https://127.0.0.1:2379"]), ok=None)
    check(r.returncode == 1 and "unknown flag: --etcd-server" in r.stderr,
          "kube-apiserver refuses an unknown flag", r.stderr)
    argv = [a.replace("service-account.pem", "no-such.pem") for a in apiserver_argv()]
    r = sh(*argv, ok=None)
    check(r.returncode == 1 and "no-such.pem" in r.stderr, "kube-apiserver refuses a missing file",
          r.stderr)
    r = sh(*kcm_argv(["--cluster-cidr=10.0.0.0/33"]), ok=None)
    check(r.returncode == 1 and "cluster-cidr" in r.stderr, "kube-controller-manager refuses a bad CIDR",
          r.stderr)
    r = sh(*kcm_argv(["stray-argument"]), ok=None)
    check(r.returncode == 1 and "does not take any arguments" in r.stderr,
          "kube-controller-manager refuses a positional argument", r.stderr)
    argv = [a.replace("kubernetes-key.pem", "admin-key.pem") for a in apiserver_argv()]
    r = sh(*argv, ok=None)
    check(r.returncode == 1 and "do not match" in r.stderr, "kube-apiserver refuses a cert/key mismatch",
          r.stderr)

    spawn("etcd", etcd_argv())
    wait_for("etcd", lambda: etcdctl("endpoint", "health").returncode == 0)
    r = etcdctl("endpoint", "health")
    check(r.returncode == 0 and "is healthy" in (r.stdout + r.stderr),
          "etcdctl endpoint health over TLS with client certs", r.stdout + r.stderr)
    r = sh("curl", "-sS", "--max-time", "5", "--cacert", PKI + "/ca.pem", "https://127.0.0.1:2379/health",
           ok=None)
    check(r.returncode != 0 or '"health"' not in r.stdout, "etcd refuses a client without certificate",
          r.stdout)

    spawn("kube-apiserver", apiserver_argv())
    wait_for("kube-apiserver", lambda: curl("/healthz", *client_cert("worker0")).stdout == "ok")

    r = curl("/healthz", *client_cert("worker0"))
    check(r.stdout == "ok", "curl: /healthz through `kubernetes` with worker0's cert says ok",
          r.stdout + r.stderr)
    check("client CN=system:node:worker0 O=system:nodes GET /healthz -> 200" in api_log(),
          "the API server logged worker0's subject", api_log()[-1500:])
    r = curl("/readyz")
    check(r.stdout == "ok", "anonymous /readyz says ok", r.stdout + r.stderr)
    check("client no certificate (system:anonymous) GET /readyz -> 200" in api_log(),
          "the API server logged the anonymous client", api_log()[-1500:])
    r = curl("/healthz", *client_cert("intruder"))
    check(r.returncode != 0 and r.stdout != "ok",
          "a client certificate from another CA is refused in the handshake",
          "rc=%d %s %s" % (r.returncode, r.stdout, r.stderr))
    r = sh("curl", "-sS", "--max-time", "10", "--cacert", PKI + "/other-ca.pem", API + "/healthz", ok=None)
    check(r.returncode == 60, "curl refuses the server when trusting another CA",
          "rc=%d %s" % (r.returncode, r.stderr))
    r = sh("curl", "-sS", "--max-time", "10", "--cacert", PKI + "/ca.pem", "--resolve",
           "not-in-the-cert:6443:127.0.0.1", "https://not-in-the-cert:6443/healthz", ok=None)
    check(r.returncode == 60, "curl refuses the server under a name outside its SANs",
          "rc=%d %s" % (r.returncode, r.stderr))

    # Python's ssl as a second independent client, verifying the name `kubernetes`.
    ctx = ssl.create_default_context(cafile=PKI + "/ca.pem")
    ctx.load_cert_chain(PKI + "/worker0.pem", PKI + "/worker0-key.pem")
    body = urllib.request.urlopen(API + "/livez", context=ctx, timeout=10).read().decode()
    check(body == "ok", "python ssl: /livez says ok", body)

    # kubectl: raw GET, apply (create, unchanged, configured), stored in etcd, authorization.
    r = kubectl("admin", "get", "--raw", "/healthz")
    check(r.returncode == 0 and r.stdout.strip() == "ok", "kubectl get --raw /healthz", r.stdout + r.stderr)
    write(WORK + "/rbac.yaml", RBAC)
    r = kubectl("admin", "apply", "-f", WORK + "/rbac.yaml")
    check(r.returncode == 0 and "clusterrole.rbac.authorization.k8s.io/system:kube-apiserver-to-kubelet "
          "created" in r.stdout and "clusterrolebinding.rbac.authorization.k8s.io/system:kube-apiserver "
          "created" in r.stdout, "kubectl apply creates both objects", r.stdout + r.stderr)
    r = kubectl("admin", "apply", "-f", WORK + "/rbac.yaml")
    check(r.returncode == 0 and r.stdout.count(" unchanged") == 2, "a second apply changes nothing",
          r.stdout + r.stderr)
    write(WORK + "/rbac2.yaml", RBAC.replace("      - nodes/metrics\n", ""))
    r = kubectl("admin", "apply", "-f", WORK + "/rbac2.yaml")
    check(r.returncode == 0 and "system:kube-apiserver-to-kubelet configured" in r.stdout,
          "an apply with a change configures", r.stdout + r.stderr)
    r = kubectl("admin", "get", "--raw",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:kube-apiserver-to-kubelet")
    try:
        obj = json.loads(r.stdout)
    except ValueError:
        obj = {}
    check(obj.get("kind") == "ClusterRole" and
          obj.get("rules", [{}])[0].get("resources") == ["nodes/proxy", "nodes/stats", "nodes/log",
                                                          "nodes/spec"],
          "a later GET finds what was applied", r.stdout + r.stderr)
    r = kubectl("admin", "get", "--raw",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-apiserver")
    check('"name": "kubernetes"' in r.stdout or '"name":"kubernetes"' in r.stdout,
          "the binding names the user kubernetes", r.stdout + r.stderr)
    r = etcdctl("get", "/registry/clusterrolebindings/system:kube-apiserver", "--print-value-only")
    check(r.returncode == 0 and "system:kube-apiserver-to-kubelet" in r.stdout,
          "the objects are stored in etcd", r.stdout + r.stderr)
    check("ClusterRole system:kube-apiserver-to-kubelet created" in api_log(),
          "the API server logged kind and name", api_log()[-1500:])
    r = kubectl("worker0", "apply", "-f", WORK + "/rbac.yaml")
    check(r.returncode == 1 and "Forbidden" in r.stderr, "a node may not apply RBAC",
          r.stdout + r.stderr)

    # The client daemons, with the guide's flags and kubeconfigs with embedded certificates.
    write(WORK + "/kubelet-config.yaml", KUBELET_CONFIG % {"pki": PKI, "work": WORK})
    write(WORK + "/kube-proxy-config.yaml",
          'kind: KubeProxyConfiguration\napiVersion: kubeproxy.config.k8s.io/v1alpha1\n'
          'clientConnection:\n  kubeconfig: "%s/kube-proxy.kubeconfig"\nmode: "iptables"\n'
          'clusterCIDR: "10.0.0.0/12"\n' % PKI)
    write(WORK + "/kube-scheduler.yaml",
          'apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n'
          'clientConnection:\n  kubeconfig: "%s/kube-scheduler.kubeconfig"\n'
          'leaderElection:\n  leaderElect: true\n' % PKI)
    spawn("kubelet", [BIN + "/kubelet", "--config=%s/kubelet-config.yaml" % WORK,
                      "--kubeconfig=%s/worker0.kubeconfig" % PKI, "--v=2"])
    spawn("kube-proxy", [BIN + "/kube-proxy", "--config=%s/kube-proxy-config.yaml" % WORK])
    spawn("kube-scheduler", [BIN + "/kube-scheduler", "--config=%s/kube-scheduler.yaml" % WORK, "--v=2"])
    spawn("kube-controller-manager", kcm_argv())
    for user, org in (("system:node:worker0", "system:nodes"), ("system:kube-proxy", "system:node-proxier"),
                      ("system:kube-scheduler", "system:kube-scheduler"),
                      ("system:kube-controller-manager", "system:kube-controller-manager")):
        line = "client CN=%s O=%s GET /healthz -> 200" % (user, org)
        try:
            wait_for(user, lambda: line in api_log(), 60)
            check(True, "%s reached the API with its kubeconfig" % user)
        except RuntimeError:
            check(False, "%s reached the API with its kubeconfig" % user, api_log()[-1500:])
    # The API logs the request before the kubelet logs the answer: wait for the answer too.
    try:
        wait_for("the kubelet's log", lambda: "-> 200 ok" in logtext("kubelet"), 60)
    except RuntimeError:
        pass
    check("-> 200 ok" in logtext("kubelet") and "STAND-IN" in logtext("kubelet"),
          "the kubelet logs the answer and says it is a stand-in", logtext("kubelet"))

    # Health follows etcd; the client daemons keep running while the API is unhealthy or away.
    stop("etcd")
    wait_for("unhealthy", lambda: curl("/healthz").stdout != "ok", 10)
    r = kubectl("admin", "get", "--raw", "/healthz")
    check(r.returncode == 1 and "etcd failed" in r.stderr, "/healthz fails while etcd is down",
          r.stdout + r.stderr)
    spawn("etcd", etcd_argv())
    wait_for("healthy again", lambda: curl("/healthz").stdout == "ok", 30)
    check(True, "/healthz says ok again once etcd is back")
    spawn("kubelet-wrong-ca", [BIN + "/kubelet", "--config=%s/kubelet-config.yaml" % WORK,
                               "--kubeconfig=%s/worker0-wrong-ca.kubeconfig" % PKI])
    spawn("kubelet-nowhere", [BIN + "/kubelet", "--config=%s/kubelet-config.yaml" % WORK,
                              "--kubeconfig=%s/worker0-nowhere.kubeconfig" % PKI])
    time.sleep(4)
    check(PROCS["kubelet-wrong-ca"].poll() is None and "CERTIFICATE_VERIFY_FAILED" in logtext("kubelet-wrong-ca"),
          "a kubelet whose CA does not match the server refuses it and keeps running",
          logtext("kubelet-wrong-ca"))
    check(PROCS["kubelet-nowhere"].poll() is None and "failed" in logtext("kubelet-nowhere"),
          "a kubelet without an API keeps running", logtext("kubelet-nowhere"))
    write(WORK + "/kubelet-typo.yaml", KUBELET_CONFIG.replace("clusterDomain", "clusterDomian")
          % {"pki": PKI, "work": WORK})
    r = sh(BIN + "/kubelet", "--config=%s/kubelet-typo.yaml" % WORK,
           "--kubeconfig=%s/worker0.kubeconfig" % PKI, ok=None)
    check(r.returncode == 1 and 'unknown field "clusterDomian"' in r.stderr,
          "the kubelet refuses an unknown config field", r.stderr)
    for name in list(PROCS):
        check(PROCS[name].poll() is None, "%s still running at the end" % name, logtext(name)[-1500:])
        stop(name)
    print("%d check(s) failed" % len(FAILED) if FAILED else "all checks passed", flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001
        print("FAIL setup: %s" % e, flush=True)
        for name in PROCS:
            print("--- %s.log\n%s" % (name, logtext(name)[-3000:]))
        sys.exit(1)
