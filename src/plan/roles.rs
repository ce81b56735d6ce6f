//! What each role gets, as the guide's chapters describe it: the worker-node chapter for every
//! Kubernetes node, the control-plane chapter for control nodes (etcd, the API server, the
//! controller manager, the scheduler, the VIP on `lo`, the kubelet-access RBAC), and the load
//! balancer for the gateway (ipvsadm and ldirectord in front of the API servers).
//!
//! Config sources name either a template (`user-data/<name>.j2`), a file of the PKI by the
//! guide's file name (`pki:<file>`, `{name}` being the VM), or `localhost-kubeconfig:<identity>`:
//! that identity's kubeconfig pointing at the API server on the node itself.

use super::{ConfigFile, Directory, InstallRule, RolePlan, Service, Source, Start};
use crate::profile::{Cni, Role};

/// What the role plans depend on besides the role itself.
pub(super) struct RoleInputs<'a> {
    pub cni: Cni,
    /// The etcd release, for the directory its archive unpacks into.
    pub etcd_version: Option<&'a str>,
    pub arch: &'a str,
    /// The first control node in profile order: the one that applies the RBAC bootstrap.
    pub first_control: Option<&'a str>,
}

/// The plan of one role for its VMs.
pub(super) fn role_plan(role: Role, vms: Vec<String>, inputs: &RoleInputs) -> RolePlan {
    let mut plan = RolePlan {
        role,
        vms,
        installs: Vec::new(),
        configs: Vec::new(),
        directories: Vec::new(),
        services: Vec::new(),
        kernel_modules: Vec::new(),
        packages: Vec::new(),
        trust_cluster_ca: false,
    };
    match role {
        Role::Gateway => gateway(&mut plan),
        Role::Worker => node(&mut plan, inputs.cni == Cni::Bridge, false),
        Role::Control => {
            node(&mut plan, inputs.cni == Cni::Bridge, true);
            control(&mut plan, inputs);
        }
    }
    plan
}

fn rule(component: &str, source: Source, dest: &str) -> InstallRule {
    InstallRule {
        component: component.into(),
        source,
        dest: dest.into(),
        mode: 0o755,
    }
}

fn member(path: &str) -> Source {
    Source::Member { path: path.into() }
}

fn cfg(path: &str, source: &str) -> ConfigFile {
    ConfigFile {
        path: path.into(),
        source: source.into(),
        mode: 0o644,
        secret: false,
        only_on: None,
        after_packages: false,
    }
}

fn secret(path: &str, source: &str) -> ConfigFile {
    ConfigFile {
        mode: 0o600,
        secret: true,
        ..cfg(path, source)
    }
}

