//! Per-VM cloud-init seeds: `user-data`, `meta-data`, `network-config`.
//!
//! Config file bodies come from minijinja templates (`user-data/*.j2`, compiled in, overridable
//! with `--templates DIR`, strict about undefined values). The cloud-config document itself is
//! built as data and serialized, so no value can break its YAML.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use camino::Utf8Path;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_saphyr::LitString;

use crate::digest::sha256_bytes;
use crate::payload::RolePayload;
use crate::pki::Pki;
use crate::plan::{ConfigFile, Plan, VmPlan};
use crate::profile::{Addressing, Role};

/// Where the first-boot script lands; runcmd runs it and nothing else.
pub const FIRST_BOOT_SCRIPT: &str = "/usr/local/sbin/imagegen-first-boot";

/// The compiled-in templates, by name (file name without `.j2`).
const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "10-bridge.conf",
        include_str!("../user-data/10-bridge.conf.j2"),
    ),
    (
        "99-loopback.conf",
        include_str!("../user-data/99-loopback.conf.j2"),
    ),
    (
        "containerd-config.toml",
        include_str!("../user-data/containerd-config.toml.j2"),
    ),
    (
        "containerd.service",
        include_str!("../user-data/containerd.service.j2"),
    ),
    (
        "first-boot.sh",
        include_str!("../user-data/first-boot.sh.j2"),
    ),
    (
        "kube-proxy-config.yaml",
        include_str!("../user-data/kube-proxy-config.yaml.j2"),
    ),
    (
        "kube-proxy.service",
        include_str!("../user-data/kube-proxy.service.j2"),
    ),
    (
        "kubelet-config.yaml",
        include_str!("../user-data/kubelet-config.yaml.j2"),
    ),
    (
        "kubelet.service",
        include_str!("../user-data/kubelet.service.j2"),
    ),
    (
        "modules-load.conf",
        include_str!("../user-data/modules-load.conf.j2"),
    ),
    ("sysctl.conf", include_str!("../user-data/sysctl.conf.j2")),
];

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by `DIR/<name>.j2` when that file exists.
    pub fn load(override_dir: Option<&Utf8Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("sh", shell_quote);
        if let Some(dir) = override_dir {
            let entries = fs_err::read_dir(dir.as_std_path())
                .with_context(|| format!("--templates {dir}: cannot list the directory"))?;
            for e in entries {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".j2") {
                    if !BUILTIN_TEMPLATES.iter().any(|(n, _)| *n == stem) {
                        bail!(
                            "--templates {dir}: unknown template {name} (known: {})",
                            BUILTIN_TEMPLATES
                                .iter()
                                .map(|(n, _)| format!("{n}.j2"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
            }
        }
        for (name, builtin) in BUILTIN_TEMPLATES {
            let source = match override_dir.map(|d| d.join(format!("{name}.j2"))) {
                Some(p) if p.exists() => crate::fsutil::read_to_string(p.as_std_path())?,
                _ => builtin.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .with_context(|| format!("template {name}.j2 does not parse"))?;
        }
        Ok(Templates { env })
    }

    fn render(&self, name: &str, ctx: &minijinja::Value) -> anyhow::Result<String> {
        let t = self
            .env
            .get_template(name)
            .with_context(|| format!("no template {name}.j2"))?;
        t.render(ctx)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("rendering template {name}.j2"))
    }
}

/// Single-quotes a value for POSIX sh.
fn shell_quote(v: String) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

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

#[derive(Serialize)]
struct VmContext<'a> {
    #[serde(flatten)]
    vm: &'a VmPlan,
    is_kubernetes_node: bool,
}

// Field order is the order in user-data: identity first, then files, then what runs.
#[derive(Serialize)]
struct CloudConfig<'a> {
    hostname: &'a str,
    preserve_hostname: bool,
    manage_etc_hosts: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ssh_authorized_keys: &'a [String],
    // Host keys are made only when missing; keeping them means a seed update (new instance-id)
    // does not change a node's SSH identity.
    ssh_deletekeys: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    write_files: Vec<WriteFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    runcmd: Vec<serde_saphyr::FlowSeq<Vec<String>>>,
}

#[derive(Serialize)]
struct WriteFile {
    path: String,
    owner: &'static str,
    permissions: String,
    content: LitString,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Serialize)]
