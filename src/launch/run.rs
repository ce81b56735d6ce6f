//! `imagegen launch VM|all`: runs the build's own launcher scripts (`out/<arch>/launch/<vm>.sh`)
//! with the action asked for, so what runs is exactly what a person reads there. Before a start
//! it makes sure the pinned base image is in the cache (fetched and verified like every other
//! artifact): every VM disk is a copy-on-write layer over it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};

use super::{LaunchInfo, INFO, LAUNCH_DIR};
use crate::fsutil;
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
    let text = match fsutil::read_to_string(path.as_std_path()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no launchers in {dir}: `imagegen build --arch {arch}` writes them (when the profile pins a base-image for {arch})"
        ),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_str(&text).with_context(|| format!("{path}: not a launch.json of imagegen"))
}

/// The verified base image: from the cache (`--cache`, `$IMAGEGEN_CACHE` or the default one),
/// fetched into it when missing. Under sudo, with no cache named, the invoking user's default
/// cache is looked at first (read only): the image a user's `imagegen fetch` put there.
fn ensure_base_image(info: &LaunchInfo, o: &LaunchOptions) -> anyhow::Result<PathBuf> {
    let b = &info.base_image;
    let explicit = o.cache.is_some() || std::env::var_os("IMAGEGEN_CACHE").is_some();
    if !explicit {
        if let Some(home) = sudo_user_home() {
            let theirs = resolve::cache_path(&home.join(".cache/imagegen"), &b.digest);
            let theirs_mac = resolve::cache_path(&home.join("Library/Caches/imagegen"), &b.digest);
            for candidate in [theirs, theirs_mac] {
                if candidate.is_file()
                    && b.digest.matches_reader(fsutil::open_regular(&candidate)?)?
                {
                    return Ok(candidate);
                }
            }
        }
    }
    let cache = resolve::cache_dir(o.cache.clone())?;
    let artifact = Artifact {
        component: ComponentKey::BaseImage.to_string(),
        version: b.version.clone(),
        url: b.url.clone(),
        file_name: b.file_name.clone(),
        digest: b.digest.clone(),
        size: b.size,
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

/// The home directory of the user who ran `sudo imagegen ...` (`$SUDO_USER`), if any.
fn sudo_user_home() -> Option<PathBuf> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt as _;
    let user = std::env::var_os("SUDO_USER")?;
    let name = CString::new(user.as_bytes()).ok()?;
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; getpwnam_r writes only into pwd and buf.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwnam_r succeeded, so pwd is initialised and pw_dir points into buf.
    let dir = unsafe { CStr::from_ptr(pwd.assume_init().pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}
