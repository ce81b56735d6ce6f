//! The profiles under test: the built-in one with some string fields replaced, written as JSON
//! (which the profile's YAML parser reads, escapes and all), and for each field a marker: a
//! valid value that appears nowhere else in the outputs.
//!
//! A field whose value reaches the outputs as it is (`Exact`) is checked exactly: the outputs of
//! a profile holding `value` must equal those of the profile holding the marker, with the
//! marker replaced by `value` in every decoded word, key and string. A field that is parsed
//! first (addresses, ranges, MACs, sizes, digests) is checked for structure against the
//! unmodified profile.

use imagegen::profile::{expand_url, Arch, BUILTIN_YAML};
use proptest::prelude::*;
use serde_json::Value;

/// Components with a version of their own (the Kubernetes pair is one field: they must agree).
pub const VERSIONED: &[&str] = &[
    "containerd",
    "runc",
    "crictl",
    "cni-plugins",
    "etcd",
    "base-image",
];

/// Every component (each has a URL template).
pub const COMPONENTS: &[&str] = &[
    "containerd",
    "runc",
    "crictl",
    "cni-plugins",
    "kubernetes-node",
    "kubernetes-server",
    "etcd",
    "base-image",
];

const ROLES: &[&str] = &["gateway", "control", "worker"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Name,
    NodeName(usize),
    ClusterDomain,
    HostDomain,
    ApiEndpoint,
    Version(usize),
    /// `kubernetes-node` and `kubernetes-server` together.
    KubernetesVersion,
    Url(usize),
    SpecVersion,
    // One word of a closed set: the profile holding it is its own reference.
    Addressing,
    Cni,
    Role(usize),
    // Parsed before use.
    PodCidr,
    ServiceCidr,
    ClusterDns,
    ApiVip,
    HostNetwork,
    Gateway,
    Dns,
    NodeMac(usize),
    NodeAddress(usize),
    Digest(usize, Arch),
    Memory(usize),
    Disk(usize),
}

impl Field {
    /// The component whose download the field changes, if any (a version and a URL of one
    /// component are not changed together: the marker of one would be inside the other).
    fn component(self) -> Option<&'static str> {
        match self {
            Field::Version(i) => Some(VERSIONED[i]),
            Field::KubernetesVersion => Some("kubernetes"),
            Field::Url(i) => Some(match COMPONENTS[i] {
                "kubernetes-node" | "kubernetes-server" => "kubernetes",
                c => c,
            }),
            _ => None,
        }
    }

    pub fn is_exact(self) -> bool {
        matches!(
            self,
            Field::Name
                | Field::NodeName(_)
                | Field::ClusterDomain
                | Field::HostDomain
                | Field::ApiEndpoint
                | Field::Version(_)
                | Field::KubernetesVersion
                | Field::Url(_)
                | Field::SpecVersion
                | Field::Addressing
                | Field::Cni
                | Field::Role(_)
        )
    }
}

/// One profile under test: the base settings and the replaced fields.
#[derive(Clone, Debug)]
pub struct Case {
    pub fields: Vec<(Field, String)>,
    pub arch: Arch,
    pub static_addressing: bool,
    pub cilium: bool,
    /// 0 and 1: fetch, 2: embed, 3: shared.
    pub payload: u8,
}

thread_local! {
    static BUILTIN: Value = serde_saphyr::from_str(BUILTIN_YAML).unwrap();
}

/// The built-in profile as JSON, with the case's base settings.
pub fn base(case: &Case) -> Value {
    let mut v = BUILTIN.with(Value::clone);
    if case.static_addressing {
        v["cluster"]["addressing"] = "static".into();
    }
    if case.cilium {
        v["cluster"]["cni"] = "cilium".into();
    }
    v
}

