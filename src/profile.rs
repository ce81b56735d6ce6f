//! The cluster profile: strict YAML in, a validated [`Profile`] out.
//!
//! Parsing is two passes. serde-saphyr rejects unknown keys, wrong types and duplicate keys
//! with a line and column; then [`validate`] checks the meaning (uniqueness, ranges, digests,
//! URL placeholders) and reports every problem at once, each with the location of the value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use anyhow::Context as _;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::digest::Digest;

/// The guide's cluster, compiled in so `imagegen build` works from any directory.
pub const BUILTIN_NAME: &str = "kthw-1.31";
pub const BUILTIN_YAML: &str = include_str!("../profiles/kthw-1.31.yaml");

/// Placeholders a component URL template may use.
pub const URL_PLACEHOLDERS: &[&str] = &["version", "arch"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Arm64,
    Amd64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::Arm64, Arch::Amd64];

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Addressing {
    Dhcp,
    Static,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// CNI reference plugins with the bridge config, plus kube-proxy (the guide's default).
    Bridge,
    /// The guide's `USE_CILIUM`: no CNI plugins or configs, no kube-proxy.
    Cilium,
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
    #[serde(rename = "etcd")]
    Etcd,
}

impl ComponentKey {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKey::Containerd => "containerd",
            ComponentKey::Runc => "runc",
            ComponentKey::Crictl => "crictl",
            ComponentKey::CniPlugins => "cni-plugins",
            ComponentKey::KubernetesNode => "kubernetes-node",
            ComponentKey::Etcd => "etcd",
        }
    }
}

