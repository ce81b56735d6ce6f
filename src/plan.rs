//! The plan: a validated profile applied to one architecture. It says, without touching the
//! disk or the network, which VMs get which files and which artifacts are needed.
//!
//! The plan is the single source of truth for "what a node gets"; later stages decide "how"
//! (download, extract, render, pack). The one file they add is the means to that "how": the
//! first-boot script the seed writes (`seed::FIRST_BOOT_SCRIPT`), which installs the payload.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use anyhow::bail;
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::digest::Digest;
use crate::profile::{self, Arch, Cluster, Cni, Component, ComponentKey, Profile, Role};

/// One pinned, downloadable file for one architecture.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Artifact {
    /// Component key in the profile, e.g. `containerd`, `kubernetes-node`.
    pub component: String,
    pub version: String,
    /// Upstream URL with every placeholder filled.
    pub url: String,
    /// Last path segment of `url`.
    pub file_name: String,
    pub digest: Digest,
    /// Exact size in bytes when the profile pins it (a larger download fails).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// Where an installed file comes from inside its artifact.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The artifact itself is the file (e.g. `runc.arm64`).
    Whole,
    /// One regular-file member of a .tar.gz, by its path in the archive; a leading `./` is
    /// ignored on both sides.
    Member { path: String },
    /// Every regular file directly inside this directory of a .tar.gz (`bin` for containerd;
    /// empty for the archive root, as in the CNI plugins archive).
    Dir {
        path: String,
        /// Files the directory must hold (what the node's services and configs run): a build
        /// whose archive lacks one, or holds it as anything but a regular file, fails.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        required: Vec<String>,
    },
}

/// One file (or, for `Source::Dir`, one set of files) a node role gets from an artifact.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct InstallRule {
    /// Matches `Artifact::component`.
    pub component: String,
    pub source: Source,
    /// Absolute path on the node: the file for `Whole`/`Member`, the directory for `Dir`.
    pub dest: String,
    /// Unix permission bits.
    pub mode: u32,
}

/// A config file rendered from a template for each VM of a role.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute path on the node.
    pub path: String,
    /// What renders it: a template name under `user-data/`, or a PKI item (`pki:...`).
    pub source: String,
    /// Quoted octal in user-data; 0600 for keys and kubeconfigs.
    pub mode: u32,
    pub secret: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// The key Kubernetes and every chart tolerates (the chapter misspells it `node-roles`).
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

#[derive(Clone, Debug, Serialize)]
pub struct VmPlan {
    pub name: String,
    pub id: u32,
    pub role: Role,
    pub mac: String,
    pub address: Ipv4Addr,
    /// Prefix length of the host network, for static addressing.
    pub prefix_len: u8,
    pub pod_cidr: Option<Ipv4Net>,
    pub taints: Vec<Taint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RolePlan {
    pub role: Role,
    pub vms: Vec<String>,
    pub installs: Vec<InstallRule>,
    pub configs: Vec<ConfigFile>,
    /// systemd units enabled and started, in order.
    pub services: Vec<String>,
    pub kernel_modules: Vec<String>,
}

/// Everything a build of one architecture will produce, as data. `imagegen plan --json`
/// prints this; its field names are an interface.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub profile: String,
    pub profile_source: String,
    pub arch: Arch,
    pub cluster: Cluster,
    pub vms: Vec<VmPlan>,
    /// Artifacts the roles of this build need, in profile order.
    pub artifacts: Vec<Artifact>,
    /// Pinned but not installed by any role yet (etcd until the control-plane issue).
    pub pinned_only: Vec<Artifact>,
    pub roles: Vec<RolePlan>,
}

impl Plan {
    pub fn role(&self, role: Role) -> Option<&RolePlan> {
        self.roles.iter().find(|r| r.role == role)
    }

    pub fn artifact(&self, component: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.component == component)
    }
}

