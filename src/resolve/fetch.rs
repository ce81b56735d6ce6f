//! One artifact, start to end, under the cache's lock for it: from the cache if a verified entry
//! is there, else from its sources in order (mirrors, then upstream) until one delivers a file
//! with the pinned digest. A `file://` source is copied; an HTTP one is downloaded (`http`),
//! continuing what an earlier run left. Whatever fails, nothing unverified becomes an entry.
//!
//! No source may send more than the artifact's [`Limit`]: its pinned size when the profile has
//! one, else `--max-download-size`. A body that never ends stops there.

use std::io::{self, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use reqwest::blocking::Client;
use reqwest::Url;

use super::cache::Cache;
use super::mirror::{self, Source};
use super::pool::{lock, Pool};
use super::progress::{Bar, Metered, Reporter};
use super::{http, Origin, ResolveOptions};
use crate::digest::{Digest, HashingWriter};
use crate::fsutil;
use crate::plan::Artifact;

/// What became of one artifact.
pub(super) enum Outcome {
    Ready {
        path: PathBuf,
        origin: Origin,
    },
    /// Offline and in none of the `file://` mirrors; `tried` says what was looked at.
    Missing {
        tried: Vec<Tried>,
    },
    /// Every source failed, each for its reason.
    NotFetched {
        tried: Vec<Tried>,
    },
    /// Something other than a source failed (the cache, a thread).
    Failed(anyhow::Error),
}

/// One source that did not deliver an artifact, and why.
pub(super) struct Tried {
    pub(super) url: String,
    /// Why, in a few words that do not repeat the URL.
    pub(super) reason: String,
}

/// Why one source did not deliver the artifact. Neither names the source: the report does.
pub(super) enum SourceError {
    NotFound(String),
    Other(anyhow::Error),
}

/// What every worker shares during a run.
pub(super) struct Ctx<'a> {
    pub(super) cache: &'a Cache,
    pub(super) opts: &'a ResolveOptions,
    pub(super) reporter: &'a Reporter,
    pub(super) pool: &'a Pool,
    /// Built on first use, so runs served from the cache never start reqwest's runtime.
    client: Mutex<Option<Client>>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        cache: &'a Cache,
        opts: &'a ResolveOptions,
        reporter: &'a Reporter,
        pool: &'a Pool,
    ) -> Ctx<'a> {
        Ctx {
            cache,
            opts,
            reporter,
            pool,
            client: Mutex::new(None),
        }
    }

    /// The run's HTTP client (one connection pool for all workers).
    pub(super) fn client(&self) -> Result<Client> {
        let mut c = lock(&self.client);
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let client = http::client(self.opts)?;
        *c = Some(client.clone());
        Ok(client)
    }
}

pub(super) fn resolve_one(ctx: &Ctx, art: &Artifact) -> Outcome {
    // Held until the artifact is in the cache: another process needing it waits, then finds it.
    // A cache we may not write (a read-only copy) needs no lock: nobody fetches into it.
    let _lock = match ctx.cache.lock(&art.digest, |line| {
        ctx.reporter
            .waiting(&format!("{line} (fetching {})", art.file_name))
    }) {
        Ok(l) => Some(l),
        Err(e) if read_only(&e) => None,
        Err(e) => return Outcome::Failed(e),
    };
    let discarded = |p: &Path| {
        ctx.reporter.note(&format!(
            "cache entry {} does not match {}; discarded, fetching again",
            p.display(),
            art.digest
        ))
    };
    match ctx.cache.lookup(&art.digest, discarded) {
        Ok(Some(path)) => {
            ctx.reporter.ready();
            return Outcome::Ready {
                path,
                origin: Origin::Cache,
            };
        }
        Ok(None) => {}
        Err(e) => return Outcome::Failed(e),
    }
    let sources = match mirror::sources(art, ctx.opts) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    let mut tried = Vec::new();
    let mut all_not_found = true;
    for Source { url, mirror } in sources {
        match fetch_from(ctx, art, &url) {
            Ok(path) => {
                let origin = if mirror {
                    Origin::Mirror { url }
                } else {
                    Origin::Upstream { url }
                };
                return Outcome::Ready { path, origin };
            }
            Err(SourceError::NotFound(reason)) => tried.push(Tried { url, reason }),
            Err(SourceError::Other(e)) => {
                all_not_found = false;
                tried.push(Tried {
                    url,
                    reason: format!("{e:#}"),
                });
            }
        }
    }
    if ctx.opts.offline && all_not_found {
        return Outcome::Missing { tried };
    }
    Outcome::NotFetched { tried }
}

/// Whether `e` says a directory may not be written.
fn read_only(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>().is_some_and(|e| {
        matches!(
            e.kind(),
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
        )
    })
}

/// The most bytes one source may send for an artifact.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limit {
    pub(super) bytes: u64,
    /// `bytes` is the pinned size (the file must be exactly this long), not the general cap.
    pub(super) exact: bool,
}