impl fmt::Display for ComponentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// The file format. Every struct denies unknown fields; values that need semantic checks keep
// their span so the error can point at them.

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: S<String>,
    #[serde(default)]
    cluster: ClusterFile,
    nodes: Vec<NodeFile>,
    components: ComponentsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ClusterFile {
    pod_cidr: S<String>,
    node_pod_prefix: S<u8>,
    service_cidr: S<String>,
    cluster_dns: S<String>,
    cluster_domain: S<String>,
    api_endpoint: S<String>,
    host_network: S<String>,
    gateway: S<String>,
    dns: S<Vec<String>>,
    addressing: Addressing,
    cni: Cni,
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

impl Default for ClusterFile {
    fn default() -> Self {
        let s = |v: &str| unspanned(v.to_string());
        ClusterFile {
            pod_cidr: s("10.0.0.0/12"),
            node_pod_prefix: unspanned(16),
            service_cidr: s("10.32.0.0/16"),
            cluster_dns: s("10.32.0.10"),
            cluster_domain: s("cluster.local"),
            api_endpoint: s("https://kubernetes:6443"),
            host_network: s("192.168.1.0/24"),
            gateway: s("192.168.1.1"),
            dns: unspanned(vec!["192.168.1.1".to_string()]),
            addressing: Addressing::Dhcp,
            cni: Cni::Bridge,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    name: S<String>,
    id: S<u32>,
    role: Role,
    mac: S<String>,
    address: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentsFile {
    containerd: ComponentFile,
    runc: ComponentFile,
    crictl: ComponentFile,
    #[serde(rename = "cni-plugins")]
    cni_plugins: Option<CniComponentFile>,
    #[serde(rename = "kubernetes-node")]
    kubernetes_node: ComponentFile,
    etcd: Option<ComponentFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentFile {
    version: S<String>,
    url: S<String>,
    digests: BTreeMap<String, S<String>>,
}

// A separate type, not a shared optional field, so `spec_version` on containerd is an error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CniComponentFile {
    version: S<String>,
    spec_version: S<String>,
    url: S<String>,
    digests: BTreeMap<String, S<String>>,
}

// ---------------------------------------------------------------------------------------------
// The validated model.

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub name: String,
    /// Where it came from: a path, or `<built-in kthw-1.31>`.
    pub source: String,
    pub cluster: Cluster,
    pub nodes: Vec<Node>,
    pub components: Vec<Component>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cluster {
    pub pod_cidr: Ipv4Net,
    pub node_pod_prefix: u8,
    pub service_cidr: Ipv4Net,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub api_endpoint: String,
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
}

impl Profile {
    pub fn component(&self, key: ComponentKey) -> Option<&Component> {
        self.components.iter().find(|c| c.key == key)
    }

    /// The pod CIDR of node `id`: the `id`-th subnet of the pod range at `node_pod_prefix`.
    pub fn pod_cidr_of(&self, id: u32) -> Option<Ipv4Net> {
        nth_subnet(self.cluster.pod_cidr, self.cluster.node_pod_prefix, id)
    }
}

fn nth_subnet(range: Ipv4Net, prefix: u8, n: u32) -> Option<Ipv4Net> {
    let bits = prefix.checked_sub(range.prefix_len())?;
    if bits > 31 || (n as u64) >= (1u64 << bits) || prefix > 32 {
        return None;
    }
    let step = 1u64 << (32 - prefix as u32);
    let base = u64::from(u32::from(range.network())) + n as u64 * step;
    Ipv4Net::new(Ipv4Addr::from(base as u32), prefix).ok()
}

fn subnet_capacity(range: Ipv4Net, prefix: u8) -> u64 {
    match prefix.checked_sub(range.prefix_len()) {
        Some(bits) if bits < 32 && prefix <= 32 => 1u64 << bits,
        _ => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// One problem in a profile, with the location of the offending value when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: u64,
    pub column: u64,
    /// Dotted key path, e.g. `nodes[3].mac`.
    pub key: String,
    pub message: String,
}

/// Every problem found in one profile file.
#[derive(Debug)]
pub struct ProfileError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {} problem{} in profile",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "  {}", self.file)?;
            if p.line > 0 {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            if !p.key.is_empty() {
                write!(f, ": {}", p.key)?;
            }
            writeln!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn at<T>(&mut self, span: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line: span.referenced.line(),
            column: span.referenced.column(),
            key: key.into(),
            message: message.into(),
        });
    }

    fn ip(&mut self, v: &S<String>, key: &str) -> Option<Ipv4Addr> {
        match v.value.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    v,
                    key,
                    format!(
                        "expected an IPv4 address like 192.168.1.10, got `{}`",
                        v.value
                    ),
                );
                None
            }
        }
    }

    fn net(&mut self, v: &S<String>, key: &str) -> Option<Ipv4Net> {
        match v.value.parse::<Ipv4Net>() {
            Ok(n) if n.network() == n.addr() => Some(n),
            Ok(n) => {
                self.at(
                    v,
                    key,
                    format!(
                        "`{}` has host bits set; the network is {}",
                        v.value,
                        n.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.at(
                    v,
                    key,
                    format!("expected an IPv4 CIDR like 10.0.0.0/12, got `{}`", v.value),
                );
                None
            }
        }
    }
}

/// Loads the built-in profile or the file at `path`.
pub fn load(path: Option<&camino::Utf8Path>) -> anyhow::Result<Profile> {
    match path {
        None => {
            parse(BUILTIN_YAML, &format!("<built-in {BUILTIN_NAME}>")).map_err(anyhow::Error::new)
        }
        Some(p) => {
            let text = fs_err::read_to_string(p.as_std_path())
                .with_context(|| format!("cannot read profile {p}"))?;
            parse(&text, p.as_str()).map_err(anyhow::Error::new)
        }
    }
}

/// Parses and validates profile text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    };
    if text.trim().is_empty() {
        return Err(ProfileError {
            file: file.to_string(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                key: String::new(),
                message: "the profile is empty; expected a mapping with name, cluster, nodes and components"
                    .into(),
            }],
        });
    }
    let raw: ProfileFile = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        ProfileError {
            file: file.to_string(),
            problems: vec![Problem {
                line,
                column,
                key: if plain_message(&e).starts_with("missing field") {
                    String::new()
                } else {
                    key_at(text, line, column)
                },
                message: plain_message(&e),
            }],
        }
    })?;
    validate(raw, file)
}

