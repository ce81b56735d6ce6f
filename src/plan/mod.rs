//! The plan: a validated profile applied to one architecture. It says, without touching the
//! disk or the network, which VMs get which files and which artifacts are needed.
//!
//! The plan is the single source of truth for "what a node gets"; later stages decide "how"
//! (download, extract, render, pack). The one file they add is the means to that "how": the
//! first-boot script the seed writes (`seed::FIRST_BOOT_SCRIPT`), which installs the payload.
//!
//! The types and [`plan`] are here; what each role gets is in `roles`, the text of
//! `imagegen plan` in `render`.

mod render;
mod roles;

use std::net::Ipv4Addr;

use anyhow::bail;
use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Serialize, Serializer};

use crate::digest::Digest;
use crate::profile::{
    self, Arch, Cluster, Cni, Component, ComponentKey, Profile, Role, VmResources,
};

pub use render::{json_schema, render_json, render_text, SCHEMA_VERSION};

/// One pinned, downloadable file for one architecture.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
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
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
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
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct InstallRule {
    /// Matches `Artifact::component`.
    pub component: String,
    pub source: Source,
    /// Absolute path on the node: the file for `Whole`/`Member`, the directory for `Dir`.
    pub dest: String,
    /// Unix permission bits, in octal ("0755").
    #[serde(serialize_with = "octal")]
    #[schemars(with = "String", regex(pattern = MODE_PATTERN))]
    pub mode: u32,
}

/// A config file rendered for each VM of a role (`{name}` in `path` and `source` is the VM).
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ConfigFile {
    /// Absolute path on the node.
    pub path: String,
    /// What renders it: a template name under `user-data/`; a file of the PKI by the guide's
    /// name (`pki:ca.pem`, `pki:{name}-key.pem`); or `localhost-kubeconfig:<identity>`, that
    /// identity's kubeconfig for the API server on the node itself (`https://127.0.0.1:<port>`).
    pub source: String,
    /// Unix permission bits, in octal ("0600" for keys and kubeconfigs).
    #[serde(serialize_with = "octal")]
    #[schemars(with = "String", regex(pattern = MODE_PATTERN))]
    pub mode: u32,
    pub secret: bool,
    /// Only this VM of the role gets it (`None`: every VM of the role).
    pub only_on: Option<String>,
    /// Written after cloud-init installed the role's `packages` (write_files `defer`), because a
    /// package ships a file of its own at this path.
    pub after_packages: bool,
}

/// A directory the first-boot script creates with this mode.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Directory {
    pub path: String,
    /// Unix permission bits, in octal ("0700").
    #[serde(serialize_with = "octal")]
    #[schemars(with = "String", regex(pattern = MODE_PATTERN))]
    pub mode: u32,
}

/// How the first-boot script starts a service (after `systemctl enable`).
#[derive(Clone, Copy, Debug, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// `systemctl restart`: returns once systemd has started it.
    Restart,
    /// `systemctl restart --no-block`: queued, never waited for, because it waits for other
    /// nodes (etcd for a quorum of control nodes that may boot later, and what needs etcd).
    NoBlock,
    /// `systemctl restart`, then a bounded wait until `systemctl is-active` says so; the node is
    /// not configured without it.
    WaitActive,
}

/// A systemd unit the first-boot script enables and (re)starts.
#[derive(Clone, Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub start: Start,
    /// Only this VM of the role runs it (`None`: every VM of the role).
    pub only_on: Option<String>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// Unix permission bits as the plan's JSON spells them, for its schema.
const MODE_PATTERN: &str = "^0[0-7]{3}$";

/// Unix permission bits as the plan's JSON spells them: four octal digits ("0755"), as
/// user-data and `chmod` write them.
fn octal<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{mode:04o}"))
}

