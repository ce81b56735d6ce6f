//! One function per command: turn the parsed arguments into a call of the stage modules and
//! print the result.

use std::process::ExitCode;

use camino::{Utf8Path, Utf8PathBuf};

use super::inputs::{self, epoch_from_env};
use super::output::{self, print, println, Level};
use super::{
    arch, BuildArgs, FetchArgs, HostSetupArgs, LaunchArgs, PinArchArg, PinArgs, PkiArgs,
    PkiCheckArgs, PlanArgs,
};
use crate::build::{self, BuildOptions, BuildReport};
use crate::host::{self, HostKind, HostNet, SetupAction, SetupOptions};
use crate::launch::{self, Action, LaunchOptions};
use crate::pki::{self, PkiMode};
use crate::plan;
use crate::profile::{self, Arch};
use crate::resolve::{self, Origin};

pub(super) fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    super::interrupt::install();
    check_payload_mirrors(&a)?;
    let arch = a.common.arch()?;
    let mut resolve = a.resolve.options(&a.common, arch)?;
    resolve.suggest_payload_fetch = true;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let (ssh_keys, warning) = inputs::ssh_keys(&a.ssh_keys, home.as_deref())?;
    if let Some(w) = warning {
        output::warn(&w);
    }
    let opts = BuildOptions {
        profile: a.common.profile,
        arch,
        out: a.out.clone(),
        pki: a.pki,
        templates: a.templates,
        ssh_keys,
        payload: a.payload.into(),
        node_mirror: a.node_mirror,
        iso: !a.no_iso,
        resolve,
        epoch: epoch_from_env()?,
        verbose: output::level() == Level::Verbose,
    };
    let report = build::build(&opts)?;
    for w in &report.pki_warnings {
        output::warn(w);
    }
    println(&summary(&report, &a.out))?;
    Ok(ExitCode::SUCCESS)
}

/// `--mirror` is this machine's and `--node-mirror` the nodes': each only where it is used.
fn check_payload_mirrors(a: &BuildArgs) -> anyhow::Result<()> {
    let fetch = matches!(a.payload, super::PayloadArg::Fetch);
    if let (true, Some(m)) = (fetch, a.resolve.mirrors.first()) {
        anyhow::bail!(
            "--mirror {m} is where this machine downloads from, and with --payload fetch it \
             downloads nothing: the nodes do, from the profile's URLs, or from --node-mirror URL \
             (an http(s) mirror in the same layout that they can reach)"
        );
    }
    if let (false, Some(m)) = (fetch, &a.node_mirror) {
        anyhow::bail!(
            "--node-mirror {m} is where nodes download from with --payload fetch; with --payload \
             embed or shared their binaries come with the seed (use --mirror for this machine's \
             downloads)"
        );
    }
    Ok(())
}

/// The summary printed after a build.
fn summary(report: &BuildReport, out: &Utf8Path) -> String {
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
    if report.launchers {
        s.push_str(&format!(
            "\nhost files in {0}/host, launchers in {0}/launch (VM disks go to {1}/vms/{2})",
            report.arch_dir,
            out,
            report.arch_dir.file_name().unwrap_or_default()
        ));
    } else {
        s.push_str(&format!(
            "\nhost files in {}/host; no launchers: the profile pins no base-image for this arch",
            report.arch_dir
        ));
    }
    if !report.pki_created.is_empty() {
        s.push_str(&format!(
            "\ncreated {} PKI files in {}",
            report.pki_created.len(),
            out.join("pki")
        ));
    }
    for note in &report.pki_notes {
        s.push_str(&format!("\n{}: {note}", out.join("pki")));
    }
    s
}

