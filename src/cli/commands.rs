//! One function per command: turn the parsed arguments into a call of the stage modules and
//! print the result.

use std::process::ExitCode;

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use super::inputs::{self, epoch_from_env};
use super::output::{print, println};
use super::{BuildArgs, FetchArgs, PlanArgs, SeedIsoArgs};
use crate::build::{self, BuildOptions, BuildReport};
use crate::iso::{self, IsoData, IsoFile, IsoOptions};
use crate::plan;
use crate::profile::{self, ProfileError};
use crate::resolve::{self, Origin};

pub(super) fn build(a: BuildArgs) -> anyhow::Result<ExitCode> {
    super::interrupt::install();
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let (ssh_keys, warning) = inputs::ssh_keys(&a.ssh_keys, home.as_deref())?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    let resolve = a.resolve.options(&a.common)?;
    let opts = BuildOptions {
        profile: a.common.profile,
        arch: a.common.arch.into(),
        out: a.out.clone(),
        pki: a.pki,
        templates: a.templates,
        ssh_keys,
        payload: a.payload.into(),
        iso: !a.no_iso,
        resolve,
        epoch: epoch_from_env()?,
    };
    let report = build::build(&opts)?;
    println(&summary(&report, &a.out))?;
    Ok(ExitCode::SUCCESS)
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
    if !report.pki_created.is_empty() {
        s.push_str(&format!(
            "\ncreated {} PKI files in {}",
            report.pki_created.len(),
            out.join("pki")
        ));
    }
    s
}

pub(super) fn plan(a: &PlanArgs) -> anyhow::Result<ExitCode> {
    let prof = profile::load(a.common.profile.as_deref())?;
    let plan = plan::plan(&prof, a.common.arch.into())?;
    if a.json {
        let mut json = serde_json::to_string_pretty(&plan)?;
        json.push('\n');
        print(&json)?;
    } else {
        print(&plan::render_text(&plan))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn fetch(a: &FetchArgs) -> anyhow::Result<ExitCode> {
    let opts = a.resolve.options(&a.common)?;
    let prof = profile::load(a.common.profile.as_deref())?;
    let plan = plan::plan(&prof, a.common.arch.into())?;
    let mut all = plan.artifacts.clone();
    all.extend(plan.pinned_only.iter().cloned());
    let resolved = resolve::resolve(&all, &opts)?;
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

/// Checks a profile: `ok` and exit 0, or every problem and exit 1. A file that cannot be read
/// is an error like any other (`error: cannot read profile ...`).
pub(super) fn profile_check(file: &Utf8Path) -> anyhow::Result<ExitCode> {
    match profile::load(Some(file)) {
        Ok(p) => {
            println(&format!(
                "{file}: ok ({} nodes, {} components)",
                p.nodes.len(),
                p.components.len()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let problems = e.downcast::<ProfileError>()?;
            // The report is the output of this command, one line per problem (each ends in \n).
            eprint!("{problems}");
            Ok(ExitCode::from(1))
        }
    }
}

pub(super) fn profile_show() -> anyhow::Result<ExitCode> {
    print(profile::BUILTIN_YAML)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn seed_iso(a: &SeedIsoArgs) -> anyhow::Result<ExitCode> {
    let mut files = Vec::new();
    let named = [
        ("user-data", &a.user_data),
        ("meta-data", &a.meta_data),
        ("network-config", &a.network_config),
        ("vendor-data", &a.vendor_data),
    ];
    for (name, path) in named {
        if let Some(p) = path {
            files.push(iso_input(p, Some(name))?);
        }
    }
    for p in &a.files {
        files.push(iso_input(p, None)?);
    }
    if files.is_empty() {
        anyhow::bail!("nothing to write: give --user-data/--meta-data or files");
    }
    if a.volid.eq_ignore_ascii_case("cidata") && !files.iter().any(|f| f.name == "user-data") {
        eprintln!("warning: a cidata seed without user-data is not used by cloud-init");
    }
    let timestamp = i64::try_from(epoch_from_env()?).context("SOURCE_DATE_EPOCH is too large")?;
    let opts = IsoOptions {
        volume_id: a.volid.clone(),
        timestamp,
        // An image holding a private input (user-data with keys) is as private as that input.
        mode: if files.iter().any(|f| f.mode == 0o600) {
            0o600
        } else {
            0o644
        },
    };
    iso::write_iso(a.output.as_std_path(), &opts, &files)
        .with_context(|| format!("writing {}", a.output))?;
    Ok(ExitCode::SUCCESS)
}

fn iso_input(p: &Utf8PathBuf, name: Option<&str>) -> anyhow::Result<IsoFile> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = fs_err::metadata(p.as_std_path())?;
    if !meta.is_file() {
        anyhow::bail!("{p}: expected a regular file");
    }
    let name = match name {
        Some(n) => n.to_string(),
        None => p
            .file_name()
            .with_context(|| format!("{p}: no file name"))?
            .to_string(),
    };
    Ok(IsoFile {
        name,
        data: IsoData::Path(p.clone().into_std_path_buf()),
        // Two modes only, so the image depends on names and contents, not on the umask that
        // made the inputs; a file others cannot read (user-data with keys) stays private.
        mode: if meta.permissions().mode() & 0o044 == 0 {
            0o600
        } else {
            0o644
        },
    })
}
