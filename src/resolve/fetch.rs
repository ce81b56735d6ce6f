//! One artifact, start to end: from the cache if a verified entry is there, else from its sources
//! in order (mirrors, then upstream) until one delivers a file with the pinned digest. A `file://`
//! source is copied; an HTTP one is downloaded (`http`). Whatever fails, nothing unverified is
//! left in the cache.

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, Context as _, Result};
use reqwest::blocking::Client;
use reqwest::Url;

use super::cache::Cache;
use super::mirror::{self, Source};
use super::pool::{lock, Pool};
use super::progress::{Bar, Metered, Reporter};
use super::{http, report, Origin, ResolveOptions};
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
        tried: Vec<String>,
    },
    Failed(anyhow::Error),
}

/// Why one source did not deliver the artifact.
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
            Err(SourceError::NotFound(msg)) => tried.push(msg),
            Err(SourceError::Other(e)) => {
                all_not_found = false;
                tried.push(format!("{e:#}"));
            }
        }
    }
    if ctx.opts.offline && all_not_found {
        return Outcome::Missing { tried };
    }
    Outcome::Failed(report::not_fetched(art, &tried))
}

/// Fetches `art` from `url` into the cache, checking its digest on the way.
fn fetch_from(ctx: &Ctx, art: &Artifact, url: &str) -> Result<PathBuf, SourceError> {
    let mut tmp = ctx.cache.temp_file().map_err(SourceError::Other)?;
    let bar = ctx.reporter.start(&art.file_name);
    let started = Instant::now();
    let digest = if url.starts_with("file:") {
        copy_file_url(url, &art.digest, tmp.as_file_mut(), &bar)?
    } else {
        http::download(ctx, url, &art.digest, tmp.as_file(), &bar)?
    };
    // `tmp` is deleted on drop, so every early return leaves nothing behind.
    if digest != art.digest {
        return Err(SourceError::Other(anyhow!(
            "digest mismatch for {url}: expected {}, got {}; the download was discarded",
            art.digest,
            digest
        )));
    }
    let size = bar.position();
    let path = ctx
        .cache
        .store(tmp, &art.digest)
        .map_err(SourceError::Other)?;
    bar.done();
    ctx.reporter
        .downloaded(&art.file_name, size, url, started.elapsed());
    Ok(path)
}

/// Copies a `file://` source into `out`; returns its digest with the algorithm of `algo_of`.
fn copy_file_url(
    url: &str,
    algo_of: &Digest,
    out: &mut std::fs::File,
    bar: &Bar,
) -> Result<Digest, SourceError> {
    let path = Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| SourceError::Other(anyhow!("`{url}` is not a usable file:// URL")))?;
    let src = match fsutil::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SourceError::NotFound(format!(
                "{url}: not found ({})",
                path.display()
            )))
        }
        Err(e) => return Err(SourceError::Other(e.into())),
    };
    if let Ok(m) = src.metadata() {
        bar.set_length(m.len());
    }
    // `io::copy` reads through a `BufReader`'s own buffer: large reads instead of 8 KiB ones.
    let mut src = BufReader::with_capacity(256 * 1024, Metered::new(src, bar));
    let mut out = HashingWriter::new(out, algo_of.algo());
    io::copy(&mut src, &mut out)
        .with_context(|| format!("copying {url}"))
        .map_err(SourceError::Other)?;
    let (_, digest, _) = out.finish();
    Ok(digest)
}
