//! The command line: clap definitions and dispatch (here), one function per command
//! (`commands`; `seed_iso` has its own file for its arguments and flow), what the CLI reads
//! besides its arguments (`inputs`: SSH keys, `SOURCE_DATE_EPOCH`, the cache directory) and how
//! it prints (`output`). The work happens in the stage modules.

mod commands;
mod inputs;
mod interrupt;
mod output;
mod seed_iso;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::host::HostKind;
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
    // Its help lives with its arguments, in seed_iso.rs.
    SeedIso(seed_iso::SeedIsoArgs),
    /// Work with profiles
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Set up what the host needs for the VMs (bridge, NAT, dnsmasq, /etc/hosts), or show or undo it
    #[command(
        after_help = "Example:\n  imagegen host-setup --print          # what it would do, changes nothing\n  sudo imagegen host-setup             # do it (a second run changes nothing)\n  sudo imagegen host-setup --undo      # remove exactly what it added"
    )]
    HostSetup(HostSetupArgs),
    /// Start, stop or look at VMs with the launchers of a build (OUT/ARCH/launch/VM.sh)
    #[command(
        after_help = "Example:\n  sudo imagegen launch all            # every VM, in the profile's order\n  imagegen launch worker0 --dry-run    # the disk and QEMU commands a start runs\n  imagegen launch all --status\n  sudo imagegen launch all --stop\n\nEnvironment (read by the scripts): IMAGEGEN_LAUNCH_NIC, IMAGEGEN_LAUNCH_BASE_IMAGE,\nIMAGEGEN_LAUNCH_ACCEL, IMAGEGEN_LAUNCH_FIRMWARE, IMAGEGEN_LAUNCH_LEASES (see OUT/ARCH/launch/common.sh)"
    )]
    Launch(LaunchArgs),
    /// Move a component of a profile to another version with its published digests, or list
    /// newer releases (--check)
    #[command(
        after_help = "Example:\n  imagegen pin containerd 1.7.22 --profile profiles/my-cluster.yaml\n  imagegen pin kubernetes 1.31.4 --profile my.yaml --dry-run   # node and server tarballs\n  imagegen pin --check --profile my.yaml\n\nThe digests come from the checksum files each project publishes beside its release files\n(.sha256sum, .sha256/.sha512, runc.sha256sum, SHA256SUMS); each file is downloaded into the\ncache and checked against them unless --trust-sums. Only the version, digest and size values\nof the profile change; its comments and layout stay."
    )]
    Pin(PinArgs),
    /// Create or complete the cluster's PKI in OUT/pki (what build does when it has none), or check it
    #[command(
        after_help = "Example:\n  imagegen pki                      # out/pki for the built-in profile\n  imagegen pki --profile profiles/my-cluster.yaml --out /tmp/seeds\n  imagegen pki --force kubernetes   # its certificate again, e.g. after a control node was added\n  imagegen pki check                # every file against the profile: expiry, names, keys, issuer",
        args_conflicts_with_subcommands = true
    )]
    Pki(PkiArgs),
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Check every file of the PKI against the profile; exit 1 on any error
    #[command(
        after_help = "Example:\n  imagegen pki check --profile profiles/my-cluster.yaml\n  imagegen pki check --pki ~/kubernetes-the-harder-way/auth"
    )]
    Check(PkiCheckArgs),
}

#[derive(Args)]
struct PkiCheckArgs {
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// Output directory whose OUT/pki (imagegen's own) is checked
    #[arg(long, default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Check these files (the guide's names, as a build takes them with --pki) instead
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pki: Option<Utf8PathBuf>,
    /// Architecture to plan for [default: the first the profile pins completely]
    #[arg(long, value_enum)]
    arch: Option<ArchArg>,
}

