//! `network-config`: netplan v2, built as data. The NIC is matched by the VM's MAC and gets
//! DHCP or its static address. The API's virtual IP goes where the guide puts it: on the
//! gateway's NIC (it answers ARP for it and balances what arrives) and on each control node's
//! `lo` (it accepts what the gateway forwards, and the ARP sysctls keep it quiet about it).
//!
//! Every NIC searches the host network's domain: the kubeconfigs name the API server by a single
//! label (`https://kubernetes:6443`), and systemd-resolved sends a single-label name only to
//! LLMNR unless a search domain turns it into `kubernetes.<host_domain>`, which the host's dnsmasq
//! answers. systemd-networkd does not take the search domain from DHCP by default, so it is
//! written here, from the profile.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use crate::plan::{Plan, VmPlan};
use crate::profile::{Addressing, Role};

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Serialize)]
struct Ethernet {
    #[serde(rename = "match")]
    matching: Match,
    #[serde(skip_serializing_if = "Option::is_none")]
    dhcp4: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Match {
    Mac { macaddress: String },
    Name { name: &'static str },
}

#[derive(Serialize)]
struct Route {
    to: &'static str,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    search: Vec<String>,
}

pub(super) fn network_config(plan: &Plan, vm: &VmPlan) -> anyhow::Result<String> {
    let c = &plan.cluster;
    let vip = format!("{}/32", c.api_vip);
    let mut nic = Ethernet {
        matching: Match::Mac {
            macaddress: vm.mac.clone(),
        },
        dhcp4: Some(c.addressing == Addressing::Dhcp),
        addresses: Vec::new(),
        routes: Vec::new(),
        nameservers: Some(Nameservers {
            addresses: Vec::new(),
            search: vec![c.host_domain.clone()],
        }),
    };
    if c.addressing == Addressing::Static {
        nic.addresses
            .push(format!("{}/{}", vm.address, vm.prefix_len));
        nic.routes.push(Route {
            to: "default",
            via: c.gateway.to_string(),
        });
        nic.nameservers = Some(Nameservers {
            addresses: c.dns.iter().map(|d| d.to_string()).collect(),
            search: vec![c.host_domain.clone()],
        });
    }
    let mut ethernets = BTreeMap::new();
    match vm.role {
        Role::Gateway => nic.addresses.push(vip),
        Role::Control => {
            ethernets.insert(
                "lo".to_string(),
                Ethernet {
                    matching: Match::Name { name: "lo" },
                    dhcp4: None,
                    addresses: vec![vip],
                    routes: Vec::new(),
                    nameservers: None,
                },
            );
        }
        Role::Worker => {}
    }
    ethernets.insert("primary".to_string(), nic);
    let doc = NetworkConfig {
        version: 2,
        ethernets,
    };
    serde_saphyr::to_string(&doc).context("serializing network-config")
}