/// The value of `field` in `v`, as a mutable slot.
fn slot(v: &mut Value, field: Field) -> &mut Value {
    match field {
        Field::Name => &mut v["name"],
        Field::NodeName(i) => &mut v["nodes"][i]["name"],
        Field::NodeMac(i) => &mut v["nodes"][i]["mac"],
        Field::NodeAddress(i) => &mut v["nodes"][i]["address"],
        Field::Role(i) => &mut v["nodes"][i]["role"],
        Field::Addressing => &mut v["cluster"]["addressing"],
        Field::Cni => &mut v["cluster"]["cni"],
        Field::ClusterDomain => &mut v["cluster"]["cluster_domain"],
        Field::HostDomain => &mut v["cluster"]["host_domain"],
        Field::ApiEndpoint => &mut v["cluster"]["api_endpoint"],
        Field::PodCidr => &mut v["cluster"]["pod_cidr"],
        Field::ServiceCidr => &mut v["cluster"]["service_cidr"],
        Field::ClusterDns => &mut v["cluster"]["cluster_dns"],
        Field::ApiVip => &mut v["cluster"]["api_vip"],
        Field::HostNetwork => &mut v["cluster"]["host_network"],
        Field::Gateway => &mut v["cluster"]["gateway"],
        Field::Dns => &mut v["cluster"]["dns"][0],
        Field::Version(i) => &mut v["components"][VERSIONED[i]]["version"],
        Field::KubernetesVersion => &mut v["components"]["kubernetes-node"]["version"],
        Field::Url(i) => &mut v["components"][COMPONENTS[i]]["url"],
        Field::SpecVersion => &mut v["components"]["cni-plugins"]["spec_version"],
        Field::Digest(i, arch) => &mut v["components"][COMPONENTS[i]]["digests"][arch.as_str()],
        Field::Memory(r) => &mut v["resources"][ROLES[r]]["memory"],
        Field::Disk(r) => &mut v["resources"][ROLES[r]]["disk"],
    }
}

/// The profile text with each field set to its value.
pub fn profile(case: &Case, values: &[(Field, String)]) -> String {
    let mut v = base(case);
    for (f, value) in values {
        *slot(&mut v, *f) = value.clone().into();
        if *f == Field::KubernetesVersion {
            v["components"]["kubernetes-server"]["version"] = value.clone().into();
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

/// The version of component `c` in the base profile.
fn base_version(case: &Case, c: &str) -> String {
    base(case)["components"][c]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The marker of an exact field, given the value it stands for, and the replacements that
/// turn the marker's outputs into the value's, longest first.
pub fn marker(case: &Case, field: Field, value: &str) -> (String, Vec<(String, String)>) {
    let one = |m: &str| (m.to_string(), vec![(m.to_string(), value.to_string())]);
    match field {
        Field::Name => one("qx7pn"),
        Field::NodeName(i) => one(&format!("qx7n{i}")),
        Field::ClusterDomain => one("qx7cd"),
        Field::HostDomain => one("qx7hd"),
        Field::Version(i) => one(&format!("7.7.7-qx7v{}", (b'a' + i as u8) as char)),
        Field::KubernetesVersion => one("7.7.7-qx7vk"),
        Field::SpecVersion => one("7.77.777"),
        Field::Addressing | Field::Cni | Field::Role(_) => (value.to_string(), Vec::new()),
        Field::ApiEndpoint => {
            // The same port (it decides kube-apiserver's flags) and the same kind of host: an
            // address is not added to /etc/hosts, a name is unless it is one of the API's own
            // (`kubernetes`, `kubernetes.<host domain>`).
            let rest = value.strip_prefix("https://").unwrap_or(value);
            let (host, port) = match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            };
            let with_port = |h: &str| match port {
                Some(p) => format!("https://{h}:{p}"),
                None => format!("https://{h}"),
            };
            let domain = case
                .fields
                .iter()
                .find(|(f, _)| *f == Field::HostDomain)
                .map_or("kubenet", |(_, v)| v.as_str());
            let domain_marker = if domain == "kubenet" {
                "kubenet"
            } else {
                "qx7hd"
            };
            if host.parse::<std::net::Ipv4Addr>().is_ok() {
                let m = with_port("192.168.1.250");
                (
                    m.clone(),
                    vec![(m, value.into()), ("192.168.1.250".into(), host.into())],
                )
            } else if host == "kubernetes" {
                (value.to_string(), Vec::new())
            } else if host == format!("kubernetes.{domain}") {
                let m = with_port(&format!("kubernetes.{domain_marker}"));
                (m.clone(), vec![(m, value.into())])
            } else {
                let m = with_port("qx7api");
                (
                    m.clone(),
                    vec![(m, value.into()), ("qx7api".into(), host.into())],
                )
            }
        }
        Field::Url(i) => {
            let c = COMPONENTS[i];
            let l = (b'a' + i as u8) as char;
            let m = format!("https://qx7u{l}.example/d/{{version}}/qx7f{l}-{{arch}}.bin");
            let version = base_version(case, c);
            let (mu, vu) = (
                expand_url(&m, &version, case.arch),
                expand_url(value, &version, case.arch),
            );
            let subs = vec![
                (mu.clone(), vu.clone()),
                (last_segment(&mu).to_string(), last_segment(&vu).to_string()),
            ];
            (m, subs)
        }
        _ => panic!("{field:?} is not an exact field"),
    }
}

// ---------------------------------------------------------------------------------------------
// Generators.

/// What breaks things: line breaks, quotes, `$()`, backquotes, `#`, `: `, NUL, non-ASCII and
/// invisible characters, `%`, `\`, `{{`, `;`, spaces and the like.
pub const PIECES: &[&str] = &[
    "\n",
    "\r\n",
    "'",
    "\"",
    "$(",
    ")",
    "`",
    "#",
    ": ",
    "\0",
    "é",
    "\u{2028}",
    "\u{202e}",
    "%",
    "%n",
    "\\",
    "{{",
    "}}",
    "{version}",
    ";",
    " ",
    "\t",
    "- ",
    "&",
    "*",
    "=",
    "$HOME",
    "!",
    "<",
    ">",
    "|",
    "[",
    "~",
    ",",
    "@",
    "?",
    "+",
    "\u{7f}",
    "\u{85}",
];

/// Text made of pieces that break things, and some plain text.
pub fn nasty() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..8).prop_map(|v| v.concat())
}

/// One thing that breaks things, or plain text.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(str::to_string),
        1 => "[a-z0-9-]{1,6}",
    ]
}

