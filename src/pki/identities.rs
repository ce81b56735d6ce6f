//! Who gets which certificate: the table of identities `genauth.sh` makes (its `*-csr.json`),
//! derived from the plan, and the PKI files the plan's nodes are given.
//!
//! An identity is data: a file stem (the guide's names: `<stem>.pem`, `<stem>-key.pem`,
//! `<stem>.kubeconfig`), the subject (CN and O, which the API server reads as user and group),
//! the subject alternative names, and whether it has a kubeconfig. `issue` turns each one into a
//! certificate the same way.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use crate::plan::Plan;

/// One subject alternative name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum San {
    Dns(String),
    Ip(IpAddr),
}

/// One certificate (and key) of the PKI.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub stem: String,
    pub common_name: String,
    pub organization: String,
    pub sans: Vec<San>,
    /// A kubeconfig `<stem>.kubeconfig` with `server` = the profile's API endpoint.
    pub kubeconfig: bool,
}

/// The encryption config of the API servers (`genenckey.sh`).
pub(crate) const ENCRYPTION_CONFIG: &str = "encryption-config.yaml";

/// The identity the host's `admin.kubeconfig` and the control nodes' RBAC bootstrap use.
pub(crate) const ADMIN: &str = "admin";

fn identity(stem: &str, cn: &str, o: &str, sans: Vec<San>, kubeconfig: bool) -> Identity {
    Identity {
        stem: stem.into(),
        common_name: cn.into(),
        organization: o.into(),
        sans,
        kubeconfig,
    }
}

/// Every identity of the cluster, in `genauth.sh`'s order: the API server (also etcd's peer
/// and client certificate), admin, the scheduler, the controller manager, kube-proxy, the
/// service-account signer, then each Kubernetes node in profile order.
pub(crate) fn all(plan: &Plan) -> Vec<Identity> {
    let mut out = vec![
        identity(
            "kubernetes",
            "kubernetes",
            "Kubernetes",
            api_server_sans(plan),
            false,
        ),
        // system:masters: the group RBAC gives every right.
        identity(ADMIN, "admin", "system:masters", Vec::new(), true),
        identity(
            "kube-scheduler",
            "system:kube-scheduler",
            "system:kube-scheduler",
            Vec::new(),
            true,
        ),
        identity(
            "kube-controller-manager",
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            Vec::new(),
            true,
        ),
        identity(
            "kube-proxy",
            "system:kube-proxy",
            "system:node-proxier",
            Vec::new(),
            true,
        ),
        identity(
            "service-account",
            "service-accounts",
            "Kubernetes",
            Vec::new(),
            false,
        ),
    ];
    let domain = &plan.cluster.host_domain;
    for vm in plan.vms.iter().filter(|v| v.role.is_kubernetes_node()) {
        // The Node authorizer: user system:node:<name> in group system:nodes.
        out.push(identity(
            &vm.name,
            &format!("system:node:{}", vm.name),
            "system:nodes",
            vec![
                San::Dns(vm.name.clone()),
                San::Dns(format!("{}.{domain}", vm.name)),
                San::Ip(vm.address.into()),
            ],
            true,
        ));
    }
    out
}

/// The names the API server (and etcd) answer to: the first Service IP (what pods reach as
/// `kubernetes.default`), the VIP, each control node by address and name, the in-cluster names,
/// the API endpoint's host, and localhost; each once.
fn api_server_sans(plan: &Plan) -> Vec<San> {
    let c = &plan.cluster;
    let first_service_ip = Ipv4Addr::from(u32::from(c.service_cidr.network()).saturating_add(1));
    let mut sans = vec![San::Ip(first_service_ip.into()), San::Ip(c.api_vip.into())];
    for vm in plan.control_nodes() {
        sans.push(San::Ip(vm.address.into()));
    }
    for vm in plan.control_nodes() {
        sans.push(San::Dns(vm.name.clone()));
        sans.push(San::Dns(format!("{}.{}", vm.name, c.host_domain)));
    }
    for name in [
        "kubernetes".to_string(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        "kubernetes.default.svc.cluster".into(),
        format!("kubernetes.default.svc.{}", c.cluster_domain),
        format!("kubernetes.{}", c.host_domain),
        "localhost".into(),
    ] {
        sans.push(San::Dns(name));
    }
    sans.push(San::Ip(Ipv4Addr::LOCALHOST.into()));
    sans.push(match c.api_host.parse::<Ipv4Addr>() {
        Ok(ip) => San::Ip(ip.into()),
        Err(_) => San::Dns(c.api_host.clone()),
    });
    let mut seen = Vec::new();
    sans.retain(|s| {
        let new = !seen.contains(s);
        seen.push(s.clone());
        new
    });
    sans
}

/// The PKI files the plan's VMs are given (`pki:<file>` sources, and the certificate and key
/// behind each `localhost-kubeconfig:<identity>`), plus the CA and the admin credentials for the
/// host's kubeconfig.
pub(crate) fn files_needed(plan: &Plan) -> BTreeSet<String> {
    let mut out = BTreeSet::from(["ca.pem".to_string()]);
    let mut identity_pair = |id: &str| {
        out.insert(format!("{id}.pem"));
        out.insert(format!("{id}-key.pem"));
    };
    identity_pair(ADMIN);
    for role in &plan.roles {
        for vm in &role.vms {
            for cf in role.configs_of(vm) {
                let source = cf.source.replace("{name}", vm);
                if let Some(file) = source.strip_prefix("pki:") {
                    out.insert(file.to_string());
                } else if let Some(id) = source.strip_prefix("localhost-kubeconfig:") {
                    out.insert(format!("{id}.pem"));
                    out.insert(format!("{id}-key.pem"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{self, Arch};

    fn plan() -> Plan {
        let p = profile::parse(profile::BUILTIN_YAML, "builtin").unwrap();
        crate::plan::plan(&p, Arch::Arm64).unwrap()
    }

    #[test]
    fn the_api_server_answers_to_every_name_once() {
        let ids = all(&plan());
        let k = ids.iter().find(|i| i.stem == "kubernetes").unwrap();
        let dns: Vec<&str> = k
            .sans
            .iter()
            .filter_map(|s| match s {
                San::Dns(d) => Some(d.as_str()),
                San::Ip(_) => None,
            })
            .collect();
        for n in [
            "control1.kubenet",
            "kubernetes.default.svc.cluster.local",
            "kubernetes.kubenet",
            "localhost",
        ] {
            assert!(dns.contains(&n), "{n}: {dns:?}");
        }
        assert_eq!(dns.iter().filter(|d| **d == "kubernetes").count(), 1);
        assert_eq!(k.sans[0], San::Ip("10.32.0.1".parse().unwrap()));
        assert_eq!(k.sans[1], San::Ip("192.168.1.21".parse().unwrap()));
        assert_eq!(
            ids.len(),
            6 + 6,
            "six cluster identities and one per Kubernetes node"
        );
    }

    #[test]
    fn files_needed_follow_the_plan() {
        let files = files_needed(&plan());
        for f in [
            "ca.pem",
            "ca-key.pem",
            "kubernetes-key.pem",
            "worker2.kubeconfig",
            "control0-key.pem",
            "encryption-config.yaml",
            "admin-key.pem",
            "kube-proxy.kubeconfig",
        ] {
            assert!(files.contains(f), "{f}: {files:?}");
        }
        assert!(!files.contains("gateway.pem"));
        assert!(
            !files.contains("kube-proxy.pem"),
            "kube-proxy gets its kubeconfig only"
        );
    }
}
