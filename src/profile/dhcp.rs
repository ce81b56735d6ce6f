//! The DHCP range the host serves on the host network (dnsmasq's `dhcp-range`, vmnet's
//! `end-address`), derived from the profile: validation checks that it fits, `host` writes it.

use std::net::Ipv4Addr;

/// From the address after the gateway (the host) up to the one below the VIP when the VIP lies
/// above every node (the guide: .2 to .20, VIP .21, nodes .10 to .16), else up to the highest
/// node address. Nodes get their addresses by reservation, which dnsmasq honours anywhere in the
/// subnet; the range is for what has none. `None` when the gateway is the last IPv4 address.
pub fn dhcp_range(
    gateway: Ipv4Addr,
    nodes: impl IntoIterator<Item = Ipv4Addr>,
    vip: Ipv4Addr,
) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let start = u32::from(gateway).checked_add(1)?;
    let top = nodes.into_iter().map(u32::from).max().unwrap_or(start);
    let vip = u32::from(vip);
    let end = if vip > top { vip - 1 } else { top }.max(start);
    Some((Ipv4Addr::from(start), Ipv4Addr::from(end)))
}
