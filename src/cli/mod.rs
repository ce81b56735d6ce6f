//! The command line: clap definitions and dispatch (here), one function per command
//! (`commands`; `seed_iso` has its own file for its arguments and flow, `cache` the cache's
//! commands), the names `--arch` takes (`arch`), completions and man pages (`manuals`), what
//! the CLI reads besides its arguments (`inputs`: SSH keys, `SOURCE_DATE_EPOCH`, the cache
//! directory) and how it prints (`output`: `-q`/`-v`, coloured `error:`). The work happens in
//! the stage modules.

mod arch;
mod cache;
mod commands;
mod inputs;
mod interrupt;
mod manuals;
mod output;
mod seed_iso;

use std::process::ExitCode;

use camino::Utf8PathBuf;
use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::host::HostKind;
use crate::payload::PayloadKind;
use crate::profile::Arch;
use crate::resolve::ResolveOptions;

#[derive(Parser)]
#[command(
    name = "imagegen",
    version,
    about = "Turns a pinned cluster profile into cloud-init seeds that boot VMs as configured Kubernetes nodes",
    after_help = "Example:\n  imagegen build                     # seeds for the guide's cluster in out/<this machine's arch>/\n  imagegen plan --arch amd64 --json  # what a build would do\n\nEnvironment: IMAGEGEN_ARCH, IMAGEGEN_PROFILE, IMAGEGEN_OUT, IMAGEGEN_CACHE, IMAGEGEN_MIRROR,\nIMAGEGEN_JOBS, IMAGEGEN_OFFLINE stand for their flags (each command's --help names them);\nSOURCE_DATE_EPOCH sets every timestamp of the seeds and ISOs (default 2024-01-01); NO_COLOR\nturns colour off.\n\nExit status: 0 success, 1 an input or runtime error (a bad profile, a failed download, ...),\n2 a usage error (unknown flag, bad value), 130/143 interrupted by Ctrl-C/SIGTERM."
)]
struct Cli {
    #[command(flatten)]
    verbosity: Verbosity,
    #[command(subcommand)]
    command: Command,
}

/// `-v` and `-q`, on every command.
#[derive(Args)]
struct Verbosity {
    /// Say more on stderr: where each artifact comes from, the steps of a build
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "quiet",
        display_order = 900
    )]
    verbose: bool,
    /// Print only errors and the result: no progress, warnings or notes
    #[arg(short, long, global = true, display_order = 901)]
    quiet: bool,
}

impl Verbosity {
    fn level(&self) -> output::Level {
        if self.quiet {
            output::Level::Quiet
        } else if self.verbose {
            output::Level::Verbose
        } else {
            output::Level::Normal
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write every VM's seed (user-data, meta-data, network-config, seed.iso) under OUT/ARCH/
    #[command(
        after_help = "Example:\n  imagegen build --ssh-key ~/.ssh/id_ed25519.pub\n  imagegen build --arch amd64 --profile profiles/my-cluster.yaml --out /tmp/seeds\n\nEnvironment: SOURCE_DATE_EPOCH sets every timestamp of the seeds and ISOs (default\n2024-01-01), so the same inputs give the same bytes."
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
    /// Print the completion script of a shell
    #[command(
        after_help = "Example:\n  imagegen completions bash > ~/.local/share/bash-completion/completions/imagegen\n  imagegen completions zsh > \"${fpath[1]}/_imagegen\"\n  imagegen completions fish > ~/.config/fish/completions/imagegen.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into DIR
    #[command(
        after_help = "Example:\n  imagegen man | man -l -\n  imagegen man --dir /usr/local/share/man/man1"
    )]
    Man {
        /// Write imagegen.1 and a page per command (imagegen-build.1, ...) into DIR
        #[arg(long, value_name = "DIR")]
        dir: Option<Utf8PathBuf>,
    },
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
    #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// Output directory whose OUT/pki (imagegen's own) is checked
    #[arg(long, env = "IMAGEGEN_OUT", default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Check these files (the guide's names, as a build takes them with --pki) instead
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pki: Option<Utf8PathBuf>,
    /// Architecture to plan for: arm64 (also aarch64) or amd64 (also x86_64, x64), in any case
    /// [default: this machine's, else the other one the profile pins completely]
    #[arg(long, env = "IMAGEGEN_ARCH", value_parser = arch::ArchParser)]
    arch: Option<Arch>,
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
    #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
    /// Output directory; the PKI goes to OUT/pki
    #[arg(long, env = "IMAGEGEN_OUT", default_value = "out", value_name = "DIR")]
    out: Utf8PathBuf,
    /// Architecture to plan for: arm64 (also aarch64) or amd64 (also x86_64, x64), in any case
    /// [default: this machine's, else the other one the profile pins completely]; the PKI is the
    /// same for both
    #[arg(long, env = "IMAGEGEN_ARCH", value_parser = arch::ArchParser)]
    arch: Option<Arch>,
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
        #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
        profile: Option<Utf8PathBuf>,
        #[command(flatten)]
        cache: CacheArg,
    },
    /// Print the cache directory
    #[command(after_help = "Example:\n  du -sh \"$(imagegen cache dir)\"")]
    Dir {
        #[command(flatten)]
        cache: CacheArg,
    },
    /// List the cache: each entry with its size, digest and what the profile pins it as;
    /// partial downloads; the total
    #[command(
        after_help = "Example:\n  imagegen cache list\n  imagegen cache list --profile profiles/my-cluster.yaml"
    )]
    List {
        /// Profile that names the entries [default: the built-in kthw-1.31]
        #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
        profile: Option<Utf8PathBuf>,
        #[command(flatten)]
        cache: CacheArg,
    },
    /// Remove what no profile needs: entries none of the profiles pins, partial downloads of runs
    /// that are gone, files of older formats; never what a running imagegen holds
    #[command(
        after_help = "Example:\n  imagegen cache prune --dry-run                  # what would go\n  imagegen cache prune --profile a.yaml --profile b.yaml\n  imagegen cache prune --all                      # everything but what a run holds"
    )]
    Prune {
        /// Keep every file these profiles pin, for any architecture (repeatable) [default: the
        /// built-in kthw-1.31]
        #[arg(long = "profile", env = "IMAGEGEN_PROFILE", value_name = "FILE")]
        profiles: Vec<Utf8PathBuf>,
        /// Remove every entry, pinned or not
        #[arg(long, conflicts_with = "profiles")]
        all: bool,
        /// Print what would be removed and remove nothing
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        cache: CacheArg,
    },
}

