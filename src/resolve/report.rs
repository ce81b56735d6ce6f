//! What the user reads when artifacts could not be resolved: one error naming every one of them
//! (not just the first), what was tried for each, and for an offline run the commands that would
//! fill the cache.

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Result};

use super::fetch::Outcome;
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
            Outcome::Missing { tried } => missing.push((*art, tried)),
            Outcome::Failed(e) => failed.push((*art, e)),
        }
    }
    if !missing.is_empty() || !failed.is_empty() {
        bail!(failure_report(&missing, &failed, unique.len(), opts));
    }
    Ok(())
}

/// The error of an artifact no source delivered: what each source said, in order.
pub(super) fn not_fetched(art: &Artifact, tried: &[String]) -> anyhow::Error {
    let mut msg = format!("{} ({}):", label(art), art.digest);
    for t in tried {
        let _ = write!(msg, "\n    {t}");
    }
    anyhow!(msg)
}

/// `component version file_name`, without the parts that are empty or repeat the file name.
fn label(art: &Artifact) -> String {
    let mut parts = vec![art.component.as_str()];
    if !art.version.is_empty() {
        parts.push(&art.version);
    }
    if art.file_name != art.component {
        parts.push(&art.file_name);
    }
    parts.join(" ")
}

fn failure_report(
    missing: &[(&Artifact, &Vec<String>)],
    failed: &[(&Artifact, &anyhow::Error)],
    total: usize,
    opts: &ResolveOptions,
) -> String {
    let mut msg = String::new();
    if !failed.is_empty() {
        let _ = write!(
            msg,
            "could not fetch {} of {} artifact(s):",
            failed.len(),
            total
        );
        for (_, e) in failed {
            let _ = write!(msg, "\n  - {e:#}");
        }
    }
    if !missing.is_empty() {
        if !msg.is_empty() {
            msg.push('\n');
        }
        let _ = write!(
            msg,
            "offline: {} of {} artifact(s) are not in the cache {}:",
            missing.len(),
            total,
            opts.cache_dir.display()
        );
        for (art, tried) in missing {
            let _ = write!(msg, "\n  - {} {} ({})", label(art), art.digest, art.url);
            for t in *tried {
                let _ = write!(msg, "\n      {t}");
            }
        }
        let hint = opts.fetch_hint.trim();
        let fetch = if hint.is_empty() {
            "imagegen fetch".to_string()
        } else {
            format!("imagegen fetch {hint}")
        };
        let _ = write!(
            msg,
            "\nfill the cache on a machine with network access:\n    {fetch}\nor add files downloaded by hand:\n    imagegen cache import FILE..."
        );
    }
    msg
}