pub(super) fn plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    if a.json_schema {
        print(&plan::json_schema()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let prof = profile::load(a.common.profile.as_deref())?;
    let plan = plan::plan(&prof, a.common.arch()?)?;
    if a.json {
        print(&plan::render_json(&plan)?)?;
    } else {
        print(&plan::render_text(&plan))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn fetch(a: &FetchArgs) -> anyhow::Result<ExitCode> {
    let arch = a.common.arch()?;
    let opts = a.resolve.options(&a.common, arch)?;
    let prof = profile::load(a.common.profile.as_deref())?;
    let plan = plan::plan(&prof, arch)?;
    let mut all = plan.artifacts.clone();
    all.extend(plan.pinned_only.iter().cloned());
    // The VMs' disk image: `launch` needs it, a build does not.
    all.extend(plan.base_image.iter().cloned());
    let resolved = resolve::resolve(&all, &opts)?;
    for r in &resolved {
        output::detail(&r.source_line());
    }
    let downloaded = resolved
        .iter()
        .filter(|r| !matches!(r.origin, Origin::Cache))
        .count();
    println(&format!(
        "{} artifacts for {} verified in {} ({downloaded} downloaded, {} already cached)",
        resolved.len(),
        plan.arch,
        opts.cache_dir.display(),
        resolved.len() - downloaded
    ))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cache_import(
    files: &[Utf8PathBuf],
    profile: Option<&Utf8Path>,
    cache: Option<&Utf8Path>,
) -> anyhow::Result<ExitCode> {
    let prof = profile::load(profile)?;
    let pins = plan::all_artifacts(&prof);
    let cache = inputs::cache_dir(cache)?;
    let files: Vec<std::path::PathBuf> = files.iter().map(|f| f.clone().into()).collect();
    let imported = resolve::import_files(&cache, &files, &pins)?;
    let mut text = String::new();
    for (path, a) in &imported {
        text.push_str(&format!(
            "imported {} as {} {} ({})\n",
            path.display(),
            a.component,
            a.version,
            a.digest
        ));
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn cache_dir(cache: Option<&Utf8Path>) -> anyhow::Result<ExitCode> {
    println(&inputs::cache_dir(cache)?.display().to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// Checks profiles (`-` reads stdin): `FILE: ok` on stdout for each good one, every problem of
/// each bad one on stderr; exit 0 when all are good, else 1. A file that cannot be read is a
/// problem like any other (`error: cannot read profile ...`), and the next file is checked.
pub(super) fn profile_check(files: &[Utf8PathBuf]) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for file in files {
        let checked = if file.as_str() == "-" {
            inputs::read_stdin()
                .map_err(|e| anyhow::anyhow!("cannot read the profile from stdin: {e}"))
                .and_then(|text| profile::parse(&text, "<stdin>").map_err(anyhow::Error::new))
        } else {
            profile::load(Some(file))
        };
        match checked {
            Ok(p) => println(&format!(
                "{}: ok ({} nodes, {} components)",
                if file.as_str() == "-" {
                    "<stdin>"
                } else {
                    file.as_str()
                },
                p.nodes.len(),
                p.components.len()
            ))?,
            Err(e) => {
                failed = true;
                output::error(&e);
            }
        }
    }
    Ok(ExitCode::from(u8::from(failed)))
}

pub(super) fn profile_show() -> anyhow::Result<ExitCode> {
    print(profile::BUILTIN_YAML)?;
    Ok(ExitCode::SUCCESS)
}

/// `pin COMPONENT VERSION`: rewrites the profile and prints what changed; `pin --check`: lists
/// newer releases, exit 1 when some could not be looked up.
pub(super) fn pin(a: &PinArgs) -> anyhow::Result<ExitCode> {
    // No `imagegen fetch` gets the files of a version the profile does not pin yet.
    let resolve = a.resolve.options_with_hint(String::new())?;
    if a.check {
        let prof = profile::load(a.profile.as_deref())?;
        let report = crate::pin::check(&prof, &resolve);
        print(&report.text)?;
        return Ok(if report.unreachable > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    let (Some(component), Some(version)) = (&a.component, &a.version) else {
        anyhow::bail!("pin needs COMPONENT and VERSION, or --check");
    };
    let Some(profile) = a.profile.clone() else {
        anyhow::bail!(
            "pin rewrites a profile file: give it with --profile FILE (start from the built-in \
             one with `imagegen profile show > my-cluster.yaml`)"
        );
    };
    let report = crate::pin::pin(&crate::pin::PinOptions {
        profile,
        component: component.clone(),
        version: version.clone(),
        archs: a.arch.map(|x| match x {
            PinArchArg::Arm64 => vec![Arch::Arm64],
            PinArchArg::Amd64 => vec![Arch::Amd64],
            PinArchArg::All => vec![Arch::Arm64, Arch::Amd64],
        }),
        trust_sums: a.trust_sums,
        dry_run: a.dry_run,
        resolve,
    })?;
    println(&report)?;
    Ok(ExitCode::SUCCESS)
}

/// The plan the PKI is made for: `arch`, else this machine's, else the other one if the profile
/// pins only that completely (the PKI does not depend on the architecture).
fn pki_plan(profile: Option<&Utf8Path>, arch: Option<Arch>) -> anyhow::Result<plan::Plan> {
    let prof = profile::load(profile)?;
    Ok(match arch {
        Some(arch) => plan::plan(&prof, arch)?,
        None => {
            let first = arch::or_host_or_any(None);
            let other = match first {
                Arch::Amd64 => Arch::Arm64,
                Arch::Arm64 => Arch::Amd64,
            };
            match plan::plan(&prof, first) {
                Ok(p) => p,
                Err(e) => plan::plan(&prof, other).map_err(|_| e)?,
            }
        }
    })
}

/// Creates or completes OUT/pki (re-issuing what `--force` names) and prints the names of the
/// files it created and what else it changed (never their content).
pub(super) fn pki(a: &PkiArgs) -> anyhow::Result<ExitCode> {
    super::interrupt::install();
    let plan = pki_plan(a.profile.as_deref(), a.arch)?;
    let force = if a.force_ca {
        pki::Force::Ca
    } else if !a.force.is_empty() {
        pki::Force::Identities(a.force.clone())
    } else {
        pki::Force::Nothing
    };
    let dir = a.out.join("pki");
    let args = pki::args_hint(a.profile.as_deref(), Some(&a.out));
    // The lock builds take: two runs never make two CAs.
    let _lock = build::lock_out(&a.out)?;
    let pki = pki::manage(&dir, &plan, &force, &args)?;
    for w in &pki.warnings {
        output::warn(w);
    }
    let mut text = if !pki.created.is_empty() {
        let n = pki.created.len();
        format!("{dir}: created {n} file{}\n", if n == 1 { "" } else { "s" })
    } else if pki.notes.is_empty() {
        format!("{dir}: complete, nothing created\n")
    } else {
        format!("{dir}: nothing created\n")
    };
    for name in &pki.created {
        text.push_str(&format!("  {name}\n"));
    }
    for note in &pki.notes {
        text.push_str(&format!("{note}\n"));
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `imagegen pki check`: the report on stdout; exit 1 when it holds an error.
pub(super) fn pki_check(a: &PkiCheckArgs) -> anyhow::Result<ExitCode> {
    let plan = pki_plan(a.profile.as_deref(), a.arch)?;
    let (dir, mode, args) = match &a.pki {
        Some(dir) => (
            dir.clone(),
            PkiMode::Provided,
            pki::args_hint(a.profile.as_deref(), None),
        ),
        None => (
            a.out.join("pki"),
            PkiMode::Managed,
            pki::args_hint(a.profile.as_deref(), Some(&a.out)),
        ),
    };
    // Not in the middle of a run that writes it: wait for `out/.lock` when there is one to take
    // (a read-only output directory is checked without it).
    let _lock = match (mode, a.out.join(".lock")) {
        (PkiMode::Managed, lock) if lock.is_file() => {
            match crate::fsutil::Lock::acquire(lock.as_std_path(), |l| eprintln!("{l}")) {
                Ok(l) => Some(l),
                Err(e)
                    if e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::PermissionDenied
                                | std::io::ErrorKind::ReadOnlyFilesystem
                        )
                    }) =>
                {
                    None
                }
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    let report = pki::check(&dir, mode, &plan, &args);
    print(&report.text)?;
    Ok(if report.errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub(super) fn host_setup(a: &HostSetupArgs) -> anyhow::Result<ExitCode> {
    let kind: HostKind = a.host.map_or_else(HostKind::current, Into::into);
    let action = if a.print {
        SetupAction::Print
    } else if a.undo {
        SetupAction::Undo
    } else {
        SetupAction::Apply
    };
    if action != SetupAction::Print && kind != HostKind::current() && a.root.as_str() == "/" {
        anyhow::bail!(
            "--host {} on a {} machine: only --print, or --root DIR to write the files elsewhere",
            match kind {
                HostKind::Linux => "linux",
                HostKind::MacOs => "macos",
            },
            HostKind::current()
        );
    }
    let prof = profile::load(a.profile.as_deref())?;
    let plan = plan::plan(&prof, kind.native_arch())?;
    let net = HostNet::new(&plan, kind);
    let opts = SetupOptions {
        action,
        root: a.root.clone(),
    };
    print(&host::setup(&net, &opts)?)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn launch(a: LaunchArgs) -> anyhow::Result<ExitCode> {
    let arch = arch::or_host(a.arch)?;
    let action = if a.dry_run {
        Action::Print
    } else if a.stop {
        Action::Stop
    } else if a.status {
        Action::Status
    } else {
        Action::Start
    };
    resolve::check_offline(&a.mirrors, a.offline)?;
    launch::launch(&LaunchOptions {
        out: a.out,
        arch,
        target: a.target,
        action,
        cache: a.cache.map(Utf8PathBuf::into_std_path_buf),
        mirrors: a.mirrors.clone(),
        offline: a.offline,
        quiet: output::level() == Level::Quiet,
    })?;
    Ok(ExitCode::SUCCESS)
}
