//! Command-line parsing and dispatch. Everything here is argument handling and printing; the
//! work happens in the stage modules.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::{self, BuildOptions};
use crate::iso::{self, IsoData, IsoFile, IsoOptions};
use crate::payload::PayloadKind;
use crate::plan;
use crate::profile::{self, Arch};
use crate::resolve::{self, Origin, Progress, ResolveOptions};

#[derive(Parser)]
#[command(
    name = "imagegen",
    version,
    about = "Turns a pinned cluster profile into cloud-init seeds that boot VMs as configured Kubernetes nodes",
    after_help = "Example:\n  imagegen build --arch arm64        # seeds for the guide's cluster in out/arm64/\n  imagegen plan --arch amd64 --json  # what a build would do"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write every VM's seed (user-data, meta-data, network-config, seed.iso) under OUT/ARCH/
    #[command(
        after_help = "Example:\n  imagegen build --arch arm64 --ssh-key ~/.ssh/id_ed25519.pub\n  imagegen build --arch amd64 --profile profiles/my-cluster.yaml --out /tmp/seeds"
    )]
    Build(BuildArgs),
    /// Print what a build would do, without writing anything
    #[command(
        after_help = "Example:\n  imagegen plan --arch arm64\n  imagegen plan --arch amd64 --json | jq '.vms[].pod_cidr'"
    )]
    Plan(PlanArgs),
    /// Download and verify every pinned artifact into the cache (what build does first)
    #[command(
        after_help = "Example:\n  imagegen fetch --arch arm64\n  imagegen fetch --arch amd64 --mirror http://mirror.lan/k8s --jobs 8"
    )]
    Fetch(FetchArgs),
    /// Work with the download cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Write a NoCloud seed ISO from given files (like cloud-localds)
    #[command(
        after_help = "Example:\n  imagegen seed-iso -o seed.iso --user-data user-data --meta-data meta-data\n  imagegen seed-iso -o seed.iso out/arm64/worker0/*"
    )]
    SeedIso(SeedIsoArgs),
    /// Work with profiles
    #[command(subcommand)]
    Profile(ProfileCommand),
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Add files downloaded by hand to the cache, when their digest matches a pin of the profile
    #[command(
        after_help = "Example:\n  imagegen cache import ~/Downloads/containerd-1.7.20-linux-arm64.tar.gz ~/Downloads/runc.arm64"
    )]
    Import {
        /// Files to import
        #[arg(required = true)]
        files: Vec<Utf8PathBuf>,
        /// Profile whose pins the files are matched against [default: the built-in kthw-1.31]
        #[arg(long, value_name = "FILE")]
        profile: Option<Utf8PathBuf>,
        /// Cache directory [default: $IMAGEGEN_CACHE, else the platform cache dir]
        #[arg(long, value_name = "DIR")]
        cache: Option<Utf8PathBuf>,
    },
    /// Print the cache directory
    #[command(after_help = "Example:\n  du -sh \"$(imagegen cache dir)\"")]
    Dir {
        #[arg(long, value_name = "DIR")]
        cache: Option<Utf8PathBuf>,
    },
}

#[derive(Args)]
struct SeedIsoArgs {
    /// The ISO to write
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Utf8PathBuf,
    /// Volume label
    #[arg(long, default_value = "cidata")]
    volid: String,
    /// File stored as user-data
    #[arg(long, value_name = "FILE")]
    user_data: Option<Utf8PathBuf>,
    /// File stored as meta-data
    #[arg(long, value_name = "FILE")]
    meta_data: Option<Utf8PathBuf>,
    /// File stored as network-config
    #[arg(long, value_name = "FILE")]
    network_config: Option<Utf8PathBuf>,
    /// File stored as vendor-data
    #[arg(long, value_name = "FILE")]
    vendor_data: Option<Utf8PathBuf>,
    /// More files, stored under their own names
    files: Vec<Utf8PathBuf>,
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate a profile and print every problem at once
    #[command(after_help = "Example:\n  imagegen profile check profiles/kthw-1.31.yaml")]
    Check {
        /// The profile file
        file: Utf8PathBuf,
    },
    /// Print the built-in profile (a starting point for your own)
    #[command(after_help = "Example:\n  imagegen profile show > profiles/my-cluster.yaml")]
    Show,
}

#[derive(Clone, Copy, ValueEnum)]
enum ArchArg {
    Arm64,
    Amd64,
}

