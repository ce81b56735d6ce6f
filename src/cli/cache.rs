//! `imagegen cache list` and `imagegen cache prune`: the cache's entries named by what a
//! profile pins them as, and the removal of what no given profile needs (the work and its
//! safety, per-artifact locks, are `resolve`'s).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;

use camino::{Utf8Path, Utf8PathBuf};
use indicatif::HumanBytes;

use super::inputs;
use super::output::print;
use crate::digest::Digest;
use crate::profile::{self, Profile};
use crate::resolve;

/// What each digest a profile pins is: `containerd 1.7.20 arm64` (joined when one file is
/// pinned twice), with the rank of its first pin, for listing in the profile's order.
fn pinned_names(profiles: &[Profile]) -> BTreeMap<Digest, (usize, String)> {
    let mut names: BTreeMap<Digest, (usize, String)> = BTreeMap::new();
    let mut rank = 0;
    for p in profiles {
        for c in &p.components {
            for (arch, d) in &c.digests {
                let name = format!("{} {} {arch}", c.key, c.version);
                names
                    .entry(d.clone())
                    .and_modify(|(_, n)| {
                        if !n.split(", ").any(|x| x == name) {
                            n.push_str(", ");
                            n.push_str(&name);
                        }
                    })
                    .or_insert((rank, name));
                rank += 1;
            }
        }
    }
    names
}

/// `3 entries` / `1 entry`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub(super) fn list(
    profile: Option<&Utf8Path>,
    cache: Option<&Utf8Path>,
) -> anyhow::Result<ExitCode> {
    let prof = profile::load(profile)?;
    let names = pinned_names(std::slice::from_ref(&prof));
    let dir = inputs::cache_dir(cache)?;
    let c = resolve::cache_contents(&dir)?;
    let mut text = String::new();
    if c.entries.is_empty() && c.partials.is_empty() && c.stale.is_empty() {
        print(&format!("{}: empty\n", dir.display()))?;
        return Ok(ExitCode::SUCCESS);
    }
    let _ = writeln!(
        text,
        "{} (entries named by profile {})",
        dir.display(),
        prof.name
    );
    let what = |d: &Digest| {
        names.get(d).map_or_else(
            || "(pinned by no component)".to_string(),
            |(_, n)| n.clone(),
        )
    };
    let mut entries = c.entries.clone();
    entries.sort_by_key(|e| {
        (
            names.get(&e.digest).map_or(usize::MAX, |(r, _)| *r),
            e.digest.clone(),
        )
    });
    for e in &entries {
        let _ = writeln!(
            text,
            "  {:>11}  {:<36} {}{}",
            HumanBytes(e.size).to_string(),
            what(&e.digest),
            e.digest,
            if e.in_use { "  (in use)" } else { "" }
        );
    }
    if !c.partials.is_empty() {
        let _ = writeln!(
            text,
            "partial downloads (continued by the next run that needs them):"
        );
        for p in &c.partials {
            let _ = writeln!(
                text,
                "  {:>11}  {:<36} {}{}",
                HumanBytes(p.size).to_string(),
                what(&p.digest),
                p.digest,
                if p.in_use { "  (downloading now)" } else { "" }
            );
        }
    }
    if !c.stale.is_empty() {
        let _ = writeln!(
            text,
            "files nothing reads: older formats, stamps without their entry (`imagegen cache prune` removes them):"
        );
        for s in &c.stale {
            let _ = writeln!(
                text,
                "  {:>11}  {}",
                HumanBytes(s.size).to_string(),
                s.path.display()
            );
        }
    }
    let sum = |sizes: &mut dyn Iterator<Item = u64>| HumanBytes(sizes.sum());
    let _ = writeln!(
        text,
        "total: {}, {}; {}, {}; {}, {}",
        count(c.entries.len(), "entry", "entries"),
        sum(&mut c.entries.iter().map(|e| e.size)),
        count(c.partials.len(), "partial download", "partial downloads"),
        sum(&mut c.partials.iter().map(|p| p.size)),
        count(c.stale.len(), "file nothing reads", "files nothing reads"),
        sum(&mut c.stale.iter().map(|s| s.size)),
    );
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn prune(
    profiles: &[Utf8PathBuf],
    all: bool,
    dry_run: bool,
    cache: Option<&Utf8Path>,
) -> anyhow::Result<ExitCode> {
    let loaded: Vec<Profile> = if profiles.is_empty() {
        vec![profile::load(None)?]
    } else {
        profiles
            .iter()
            .map(|p| profile::load(Some(p)))
            .collect::<anyhow::Result<_>>()?
    };
    let names = pinned_names(&loaded);
    let keep: BTreeSet<Digest> = names.keys().cloned().collect();
    let dir = inputs::cache_dir(cache)?;
    let pruned = resolve::prune_cache(&dir, (!all).then_some(&keep), dry_run)?;

    let verb = if dry_run { "would remove" } else { "removed" };
    let bytes: u64 = pruned.entries.iter().map(|e| e.size).sum::<u64>()
        + pruned.partials.iter().map(|p| p.size).sum::<u64>()
        + pruned.stale.iter().map(|s| s.size).sum::<u64>();
    let mut text = format!(
        "{}: {verb} {}, {}, {} ({})\n",
        dir.display(),
        count(pruned.entries.len(), "entry", "entries"),
        count(
            pruned.partials.len(),
            "partial download",
            "partial downloads"
        ),
        count(
            pruned.stale.len(),
            "file nothing reads",
            "files nothing reads"
        ),
        HumanBytes(bytes)
    );
    for e in &pruned.entries {
        let what = names
            .get(&e.digest)
            .map_or("(pinned by none of the profiles)", |(_, n)| n);
        let _ = writeln!(
            text,
            "  {:>11}  {what:<36} {}",
            HumanBytes(e.size).to_string(),
            e.digest
        );
    }
    for p in &pruned.partials {
        let _ = writeln!(
            text,
            "  {:>11}  {:<36} {}",
            HumanBytes(p.size).to_string(),
            "(partial download)",
            p.digest
        );
    }
    for s in &pruned.stale {
        let _ = writeln!(
            text,
            "  {:>11}  {}",
            HumanBytes(s.size).to_string(),
            s.path.display()
        );
    }
    if !all {
        let names: Vec<&str> = loaded.iter().map(|p| p.name.as_str()).collect();
        let _ = writeln!(
            text,
            "kept what {} pin{}",
            names.join(", "),
            if names.len() == 1 { "s" } else { "" }
        );
    }
    for path in &pruned.in_use {
        let _ = writeln!(
            text,
            "left {}: a running imagegen is using it",
            path.display()
        );
    }
    print(&text)?;
    Ok(ExitCode::SUCCESS)
}
