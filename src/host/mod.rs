//! What the HOST needs so the VMs of a plan find each other, the host and the API: the
//! guide's `setuphost.sh` and `setuproutes.sh`, derived from the plan.
//!
//! - [`HostNet`]: the host network as the host serves it (its own address, the DHCP range, one
//!   reservation per node, the API VIP, the pod routes), for one [`HostKind`];
//! - `render`: the text of every host file (dnsmasq lines, the `/etc/hosts` block, `routes.sh`,
//!   and on Linux the bridge/NAT script, its unit and the sysctl file);
//! - `block`: lines between `# imagegen:begin` / `# imagegen:end` markers in files others own;
//! - `setup`: `imagegen host-setup`: print, apply (idempotent) and undo those changes.
//!
//! `build` writes [`files`] to `out/<arch>/host/`; `launch` takes the bridge, the lease file and
//! the vmnet range from here.

mod block;
mod render;
mod setup;

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::profile::{self, Arch, Cni};

pub use setup::{setup, SetupAction, SetupOptions};

/// The Linux bridge the VMs' tap devices join (the guide's name).
pub const BRIDGE: &str = "kubr0";

/// The names the API VIP and the host itself have on the host network (the profile reserves
/// them, so no node takes them).
pub use crate::profile::{API_NAME, HOST_NAME};

/// Which kind of host runs the VMs: the guide's two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKind {
    /// QEMU with KVM, a tap device per VM on a bridge the host sets up, dnsmasq from the distribution.
    Linux,
    /// QEMU with HVF and vmnet-shared (macOS makes the bridge), dnsmasq from Homebrew.
    #[serde(rename = "macos")]
    MacOs,
}

impl HostKind {
    /// The host that runs VMs of `arch` natively: Apple silicon for arm64, a Linux PC for amd64.
    pub fn of_arch(arch: Arch) -> HostKind {
        match arch {
            Arch::Arm64 => HostKind::MacOs,
            Arch::Amd64 => HostKind::Linux,
        }
    }

    /// The kind of the machine this runs on (anything but macOS counts as Linux).
    pub fn current() -> HostKind {
        if cfg!(target_os = "macos") {
            HostKind::MacOs
        } else {
            HostKind::Linux
        }
    }

    /// The architecture of VMs this kind of host runs natively.
    pub fn native_arch(self) -> Arch {
        match self {
            HostKind::MacOs => Arch::Arm64,
            HostKind::Linux => Arch::Amd64,
        }
    }

    /// Where this host's dnsmasq keeps its DHCP leases (Debian's and Homebrew's defaults).
    pub fn dnsmasq_leases(self) -> &'static str {
        match self {
            HostKind::Linux => "/var/lib/misc/dnsmasq.leases",
            HostKind::MacOs => "/opt/homebrew/var/lib/misc/dnsmasq/dnsmasq.leases",
        }
    }
}

impl fmt::Display for HostKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostKind::Linux => "Linux",
            HostKind::MacOs => "macOS",
        })
    }
}

/// One node as the host network knows it.
#[derive(Clone, Debug)]
pub struct HostNode {
    pub name: String,
    pub mac: String,
    pub address: Ipv4Addr,
}

/// The host network of a plan, as one kind of host serves it.
#[derive(Clone, Debug)]
pub struct HostNet {
    pub profile: String,
    pub kind: HostKind,
    pub network: Ipv4Net,
    /// The host's own address on it: the VMs' gateway and DNS server (`vmhost`).
    pub host_address: Ipv4Addr,
    /// First and last address dnsmasq (and vmnet) hand out.
    pub dhcp_range: (Ipv4Addr, Ipv4Addr),
    pub nodes: Vec<HostNode>,
    pub api_vip: Ipv4Addr,
    pub domain: String,
    /// Pod range of each Kubernetes node and the node's address (bridge CNI only: with Cilium
    /// the host needs no routes).
    pub routes: Option<Vec<(Ipv4Net, Ipv4Addr, String)>>,
}

impl HostNet {
    pub fn new(plan: &Plan, kind: HostKind) -> HostNet {
        let c = &plan.cluster;
        let nodes: Vec<HostNode> = plan
            .vms
            .iter()
            .map(|v| HostNode {
                name: v.name.clone(),
                mac: v.mac.clone(),
                address: v.address,
            })
            .collect();
        let routes = (c.cni == Cni::Bridge).then(|| {
            plan.vms
                .iter()
                .filter_map(|v| v.pod_cidr.map(|p| (p, v.address, v.name.clone())))
                .collect()
        });
        HostNet {
            profile: plan.profile.clone(),
            kind,
            network: c.host_network,
            host_address: c.gateway,
            // Validation refused a profile whose range does not fit (`profile::dhcp_range`).
            dhcp_range: profile::dhcp_range(c.gateway, nodes.iter().map(|n| n.address), c.api_vip)
                .unwrap_or((c.gateway, c.gateway)),
            nodes,
            api_vip: api_vip(plan),
            domain: host_domain(plan).to_string(),
            routes,
        }
    }

