//! The cluster profile: strict YAML in, a validated [`Profile`] out.
//!
//! Parsing is two passes. serde-saphyr reads the file format (`file`) and rejects wrong types
//! and duplicate keys with a line and column, while every unknown key is collected (`keys`, placed
//! by `source`); then `validate` checks the meaning (uniqueness, ranges, digests, URL
//! placeholders). Every problem is reported at once, each with the location of the value and its
//! source line (`error`).

mod dhcp;
mod error;
mod file;
mod keys;
mod reserved;
mod resources;
mod source;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil;

pub use dhcp::dhcp_range;
pub(crate) use error::yaml_reason;
pub use error::{Problem, ProfileError};
pub use reserved::{API_NAME, HOST_NAME, RESERVED_NODE_NAMES};
pub use resources::{Resources, Size, VmResources};

/// The guide's cluster, compiled in so `imagegen build` works from any directory.
pub const BUILTIN_NAME: &str = "kthw-1.31";
pub const BUILTIN_YAML: &str = include_str!("../../profiles/kthw-1.31.yaml");

/// Placeholders a component URL template may use.
pub const URL_PLACEHOLDERS: &[&str] = &["version", "arch"];

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Arm64,
    Amd64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::Amd64 => "amd64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Gateway,
    Control,
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Control => "control",
            Role::Worker => "worker",
        }
    }

    /// Control nodes run kubelet too (the guide's "pseudo-workers"), tainted.
    pub fn is_kubernetes_node(self) -> bool {
        matches!(self, Role::Control | Role::Worker)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    Dhcp,
    Static,
}

impl Addressing {
    /// The profile's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Addressing::Dhcp => "dhcp",
            Addressing::Static => "static",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// CNI reference plugins with the bridge config, plus kube-proxy (the guide's default).
    Bridge,
    /// The guide's `USE_CILIUM`: no CNI plugins or configs, no kube-proxy.
    Cilium,
}

impl Cni {
    /// The profile's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Cni::Bridge => "bridge",
            Cni::Cilium => "cilium",
        }
    }
}

/// Components the node contract knows how to install. A profile pins each by this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ComponentKey {
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "runc")]
    Runc,
    #[serde(rename = "crictl")]
    Crictl,
    #[serde(rename = "cni-plugins")]
    CniPlugins,
    #[serde(rename = "kubernetes-node")]
    KubernetesNode,
    #[serde(rename = "kubernetes-server")]
    KubernetesServer,
    #[serde(rename = "etcd")]
    Etcd,
    /// The Ubuntu cloud image every VM's disk starts from (`launch`); no seed carries it.
    #[serde(rename = "base-image")]
    BaseImage,
}

impl ComponentKey {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKey::Containerd => "containerd",
            ComponentKey::Runc => "runc",
            ComponentKey::Crictl => "crictl",
            ComponentKey::CniPlugins => "cni-plugins",
            ComponentKey::KubernetesNode => "kubernetes-node",
            ComponentKey::KubernetesServer => "kubernetes-server",
            ComponentKey::Etcd => "etcd",
            ComponentKey::BaseImage => "base-image",
        }
    }
}

impl fmt::Display for ComponentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// The validated model.

/// An IPv4 network in CIDR notation (`10.0.0.0/12`), for the JSON schema of the plan.
pub(crate) const CIDR_PATTERN: &str = r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$";

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub name: String,
    /// Where it came from: a path, or `<built-in kthw-1.31>`.
    pub source: String,
    pub cluster: Cluster,
    pub nodes: Vec<Node>,
    pub components: Vec<Component>,
    pub resources: Resources,
    pub first_boot: FirstBoot,
}

/// How a node's first-boot script downloads its binaries (`--payload fetch`): each download is
/// tried `fetch_attempts` times, `fetch_backoff_seconds` apart at first and twice as long after
/// each failure (at most [`FirstBoot::MAX_BACKOFF_SECONDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct FirstBoot {
    pub fetch_attempts: u32,
    pub fetch_backoff_seconds: u32,
}

