//! The forms of `imagegen plan`: the human-readable text (the cluster, the VMs, the components
//! and, per role, every file with its mode and source, the directories, packages and services,
//! in the profile's own words), and the JSON with its version and schema.

use std::fmt::Write as _;

use schemars::JsonSchema;
use serde::Serialize;

use super::{Plan, RolePlan, Source, Start};

/// The version of the layout of `plan --json`: raised when a field is removed, renamed or
/// changes its meaning (a new field may appear without it).
pub const SCHEMA_VERSION: u32 = 1;

/// What `plan --json` prints: the plan with the version of its layout.
#[derive(Serialize, JsonSchema)]
#[schemars(
    title = "imagegen plan",
    description = "What `imagegen build` would do for one architecture (`imagegen plan --json`). Modes are octal strings (\"0755\"), digests `sha256:<hex>` or `sha512:<hex>`."
)]
struct PlanDocument<'a> {
    /// The version of this layout; a reader should refuse one it does not know.
    #[schemars(extend("const" = 1))]
    schema_version: u32,
    #[serde(flatten)]
    plan: &'a Plan,
}

/// The JSON of `plan --json`, pretty-printed, ending in a newline.
pub fn render_json(plan: &Plan) -> serde_json::Result<String> {
    let doc = PlanDocument {
        schema_version: SCHEMA_VERSION,
        plan,
    };
    let mut json = serde_json::to_string_pretty(&doc)?;
    json.push('\n');
    Ok(json)
}

/// The JSON schema of `plan --json` (docs/plan.schema.json), pretty-printed, ending in a
/// newline.
pub fn json_schema() -> serde_json::Result<String> {
    let schema = schemars::schema_for!(PlanDocument<'static>);
    let mut json = serde_json::to_string_pretty(&schema)?;
    json.push('\n');
    Ok(json)
}

/// The human-readable form of `imagegen plan`.
pub fn render_text(plan: &Plan) -> String {
    let mut s = String::new();
    render_cluster(&mut s, plan);
    render_vms(&mut s, plan);
    render_components(&mut s, plan);
    for r in &plan.roles {
        render_role(&mut s, r);
    }
    s
}

// Writing to a String cannot fail: the render functions ignore `writeln!`'s Ok.

fn render_cluster(s: &mut String, plan: &Plan) {
    let c = &plan.cluster;
    let _ = writeln!(
        s,
        "profile {} ({}), arch {}",
        plan.profile, plan.profile_source, plan.arch
    );
    let _ = writeln!(
        s,
        "cluster: pods {} (one /{} per node), services {}, DNS {}, domain {}, API {} (VIP {}), hosts {} via {} ({}, domain {}), CNI {}",
        c.pod_cidr,
        plan.vms.iter().find_map(|v| v.pod_cidr).map(|n| n.prefix_len()).unwrap_or(0),
        c.service_cidr,
        c.cluster_dns,
        c.cluster_domain,
        c.api_endpoint,
        c.api_vip,
        c.host_network,
        c.gateway,
        c.addressing.as_str(),
        c.host_domain,
        c.cni.as_str()
    );
}

fn render_vms(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\nVMs:");
    let _ = writeln!(
        s,
        "  {:<10} {:>3}  {:<8} {:<17}  {:<15}  {:<13}  {:<14}  taints",
        "name", "id", "role", "mac", "address", "pod cidr", "cpus/mem/disk"
    );
    for v in &plan.vms {
        let taints: Vec<String> = v
            .taints
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        let r = v.resources;
        let _ = writeln!(
            s,
            "  {:<10} {:>3}  {:<8} {:<17}  {:<15}  {:<13}  {:<14}  {}",
            v.name,
            v.id,
            v.role.as_str(),
            v.mac,
            v.address,
            v.pod_cidr
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{}/{}/{}", r.cpus, r.memory, r.disk),
            if taints.is_empty() {
                "-".to_string()
            } else {
                taints.join(",")
            }
        );
    }
}

fn render_components(s: &mut String, plan: &Plan) {
    let _ = writeln!(s, "\ncomponents ({}):", plan.arch);
    for a in plan.artifacts.iter().chain(&plan.pinned_only) {
        let note = if plan.pinned_only.contains(a) {
            "  (pinned, not installed yet)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {} {}{}\n    {}\n    {}",
            a.component, a.version, note, a.url, a.digest
        );
    }
    if let Some(a) = &plan.base_image {
        let _ = writeln!(
            s,
            "  {} {}  (the VMs' disk, for launch; not in any seed)\n    {}\n    {}",
            a.component, a.version, a.url, a.digest
        );
    }
}

fn render_role(s: &mut String, r: &RolePlan) {
    let _ = writeln!(s, "\nrole {} ({}):", r.role, r.vms.join(", "));
    if r.installs.is_empty() && r.configs.is_empty() && r.packages.is_empty() {
        let _ = writeln!(s, "  host name, network and SSH keys only");
        return;
    }
    if !r.packages.is_empty() {
        let _ = writeln!(
            s,
            "  packages: {} (installed by cloud-init at first boot, from the distribution's mirrors)",
            r.packages.join(", ")
        );
    }
    if r.trust_cluster_ca {
        let _ = writeln!(s, "  trusts the cluster CA (cloud-init ca_certs)");
    }
    for i in &r.installs {
        let from = match &i.source {
            Source::Whole => String::new(),
            Source::Member { path } => format!(":{path}"),
            Source::Dir { path, .. } => {
                format!(":{}/*", if path.is_empty() { "." } else { path })
            }
        };
        let _ = writeln!(
            s,
            "  {:04o} {:<40} <- {}{}",
            i.mode,
            if matches!(i.source, Source::Dir { .. }) {
                format!("{}/*", i.dest)
            } else {
                i.dest.clone()
            },
            i.component,
            from
        );
    }
    for f in &r.configs {
        let mut notes = String::new();
        if f.secret {
            notes.push_str(" (secret)");
        }
        if let Some(vm) = &f.only_on {
            notes.push_str(&format!(" ({vm} only)"));
        }
        if f.after_packages {
            notes.push_str(" (after the packages)");
        }
        let _ = writeln!(s, "  {:04o} {:<40} <- {}{notes}", f.mode, f.path, f.source);
    }
    for d in &r.directories {
        let _ = writeln!(s, "  {:04o} {}/ (directory)", d.mode, d.path);
    }
    let services: Vec<String> = r
        .services
        .iter()
        .map(|sv| {
            let mut t = sv.name.clone();
            match sv.start {
                Start::Restart => {}
                Start::NoBlock => t.push_str(" (not awaited)"),
                Start::WaitActive => t.push_str(" (awaited until active)"),
            }
            if let Some(vm) = &sv.only_on {
                t.push_str(&format!(" ({vm} only)"));
            }
            t
        })
        .collect();
    let _ = writeln!(
        s,
        "  services: {}; kernel modules: {}",
        services.join(", "),
        r.kernel_modules.join(", ")
    );
}
