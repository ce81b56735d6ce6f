//! Everything a build writes that holds a profile value, rendered in-process through the
//! library (what `imagegen build` does, minus the ISOs and the downloads): each VM's seed, the
//! cluster files, the host's admin kubeconfig, the host files and `host-setup`'s files for both
//! kinds of host, and the launchers. Each output says how it is read.

use std::collections::{BTreeMap, BTreeSet};

use camino::Utf8Path;
use imagegen::host::{self, HostKind, HostNet, SetupAction, SetupOptions};
use imagegen::launch::{self, LaunchInputs};
use imagegen::payload::{self, PayloadKind, RolePayload};
use imagegen::pki::{self, PkiMode};
use imagegen::plan::{self, Plan};
use imagegen::profile::{self, Arch, ProfileError, Role};
use imagegen::seed::{self, SeedInputs, Templates};

/// How an output is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `#cloud-config` YAML: its files are outputs of their own.
    UserData,
    MetaData,
    Yaml,
    /// A kubeconfig: YAML whose `*-data` values are credentials.
    Kubeconfig,
    Json,
    Shell,
    Unit,
    AppleScript,
    /// Lines of whitespace-separated words (dnsmasq, hosts, sysctl, ldirectord, TOML).
    Lines,
    /// Keys and certificates from the PKI: checked for their PEM header only.
    Pem,
}

#[derive(Clone, Debug)]
pub struct Output {
    pub name: String,
    pub kind: Kind,
    pub text: String,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub arch: Arch,
    pub payload: PayloadKind,
    /// `--node-mirror` (already accepted by its parser), for the fetch payload.
    pub node_mirror: Option<&'static str>,
}

fn out(name: impl Into<String>, kind: Kind, text: impl Into<String>) -> Output {
    Output {
        name: name.into(),
        kind,
        text: text.into(),
    }
}

/// How a file a user-data writes is read, by its path.
pub fn kind_of_path(path: &str) -> Kind {
    let file = path.rsplit('/').next().unwrap_or(path);
    if path.starts_with("/usr/local/sbin/") {
        Kind::Shell
    } else if file.ends_with(".service") {
        Kind::Unit
    } else if file.ends_with(".pem") || file == "encryption-config.yaml" {
        Kind::Pem
    } else if file.ends_with("kubeconfig") {
        Kind::Kubeconfig
    } else if file.ends_with(".yaml") {
        Kind::Yaml
    } else if path.starts_with("/etc/cni/net.d/") {
        Kind::Json
    } else {
        Kind::Lines
    }
}

/// The outputs of the profile `text`, or why it is refused. `pki_dir` holds the PKI (made
/// there when missing).
pub fn render(text: &str, o: Options, pki_dir: &Utf8Path) -> Result<Vec<Output>, ProfileError> {
    let profile = profile::parse(text, "prop.yaml")?;
    let plan = plan::plan(&profile, o.arch).expect("a valid profile plans");
    // One PKI serves every case; a case that moves a node or the API gets those identities
    // issued again, as `imagegen pki --force` would (a build refuses a PKI that no longer fits).
    let pki = pki::prepare(pki_dir, PkiMode::Managed, &plan, "").or_else(|_| {
        let stale = plan.vms.iter().filter(|v| v.role != Role::Gateway);
        let names = stale
            .map(|v| v.name.clone())
            .chain(["kubernetes".to_string()]);
        pki::manage(pki_dir, &plan, &pki::Force::Identities(names.collect()), "")
    });
    let pki = pki.expect("the PKI");
    let templates = Templates::load(None).unwrap();
    let payloads: BTreeMap<Role, RolePayload> = plan
        .roles
        .iter()
        .map(|r| {
            let p = match o.payload.packed() {
                None => payload::fetch(&plan, r, &profile.first_boot, o.node_mirror)
                    .expect("the fetch payload"),
                Some(_) if r.installs.is_empty() => RolePayload::None,
                Some(k) => payload::packed(k, r.role, &"0".repeat(64)),
            };
            (r.role, p)
        })
        .collect();
    let inputs = SeedInputs {
        plan: &plan,
        pki: &pki,
        templates: &templates,
        ssh_keys: &[],
        payloads: &payloads,
    };
    let mut outs = Vec::new();
    for vm in &plan.vms {
        let s = seed::render(&inputs, vm).expect("the seed renders");
        outs.push(out(
            format!("{}/user-data", vm.name),
            Kind::UserData,
            s.user_data,
        ));
        outs.push(out(
            format!("{}/meta-data", vm.name),
            Kind::MetaData,
            s.meta_data,
        ));
        outs.push(out(
            format!("{}/network-config", vm.name),
            Kind::Yaml,
            s.network_config,
        ));
    }
    if let Some(rbac) = seed::kubelet_access_rbac(&inputs).unwrap() {
        outs.push(out("cluster/kubelet-access-rbac.yaml", Kind::Yaml, rbac));
    }
    let admin = pki
        .kubeconfig(pki::ADMIN, &plan.cluster.api_endpoint)
        .unwrap();
    outs.push(out("host/admin.kubeconfig", Kind::Kubeconfig, admin));

    let payload_roles: BTreeSet<Role> = if o.payload == PayloadKind::Shared {
        payloads
            .iter()
            .filter(|(_, p)| !matches!(p, RolePayload::None))
            .map(|(r, _)| *r)
            .collect()
    } else {
        BTreeSet::new()
    };
    outs.extend(host_and_launchers(&plan, &payload_roles));
    Ok(outs)
}