struct Ethernet {
    #[serde(rename = "match")]
    matching: MacMatch,
    dhcp4: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct MacMatch {
    macaddress: String,
}

#[derive(Serialize)]
struct Route {
    to: &'static str,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

/// Renders the seed of one VM.
pub fn render(inputs: &SeedInputs, vm: &VmPlan) -> anyhow::Result<Seed> {
    let plan = inputs.plan;
    let role = plan
        .role(vm.role)
        .with_context(|| format!("internal: no role plan for {}", vm.role))?;
    let payload = inputs.payloads.get(&vm.role).unwrap_or(&RolePayload::None);
    let ctx = minijinja::context! {
        vm => VmContext { vm, is_kubernetes_node: vm.role.is_kubernetes_node() },
        cluster => &plan.cluster,
        modules => &role.kernel_modules,
        services => &role.services,
        payload => payload,
    };

    let mut files = Vec::new();
    let mut write_files = Vec::new();
    for cf in &role.configs {
        let content = config_content(inputs, cf, vm, &ctx)?;
        push_file(
            &mut files,
            &mut write_files,
            cf.path.replace("{name}", &vm.name),
            cf.mode,
            cf.secret,
            content,
        );
    }
    let script = inputs.templates.render("first-boot.sh", &ctx)?;
    push_file(
        &mut files,
        &mut write_files,
        FIRST_BOOT_SCRIPT.to_string(),
        0o755,
        false,
        script,
    );

    let doc = CloudConfig {
        hostname: &vm.name,
        preserve_hostname: false,
        manage_etc_hosts: true,
        ssh_authorized_keys: inputs.ssh_keys,
        ssh_deletekeys: false,
        write_files,
        runcmd: vec![serde_saphyr::FlowSeq(vec![FIRST_BOOT_SCRIPT.to_string()])],
    };
    let mut user_data = String::from("#cloud-config\n");
    let _ = writeln!(
        user_data,
        "# {} for {} ({}), profile {}, by imagegen {}. Generated: edit the profile, not this file.",
        vm.name,
        plan.arch,
        vm.role,
        plan.profile,
        env!("CARGO_PKG_VERSION")
    );
    user_data.push_str(&serde_saphyr::to_string(&doc).context("serializing user-data")?);

    let network_config = network_config(plan, vm)?;
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

fn push_file(
    files: &mut Vec<NodeFile>,
    write_files: &mut Vec<WriteFile>,
    path: String,
    mode: u32,
    secret: bool,
    content: String,
) {
    let permissions = format!("{mode:04o}");
    files.push(NodeFile {
        path: path.clone(),
        mode: permissions.clone(),
        owner: "root:root".into(),
        sha256: sha256_bytes(content.as_bytes()).hex().to_string(),
        secret,
    });
    write_files.push(WriteFile {
        path,
        owner: "root:root",
        permissions,
        content: LitString(content),
    });
}

/// The content of one config file: a credential from the PKI or a rendered template.
fn config_content(
    inputs: &SeedInputs,
    cf: &ConfigFile,
    vm: &VmPlan,
    ctx: &minijinja::Value,
) -> anyhow::Result<String> {
    let pki = inputs.pki;
    let node = || {
        pki.nodes
            .get(&vm.name)
            .with_context(|| format!("no credentials for {} in {}", vm.name, pki.dir))
    };
    Ok(match cf.source.as_str() {
        "pki:ca" => pki.ca_pem.clone(),
        "pki:node-cert" => node()?.cert_pem.clone(),
        "pki:node-key" => node()?.key_pem.clone(),
        "pki:node-kubeconfig" => node()?.kubeconfig.clone(),
        "pki:kube-proxy-kubeconfig" => pki.kube_proxy_kubeconfig.clone(),
        template => inputs.templates.render(template, ctx)?,
    })
}

fn network_config(plan: &Plan, vm: &VmPlan) -> anyhow::Result<String> {
    let c = &plan.cluster;
    let eth = match c.addressing {
        Addressing::Dhcp => Ethernet {
            matching: MacMatch {
                macaddress: vm.mac.clone(),
            },
            dhcp4: true,
            addresses: Vec::new(),
            routes: Vec::new(),
            nameservers: None,
        },
        Addressing::Static => Ethernet {
            matching: MacMatch {
                macaddress: vm.mac.clone(),
            },
            dhcp4: false,
            addresses: vec![format!("{}/{}", vm.address, vm.prefix_len)],
            routes: vec![Route {
                to: "default",
                via: c.gateway.to_string(),
            }],
            nameservers: Some(Nameservers {
                addresses: c.dns.iter().map(|d| d.to_string()).collect(),
            }),
        },
    };
    let doc = NetworkConfig {
        version: 2,
        ethernets: BTreeMap::from([("primary".to_string(), eth)]),
    };
    serde_saphyr::to_string(&doc).context("serializing network-config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("a'b".into()), r"'a'\''b'");
    }

    #[test]
    fn unknown_override_template_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join("kublet.service.j2"), "x").unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let err = Templates::load(Some(dir)).err().unwrap().to_string();
        assert!(err.contains("unknown template kublet.service.j2"), "{err}");
    }

    #[test]
    fn strict_undefined() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join("sysctl.conf.j2"), "{{ nope }}").unwrap();
        let t = Templates::load(Some(Utf8Path::from_path(tmp.path()).unwrap())).unwrap();
        let err = t
            .render("sysctl.conf", &minijinja::context! {})
            .unwrap_err();
        assert!(format!("{err:#}").contains("undefined"), "{err:#}");
    }
}
