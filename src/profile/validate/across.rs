//! Checks across sections: the names that end up in one DNS (the API endpoint's host against
//! the nodes and the host), the one gateway node that owns the virtual IP, the length of the
//! names the cluster forms from the domains, and the DHCP range the host derives from the
//! gateway, the nodes and the virtual IP.

use std::net::Ipv4Addr;

use super::cluster::Ranges;
use super::grammar::shown;
use super::Checker;
use crate::profile::file::ProfileFile;
use crate::profile::reserved::reserved;
use crate::profile::{dhcp_range, Role, API_NAME, HOST_NAME};

pub(super) fn check(c: &mut Checker, raw: &ProfileFile, r: &Ranges) {
    api_host(c, raw, r);
    gateways(c, raw, r);
    name_lengths(c, raw);
    dhcp(c, raw, r);
}

/// The API endpoint's host names the API, so it resolves to the virtual IP: it cannot be a
/// node's name (or `<node>.<host_domain>`), the host's, a name only the cluster's DNS knows, or
/// the address of a machine that runs no API server.
fn api_host(c: &mut Checker, raw: &ProfileFile, r: &Ranges) {
    let Some((host, _)) = &r.api else { return };
    let cl = &raw.cluster;
    let domain = &cl.host_domain.value;
    let key = "cluster.api_endpoint";
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        if r.gateway == Some(ip) {
            c.at(
                &cl.api_endpoint,
                key,
                format!("API host {ip} is the gateway's address (cluster.gateway), where no API server runs; expected the virtual IP {}", shown(&cl.api_vip.value)),
            );
        }
        for (i, n) in raw.nodes.iter().enumerate() {
            if n.role != Role::Control && n.address.value.parse::<Ipv4Addr>() == Ok(ip) {
                c.at(
                    &cl.api_endpoint,
                    key,
                    format!("API host {ip} is the address of nodes[{i}] ({}, a {} node), where no API server runs; expected the virtual IP {}", shown(&n.name.value), n.role, shown(&cl.api_vip.value)),
                );
            }
        }
        return;
    }
    let cluster_domain = &cl.cluster_domain.value;
    if host == cluster_domain || host.ends_with(&format!(".{cluster_domain}")) {
        c.at(
            &cl.api_endpoint,
            key,
            format!("API host {host} is a name of the cluster's own DNS ({cluster_domain}), which the kubelets and the host do not ask; expected a name of the virtual IP, like kubernetes"),
        );
    }
    let is = |name: &str| {
        host.eq_ignore_ascii_case(name) || host.eq_ignore_ascii_case(&format!("{name}.{domain}"))
    };
    if is(HOST_NAME) {
        c.at(
            &cl.api_endpoint,
            key,
            format!("API host {host} is the host's own name on the host network; expected a name of the virtual IP, like kubernetes"),
        );
    }
    for (i, n) in raw.nodes.iter().enumerate() {
        // A node with a reserved name is reported with the node.
        if is(&n.name.value) && reserved(&n.name.value).is_none() {
            c.at(
                &cl.api_endpoint,
                key,
                format!("API host {host} is the name of nodes[{i}], which resolves to that node, not to the virtual IP; expected a name of the virtual IP, like kubernetes"),
            );
        }
    }
}

/// One machine owns the virtual IP: the gateway node puts it on its NIC and answers ARP for it.
/// Two would fight over it; none, with control nodes behind an API name of the VIP, leaves the
/// kubelets nothing to talk to.
fn gateways(c: &mut Checker, raw: &ProfileFile, r: &Ranges) {
    let gateways: Vec<usize> = (0..raw.nodes.len())
        .filter(|&i| raw.nodes[i].role == Role::Gateway)
        .collect();
    for &i in gateways.iter().skip(1) {
        c.at(
            &raw.nodes[i].name,
            format!("nodes[{i}].role"),
            format!(
                "a second gateway node (the first is nodes[{}]): each would put the virtual IP on its NIC; expected at most one",
                gateways[0]
            ),
        );
    }
    let has_control = raw.nodes.iter().any(|n| n.role == Role::Control);
    let domain = &raw.cluster.host_domain.value;
    let via_vip = r.api.as_ref().is_some_and(|(host, _)| {
        host == API_NAME
            || *host == format!("{API_NAME}.{domain}")
            || r.api_vip.is_some_and(|vip| *host == vip.to_string())
    });
    if gateways.is_empty() && has_control && via_vip {
        c.unplaced(
            "nodes",
            "no gateway node: the API endpoint names the virtual IP, which only the gateway node owns and balances over the control nodes; add a node with role gateway",
        );
    }
}

/// The longest DNS name is 253 characters: `<node>.<host_domain>` and the API server's
/// `kubernetes.default.svc.<cluster_domain>` must fit.
fn name_lengths(c: &mut Checker, raw: &ProfileFile) {
    let cl = &raw.cluster;
    let svc = format!("kubernetes.default.svc.{}", cl.cluster_domain.value);
    if svc.len() > 253 {
        c.at(
            &cl.cluster_domain,
            "cluster.cluster_domain",
            format!(
                "the API server's name {} is {} characters; a DNS name has at most 253",
                shown(&svc),
                svc.len()
            ),
        );
    }
    for (i, n) in raw.nodes.iter().enumerate() {
        let fqdn_len = n.name.value.len() + 1 + cl.host_domain.value.len();
        if fqdn_len > 253 {
            c.at(
                &n.name,
                format!("nodes[{i}].name"),
                format!("the node's name on the host network (<name>.{}) is {fqdn_len} characters; a DNS name has at most 253", shown(&cl.host_domain.value)),
            );
        }
    }
}

/// The range the host's DHCP server hands out (`profile::dhcp_range`) starts after the gateway
/// inside the host network and leaves the virtual IP out: dnsmasq would lease it to a machine
/// without a reservation, which would then answer for the API.
fn dhcp(c: &mut Checker, raw: &ProfileFile, r: &Ranges) {
    let (Some(host), Some(gw), Some(vip)) = (r.host_network, r.gateway, r.api_vip) else {
        return;
    };
    if !host.contains(&gw) || !host.contains(&vip) {
        return; // reported with the gateway or the VIP
    }
    let cl = &raw.cluster;
    let nodes: Vec<Ipv4Addr> = raw
        .nodes
        .iter()
        .filter_map(|n| n.address.value.parse::<Ipv4Addr>().ok())
        .filter(|a| host.contains(a))
        .collect();
    let range =
        dhcp_range(gw, nodes.iter().copied(), vip).filter(|(start, _)| *start < host.broadcast());
    let Some((start, end)) = range else {
        if gw != host.broadcast() {
            c.at(
                &cl.gateway,
                "cluster.gateway",
                format!("gateway {gw} is the last host address of {host}: the DHCP range the host serves starts at the address after the gateway, and there is none"),
            );
        }
        return;
    };
    // A VIP that is a node's address is reported with the node.
    if (start..=end).contains(&vip) && !nodes.contains(&vip) {
        c.at(
            &cl.api_vip,
            "cluster.api_vip",
            format!("virtual IP {vip} lies inside the DHCP range {start}-{end} the host serves (from the address after the gateway to the highest node's): it could be leased to another machine; put it above every node's address or below the gateway's"),
        );
    }
}