/// serde-saphyr's Display adds a location and a source snippet; a profile error wants the
/// one-line reason, in the words of the profile rather than of Rust types.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut msg = full.lines().next().unwrap_or("invalid YAML").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("line ") {
        // "line X column Y: reason"
        if let Some((_, reason)) = rest.split_once(": ") {
            msg = reason;
        }
    }
    let msg = msg
        .trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable")
        .to_string();
    match msg.as_str() {
        "invalid u32" => "expected a whole number from 0 to 4294967295".into(),
        "invalid u8" => "expected a whole number from 0 to 255".into(),
        _ => msg,
    }
}

/// The mapping key at or just before `line:column`, read from the source text, so a parse
/// error names the key even when the parser only knows the position.
fn key_at(text: &str, line: u64, column: u64) -> String {
    let Some(src) = text.lines().nth((line as usize).saturating_sub(1)) else {
        return String::new();
    };
    let col = (column as usize).saturating_sub(1).min(src.len());
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // The error points at a key: take the word that starts there.
    let here: String = src[col..].chars().take_while(|c| is_key_char(*c)).collect();
    if !here.is_empty() && src[col + here.len()..].starts_with(':') {
        return here;
    }
    // It points at a value: take the key of the nearest `key:` before it.
    let before = src[..col].trim_end();
    if let Some(b) = before.strip_suffix(':') {
        let word: String = b
            .chars()
            .rev()
            .take_while(|c| is_key_char(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return word;
    }
    String::new()
}

fn validate(raw: ProfileFile, file: &str) -> Result<Profile, ProfileError> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    if raw.name.value.trim().is_empty() {
        c.at(&raw.name, "name", "must not be empty");
    }

    let cl = &raw.cluster;
    let pod_cidr = c.net(&cl.pod_cidr, "cluster.pod_cidr");
    let service_cidr = c.net(&cl.service_cidr, "cluster.service_cidr");
    let host_network = c.net(&cl.host_network, "cluster.host_network");
    let cluster_dns = c.ip(&cl.cluster_dns, "cluster.cluster_dns");
    let gateway = c.ip(&cl.gateway, "cluster.gateway");
    let mut dns = Vec::new();
    for (i, d) in cl.dns.value.iter().enumerate() {
        match d.parse::<Ipv4Addr>() {
            Ok(a) => dns.push(a),
            Err(_) => c.at(
                &cl.dns,
                format!("cluster.dns[{i}]"),
                format!("expected an IPv4 address, got `{d}`"),
            ),
        }
    }
    let prefix = cl.node_pod_prefix.value;
    if prefix > 30 {
        c.at(
            &cl.node_pod_prefix,
            "cluster.node_pod_prefix",
            format!("expected a prefix length from 1 to 30, got {prefix}"),
        );
    }
    if let Some(pod) = pod_cidr {
        if prefix < pod.prefix_len() {
            c.at(
                &cl.node_pod_prefix,
                "cluster.node_pod_prefix",
                format!(
                    "a node's /{prefix} cannot fit inside the pod range {pod}; expected {} or longer",
                    pod.prefix_len()
                ),
            );
        }
        if let Some(svc) = service_cidr {
            if pod.contains(&svc) || svc.contains(&pod) {
                c.at(
                    &cl.service_cidr,
                    "cluster.service_cidr",
                    format!("Service range {svc} overlaps the pod range {pod}"),
                );
            }
        }
        if let Some(host) = host_network {
            if pod.contains(&host) || host.contains(&pod) {
                c.at(
                    &cl.host_network,
                    "cluster.host_network",
                    format!("host network {host} overlaps the pod range {pod}"),
                );
            }
        }
    }
    if let (Some(svc), Some(d)) = (service_cidr, cluster_dns) {
        if !svc.contains(&d) {
            c.at(
                &cl.cluster_dns,
                "cluster.cluster_dns",
                format!("cluster DNS {d} must be inside the Service range {svc}"),
            );
        }
    }
    if let (Some(host), Some(g)) = (host_network, gateway) {
        if !host.contains(&g) {
            c.at(
                &cl.gateway,
                "cluster.gateway",
                format!("gateway {g} must be inside the host network {host}"),
            );
        }
    }
    if !is_hostname(&cl.cluster_domain.value) {
        c.at(
            &cl.cluster_domain,
            "cluster.cluster_domain",
            format!(
                "expected a DNS domain like cluster.local, got `{}`",
                cl.cluster_domain.value
            ),
        );
    }
    let api = &cl.api_endpoint.value;
    let api_ok = api
        .strip_prefix("https://")
        .map(|rest| !rest.is_empty() && !rest.contains(['/', ' ', '"', '\'']))
        .unwrap_or(false);
    if !api_ok {
        c.at(
            &cl.api_endpoint,
            "cluster.api_endpoint",
            format!("expected https://HOST[:PORT] with no path, got `{api}`"),
        );
    }

    // Nodes.
    if raw.nodes.is_empty() {
        c.problems.push(Problem {
            line: 0,
            column: 0,
            key: "nodes".into(),
            message: "expected at least one node".into(),
        });
    }
    let mut names = BTreeMap::new();
    let mut ids = BTreeMap::new();
    let mut macs = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    let mut nodes = Vec::new();
    let capacity = pod_cidr.map(|p| subnet_capacity(p, prefix)).unwrap_or(0);
    let mut k8s_nodes = 0u64;
    for (i, n) in raw.nodes.iter().enumerate() {
        let key = |f: &str| format!("nodes[{i}].{f}");
        if !is_hostname(&n.name.value) || n.name.value.contains('.') {
            c.at(
                &n.name,
                key("name"),
                format!(
                    "`{}` is not a valid host name (letters, digits and '-', 1 to 63 characters, not starting or ending with '-')",
                    n.name.value
                ),
            );
        }
        if let Some(prev) = names.insert(n.name.value.clone(), n.name.referenced.line()) {
            c.at(
                &n.name,
                key("name"),
                format!(
                    "duplicate node name `{}` (first at line {prev})",
                    n.name.value
                ),
            );
        }
        if let Some(prev) = ids.insert(n.id.value, n.id.referenced.line()) {
            c.at(
                &n.id,
                key("id"),
                format!("duplicate node id {} (first at line {prev})", n.id.value),
            );
        }
        let mac = normalise_mac(&n.mac.value);
        match &mac {
            Some(m) => {
                if let Some(prev) = macs.insert(m.clone(), n.mac.referenced.line()) {
                    c.at(
                        &n.mac,
                        key("mac"),
                        format!("duplicate MAC {m} (first at line {prev})"),
                    );
                }
            }
            None => c.at(
                &n.mac,
                key("mac"),
                format!(
                    "expected a MAC address like 52:52:52:00:00:04, got `{}`",
                    n.mac.value
                ),
            ),
        }
        let addr = c.ip(&n.address, &key("address"));
        if let Some(a) = addr {
            if let Some(prev) = addrs.insert(a, n.address.referenced.line()) {
                c.at(
                    &n.address,
                    key("address"),
                    format!("duplicate address {a} (first at line {prev})"),
                );
            }
            if let Some(host) = host_network {
                if !host.contains(&a) || a == host.network() || a == host.broadcast() {
                    c.at(
                        &n.address,
                        key("address"),
                        format!(
                            "address {a} must be a host address inside the host network {host}"
                        ),
                    );
                }
            }
            if gateway == Some(a) {
                c.at(
                    &n.address,
                    key("address"),
                    format!("address {a} is the gateway's"),
                );
            }
        }
        if n.role.is_kubernetes_node() {
            k8s_nodes += 1;
            if let Some(pod) = pod_cidr {
                if capacity > 0 && u64::from(n.id.value) >= capacity {
                    c.at(
                        &n.id,
                        key("id"),
                        format!(
                            "node id {} has no pod CIDR: the pod range {pod} holds {capacity} /{prefix} subnets, for ids 0 to {}",
                            n.id.value,
                            capacity - 1
                        ),
                    );
                }
            }
        }
        if let (Some(mac), Some(address)) = (mac, addr) {
            nodes.push(Node {
                name: n.name.value.clone(),
                id: n.id.value,
                role: n.role,
                mac,
                address,
            });
        }
    }
    if capacity > 0 && k8s_nodes > capacity {
        c.problems.push(Problem {
            line: 0,
            column: 0,
            key: "nodes".into(),
            message: format!(
                "{k8s_nodes} Kubernetes nodes do not fit: the pod range holds {capacity} /{prefix} subnets"
            ),
        });
    }

    // Components.
    let cp = &raw.components;
    let mut components = Vec::new();
    let mut add = |c: &mut Checker,
                   key: ComponentKey,
                   version: &S<String>,
                   url: &S<String>,
                   digests: &BTreeMap<String, S<String>>| {
        let base = format!("components.{key}");
        if !version.value.starts_with(|ch: char| ch.is_ascii_digit())
            || !version
                .value
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".-+_".contains(ch))
        {
            c.at(
                version,
                format!("{base}.version"),
                format!("expected a version like 1.7.20, got `{}`", version.value),
            );
        }
        check_url_template(c, url, &format!("{base}.url"));
        let mut pinned = BTreeMap::new();
        for (arch, d) in digests {
            let arch_key = match arch.as_str() {
                "arm64" => Arch::Arm64,
                "amd64" => Arch::Amd64,
                other => {
                    c.at(
                        d,
                        format!("{base}.digests.{other}"),
                        format!("unknown architecture `{other}` (expected arm64 or amd64)"),
                    );
                    continue;
                }
            };
            match Digest::parse(&d.value) {
                Ok(dg) => {
                    pinned.insert(arch_key, dg);
                }
                Err(e) => c.at(d, format!("{base}.digests.{arch}"), e),
            }
        }
        if digests.is_empty() {
            c.at(
                url,
                format!("{base}.digests"),
                "expected a digest for at least one architecture",
            );
        }
        components.push(Component {
            key,
            version: version.value.clone(),
            url_template: url.value.clone(),
            digests: pinned,
        });
    };
    add(
        &mut c,
        ComponentKey::Containerd,
        &cp.containerd.version,
        &cp.containerd.url,
        &cp.containerd.digests,
    );
    add(
        &mut c,
        ComponentKey::Runc,
        &cp.runc.version,
        &cp.runc.url,
        &cp.runc.digests,
    );
    add(
        &mut c,
        ComponentKey::Crictl,
        &cp.crictl.version,
        &cp.crictl.url,
        &cp.crictl.digests,
    );
    let mut cni_spec_version = None;
    if let Some(cni) = &cp.cni_plugins {
        add(
            &mut c,
            ComponentKey::CniPlugins,
            &cni.version,
            &cni.url,
            &cni.digests,
        );
        let sv = &cni.spec_version;
        let ok = sv.value.split('.').count() == 3
            && sv
                .value
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit()));
        if !ok {
            c.at(
                sv,
                "components.cni-plugins.spec_version",
                format!("expected a CNI spec version like 1.0.0, got `{}`", sv.value),
            );
        }
        cni_spec_version = Some(sv.value.clone());
    } else if cl.cni == Cni::Bridge {
        c.problems.push(Problem {
            line: 0,
            column: 0,
            key: "components.cni-plugins".into(),
            message: "required when cluster.cni is bridge (set cluster.cni: cilium to go without)"
                .into(),
        });
    }
    add(
        &mut c,
        ComponentKey::KubernetesNode,
        &cp.kubernetes_node.version,
        &cp.kubernetes_node.url,
        &cp.kubernetes_node.digests,
    );
    if let Some(etcd) = &cp.etcd {
        add(
            &mut c,
            ComponentKey::Etcd,
            &etcd.version,
            &etcd.url,
            &etcd.digests,
        );
    }

    if !c.problems.is_empty() {
        c.problems.sort_by_key(|p| (p.line == 0, p.line, p.column));
        return Err(ProfileError {
            file: file.to_string(),
            problems: c.problems,
        });
    }

    // Every Option above is Some when no problem was recorded.
    let missing = || ProfileError {
        file: file.to_string(),
        problems: vec![Problem {
            line: 0,
            column: 0,
            key: String::new(),
            message: "internal error: a validated value is missing".into(),
        }],
    };
    Ok(Profile {
        name: raw.name.value,
        source: file.to_string(),
        cluster: Cluster {
            pod_cidr: pod_cidr.ok_or_else(missing)?,
            node_pod_prefix: prefix,
            service_cidr: service_cidr.ok_or_else(missing)?,
            cluster_dns: cluster_dns.ok_or_else(missing)?,
            cluster_domain: cl.cluster_domain.value.clone(),
            api_endpoint: cl.api_endpoint.value.clone(),
            host_network: host_network.ok_or_else(missing)?,
            gateway: gateway.ok_or_else(missing)?,
            dns,
            addressing: cl.addressing,
            cni: cl.cni,
            cni_spec_version,
        },
        nodes,
        components,
    })
}

