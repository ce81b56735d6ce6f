//! The `cluster` section: addresses and ranges parse, are unicast, fit inside each other and do
//! not overlap; the Service range leaves room for what the cluster takes from it; the domains
//! and the API endpoint are well formed and apart; the API's virtual IP is a free host address
//! of the host network.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::grammar::{is_domain, shown};
use super::Checker;
use crate::profile::file::{ClusterFile, S};
use crate::profile::{Addressing, Cluster};

/// kube-apiserver refuses a Service range of more than 2^20 addresses ("the mask must be >= 12").
const MAX_SERVICE_HOST_BITS: u8 = 20;

/// Ports something else listens on, on every address of a control node, where kube-apiserver
/// listens on the API endpoint's port.
const TAKEN_PORTS: &[(u16, &str)] = &[
    (22, "sshd's port"),
    (2379, "etcd's client port"),
    (2380, "etcd's peer port"),
    (10248, "the kubelet's health port"),
    (10249, "kube-proxy's metrics port"),
    (10250, "the kubelet's API port"),
    (10256, "kube-proxy's health port"),
    (10257, "kube-controller-manager's port"),
    (10259, "kube-scheduler's port"),
];

/// The parsed values of the section; `None` where a value did not parse (already reported).
/// The node checks need the ranges to place each node.
pub(super) struct Ranges {
    pub pod_cidr: Option<Ipv4Net>,
    pub service_cidr: Option<Ipv4Net>,
    pub host_network: Option<Ipv4Net>,
    pub cluster_dns: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub api_vip: Option<Ipv4Addr>,
    /// Host and port of `api_endpoint`.
    pub api: Option<(String, u16)>,
    pub dns: Vec<Ipv4Addr>,
    pub node_pod_prefix: u8,
}

impl Ranges {
    /// The validated cluster; `None` when some value did not parse.
    pub fn into_cluster(
        self,
        cl: &ClusterFile,
        cni_spec_version: Option<String>,
    ) -> Option<Cluster> {
        let (api_host, api_port) = self.api?;
        Some(Cluster {
            pod_cidr: self.pod_cidr?,
            node_pod_prefix: self.node_pod_prefix,
            service_cidr: self.service_cidr?,
            cluster_dns: self.cluster_dns?,
            cluster_domain: cl.cluster_domain.value.clone(),
            api_endpoint: cl.api_endpoint.value.clone(),
            api_host,
            api_port,
            api_vip: self.api_vip?,
            host_domain: cl.host_domain.value.clone(),
            host_network: self.host_network?,
            gateway: self.gateway?,
            dns: self.dns,
            addressing: cl.addressing,
            cni: cl.cni,
            cni_spec_version,
        })
    }
}

pub(super) fn check(c: &mut Checker, cl: &ClusterFile) -> Ranges {
    let mut ranges = parse(c, cl);
    check_ranges(c, cl, &ranges);
    check_service_range(c, cl, &ranges);
    check_gateway(c, cl, &ranges);
    check_vip(c, cl, &ranges);
    check_names(c, cl);
    ranges.api = api_endpoint(c, cl);
    ranges
}

/// The IPv4 blocks no address or range of a cluster may use, with what they are.
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    (
        "240.0.0.0/4",
        "reserved, with the broadcast address 255.255.255.255",
    ),
];

