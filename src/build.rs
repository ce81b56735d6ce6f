//! `imagegen build`: runs the stages for one architecture into a staging directory
//! (`out/.<arch>.build-*`) that replaces `out/<arch>` only when complete.
//!
//! The steps of [`build`], in order:
//! 1. profile -> plan, and the config templates;
//! 2. `stage_overlays`: resolve the planned artifacts (cache, mirrors, upstream) and stage and
//!    pack each installing role's overlay — only when binaries are packed at build time;
//! 3. `prepare_pki`: the CA and the node credentials, after resolve and stage so that a build
//!    that cannot get its binaries creates no keys;
//! 4. `role_payloads`: how each role's nodes get their binaries;
//! 5. `write_vm_seeds`: each VM's user-data, meta-data and network-config, its copy of the
//!    overlay (embed) and its `seed.iso`;
//! 6. `write_shared_payload_isos`: one payload ISO per role (shared);
//! 7. `write_cluster_files`: what the host needs beside the seeds: `cluster/` (the manifests
//!    the first control node applies, for `kubectl apply`) and `host/admin.kubeconfig`;
//! 8. `write_host_and_launchers`: `host/` (dnsmasq lines, the `/etc/hosts` block, pod routes)
//!    and, when the profile pins a base image for the arch, `launch/` (the VMs' launchers);
//! 9. `write_manifest`: `manifest.json`; then the staging directory is swapped in.
//!
//! Reuse: a packed overlay and an ISO whose inputs did not change are carried over from the
//! previous `out/<arch>` as hard links (their stamps record the inputs), so a rebuild with no
//! change writes a few small files and no large ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use tempfile::TempDir;

use crate::digest::{sha256_bytes, Digest};
use crate::fsutil;
use crate::host::{self, HostKind, HostNet};
use crate::iso::{self, IsoData, IsoFile, IsoOptions};
use crate::launch::{self, LaunchInputs, LAUNCH_DIR};
use crate::payload::{self, PayloadKind, RolePayload};
use crate::pki::{self, Pki, PkiMode};
use crate::plan::{self, Plan, RolePlan, VmPlan};
use crate::profile::{self, Arch, Role};
use crate::resolve::{self, ResolveOptions};
use crate::seed::{self, NodeFile, SeedInputs, Templates};
use crate::stage::{self, Overlay, StageRequest};

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
    /// With the fetch payload: the mirror (upstream layout) the nodes download from instead of
    /// the profile's URLs.
    pub node_mirror: Option<String>,
    /// Write `seed.iso` per VM (and `payload-<role>.iso` for the shared payload).
    pub iso: bool,
    /// How artifacts are resolved (unused with the fetch payload, where nodes download).
    pub resolve: ResolveOptions,
    /// Timestamp of every packed file and ISO date (`SOURCE_DATE_EPOCH` or a fixed default).
    pub epoch: u64,
    /// Say each step on stderr, and where each artifact came from.
    pub verbose: bool,
}

/// What a build wrote, for the summary line and for tests.
#[derive(Debug)]
pub struct BuildReport {
    pub arch_dir: Utf8PathBuf,
    pub vms: Vec<String>,
    pub pki_created: Vec<String>,
    /// What else the build changed in `out/pki` and why (names and reasons only).
    pub pki_notes: Vec<String>,
    /// What the PKI's checks found that did not stop the build.
    pub pki_warnings: Vec<String>,
    /// Roles whose packed overlay was carried over unchanged.
    pub overlays_reused: Vec<String>,
    pub isos_written: usize,
    pub isos_reused: usize,
    /// Whether `launch/` was written (the profile pins a base image for the arch).
    pub launchers: bool,
}

#[derive(Serialize)]
struct Manifest<'a> {
    profile: &'a str,
    arch: Arch,
    payload: PayloadKind,
    epoch: u64,
    overlays: Vec<ManifestOverlay>,
    /// Files of `out/<arch>` besides the VM directories and the ISOs, path relative to it.
    outputs: Vec<ManifestOutput>,
    vms: Vec<ManifestVm>,
}

