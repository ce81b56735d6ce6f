//! What the CLI says about itself beside `--help`: shell completion scripts (`clap_complete`)
//! and man pages (`clap_mangen`), both generated from the same clap definitions, so they never
//! fall behind a flag.

use std::process::ExitCode;

use anyhow::Context as _;
use camino::Utf8Path;

use super::command;
use super::output::{print, println};
use crate::fsutil;

/// Prints the completion script of `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "imagegen", &mut script);
    print(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the man page of `imagegen` (roff), or, with `dir`, writes it and one page per command
/// there (`imagegen-build.1`, `imagegen-cache-import.1`, ...) and prints their names.
pub(super) fn man(dir: Option<&Utf8Path>) -> anyhow::Result<ExitCode> {
    let mut cmd = command().disable_help_subcommand(true);
    // Built, the commands carry their full names (`imagegen-cache-import`).
    cmd.build();
    let Some(dir) = dir else {
        print(&page(&cmd)?)?;
        return Ok(ExitCode::SUCCESS);
    };
    fs_err::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_pages(&cmd, dir, &mut written)?;
    println(&format!(
        "wrote {} man pages to {dir}: {}",
        written.len(),
        written.join(", ")
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The page of `cmd`, as roff.
fn page(cmd: &clap::Command) -> anyhow::Result<String> {
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .source(format!("imagegen {}", env!("CARGO_PKG_VERSION")))
        .render(&mut roff)
        .context("rendering the man page")?;
    Ok(String::from_utf8_lossy(&roff).into_owned())
}

/// Writes the page of `cmd` and of each of its commands into `dir`, adding their file names to
/// `written`.
fn write_pages(
    cmd: &clap::Command,
    dir: &Utf8Path,
    written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let name = clap_mangen::Man::new(cmd.clone()).get_filename();
    fsutil::write_atomic(&dir.join(&name), page(cmd)?.as_bytes(), 0o644)?;
    written.push(name);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