/// `--cache DIR` of the cache commands.
#[derive(Args)]
struct CacheArg {
    /// Cache directory [default: $XDG_CACHE_HOME/imagegen or the platform cache dir]
    #[arg(long = "cache", env = "IMAGEGEN_CACHE", value_name = "DIR")]
    dir: Option<Utf8PathBuf>,
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate profiles and print every problem of each at once
    #[command(
        after_help = "Example:\n  imagegen profile check profiles/kthw-1.31.yaml\n  imagegen profile check profiles/*.yaml\n  generate-profile | imagegen profile check -"
    )]
    Check {
        /// Profile files (`-` reads stdin)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<Utf8PathBuf>,
    },
    /// Print the built-in profile (a starting point for your own)
    #[command(after_help = "Example:\n  imagegen profile show > profiles/my-cluster.yaml")]
    Show,
}

#[derive(Args)]
struct HostSetupArgs {
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
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
    #[arg(long, env = "IMAGEGEN_ARCH", value_parser = arch::ArchParser, help = arch::HELP)]
    arch: Option<Arch>,
    /// The build's output directory
    #[arg(long, env = "IMAGEGEN_OUT", default_value = "out", value_name = "DIR")]
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
    #[arg(long, env = "IMAGEGEN_CACHE", value_name = "DIR")]
    cache: Option<Utf8PathBuf>,
    /// Mirror in the upstream host/path layout (http://, https://, file:// or a directory),
    /// tried before upstream (repeatable, in order; IMAGEGEN_MIRROR: comma-separated)
    #[arg(
        long = "mirror",
        env = "IMAGEGEN_MIRROR",
        value_name = "URL|DIR",
        value_delimiter = ',',
        value_parser = crate::resolve::parse_mirror
    )]
    mirrors: Vec<String>,
    /// Never use the network for the base image
    #[arg(long, env = "IMAGEGEN_OFFLINE", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    offline: bool,
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
    /// Cache directory [default: $XDG_CACHE_HOME/imagegen or the platform cache dir]
    #[arg(long, env = "IMAGEGEN_CACHE", value_name = "DIR")]
    cache: Option<Utf8PathBuf>,
    /// Mirror in the upstream host/path layout, tried before upstream (repeatable, in order;
    /// IMAGEGEN_MIRROR: comma-separated): an http://, https:// or file:// URL, or a directory,
    /// holding e.g. URL/dl.k8s.io/v1.31.0/kubernetes-node-linux-arm64.tar.gz. For this
    /// machine's downloads only: with --payload fetch the nodes download (see --node-mirror)
    #[arg(
        long = "mirror",
        env = "IMAGEGEN_MIRROR",
        value_name = "URL|DIR",
        value_delimiter = ',',
        value_parser = crate::resolve::parse_mirror
    )]
    mirrors: Vec<String>,
    /// Never use the network (a mirror must then be a directory or file:// URL); fail listing
    /// what the cache lacks
    #[arg(long, env = "IMAGEGEN_OFFLINE", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    offline: bool,
    /// Connections at once, shared by all downloads
    #[arg(long, env = "IMAGEGEN_JOBS", default_value_t = 4, value_name = "N")]
    jobs: usize,
    /// Largest download allowed for a file whose size the profile does not pin (e.g. 4GiB, 500M)
    #[arg(long, default_value = "4GiB", value_name = "SIZE", value_parser = parse_size_arg)]
    max_download_size: u64,
}

