//! Per-VM cloud-init seeds: `user-data`, `meta-data`, `network-config`.
//!
//! Config file bodies come from minijinja templates (`templates`: `user-data/*.j2`, compiled
//! in, overridable with `--templates DIR`, strict about undefined values) rendered with the
//! VM's context (`context`), or from the PKI. The cloud-config document itself (here) and the
//! network config (`network`) are built as data and serialized, so no value can break their
//! YAML.

mod context;
mod network;
mod templates;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Context as _;
use serde::Serialize;
use serde_saphyr::LitString;

use crate::digest::sha256_bytes;
use crate::payload::RolePayload;
use crate::pki::Pki;
use crate::plan::{ConfigFile, Plan, VmPlan};
use crate::profile::{Addressing, Role};

pub use templates::Templates;

/// Where the first-boot script lands; runcmd runs it and nothing else.
pub const FIRST_BOOT_SCRIPT: &str = "/usr/local/sbin/imagegen-first-boot";

/// One file a VM gets from its seed, as the build manifest records it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct NodeFile {
    pub path: String,
    pub mode: String,
    pub owner: String,
    pub sha256: String,
    pub secret: bool,
}

/// The seed of one VM.
pub struct Seed {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
    /// Config files written by user-data (binaries come from the payload).
    pub files: Vec<NodeFile>,
}

/// Everything the seed stage needs besides the plan.
pub struct SeedInputs<'a> {
    pub plan: &'a Plan,
    pub pki: &'a Pki,
    pub templates: &'a Templates,
    pub ssh_keys: &'a [String],
    /// The payload of each role.
    pub payloads: &'a BTreeMap<Role, RolePayload>,
}

// Field order is the order in user-data: identity first, then files, then what runs.
#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    preserve_hostname: bool,
    manage_etc_hosts: ManageEtcHosts,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ssh_authorized_keys: &'a [String],
    // Host keys are made only when missing; keeping them means a seed update (new instance-id)
    // does not change a node's SSH identity.
    ssh_deletekeys: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_certs: Option<CaCerts>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    write_files: Vec<WriteFile>,
    // cloud-init installs these (refreshing the package lists first) before runcmd runs.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    packages: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runcmd: Vec<serde_saphyr::FlowSeq<Vec<String>>>,
}

