//! What a cache holds (`imagegen cache list`) and taking out what is no longer wanted
//! (`imagegen cache prune`): entries, the partial downloads runs left to continue, and files of
//! older formats. Nothing is removed that a running imagegen works on: an entry or partial
//! download goes only while this process holds its per-artifact lock (`cache`), which every
//! run holds while it looks up, fetches or stores that artifact.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use super::cache::Cache;
use crate::digest::{Algo, Digest};
use crate::fsutil;

/// A verified file of the cache (`<cache>/<algo>/<hex>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    pub digest: Digest,
    pub path: PathBuf,
    pub size: u64,
    /// A running imagegen holds its artifact (looking it up, checking or storing it).
    pub in_use: bool,
}

/// A download that stopped, kept for the next run to continue (`tmp/<algo>-<hex>.part`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartialDownload {
    pub digest: Digest,
    pub path: PathBuf,
    pub size: u64,
    /// A running imagegen holds its artifact (it is being downloaded right now).
    pub in_use: bool,
}

/// A file nothing reads: of an older cache format, or a stamp without its entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleFile {
    pub path: PathBuf,
    pub size: u64,
}

/// Everything the cache holds, each list sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheContents {
    pub entries: Vec<CacheEntry>,
    pub partials: Vec<PartialDownload>,
    pub stale: Vec<StaleFile>,
}

/// Lists the cache in `dir` without changing it (a cache that does not exist is empty).
pub fn cache_contents(dir: &Path) -> Result<CacheContents> {
    let mut c = CacheContents::default();
    for algo in [Algo::Sha256, Algo::Sha512] {
        let sub = dir.join(algo.name());
        for (name, path, size) in files_in(&sub)? {
            if let Some(d) = digest_named(algo, &name) {
                let in_use = held(dir, &d)?;
                c.entries.push(CacheEntry {
                    digest: d,
                    path,
                    size,
                    in_use,
                });
            } else if is_stale(algo, &name, &sub) {
                c.stale.push(StaleFile { path, size });
            }
        }
    }
    for (name, path, size) in files_in(&dir.join("tmp"))? {
        let Some(d) = super::cache::partial_digest(&name) else {
            continue;
        };
        let in_use = held(dir, &d)?;
        c.partials.push(PartialDownload {
            digest: d,
            path,
            size,
            in_use,
        });
    }
    Ok(c)
}

/// What [`prune_cache`] removed (or, with `dry_run`, would remove) and what it left because a
/// running imagegen holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub entries: Vec<CacheEntry>,
    pub partials: Vec<PartialDownload>,
    pub stale: Vec<StaleFile>,
    /// Entries and partial downloads that would have gone but are in use.
    pub in_use: Vec<PathBuf>,
}

/// Removes from the cache in `dir` every entry whose digest is not in `keep` (`None`: every
/// entry), every partial download no running imagegen holds (its run is gone; a later run
/// starts that download afresh), and every stale file. With `dry_run`, removes nothing and
/// says what it would remove.
pub fn prune_cache(dir: &Path, keep: Option<&BTreeSet<Digest>>, dry_run: bool) -> Result<Pruned> {
    let contents = cache_contents(dir)?;
    let mut pruned = Pruned::default();
    let wanted = |d: &Digest| keep.is_some_and(|k| k.contains(d));
    let cache = if dry_run || !dir.exists() {
        None
    } else {
        Some(Cache::open(dir)?)
    };
    for e in contents.entries.into_iter().filter(|e| !wanted(&e.digest)) {
        match !e.in_use && remove_held(dir, cache.as_ref(), &e.digest, &e.path)? {
            true => pruned.entries.push(e),
            false => pruned.in_use.push(e.path),
        }
    }
    for p in contents.partials {
        match !p.in_use && remove_held(dir, cache.as_ref(), &p.digest, &p.path)? {
            true => pruned.partials.push(p),
            false => pruned.in_use.push(p.path),
        }
    }
    for s in contents.stale {
        if !dry_run {
            fsutil::remove_if_exists(&s.path)?;
        }
        pruned.stale.push(s);
    }
    Ok(pruned)
}

/// Removes `path` (an entry of `d` with its stamp, or the partial download of `d` with its
/// sidecar) under the lock of `d`; `false` when a running imagegen holds that lock. Without a
/// cache (a dry run), only says whether it could.
fn remove_held(dir: &Path, cache: Option<&Cache>, d: &Digest, path: &Path) -> Result<bool> {
    let Some(cache) = cache else {
        return Ok(!held(dir, d)?);
    };
    let Some(_lock) = cache.try_lock(d)? else {
        return Ok(false);
    };
    fsutil::remove_if_exists(path)?;
    if path.extension().is_some_and(|e| e == "part") {
        let mut prefix = path.as_os_str().to_owned();
        prefix.push(".prefix");
        fsutil::remove_if_exists(Path::new(&prefix))?;
    } else {
        fsutil::remove_if_exists(&fsutil::stamp_path(path))?;
    }
    Ok(true)
}

/// Whether a running imagegen holds the lock of `d` in the cache in `dir`.
fn held(dir: &Path, d: &Digest) -> Result<bool> {
    let lock = super::cache::lock_path(dir, d);
    if !lock.exists() {
        return Ok(false);
    }
    match fsutil::Lock::try_acquire_transient(&lock) {
        Ok(l) => Ok(l.is_none()),
        // A cache we cannot write to has no runs fetching into it.
        Err(e) if is_read_only(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_read_only(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<io::Error>())
        .any(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
            )
        })
}

/// `<algo>:<name>` when `name` is the hex of a digest of `algo`.
fn digest_named(algo: Algo, name: &str) -> Option<Digest> {
    if name.len() != algo.hex_len() || name.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    Digest::parse(&format!("{}:{name}", algo.name())).ok()
}

/// Whether `name` in `<cache>/<algo>/` is a file no version reads any more: a `<hex>.verified`
/// of older versions, or the stamp of an entry that is gone. Temp files of running processes
/// and anything else are left alone.
fn is_stale(algo: Algo, name: &str, sub: &Path) -> bool {
    if let Some(hex) = name.strip_suffix(".verified") {
        return digest_named(algo, hex).is_some();
    }
    if let Some(hex) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".stamp"))
    {
        return digest_named(algo, hex).is_some() && !sub.join(hex).exists();
    }
    false
}

/// The regular files directly in `dir` (none when it does not exist): name, path and size,
/// sorted by name.
fn files_in(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("listing {}", dir.display()))?;
        let meta = fs_err::symlink_metadata(e.path())?;
        if !meta.is_file() {
            continue;
        }
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            e.path(),
            meta.len(),
        ));
    }
    out.sort();
    Ok(out)
}