/// Whether `value` came from its flag rather than from `var` in the environment: a hint names
/// the flags of this run that `fetch` needs too, and a value from the environment is there for
/// that `fetch` as well.
fn given_as_flag(value: &Utf8PathBuf, var: &str) -> bool {
    std::env::var_os(var).is_none_or(|v| v != value.as_os_str())
}

impl ResolveArgs {
    fn options(&self, common: &Common, arch: Arch) -> anyhow::Result<ResolveOptions> {
        let mut hint = format!("--arch {arch}");
        if let Some(p) = common
            .profile
            .as_ref()
            .filter(|p| given_as_flag(p, "IMAGEGEN_PROFILE"))
        {
            hint.push_str(&format!(" --profile {p}"));
        }
        self.options_with_hint(hint)
    }

    /// The options, with `hint` the arguments of an `imagegen fetch` that would fill the cache
    /// (empty: suggest none).
    fn options_with_hint(&self, mut hint: String) -> anyhow::Result<ResolveOptions> {
        let mut o = ResolveOptions::new(inputs::cache_dir(self.cache.as_deref())?);
        o.mirrors = self.mirrors.clone();
        o.offline = self.offline;
        o.jobs = self.jobs.max(1);
        o.max_download_size = self.max_download_size;
        o.progress = output::level().progress();
        if let (false, Some(c)) = (
            hint.is_empty(),
            self.cache
                .as_ref()
                .filter(|c| given_as_flag(c, "IMAGEGEN_CACHE")),
        ) {
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
    #[arg(long, env = "IMAGEGEN_ARCH", value_parser = arch::ArchParser, help = arch::HELP)]
    arch: Option<Arch>,
    /// Profile file [default: the built-in kthw-1.31]
    #[arg(long, env = "IMAGEGEN_PROFILE", value_name = "FILE")]
    profile: Option<Utf8PathBuf>,
}

impl Common {
    /// `--arch`, else this machine's.
    fn arch(&self) -> anyhow::Result<Arch> {
        arch::or_host(self.arch)
    }
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    common: Common,
    /// Output directory; seeds go to OUT/ARCH/VM/
    #[arg(long, env = "IMAGEGEN_OUT", default_value = "out", value_name = "DIR")]
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
    /// Print JSON (stable field names; `--json-schema` prints its schema)
    #[arg(long, conflicts_with = "json_schema")]
    json: bool,
    /// Print the JSON schema of `--json`'s output (docs/plan.schema.json) and nothing else
    #[arg(long)]
    json_schema: bool,
}

/// A size in bytes, with an optional unit (`K`, `M`, `G` and `KiB`.. are powers of 1024).
fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map_err(|e| format!("{e} (expected e.g. 4GiB, 500M or 1048576)"))
}

/// Parses the arguments, runs the command, prints errors with their whole context chain.
/// Exit status: 0 success, 1 an error of input or at run time, 2 a usage error (clap's),
/// 130/143 interrupted (`interrupt`).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    output::set_level(cli.verbosity.level());
    match run(cli.command) {
        Ok(code) => code,
        // The reader of our output went away (`imagegen plan | head -1`): it has what it wanted.
        Err(e) if output::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => match e.downcast::<clap::Error>() {
            // A usage error found after parsing (seed-iso's two forms): shown and ended as clap's.
            Ok(usage) => usage.exit(),
            Err(e) => {
                output::error(&e);
                ExitCode::from(1)
            }
        },
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Build(a) => commands::build(a),
        Command::Plan(a) => commands::plan(&a),
        Command::Fetch(a) => commands::fetch(&a),
        Command::Cache(CacheCommand::Import {
            files,
            profile,
            cache,
        }) => commands::cache_import(&files, profile.as_deref(), cache.dir.as_deref()),
        Command::Cache(CacheCommand::Dir { cache }) => commands::cache_dir(cache.dir.as_deref()),
        Command::Cache(CacheCommand::List { profile, cache }) => {
            cache::list(profile.as_deref(), cache.dir.as_deref())
        }
        Command::Cache(CacheCommand::Prune {
            profiles,
            all,
            dry_run,
            cache,
        }) => cache::prune(&profiles, all, dry_run, cache.dir.as_deref()),
        Command::SeedIso(a) => seed_iso::run(a),
        Command::Profile(ProfileCommand::Check { files }) => commands::profile_check(&files),
        Command::Profile(ProfileCommand::Show) => commands::profile_show(),
        Command::Pki(a) => match &a.command {
            Some(PkiCommand::Check(c)) => commands::pki_check(c),
            None => commands::pki(&a),
        },
        Command::Pin(a) => commands::pin(&a),
        Command::HostSetup(a) => commands::host_setup(&a),
        Command::Launch(a) => commands::launch(a),
        Command::Completions { shell } => manuals::completions(shell),
        Command::Man { dir } => manuals::man(dir.as_deref()),
    }
}

/// The whole command-line definition (for completions and man pages).
fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}