/// For both kinds of host: the host files, `host-setup`'s files and commands, the launchers.
fn host_and_launchers(plan: &Plan, payload_roles: &BTreeSet<Role>) -> Vec<Output> {
    let mut outs = Vec::new();
    for kind in [HostKind::Linux, HostKind::MacOs] {
        let net = HostNet::new(plan, kind);
        let k = format!("{kind}");
        for f in host::files(&net) {
            let kind = if f.name.ends_with(".sh") {
                Kind::Shell
            } else {
                Kind::Lines
            };
            outs.push(out(format!("{k}/host/{}", f.name), kind, f.content));
        }
        let print = host::setup(
            &net,
            &SetupOptions {
                action: SetupAction::Print,
                root: "/".into(),
            },
        )
        .unwrap();
        outs.extend(setup_sections(&k, &print));
        let base = plan
            .base_image
            .as_ref()
            .expect("the built-in profile pins a base image");
        let files = launch::files(&LaunchInputs {
            plan,
            host: &net,
            base_image: base,
            payload_roles,
        })
        .unwrap();
        for f in files {
            let kind = if f.name.ends_with(".sh") {
                Kind::Shell
            } else if f.name.ends_with(".json") {
                Kind::Json
            } else {
                Kind::AppleScript
            };
            outs.push(out(format!("{k}/launch/{}", f.name), kind, f.content));
        }
    }
    outs
}

/// `host-setup --print` cut at its `## ` headers: each file it would write, by its path, each
/// block of lines, and the commands it would run.
fn setup_sections(host: &str, print: &str) -> Vec<Output> {
    let mut outs = Vec::new();
    let mut header: Option<String> = None;
    let mut body = String::new();
    let finish = |header: &Option<String>, body: &mut String, outs: &mut Vec<Output>| {
        let text = std::mem::take(body);
        let Some(h) = header else {
            outs.push(out(format!("{host}/setup/preamble"), Kind::Lines, text));
            return;
        };
        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
        let kind = match h.strip_prefix("file ").and_then(|r| r.split(' ').next()) {
            Some(path) => kind_of_path(path),
            None if h.starts_with("lines between") => Kind::Lines,
            None => Kind::Shell,
        };
        outs.push(out(format!("{host}/setup/{h}"), kind, text));
    };
    for line in print.split_inclusive('\n') {
        if let Some(h) = line.strip_prefix("## ") {
            finish(&header, &mut body, &mut outs);
            header = Some(h.trim_end().to_string());
        } else {
            body.push_str(line);
        }
    }
    finish(&header, &mut body, &mut outs);
    outs
}