    /// vmnet-shared's options for this network (macOS): the host's address starts the range,
    /// as QEMU's vmnet backend takes it.
    pub fn vmnet_options(&self) -> String {
        format!(
            "start-address={},end-address={},subnet-mask={}",
            self.host_address,
            self.dhcp_range.1,
            self.network.netmask()
        )
    }
}

/// The API VIP (the profile's `cluster.api_vip`).
fn api_vip(plan: &Plan) -> Ipv4Addr {
    plan.cluster.api_vip
}

/// The host network's DNS domain (the profile's `cluster.host_domain`).
fn host_domain(plan: &Plan) -> &str {
    &plan.cluster.host_domain
}

/// A file `build` writes to `out/<arch>/host/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFile {
    pub name: &'static str,
    pub content: String,
    pub mode: u32,
}

/// The host files of `net`: `dnsmasq.conf` and `hosts` (the lines `host-setup` installs) and,
/// with the bridge CNI, `routes.sh`.
pub fn files(net: &HostNet) -> Vec<HostFile> {
    let mut files = vec![
        HostFile {
            name: "dnsmasq.conf",
            content: render::dnsmasq_block(net),
            mode: 0o644,
        },
        HostFile {
            name: "hosts",
            content: render::hosts_block(net),
            mode: 0o644,
        },
    ];
    if let Some(routes) = render::routes_script(net) {
        files.push(HostFile {
            name: "routes.sh",
            content: routes,
            mode: 0o755,
        });
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{plan, profile};

    fn net(text: &str, kind: HostKind) -> HostNet {
        let p = profile::parse(text, "test").unwrap();
        HostNet::new(&plan::plan(&p, kind.native_arch()).unwrap(), kind)
    }

    #[test]
    fn the_guide_network() {
        let n = net(profile::BUILTIN_YAML, HostKind::MacOs);
        assert_eq!(n.dhcp_range.0.to_string(), "192.168.1.2");
        assert_eq!(n.dhcp_range.1.to_string(), "192.168.1.20");
        assert_eq!(
            n.vmnet_options(),
            "start-address=192.168.1.1,end-address=192.168.1.20,subnet-mask=255.255.255.0"
        );
        let routes = n.routes.unwrap();
        assert_eq!(routes.len(), 6, "control and worker nodes, not the gateway");
        assert_eq!(routes[0].0.to_string(), "10.1.0.0/16");
        assert_eq!(routes[0].1.to_string(), "192.168.1.11");
    }

    #[test]
    fn the_range_ends_at_the_highest_node_when_the_vip_is_below_the_gateway() {
        let text = profile::BUILTIN_YAML
            .replace("api_vip: 192.168.1.21", "api_vip: 192.168.1.5")
            .replace("  gateway: 192.168.1.1\n", "  gateway: 192.168.1.6\n");
        let n = net(&text, HostKind::Linux);
        assert_eq!(n.dhcp_range.0.to_string(), "192.168.1.7");
        assert_eq!(n.dhcp_range.1.to_string(), "192.168.1.16");
    }

    #[test]
    fn a_wide_address_is_apart_from_its_name_in_the_hosts_block() {
        // Every host address moves to 192.168.100.0/24: 14 characters for the nodes'.
        let text = profile::BUILTIN_YAML.replace("192.168.1.", "192.168.100.");
        let n = net(&text, HostKind::Linux);
        let hosts = render::hosts_block(&n);
        assert!(hosts.contains("\n192.168.100.1 vmhost\n"), "{hosts}");
        assert!(hosts.contains("\n192.168.100.14 worker0\n"), "{hosts}");
        for line in hosts.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(line.split_whitespace().count(), 2, "{line}");
        }
    }

    #[test]
    fn cilium_needs_no_routes() {
        let text = profile::BUILTIN_YAML.replace("cni: bridge ", "cni: cilium ");
        let n = net(&text, HostKind::Linux);
        assert!(n.routes.is_none());
        assert!(files(&n).iter().all(|f| f.name != "routes.sh"));
    }
}
