//! `imagegen build`: runs the stages in order, profile -> plan -> pki -> resolve -> stage ->
//! payload -> seed -> iso, into a staging directory that replaces `out/<arch>` only when complete.
//!
//! Reuse: a packed overlay and a seed ISO whose inputs did not change are carried over from the
//! previous `out/<arch>` as hard links (their stamps record the inputs), so a rebuild with no
//! change writes a few small files and no large ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::digest::{sha256_bytes, Digest};
use crate::fsutil;
use crate::iso::{self, IsoData, IsoFile, IsoOptions};
use crate::payload::{self, PayloadKind, RolePayload};
use crate::pki::{self, PkiMode};
use crate::plan;
use crate::profile::{self, Arch, Role};
use crate::resolve::{self, ResolveOptions};
use crate::seed::{self, NodeFile, SeedInputs, Templates};
use crate::stage::{self, Overlay, StageRequest};

/// Timestamp of every packed file and ISO date when `SOURCE_DATE_EPOCH` is unset
/// (2024-01-01T00:00:00Z): a constant, so builds are reproducible by default.
pub const DEFAULT_EPOCH: u64 = 1_704_067_200;

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
    /// Write `seed.iso` per VM (and `payload-<role>.iso` for the shared payload).
    pub iso: bool,
    /// How artifacts are resolved (unused with the fetch payload, where nodes download).
    pub resolve: ResolveOptions,
    /// `SOURCE_DATE_EPOCH` or [`DEFAULT_EPOCH`].
    pub epoch: u64,
}

/// What a build wrote, for the summary line and for tests.
#[derive(Debug)]
pub struct BuildReport {
    pub arch_dir: Utf8PathBuf,
    pub vms: Vec<String>,
    pub pki_created: Vec<String>,
    /// Roles whose packed overlay was carried over unchanged.
    pub overlays_reused: Vec<String>,
    pub isos_written: usize,
    pub isos_reused: usize,
}

#[derive(Serialize)]
struct Manifest<'a> {
    profile: &'a str,
    arch: Arch,
    payload: PayloadKind,
    epoch: u64,
    overlays: Vec<ManifestOverlay>,
    vms: Vec<ManifestVm>,
}

#[derive(Serialize)]
struct ManifestOverlay {
    role: Role,
    archive: String,
    sha256: Digest,
    size: u64,
}

#[derive(Serialize)]
struct ManifestVm {
    name: String,
    role: Role,
    mac: String,
    address: String,
    /// Files of the VM's seed directory.
    seed: Vec<String>,
    /// Every file the node gets: config files from user-data and, when packed at build time,
    /// the binaries of the payload.
    files: Vec<NodeFile>,
}

/// Reads `SOURCE_DATE_EPOCH` (reproducible-builds.org), defaulting to [`DEFAULT_EPOCH`].
pub fn epoch_from_env() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH: expected whole seconds since 1970, got `{v}`")
        }),
        _ => Ok(DEFAULT_EPOCH),
    }
}

pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let profile = profile::load(opts.profile.as_deref())?;
    let plan = plan::plan(&profile, opts.arch)?;
    let templates = Templates::load(opts.templates.as_deref())?;

    fs_err::create_dir_all(opts.out.as_std_path())?;
    let arch_dir = opts.out.join(opts.arch.as_str());
    let prev = arch_dir.as_std_path();
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{}.build-", opts.arch))
        .tempdir_in(opts.out.as_std_path())
        .with_context(|| format!("creating a staging directory in {}", opts.out))?;
    let st = staging.path();

    // Resolve and stage: only when binaries are packed at build time.
    let mut overlays: BTreeMap<Role, Overlay> = BTreeMap::new();
    let packs =
        opts.payload != PayloadKind::Fetch && plan.roles.iter().any(|r| !r.installs.is_empty());
    if packs {
        let resolved = resolve::resolve(&plan.artifacts, &opts.resolve)?;
        let paths: BTreeMap<String, PathBuf> = resolved
            .iter()
            .map(|r| (r.artifact.component.clone(), r.path.clone()))
            .collect();
        let digests: BTreeMap<String, Digest> = resolved
            .iter()
            .map(|r| (r.artifact.component.clone(), r.artifact.digest.clone()))
            .collect();
        for role in plan.roles.iter().filter(|r| !r.installs.is_empty()) {
            let name = role.role.as_str();
            let archive = payload::archive_name(role.role);
            let overlay_root = st.join("overlay").join(name);
            let archive_path = st.join(&archive);
            // Roles that install the same files (control and worker today) share one staging and
            // packing: their trees and archives are hard links to the first one's.
            if let Some((_, twin)) = overlays
                .iter()
                .find(|(r, _)| plan.role(**r).is_some_and(|p| p.installs == role.installs))
            {
                let twin_root = st.join("overlay").join(twin.role.as_str());
                carry_over_tree(&twin_root, &overlay_root)?;
                fsutil::link_or_copy(&twin.archive, &archive_path)?;
                let ov = Overlay {
                    role: name.to_string(),
                    archive: archive_path,
                    ..twin.clone()
                };
                overlays.insert(role.role, ov);
                continue;
            }
            carry_over_tree(&prev.join("overlay").join(name), &overlay_root)?;
            for f in [archive.clone().into(), fsutil::stamp_path(archive.as_ref())] {
                carry_over_file(&prev.join(&f), &st.join(&f))?;
            }
            let ov = stage::stage_role(&StageRequest {
                role: name,
                rules: &role.installs,
                artifacts: &paths,
                artifact_digests: &digests,
                overlay_root: &overlay_root,
                archive_path: &archive_path,
                mtime: opts.epoch,
            })
            .with_context(|| format!("staging the {name} overlay"))?;
            overlays.insert(role.role, ov);
        }
    }
    // Credentials last among the inputs: a build that fails to resolve or stage creates no
    // CA or keys.
    let (pki_dir, pki_mode) = match &opts.pki {
        Some(d) => (d.clone(), PkiMode::Provided),
        None => (opts.out.join("pki"), PkiMode::Managed),
    };
    let pki = pki::prepare(&pki_dir, pki_mode, &plan)?;

    let mut payloads = BTreeMap::new();
    for role in &plan.roles {
        let p = match (opts.payload, overlays.get(&role.role)) {
            (PayloadKind::Fetch, _) => payload::fetch(&plan, role),
            (kind, Some(ov)) => payload::packed(kind, role.role, ov.archive_sha256.hex()),
            (_, None) => RolePayload::None,
        };
        payloads.insert(role.role, p);
    }

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
        epoch: opts.epoch,
        overlays: overlays
            .iter()
            .map(|(role, ov)| ManifestOverlay {
                role: *role,
                archive: payload::archive_name(*role),
                sha256: ov.archive_sha256.clone(),
                size: ov.archive_size,
            })
            .collect(),
        vms: Vec::new(),
    };
    let mut report = BuildReport {
        arch_dir: arch_dir.clone(),
        vms: Vec::new(),
        pki_created: pki.created.clone(),
        overlays_reused: overlays
            .iter()
            .filter(|(_, o)| o.reused)
            .map(|(r, _)| r.to_string())
            .collect(),
        isos_written: 0,
        isos_reused: 0,
    };
    for vm in &plan.vms {
        let s = seed::render(&inputs, vm)?;
        let dir = st.join(&vm.name);
        // user-data carries private keys and kubeconfigs.
        let seed_files = [
            ("user-data", s.user_data.as_bytes(), 0o600),
            ("meta-data", s.meta_data.as_bytes(), 0o644),
            ("network-config", s.network_config.as_bytes(), 0o644),
        ];
        let mut iso_files = Vec::new();
        let mut stamp = StampBuilder::new(payload::SEED_LABEL, opts.epoch);
        for (name, data, mode) in seed_files {
            fsutil::write_new(&dir.join(name), data, mode)?;
            stamp.add(name, mode, &sha256_bytes(data));
            iso_files.push(IsoFile {
                name: name.to_string(),
                data: IsoData::Bytes(data.to_vec()),
                mode,
            });
        }
        let mut listing: Vec<String> = seed_files.iter().map(|f| f.0.to_string()).collect();
        let mut files = s.files;
        if let Some(ov) = overlays.get(&vm.role) {
            files.extend(ov.entries.iter().map(|e| NodeFile {
                path: e.path.clone(),
                mode: format!("{:04o}", e.mode),
                owner: "root:root".into(),
                sha256: e.sha256.hex().to_string(),
                secret: false,
            }));
            files.sort_by(|a, b| a.path.cmp(&b.path));
            if opts.payload == PayloadKind::Embed {
                let name = payload::archive_name(vm.role);
                fsutil::link_or_copy(&ov.archive, &dir.join(&name))?;
                stamp.add(&name, 0o644, &ov.archive_sha256);
                iso_files.push(IsoFile {
                    name: name.clone(),
                    data: IsoData::Path(dir.join(&name)),
                    mode: 0o644,
                });
                listing.push(name);
            }
        }
        if opts.iso {
            let reused = write_iso_reusing(
                &prev.join(&vm.name).join("seed.iso"),
                &dir.join("seed.iso"),
                payload::SEED_LABEL,
                opts.epoch,
                &iso_files,
                &stamp.finish(),
                0o600,
            )?;
            if reused {
                report.isos_reused += 1;
            } else {
                report.isos_written += 1;
            }
            listing.push("seed.iso".into());
        }
        manifest.vms.push(ManifestVm {
            name: vm.name.clone(),
            role: vm.role,
            mac: vm.mac.clone(),
            address: vm.address.to_string(),
            seed: listing,
            files,
        });
        report.vms.push(vm.name.clone());
    }
    if opts.payload == PayloadKind::Shared && opts.iso {
        for (role, ov) in &overlays {
            let label = payload::shared_label(*role);
            let name = payload::archive_name(*role);
            let mut stamp = StampBuilder::new(&label, opts.epoch);
            stamp.add(&name, 0o644, &ov.archive_sha256);
            let iso_name = format!("payload-{role}.iso");
            let reused = write_iso_reusing(
                &prev.join(&iso_name),
                &st.join(&iso_name),
                &label,
                opts.epoch,
                &[IsoFile {
                    name,
                    data: IsoData::Path(ov.archive.clone()),
                    mode: 0o644,
                }],
                &stamp.finish(),
                0o644,
            )?;
            if reused {
                report.isos_reused += 1;
            } else {
                report.isos_written += 1;
            }
        }
    }
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    fsutil::write_new(&st.join("manifest.json"), json.as_bytes(), 0o644)?;

    let staged: PathBuf = staging.keep();
    fsutil::replace_dir(&staged, arch_dir.as_std_path()).inspect_err(|_| {
        let _ = fs_err::remove_dir_all(&staged);
    })?;
    Ok(report)
}