fn service(name: &str, start: Start) -> Service {
    Service {
        name: name.into(),
        start,
        only_on: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Every Kubernetes node: the worker-node chapter.

/// The container runtime, the kubelet and (with the bridge CNI) kube-proxy and the CNI plugins.
/// On a control node the control plane's units go between containerd and the kubelet.
fn node(plan: &mut RolePlan, bridge: bool, control: bool) {
    plan.installs = vec![
        rule(
            "containerd",
            Source::Dir {
                path: "bin".into(),
                // containerd.service runs the first; the CRI runtime `io.containerd.runc.v2` is
                // the second.
                required: vec!["containerd".into(), "containerd-shim-runc-v2".into()],
            },
            "/bin",
        ),
        rule("runc", Source::Whole, "/usr/local/bin/runc"),
        rule("crictl", member("crictl"), "/usr/local/bin/crictl"),
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        ),
    ];
    if bridge {
        plan.installs.push(rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kube-proxy"),
            "/usr/local/bin/kube-proxy",
        ));
        plan.installs.push(rule(
            "cni-plugins",
            Source::Dir {
                path: String::new(),
                // The plugins 10-bridge.conf and 99-loopback.conf name.
                required: vec!["bridge".into(), "host-local".into(), "loopback".into()],
            },
            "/opt/cni/bin",
        ));
    }

    plan.configs = vec![
        cfg("/etc/modules-load.d/kubernetes.conf", "modules-load.conf"),
        cfg("/etc/sysctl.d/99-kubernetes.conf", "sysctl.conf"),
        cfg("/etc/containerd/config.toml", "containerd-config.toml"),
        cfg(
            "/etc/systemd/system/containerd.service",
            "containerd.service",
        ),
    ];
    if bridge {
        plan.configs.extend([
            cfg("/etc/cni/net.d/10-bridge.conf", "10-bridge.conf"),
            cfg("/etc/cni/net.d/99-loopback.conf", "99-loopback.conf"),
        ]);
    }
    plan.configs.extend([
        cfg(
            "/var/lib/kubelet/kubelet-config.yaml",
            "kubelet-config.yaml",
        ),
        cfg("/etc/systemd/system/kubelet.service", "kubelet.service"),
        cfg("/var/lib/kubernetes/ca.pem", "pki:ca.pem"),
        cfg("/var/lib/kubelet/{name}.pem", "pki:{name}.pem"),
        secret("/var/lib/kubelet/{name}-key.pem", "pki:{name}-key.pem"),
        secret("/var/lib/kubelet/kubeconfig", "pki:{name}.kubeconfig"),
    ]);
    if bridge {
        plan.configs.extend([
            cfg(
                "/var/lib/kube-proxy/kube-proxy-config.yaml",
                "kube-proxy-config.yaml",
            ),
            cfg(
                "/etc/systemd/system/kube-proxy.service",
                "kube-proxy.service",
            ),
            secret(
                "/var/lib/kube-proxy/kubeconfig",
                "pki:kube-proxy.kubeconfig",
            ),
        ]);
    }

    plan.services.push(service("containerd", Start::Restart));
    if control {
        // etcd's members wait for a quorum of control nodes, which may boot later; the API
        // server waits for etcd, the controllers for the API server.
        for s in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            plan.services.push(service(s, Start::NoBlock));
        }
    }
    plan.services.push(service("kubelet", Start::Restart));
    if bridge {
        plan.services.push(service("kube-proxy", Start::Restart));
    }
    plan.kernel_modules = vec!["overlay".into(), "br_netfilter".into()];
}

// ---------------------------------------------------------------------------------------------
// Control nodes: the control-plane chapter.

/// The server binaries of the kubernetes-server tarball a control node installs.
const SERVER_BINARIES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];

/// The binaries of the etcd archive a control node installs (the guide's `etcd*`).
const ETCD_BINARIES: &[&str] = &["etcd", "etcdctl", "etcdutl"];

fn control(plan: &mut RolePlan, inputs: &RoleInputs) {
    control_binaries(plan, inputs);
    control_files(plan);
    if let Some(first) = inputs.first_control {
        kubelet_access_bootstrap(plan, first);
    }
}

/// etcd's binaries and the control plane's, from their archives.
fn control_binaries(plan: &mut RolePlan, inputs: &RoleInputs) {
    if let Some(version) = inputs.etcd_version {
        let dir = format!("etcd-v{version}-linux-{}", inputs.arch);
        for b in ETCD_BINARIES {
            plan.installs.push(rule(
                "etcd",
                member(&format!("{dir}/{b}")),
                &format!("/usr/local/bin/{b}"),
            ));
        }
    }
    for b in SERVER_BINARIES {
        plan.installs.push(rule(
            "kubernetes-server",
            member(&format!("kubernetes/server/bin/{b}")),
            &format!("/usr/local/bin/{b}"),
        ));
    }
}