#[derive(Serialize)]
struct ManifestOutput {
    path: String,
    mode: String,
    sha256: Digest,
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

type Overlays = BTreeMap<Role, Overlay>;

/// Runs the steps listed in the module docs.
pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let say = |line: &str| {
        if opts.verbose {
            eprintln!("{line}");
        }
    };
    let profile = profile::load(opts.profile.as_deref())?;
    let plan = plan::plan(&profile, opts.arch)?;
    say(&format!(
        "plan: profile {} ({}) for {}: {} VMs",
        plan.profile,
        plan.profile_source,
        plan.arch,
        plan.vms.len()
    ));
    let templates = Templates::load(opts.templates.as_deref())?;
    let staging = Staging::create(&opts.out, opts.arch)?;
    say(&format!("staging in {}", staging.path().display()));

    let overlays = match opts.payload.packed() {
        Some(_) => stage_overlays(&plan, &opts.resolve, opts.epoch, &staging, &say)?,
        None => Overlays::new(),
    };
    say(&format!(
        "PKI: {}",
        opts.pki
            .as_ref()
            .map_or_else(|| opts.out.join("pki"), Clone::clone)
    ));
    let pki = prepare_pki(&plan, opts)?;
    let payloads = role_payloads(&plan, &profile, opts, &overlays)?;
    say(&format!(
        "seeds: {} VMs ({} payload)",
        plan.vms.len(),
        opts.payload
    ));
    let seeds = SeedInputs {
        plan: &plan,
        pki: &pki,
        templates: &templates,
        ssh_keys: &opts.ssh_keys,
        payloads: &payloads,
    };
    let mut isos = opts.iso.then(|| IsoWriter::new(&staging, opts.epoch));
    let embed = opts.payload == PayloadKind::Embed;
    let vms = write_vm_seeds(&seeds, &overlays, embed, isos.as_mut(), staging.path())?;
    if let (PayloadKind::Shared, Some(isos)) = (opts.payload, isos.as_mut()) {
        write_shared_payload_isos(&overlays, isos)?;
    }
    say("cluster files, host files and launchers");
    let mut outputs = write_cluster_files(&seeds, staging.path())?;
    let launchers = write_host_and_launchers(&plan, opts, &overlays, staging.path(), &mut outputs)?;
    write_manifest(&plan, opts, &overlays, outputs, vms, staging.path())?;

    let report = BuildReport {
        arch_dir: staging.arch_dir.clone(),
        vms: plan.vms.iter().map(|v| v.name.clone()).collect(),
        pki_created: pki.created.clone(),
        pki_notes: pki.notes.clone(),
        pki_warnings: pki.warnings.clone(),
        overlays_reused: overlays
            .iter()
            .filter(|(_, o)| o.reused)
            .map(|(r, _)| r.to_string())
            .collect(),
        isos_written: isos.as_ref().map_or(0, |i| i.written),
        isos_reused: isos.as_ref().map_or(0, |i| i.reused),
        launchers,
    };
    say(&format!("replacing {}", report.arch_dir));
    staging.commit()?;
    Ok(report)
}

/// The directory a build writes into (`out/.<arch>.build-<pid>.<random>.tmp`), beside the
/// previous `out/<arch>` it may reuse from, and the lock on `out/` that the build holds until
/// its output is in place.
struct Staging {
    dir: TempDir,
    /// `out/<arch>`: the previous build's output until `commit`, then this one's.
    arch_dir: Utf8PathBuf,
    /// Ctrl-C or SIGTERM deletes the staging directory (the CLI's signal handler).
    _on_interrupt: fsutil::RemoveOnInterrupt,
    /// `out/.lock`: one build (or other writer of `out/`) at a time, as they share `out/pki`
    /// and would swap `out/<arch>` under each other.
    _lock: fsutil::Lock,
}

/// Takes `out/.lock` (saying on stderr whom it waits for), which every writer of `out/` holds:
/// builds, which share `out/pki` and swap `out/<arch>`, and `imagegen pki`, so two runs never
/// make two CAs. Then removes what killed runs left in `out/` and `out/pki` (staging and temp
/// directories and files whose process is gone).
pub fn lock_out(out: &Utf8Path) -> anyhow::Result<fsutil::Lock> {
    fs_err::create_dir_all(out.as_std_path())
        .with_context(|| format!("the output directory (--out {out}) cannot be made"))?;
    let lock = fsutil::Lock::acquire(out.join(".lock").as_std_path(), |line| eprintln!("{line}"))
        .with_context(|| format!("the output directory (--out {out}) cannot be locked"))?;
    for dir in [out.to_path_buf(), out.join("pki")] {
        fsutil::sweep_stale(dir.as_std_path(), "");
    }
    Ok(lock)
}