/// One instance of every field: a control node's name (etcd's cluster, the RBAC bootstrap) and
/// a worker's, the URL of an archive the nodes fetch and the base image's (the launchers), etcd's
/// version (an archive path) and the base image's, and so on.
pub fn every_field() -> Vec<Field> {
    vec![
        Field::Name,
        Field::ClusterDomain,
        Field::HostDomain,
        Field::ApiEndpoint,
        Field::KubernetesVersion,
        Field::SpecVersion,
        Field::PodCidr,
        Field::ServiceCidr,
        Field::ClusterDns,
        Field::ApiVip,
        Field::HostNetwork,
        Field::Gateway,
        Field::Dns,
        Field::Addressing,
        Field::Cni,
        Field::Role(4),
        Field::NodeName(1),
        Field::NodeName(4),
        Field::NodeMac(4),
        Field::NodeAddress(4),
        Field::Version(4),
        Field::Version(5),
        Field::Url(0),
        Field::Url(7),
        Field::Digest(1, Arch::Arm64),
        Field::Memory(2),
        Field::Disk(0),
    ]
}

/// The value `field` has in the built-in profile.
pub fn original(case: &Case, field: Field) -> String {
    let mut v = base(case);
    slot(&mut v, field).as_str().unwrap_or_default().to_string()
}

/// Values the field's grammar accepts, or nearly: for the addresses, mostly ones that fit the
/// built-in cluster's layout, so that enough cases get through to be checked.
fn plausible(field: Field) -> BoxedStrategy<String> {
    let any_ip = "(10|192\\.168|172\\.16|127|0|255|224)\\.[0-9]{1,3}\\.[0-9]{1,3}(\\.[0-9]{1,3})?";
    let re = |r: &str| proptest::string::string_regex(r).unwrap().boxed();
    let fitting = |r: &str| prop_oneof![3 => re(r), 1 => re(any_ip)].boxed();
    match field {
        Field::Name => re("[A-Za-z0-9][A-Za-z0-9._-]{0,14}"),
        Field::NodeName(_) => re("[a-z0-9][a-z0-9-]{0,10}[a-z0-9]"),
        Field::ClusterDomain | Field::HostDomain => {
            re("[a-z][a-z0-9-]{0,6}[a-z0-9](\\.[a-z][a-z0-9]{0,5}){0,2}")
        }
        Field::ApiEndpoint => prop_oneof![
            re("https://[a-z][a-z0-9.-]{0,12}[a-z0-9](:[1-9][0-9]{0,4})?"),
            re("https://192\\.168\\.1\\.1[1-3](:[1-9][0-9]{0,4})?"),
            Just("https://kubernetes.kubenet:6443".to_string()),
        ]
        .boxed(),
        Field::Version(_) | Field::KubernetesVersion => re("[0-9][A-Za-z0-9.+_-]{0,12}"),
        Field::Url(_) => re("https?://[a-z0-9][a-z0-9.-]{0,10}(:[0-9]{1,5})?/[A-Za-z0-9._~:/?=@+,-]{0,16}(%[0-9A-F]{2})?\\{version\\}/[A-Za-z0-9._-]{1,8}\\{arch\\}[a-z.]{0,5}"),
        Field::SpecVersion => re("[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"),
        Field::Addressing => re("(dhcp|static|Static|DHCP)"),
        Field::Cni => re("(bridge|cilium|Cilium)"),
        Field::Role(_) => re("(gateway|control|worker|Worker)"),
        Field::PodCidr => fitting("10\\.(0|16|64)\\.0\\.0/1[0-6]"),
        Field::ServiceCidr => fitting("10\\.32\\.0\\.0/(1[0-9]|2[0-4])"),
        Field::HostNetwork => fitting("192\\.168\\.(0\\.0/2[0-3]|1\\.0/2[0-4])"),
        Field::ClusterDns => fitting("10\\.32\\.[0-9]{1,2}\\.[0-9]{1,3}"),
        Field::ApiVip => fitting("192\\.168\\.1\\.(2[2-9]|[3-9][0-9]|1[0-9][0-9]|2[0-5][0-9])"),
        Field::Gateway => fitting("192\\.168\\.1\\.[0-9]{1,2}"),
        Field::Dns => fitting("(1|8|9|10|100|192\\.168)\\.[0-9]{1,3}\\.[0-9]{1,3}(\\.[0-9]{1,3})?"),
        Field::NodeAddress(_) => fitting("192\\.168\\.1\\.([2-9]|1[7-9]|20|2[2-9])"),
        Field::NodeMac(_) => re("[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}"),
        Field::Digest(..) => prop_oneof![
            re("sha256:[0-9a-fA-F]{64}"),
            re("sha512:[0-9a-f]{128}"),
        ]
        .boxed(),
        Field::Memory(_) | Field::Disk(_) => re("[0-9]{1,5}[MGTK]"),
    }
}