/// The inputs of one ISO, hashed: volume id, dates, and each file's name, mode and digest.
struct StampBuilder(String);

impl StampBuilder {
    fn new(volume_id: &str, epoch: u64) -> Self {
        StampBuilder(format!(
            "imagegen-iso {} volid={volume_id} epoch={epoch}\n",
            env!("CARGO_PKG_VERSION")
        ))
    }
    fn add(&mut self, name: &str, mode: u32, digest: &Digest) {
        self.0.push_str(&format!("{name} {mode:o} {digest}\n"));
    }
    fn finish(&self) -> String {
        sha256_bytes(self.0.as_bytes()).to_string()
    }
}

fn stamp_path(iso: &Path) -> PathBuf {
    let name = iso
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    iso.with_file_name(format!(".{name}.stamp"))
}

/// Writes an ISO, or links the previous build's when its stamp shows the same inputs.
fn write_iso_reusing(
    prev: &Path,
    dest: &Path,
    volume_id: &str,
    epoch: u64,
    files: &[IsoFile],
    stamp: &str,
    mode: u32,
) -> anyhow::Result<bool> {
    let prev_stamp = std::fs::read_to_string(stamp_path(prev)).unwrap_or_default();
    if prev_stamp == stamp && prev.is_file() && fsutil::link_or_copy(prev, dest).is_ok() {
        fsutil::link_or_copy(&stamp_path(prev), &stamp_path(dest))?;
        return Ok(true);
    }
    let timestamp = i64::try_from(epoch).context("SOURCE_DATE_EPOCH is too large")?;
    iso::write_iso(
        dest,
        &IsoOptions {
            volume_id: volume_id.to_string(),
            timestamp,
        },
        files,
    )
    .with_context(|| format!("writing {}", dest.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
    fsutil::write_new(&stamp_path(dest), stamp.as_bytes(), 0o644)?;
    Ok(false)
}

fn carry_over_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_file() {
        fsutil::link_or_copy(from, to)?;
    }
    Ok(())
}

/// Links the previous build's overlay tree into the staging directory so the stage can see
/// that it is current. The stage never writes into these files: it renames new ones over them.
fn carry_over_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    for e in fs_err::read_dir(from)? {
        let e = e?;
        let ty = e.file_type()?;
        let target = to.join(e.file_name());
        if ty.is_dir() {
            carry_over_tree(&e.path(), &target)?;
        } else if ty.is_file() {
            fsutil::link_or_copy(&e.path(), &target)?;
        }
    }
    Ok(())
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
    if report.isos_written + report.isos_reused > 0 {
        s.push_str(&format!(
            "\nISOs: {} written, {} unchanged",
            report.isos_written, report.isos_reused
        ));
    }
    if !report.overlays_reused.is_empty() {
        s.push_str(&format!(
            "\noverlays unchanged: {}",
            report.overlays_reused.join(", ")
        ));
    }
    if !report.pki_created.is_empty() {
        s.push_str(&format!(
            "\ncreated {} PKI files in {}",
            report.pki_created.len(),
            out.join("pki")
        ));
    }
    s
}