/// Applies a profile to an architecture.
pub fn plan(profile: &Profile, arch: Arch) -> anyhow::Result<Plan> {
    let missing = profile.unpinned_for(arch);
    let cni = profile.cluster.cni;
    let needed = |k: ComponentKey| -> bool {
        match k {
            ComponentKey::CniPlugins => cni == Cni::Bridge,
            ComponentKey::Etcd => false,
            _ => true,
        }
    };
    let missing_needed: Vec<_> = missing.iter().filter(|k| needed(**k)).collect();
    if !missing_needed.is_empty() {
        bail!(
            "{}: no {arch} digest pinned for {} (add components.<name>.digests.{arch})",
            profile.source,
            missing_needed
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let mut artifacts = Vec::new();
    let mut pinned_only = Vec::new();
    for c in &profile.components {
        let Some(digest) = c.digests.get(&arch) else {
            continue;
        };
        let a = artifact(c, arch, digest);
        if needed(c.key) {
            artifacts.push(a);
        } else {
            pinned_only.push(a);
        }
    }

    let host = profile.cluster.host_network;
    let vms: Vec<VmPlan> = profile
        .nodes
        .iter()
        .map(|n| VmPlan {
            name: n.name.clone(),
            id: n.id,
            role: n.role,
            mac: n.mac.clone(),
            address: n.address,
            prefix_len: host.prefix_len(),
            pod_cidr: if n.role.is_kubernetes_node() {
                profile.pod_cidr_of(n.id)
            } else {
                None
            },
            taints: if n.role == Role::Control {
                vec![Taint {
                    key: CONTROL_PLANE_TAINT.into(),
                    value: String::new(),
                    effect: "NoSchedule".into(),
                }]
            } else {
                Vec::new()
            },
        })
        .collect();

    let mut roles = Vec::new();
    for role in [Role::Gateway, Role::Control, Role::Worker] {
        let members: Vec<String> = vms
            .iter()
            .filter(|v| v.role == role)
            .map(|v| v.name.clone())
            .collect();
        if members.is_empty() {
            continue;
        }
        roles.push(role_plan(role, members, cni));
    }

    Ok(Plan {
        profile: profile.name.clone(),
        profile_source: profile.source.clone(),
        arch,
        cluster: profile.cluster.clone(),
        vms,
        artifacts,
        pinned_only,
        roles,
    })
}

fn role_plan(role: Role, vms: Vec<String>, cni: Cni) -> RolePlan {
    if !role.is_kubernetes_node() {
        // The gateway's load balancer comes with the control-plane work; today it gets the
        // common seed (host name, network, SSH keys) and nothing else.
        return RolePlan {
            role,
            vms,
            installs: Vec::new(),
            configs: Vec::new(),
            services: Vec::new(),
            kernel_modules: Vec::new(),
        };
    }
    let bridge = cni == Cni::Bridge;
    let installs = install_rules(bridge);
    let configs = config_files(bridge);
    let mut services = vec!["containerd".to_string(), "kubelet".to_string()];
    if bridge {
        services.push("kube-proxy".into());
    }
    RolePlan {
        role,
        vms,
        installs,
        configs,
        services,
        kernel_modules: vec!["overlay".into(), "br_netfilter".into()],
    }
}

/// The binaries a Kubernetes node installs from the artifacts (kube-proxy and the CNI plugins
/// only with the bridge CNI).
fn install_rules(bridge: bool) -> Vec<InstallRule> {
    let rule = |component: &str, source: Source, dest: &str| InstallRule {
        component: component.into(),
        source,
        dest: dest.into(),
        mode: 0o755,
    };
    let member = |p: &str| Source::Member { path: p.into() };
    let mut installs = vec![
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
        installs.push(rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kube-proxy"),
            "/usr/local/bin/kube-proxy",
        ));
        installs.push(rule(
            "cni-plugins",
            Source::Dir {
                path: String::new(),
                // The plugins 10-bridge.conf and 99-loopback.conf name.
                required: vec!["bridge".into(), "host-local".into(), "loopback".into()],
            },
            "/opt/cni/bin",
        ));
    }
    installs
}

/// The config files a Kubernetes node gets, rendered or taken from the PKI.
fn config_files(bridge: bool) -> Vec<ConfigFile> {
    let cfg = |path: &str, source: &str| ConfigFile {
        path: path.into(),
        source: source.into(),
        mode: 0o644,
        secret: false,
    };
    let secret = |path: &str, source: &str| ConfigFile {
        path: path.into(),
        source: source.into(),
        mode: 0o600,
        secret: true,
    };
    let mut configs = vec![
        cfg("/etc/modules-load.d/kubernetes.conf", "modules-load.conf"),
        cfg("/etc/sysctl.d/99-kubernetes.conf", "sysctl.conf"),
        cfg("/etc/containerd/config.toml", "containerd-config.toml"),
        cfg(
            "/etc/systemd/system/containerd.service",
            "containerd.service",
        ),
    ];
    if bridge {
        configs.push(cfg("/etc/cni/net.d/10-bridge.conf", "10-bridge.conf"));
        configs.push(cfg("/etc/cni/net.d/99-loopback.conf", "99-loopback.conf"));
    }
    configs.extend([
        cfg(
            "/var/lib/kubelet/kubelet-config.yaml",
            "kubelet-config.yaml",
        ),
        cfg("/etc/systemd/system/kubelet.service", "kubelet.service"),
        cfg("/var/lib/kubernetes/ca.pem", "pki:ca"),
        cfg("/var/lib/kubelet/{name}.pem", "pki:node-cert"),
        secret("/var/lib/kubelet/{name}-key.pem", "pki:node-key"),
        secret("/var/lib/kubelet/kubeconfig", "pki:node-kubeconfig"),
    ]);
    if bridge {
        configs.extend([
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
                "pki:kube-proxy-kubeconfig",
            ),
        ]);
    }
    configs
}