fn check_url_template(c: &mut Checker, url: &S<String>, key: &str) {
    let u = &url.value;
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        c.at(
            url,
            key,
            format!("expected an http(s) URL template, got `{u}`"),
        );
        return;
    }
    if u.chars()
        .any(|ch| ch.is_whitespace() || "\"'`$\\<>|;&".contains(ch))
    {
        c.at(
            url,
            key,
            "URL contains a character that is not allowed (whitespace, quotes, `$`, `\\`, `<>|;&`)",
        );
    }
    let mut rest = u.as_str();
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            c.at(url, key, "unclosed `{` in URL template");
            return;
        };
        let name = &after[..close];
        if !URL_PLACEHOLDERS.contains(&name) {
            c.at(
                url,
                key,
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    URL_PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        c.at(url, key, "unmatched `}` in URL template");
    }
    if u.ends_with('/') {
        c.at(url, key, "URL must name a file, not end with `/`");
    }
}

/// Fills `{version}` and `{arch}`.
pub fn expand_url(template: &str, version: &str, arch: Arch) -> String {
    template
        .replace("{version}", version)
        .replace("{arch}", arch.as_str())
}

fn normalise_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6
        || parts
            .iter()
            .any(|p| p.len() != 2 || !p.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// RFC 1123 host name (labels of letters, digits and '-').
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Names of every architecture a profile pins all required components for.
pub fn arches_missing(profile: &Profile, arch: Arch) -> BTreeSet<ComponentKey> {
    profile
        .components
        .iter()
        .filter(|c| !c.digests.contains_key(&arch))
        .map(|c| c.key)
        .collect()
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
        for arch in Arch::ALL {
            assert!(arches_missing(&p, arch).is_empty());
        }
    }

    #[test]
    fn nth_subnet_edges() {
        let r: Ipv4Net = "10.0.0.0/12".parse().unwrap();
        assert_eq!(nth_subnet(r, 16, 15).unwrap().to_string(), "10.15.0.0/16");
        assert!(nth_subnet(r, 16, 16).is_none());
        assert_eq!(subnet_capacity(r, 16), 16);
        assert_eq!(subnet_capacity(r, 8), 0);
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("worker0"));
        assert!(!is_hostname("-bad"));
        assert!(!is_hostname("under_score"));
        assert!(!is_hostname(&"a".repeat(64)));
    }
}
