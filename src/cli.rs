//! Command-line parsing and dispatch. Everything here is argument handling and printing; the
//! work happens in the stage modules.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::build::{self, BuildOptions};
use crate::payload::PayloadKind;
use crate::plan;
use crate::profile::{self, Arch};

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
    /// Write every VM's seed (user-data, meta-data, network-config) under OUT/ARCH/
    #[command(
        after_help = "Example:\n  imagegen build --arch arm64 --ssh-key ~/.ssh/id_ed25519.pub\n  imagegen build --arch amd64 --profile profiles/my-cluster.yaml --out /tmp/seeds"
    )]
    Build(BuildArgs),
    /// Print what a build would do, without writing anything
    #[command(
        after_help = "Example:\n  imagegen plan --arch arm64\n  imagegen plan --arch amd64 --json | jq '.vms[].pod_cidr'"
    )]
    Plan(PlanArgs),
    /// Work with profiles
    #[command(subcommand)]
    Profile(ProfileCommand),
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
    /// The node downloads each pinned artifact at first boot and checks its digest
    Fetch,
}

impl From<PayloadArg> for PayloadKind {
    fn from(p: PayloadArg) -> Self {
        match p {
            PayloadArg::Fetch => PayloadKind::Fetch,
        }
    }
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
    #[arg(long, value_enum, default_value = "fetch")]
    payload: PayloadArg,
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
            let opts = BuildOptions {
                profile: a.common.profile,
                arch: a.common.arch.into(),
                out: a.out.clone(),
                pki: a.pki,
                templates: a.templates,
                ssh_keys,
                payload: a.payload.into(),
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