impl FirstBoot {
    /// About ten minutes of trying: time for a host's network (DHCP, NAT, a mirror) to come up
    /// after the VMs did.
    pub const DEFAULT: FirstBoot = FirstBoot {
        fetch_attempts: 8,
        fetch_backoff_seconds: 5,
    };
    /// The longest wait between two attempts.
    pub const MAX_BACKOFF_SECONDS: u32 = 300;
    pub const MAX_ATTEMPTS: u32 = 100;
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Cluster {
    #[schemars(with = "String", regex(pattern = CIDR_PATTERN))]
    pub pod_cidr: Ipv4Net,
    pub node_pod_prefix: u8,
    #[schemars(with = "String", regex(pattern = CIDR_PATTERN))]
    pub service_cidr: Ipv4Net,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub api_endpoint: String,
    /// The host part of `api_endpoint`: a host name or an IPv4 address.
    pub api_host: String,
    /// The port of `api_endpoint` (443 when it names none): kube-apiserver's secure port.
    pub api_port: u16,
    /// The API load balancer's virtual IP: on the gateway's NIC and on every control node's `lo`.
    pub api_vip: Ipv4Addr,
    /// The DNS domain of the host network (the guide's `kubenet`): `<node>.<host_domain>`.
    pub host_domain: String,
    #[schemars(with = "String", regex(pattern = CIDR_PATTERN))]
    pub host_network: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    pub addressing: Addressing,
    pub cni: Cni,
    /// The CNI spec version written into the CNI configs (`cniVersion`).
    pub cni_spec_version: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub name: String,
    pub id: u32,
    pub role: Role,
    /// Lowercase, colon-separated.
    pub mac: String,
    pub address: Ipv4Addr,
}

#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub key: ComponentKey,
    pub version: String,
    pub url_template: String,
    pub digests: BTreeMap<Arch, Digest>,
    /// Exact download size per architecture, where the profile pins one.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sizes: BTreeMap<Arch, u64>,
}

impl Profile {
    pub fn component(&self, key: ComponentKey) -> Option<&Component> {
        self.components.iter().find(|c| c.key == key)
    }

    /// The pod CIDR of node `id`: the `id`-th subnet of the pod range at `node_pod_prefix`.
    pub fn pod_cidr_of(&self, id: u32) -> Option<Ipv4Net> {
        nth_subnet(self.cluster.pod_cidr, self.cluster.node_pod_prefix, id)
    }

    /// The components that pin no digest for `arch` (a build for `arch` cannot fetch them).
    pub fn unpinned_for(&self, arch: Arch) -> BTreeSet<ComponentKey> {
        self.components
            .iter()
            .filter(|c| !c.digests.contains_key(&arch))
            .map(|c| c.key)
            .collect()
    }
}

/// The `n`-th subnet of length `prefix` inside `range`, if there is one.
fn nth_subnet(range: Ipv4Net, prefix: u8, n: u32) -> Option<Ipv4Net> {
    let bits = prefix.checked_sub(range.prefix_len())?;
    if bits > 31 || (n as u64) >= (1u64 << bits) || prefix > 32 {
        return None;
    }
    let step = 1u64 << (32 - prefix as u32);
    let base = u64::from(u32::from(range.network())) + n as u64 * step;
    Ipv4Net::new(Ipv4Addr::from(base as u32), prefix).ok()
}

/// How many subnets of length `prefix` the range holds (0 when none fits).
fn subnet_capacity(range: Ipv4Net, prefix: u8) -> u64 {
    match prefix.checked_sub(range.prefix_len()) {
        Some(bits) if bits < 32 && prefix <= 32 => 1u64 << bits,
        _ => 0,
    }
}

