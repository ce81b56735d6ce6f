//! What the templates of one VM see: the VM, the cluster, the role's kernel modules,
//! directories and services (for this VM, grouped by how they start), the payload, the control
//! nodes (etcd's initial cluster, the API servers), and with static addressing the names the
//! node resolves from `/etc/hosts`.
//!
//! Every value that reaches a systemd unit or a shell line here comes from a validated profile
//! field of a closed grammar (`profile::validate::grammar`): node names are lowercase RFC 1123
//! labels, addresses and ranges are parsed `Ipv4Addr`/`Ipv4Net`, the API port a `u16`, the API
//! host a lowercase DNS name or IPv4 address and the domains lowercase DNS names, the
//! architecture an enum. None of them can hold a space, a quote, `$`, `%`, `;` or `\`
//! (`tests/injection` checks every output against arbitrary values).

use serde::Serialize;

use crate::payload::RolePayload;
use crate::plan::{Directory, Plan, RolePlan, Start, VmPlan};
use crate::profile::Addressing;

#[derive(Serialize)]
struct VmContext<'a> {
    #[serde(flatten)]
    vm: &'a VmPlan,
    is_kubernetes_node: bool,
}

/// A run of consecutive services started the same way: one `systemctl restart` line.
#[derive(Serialize)]
struct RestartGroup<'a> {
    no_block: bool,
    names: Vec<&'a str>,
}

#[derive(Serialize)]
struct DirectoryContext<'a> {
    path: &'a str,
    /// Octal, as chmod takes it.
    mode: String,
}

#[derive(Serialize)]
struct Member<'a> {
    name: &'a str,
    address: String,
}

/// One `/etc/hosts` line: an address and its names, the canonical one first.
#[derive(Serialize)]
struct HostsLine {
    address: String,
    names: Vec<String>,
}

/// The context of every template rendered for `vm`.
pub(super) fn vm_context(
    plan: &Plan,
    role: &RolePlan,
    vm: &VmPlan,
    payload: &RolePayload,
) -> minijinja::Value {
    let services: Vec<&str> = role
        .services_of(&vm.name)
        .map(|s| s.name.as_str())
        .collect();
    let mut groups: Vec<RestartGroup> = Vec::new();
    for s in role.services_of(&vm.name) {
        let no_block = s.start == Start::NoBlock;
        match groups.last_mut() {
            Some(g) if g.no_block == no_block => g.names.push(&s.name),
            _ => groups.push(RestartGroup {
                no_block,
                names: vec![&s.name],
            }),
        }
    }
    let wait_active: Vec<&str> = role
        .services_of(&vm.name)
        .filter(|s| s.start == Start::WaitActive)
        .map(|s| s.name.as_str())
        .collect();
    let sysctl_files: Vec<&str> = role
        .configs_of(&vm.name)
        .map(|c| c.path.as_str())
        .filter(|p| p.starts_with("/etc/sysctl.d/"))
        .collect();
    let control_nodes: Vec<Member> = plan
        .control_nodes()
        .map(|v| Member {
            name: &v.name,
            address: v.address.to_string(),
        })
        .collect();
    let directories: Vec<DirectoryContext> = role
        .directories
        .iter()
        .map(|d: &Directory| DirectoryContext {
            path: &d.path,
            mode: format!("{:04o}", d.mode),
        })
        .collect();
    let any_no_block = groups.iter().any(|g| g.no_block);
    minijinja::context! {
        vm => VmContext { vm, is_kubernetes_node: vm.role.is_kubernetes_node() },
        cluster => &plan.cluster,
        arch => plan.arch,
        modules => &role.kernel_modules,
        services => services,
        restart_groups => groups,
        any_no_block => any_no_block,
        wait_active => wait_active,
        sysctl_files => sysctl_files,
        directories => directories,
        control_nodes => control_nodes,
        etc_hosts => etc_hosts(plan),
        payload => payload,
        first_boot_script => super::FIRST_BOOT_SCRIPT,
    }
}

/// With static addressing no DHCP server's DNS knows the cluster's names: the API name on the
/// VIP and every node, as `/etc/hosts` lines. None with DHCP (the host's dnsmasq has them).
fn etc_hosts(plan: &Plan) -> Vec<HostsLine> {
    let c = &plan.cluster;
    if c.addressing != Addressing::Static {
        return Vec::new();
    }
    let mut api_names = vec![
        format!("kubernetes.{}", c.host_domain),
        "kubernetes".to_string(),
    ];
    if c.api_host.parse::<std::net::Ipv4Addr>().is_err() && !api_names.contains(&c.api_host) {
        api_names.push(c.api_host.clone());
    }
    let mut lines = vec![HostsLine {
        address: c.api_vip.to_string(),
        names: api_names,
    }];
    for v in &plan.vms {
        lines.push(HostsLine {
            address: v.address.to_string(),
            names: vec![format!("{}.{}", v.name, c.host_domain), v.name.clone()],
        });
    }
    lines
}