#[derive(Args)]
struct PinArgs {
    /// The component: containerd, runc, crictl, cni-plugins, etcd, base-image, or kubernetes
    /// (kubernetes-node and kubernetes-server, one release)
    #[arg(required_unless_present = "check")]
    component: Option<String>,
    /// The version to pin (1.7.22 or v1.7.22)
    #[arg(required_unless_present = "check")]
    version: Option<String>,
    /// The profile file, rewritten in place [--check: default the built-in kthw-1.31]
    #[arg(long, value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// Architectures to pin [default: those the component pins now]
    #[arg(long, value_enum)]
    arch: Option<PinArchArg>,
    /// Take the published checksums without downloading the files to check them
    #[arg(long)]
    trust_sums: bool,
    /// Show what would change; write nothing to the profile
    #[arg(long)]
    dry_run: bool,
    /// List the components that have newer upstream releases
    #[arg(long, conflicts_with_all = ["component", "version", "arch", "trust_sums", "dry_run"])]
    check: bool,
    #[command(flatten)]
    resolve: ResolveArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum PinArchArg {
    Arm64,
    Amd64,
    All,
}

#[derive(Args)]
struct PkiArgs {
    #[command(subcommand)]
    command: Option<PkiCommand>,
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// Output directory; the PKI goes to OUT/pki
    #[arg(long, default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Architecture to plan for [default: the first the profile pins completely]; the PKI is the same for both
    #[arg(long, value_enum)]
    arch: Option<ArchArg>,
    /// Issue these identities again (key, certificate, kubeconfig) with the same CA: kubernetes, admin, a node's name, ...
    #[arg(long, value_name = "NAME", num_args = 1..)]
    force: Vec<String>,
    /// Make a new CA and issue everything again: nodes running with the old credentials are cut off
    #[arg(long, conflicts_with = "force")]
    force_ca: bool,
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

#[derive(Args)]
struct HostSetupArgs {
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// The kind of host [default: this machine's]
    #[arg(long, value_enum)]
    host: Option<HostArg>,
    /// Print what it does and change nothing
    #[arg(long, conflicts_with = "undo")]
    print: bool,
    /// Remove exactly what earlier runs added
    #[arg(long)]
    undo: bool,
    /// Take every file path under DIR (tests, images); services are then left alone, the network
    /// steps still act on the current network namespace
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: Utf8PathBuf,
}

#[derive(Args)]
struct LaunchArgs {
    /// A VM of the profile, or `all` (in the profile's order)
    #[arg(value_name = "VM|all")]
    target: String,
    /// Architecture of the VMs [default: this machine's]
    #[arg(long, value_enum)]
    arch: Option<ArchArg>,
    /// The build's output directory
    #[arg(long, default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Print the commands a start runs (disk creation, QEMU) and run nothing
    #[arg(long, conflicts_with_all = ["stop", "status"])]
    dry_run: bool,
    /// Stop the VMs (QEMU ends: the guests power off without a shutdown)
    #[arg(long, conflicts_with = "status")]
    stop: bool,
    /// For each VM: running or not, its pid, its address from the DHCP lease, cloud-init's state
    #[arg(long)]
    status: bool,
    /// Cache to fetch the base image into [default: the cache the build used]
    #[arg(long, value_name = "DIR")]
    cache: Option<Utf8PathBuf>,
    /// Mirror in the upstream host/path layout (http://, https://, file:// or a directory),
    /// tried before upstream (repeatable, in order)
    #[arg(long = "mirror", value_name = "URL|DIR", value_parser = crate::resolve::parse_mirror)]
    mirrors: Vec<String>,
    /// Never use the network for the base image
    #[arg(long)]
    offline: bool,
    /// No download progress
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HostArg {
    Linux,
    Macos,
}

impl From<HostArg> for HostKind {
    fn from(h: HostArg) -> Self {
        match h {
            HostArg::Linux => HostKind::Linux,
            HostArg::Macos => HostKind::MacOs,
        }
    }
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
    /// Mirror in the upstream host/path layout, tried before upstream (repeatable, in order):
    /// an http://, https:// or file:// URL, or a directory, holding e.g.
    /// URL/dl.k8s.io/v1.31.0/kubernetes-node-linux-arm64.tar.gz. For this machine's downloads
    /// only: with --payload fetch the nodes download (see --node-mirror)
    #[arg(long = "mirror", value_name = "URL|DIR", value_parser = crate::resolve::parse_mirror)]
    mirrors: Vec<String>,
    /// Never use the network (a mirror must then be a directory or file:// URL); fail listing
    /// what the cache lacks
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
        let arch: Arch = common.arch.into();
        let mut hint = format!("--arch {arch}");
        if let Some(p) = &common.profile {
            hint.push_str(&format!(" --profile {p}"));
        }
        self.options_with_hint(hint)
    }

    /// The options, with `hint` the arguments of an `imagegen fetch` that would fill the cache.
    fn options_with_hint(&self, mut hint: String) -> anyhow::Result<ResolveOptions> {
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
        if let (false, Some(c)) = (hint.is_empty(), &self.cache) {
            hint.push_str(&format!(" --cache {c}"));
        }
        o.fetch_hint = hint;
        crate::resolve::check_offline(&o.mirrors, o.offline)?;
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
    /// With --payload fetch: the nodes download from this http(s) mirror in the upstream
    /// host/path layout (URL/github.com/...) instead of the profile's URLs (kubespray's
    /// files_repo). --mirror is this machine's, not the nodes'
    #[arg(long, value_name = "URL", value_parser = crate::resolve::parse_node_mirror)]
    node_mirror: Option<String>,
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
        Err(e) => match e.downcast::<clap::Error>() {
            // A usage error found after parsing (seed-iso's two forms): shown and ended as clap's.
            Ok(usage) => usage.exit(),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
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
        Command::SeedIso(a) => seed_iso::run(a),
        Command::Profile(ProfileCommand::Check { file }) => commands::profile_check(&file),
        Command::Profile(ProfileCommand::Show) => commands::profile_show(),
        Command::Pki(a) => match &a.command {
            Some(PkiCommand::Check(c)) => commands::pki_check(c),
            None => commands::pki(&a),
        },
        Command::Pin(a) => commands::pin(&a),
        Command::HostSetup(a) => commands::host_setup(&a),
        Command::Launch(a) => commands::launch(a),
    }
}
