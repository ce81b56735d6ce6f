//! The `resolve` stage: turns pinned [`Artifact`]s into verified files in a content-addressed
//! cache, fetching what is missing from mirrors or upstream. This file is the stage's whole public
//! face ([`resolve`], [`import_files`], [`cache_dir`], [`cache_path`], [`mirror_url`], the
//! `--mirror`/`--node-mirror` checks and their types); the concerns behind it have a file each:
//!
//! - `cache`: the cache entries and their "last verified" stamps;
//! - `import`: hand-downloaded files into the cache (`imagegen cache import`);
//! - `contents`: what the cache holds, and pruning it (`imagegen cache list|prune`);
//! - `mirror`: what a mirror may be, where an artifact lives on one, and which sources are tried
//!   in which order;
//! - `pool`: the `jobs` connections, shared by all downloads;
//! - `fetch`: one artifact, from the cache or from the first source that delivers it;
//! - `http`: one download's main stream, its retries and the triage of HTTP answers;
//! - `split`: one large download over several ranged connections (work stealing);
//! - `progress`: bars and lines on stderr;
//! - `report`: the error that names every artifact that could not be resolved, and what to do;
//! - `text`: small text files (published checksums, release feeds) from the same sources, in
//!   memory.
//!
//! Cache layout (`cache_dir` is [`cache_dir`]'s answer, i.e. `--cache DIR` or the default):
//! - `<cache>/<algo>/<hex>`: a file whose digest was verified to be `<algo>:<hex>`;
//! - `<cache>/<algo>/.<hex>.stamp`: JSON `{"size":..,"mtime_secs":..,"mtime_nanos":..}` of that
//!   file when it was last verified (the stamp format of `fsutil`). An entry whose size or mtime
//!   no longer match, or that has no stamp, is re-hashed before use, and deleted (then fetched
//!   again) when the hash is wrong. (`<hex>.verified` files of older versions are ignored.)
//! - `<cache>/tmp/`: work in progress. `<algo>-<hex>.lock`: the lock of whoever is looking up or
//!   fetching that artifact (one process at a time, deleted after); `<algo>-<hex>.part`: its
//!   HTTP download so far, which a later run continues with `Range` (and `.part.prefix`: how much
//!   of it is complete while other connections write further on); `.<name>.<pid>.*.tmp`: other
//!   temp files, swept once their process is gone. Nothing reaches `<algo>/` before its digest
//!   matched.
//!
//! No download may be longer than the artifact's pinned size, or `max_download_size` when the
//! profile pins none.
//!
//! Sources for an artifact, in order: each mirror (`mirror_url(mirror, artifact.url)`), then the
//! upstream URL. With `offline`, only the mirrors, which must then be `file://` ones (an
//! `http(s)://` mirror offline is an error, [`check_offline`]).
//!
//! At most `jobs` connections are open at once. Each artifact starts as one stream, hashed as it
//! arrives. Once no artifact is left to start, a free connection takes over the second half of the
//! largest range still left of a running download of at least 16 MiB whose source (the same URL)
//! said `Accept-Ranges: bytes` (see `split`); pieces are written at their offsets into the same
//! temp file, and the part that did not come through the first stream is hashed from the file
//! before the digest is checked. A server that does not answer the first such request with the
//! range asked for gets one stream for that file, as before.

mod cache;
mod contents;
mod fetch;
mod http;
mod import;
mod mirror;
mod pool;
mod progress;
mod report;
mod split;
mod text;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::digest::Digest;
use crate::plan::Artifact;

pub use contents::{
    cache_contents, prune_cache, CacheContents, CacheEntry, PartialDownload, Pruned, StaleFile,
};
pub use import::import_files;
pub use mirror::{check_offline, mirror_url, parse_mirror, parse_node_mirror};
pub use text::{fetch_text, TEXT_LIMIT};

use cache::Cache;
use fetch::Outcome;
use progress::Reporter;

/// [`ResolveOptions::max_download_size`] unless `--max-download-size` says otherwise: well
/// above any release file a node needs (the Ubuntu cloud image is ~650 MB, the Kubernetes
/// server tarball ~400 MB), well below filling a disk.
pub const DEFAULT_MAX_DOWNLOAD_SIZE: u64 = 4 << 30;

/// How progress is shown on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Progress {
    /// Bars when stderr is a terminal, else [`Progress::Plain`].
    #[default]
    Auto,
    /// One line per finished download (and per retry/discarded cache entry).
    Plain,
    /// Nothing.
    Quiet,
}

/// Knobs for [`resolve`]. Build with [`ResolveOptions::new`] and override fields.
#[derive(Clone, Debug)]
pub struct ResolveOptions {
    pub cache_dir: PathBuf,
    /// Base URLs (`http://`, `https://` or `file://`) laid out as `<mirror>/<upstream host>/<upstream path>`,
    /// tried in order before the upstream URL.
    pub mirrors: Vec<String>,
    /// Never use the network; `file://` mirrors are still read (an `http(s)://` one is an error).
    pub offline: bool,
    /// Connections at once (0 is taken as 1), shared by all downloads: a large file may use
    /// several of them near the end of a run.
    pub jobs: usize,
    pub progress: Progress,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers or for any single read of the body.
    pub read_timeout: Duration,
    /// Extra attempts per URL after a timeout, a cut connection or a 5xx (a failed DNS lookup,
    /// a refused connection, TLS and other 4xx get none: another try would fail the same way).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one (capped at 30 s).
    pub retry_backoff: Duration,
    /// Most bytes one download may have when the profile pins no size for it (a body that
    /// never ends stops here).
    pub max_download_size: u64,
    /// Arguments of `imagegen fetch` that would fill the cache for this run (e.g.
    /// `--arch arm64 --profile p.yaml`), shown when artifacts could not be had; empty when no
    /// `imagegen fetch` would.
    pub fetch_hint: String,
    /// When artifacts could not be had, also suggest `--payload fetch` (a build's nodes can
    /// download for themselves).
    pub suggest_payload_fetch: bool,
}