/// `true`: cloud-init renders /etc/hosts from its template at every boot. `localhost`: it only
/// keeps the 127.0.1.1 line of the host name and leaves every other line alone, which the
/// static-addressing block of the first-boot script needs to survive a reboot.
#[derive(Serialize)]
#[serde(untagged)]
enum ManageEtcHosts {
    Template(bool),
    Localhost(&'static str),
}

#[derive(Serialize)]
struct CaCerts {
    trusted: Vec<LitString>,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    owner: &'static str,
    permissions: String,
    content: LitString,
    // Written in cloud-init's final stage, after `packages`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    defer: bool,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

/// Renders the seed of one VM.
pub fn render(inputs: &SeedInputs, vm: &VmPlan) -> anyhow::Result<Seed> {
    let plan = inputs.plan;
    let role = plan
        .role(vm.role)
        .with_context(|| format!("internal: no role plan for {}", vm.role))?;
    let payload = inputs.payloads.get(&vm.role).unwrap_or(&RolePayload::None);
    let ctx = context::vm_context(plan, role, vm, payload);

    let mut files = Vec::new();
    let mut write_files = Vec::new();
    for cf in role.configs_of(&vm.name) {
        let content = config_content(inputs, cf, vm, &ctx)?;
        let file = NodeFile::new(
            &cf.path.replace("{name}", &vm.name),
            cf.mode,
            cf.secret,
            &content,
        );
        write_files.push(WriteFile::new(&file, content, cf.after_packages));
        files.push(file);
    }
    let script = inputs.templates.render("first-boot.sh", &ctx)?;
    let file = NodeFile::new(FIRST_BOOT_SCRIPT, 0o755, false, &script);
    write_files.push(WriteFile::new(&file, script, false));
    files.push(file);

    let doc = CloudConfig {
        hostname: &vm.name,
        preserve_hostname: false,
        manage_etc_hosts: match plan.cluster.addressing {
            Addressing::Dhcp => ManageEtcHosts::Template(true),
            Addressing::Static => ManageEtcHosts::Localhost("localhost"),
        },
        ssh_authorized_keys: inputs.ssh_keys,
        ssh_deletekeys: false,
        ca_certs: role.trust_cluster_ca.then(|| CaCerts {
            trusted: vec![LitString(inputs.pki.ca_pem().to_string())],
        }),
        write_files,
        packages: &role.packages,
        runcmd: vec![serde_saphyr::FlowSeq(vec![FIRST_BOOT_SCRIPT.to_string()])],
    };
    let mut user_data = String::from("#cloud-config\n");
    let header = format!(
        "{} for {} ({}), profile {}, by imagegen {}. Generated: edit the profile, not this file.",
        vm.name,
        plan.arch,
        vm.role,
        plan.profile,
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(user_data, "# {}", comment_text(&header));
    user_data.push_str(&serde_saphyr::to_string(&doc).context("serializing user-data")?);

    let network_config = network::network_config(plan, vm)?;
    // A new instance-id whenever the seed changes makes cloud-init apply the new seed on the next
    // boot; an unchanged seed keeps the id, so a reboot runs no first-boot step again.
    let mut h = sha256_bytes(format!("{user_data}\0{network_config}").as_bytes())
        .hex()
        .to_string();
    h.truncate(16);
    let meta_data = serde_saphyr::to_string(&MetaData {
        instance_id: format!("{}-{h}", vm.name),
        local_hostname: &vm.name,
    })
    .context("serializing meta-data")?;

    Ok(Seed {
        user_data,
        meta_data,
        network_config,
        files,
    })
}

/// `text` as the rest of a YAML comment line: the validated names it is made of are printable
/// ASCII already; anything else (a line break that would start a top-level key) becomes `?`.
fn comment_text(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl NodeFile {
    fn new(path: &str, mode: u32, secret: bool, content: &str) -> Self {
        NodeFile {
            path: path.to_string(),
            mode: format!("{mode:04o}"),
            owner: "root:root".into(),
            sha256: sha256_bytes(content.as_bytes()).hex().to_string(),
            secret,
        }
    }
}

impl WriteFile {
    fn new(file: &NodeFile, content: String, defer: bool) -> Self {
        WriteFile {
            path: file.path.clone(),
            owner: "root:root",
            permissions: file.mode.clone(),
            content: LitString(content),
            defer,
        }
    }
}

/// The content of one config file: a file of the PKI, a kubeconfig for the API server on the
/// node itself, or a rendered template.
fn config_content(
    inputs: &SeedInputs,
    cf: &ConfigFile,
    vm: &VmPlan,
    ctx: &minijinja::Value,
) -> anyhow::Result<String> {
    let source = cf.source.replace("{name}", &vm.name);
    if let Some(file) = source.strip_prefix("pki:") {
        return Ok(inputs.pki.file(file)?.to_string());
    }
    if let Some(identity) = source.strip_prefix("localhost-kubeconfig:") {
        let server = format!("https://127.0.0.1:{}", inputs.plan.cluster.api_port);
        return inputs.pki.kubeconfig(identity, &server);
    }
    inputs.templates.render(&source, ctx)
}

/// The kubelet-access RBAC manifest (the chapter's ClusterRole and binding) that the first
/// control node applies, rendered as for that node, for `out/<arch>/cluster/`; `None` without
/// control nodes.
pub fn kubelet_access_rbac(inputs: &SeedInputs) -> anyhow::Result<Option<String>> {
    let plan = inputs.plan;
    let (Some(vm), Some(role)) = (plan.control_nodes().next(), plan.role(Role::Control)) else {
        return Ok(None);
    };
    let payload = inputs.payloads.get(&vm.role).unwrap_or(&RolePayload::None);
    let ctx = context::vm_context(plan, role, vm, payload);
    inputs
        .templates
        .render("kubelet-access-rbac.yaml", &ctx)
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::comment_text;

    #[test]
    fn a_comment_stays_one_line() {
        assert_eq!(comment_text("kthw-1.31 for arm64"), "kthw-1.31 for arm64");
        assert_eq!(
            comment_text("x\nbootcmd: [[touch, /root/pwned]]\r\u{2028}é"),
            "x?bootcmd: [[touch, /root/pwned]]???"
        );
    }
}
