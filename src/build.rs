//! `imagegen build`: runs the stages in order, profile -> plan -> pki -> (resolve -> stage) ->
//! payload -> seed -> iso, into a staging directory that replaces `out/<arch>` only when complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::fsutil;
use crate::payload::{self, PayloadKind, RolePayload};
use crate::pki::{self, PkiMode};
use crate::plan::{self, Plan};
use crate::profile::{self, Arch, Role};
use crate::seed::{self, NodeFile, SeedInputs, Templates};

pub struct BuildOptions {
    pub profile: Option<Utf8PathBuf>,
    pub arch: Arch,
    pub out: Utf8PathBuf,
    /// `--pki DIR` (used as is); `None` means imagegen's own `out/pki`.
    pub pki: Option<Utf8PathBuf>,
    pub templates: Option<Utf8PathBuf>,
    /// Public key lines for `ssh_authorized_keys`.
    pub ssh_keys: Vec<String>,
    pub payload: PayloadKind,
}

/// What a build wrote, for the summary line and for tests.
#[derive(Debug)]
pub struct BuildReport {
    pub arch_dir: Utf8PathBuf,
    pub vms: Vec<String>,
    pub pki_created: Vec<String>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    profile: &'a str,
    arch: Arch,
    payload: PayloadKind,
    vms: Vec<ManifestVm>,
}

#[derive(Serialize)]
struct ManifestVm {
    name: String,
    role: Role,
    mac: String,
    address: String,
    seed: Vec<String>,
    /// Every file the node gets from its seed (config files and the first-boot script).
    files: Vec<NodeFile>,
}

pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let profile = profile::load(opts.profile.as_deref())?;
    let plan = plan::plan(&profile, opts.arch)?;
    let (pki_dir, pki_mode) = match &opts.pki {
        Some(d) => (d.clone(), PkiMode::Provided),
        None => (opts.out.join("pki"), PkiMode::Managed),
    };
    let pki = pki::prepare(&pki_dir, pki_mode, &plan)?;
    let templates = Templates::load(opts.templates.as_deref())?;

    let payloads = role_payloads(&plan, opts.payload)?;

    fs_err::create_dir_all(opts.out.as_std_path())?;
    let arch_dir = opts.out.join(opts.arch.as_str());
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.build-", opts.arch))
        .tempdir_in(opts.out.as_std_path())
        .with_context(|| format!("creating a staging directory in {}", opts.out))?;

    let inputs = SeedInputs {
        plan: &plan,
        pki: &pki,
        templates: &templates,
        ssh_keys: &opts.ssh_keys,
        payloads: &payloads,
    };
    let mut manifest = Manifest {
        profile: &plan.profile,
        arch: plan.arch,
        payload: opts.payload,
        vms: Vec::new(),
    };
    for vm in &plan.vms {
        let s = seed::render(&inputs, vm)?;
        let dir = staging.path().join(&vm.name);
        // user-data carries private keys and kubeconfigs.
        fsutil::write_new(&dir.join("user-data"), s.user_data.as_bytes(), 0o600)?;
        fsutil::write_new(&dir.join("meta-data"), s.meta_data.as_bytes(), 0o644)?;
        fsutil::write_new(
            &dir.join("network-config"),
            s.network_config.as_bytes(),
            0o644,
        )?;
        manifest.vms.push(ManifestVm {
            name: vm.name.clone(),
            role: vm.role,
            mac: vm.mac.clone(),
            address: vm.address.to_string(),
            seed: vec![
                "user-data".into(),
                "meta-data".into(),
                "network-config".into(),
            ],
            files: s.files,
        });
    }
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    fsutil::write_new(
        &staging.path().join("manifest.json"),
        json.as_bytes(),
        0o644,
    )?;

    let staged: PathBuf = staging.keep();
    fsutil::replace_dir(&staged, arch_dir.as_std_path()).inspect_err(|_| {
        let _ = fs_err::remove_dir_all(&staged);
    })?;
    Ok(BuildReport {
        arch_dir,
        vms: plan.vms.iter().map(|v| v.name.clone()).collect(),
        pki_created: pki.created,
    })
}

fn role_payloads(plan: &Plan, kind: PayloadKind) -> anyhow::Result<BTreeMap<Role, RolePayload>> {
    let mut out = BTreeMap::new();
    for role in &plan.roles {
        let p = match kind {
            PayloadKind::Fetch => payload::fetch(plan, role),
            PayloadKind::Embed | PayloadKind::Shared => {
                anyhow::bail!(
                    "--payload {kind} is not available in this build yet; use --payload fetch"
                )
            }
        };
        out.insert(role.role, p);
    }
    Ok(out)
}

/// Reads the public keys for `ssh_authorized_keys`: the given files, or the user's
/// `~/.ssh/id_*.pub`. Returns the keys and, when there are none, a warning to print.
pub fn ssh_keys(
    files: &[Utf8PathBuf],
    home: Option<&Path>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let mut paths: Vec<Utf8PathBuf> = files.to_vec();
    if paths.is_empty() {
        if let Some(home) = home {
            let ssh = home.join(".ssh");
            if let Ok(rd) = std::fs::read_dir(&ssh) {
                let mut found: Vec<Utf8PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| Utf8PathBuf::from_path_buf(e.path()).ok())
                    .filter(|p| {
                        p.file_name()
                            .is_some_and(|n| n.starts_with("id_") && n.ends_with(".pub"))
                    })
                    .collect();
                found.sort();
                paths = found;
            }
        }
    }
    let mut keys = Vec::new();
    for p in &paths {
        let text = fs_err::read_to_string(p.as_std_path())
            .with_context(|| format!("--ssh-key {p}: cannot read the public key"))?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check_ssh_key(line).with_context(|| format!("--ssh-key {p}:{}", i + 1))?;
            keys.push(line.to_string());
        }
    }
    let warning = keys.is_empty().then(|| {
        "no SSH public key given (--ssh-key FILE) and none found in ~/.ssh/id_*.pub: the VMs will accept no SSH login"
            .to_string()
    });
    Ok((keys, warning))
}

fn check_ssh_key(line: &str) -> anyhow::Result<()> {
    let mut parts = line.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let known =
        kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    if !known || body.len() < 16 {
        anyhow::bail!(
            "expected an OpenSSH public key line (`ssh-ed25519 AAAA... comment`), got `{}`",
            line.chars().take(40).collect::<String>()
        );
    }
    if line.contains("PRIVATE KEY") {
        anyhow::bail!("this is a private key; give the .pub file");
    }
    Ok(())
}

/// The summary printed after a build.
pub fn summary(report: &BuildReport, out: &Utf8Path) -> String {
    let mut s = format!(
        "wrote {} seeds to {} ({})",
        report.vms.len(),
        report.arch_dir,
        report.vms.join(", ")
    );
    if !report.pki_created.is_empty() {
        s.push_str(&format!(
            "\ncreated {} PKI files in {}",
            report.pki_created.len(),
            out.join("pki")
        ));
    }
    s
}
