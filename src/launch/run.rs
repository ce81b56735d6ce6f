//! `imagegen launch VM|all`: runs the build's own launcher scripts (`out/<arch>/launch/<vm>.sh`)
//! with the action asked for, so what runs is exactly what a person reads there. Before a start
//! it makes sure the pinned base image is in the cache (fetched and verified like every other
//! artifact): every VM disk is a copy-on-write layer over it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};

use super::{LaunchInfo, INFO, LAUNCH_DIR};
use crate::plan::Artifact;
use crate::profile::{Arch, ComponentKey};
use crate::resolve::{self, Progress, ResolveOptions};

/// What the scripts are asked to do (their first argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Status,
    /// The commands a start runs, run nothing (`--dry-run`).
    Print,
}

impl Action {
    fn arg(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Status => "status",
            Action::Print => "print",
        }
    }
}

pub struct LaunchOptions {
    /// The build's output directory (`out`).
    pub out: Utf8PathBuf,
    pub arch: Arch,
    /// A VM's name, or `all`.
    pub target: String,
    pub action: Action,
    /// Where to fetch the base image into [default: the cache the build used].
    pub cache: Option<PathBuf>,
    pub mirrors: Vec<String>,
    pub offline: bool,
    pub quiet: bool,
}

/// The environment variable that names the base image to the scripts (and lets a user or a test
/// swap it).
const BASE_IMAGE_ENV: &str = "IMAGEGEN_LAUNCH_BASE_IMAGE";

pub fn launch(o: &LaunchOptions) -> anyhow::Result<()> {
    let dir = o.out.join(o.arch.as_str()).join(LAUNCH_DIR);
    let info = read_info(&dir, o.arch)?;
    let vms: Vec<&String> = if o.target == "all" {
        info.vms.iter().collect()
    } else {
        match info.vms.iter().find(|v| **v == o.target) {
            Some(v) => vec![v],
            None => bail!(
                "no VM named `{}` in {dir}/{INFO} (known: {}, or all)",
                o.target,
                info.vms.join(", ")
            ),
        }
    };
    let base_image = match (o.action, std::env::var_os(BASE_IMAGE_ENV)) {
        (Action::Start, None) => Some(ensure_base_image(&info, o)?),
        _ => None,
    };
    let mut failed = Vec::new();
    for vm in vms {
        let script = dir.join(format!("{vm}.sh"));
        let mut cmd = Command::new("sh");
        cmd.arg(script.as_std_path()).arg(o.action.arg());
        if let Some(base) = &base_image {
            cmd.env(BASE_IMAGE_ENV, base);
        }
        let status = cmd
            .status()
            .with_context(|| format!("running sh {script}"))?;
        if !status.success() {
            // A VM that does not start would take the ones after it down with it (they need it).
            if o.action == Action::Start {
                bail!("{vm} did not start ({script} {}: {status})", o.action.arg());
            }
            failed.push(vm.as_str());
        }
    }
    if !failed.is_empty() {
        bail!("{} failed for {}", o.action.arg(), failed.join(", "));
    }
    Ok(())
}

fn read_info(dir: &Utf8Path, arch: Arch) -> anyhow::Result<LaunchInfo> {
    let path = dir.join(INFO);
    let text = match fs_err::read_to_string(path.as_std_path()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no launchers in {dir}: `imagegen build --arch {arch}` writes them (when the profile pins a base-image for {arch})"
        ),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_str(&text).with_context(|| format!("{path}: not a launch.json of imagegen"))
}

/// The verified base image: from the cache the build used (or `--cache`), fetched into it when
/// missing.
fn ensure_base_image(info: &LaunchInfo, o: &LaunchOptions) -> anyhow::Result<PathBuf> {
    let b = &info.base_image;
    // The build recorded `<cache>/<algo>/<hex>`.
    let cache = match &o.cache {
        Some(c) => c.clone(),
        None => b
            .path
            .parent()
            .and_then(|p| p.parent())
            .map(PathBuf::from)
            .with_context(|| format!("{}: no cache directory above it", b.path.display()))?,
    };
    let artifact = Artifact {
        component: ComponentKey::BaseImage.to_string(),
        version: b.version.clone(),
        url: b.url.clone(),
        file_name: b.file_name.clone(),
        digest: b.digest.clone(),
    };
    let mut opts = ResolveOptions::new(cache);
    opts.mirrors = o.mirrors.clone();
    opts.offline = o.offline;
    opts.progress = if o.quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    opts.fetch_hint = format!("--arch {}", info.arch);
    let resolved = resolve::resolve(&[artifact], &opts)?;
    resolved
        .into_iter()
        .next()
        .map(|r| r.path)
        .context("resolving the base image returned nothing")
}