impl From<ArchArg> for Arch {
    fn from(a: ArchArg) -> Self {
        match a {
            ArchArg::Arm64 => Arch::Arm64,
            ArchArg::Amd64 => Arch::Amd64,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PayloadArg {
    /// The role's overlay archive rides on each VM's seed ISO
    Embed,
    /// One payload ISO per role (OUT/ARCH/payload-ROLE.iso), attached as a second drive
    Shared,
    /// The node downloads each pinned artifact at first boot and checks its digest
    Fetch,
}

impl From<PayloadArg> for PayloadKind {
    fn from(p: PayloadArg) -> Self {
        match p {
            PayloadArg::Embed => PayloadKind::Embed,
            PayloadArg::Shared => PayloadKind::Shared,
            PayloadArg::Fetch => PayloadKind::Fetch,
        }
    }
}

#[derive(Args)]
struct ResolveArgs {
    /// Cache directory [default: $IMAGEGEN_CACHE, else $XDG_CACHE_HOME/imagegen or the platform cache dir]
    #[arg(long, value_name = "DIR")]
    cache: Option<Utf8PathBuf>,
    /// Mirror with the upstream host/path layout, tried before upstream (repeatable, in order)
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Never use the network; fail listing what the cache lacks
    #[arg(long)]
    offline: bool,
    /// Connections at once, shared by all downloads
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,
    /// No progress output
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl ResolveArgs {
    fn options(&self, common: &Common) -> anyhow::Result<ResolveOptions> {
        let cache = match &self.cache {
            Some(c) => c.clone().into_std_path_buf(),
            None => resolve::default_cache_dir()?,
        };
        let mut o = ResolveOptions::new(cache);
        o.mirrors = self.mirrors.clone();
        o.offline = self.offline;
        o.jobs = self.jobs.max(1);
        o.progress = if self.quiet {
            Progress::Quiet
        } else {
            Progress::Auto
        };
        let arch: Arch = common.arch.into();
        let mut hint = format!("--arch {arch}");
        if let Some(p) = &common.profile {
            hint.push_str(&format!(" --profile {p}"));
        }
        if let Some(c) = &self.cache {
            hint.push_str(&format!(" --cache {c}"));
        }
        o.fetch_hint = hint;
        Ok(o)
    }
}

#[derive(Args)]
struct FetchArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    resolve: ResolveArgs,
}

#[derive(Args)]
struct Common {
    /// Target architecture of the VMs
    #[arg(long, value_enum)]
    arch: ArchArg,
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    common: Common,
    /// Output directory; seeds go to OUT/ARCH/VM/
    #[arg(long, default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Public key for ssh_authorized_keys (repeatable) [default: ~/.ssh/id_*.pub]
    #[arg(long = "ssh-key", value_name = "FILE")]
    ssh_keys: Vec<Utf8PathBuf>,
    /// Use these certificates and kubeconfigs (the guide's file names) instead of imagegen's own OUT/pki
    #[arg(long, value_name = "DIR")]
    pki: Option<Utf8PathBuf>,
    /// Override the built-in config templates with DIR/<name>.j2
    #[arg(long, value_name = "DIR")]
    templates: Option<Utf8PathBuf>,
    /// How nodes get their binaries
    #[arg(long, value_enum, default_value = "embed")]
    payload: PayloadArg,
    /// Do not write ISOs (seed directories only)
    #[arg(long)]
    no_iso: bool,
    #[command(flatten)]
    resolve: ResolveArgs,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    common: Common,
    /// Print JSON (stable field names)
    #[arg(long)]
    json: bool,
}

/// Parses the arguments, runs the command, prints errors with their whole context chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(a) => {
            let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
            let (ssh_keys, warning) = build::ssh_keys(&a.ssh_keys, home.as_deref())?;
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
                epoch: build::epoch_from_env()?,
            };
            let report = build::build(&opts)?;
            println!("{}", build::summary(&report, &a.out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan(a) => {
            let prof = profile::load(a.common.profile.as_deref())?;
            let plan = plan::plan(&prof, a.common.arch.into())?;
            let mut stdout = std::io::stdout().lock();
            if a.json {
                serde_json::to_writer_pretty(&mut stdout, &plan)?;
                writeln!(stdout)?;
            } else {
                write!(stdout, "{}", plan::render_text(&plan))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch(a) => {
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
            println!(
                "{} artifacts for {} verified in {} ({downloaded} downloaded, {} already cached)",
                resolved.len(),
                plan.arch,
                opts.cache_dir.display(),
                resolved.len() - downloaded
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache(CacheCommand::Import {
            files,
            profile: p,
            cache,
        }) => {
            let prof = profile::load(p.as_deref())?;
            let pins = plan::all_artifacts(&prof);
            let cache = match cache {
                Some(c) => c.into_std_path_buf(),
                None => resolve::default_cache_dir()?,
            };
            let files: Vec<std::path::PathBuf> =
                files.into_iter().map(|f| f.into_std_path_buf()).collect();
            let imported = resolve::import_files(&cache, &files, &pins)?;
            for (path, a) in &imported {
                println!(
                    "imported {} as {} {} ({})",
                    path.display(),
                    a.component,
                    a.version,
                    a.digest
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache(CacheCommand::Dir { cache }) => {
            let dir = match cache {
                Some(c) => c.into_std_path_buf(),
                None => resolve::default_cache_dir()?,
            };
            println!("{}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::SeedIso(a) => {
            seed_iso(&a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Profile(ProfileCommand::Check { file }) => match profile::load(Some(&file)) {
            Ok(p) => {
                println!(
                    "{file}: ok ({} nodes, {} components)",
                    p.nodes.len(),
                    p.components.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprint!("{e}");
                if !e.to_string().ends_with('\n') {
                    eprintln!();
                }
                Ok(ExitCode::from(1))
            }
        },
        Command::Profile(ProfileCommand::Show) => {
            std::io::stdout()
                .write_all(profile::BUILTIN_YAML.as_bytes())
                .context("writing to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn seed_iso(a: &SeedIsoArgs) -> anyhow::Result<()> {
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
    let timestamp =
        i64::try_from(build::epoch_from_env()?).context("SOURCE_DATE_EPOCH is too large")?;
    iso::write_iso(
        a.output.as_std_path(),
        &IsoOptions {
            volume_id: a.volid.clone(),
            timestamp,
        },
        &files,
    )
    .with_context(|| format!("writing {}", a.output))?;
    // An image holding a private input (user-data with keys) is as private as that input.
    if files.iter().any(|f| f.mode == 0o600) {
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(
            a.output.as_std_path(),
            std::fs::Permissions::from_mode(0o600),
        )?;
    }
    Ok(())
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