/// The special block `net` overlaps, if any.
fn special(net: Ipv4Net) -> Option<(Ipv4Net, &'static str)> {
    SPECIAL.iter().find_map(|(block, what)| {
        let block: Ipv4Net = block.parse().ok()?;
        overlap(block, net).then_some((block, *what))
    })
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// A range that parses and is unicast.
fn unicast_net(c: &mut Checker, v: &S<String>, key: &str) -> Option<Ipv4Net> {
    let net = c.net(v, key)?;
    if let Some((block, what)) = special(net) {
        c.at(
            v,
            key,
            format!("{net} overlaps {block} ({what}); expected a unicast range"),
        );
    }
    Some(net)
}

/// An address that parses and is unicast.
fn unicast_ip(c: &mut Checker, v: &S<String>, key: &str) -> Option<Ipv4Addr> {
    let a = c.ip(v, key)?;
    if let Some((block, what)) = special(Ipv4Net::from(a)) {
        c.at(
            v,
            key,
            format!("{a} is in {block} ({what}); expected a unicast address"),
        );
    }
    Some(a)
}

fn parse(c: &mut Checker, cl: &ClusterFile) -> Ranges {
    let pod_cidr = unicast_net(c, &cl.pod_cidr, "cluster.pod_cidr");
    let service_cidr = unicast_net(c, &cl.service_cidr, "cluster.service_cidr");
    let host_network = unicast_net(c, &cl.host_network, "cluster.host_network");
    let cluster_dns = unicast_ip(c, &cl.cluster_dns, "cluster.cluster_dns");
    let gateway = unicast_ip(c, &cl.gateway, "cluster.gateway");
    let api_vip = unicast_ip(c, &cl.api_vip, "cluster.api_vip");
    let mut dns = Vec::new();
    if cl.dns.value.is_empty() && cl.addressing == Addressing::Static {
        c.at(
            &cl.dns,
            "cluster.dns",
            "static addressing needs at least one DNS server: the nodes get no other",
        );
    }
    for (i, d) in cl.dns.value.iter().enumerate() {
        let key = format!("cluster.dns[{i}]");
        match d.parse::<Ipv4Addr>() {
            Ok(a) => {
                if let Some((block, what)) = special(Ipv4Net::from(a)) {
                    c.at(
                        &cl.dns,
                        key,
                        format!(
                            "{a} is in {block} ({what}); expected a DNS server's unicast address"
                        ),
                    );
                }
                dns.push(a)
            }
            Err(_) => c.at(
                &cl.dns,
                key,
                format!("expected an IPv4 address, got `{}`", shown(d)),
            ),
        }
    }
    Ranges {
        pod_cidr,
        service_cidr,
        host_network,
        cluster_dns,
        gateway,
        api_vip,
        api: None,
        dns,
        node_pod_prefix: cl.node_pod_prefix.value,
    }
}

/// The node prefix fits the pod range; the pod, Service and host ranges are apart.
fn check_ranges(c: &mut Checker, cl: &ClusterFile, r: &Ranges) {
    let prefix = r.node_pod_prefix;
    if prefix > 30 {
        c.at(
            &cl.node_pod_prefix,
            "cluster.node_pod_prefix",
            format!("expected a prefix length from 1 to 30, got {prefix}"),
        );
    }
    if let Some(pod) = r.pod_cidr {
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
        if let Some(svc) = r.service_cidr {
            if overlap(pod, svc) {
                c.at(
                    &cl.service_cidr,
                    "cluster.service_cidr",
                    format!("Service range {svc} overlaps the pod range {pod}"),
                );
            }
        }
        if let Some(host) = r.host_network {
            if overlap(pod, host) {
                c.at(
                    &cl.host_network,
                    "cluster.host_network",
                    format!("host network {host} overlaps the pod range {pod}"),
                );
            }
        }
    }
    if let (Some(svc), Some(host)) = (r.service_cidr, r.host_network) {
        if overlap(svc, host) {
            c.at(
                &cl.host_network,
                "cluster.host_network",
                format!("host network {host} overlaps the Service range {svc}: a node or the gateway could hold a Service's address"),
            );
        }
    }
}

/// The Service range is one kube-apiserver accepts, and the cluster DNS is an address of it that
/// a Service can have: not the network or broadcast address (kube-apiserver never allocates
/// those), not the first address (the `kubernetes` Service's own).
fn check_service_range(c: &mut Checker, cl: &ClusterFile, r: &Ranges) {
    let Some(svc) = r.service_cidr else { return };
    let host_bits = 32 - svc.prefix_len();
    if host_bits > MAX_SERVICE_HOST_BITS {
        c.at(
            &cl.service_cidr,
            "cluster.service_cidr",
            format!(
                "Service range {svc} is too large: kube-apiserver takes at most /{} ({} addresses)",
                32 - MAX_SERVICE_HOST_BITS,
                1u32 << MAX_SERVICE_HOST_BITS
            ),
        );
    }
    let Some(d) = r.cluster_dns else { return };
    let first = u32::from(svc.network()).checked_add(1).map(Ipv4Addr::from);
    let problem = if !svc.contains(&d) {
        Some(format!(
            "cluster DNS {d} must be inside the Service range {svc}"
        ))
    } else if d == svc.network() {
        Some(format!(
            "cluster DNS {d} is the network address of the Service range {svc}, which no Service gets"
        ))
    } else if d == svc.broadcast() {
        Some(format!(
            "cluster DNS {d} is the broadcast address of the Service range {svc}, which no Service gets"
        ))
    } else if Some(d) == first {
        Some(format!(
            "cluster DNS {d} is the first address of the Service range {svc}: the `kubernetes` Service (the API) takes it"
        ))
    } else {
        None
    };
    if let Some(p) = problem {
        c.at(&cl.cluster_dns, "cluster.cluster_dns", p);
    }
}

/// The gateway (the host) has a host address of the host network.
fn check_gateway(c: &mut Checker, cl: &ClusterFile, r: &Ranges) {
    let (Some(host), Some(g)) = (r.host_network, r.gateway) else {
        return;
    };
    let problem = if !host.contains(&g) {
        format!("gateway {g} must be inside the host network {host}")
    } else if g == host.network() {
        format!("gateway {g} is the network address of the host network {host}; expected a host address")
    } else if g == host.broadcast() {
        format!("gateway {g} is the broadcast address of the host network {host}; expected a host address")
    } else {
        return;
    };
    c.at(&cl.gateway, "cluster.gateway", problem);
}

/// The cluster's DNS domain and the host network's: lowercase DNS names, and the host network's
/// names not inside the cluster's domain, whose DNS server (in the cluster) answers for every
/// name under it and would not know the nodes.
fn check_names(c: &mut Checker, cl: &ClusterFile) {
    let cluster = &cl.cluster_domain.value;
    let host = &cl.host_domain.value;
    let grammar = "lowercase letters, digits and '-' in dot-separated labels of 1 to 63 characters, not starting or ending with '-', the last not all digits";
    if !is_domain(cluster) {
        c.at(
            &cl.cluster_domain,
            "cluster.cluster_domain",
            format!(
                "expected a DNS domain like cluster.local ({grammar}), got `{}`",
                shown(cluster)
            ),
        );
    }
    if !is_domain(host) {
        c.at(
            &cl.host_domain,
            "cluster.host_domain",
            format!(
                "expected a DNS domain like kubenet ({grammar}), got `{}`",
                shown(host)
            ),
        );
    } else if is_domain(cluster) && (host == cluster || host.ends_with(&format!(".{cluster}"))) {
        c.at(
            &cl.host_domain,
            "cluster.host_domain",
            format!(
                "host network domain {host} is inside the cluster domain {cluster} (cluster.cluster_domain): the cluster's DNS answers for every name there and would not know the nodes"
            ),
        );
    }
}

/// The virtual IP is a host address of the host network and not the gateway's (a node's
/// address is checked with the nodes).
fn check_vip(c: &mut Checker, cl: &ClusterFile, r: &Ranges) {
    let Some(vip) = r.api_vip else { return };
    if let Some(host) = r.host_network {
        if !host.contains(&vip) || vip == host.network() || vip == host.broadcast() {
            c.at(
                &cl.api_vip,
                "cluster.api_vip",
                format!("virtual IP {vip} must be a host address inside the host network {host}"),
            );
        }
    }
    if r.gateway == Some(vip) {
        c.at(
            &cl.api_vip,
            "cluster.api_vip",
            format!("virtual IP {vip} is the gateway's address (cluster.gateway)"),
        );
    }
}

/// Host and port of `https://HOST[:PORT]`: HOST a lowercase DNS name or an IPv4 address, PORT
/// from 1 to 65535 without leading zeros (443 when left out). These reach systemd units, shell
/// lines and kubeconfigs, so nothing else is accepted.
fn api_endpoint(c: &mut Checker, cl: &ClusterFile) -> Option<(String, u16)> {
    let api = &cl.api_endpoint.value;
    let parsed = api.strip_prefix("https://").and_then(|rest| {
        let (host, port) = match rest.split_once(':') {
            Some((h, p))
                if !p.is_empty()
                    && !p.starts_with('0')
                    && p.chars().all(|ch| ch.is_ascii_digit()) =>
            {
                (h, p.parse::<u16>().ok()?)
            }
            Some(_) => return None,
            None => (rest, 443),
        };
        let host_ok = is_domain(host) || host.parse::<Ipv4Addr>().is_ok();
        (host_ok && port > 0).then(|| (host.to_string(), port))
    });
    if let Some((_, port)) = &parsed {
        if let Some((_, what)) = TAKEN_PORTS.iter().find(|(p, _)| p == port) {
            c.at(
                &cl.api_endpoint,
                "cluster.api_endpoint",
                format!("port {port} is {what} on every control node, where kube-apiserver listens on the API endpoint's port; pick another, like 6443"),
            );
        }
    }
    if parsed.is_none() {
        c.at(
            &cl.api_endpoint,
            "cluster.api_endpoint",
            format!(
                "expected https://HOST[:PORT] with no path (HOST a lowercase host name or an IPv4 address, PORT from 1 to 65535), got `{}`",
                shown(api)
            ),
        );
    }
    parsed
}