/// Every artifact a profile pins, for every architecture it pins (what `cache import` matches).
pub fn all_artifacts(profile: &Profile) -> Vec<Artifact> {
    profile
        .components
        .iter()
        .flat_map(|c| c.digests.iter().map(|(arch, d)| artifact(c, *arch, d)))
        .collect()
}

/// The artifact of component `c` for `arch`, pinned by `digest`.
fn artifact(c: &Component, arch: Arch, digest: &Digest) -> Artifact {
    let url = profile::expand_url(&c.url_template, &c.version, arch);
    Artifact {
        component: c.key.to_string(),
        version: c.version.clone(),
        file_name: url.rsplit('/').next().unwrap_or(&url).to_string(),
        url,
        digest: digest.clone(),
        size: c.sizes.get(&arch).copied(),
    }
}

/// The human-readable form of `imagegen plan`.
pub fn render_text(plan: &Plan) -> String {
    let mut s = String::new();
    render_cluster(&mut s, plan);
    render_vms(&mut s, plan);
    render_components(&mut s, plan);
    for r in &plan.roles {
        render_role(&mut s, r);
    }
    s
}

// Writing to a String cannot fail: the render functions ignore `writeln!`'s Ok.

fn render_cluster(s: &mut String, plan: &Plan) {
    let c = &plan.cluster;
    let _ = writeln!(
        s,
        "profile {} ({}), arch {}",
        plan.profile, plan.profile_source, plan.arch
    );
    let _ = writeln!(
        s,
        "cluster: pods {} (one /{} per node), services {}, DNS {}, domain {}, API {}, hosts {} via {} ({:?}), CNI {:?}",
        c.pod_cidr,
        plan.vms.iter().find_map(|v| v.pod_cidr).map(|n| n.prefix_len()).unwrap_or(0),
        c.service_cidr,
        c.cluster_dns,
        c.cluster_domain,
        c.api_endpoint,
        c.host_network,
        c.gateway,
        c.addressing,
        c.cni
    );
}

