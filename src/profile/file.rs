//! The profile's file format, as serde reads it: the first of the two parsing passes.
//!
//! A key none of these structs has is not an error of serde's (that would stop at the first
//! one): `keys` records every such key and reports each, with a "did you mean", and the rest of
//! the file is still read and checked. A new struct here gets a line in `keys::known_keys`, so
//! its problems list the keys it has. Values that need a semantic check keep their span
//! ([`Spanned`]) so the second pass (`validate`) can point at them; these types never leave the
//! `profile` module.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Addressing, Cni, Role};

pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
pub(super) struct ProfileFile {
    pub name: S<String>,
    #[serde(default)]
    pub cluster: ClusterFile,
    pub nodes: Vec<NodeFile>,
    pub components: ComponentsFile,
    #[serde(default)]
    pub resources: ResourcesFile,
    #[serde(default)]
    pub first_boot: FirstBootFile,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub(super) struct ClusterFile {
    pub pod_cidr: S<String>,
    pub node_pod_prefix: S<u8>,
    pub service_cidr: S<String>,
    pub cluster_dns: S<String>,
    pub cluster_domain: S<String>,
    pub api_endpoint: S<String>,
    pub api_vip: S<String>,
    pub host_domain: S<String>,
    pub host_network: S<String>,
    pub gateway: S<String>,
    pub dns: S<Vec<String>>,
    pub addressing: Addressing,
    pub cni: Cni,
}

/// A default value has no place in the file: its span is unknown (line 0).
fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

impl Default for ClusterFile {
    /// The guide's cluster ranges, for a profile that leaves `cluster` (or a key of it) out.
    fn default() -> Self {
        let s = |v: &str| unspanned(v.to_string());
        ClusterFile {
            pod_cidr: s("10.0.0.0/12"),
            node_pod_prefix: unspanned(16),
            service_cidr: s("10.32.0.0/16"),
            cluster_dns: s("10.32.0.10"),
            cluster_domain: s("cluster.local"),
            api_endpoint: s("https://kubernetes:6443"),
            api_vip: s("192.168.1.21"),
            host_domain: s("kubenet"),
            host_network: s("192.168.1.0/24"),
            gateway: s("192.168.1.1"),
            dns: unspanned(vec!["192.168.1.1".to_string()]),
            addressing: Addressing::Dhcp,
            cni: Cni::Bridge,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NodeFile {
    pub name: S<String>,
    pub id: S<u32>,
    pub role: Role,
    pub mac: S<String>,
    pub address: S<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ComponentsFile {
    pub containerd: ComponentFile,
    pub runc: ComponentFile,
    pub crictl: ComponentFile,
    #[serde(rename = "cni-plugins")]
    pub cni_plugins: Option<CniComponentFile>,
    #[serde(rename = "kubernetes-node")]
    pub kubernetes_node: ComponentFile,
    #[serde(rename = "kubernetes-server")]
    pub kubernetes_server: Option<ComponentFile>,
    pub etcd: Option<ComponentFile>,
    /// The VMs' disk image (`launch`), not part of any seed.
    #[serde(rename = "base-image")]
    pub base_image: Option<ComponentFile>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ComponentFile {
    pub version: S<String>,
    pub url: S<String>,
    pub digests: BTreeMap<String, S<String>>,
    /// Exact size in bytes per architecture, when known: a download that is larger fails.
    #[serde(default)]
    pub sizes: BTreeMap<String, S<u64>>,
}

// A separate type, not a shared optional field, so `spec_version` on containerd is an error.
#[derive(Debug, Deserialize)]
pub(super) struct CniComponentFile {
    pub version: S<String>,
    pub spec_version: S<String>,
    pub url: S<String>,
    pub digests: BTreeMap<String, S<String>>,
    #[serde(default)]
    pub sizes: BTreeMap<String, S<u64>>,
}

/// `resources`: what each role's VMs get from the host. A role left out, or a key left out of
/// a role, takes the guide's value (`validate` fills them in).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ResourcesFile {
    pub gateway: RoleResourcesFile,
    pub control: RoleResourcesFile,
    pub worker: RoleResourcesFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RoleResourcesFile {
    pub cpus: Option<S<u32>>,
    pub memory: Option<S<String>>,
    pub disk: Option<S<String>>,
}

/// `first_boot`: how the first-boot script of a `--payload fetch` node downloads. A key left
/// out takes its default (`validate` fills them in).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FirstBootFile {
    pub fetch_attempts: Option<S<u32>>,
    pub fetch_backoff_seconds: Option<S<u32>>,
}
