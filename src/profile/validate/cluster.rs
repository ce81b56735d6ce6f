//! The `cluster` section: addresses and ranges parse, fit inside each other and do not
//! overlap; the domains and the API endpoint are well formed.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{is_hostname, Checker};
use crate::profile::file::ClusterFile;
use crate::profile::Cluster;

/// The parsed values of the section; `None` where a value did not parse (already reported).
/// The node checks need the ranges to place each node.
pub(super) struct Ranges {
    pub pod_cidr: Option<Ipv4Net>,
    pub service_cidr: Option<Ipv4Net>,
    pub host_network: Option<Ipv4Net>,
    pub cluster_dns: Option<Ipv4Addr>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub node_pod_prefix: u8,
    pub api_vip: Option<Ipv4Addr>,
}

impl Ranges {
    /// The validated cluster; `None` when some value did not parse.
    pub fn into_cluster(
        self,
        cl: &ClusterFile,
        cni_spec_version: Option<String>,
    ) -> Option<Cluster> {
        Some(Cluster {
            pod_cidr: self.pod_cidr?,
            node_pod_prefix: self.node_pod_prefix,
            service_cidr: self.service_cidr?,
            cluster_dns: self.cluster_dns?,
            cluster_domain: cl.cluster_domain.value.clone(),
            api_endpoint: cl.api_endpoint.value.clone(),
            host_network: self.host_network?,
            gateway: self.gateway?,
            dns: self.dns,
            addressing: cl.addressing,
            cni: cl.cni,
            cni_spec_version,
            api_vip: self.api_vip?,
            host_domain: cl.host_domain.value.clone(),
        })
    }
}

pub(super) fn check(c: &mut Checker, cl: &ClusterFile) -> Ranges {
    let ranges = parse(c, cl);
    check_ranges(c, cl, &ranges);
    check_names(c, cl);
    ranges
}

fn parse(c: &mut Checker, cl: &ClusterFile) -> Ranges {
    let pod_cidr = c.net(&cl.pod_cidr, "cluster.pod_cidr");
    let service_cidr = c.net(&cl.service_cidr, "cluster.service_cidr");
    let host_network = c.net(&cl.host_network, "cluster.host_network");
    let cluster_dns = c.ip(&cl.cluster_dns, "cluster.cluster_dns");
    let gateway = c.ip(&cl.gateway, "cluster.gateway");
    let api_vip = c.ip(&cl.api_vip, "cluster.api_vip");
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
    Ranges {
        pod_cidr,
        service_cidr,
        host_network,
        cluster_dns,
        gateway,
        dns,
        node_pod_prefix: cl.node_pod_prefix.value,
        api_vip,
    }
}

/// The node prefix fits the pod range; the pod, Service and host ranges are apart; the cluster
/// DNS and the gateway sit inside their ranges.
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
            if pod.contains(&svc) || svc.contains(&pod) {
                c.at(
                    &cl.service_cidr,
                    "cluster.service_cidr",
                    format!("Service range {svc} overlaps the pod range {pod}"),
                );
            }
        }
        if let Some(host) = r.host_network {
            if pod.contains(&host) || host.contains(&pod) {
                c.at(
                    &cl.host_network,
                    "cluster.host_network",
                    format!("host network {host} overlaps the pod range {pod}"),
                );
            }
        }
    }
    if let (Some(svc), Some(d)) = (r.service_cidr, r.cluster_dns) {
        if !svc.contains(&d) {
            c.at(
                &cl.cluster_dns,
                "cluster.cluster_dns",
                format!("cluster DNS {d} must be inside the Service range {svc}"),
            );
        }
    }
    if let (Some(host), Some(g)) = (r.host_network, r.gateway) {
        if !host.contains(&g) {
            c.at(
                &cl.gateway,
                "cluster.gateway",
                format!("gateway {g} must be inside the host network {host}"),
            );
        }
    }
    if let (Some(host), Some(vip)) = (r.host_network, r.api_vip) {
        if !host.contains(&vip) || vip == host.network() || vip == host.broadcast() {
            c.at(
                &cl.api_vip,
                "cluster.api_vip",
                format!("API VIP {vip} must be a host address inside the host network {host}"),
            );
        } else if r.gateway == Some(vip) {
            c.at(
                &cl.api_vip,
                "cluster.api_vip",
                format!("API VIP {vip} is the gateway's address"),
            );
        }
    }
}

fn check_names(c: &mut Checker, cl: &ClusterFile) {
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
    if !is_hostname(&cl.host_domain.value) {
        c.at(
            &cl.host_domain,
            "cluster.host_domain",
            format!(
                "expected a DNS domain like kubenet, got `{}`",
                cl.host_domain.value
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
}
