//! The command line: clap definitions and dispatch (here), one function per command
//! (`commands`), what the CLI reads besides its arguments (`inputs`: SSH keys,
//! `SOURCE_DATE_EPOCH`, the cache directory) and how it prints (`output`). The work happens in
//! the stage modules.

mod commands;
mod inputs;
mod interrupt;
mod output;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::payload::PayloadKind;
use crate::profile::Arch;
use crate::resolve::{Progress, ResolveOptions};

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
    /// Largest download allowed for a file whose size the profile does not pin (e.g. 4GiB, 500M)
    #[arg(long, default_value = "4GiB", value_name = "SIZE", value_parser = parse_size_arg)]
    max_download_size: u64,
    /// No progress output
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl ResolveArgs {
    fn options(&self, common: &Common) -> anyhow::Result<ResolveOptions> {
        let mut o = ResolveOptions::new(inputs::cache_dir(self.cache.as_deref())?);
        o.mirrors = self.mirrors.clone();
        o.offline = self.offline;
        o.jobs = self.jobs.max(1);
        o.max_download_size = self.max_download_size;
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

/// A size in bytes, with an optional unit (`K`, `M`, `G` and `KiB`.. are powers of 1024).
fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e} (expected e.g. 4GiB, 500M or 1048576)"))
}

/// Parses the arguments, runs the command, prints errors with their whole context chain.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // The reader of our output went away (`imagegen plan | head -1`): it has what it wanted.
        Err(e) if output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Build(a) => commands::build(a),
        Command::Plan(a) => commands::plan(&a),
        Command::Fetch(a) => commands::fetch(&a),
        Command::Cache(CacheCommand::Import {
            files,
            profile,
            cache,
        }) => commands::cache_import(&files, profile.as_deref(), cache.as_deref()),
        Command::Cache(CacheCommand::Dir { cache }) => commands::cache_dir(cache.as_deref()),
        Command::SeedIso(a) => commands::seed_iso(&a),
        Command::Profile(ProfileCommand::Check { file }) => commands::profile_check(&file),
        Command::Profile(ProfileCommand::Show) => commands::profile_show(),
    }
}
