//! The `nodes` section: each node's name, MAC and address are well formed and unique (names up
//! to case: host names are case-insensitive), no name is one the cluster reserves, each MAC is
//! a unicast one, each address lies in the host network and is neither the gateway's nor the
//! API's virtual IP, and every Kubernetes node's id has a pod CIDR.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::cluster::Ranges;
use super::grammar::{is_label, shown};
use super::Checker;
use crate::profile::file::NodeFile;
use crate::profile::reserved::reserved;
use crate::profile::{subnet_capacity, Node};

/// Values already taken, each with the line of its first use (names in lowercase).
#[derive(Default)]
struct Seen {
    /// Lowercase name -> the name as written and its line.
    names: BTreeMap<String, (String, u64)>,
    ids: BTreeMap<u32, u64>,
    macs: BTreeMap<String, u64>,
    addresses: BTreeMap<Ipv4Addr, u64>,
}

/// The valid nodes (a node with a bad MAC or address is left out, its problem recorded).
pub(super) fn check(c: &mut Checker, raw: &[NodeFile], ranges: &Ranges) -> Vec<Node> {
    if raw.is_empty() {
        c.unplaced("nodes", "expected at least one node");
    }
    let prefix = ranges.node_pod_prefix;
    let capacity = ranges
        .pod_cidr
        .map(|p| subnet_capacity(p, prefix))
        .unwrap_or(0);
    let mut seen = Seen::default();
    let mut nodes = Vec::new();
    let mut k8s_nodes = 0u64;
    for (i, n) in raw.iter().enumerate() {
        let key = |f: &str| format!("nodes[{i}].{f}");
        check_name_and_id(c, n, &key, &mut seen);
        let mac = check_mac(c, n, &key, &mut seen);
        let address = check_address(c, n, &key, &mut seen, ranges);
        if n.role.is_kubernetes_node() {
            k8s_nodes += 1;
            if let Some(pod) = ranges.pod_cidr {
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
        if let (Some(mac), Some(address)) = (mac, address) {
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
        c.unplaced(
            "nodes",
            format!(
                "{k8s_nodes} Kubernetes nodes do not fit: the pod range holds {capacity} /{prefix} subnets"
            ),
        );
    }
    nodes
}

fn check_name_and_id(c: &mut Checker, n: &NodeFile, key: &dyn Fn(&str) -> String, seen: &mut Seen) {
    let name = &n.name.value;
    if !is_label(name) {
        c.at(
            &n.name,
            key("name"),
            format!(
                "`{}` is not a valid host name (lowercase letters, digits and '-', 1 to 63 characters, not starting or ending with '-'; Kubernetes knows a node by its lowercase host name)",
                shown(name)
            ),
        );
    } else if let Some(what) = reserved(name) {
        c.at(
            &n.name,
            key("name"),
            format!("node name `{name}` is reserved: {what}"),
        );
    }
    let folded = name.to_lowercase();
    match seen.names.get(&folded) {
        Some((first, line)) if first == name => c.at(
            &n.name,
            key("name"),
            format!("duplicate node name `{}` (first at line {line})", shown(name)),
        ),
        Some((first, line)) => c.at(
            &n.name,
            key("name"),
            format!(
                "duplicate node name `{}`: `{}` at line {line} is the same host name (host names are compared without case)",
                shown(name),
                shown(first)
            ),
        ),
        None => {
            seen.names
                .insert(folded, (name.clone(), n.name.referenced.line()));
        }
    }
    if let Some(prev) = seen.ids.insert(n.id.value, n.id.referenced.line()) {
        c.at(
            &n.id,
            key("id"),
            format!("duplicate node id {} (first at line {prev})", n.id.value),
        );
    }
}

/// The MAC, lowercase, when it is well formed.
fn check_mac(
    c: &mut Checker,
    n: &NodeFile,
    key: &dyn Fn(&str) -> String,
    seen: &mut Seen,
) -> Option<String> {
    let Some(mac) = normalise_mac(&n.mac.value) else {
        c.at(
            &n.mac,
            key("mac"),
            format!(
                "expected a MAC address like 52:52:52:00:00:04, got `{}`",
                shown(&n.mac.value)
            ),
        );
        return None;
    };
    if let Some(problem) = not_unicast(&mac) {
        c.at(&n.mac, key("mac"), problem);
    }
    if let Some(prev) = seen.macs.insert(mac.clone(), n.mac.referenced.line()) {
        c.at(
            &n.mac,
            key("mac"),
            format!("duplicate MAC {mac} (first at line {prev})"),
        );
    }
    Some(mac)
}

/// The address, when it parses (placement problems are recorded but keep the address).
fn check_address(
    c: &mut Checker,
    n: &NodeFile,
    key: &dyn Fn(&str) -> String,
    seen: &mut Seen,
    ranges: &Ranges,
) -> Option<Ipv4Addr> {
    let a = c.ip(&n.address, &key("address"))?;
    if let Some(prev) = seen.addresses.insert(a, n.address.referenced.line()) {
        c.at(
            &n.address,
            key("address"),
            format!("duplicate address {a} (first at line {prev})"),
        );
    }
    if let Some(host) = ranges.host_network {
        if !host.contains(&a) || a == host.network() || a == host.broadcast() {
            c.at(
                &n.address,
                key("address"),
                format!("address {a} must be a host address inside the host network {host}"),
            );
        }
    }
    if ranges.gateway == Some(a) {
        c.at(
            &n.address,
            key("address"),
            format!("address {a} is the gateway's"),
        );
    }
    if ranges.api_vip == Some(a) {
        c.at(
            &n.address,
            key("address"),
            format!("address {a} is the API's virtual IP (cluster.api_vip), which the load balancer owns"),
        );
    }
    Some(a)
}

/// Why `mac` (normalised) cannot be a NIC's address: all zeros, or a group address (the I/G bit,
/// the lowest bit of the first octet, set), which the broadcast address is too. A locally
/// administered address (the next bit) is fine: QEMU's own are.
fn not_unicast(mac: &str) -> Option<String> {
    let first = u8::from_str_radix(&mac[..2], 16).ok()?;
    if mac == "00:00:00:00:00:00" {
        Some(format!("MAC {mac} is all zeros; a NIC needs a unicast MAC"))
    } else if mac == "ff:ff:ff:ff:ff:ff" {
        Some(format!(
            "MAC {mac} is the broadcast address; a NIC needs a unicast MAC"
        ))
    } else if first & 1 == 1 {
        Some(format!(
            "MAC {mac} is a multicast address (the lowest bit of its first octet, the I/G bit, is set); a NIC needs a unicast MAC, e.g. the locally administered {:02x}{}",
            (first & !1) | 2,
            &mac[2..]
        ))
    } else {
        None
    }
}

/// Six colon-separated pairs of hex digits, lowercased; `None` otherwise.
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