/// Loads the built-in profile or the file at `path`. A profile that does not parse or validate
/// is a [`ProfileError`] (callers may downcast to print it as is); a file that cannot be read is
/// an error naming it, with the cause.
pub fn load(path: Option<&camino::Utf8Path>) -> anyhow::Result<Profile> {
    match path {
        None => {
            parse(BUILTIN_YAML, &format!("<built-in {BUILTIN_NAME}>")).map_err(anyhow::Error::new)
        }
        Some(p) => {
            let text = fsutil::read_to_string(p.as_std_path()).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read profile {p}: {}",
                    fsutil::os_reason(&e, p.as_std_path())
                )
            })?;
            parse(&text, p.as_str()).map_err(anyhow::Error::new)
        }
    }
}

/// Parses and validates profile text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    parse_problems(text, file).map_err(|mut e| {
        e.text = text.to_string();
        e
    })
}

fn parse_problems(text: &str, file: &str) -> Result<Profile, ProfileError> {
    if text.trim().is_empty() {
        return Err(ProfileError::one(
            file,
            Problem {
                line: 1,
                column: 1,
                key: String::new(),
                message: "the profile is empty; expected a mapping with name, cluster, nodes and components"
                    .into(),
            },
        ));
    }
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    let mut unknown = Vec::new();
    let raw: Result<file::ProfileFile, _> =
        serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            serde_ignored::deserialize(de, |path| unknown.extend(keys::segments(&path)))
        });
    // Positions are looked up only when there is a problem to place.
    let spans = (raw.is_err() || !unknown.is_empty()).then(|| source::Spans::of(text));
    let spans = spans.unwrap_or_default();
    let mut problems = keys::problems(&unknown, &spans);
    match raw {
        Err(e) => {
            let problem = error::parse_problem(&e, text, &spans);
            if !keys::explains_missing(&mut problems, &problem) {
                problems.push(problem);
            }
        }
        Ok(raw) => match validate::validate(raw, file) {
            Ok(profile) if problems.is_empty() => return Ok(profile),
            Ok(_) => {}
            Err(e) => problems.extend(e.problems),
        },
    }
    Err(ProfileError::new(file, problems))
}

/// Fills `{version}` and `{arch}`.
pub fn expand_url(template: &str, version: &str, arch: Arch) -> String {
    template
        .replace("{version}", version)
        .replace("{arch}", arch.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profile_is_valid_and_pins_the_guide() {
        let p = parse(BUILTIN_YAML, "builtin").unwrap();
        assert_eq!(p.nodes.len(), 7);
        assert_eq!(p.cluster.pod_cidr.to_string(), "10.0.0.0/12");
        assert_eq!(
            p.component(ComponentKey::Containerd).unwrap().version,
            "1.7.20"
        );
        assert_eq!(
            p.pod_cidr_of(4).map(|n| n.to_string()).as_deref(),
            Some("10.4.0.0/16")
        );
        for arch in [Arch::Arm64, Arch::Amd64] {
            assert!(p.unpinned_for(arch).is_empty());
        }
        assert_eq!(p.cluster.api_vip.to_string(), "192.168.1.21");
        assert_eq!(
            (p.cluster.api_host.as_str(), p.cluster.api_port),
            ("kubernetes", 6443)
        );
        assert_eq!(p.cluster.host_domain, "kubenet");
        assert_eq!(
            p.component(ComponentKey::KubernetesServer).unwrap().version,
            p.component(ComponentKey::KubernetesNode).unwrap().version
        );
    }

    #[test]
    fn api_endpoint_without_a_port_is_443() {
        let text = BUILTIN_YAML.replace("https://kubernetes:6443", "https://api.example");
        let p = parse(&text, "p").unwrap();
        assert_eq!(
            (p.cluster.api_host.as_str(), p.cluster.api_port),
            ("api.example", 443)
        );
    }

    #[test]
    fn nth_subnet_edges() {
        let r: Ipv4Net = "10.0.0.0/12".parse().unwrap();
        assert_eq!(nth_subnet(r, 16, 15).unwrap().to_string(), "10.15.0.0/16");
        assert!(nth_subnet(r, 16, 16).is_none());
        assert_eq!(subnet_capacity(r, 16), 16);
        assert_eq!(subnet_capacity(r, 8), 0);
    }
}