impl Limit {
    pub(super) fn of(art: &Artifact, opts: &ResolveOptions) -> Limit {
        match art.size {
            Some(bytes) => Limit { bytes, exact: true },
            None => Limit {
                bytes: opts.max_download_size,
                exact: false,
            },
        }
    }

    /// Checks the length a source announced (`Content-Length`, a file's size). The error does
    /// not name the source: the caller's context does.
    pub(super) fn check_len(&self, len: u64) -> Result<()> {
        if self.exact && len != self.bytes {
            bail!(
                "the file has {len} bytes, but the profile pins {} (`sizes`); the download was \
                 discarded",
                self.bytes
            );
        }
        if len > self.bytes {
            bail!(
                "the file has {len} bytes, more than --max-download-size ({} bytes); pin its size \
                 in the profile (`sizes`) or raise the limit",
                self.bytes
            );
        }
        Ok(())
    }

    /// The error when a source sent more than the limit (naming no source, as above).
    pub(super) fn exceeded(&self) -> anyhow::Error {
        if self.exact {
            anyhow!(
                "sent more than the {} bytes the profile pins (`sizes`); the download was discarded",
                self.bytes
            )
        } else {
            anyhow!(
                "sent more than --max-download-size ({} bytes); the download was discarded (pin \
                 the file's size in the profile's `sizes`, or raise the limit)",
                self.bytes
            )
        }
    }
}

/// Fetches `art` from `url` into the cache, checking its digest on the way.
fn fetch_from(ctx: &Ctx, art: &Artifact, url: &str) -> Result<PathBuf, SourceError> {
    let bar = ctx.reporter.start(&art.file_name);
    let started = Instant::now();
    let path = if url.starts_with("file:") {
        let mut tmp = ctx.cache.temp_file().map_err(SourceError::Other)?;
        let digest = copy_file_url(ctx, art, url, tmp.as_file_mut(), &bar)?;
        // `tmp` is deleted on drop, so every early return leaves nothing behind.
        check_digest(art, &digest)?;
        ctx.cache.store(tmp, &art.digest)
    } else {
        let mut part = ctx.cache.part(&art.digest).map_err(SourceError::Other)?;
        let resumed = part.resume_len() > 0;
        let mut digest = http::download(ctx, url, art, &mut part, &bar)?;
        if digest != art.digest && resumed {
            // What an earlier run left may not be what this source sends: once more, whole.
            ctx.reporter.note(&format!(
                "{url}: the download continued from an earlier run does not match {}; \
                 fetching it again from the start",
                art.digest
            ));
            part.reset().map_err(SourceError::Other)?;
            bar.rewind(bar.position());
            digest = http::download(ctx, url, art, &mut part, &bar)?;
        }
        if digest != art.digest {
            // Wrong bytes are not worth continuing: the partial download goes.
            part.reset().map_err(SourceError::Other)?;
        }
        check_digest(art, &digest)?;
        ctx.cache.store_part(part, &art.digest)
    }
    .map_err(SourceError::Other)?;
    let size = bar.position();
    bar.done();
    ctx.reporter
        .downloaded(&art.file_name, size, url, started.elapsed());
    Ok(path)
}

fn check_digest(art: &Artifact, got: &Digest) -> Result<(), SourceError> {
    if *got != art.digest {
        return Err(SourceError::Other(anyhow!(
            "digest mismatch: expected {}, got {got}; the download was discarded",
            art.digest
        )));
    }
    Ok(())
}

/// Copies a `file://` source into `out` (no more than the artifact's [`Limit`]); returns its
/// digest with the algorithm of the pin.
fn copy_file_url(
    ctx: &Ctx,
    art: &Artifact,
    url: &str,
    out: &mut std::fs::File,
    bar: &Bar,
) -> Result<Digest, SourceError> {
    let limit = Limit::of(art, ctx.opts);
    let path = Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| SourceError::Other(anyhow!("not a usable file:// URL")))?;
    let src = match fsutil::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SourceError::NotFound("not found".to_string()))
        }
        Err(e) => return Err(SourceError::Other(e.into())),
    };
    let len = src
        .metadata()
        .map_err(|e| SourceError::Other(e.into()))?
        .len();
    limit.check_len(len).map_err(SourceError::Other)?;
    bar.set_length(len);
    // `io::copy` reads through a `BufReader`'s own buffer: large reads instead of 8 KiB ones.
    // One byte past the limit is enough to see that a growing file went over it.
    let mut src = BufReader::with_capacity(
        256 * 1024,
        Metered::new(src, bar).take(limit.bytes.saturating_add(1)),
    );
    let mut out = HashingWriter::new(out, art.digest.algo());
    io::copy(&mut src, &mut out)
        .context("copying the file")
        .map_err(SourceError::Other)?;
    let (_, digest, copied) = out.finish();
    if copied > limit.bytes {
        return Err(SourceError::Other(limit.exceeded()));
    }
    Ok(digest)
}
