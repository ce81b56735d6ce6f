//! What the user reads when artifacts could not be resolved: one error naming every one of them
//! (not just the first), one line each (`component version: why for URL`, every source tried in
//! order), and then what to do about it: a mirror in the upstream layout (with the path this run
//! would read), the cache filled on a machine with network access, files imported by hand and,
//! for a build, nodes that download for themselves.

use std::fmt::Write as _;

use anyhow::{bail, Result};

use super::fetch::{Outcome, Tried};
use super::ResolveOptions;
use crate::plan::Artifact;

/// Fails with the full report unless every outcome is `Ready` (`unique[i]` gave `outcomes[i]`).
pub(super) fn check(
    unique: &[&Artifact],
    outcomes: &[Outcome],
    opts: &ResolveOptions,
) -> Result<()> {
    let mut missing = Vec::new();
    let mut failed = Vec::new();
    for (art, outcome) in unique.iter().zip(outcomes) {
        match outcome {
            Outcome::Ready { .. } => {}
            Outcome::Missing { tried } => missing.push(line(art, tried)),
            Outcome::NotFetched { tried } => failed.push(line(art, tried)),
            Outcome::Failed(e) => failed.push(format!("{}: {e:#}", label(art))),
        }
    }
    if missing.is_empty() && failed.is_empty() {
        return Ok(());
    }
    let total = unique.len();
    let mut msg = String::new();
    if !failed.is_empty() {
        let _ = write!(msg, "could not fetch {} of {}:", failed.len(), count(total));
        for l in &failed {
            let _ = write!(msg, "\n  - {l}");
        }
    }
    if !missing.is_empty() {
        if !msg.is_empty() {
            msg.push('\n');
        }
        let _ = write!(
            msg,
            "offline: {} of {} not in the cache {}:",
            missing.len(),
            count(total),
            opts.cache_dir.display()
        );
        for l in &missing {
            let _ = write!(msg, "\n  - {l}");
        }
    }
    // The first artifact that no source delivered shows where a mirror would have to hold it.
    let example = unique.iter().zip(outcomes).find_map(|(art, o)| match o {
        Outcome::Missing { .. } | Outcome::NotFetched { .. } => Some(*art),
        _ => None,
    });
    if let Some(art) = example {
        msg.push_str(&next_steps(art, opts));
    }
    bail!(msg)
}

/// `1 artifact`, `N artifacts`.
fn count(n: usize) -> String {
    format!("{n} artifact{}", if n == 1 { "" } else { "s" })
}

/// `component version`: what the profile calls the artifact.
fn label(art: &Artifact) -> String {
    if art.version.is_empty() {
        art.component.clone()
    } else {
        format!("{} {}", art.component, art.version)
    }
}

/// One artifact's line: each source tried, in order, with its reason; just the upstream URL
/// when none was (offline, no file mirror).
fn line(art: &Artifact, tried: &[Tried]) -> String {
    if tried.is_empty() {
        return format!("{}: {}", label(art), art.url);
    }
    let sources: Vec<String> = tried
        .iter()
        .map(|t| format!("{} for {}", t.reason, t.url))
        .collect();
    format!("{}: {}", label(art), sources.join("; "))
}

/// What to do when artifacts could not be had, with `art` as the example of the mirror layout.
fn next_steps(art: &Artifact, opts: &ResolveOptions) -> String {
    let layout = art
        .url
        .split_once("://")
        .map_or(art.url.as_str(), |(_, rest)| rest);
    let mut s = String::from("\nwhat you can do:");
    if opts.offline {
        let _ = write!(
            s,
            "\n  - use a local mirror in the upstream layout: --mirror DIR (or file:///DIR),\n    with this file at DIR/{layout}"
        );
    } else {
        let _ = write!(
            s,
            "\n  - use a mirror in the upstream layout: --mirror URL (http://, https://, file:// or a directory),\n    with this file at URL/{layout}"
        );
    }
    let hint = opts.fetch_hint.trim();
    if !hint.is_empty() {
        let _ = write!(
            s,
            "\n  - fill the cache on a machine with network access: imagegen fetch {hint}\n    there, copy its cache (`imagegen cache dir`) to {} here, and run this again{}",
            opts.cache_dir.display(),
            if opts.offline { "" } else { " with --offline" }
        );
    }
    s.push_str("\n  - add files downloaded by hand: imagegen cache import FILE...");
    if opts.suggest_payload_fetch {
        s.push_str(
            "\n  - or let each node download its binaries at first boot (it needs network access then): --payload fetch",
        );
    }
    s
}