fn render_vms(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\nVMs:");
    let _ = writeln!(
        s,
        "  {:<10} {:>3}  {:<8} {:<17}  {:<15}  {:<13}  taints",
        "name", "id", "role", "mac", "address", "pod cidr"
    );
    for v in &plan.vms {
        let taints: Vec<String> = v
            .taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        let _ = writeln!(
            s,
            "  {:<10} {:>3}  {:<8} {:<17}  {:<15}  {:<13}  {}",
            v.name,
            v.id,
            v.role.as_str(),
            v.mac,
            v.address,
            v.pod_cidr
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            if taints.is_empty() {
                "-".to_string()
            } else {
                taints.join(",")
            }
        );
    }
}

fn render_components(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\ncomponents ({}):", plan.arch);
    for a in plan.artifacts.iter().chain(&plan.pinned_only) {
        let note = if plan.pinned_only.contains(a) {
            "  (pinned, not installed yet)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {} {}{}\n    {}\n    {}",
            a.component, a.version, note, a.url, a.digest
        );
    }
}

fn render_role(s: &mut String, r: &RolePlan) {
    let _ = writeln!(s, "\nrole {} ({}):", r.role, r.vms.join(", "));
    if r.installs.is_empty() && r.configs.is_empty() {
        let _ = writeln!(s, "  host name, network and SSH keys only");
        return;
    }
    for i in &r.installs {
        let from = match &i.source {
            Source::Whole => String::new(),
            Source::Member { path } => format!(":{path}"),
            Source::Dir { path, .. } => {
                format!(":{}/*", if path.is_empty() { "." } else { path })
            }
        };
        let _ = writeln!(
            s,
            "  {:04o} {:<40} <- {}{}",
            i.mode,
            if matches!(i.source, Source::Dir { .. }) {
                format!("{}/*", i.dest)
            } else {
                i.dest.clone()
            },
            i.component,
            from
        );
    }
    for f in &r.configs {
        let _ = writeln!(
            s,
            "  {:04o} {:<40} <- {}{}",
            f.mode,
            f.path,
            f.source,
            if f.secret { " (secret)" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "  services: {}; kernel modules: {}",
        r.services.join(", "),
        r.kernel_modules.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Profile {
        profile::parse(profile::BUILTIN_YAML, "builtin").unwrap()
    }

    #[test]
    fn default_plan_matches_the_guide() {
        let p = plan(&builtin(), Arch::Arm64).unwrap();
        let w = p.vms.iter().find(|v| v.name == "worker1").unwrap();
        assert_eq!(w.pod_cidr.unwrap().to_string(), "10.5.0.0/16");
        assert!(w.taints.is_empty());
        let c = p.vms.iter().find(|v| v.name == "control0").unwrap();
        assert_eq!(c.taints[0].key, "node-role.kubernetes.io/control-plane");
        assert_eq!(
            p.artifact("containerd").unwrap().url,
            "https://github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz"
        );
        assert_eq!(p.pinned_only.len(), 1, "etcd is pinned, not installed");
        let worker = p.role(Role::Worker).unwrap();
        assert!(worker.services.contains(&"kube-proxy".to_string()));
        assert!(p.role(Role::Gateway).unwrap().installs.is_empty());
    }

    #[test]
    fn cilium_drops_cni_plugins_and_kube_proxy() {
        let text = profile::BUILTIN_YAML.replace("cni: bridge ", "cni: cilium ");
        let prof = profile::parse(&text, "cilium").unwrap();
        let p = plan(&prof, Arch::Amd64).unwrap();
        assert!(p.artifact("cni-plugins").is_none());
        let w = p.role(Role::Worker).unwrap();
        assert!(!w.services.iter().any(|s| s == "kube-proxy"));
        assert!(!w.configs.iter().any(|c| c.path.contains("cni")));
        assert!(!w.installs.iter().any(|i| i.dest.contains("kube-proxy")));
    }
}