/// The key Kubernetes and every chart tolerates (the chapter misspells it `node-roles`).
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct VmPlan {
    pub name: String,
    pub id: u32,
    pub role: Role,
    pub mac: String,
    pub address: Ipv4Addr,
    /// Prefix length of the host network, for static addressing.
    pub prefix_len: u8,
    /// vCPUs, memory and disk size of the VM (the profile's `resources` for its role).
    pub resources: VmResources,
    /// The node's pod range (Kubernetes nodes only).
    #[schemars(with = "Option<String>", regex(pattern = profile::CIDR_PATTERN))]
    pub pod_cidr: Option<Ipv4Net>,
    pub taints: Vec<Taint>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct RolePlan {
    pub role: Role,
    pub vms: Vec<String>,
    pub installs: Vec<InstallRule>,
    pub configs: Vec<ConfigFile>,
    pub directories: Vec<Directory>,
    /// systemd units enabled and started, in order.
    pub services: Vec<Service>,
    pub kernel_modules: Vec<String>,
    /// Distribution packages cloud-init installs at first boot (user-data `packages:`), before
    /// the first-boot script runs.
    pub packages: Vec<String>,
    /// The cluster CA joins the node's trusted CAs (user-data `ca_certs`): ldirectord's HTTPS
    /// health checks verify the API servers with it.
    pub trust_cluster_ca: bool,
}

impl RolePlan {
    /// The config files `vm` (of this role) gets.
    pub fn configs_of<'a>(&'a self, vm: &'a str) -> impl Iterator<Item = &'a ConfigFile> {
        self.configs
            .iter()
            .filter(move |c| c.only_on.as_deref().is_none_or(|o| o == vm))
    }

    /// The services `vm` (of this role) runs, in order.
    pub fn services_of<'a>(&'a self, vm: &'a str) -> impl Iterator<Item = &'a Service> {
        self.services
            .iter()
            .filter(move |s| s.only_on.as_deref().is_none_or(|o| o == vm))
    }
}

/// Everything a build of one architecture will produce, as data. `imagegen plan --json`
/// prints this; its field names are an interface.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Plan {
    pub profile: String,
    pub profile_source: String,
    pub arch: Arch,
    pub cluster: Cluster,
    pub vms: Vec<VmPlan>,
    /// Artifacts the roles of this build need, in profile order.
    pub artifacts: Vec<Artifact>,
    /// Pinned but installed by no role of this profile (etcd and the server binaries when it
    /// has no control node).
    pub pinned_only: Vec<Artifact>,
    /// The disk image every VM starts from (`launch`), when the profile pins one for this arch.
    /// No seed carries it and a build never fetches it.
    pub base_image: Option<Artifact>,
    pub roles: Vec<RolePlan>,
}

impl Plan {
    pub fn role(&self, role: Role) -> Option<&RolePlan> {
        self.roles.iter().find(|r| r.role == role)
    }

    pub fn artifact(&self, component: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.component == component)
    }

    /// The control nodes, in profile order (etcd's initial cluster, the API servers).
    pub fn control_nodes(&self) -> impl Iterator<Item = &VmPlan> {
        self.vms.iter().filter(|v| v.role == Role::Control)
    }
}

/// Applies a profile to an architecture.
pub fn plan(profile: &Profile, arch: Arch) -> anyhow::Result<Plan> {
    let needed = |k| component_needed(profile, k);
    check_pinned(profile, arch, &needed)?;
    let (artifacts, pinned_only, base_image) = artifacts_for(profile, arch, &needed);
    let vms = vm_plans(profile);
    let roles = role_plans(profile, arch, &vms);
    Ok(Plan {
        profile: profile.name.clone(),
        profile_source: profile.source.clone(),
        arch,
        cluster: profile.cluster.clone(),
        vms,
        artifacts,
        pinned_only,
        base_image,
        roles,
    })
}

/// Whether a build downloads this component: the CNI plugins with the bridge CNI only, etcd and
/// the server tarball when there are control nodes; the base image never (launchers fetch it).
fn component_needed(profile: &Profile, k: ComponentKey) -> bool {
    match k {
        ComponentKey::CniPlugins => profile.cluster.cni == Cni::Bridge,
        ComponentKey::Etcd | ComponentKey::KubernetesServer => {
            profile.nodes.iter().any(|n| n.role == Role::Control)
        }
        ComponentKey::BaseImage => false,
        _ => true,
    }
}

/// Every component this build needs has a digest for `arch`.
fn check_pinned(
    profile: &Profile,
    arch: Arch,
    needed: &dyn Fn(ComponentKey) -> bool,
) -> anyhow::Result<()> {
    let missing: Vec<String> = profile
        .unpinned_for(arch)
        .into_iter()
        .filter(|k| needed(*k))
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: no {arch} digest pinned for {} (add components.<name>.digests.{arch})",
            profile.source,
            missing.join(", ")
        );
    }
    Ok(())
}

