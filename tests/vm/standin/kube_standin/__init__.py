"""imagegen VM test STAND-IN for the Kubernetes binaries: NOT the real programs.

tests/vm/build-mirror.sh packs this package as one Python zip application and installs it under
the names kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet and
kube-proxy (it dispatches on its own name: main.py), because Kubernetes is not packaged for
Debian 12 and nothing outside Debian and the language registries can be downloaded where the
tests run. Every line it logs and its --version say that it is a stand-in.

What it does for real, so that the cluster test proves the configuration imagegen writes:
- parses the command line like the real binary's flag set (pflag syntax): an unknown flag, a
  positional argument or a bad value is an error and exit status 1, so a typo in a unit fails
  (flags.py);
- checks that every file a flag or config file names exists and is readable, that
  certificates and keys parse and that each certificate matches its key (flags.py);
- speaks real TLS: kube-apiserver serves HTTPS with --tls-cert-file/--tls-private-key-file,
  asks for (does not require) a client certificate verified against --client-ca-file and logs
  each request's client subject; /healthz, /livez and /readyz answer `ok` only while etcd
  answers its /health over TLS with the --etcd-* credentials; RBAC objects that kubectl
  applies are stored in etcd (its JSON gateway) and read back from there (apiserver.py);
- the other daemons read their kubeconfig (embedded or file credentials), connect to its
  server verifying the server's certificate against the kubeconfig's CA under the server's
  host name, GET /healthz periodically, log the outcome and keep running when the API is down
  (client.py, daemons.py); kubectl gets and applies over the same client (kubectl.py).
What it does NOT do: schedule, run pods, register nodes, proxy services, or anything else.
"""
