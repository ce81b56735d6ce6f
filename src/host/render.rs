//! The text of every host file, from a [`HostNet`]: the dnsmasq lines and the `/etc/hosts`
//! block (both between markers), `routes.sh`, and on Linux the bridge/NAT script, the unit that
//! runs it at boot and the IP forwarding sysctl. Deterministic: the same network, the same bytes.

use std::fmt::Write as _;

use super::block;
use super::{HostKind, HostNet, API_NAME, BRIDGE, HOST_NAME};

/// Where the Linux pieces live on the host (`host-setup` writes them; the unit and the
/// script name each other).
pub(super) const KUBENET_SCRIPT: &str = "/usr/local/sbin/imagegen-kubenet";
pub(super) const KUBENET_UNIT_NAME: &str = "imagegen-kubenet.service";
/// The NAT chain of the host network (in the `nat` table).
const NAT_CHAIN: &str = "IMAGEGEN-KUBENET";

// Writing to a String cannot fail: the functions below ignore `writeln!`'s Ok.

/// dnsmasq's lines for the host network, between markers: DHCP with one reservation per node
/// (MAC, address, name), authoritative; the domain, added to plain names; the API VIP under its
/// name; on Linux, only on the bridge.
pub(super) fn dnsmasq_block(net: &HostNet) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# DHCP and DNS of the {} cluster's host network {} (imagegen host-setup)",
        net.profile, net.network
    );
    let _ = writeln!(
        s,
        "dhcp-range={},{},12h",
        net.dhcp_range.0, net.dhcp_range.1
    );
    for n in &net.nodes {
        let _ = writeln!(s, "dhcp-host={},{},{}", n.mac, n.address, n.name);
    }
    let _ = writeln!(s, "dhcp-authoritative");
    let _ = writeln!(s, "domain={}", net.domain);
    let _ = writeln!(s, "expand-hosts");
    let _ = writeln!(
        s,
        "host-record={API_NAME},{API_NAME}.{},{}",
        net.domain, net.api_vip
    );
    if net.kind == HostKind::Linux {
        let _ = writeln!(s, "interface={BRIDGE}");
        let _ = writeln!(s, "bind-interfaces");
    }
    block::wrap(&net.profile, &s)
}

/// The `/etc/hosts` block: the host as `vmhost`, every node, the API VIP as `kubernetes`.
pub(super) fn hosts_block(net: &HostNet) -> String {
    let mut s = String::new();
    // Names line up in a column; an address as wide as the column still gets its space.
    let mut entry = |addr: String, name: &str| {
        let pad = 14usize.saturating_sub(addr.len()).max(1);
        let _ = writeln!(s, "{addr}{:pad$}{name}", "");
    };
    entry(net.host_address.to_string(), HOST_NAME);
    for n in &net.nodes {
        entry(n.address.to_string(), &n.name);
    }
    entry(net.api_vip.to_string(), API_NAME);
    block::wrap(&net.profile, &s)
}

/// `routes.sh`: a route from the host to each Kubernetes node's pod range through the node
/// (the guide's `setuproutes.sh`); `None` when the CNI needs none.
pub(super) fn routes_script(net: &HostNet) -> Option<String> {
    let routes = net.routes.as_ref()?;
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/sh");
    let _ = writeln!(
        s,
        "# Routes from this {} host to the pods of each Kubernetes node of the {} cluster (bridge",
        net.kind, net.profile
    );
    let _ = writeln!(
        s,
        "# CNI: a node's pods are reachable through the node's address). Written by imagegen build."
    );
    match net.kind {
        HostKind::Linux => {
            let _ = writeln!(
                s,
                "# Run as root once `imagegen host-setup` has made the bridge {BRIDGE}:"
            );
        }
        HostKind::MacOs => {
            let _ = writeln!(
                s,
                "# Run as root while a VM runs: macOS makes the vmnet bridge only then, and drops these"
            );
            let _ = writeln!(s, "# routes with it when the last VM stops:");
        }
    }
    let _ = writeln!(s, "#   sh routes.sh          add (or update) every route");
    let _ = writeln!(s, "#   sh routes.sh remove   remove them");
    let _ = writeln!(s, "set -eu");
    let _ = writeln!(s, "action=${{1:-add}}");
    let _ = writeln!(s, "pod_route() {{");
    let _ = writeln!(s, "  case $action in");
    match net.kind {
        HostKind::Linux => {
            let _ = writeln!(s, "    add) ip route replace \"$1\" via \"$2\" ;;");
            let _ = writeln!(
                s,
                "    remove) ip route del \"$1\" via \"$2\" 2>/dev/null || true ;;"
            );
        }
        HostKind::MacOs => {
            let _ = writeln!(
                s,
                "    add) /sbin/route -n delete -net \"$1\" >/dev/null 2>&1 || true"
            );
            let _ = writeln!(s, "         /sbin/route -n add -net \"$1\" \"$2\" ;;");
            let _ = writeln!(
                s,
                "    remove) /sbin/route -n delete -net \"$1\" >/dev/null 2>&1 || true ;;"
            );
        }
    }
    let _ = writeln!(s, "    *) echo \"usage: $0 [add|remove]\" >&2; exit 2 ;;");
    let _ = writeln!(s, "  esac");
    let _ = writeln!(s, "}}");
    for (pods, via, name) in routes {
        let _ = writeln!(s, "pod_route {pods} {via}   # {name}");
    }
    Some(s)
}