/// The certificates, kubeconfigs, configs and units of etcd and the control plane.
fn control_files(plan: &mut RolePlan) {
    plan.configs.extend([
        // The VIP sits on `lo`: never answer or announce it in ARP, the gateway owns it.
        cfg("/etc/sysctl.d/50-vip-arp.conf", "vip-arp.conf"),
        cfg("/etc/etcd/ca.pem", "pki:ca.pem"),
        cfg("/etc/etcd/kubernetes.pem", "pki:kubernetes.pem"),
        secret("/etc/etcd/kubernetes-key.pem", "pki:kubernetes-key.pem"),
        cfg("/etc/systemd/system/etcd.service", "etcd.service"),
        secret("/var/lib/kubernetes/ca-key.pem", "pki:ca-key.pem"),
        cfg("/var/lib/kubernetes/kubernetes.pem", "pki:kubernetes.pem"),
        secret(
            "/var/lib/kubernetes/kubernetes-key.pem",
            "pki:kubernetes-key.pem",
        ),
        cfg(
            "/var/lib/kubernetes/service-account.pem",
            "pki:service-account.pem",
        ),
        secret(
            "/var/lib/kubernetes/service-account-key.pem",
            "pki:service-account-key.pem",
        ),
        secret(
            "/var/lib/kubernetes/encryption-config.yaml",
            "pki:encryption-config.yaml",
        ),
        secret(
            "/var/lib/kubernetes/kube-controller-manager.kubeconfig",
            "pki:kube-controller-manager.kubeconfig",
        ),
        secret(
            "/var/lib/kubernetes/kube-scheduler.kubeconfig",
            "pki:kube-scheduler.kubeconfig",
        ),
        // For the RBAC bootstrap: the API server on this node, not through the VIP.
        secret(
            "/var/lib/kubernetes/admin.kubeconfig",
            "localhost-kubeconfig:admin",
        ),
        cfg(
            "/etc/kubernetes/config/kube-scheduler.yaml",
            "kube-scheduler.yaml",
        ),
        cfg(
            "/etc/systemd/system/kube-apiserver.service",
            "kube-apiserver.service",
        ),
        cfg(
            "/etc/systemd/system/kube-controller-manager.service",
            "kube-controller-manager.service",
        ),
        cfg(
            "/etc/systemd/system/kube-scheduler.service",
            "kube-scheduler.service",
        ),
    ]);
    // etcd refuses a data directory others can read.
    plan.directories.push(Directory {
        path: "/var/lib/etcd".into(),
        mode: 0o700,
    });
}

/// The chapter's kubelet-access RBAC, applied once by one node (the first control node) when
/// the API answers; the others would only repeat it.
fn kubelet_access_bootstrap(plan: &mut RolePlan, first: &str) {
    let only = |mut f: ConfigFile| {
        f.only_on = Some(first.to_string());
        f
    };
    plan.configs.extend([
        only(cfg(
            "/etc/kubernetes/imagegen/kubelet-access-rbac.yaml",
            "kubelet-access-rbac.yaml",
        )),
        only(ConfigFile {
            mode: 0o755,
            ..cfg(
                "/usr/local/sbin/imagegen-bootstrap-cluster",
                "bootstrap-cluster.sh",
            )
        }),
        only(cfg(
            "/etc/systemd/system/imagegen-bootstrap-cluster.service",
            "imagegen-bootstrap-cluster.service",
        )),
    ]);
    plan.services.push(Service {
        only_on: Some(first.to_string()),
        ..service("imagegen-bootstrap-cluster", Start::NoBlock)
    });
}

// ---------------------------------------------------------------------------------------------
// The gateway: the API load balancer.

fn gateway(plan: &mut RolePlan) {
    plan.packages = vec!["ipvsadm".into(), "ldirectord".into()];
    plan.trust_cluster_ca = true;
    plan.kernel_modules = vec!["ip_vs".into(), "ip_vs_wrr".into()];
    plan.configs = vec![
        cfg("/etc/modules-load.d/ipvs.conf", "ipvs.conf"),
        ConfigFile {
            // The ldirectord package ships a placeholder ldirectord.cf (a conffile).
            after_packages: true,
            ..cfg("/etc/ha.d/ldirectord.cf", "ldirectord.cf")
        },
    ];
    plan.services = vec![service("ldirectord", Start::WaitActive)];
}