/// The artifacts a build downloads, those pinned for `arch` it does not need, and the base image.
fn artifacts_for(
    profile: &Profile,
    arch: Arch,
    needed: &dyn Fn(ComponentKey) -> bool,
) -> (Vec<Artifact>, Vec<Artifact>, Option<Artifact>) {
    let mut artifacts = Vec::new();
    let mut pinned_only = Vec::new();
    let mut base_image = None;
    for c in &profile.components {
        let Some(digest) = c.digests.get(&arch) else {
            continue;
        };
        let a = artifact(c, arch, digest);
        if c.key == ComponentKey::BaseImage {
            base_image = Some(a);
        } else if needed(c.key) {
            artifacts.push(a);
        } else {
            pinned_only.push(a);
        }
    }
    (artifacts, pinned_only, base_image)
}

fn vm_plans(profile: &Profile) -> Vec<VmPlan> {
    let host = profile.cluster.host_network;
    profile
        .nodes
        .iter()
        .map(|n| VmPlan {
            name: n.name.clone(),
            id: n.id,
            role: n.role,
            mac: n.mac.clone(),
            address: n.address,
            prefix_len: host.prefix_len(),
            resources: profile.resources.of(n.role),
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
        .collect()
}

/// One plan per role that has members, in the order gateway, control, worker.
fn role_plans(profile: &Profile, arch: Arch, vms: &[VmPlan]) -> Vec<RolePlan> {
    let inputs = roles::RoleInputs {
        cni: profile.cluster.cni,
        etcd_version: profile
            .component(ComponentKey::Etcd)
            .map(|c| c.version.as_str()),
        arch: arch.as_str(),
        first_control: vms
            .iter()
            .find(|v| v.role == Role::Control)
            .map(|v| v.name.as_str()),
    };
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
        roles.push(roles::role_plan(role, members, &inputs));
    }
    roles
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
        assert!(p.pinned_only.is_empty(), "control nodes install etcd");
        let worker = p.role(Role::Worker).unwrap();
        assert!(worker.services.iter().any(|s| s.name == "kube-proxy"));
        let gateway = p.role(Role::Gateway).unwrap();
        assert!(gateway.installs.is_empty());
        assert_eq!(gateway.packages, ["ipvsadm", "ldirectord"]);
        assert!(gateway.trust_cluster_ca);
    }

    #[test]
    fn control_nodes_run_the_control_plane_and_control0_bootstraps() {
        let p = plan(&builtin(), Arch::Arm64).unwrap();
        let control = p.role(Role::Control).unwrap();
        let worker = p.role(Role::Worker).unwrap();
        assert_ne!(control.installs, worker.installs, "two packs");
        for b in ["etcd", "etcdctl", "etcdutl", "kube-apiserver", "kubectl"] {
            assert!(
                control
                    .installs
                    .iter()
                    .any(|i| i.dest == format!("/usr/local/bin/{b}")),
                "{b}"
            );
        }
        assert!(control.installs.iter().any(|i| i.source
            == Source::Member {
                path: "etcd-v3.5.15-linux-arm64/etcdutl".into()
            }));
        let names: Vec<&str> = control
            .services_of("control0")
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                "containerd",
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kubelet",
                "kube-proxy",
                "imagegen-bootstrap-cluster"
            ]
        );
        assert!(!control
            .services_of("control1")
            .any(|s| s.name == "imagegen-bootstrap-cluster"));
        assert!(control
            .configs_of("control0")
            .any(|c| c.path.contains("kubelet-access-rbac")));
        assert!(!control
            .configs_of("control2")
            .any(|c| c.path.contains("kubelet-access-rbac")));
        assert_eq!(
            control.directories,
            [Directory {
                path: "/var/lib/etcd".into(),
                mode: 0o700
            }]
        );
        let etcd = control.services.iter().find(|s| s.name == "etcd").unwrap();
        assert_eq!(etcd.start, Start::NoBlock);
        assert!(p.artifact("kubernetes-server").is_some());
        assert!(p.artifact("etcd").is_some());
    }

    #[test]
    fn cilium_drops_cni_plugins_and_kube_proxy() {
        let text = profile::BUILTIN_YAML.replace("cni: bridge ", "cni: cilium ");
        let prof = profile::parse(&text, "cilium").unwrap();
        let p = plan(&prof, Arch::Amd64).unwrap();
        assert!(p.artifact("cni-plugins").is_none());
        let w = p.role(Role::Worker).unwrap();
        assert!(!w.services.iter().any(|s| s.name == "kube-proxy"));
        assert!(!w.configs.iter().any(|c| c.path.contains("cni")));
        assert!(!w.installs.iter().any(|i| i.dest.contains("kube-proxy")));
    }
}