/// `/etc/sysctl.d/...`: IP forwarding at boot (the NAT rule needs it).
pub(super) fn sysctl_conf(net: &HostNet) -> String {
    format!(
        "# The {} cluster's VMs reach the outside through this host (imagegen host-setup).\nnet.ipv4.ip_forward = 1\n",
        net.profile
    )
}

/// The Linux script that makes the host network and removes it again, in the current network
/// namespace: the bridge with the host's address, and NAT for the host network to everything
/// but the bridge. `up` creates what is missing and prints one `<part>: <what>` line per change
/// (the parts `host-setup` records for `--undo`); `down [PART...]` removes them.
pub(super) fn kubenet_script(net: &HostNet) -> String {
    let address = format!("{}/{}", net.host_address, net.network.prefix_len());
    format!(
        r#"#!/bin/sh
# The host side of the {profile} cluster's network on Linux: bridge {BRIDGE} with {address}, and NAT
# for {network} to everything but the bridge. Written by `imagegen host-setup`; run at boot by
# {KUBENET_UNIT_NAME}. Works in the current network namespace.
#   imagegen-kubenet up              create what is missing, one line per change
#   imagegen-kubenet down [PART...]  undo PARTs: nat, address, link (up), bridge (default: all)
set -eu
bridge={BRIDGE}
address={address}
network={network}
chain={NAT_CHAIN}

need() {{
  command -v "$1" >/dev/null 2>&1 || {{ echo "imagegen-kubenet: $1 not found (apt-get install $2)" >&2; exit 1; }}
}}
has_bridge() {{ ip link show dev "$bridge" >/dev/null 2>&1; }}
has_address() {{ ip -o -4 addr show dev "$bridge" 2>/dev/null | grep -qF " inet $address "; }}
has_chain() {{ iptables -w -t nat -S "$chain" >/dev/null 2>&1; }}
is_up() {{ ip -o link show dev "$bridge" | grep -q '[<,]UP[,>]'; }}

up() {{
  need ip iproute2
  need iptables iptables
  if ! has_bridge; then
    ip link add name "$bridge" type bridge
    echo "bridge: created $bridge"
  fi
  if ! has_address; then
    ip addr add "$address" dev "$bridge"
    echo "address: added $address to $bridge"
  fi
  if ! is_up; then
    ip link set dev "$bridge" up
    echo "link: set $bridge up"
  fi
  if ! has_chain; then
    iptables -w -t nat -N "$chain"
    echo "nat: created chain $chain"
  fi
  if ! iptables -w -t nat -C POSTROUTING -j "$chain" 2>/dev/null; then
    iptables -w -t nat -A POSTROUTING -j "$chain"
    echo "nat: POSTROUTING jumps to $chain"
  fi
  if ! iptables -w -t nat -C "$chain" -s "$network" ! -o "$bridge" -j MASQUERADE 2>/dev/null; then
    iptables -w -t nat -A "$chain" -s "$network" ! -o "$bridge" -j MASQUERADE
    echo "nat: masquerading $network except to $bridge"
  fi
}}

down() {{
  [ $# -gt 0 ] || set -- nat address link bridge
  for part in "$@"; do
    case $part in
      nat)
        if has_chain; then
          while iptables -w -t nat -D POSTROUTING -j "$chain" 2>/dev/null; do :; done
          iptables -w -t nat -F "$chain"
          iptables -w -t nat -X "$chain"
          echo "nat: removed chain $chain"
        fi ;;
      address)
        if has_bridge && has_address; then
          ip addr del "$address" dev "$bridge"
          echo "address: removed $address from $bridge"
        fi ;;
      link)
        if has_bridge && is_up; then
          ip link set dev "$bridge" down
          echo "link: set $bridge down"
        fi ;;
      bridge)
        if has_bridge; then
          ip link del dev "$bridge"
          echo "bridge: deleted $bridge"
        fi ;;
      *) echo "imagegen-kubenet: unknown part $part (nat, address, bridge)" >&2; exit 2 ;;
    esac
  done
}}

case "${{1:-}}" in
  up) up ;;
  down) shift; down "$@" ;;
  *) echo "usage: $0 up | down [nat] [address] [link] [bridge]" >&2; exit 2 ;;
esac
"#,
        profile = net.profile,
        network = net.network,
    )
}

/// The unit that runs the script at boot, before dnsmasq (which binds to the bridge).
pub(super) fn kubenet_unit(net: &HostNet) -> String {
    format!(
        "[Unit]\n\
         Description=Host network of the {profile} cluster (bridge {BRIDGE}, NAT for {network})\n\
         After=network.target\n\
         Before=dnsmasq.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={KUBENET_SCRIPT} up\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        profile = net.profile,
        network = net.network,
    )
}