/// A value for `field`: plausible, nasty, or plausible with something nasty inside, before or
/// after.
pub fn value(field: Field) -> BoxedStrategy<String> {
    prop_oneof![
        5 => plausible(field),
        2 => nasty(),
        4 => (
            plausible(field),
            prop_oneof![piece(), nasty()],
            any::<prop::sample::Index>()
        )
            .prop_map(|(a, n, at)| {
            let cut = a
                .char_indices()
                .map(|(i, _)| i)
                .nth(at.index(a.chars().count().max(1)))
                .unwrap_or(a.len());
            format!("{}{n}{}", &a[..cut], &a[cut..])
        }),
        2 => (plausible(field), nasty(), any::<bool>()).prop_map(|(a, n, after)| {
            if after { format!("{a}{n}") } else { format!("{n}{a}") }
        }),
    ]
    .boxed()
}

pub fn exact_field() -> BoxedStrategy<Field> {
    prop_oneof![
        Just(Field::Name),
        (0..7usize).prop_map(Field::NodeName),
        Just(Field::ClusterDomain),
        Just(Field::HostDomain),
        Just(Field::ApiEndpoint),
        (0..VERSIONED.len()).prop_map(Field::Version),
        Just(Field::KubernetesVersion),
        (0..COMPONENTS.len()).prop_map(Field::Url),
        Just(Field::SpecVersion),
        Just(Field::Addressing),
        Just(Field::Cni),
        (0..7usize).prop_map(Field::Role),
    ]
    .boxed()
}

pub fn parsed_field() -> BoxedStrategy<Field> {
    prop_oneof![
        Just(Field::PodCidr),
        Just(Field::ServiceCidr),
        Just(Field::ClusterDns),
        Just(Field::ApiVip),
        Just(Field::HostNetwork),
        Just(Field::Gateway),
        Just(Field::Dns),
        (0..7usize).prop_map(Field::NodeMac),
        (0..7usize).prop_map(Field::NodeAddress),
        (
            0..COMPONENTS.len(),
            prop_oneof![Just(Arch::Arm64), Just(Arch::Amd64)]
        )
            .prop_map(|(c, a)| Field::Digest(c, a)),
        (0..ROLES.len()).prop_map(Field::Memory),
        (0..ROLES.len()).prop_map(Field::Disk),
    ]
    .boxed()
}

/// A case replacing `n` fields drawn from `fields`, each at most once and no component's
/// version and URL together.
pub fn case(
    fields: BoxedStrategy<Field>,
    n: std::ops::RangeInclusive<usize>,
) -> BoxedStrategy<Case> {
    let pairs = prop::collection::vec(
        fields.prop_flat_map(|f| value(f).prop_map(move |v| (f, v))),
        n,
    );
    (
        pairs,
        prop_oneof![Just(Arch::Arm64), Just(Arch::Amd64)],
        any::<bool>(),
        prop::bool::weighted(0.25),
        0u8..4,
    )
        .prop_map(|(pairs, arch, static_addressing, cilium, payload)| {
            let mut fields: Vec<(Field, String)> = Vec::new();
            for (f, v) in pairs {
                let clash = fields.iter().any(|(g, _)| {
                    *g == f || (f.component().is_some() && f.component() == g.component())
                });
                if !clash {
                    fields.push((f, v));
                }
            }
            Case {
                fields,
                arch,
                static_addressing,
                cilium,
                payload,
            }
        })
        .boxed()
}