impl Staging {
    fn create(out: &Utf8Path, arch: Arch) -> anyhow::Result<Self> {
        let lock = lock_out(out)?;
        let dir = fsutil::temp_dir_in(out.as_std_path(), &format!(".{arch}.build-"))
            .with_context(|| format!("creating a staging directory in {out}"))?;
        Ok(Staging {
            _on_interrupt: fsutil::RemoveOnInterrupt::new(dir.path()),
            dir,
            arch_dir: out.join(arch.as_str()),
            _lock: lock,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The previous build's output.
    fn prev(&self) -> &Path {
        self.arch_dir.as_std_path()
    }

    /// Replaces `out/<arch>` with the staging directory.
    fn commit(self) -> anyhow::Result<()> {
        let staged: PathBuf = self.dir.keep();
        fsutil::replace_dir(&staged, self.arch_dir.as_std_path()).inspect_err(|_| {
            let _ = fs_err::remove_dir_all(&staged);
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Step 2: overlays.

/// Resolves the planned artifacts, then stages and packs the overlay of every role that installs
/// something. Roles with the same install rules share one staging.
fn stage_overlays(
    plan: &Plan,
    resolve_opts: &ResolveOptions,
    epoch: u64,
    staging: &Staging,
    say: &dyn Fn(&str),
) -> anyhow::Result<Overlays> {
    let roles: Vec<&RolePlan> = plan
        .roles
        .iter()
        .filter(|r| !r.installs.is_empty())
        .collect();
    let mut overlays = Overlays::new();
    if roles.is_empty() {
        return Ok(overlays);
    }
    say(&format!("artifacts: {}", plan.artifacts.len()));
    let resolved = resolve::resolve(&plan.artifacts, resolve_opts)?;
    for r in &resolved {
        say(&format!("  {}", r.source_line()));
    }
    let artifacts = Artifacts {
        paths: resolved
            .iter()
            .map(|r| (r.artifact.component.clone(), r.path.clone()))
            .collect(),
        digests: resolved
            .iter()
            .map(|r| (r.artifact.component.clone(), r.artifact.digest.clone()))
            .collect(),
        // What the user pinned, not where the cache keeps it.
        names: resolved
            .iter()
            .map(|r| {
                let a = &r.artifact;
                let name = format!(
                    "{} {} for {} ({})",
                    a.component, a.version, plan.arch, a.url
                );
                (a.component.clone(), name)
            })
            .collect(),
    };
    for role in roles {
        let twin = overlays
            .iter()
            .find(|(r, _)| plan.role(**r).is_some_and(|p| p.installs == role.installs));
        let ov = match twin {
            Some((_, twin)) => share_overlay(twin, role.role, staging)?,
            None => stage_role(role, &artifacts, epoch, staging)?,
        };
        say(&format!(
            "overlay of {}: {}",
            role.role,
            if ov.reused {
                "unchanged, reused"
            } else {
                "packed"
            }
        ));
        overlays.insert(role.role, ov);
    }
    Ok(overlays)
}

/// The verified artifacts, by component: where each is, the digest it was checked against and
/// how errors name it.
struct Artifacts {
    paths: BTreeMap<String, PathBuf>,
    digests: BTreeMap<String, Digest>,
    names: BTreeMap<String, String>,
}

/// Stages one role, after linking in the previous build's tree, archive and stamp so the stage
/// can see that they are current. The stage never writes into these files: it renames new
/// ones over them.
fn stage_role(
    role: &RolePlan,
    artifacts: &Artifacts,
    epoch: u64,
    staging: &Staging,
) -> anyhow::Result<Overlay> {
    let name = role.role.as_str();
    let overlay_root = staging.path().join("overlay").join(name);
    let archive = PathBuf::from(payload::archive_name(role.role));
    carry_over_tree(&staging.prev().join("overlay").join(name), &overlay_root)?;
    for f in [&archive, &fsutil::stamp_path(&archive)] {
        carry_over_file(&staging.prev().join(f), &staging.path().join(f))?;
    }
    // The stage names the role in its errors.
    stage::stage_role(&StageRequest {
        role: name,
        rules: &role.installs,
        artifacts: &artifacts.paths,
        artifact_digests: &artifacts.digests,
        artifact_names: &artifacts.names,
        overlay_root: &overlay_root,
        archive_path: &staging.path().join(&archive),
        mtime: epoch,
    })
}

/// The overlay of `role`, which installs the same files as `twin`: its tree and archive are
/// hard links to the twin's.
fn share_overlay(twin: &Overlay, role: Role, staging: &Staging) -> anyhow::Result<Overlay> {
    let overlay = staging.path().join("overlay");
    carry_over_tree(&overlay.join(&twin.role), &overlay.join(role.as_str()))?;
    let archive = staging.path().join(payload::archive_name(role));
    fsutil::link_or_copy(&twin.archive, &archive)?;
    Ok(Overlay {
        role: role.to_string(),
        archive,
        ..twin.clone()
    })
}

fn carry_over_file(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_file() {
        fsutil::link_or_copy(from, to)?;
    }
    Ok(())
}

/// Links every regular file under `from` to the same place under `to`.
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

// ---------------------------------------------------------------------------------------------
// Steps 3 and 4: credentials and payloads.

/// The credentials: `--pki DIR` as given, or imagegen's own `out/pki` (created or reused);
/// checked either way.
fn prepare_pki(plan: &Plan, opts: &BuildOptions) -> anyhow::Result<Pki> {
    let profile = opts.profile.as_deref();
    match &opts.pki {
        Some(dir) => {
            let args = pki::args_hint(profile, None);
            pki::prepare(dir, PkiMode::Provided, plan, &args)
        }
        None => {
            let args = pki::args_hint(profile, Some(&opts.out));
            pki::prepare(&opts.out.join("pki"), PkiMode::Managed, plan, &args)
        }
    }
}

/// How each role's nodes get their binaries.
fn role_payloads(
    plan: &Plan,
    profile: &profile::Profile,
    opts: &BuildOptions,
    overlays: &Overlays,
) -> anyhow::Result<BTreeMap<Role, RolePayload>> {
    plan.roles
        .iter()
        .map(|role| {
            let p = match (opts.payload.packed(), overlays.get(&role.role)) {
                (None, _) => {
                    payload::fetch(plan, role, &profile.first_boot, opts.node_mirror.as_deref())?
                }
                (Some(packed), Some(ov)) => {
                    payload::packed(packed, role.role, ov.archive_sha256.hex())
                }
                // A role that installs nothing has no overlay.
                (Some(_), None) => RolePayload::None,
            };
            Ok((role.role, p))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Steps 5 and 6: seeds and ISOs.

/// Writes every VM's seed directory (and ISO, when `isos` is given); returns the manifest
/// entries, in plan order.
fn write_vm_seeds(
    seeds: &SeedInputs,
    overlays: &Overlays,
    embed: bool,
    mut isos: Option<&mut IsoWriter>,
    staging: &Path,
) -> anyhow::Result<Vec<ManifestVm>> {
    let mut vms = Vec::new();
    for vm in &seeds.plan.vms {
        let overlay = overlays.get(&vm.role);
        let dir = staging.join(&vm.name);
        let mut seed = write_vm_seed(seeds, vm, overlay, embed, &dir)?;
        if let Some(isos) = isos.as_deref_mut() {
            let rel = Path::new(&vm.name).join("seed.iso");
            // The seed holds user-data, with keys.
            isos.write(&rel, payload::SEED_LABEL, &seed.iso_inputs, 0o600)?;
            seed.manifest.seed.push("seed.iso".into());
        }
        vms.push(seed.manifest);
    }
    Ok(vms)
}

/// One VM's seed directory as written, and what its ISO holds.
struct VmSeed {
    manifest: ManifestVm,
    iso_inputs: Vec<IsoInput>,
}

/// Renders a VM's seed into `dir` (user-data 0600: it carries private keys and kubeconfigs),
/// with a link to its role's overlay archive when the payload is embedded.
fn write_vm_seed(
    seeds: &SeedInputs,
    vm: &VmPlan,
    overlay: Option<&Overlay>,
    embed: bool,
    dir: &Path,
) -> anyhow::Result<VmSeed> {
    let s = seed::render(seeds, vm)?;
    let mut iso_inputs = Vec::new();
    for (name, data, mode) in [
        ("user-data", s.user_data, 0o600),
        ("meta-data", s.meta_data, 0o644),
        ("network-config", s.network_config, 0o644),
    ] {
        fsutil::write_new(&dir.join(name), data.as_bytes(), mode)?;
        iso_inputs.push(IsoInput {
            sha256: sha256_bytes(data.as_bytes()),
            file: IsoFile {
                name: name.to_string(),
                data: IsoData::Bytes(data.into_bytes()),
                mode,
            },
        });
    }
    let mut files = s.files;
    if let Some(ov) = overlay {
        files.extend(ov.entries.iter().map(|e| NodeFile {
            path: e.path.clone(),
            mode: format!("{:04o}", e.mode),
            owner: "root:root".into(),
            sha256: e.sha256.hex().to_string(),
            secret: false,
        }));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if embed {
            let name = payload::archive_name(vm.role);
            let path = dir.join(&name);
            fsutil::link_or_copy(&ov.archive, &path)?;
            iso_inputs.push(IsoInput {
                sha256: ov.archive_sha256.clone(),
                file: IsoFile {
                    name,
                    data: IsoData::Path(path),
                    mode: 0o644,
                },
            });
        }
    }
    let manifest = ManifestVm {
        name: vm.name.clone(),
        role: vm.role,
        mac: vm.mac.clone(),
        address: vm.address.to_string(),
        seed: iso_inputs.iter().map(|i| i.file.name.clone()).collect(),
        files,
    };
    Ok(VmSeed {
        manifest,
        iso_inputs,
    })
}

/// One payload ISO per role, holding the role's overlay archive, labelled `payload-<role>`.
fn write_shared_payload_isos(overlays: &Overlays, isos: &mut IsoWriter) -> anyhow::Result<()> {
    for (role, ov) in overlays {
        let input = IsoInput {
            sha256: ov.archive_sha256.clone(),
            file: IsoFile {
                name: payload::archive_name(*role),
                data: IsoData::Path(ov.archive.clone()),
                mode: 0o644,
            },
        };
        let rel = PathBuf::from(payload::shared_iso_name(*role));
        isos.write(&rel, &payload::shared_label(*role), &[input], 0o644)?;
    }
    Ok(())
}

/// A file for an ISO and its digest (known without reading it again), which the reuse stamp
/// records.
struct IsoInput {
    file: IsoFile,
    sha256: Digest,
}

/// The reuse stamp of an ISO (the kit's stamp format): the hash of everything the image is made
/// from.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct IsoStamp {
    inputs: Digest,
}

impl IsoStamp {
    fn of(volume_id: &str, epoch: u64, mode: u32, inputs: &[IsoInput]) -> Self {
        let mut text = format!(
            "imagegen-iso {} volid={volume_id} epoch={epoch} mode={mode:o}\n",
            env!("CARGO_PKG_VERSION")
        );
        for i in inputs {
            text.push_str(&format!("{} {:o} {}\n", i.file.name, i.file.mode, i.sha256));
        }
        IsoStamp {
            inputs: sha256_bytes(text.as_bytes()),
        }
    }
}

/// Writes ISOs into the staging directory, or links the previous build's where its stamp shows
/// the same inputs; counts both.
struct IsoWriter<'a> {
    staging: &'a Staging,
    epoch: u64,
    written: usize,
    reused: usize,
}

impl<'a> IsoWriter<'a> {
    fn new(staging: &'a Staging, epoch: u64) -> Self {
        IsoWriter {
            staging,
            epoch,
            written: 0,
            reused: 0,
        }
    }

    /// Writes (or reuses) the ISO at `rel` inside the staging directory, with `mode`.
    fn write(
        &mut self,
        rel: &Path,
        volume_id: &str,
        inputs: &[IsoInput],
        mode: u32,
    ) -> anyhow::Result<()> {
        let stamp = IsoStamp::of(volume_id, self.epoch, mode, inputs);
        let prev = self.staging.prev().join(rel);
        let dest = self.staging.path().join(rel);
        let current = fsutil::read_stamp::<IsoStamp>(&prev).is_some_and(|s| s == stamp);
        if current && prev.is_file() && fsutil::link_or_copy(&prev, &dest).is_ok() {
            fsutil::write_stamp(&dest, &stamp)?;
            self.reused += 1;
            return Ok(());
        }
        let timestamp = i64::try_from(self.epoch)
            .with_context(|| format!("timestamp {} is too large for an ISO", self.epoch))?;
        let files: Vec<IsoFile> = inputs.iter().map(|i| i.file.clone()).collect();
        let opts = IsoOptions {
            volume_id: volume_id.to_string(),
            timestamp,
            mode,
        };
        iso::write_iso(&dest, &opts, &files)
            .with_context(|| format!("writing {}", dest.display()))?;
        fsutil::write_stamp(&dest, &stamp)?;
        self.written += 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Step 7: files for the host.

/// `cluster/kubelet-access-rbac.yaml` (when there are control nodes) and
/// `host/admin.kubeconfig` (0600: it holds the admin key; server = the profile's API endpoint).
fn write_cluster_files(seeds: &SeedInputs, staging: &Path) -> anyhow::Result<Vec<ManifestOutput>> {
    let mut files = Vec::new();
    if let Some(rbac) = seed::kubelet_access_rbac(seeds)? {
        files.push(("cluster/kubelet-access-rbac.yaml", rbac, 0o644));
    }
    let admin = seeds
        .pki
        .kubeconfig(pki::ADMIN, &seeds.plan.cluster.api_endpoint)?;
    files.push(("host/admin.kubeconfig", admin, 0o600));
    let mut outputs = Vec::new();
    for (path, data, mode) in files {
        write_output(staging, path, &data, mode, &mut outputs)?;
    }
    Ok(outputs)
}

/// Writes one file beside the seeds (`cluster/`, `host/`, `launch/`) and records it for the
/// manifest.
fn write_output(
    staging: &Path,
    path: &str,
    data: &str,
    mode: u32,
    outputs: &mut Vec<ManifestOutput>,
) -> anyhow::Result<()> {
    fsutil::write_new(&staging.join(path), data.as_bytes(), mode)?;
    outputs.push(ManifestOutput {
        path: path.to_string(),
        mode: format!("{mode:04o}"),
        sha256: sha256_bytes(data.as_bytes()),
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Step 9: the manifest.

fn write_manifest(
    plan: &Plan,
    opts: &BuildOptions,
    overlays: &Overlays,
    outputs: Vec<ManifestOutput>,
    vms: Vec<ManifestVm>,
    staging: &Path,
) -> anyhow::Result<()> {
    let manifest = Manifest {
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
        outputs,
        vms,
    };
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    fsutil::write_new(&staging.join("manifest.json"), json.as_bytes(), 0o644)
}

// ---------------------------------------------------------------------------------------------
// Step 8: the host's files and the launchers.

/// Writes `host/` and, when the profile pins a base image for the arch, `launch/`; returns
/// whether the launchers were written. The launchers name the base image where the cache keeps
/// it: a build never fetches it (`imagegen launch` and `imagegen fetch` do).
fn write_host_and_launchers(
    plan: &Plan,
    opts: &BuildOptions,
    overlays: &Overlays,
    staging: &Path,
    outputs: &mut Vec<ManifestOutput>,
) -> anyhow::Result<bool> {
    let net = HostNet::new(plan, HostKind::of_arch(plan.arch));
    for f in host::files(&net) {
        let path = format!("host/{}", f.name);
        write_output(staging, &path, &f.content, f.mode, outputs)?;
    }
    let Some(base) = &plan.base_image else {
        return Ok(false);
    };
    // The shared payload ISOs exist for the roles with an overlay.
    let payload_roles: BTreeSet<Role> = if opts.payload == PayloadKind::Shared && opts.iso {
        overlays.keys().copied().collect()
    } else {
        BTreeSet::new()
    };
    let inputs = LaunchInputs {
        plan,
        host: &net,
        base_image: base,
        payload_roles: &payload_roles,
    };
    for f in launch::files(&inputs)? {
        let path = format!("{LAUNCH_DIR}/{}", f.name);
        write_output(staging, &path, &f.content, f.mode, outputs)?;
    }
    Ok(true)
}