impl ResolveOptions {
    pub fn new(cache_dir: PathBuf) -> Self {
        ResolveOptions {
            cache_dir,
            mirrors: Vec::new(),
            offline: false,
            jobs: 4,
            progress: Progress::Auto,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retries: 4,
            retry_backoff: Duration::from_millis(500),
            max_download_size: DEFAULT_MAX_DOWNLOAD_SIZE,
            fetch_hint: String::new(),
            suggest_payload_fetch: false,
        }
    }
}

/// Where a resolved file came from in this run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Already in the cache (verified).
    Cache,
    /// Fetched from a mirror (`url` is the mirror URL, possibly `file://`).
    Mirror { url: String },
    /// Fetched from the artifact's upstream URL.
    Upstream { url: String },
}

/// One input artifact and its verified file in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub artifact: Artifact,
    pub path: PathBuf,
    pub origin: Origin,
}

impl Resolved {
    /// Where the file came from in this run, one line (what `-v` shows).
    pub fn source_line(&self) -> String {
        let a = &self.artifact;
        let from = match &self.origin {
            Origin::Cache => "the cache".to_string(),
            Origin::Mirror { url } => format!("mirror {url}"),
            Origin::Upstream { url } => url.clone(),
        };
        format!(
            "{} {}: from {from} -> {}",
            a.component,
            a.version,
            self.path.display()
        )
    }
}

/// Makes every artifact available in the cache, downloading what is missing (over at most
/// `opts.jobs` connections at once; artifacts sharing a digest are fetched once). Returns one entry per input, in input
/// order. On failure the error lists every artifact that could not be resolved.
pub fn resolve(artifacts: &[Artifact], opts: &ResolveOptions) -> Result<Vec<Resolved>> {
    check_offline(&opts.mirrors, opts.offline)?;
    let cache = Cache::open(&opts.cache_dir)?;
    let mut unique: Vec<&Artifact> = Vec::new();
    let mut slot_of: HashMap<&Digest, usize> = HashMap::new();
    let slots: Vec<usize> = artifacts
        .iter()
        .map(|a| {
            *slot_of.entry(&a.digest).or_insert_with(|| {
                unique.push(a);
                unique.len() - 1
            })
        })
        .collect();

    let reporter = Reporter::new(opts.progress, unique.len());
    let outcomes = pool::run(&cache, opts, &reporter, &unique);
    reporter.finish(&outcomes);
    report::check(&unique, &outcomes, opts)?;
    Ok(artifacts
        .iter()
        .zip(slots)
        .map(|(art, slot)| match &outcomes[slot] {
            Outcome::Ready { path, origin } => Resolved {
                artifact: art.clone(),
                path: path.clone(),
                origin: origin.clone(),
            },
            _ => unreachable!("report::check fails on anything not ready"),
        })
        .collect())
}

/// Where the cache in `cache_dir` keeps (or will keep) the verified file pinned by `digest`:
/// `<cache>/<algo>/<hex>`. Nothing is checked or fetched.
pub fn cache_path(cache_dir: &std::path::Path, digest: &Digest) -> PathBuf {
    cache::entry_path(cache_dir, digest)
}

/// The cache directory of a run: `explicit` (`--cache DIR`) when given, else
/// [`default_cache_dir`]. The one place the CLI asks.
pub fn cache_dir(explicit: Option<impl Into<PathBuf>>) -> Result<PathBuf> {
    match explicit {
        Some(dir) => Ok(dir.into()),
        None => default_cache_dir(),
    }
}

/// `$IMAGEGEN_CACHE`, else `$XDG_CACHE_HOME/imagegen`, else `~/.cache/imagegen` (Linux) or
/// `~/Library/Caches/imagegen` (macOS).
fn default_cache_dir() -> Result<PathBuf> {
    cache_dir_from(
        std::env::var_os("IMAGEGEN_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
        cfg!(target_os = "macos"),
    )
}

fn cache_dir_from(
    imagegen_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
    macos: bool,
) -> Result<PathBuf> {
    if let Some(dir) = imagegen_cache.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    // The XDG spec says relative values are to be ignored.
    if let Some(dir) = xdg_cache_home
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
    {
        return Ok(dir.join("imagegen"));
    }
    let home = home
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("cannot pick a cache directory: none of IMAGEGEN_CACHE, XDG_CACHE_HOME, HOME is set (use --cache DIR)")?;
    Ok(if macos {
        home.join("Library/Caches/imagegen")
    } else {
        home.join(".cache/imagegen")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_cache_dir_precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            cache_dir_from(s("/c"), s("/x"), s("/h"), false).unwrap(),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_dir_from(s(""), s("/x"), s("/h"), false).unwrap(),
            PathBuf::from("/x/imagegen")
        );
        assert_eq!(
            cache_dir_from(None, s("relative"), s("/h"), false).unwrap(),
            PathBuf::from("/h/.cache/imagegen")
        );
        assert_eq!(
            cache_dir_from(None, None, s("/Users/me"), true).unwrap(),
            PathBuf::from("/Users/me/Library/Caches/imagegen")
        );
        let e = cache_dir_from(None, None, None, false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--cache DIR"), "{e}");
    }

    #[test]
    fn an_explicit_cache_dir_wins() {
        assert_eq!(cache_dir(Some("/given")).unwrap(), PathBuf::from("/given"));
    }
}
