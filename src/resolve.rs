//! The `resolve` stage: turns pinned [`Artifact`]s into verified files in a content-addressed cache.
//!
//! Cache layout (`cache_dir` is [`default_cache_dir`] or `--cache DIR`):
//! - `<cache>/<algo>/<hex>`: a file whose digest was verified to be `<algo>:<hex>`;
//! - `<cache>/<algo>/<hex>.verified`: JSON `{"size":..,"mtime_secs":..,"mtime_nanos":..}` of that file when
//!   it was last verified. An entry whose size or mtime no longer match is re-hashed before use, and
//!   deleted (then fetched again) when the hash is wrong;
//! - `<cache>/tmp/`: downloads in progress. Nothing reaches `<algo>/` before its digest matched.
//!
//! Sources for an artifact, in order: each mirror (`mirror_url(mirror, artifact.url)`), then the
//! upstream URL. With `offline`, only `file://` mirrors are tried.
//!
//! At most `jobs` connections are open at once. Each artifact starts as one stream, hashed as it
//! arrives. Once no artifact is left to start, a free connection takes over the second half of the
//! largest range still left of a running download of at least 16 MiB whose source (the same URL)
//! said `Accept-Ranges: bytes` (see `Split`); pieces are written at their offsets into the same
//! temp file, and the part that did not come through the first stream is hashed from the file
//! before the digest is checked. A server that does not answer the first such request with the
//! range asked for gets one stream for that file, as before.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use indicatif::{
    HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};
use reqwest::blocking::Client;
use reqwest::header::{ACCEPT_RANGES, CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::digest::{Algo, Digest, Hasher};
use crate::plan::Artifact;

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
    /// Never use the network; `file://` mirrors are still read.
    pub offline: bool,
    /// Connections at once (0 is taken as 1), shared by all downloads: a large file may use
    /// several of them near the end of a run.
    pub jobs: usize,
    pub progress: Progress,
    pub connect_timeout: Duration,
    /// Longest wait for the response headers or for any single read of the body.
    pub read_timeout: Duration,
    /// Extra attempts per URL after a connection error, timeout or 5xx.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one (capped at 30 s).
    pub retry_backoff: Duration,
    /// Arguments of `imagegen fetch` that would fill the cache for this run (e.g.
    /// `--arch arm64 --profile p.yaml`), shown when `offline` finds artifacts missing.
    pub fetch_hint: String,
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
            fetch_hint: String::new(),
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

/// Makes every artifact available in the cache, downloading what is missing (over at most
/// `opts.jobs` connections at once; artifacts sharing a digest are fetched once). Returns one entry per input, in input
/// order. On failure the error lists every artifact that could not be resolved.
pub fn resolve(artifacts: &[Artifact], opts: &ResolveOptions) -> Result<Vec<Resolved>> {
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
    let pool = Pool::new(unique.len());
    let ctx = Ctx {
        cache: &cache,
        opts,
        reporter: &reporter,
        pool: &pool,
        client: Mutex::new(None),
    };
    let outcomes: Mutex<Vec<Option<Outcome>>> =
        Mutex::new((0..unique.len()).map(|_| None).collect());
    // Each worker holds at most one connection: `jobs` bounds the connections, not the files.
    let workers = if unique.is_empty() {
        0
    } else {
        opts.jobs.max(1)
    };
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                match pool.next_job() {
                    Job::Artifact(i) => {
                        let _running = Running(&pool);
                        let outcome = resolve_one(&ctx, unique[i]);
                        lock(&outcomes)[i] = Some(outcome);
                    }
                    Job::Piece(split, i) => help(&ctx, &split, i),
                    Job::Exit => break,
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed(anyhow!("worker thread panicked"))))
        .collect();
    reporter.finish(&outcomes);

    let mut missing = Vec::new();
    let mut failed = Vec::new();
    for (art, outcome) in unique.iter().zip(&outcomes) {
        match outcome {
            Outcome::Ready { .. } => {}
            Outcome::Missing { tried } => missing.push((*art, tried)),
            Outcome::Failed(e) => failed.push((*art, e)),
        }
    }
    if !missing.is_empty() || !failed.is_empty() {
        bail!(failure_report(&missing, &failed, unique.len(), opts));
    }
    Ok(artifacts
        .iter()
        .zip(slots)
        .map(|(art, slot)| match &outcomes[slot] {
            Outcome::Ready { path, origin } => Resolved {
                artifact: art.clone(),
                path: path.clone(),
                origin: origin.clone(),
            },
            _ => unreachable!("failures were reported above"),
        })
        .collect())
}

/// Copies hand-downloaded `files` into the cache when their digest matches one of `pins` (each
/// file is hashed with every algorithm the pins use). Returns `(file, artifact)` for every match.
/// Files that match no pin make it an error naming them (matching files are imported anyway).
pub fn import_files(
    cache_dir: &Path,
    files: &[PathBuf],
    pins: &[Artifact],
) -> Result<Vec<(PathBuf, Artifact)>> {
    let cache = Cache::open(cache_dir)?;
    let algos: BTreeSet<Algo> = pins.iter().map(|p| p.digest.algo()).collect();
    let mut matched = Vec::new();
    let mut unmatched = Vec::new();
    for file in files {
        let src = fs_err::File::open(file)?;
        let mut tmp = cache.temp_file()?;
        let mut hashers: Vec<Hasher> = algos.iter().map(|a| Hasher::new(*a)).collect();
        copy_hashing(src, tmp.as_file_mut(), &mut hashers, |_| {})
            .with_context(|| format!("copying {} into the cache", file.display()))?;
        let digests: Vec<Digest> = hashers.into_iter().map(Hasher::finish).collect();
        let hits: Vec<&Artifact> = pins
            .iter()
            .filter(|p| digests.contains(&p.digest))
            .collect();
        if hits.is_empty() {
            unmatched.push((file, digests));
            continue;
        }
        let mut stored: BTreeSet<&Digest> = BTreeSet::new();
        let mut first = Some(tmp);
        for pin in &hits {
            if stored.insert(&pin.digest) {
                let entry = match first.take() {
                    Some(t) => t,
                    None => {
                        // The file matches a sha256 and a sha512 pin: each entry gets its own
                        // copy, verified again because the file is read again.
                        let mut copy = cache.temp_file()?;
                        let mut h = [Hasher::new(pin.digest.algo())];
                        copy_hashing(
                            fs_err::File::open(file)?,
                            copy.as_file_mut(),
                            &mut h,
                            |_| {},
                        )
                        .with_context(|| format!("copying {} into the cache", file.display()))?;
                        let [h] = h;
                        let now = h.finish();
                        if now != pin.digest {
                            bail!(
                                "{} changed while it was imported (now {now})",
                                file.display()
                            );
                        }
                        copy
                    }
                };
                cache.store(entry, &pin.digest)?;
            }
            matched.push((file.clone(), (*pin).clone()));
        }
    }
    if !unmatched.is_empty() {
        let mut msg = format!(
            "{} of {} file(s) match no pinned artifact and were not imported:",
            unmatched.len(),
            files.len()
        );
        for (file, digests) in &unmatched {
            let ds: Vec<String> = digests.iter().map(ToString::to_string).collect();
            let _ = write!(msg, "\n  - {} ({})", file.display(), ds.join(", "));
        }
        if !matched.is_empty() {
            let _ = write!(msg, "\nimported:");
            for (file, art) in &matched {
                let _ = write!(
                    msg,
                    "\n  - {} as {} {}",
                    file.display(),
                    art.component,
                    art.file_name
                );
            }
        }
        bail!(msg);
    }
    Ok(matched)
}

/// `$IMAGEGEN_CACHE`, else `$XDG_CACHE_HOME/imagegen`, else `~/.cache/imagegen` (Linux) or
/// `~/Library/Caches/imagegen` (macOS).
pub fn default_cache_dir() -> Result<PathBuf> {
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

/// Where `upstream` lives on `mirror`, keeping the upstream host and path (kubespray `files_repo`
/// layout): `mirror_url("http://m:8080/repo", "https://github.com/a/b/c.tgz")` is
/// `http://m:8080/repo/github.com/a/b/c.tgz`. A non-default upstream port stays in the host part
/// (`host:port`).
pub fn mirror_url(mirror: &str, upstream: &str) -> Result<String> {
    let up = Url::parse(upstream)
        .with_context(|| format!("upstream URL `{upstream}` is not a valid URL"))?;
    if !matches!(up.scheme(), "http" | "https") {
        bail!("upstream URL `{upstream}` must be http:// or https://");
    }
    let host = up
        .host_str()
        .with_context(|| format!("upstream URL `{upstream}` has no host"))?;
    if up.query().is_some() || up.fragment().is_some() {
        bail!(
            "upstream URL `{upstream}` has a query or fragment, which a mirror layout cannot hold"
        );
    }
    let m = Url::parse(mirror).with_context(|| format!("mirror `{mirror}` is not a valid URL"))?;
    if !matches!(m.scheme(), "http" | "https" | "file") {
        bail!("mirror `{mirror}` must be an http://, https:// or file:// URL");
    }
    let port = up.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "{}/{host}{port}{}",
        mirror.trim_end_matches('/'),
        up.path()
    ))
}

// ---------------------------------------------------------------------------------------------
// Cache

#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Stamp {
    size: u64,
    mtime_secs: u64,
    mtime_nanos: u32,
}

impl Stamp {
    fn of(path: &Path) -> Result<Stamp> {
        let meta = fs_err::metadata(path)?;
        let mtime = meta
            .modified()
            .with_context(|| format!("reading the mtime of {}", path.display()))?
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Ok(Stamp {
            size: meta.len(),
            mtime_secs: mtime.as_secs(),
            mtime_nanos: mtime.subsec_nanos(),
        })
    }
}

struct Cache {
    root: PathBuf,
    tmp: PathBuf,
}

impl Cache {
    fn open(root: &Path) -> Result<Cache> {
        let tmp = root.join("tmp");
        fs_err::create_dir_all(&tmp).context("creating the download cache")?;
        Ok(Cache {
            root: root.to_path_buf(),
            tmp,
        })
    }

    fn entry(&self, d: &Digest) -> PathBuf {
        self.root.join(d.algo().name()).join(d.hex())
    }

    fn stamp_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join(d.algo().name())
            .join(format!("{}.verified", d.hex()))
    }

    fn temp_file(&self) -> Result<NamedTempFile> {
        tempfile::Builder::new()
            .prefix("download-")
            .tempfile_in(&self.tmp)
            .with_context(|| format!("creating a temporary file in {}", self.tmp.display()))
    }

    /// The verified entry for `d`, if there is one. A changed entry is re-hashed; a wrong one is
    /// deleted (`discarded` says so, for the progress output).
    fn lookup(&self, d: &Digest, discarded: impl FnOnce(&Path)) -> Result<Option<PathBuf>> {
        let path = self.entry(d);
        if !path.exists() {
            return Ok(None);
        }
        let now = Stamp::of(&path)?;
        let recorded: Option<Stamp> = fs_err::read(self.stamp_path(d))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if recorded.as_ref() == Some(&now) {
            return Ok(Some(path));
        }
        let file = fs_err::File::open(&path)?;
        let ok = d
            .matches_reader(file)
            .with_context(|| format!("hashing cache entry {}", path.display()))?;
        if ok {
            self.write_stamp(d, &now)?;
            return Ok(Some(path));
        }
        discarded(&path);
        fs_err::remove_file(&path)?;
        let _ = fs_err::remove_file(self.stamp_path(d));
        Ok(None)
    }

    /// Moves a fully written, verified temp file to the entry for `d`.
    fn store(&self, tmp: NamedTempFile, d: &Digest) -> Result<PathBuf> {
        // Durable before it becomes visible: a torn entry would otherwise look verified.
        tmp.as_file()
            .sync_all()
            .with_context(|| format!("syncing {}", tmp.path().display()))?;
        let path = self.entry(d);
        fs_err::create_dir_all(path.parent().unwrap_or(&self.root))?;
        tmp.persist(&path)
            .map_err(|e| anyhow!(e.error))
            .with_context(|| format!("moving a download into the cache as {}", path.display()))?;
        self.write_stamp(d, &Stamp::of(&path)?)?;
        Ok(path)
    }

    fn write_stamp(&self, d: &Digest, stamp: &Stamp) -> Result<()> {
        let path = self.stamp_path(d);
        let mut tmp = self.temp_file()?;
        serde_json::to_writer(tmp.as_file_mut(), stamp)?;
        tmp.persist(&path)
            .map_err(|e| anyhow!(e.error))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Fetching

/// Files at least this large may be fetched over several connections at once, when the server
/// honours `Range`: real download hosts limit each connection's rate, so one connection per file
/// leaves the largest file alone bounding the whole run.
const SPLIT_MIN_LEN: u64 = 16 * 1024 * 1024;
/// Smallest share a connection takes over from another. Below this, a new request (a round trip,
/// maybe a TLS handshake) costs about as much as it saves.
const SPLIT_MIN_PIECE: u64 = 4 * 1024 * 1024;
/// Read size of one HTTP body read.
const CHUNK: usize = 64 * 1024;

enum Outcome {
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

struct Ctx<'a> {
    cache: &'a Cache,
    opts: &'a ResolveOptions,
    reporter: &'a Reporter,
    pool: &'a Pool,
    /// Built on first use, so runs served from the cache never start reqwest's runtime.
    client: Mutex<Option<Client>>,
}

impl Ctx<'_> {
    fn client(&self) -> Result<Client> {
        let mut c = lock(&self.client);
        if let Some(c) = &*c {
            return Ok(c.clone());
        }
        let client = Client::builder()
            .connect_timeout(self.opts.connect_timeout)
            // The blocking client applies this to the response headers and to each body read
            // (not to the whole transfer), i.e. it is the read timeout.
            .timeout(self.opts.read_timeout)
            .user_agent(concat!("imagegen/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("setting up the HTTP client")?;
        *c = Some(client.clone());
        Ok(client)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(PoisonError::into_inner)
}

/// Hands out the `jobs` connections: each worker holds at most one, takes every artifact once
/// (cache lookup, then its download), and once none is left helps a running download that is worth
/// splitting (see [`Split`]).
struct Pool {
    state: Mutex<PoolState>,
    wake: Condvar,
}

struct PoolState {
    next: usize,
    total: usize,
    /// Artifacts taken and not finished: while any is, an idle worker may still get a piece.
    running: usize,
    splits: Vec<Arc<Split>>,
}

enum Job {
    Artifact(usize),
    Piece(Arc<Split>, usize),
    Exit,
}

impl Pool {
    fn new(total: usize) -> Pool {
        Pool {
            state: Mutex::new(PoolState {
                next: 0,
                total,
                running: 0,
                splits: Vec::new(),
            }),
            wake: Condvar::new(),
        }
    }

    fn next_job(&self) -> Job {
        let mut st = lock(&self.state);
        loop {
            if st.next < st.total {
                st.next += 1;
                st.running += 1;
                return Job::Artifact(st.next - 1);
            }
            let mut offers: Vec<(u64, &Arc<Split>)> = st
                .splits
                .iter()
                .filter_map(|s| s.stealable().map(|left| (left, s)))
                .collect();
            // The largest share left anywhere: that is the download that would finish last.
            offers.sort_by_key(|(left, _)| std::cmp::Reverse(*left));
            if let Some(job) = offers
                .into_iter()
                .find_map(|(_, s)| s.steal().map(|i| Job::Piece(Arc::clone(s), i)))
            {
                return job;
            }
            if st.running == 0 {
                return Job::Exit;
            }
            st = wait(&self.wake, st);
        }
    }

    /// Wakes idle workers after something they wait for changed. Taking the lock first means a
    /// worker between its check and its wait cannot miss this.
    fn poke(&self) {
        drop(lock(&self.state));
        self.wake.notify_all();
    }

    fn add(&self, split: Arc<Split>) {
        lock(&self.state).splits.push(split);
        self.wake.notify_all();
    }

    fn remove(&self, split: &Arc<Split>) {
        lock(&self.state).splits.retain(|s| !Arc::ptr_eq(s, split));
    }
}

/// Marks an artifact finished even if resolving it panicked, so idle workers can still exit.
struct Running<'a>(&'a Pool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).running -= 1;
        self.0.wake.notify_all();
    }
}

/// One download fetched over several connections, each filling its own byte range (piece) of the
/// same temp file. It starts as the ordinary single stream (`pieces[0]`, from offset 0, hashed as
/// it arrives); a connection with nothing else to do takes over the second half of the largest
/// piece still left ([`Split::steal`]), so all connections keep busy until the end and finish
/// together. The first such request is a probe: until it answered 206 with the range asked for, no
/// other piece is handed out, and if it did not, the first stream simply goes on to the end.
struct Split {
    url: String,
    len: u64,
    file: std::fs::File,
    meter: Meter,
    state: Mutex<SplitState>,
    changed: Condvar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    /// Next offset to write (bytes before it are claimed by the connection filling this piece).
    pos: u64,
    /// Exclusive; only ever lowered, when another connection takes over the rest.
    end: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Untested,
    /// Piece `.0` is the first ranged request; its answer decides.
    Pending(usize),
    Confirmed,
    Refused,
}

struct SplitState {
    pieces: Vec<Piece>,
    probe: Probe,
    /// Pieces other than `pieces[0]` being fetched right now.
    helpers: usize,
    /// No more pieces are handed out.
    closed: bool,
    /// Every connection stops at its next read (a piece failed, or the first stream gave up).
    stop: bool,
    failure: Option<anyhow::Error>,
}

/// What a connection may do with the bytes it just read.
enum Claim {
    /// Write `len` bytes at `at`; `done` when that completes the piece.
    Write {
        at: u64,
        len: u64,
        done: bool,
    },
    Stop,
}

impl Split {
    fn new(url: &str, len: u64, file: std::fs::File, meter: Meter, have: u64) -> Split {
        Split {
            url: url.to_string(),
            len,
            file,
            meter,
            state: Mutex::new(SplitState {
                pieces: vec![Piece {
                    pos: have,
                    end: len,
                }],
                probe: Probe::Untested,
                helpers: 0,
                closed: false,
                stop: false,
                failure: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// The size of the largest piece a steal would split, if one may happen now.
    fn stealable(&self) -> Option<u64> {
        let st = lock(&self.state);
        Self::victim(&st).map(|(_, left)| left)
    }

    fn victim(st: &SplitState) -> Option<(usize, u64)> {
        if st.closed || st.stop || matches!(st.probe, Probe::Pending(_) | Probe::Refused) {
            return None;
        }
        st.pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.end - p.pos))
            .max_by_key(|&(_, left)| left)
            .filter(|&(_, left)| left >= 2 * SPLIT_MIN_PIECE)
    }

    /// Takes over the second half of the largest piece left; the caller must fetch the returned
    /// piece with [`help`].
    fn steal(&self) -> Option<usize> {
        Self::steal_locked(&mut lock(&self.state))
    }

    fn steal_locked(st: &mut SplitState) -> Option<usize> {
        let (i, left) = Self::victim(st)?;
        let mid = st.pieces[i].pos + left / 2;
        let piece = Piece {
            pos: mid,
            end: st.pieces[i].end,
        };
        st.pieces[i].end = mid;
        st.pieces.push(piece);
        let idx = st.pieces.len() - 1;
        if st.probe == Probe::Untested {
            st.probe = Probe::Pending(idx);
        }
        st.helpers += 1;
        Some(idx)
    }

    /// The `(pos, end)` still to fetch for piece `idx`; `None` when there is nothing to do.
    fn range(&self, idx: usize) -> Option<(u64, u64)> {
        let st = lock(&self.state);
        let p = st.pieces[idx];
        (!st.stop && p.pos < p.end).then_some((p.pos, p.end))
    }

    fn first_end(&self) -> u64 {
        lock(&self.state).pieces[0].end
    }

    /// Claims up to `n` bytes for piece `idx`. The first stream does not cut its data short while
    /// the probe is out: if ranges turn out not to work, it has to go on to the end of the file.
    fn claim(&self, idx: usize, n: u64) -> Claim {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return Claim::Stop;
            }
            let p = st.pieces[idx];
            let room = p.end - p.pos;
            if idx == 0 && n >= room && matches!(st.probe, Probe::Pending(_)) {
                st = wait(&self.changed, st);
                continue;
            }
            let len = n.min(room);
            st.pieces[idx].pos += len;
            return Claim::Write {
                at: p.pos,
                len,
                done: len == room,
            };
        }
    }

    /// Piece `idx` got the answer it asked for. True if that settled the probe.
    fn confirm(&self, idx: usize) -> bool {
        let mut st = lock(&self.state);
        if st.probe != Probe::Pending(idx) {
            return false;
        }
        st.probe = Probe::Confirmed;
        self.changed.notify_all();
        true
    }

    /// If piece `idx` is the probe and it failed, gives its range back to the first stream (which
    /// waits at the border for this) and stops splitting this file. True if it was the probe.
    fn refuse(&self, idx: usize) -> bool {
        let mut st = lock(&self.state);
        if st.probe != Probe::Pending(idx) {
            return false;
        }
        st.probe = Probe::Refused;
        let p = st.pieces[idx];
        st.pieces[0].end = p.end;
        st.pieces[idx].end = p.pos;
        self.changed.notify_all();
        true
    }

    fn fail(&self, e: anyhow::Error) {
        let mut st = lock(&self.state);
        st.stop = true;
        st.closed = true;
        st.failure.get_or_insert(e);
        self.changed.notify_all();
    }

    fn release(&self) {
        lock(&self.state).helpers -= 1;
        self.changed.notify_all();
    }

    /// For the first stream once its own piece is done: a piece of its own file to fetch next, or
    /// `None` once every piece is done (or the download failed) and no more will be handed out.
    fn next_for_owner(&self) -> Option<usize> {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                st.closed = true;
                return None;
            }
            if let Some(i) = Self::steal_locked(&mut st) {
                return Some(i);
            }
            if st.helpers == 0 {
                st.closed = true;
                return None;
            }
            st = wait(&self.changed, st);
        }
    }

    /// Stops every connection of this file and waits until they are gone.
    fn abort(&self) {
        let mut st = lock(&self.state);
        st.stop = true;
        st.closed = true;
        self.changed.notify_all();
        while st.helpers > 0 {
            st = wait(&self.changed, st);
        }
    }

    fn take_failure(&self) -> Option<anyhow::Error> {
        lock(&self.state).failure.take()
    }
}

/// Why one source did not deliver the artifact.
enum SourceError {
    NotFound(String),
    Other(anyhow::Error),
}

fn resolve_one(ctx: &Ctx, art: &Artifact) -> Outcome {
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

    let mut sources: Vec<(String, bool)> = Vec::new();
    for m in &ctx.opts.mirrors {
        match mirror_url(m, &art.url) {
            Ok(u) if !ctx.opts.offline || u.starts_with("file:") => sources.push((u, true)),
            Ok(_) => {}
            Err(e) => return Outcome::Failed(e),
        }
    }
    if !ctx.opts.offline {
        sources.push((art.url.clone(), false));
    }

    let mut tried = Vec::new();
    let mut all_not_found = true;
    for (url, is_mirror) in sources {
        match fetch_from(ctx, art, &url) {
            Ok(path) => {
                let origin = if is_mirror {
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
    let mut msg = format!("{} ({}):", label(art), art.digest);
    for t in &tried {
        let _ = write!(msg, "\n    {t}");
    }
    Outcome::Failed(anyhow!(msg))
}

fn fetch_from(ctx: &Ctx, art: &Artifact, url: &str) -> Result<PathBuf, SourceError> {
    let mut tmp = ctx.cache.temp_file().map_err(SourceError::Other)?;
    let bar = ctx.reporter.start(&art.file_name);
    let started = Instant::now();
    let digest = if url.starts_with("file:") {
        copy_file_url(url, &art.digest, tmp.as_file_mut(), &bar)?
    } else {
        download(ctx, url, &art.digest, tmp.as_file(), &bar)?
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
    let src = match fs_err::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
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
    let mut hashers = [Hasher::new(algo_of.algo())];
    copy_hashing(src, out, &mut hashers, |n| bar.inc(n))
        .with_context(|| format!("copying {url}"))
        .map_err(SourceError::Other)?;
    let [h] = hashers;
    Ok(h.finish())
}

/// Streams `src` into `out`, feeding every hasher; `progress` gets each chunk's size.
fn copy_hashing(
    mut src: impl Read,
    out: &mut std::fs::File,
    hashers: &mut [Hasher],
    mut progress: impl FnMut(u64),
) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        out.write_all(&buf[..n]).context("writing to the cache")?;
        for h in hashers.iter_mut() {
            h.update(&buf[..n]);
        }
        total += n as u64;
        progress(n as u64);
    }
    Ok(total)
}

/// A failed HTTP attempt, by what to do next.
enum Attempt {
    /// Connection error, timeout, 5xx: retry (resuming if possible).
    Retry(anyhow::Error),
    NotFound(StatusCode),
    Fatal(anyhow::Error),
    /// Another connection of the same split download failed; its error is in the [`Split`].
    Stopped,
}

/// The first stream of a download: bytes `[0, have)` are in `out` and `hasher` has seen exactly
/// those bytes.
struct Partial<'a> {
    out: &'a std::fs::File,
    hasher: Hasher,
    algo: Algo,
    have: u64,
    /// The server said `Accept-Ranges: bytes`, so an interruption can continue with `Range`.
    resumable: bool,
    /// Set once other connections may fetch parts of this file (this stream is `pieces[0]`).
    split: Option<Arc<Split>>,
}

impl Partial<'_> {
    fn restart(&mut self, bar: &Bar) -> Result<(), Attempt> {
        match &self.split {
            // Other connections' bytes are in the file: only this stream's piece starts over.
            Some(s) => lock(&s.state).pieces[0].pos = 0,
            None => self.out.set_len(0).map_err(|e| {
                Attempt::Fatal(anyhow!(e).context("truncating the partial download"))
            })?,
        }
        self.hasher = Hasher::new(self.algo);
        bar.rewind(self.have);
        self.have = 0;
        Ok(())
    }
}

/// Runs `attempt` until it succeeds, retrying connection errors, timeouts and 5xx with backoff.
/// Errors come back as `NotFound`, `Stopped` or `Fatal` (with `what` in the message).
fn with_retries(
    ctx: &Ctx,
    what: &str,
    mut attempt: impl FnMut() -> Result<(), Attempt>,
) -> Result<(), Attempt> {
    let mut failures = 0u32;
    loop {
        match attempt() {
            Err(Attempt::Retry(e)) => {
                failures += 1;
                if failures > ctx.opts.retries {
                    return Err(Attempt::Fatal(
                        e.context(format!("{what}: giving up after {failures} attempts")),
                    ));
                }
                let delay = ctx
                    .opts
                    .retry_backoff
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(Duration::from_secs(30));
                ctx.reporter.note(&format!(
                    "{what}: {e:#}; retry {failures}/{} in {}",
                    ctx.opts.retries,
                    HumanDuration(delay)
                ));
                std::thread::sleep(delay);
            }
            Err(Attempt::Fatal(e)) => return Err(Attempt::Fatal(e.context(what.to_string()))),
            other => return other,
        }
    }
}

fn download(
    ctx: &Ctx,
    url: &str,
    pinned: &Digest,
    out: &std::fs::File,
    bar: &Bar,
) -> Result<Digest, SourceError> {
    let client = ctx.client().map_err(SourceError::Other)?;
    let mut part = Partial {
        out,
        hasher: Hasher::new(pinned.algo()),
        algo: pinned.algo(),
        have: 0,
        resumable: false,
        split: None,
    };
    let result = with_retries(ctx, url, || attempt(ctx, &client, url, &mut part, bar));
    let Some(split) = part.split.take() else {
        return match result {
            Ok(()) => Ok(part.hasher.finish()),
            Err(e) => Err(source_error(url, e)),
        };
    };
    if result.is_ok() {
        while let Some(i) = split.next_for_owner() {
            help(ctx, &split, i);
        }
    } else {
        split.abort();
    }
    ctx.pool.remove(&split);
    if let Some(e) = split.take_failure() {
        return Err(SourceError::Other(e));
    }
    result.map_err(|e| source_error(url, e))?;
    // This stream hashed `[0, first_end)` as it arrived; the rest came over other connections.
    let mut hasher = part.hasher;
    let first_end = split.first_end();
    hash_tail(out, first_end, split.len, &mut hasher)
        .with_context(|| format!("reading back the download of {url}"))
        .map_err(SourceError::Other)?;
    Ok(hasher.finish())
}

fn source_error(url: &str, e: Attempt) -> SourceError {
    match e {
        Attempt::NotFound(status) => {
            SourceError::NotFound(format!("{url}: not found (HTTP {status})"))
        }
        Attempt::Fatal(e) | Attempt::Retry(e) => SourceError::Other(e),
        Attempt::Stopped => SourceError::Other(anyhow!("{url}: download stopped")),
    }
}

/// Feeds bytes `[from, len)` of `file` to `hasher`, sequentially.
fn hash_tail(mut file: &std::fs::File, from: u64, len: u64, hasher: &mut Hasher) -> Result<()> {
    file.seek(SeekFrom::Start(from))?;
    let mut rest = file.take(len - from);
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(&buf[..n]);
        got += n as u64;
    }
    if from + got != len {
        bail!("the file has {} bytes, expected {len}", from + got);
    }
    Ok(())
}

fn attempt(
    ctx: &Ctx,
    client: &Client,
    url: &str,
    part: &mut Partial,
    bar: &Bar,
) -> Result<(), Attempt> {
    if part.have > 0 && !part.resumable {
        part.restart(bar)?;
    }
    let ranged = part.have > 0;
    let mut req = client.get(url);
    if ranged {
        let spec = match &part.split {
            Some(s) => match s.first_end() {
                end if end < s.len => format!("bytes={}-{}", part.have, end - 1),
                _ => format!("bytes={}-", part.have),
            },
            None => format!("bytes={}-", part.have),
        };
        req = req.header(RANGE, spec);
    }
    let mut resp = req.send().map_err(|e| classify(e, "request failed"))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err(Attempt::NotFound(status));
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(Attempt::Retry(anyhow!("server answered HTTP {status}")));
    }
    match status {
        StatusCode::PARTIAL_CONTENT if ranged => {
            let start = content_range(&resp).map(|(s, _, _)| s);
            if start != Some(part.have) {
                // Continuing at the wrong offset would corrupt the file; start over instead.
                part.resumable = false;
                part.restart(bar)?;
                return Err(Attempt::Retry(anyhow!(
                    "server answered a range request with an unexpected Content-Range"
                )));
            }
        }
        StatusCode::OK => {
            if part.have > 0 {
                // The server ignored `Range` and is sending the whole file again.
                part.restart(bar)?;
            }
            part.resumable = resp
                .headers()
                .get(ACCEPT_RANGES)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("bytes")));
            if part.split.is_none() && part.resumable && ctx.opts.jobs > 1 {
                let len = resp.content_length().filter(|&l| l >= SPLIT_MIN_LEN);
                // Without a second handle on the file other connections cannot write; then this
                // stream simply fetches it alone.
                if let (Some(len), Ok(file)) = (len, part.out.try_clone()) {
                    bar.set_length(len);
                    let split = Arc::new(Split::new(url, len, file, bar.meter.clone(), 0));
                    ctx.pool.add(Arc::clone(&split));
                    part.split = Some(split);
                }
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            part.resumable = false;
            part.restart(bar)?;
            return Err(Attempt::Retry(anyhow!(
                "server rejected the range request (HTTP 416)"
            )));
        }
        _ => return Err(Attempt::Fatal(anyhow!("unexpected HTTP status {status}"))),
    }
    if part.split.is_none() {
        if let Some(len) = resp.content_length() {
            bar.set_length(part.have + len);
        }
    }
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => match &part.split {
                // The response ended before this stream's piece did.
                Some(s) => {
                    return Err(Attempt::Retry(anyhow!(
                        "connection closed after {} of {} bytes",
                        part.have,
                        s.len
                    )))
                }
                None => return Ok(()),
            },
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Attempt::Retry(
                    anyhow!(e).context(format!("connection lost after {} bytes", part.have)),
                ))
            }
        };
        let (len, done) = match &part.split {
            None => (n as u64, false),
            Some(s) => match s.claim(0, n as u64) {
                Claim::Write { at, len, done } => {
                    debug_assert_eq!(at, part.have);
                    (len, done)
                }
                Claim::Stop => return Err(Attempt::Stopped),
            },
        };
        let data = &buf[..len as usize];
        part.out
            .write_all_at(data, part.have)
            .map_err(|e| Attempt::Fatal(anyhow!(e).context("writing the download to the cache")))?;
        part.hasher.update(data);
        part.have += len;
        bar.inc(len);
        if done {
            // Dropping the response closes the connection; the rest is another connection's.
            return Ok(());
        }
    }
}

/// `(first, last, total)` of a `Content-Range: bytes first-last/total` header.
fn content_range(resp: &reqwest::blocking::Response) -> Option<(u64, u64, u64)> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// Fetches piece `idx` of `split` (handed out by [`Split::steal`]): a ranged request per attempt,
/// resuming where the last one stopped. Its failure fails the whole download from this source.
fn help(ctx: &Ctx, split: &Split, idx: usize) {
    struct Release<'a>(&'a Split);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.release();
        }
    }
    let _release = Release(split);
    let mut buf = vec![0u8; CHUNK];
    let result = ctx.client().map_err(Attempt::Fatal).and_then(|client| {
        with_retries(ctx, &split.url, || {
            let r = fetch_piece(ctx, &client, split, idx, &mut buf);
            // Nothing was written yet: the probe is only confirmed by a good answer.
            if r.is_err() && split.refuse(idx) {
                ctx.reporter.note(&format!(
                    "{}: fetching it over one connection ({})",
                    split.url,
                    match &r {
                        Err(Attempt::Retry(e) | Attempt::Fatal(e)) => format!("{e:#}"),
                        Err(Attempt::NotFound(s)) => format!("HTTP {s} for a range"),
                        _ => "stopped".into(),
                    }
                ));
                return Ok(());
            }
            r
        })
    });
    match result {
        Ok(()) | Err(Attempt::Stopped) => {}
        Err(Attempt::Fatal(e) | Attempt::Retry(e)) => split.fail(e),
        Err(Attempt::NotFound(status)) => split.fail(anyhow!(
            "{}: not found (HTTP {status}) when asking for a range of it",
            split.url
        )),
    }
}

fn fetch_piece(
    ctx: &Ctx,
    client: &Client,
    split: &Split,
    idx: usize,
    buf: &mut [u8],
) -> Result<(), Attempt> {
    let Some((pos, end)) = split.range(idx) else {
        return Ok(());
    };
    let mut resp = client
        .get(&split.url)
        .header(RANGE, format!("bytes={pos}-{}", end - 1))
        .send()
        .map_err(|e| classify(e, "request failed"))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err(Attempt::NotFound(status));
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(Attempt::Retry(anyhow!("server answered HTTP {status}")));
    }
    let got = content_range(&resp);
    if status != StatusCode::PARTIAL_CONTENT || got != Some((pos, end - 1, split.len)) {
        let got = got.map_or("no Content-Range".into(), |(a, b, t)| {
            format!("Content-Range {a}-{b}/{t}")
        });
        return Err(Attempt::Retry(anyhow!(
            "asked for bytes {pos}-{} of {}, got HTTP {status} with {got}",
            end - 1,
            split.len
        )));
    }
    if split.confirm(idx) {
        ctx.pool.poke();
    }
    loop {
        let n = match resp.read(buf) {
            Ok(0) => {
                let at = split.range(idx).map_or(end, |(p, _)| p);
                return Err(Attempt::Retry(anyhow!(
                    "connection closed at byte {at} of the range {pos}-{}",
                    end - 1
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let at = split.range(idx).map_or(end, |(p, _)| p);
                return Err(Attempt::Retry(anyhow!(e).context(format!(
                    "connection lost at byte {at} of the range {pos}-{}",
                    end - 1
                ))));
            }
        };
        match split.claim(idx, n as u64) {
            Claim::Stop => return Ok(()),
            Claim::Write { at, len, done } => {
                split
                    .file
                    .write_all_at(&buf[..len as usize], at)
                    .map_err(|e| {
                        Attempt::Fatal(anyhow!(e).context("writing the download to the cache"))
                    })?;
                split.meter.inc(len);
                if done {
                    return Ok(());
                }
            }
        }
    }
}

fn classify(e: reqwest::Error, what: &str) -> Attempt {
    // Every send() error here is a connect/timeout/protocol failure of this attempt (builder
    // errors cannot happen: the URL was parsed before), so all of them are worth a retry.
    Attempt::Retry(anyhow!(e).context(what.to_string()))
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

// ---------------------------------------------------------------------------------------------
// Progress

enum Reporter {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        done: AtomicUsize,
        total: usize,
        started: Instant,
    },
    Plain {
        started: Instant,
    },
    Quiet,
}

/// Counts bytes on one transfer's bar and on the overall bar; cloned into every connection that
/// fetches part of the same file.
#[derive(Clone)]
struct Meter {
    bar: ProgressBar,
    overall: Option<ProgressBar>,
}

impl Meter {
    fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(o) = &self.overall {
            o.inc(n);
        }
    }
}

/// One transfer's bar (hidden unless bars are shown; it still counts the bytes). Dropping it
/// before [`Bar::done`] takes its bytes back out of the overall bar.
struct Bar {
    meter: Meter,
    finished: bool,
}

impl Bar {
    fn set_length(&self, len: u64) {
        let old = self.meter.bar.length().unwrap_or(0);
        self.meter.bar.set_length(len);
        if let Some(o) = &self.meter.overall {
            if len >= old {
                o.inc_length(len - old);
            } else {
                o.dec_length(old - len);
            }
        }
    }

    fn inc(&self, n: u64) {
        self.meter.inc(n);
    }

    /// Takes back `n` bytes that are being fetched again.
    fn rewind(&self, n: u64) {
        self.meter.bar.dec(n);
        if let Some(o) = &self.meter.overall {
            o.dec(n);
        }
    }

    fn position(&self) -> u64 {
        self.meter.bar.position()
    }

    fn done(mut self) {
        self.finished = true;
        self.meter.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let bar = &self.meter.bar;
        if let Some(o) = &self.meter.overall {
            o.dec(bar.position());
            o.dec_length(bar.length().unwrap_or(0));
        }
        bar.finish_and_clear();
    }
}

impl Reporter {
    fn new(mode: Progress, total: usize) -> Reporter {
        let mode = match mode {
            Progress::Auto if !std::io::stderr().is_terminal() => Progress::Plain,
            m => m,
        };
        match mode {
            Progress::Auto => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let overall = multi.add(ProgressBar::new(0));
                overall.set_style(style(
                    "{prefix:>24.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} {msg}",
                ));
                overall.set_prefix("total");
                overall.set_message(format!("0/{total} artifacts"));
                Reporter::Bars {
                    multi,
                    overall,
                    done: AtomicUsize::new(0),
                    total,
                    started: Instant::now(),
                }
            }
            Progress::Plain => Reporter::Plain {
                started: Instant::now(),
            },
            Progress::Quiet => Reporter::Quiet,
        }
    }

    fn start(&self, name: &str) -> Bar {
        let (bar, overall) = match self {
            Reporter::Bars { multi, overall, .. } => {
                let bar = multi.insert_before(overall, ProgressBar::new(0));
                bar.set_style(style(
                    "{prefix:>24.cyan} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4}",
                ));
                bar.set_prefix(short(name, 24));
                (bar, Some(overall.clone()))
            }
            _ => (ProgressBar::hidden(), None),
        };
        Bar {
            meter: Meter { bar, overall },
            finished: false,
        }
    }

    fn note(&self, msg: &str) {
        match self {
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(format!("warning: {msg}"));
            }
            Reporter::Plain { .. } => eprintln!("warning: {msg}"),
            Reporter::Quiet => {}
        }
    }

    /// One more artifact is ready (from the cache or fetched).
    fn ready(&self) {
        if let Reporter::Bars {
            overall,
            done,
            total,
            ..
        } = self
        {
            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
            overall.set_message(format!("{n}/{total} artifacts"));
        }
    }

    fn downloaded(&self, name: &str, size: u64, url: &str, took: Duration) {
        self.ready();
        let rate = size as f64 / took.as_secs_f64().max(1e-3);
        let line = format!(
            "fetched {name} ({}, {:.1?}, {}/s) from {url}",
            HumanBytes(size),
            took,
            HumanBytes(rate as u64)
        );
        match self {
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Reporter::Plain { .. } => eprintln!("{line}"),
            Reporter::Quiet => {}
        }
    }

    fn finish(&self, outcomes: &[Outcome]) {
        let ready = |cached: bool| {
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Ready { origin, .. } if (*origin == Origin::Cache) == cached))
                .count()
        };
        let (cached, fetched) = (ready(true), ready(false));
        let started = match self {
            Reporter::Bars {
                overall, started, ..
            } => {
                overall.finish_and_clear();
                started
            }
            Reporter::Plain { started } => started,
            Reporter::Quiet => return,
        };
        if fetched > 0 {
            eprintln!(
                "resolved {} artifact(s): {cached} from the cache, {fetched} fetched, in {:.1?}",
                cached + fetched,
                started.elapsed()
            );
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Keeps the end of a long file name (the part that differs: version, arch).
fn short(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n + 1 - max).collect();
    format!("…{tail}")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::digest::hash_reader;
    use crate::test_http::{generated_bytes, Behaviour, Body, GeneratedReader, Ranges, TestServer};

    /// A real upstream file: its path on the (github-like) server and its bytes.
    struct Fx {
        component: &'static str,
        version: &'static str,
        path: String,
        bytes: Vec<u8>,
        algo: Algo,
    }

    fn targz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        {
            let mut b = tar::Builder::new(&mut gz);
            for (path, data) in entries {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                h.set_mtime(0);
                h.set_cksum();
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            b.finish().unwrap();
        }
        gz.finish().unwrap()
    }

    fn containerd() -> Fx {
        Fx {
            component: "containerd",
            version: "1.7.20",
            path: "/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz".into(),
            bytes: targz(&[
                ("bin/containerd", generated_bytes(1, 300_000)),
                ("bin/containerd-shim-runc-v2", generated_bytes(2, 120_000)),
                ("bin/ctr", generated_bytes(3, 90_000)),
            ]),
            algo: Algo::Sha256,
        }
    }

    fn runc() -> Fx {
        Fx {
            component: "runc",
            version: "1.1.13",
            path: "/opencontainers/runc/releases/download/v1.1.13/runc.arm64".into(),
            bytes: generated_bytes(4, 200_000),
            algo: Algo::Sha512,
        }
    }

    fn cni() -> Fx {
        Fx {
            component: "cni-plugins",
            version: "1.5.1",
            path: "/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-arm64-v1.5.1.tgz".into(),
            bytes: targz(&[
                ("./bridge", generated_bytes(5, 100_000)),
                ("./host-local", generated_bytes(6, 80_000)),
                ("./loopback", generated_bytes(7, 60_000)),
            ]),
            algo: Algo::Sha256,
        }
    }

    fn pin(fx: &Fx, base: &str) -> Artifact {
        Artifact {
            component: fx.component.into(),
            version: fx.version.into(),
            url: format!("{base}{}", fx.path),
            file_name: fx.path.rsplit('/').next().unwrap().into(),
            digest: hash_reader(fx.algo, &fx.bytes[..]).unwrap(),
        }
    }

    fn opts(cache: &Path) -> ResolveOptions {
        let mut o = ResolveOptions::new(cache.to_path_buf());
        o.progress = Progress::Quiet;
        o.connect_timeout = Duration::from_secs(2);
        o.read_timeout = Duration::from_secs(5);
        o.retries = 2;
        o.retry_backoff = Duration::from_millis(20);
        o
    }

    /// Every regular file under `dir`, relative, so tests can say exactly what the cache holds.
    fn files_in(dir: &Path) -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else {
                    out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = BTreeSet::new();
        if dir.exists() {
            walk(dir, dir, &mut out);
        }
        out
    }

    fn entries(arts: &[&Artifact]) -> BTreeSet<String> {
        arts.iter()
            .flat_map(|a| {
                let d = format!("{}/{}", a.digest.algo().name(), a.digest.hex());
                [d.clone(), format!("{d}.verified")]
            })
            .collect()
    }

    fn requests(srv: &TestServer, path: &str) -> Vec<(Option<String>, u16)> {
        srv.log()
            .into_iter()
            .filter(|h| h.path == path)
            .map(|h| (h.range, h.status))
            .collect()
    }

    #[test]
    fn downloads_verifies_and_then_serves_from_cache_without_requests() {
        let srv = TestServer::start();
        let (c, r) = (containerd(), runc());
        srv.add(&c.path, c.bytes.clone());
        srv.add(&r.path, r.bytes.clone());
        let arts = [pin(&c, &srv.base()), pin(&r, &srv.base())];
        let cache = tempfile::tempdir().unwrap();

        let got = resolve(&arts, &opts(cache.path())).unwrap();
        assert_eq!(got.len(), 2);
        for (res, (art, fx)) in got.iter().zip(arts.iter().zip([&c, &r])) {
            assert_eq!(&res.artifact, art);
            assert_eq!(
                res.origin,
                Origin::Upstream {
                    url: art.url.clone()
                }
            );
            assert_eq!(
                res.path,
                cache
                    .path()
                    .join(art.digest.algo().name())
                    .join(art.digest.hex())
            );
            assert_eq!(std::fs::read(&res.path).unwrap(), fx.bytes);
        }
        assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
        assert_eq!(srv.total_hits(), 2);

        let again = resolve(&arts, &opts(cache.path())).unwrap();
        assert!(again.iter().all(|r| r.origin == Origin::Cache));
        assert_eq!(again[0].path, got[0].path);
        assert_eq!(
            srv.total_hits(),
            2,
            "a cache hit must not touch the network"
        );
    }

    #[test]
    fn digest_mismatch_names_url_and_both_digests_and_keeps_nothing() {
        let srv = TestServer::start();
        let c = containerd();
        let mut tampered = c.bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        srv.add(&c.path, tampered.clone());
        let art = pin(&c, &srv.base());
        let actual = hash_reader(Algo::Sha256, &tampered[..]).unwrap();
        let cache = tempfile::tempdir().unwrap();

        let err = format!(
            "{:#}",
            resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap_err()
        );
        assert!(
            err.contains(&format!("digest mismatch for {}", art.url)),
            "{err}"
        );
        assert!(err.contains(&format!("expected {}", art.digest)), "{err}");
        assert!(err.contains(&format!("got {actual}")), "{err}");
        assert!(
            files_in(cache.path()).is_empty(),
            "{:?}",
            files_in(cache.path())
        );
    }

    #[test]
    fn not_found_on_a_mirror_tries_the_next_mirror() {
        let upstream = TestServer::start();
        let mirror = TestServer::start();
        let c = containerd();
        let art = pin(&c, &upstream.base());
        let good = format!("/m2/{}{}", upstream.authority(), c.path);
        mirror.add(&good, c.bytes.clone());
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.mirrors = vec![mirror.url("/m1"), mirror.url("/m2/")];

        let got = resolve(&[art], &o).unwrap();
        assert_eq!(
            got[0].origin,
            Origin::Mirror {
                url: mirror.url(&good)
            }
        );
        assert_eq!(
            mirror.hits(&format!("/m1/{}{}", upstream.authority(), c.path)),
            1
        );
        assert_eq!(mirror.hits(&good), 1);
        assert_eq!(upstream.total_hits(), 0);
    }

    #[test]
    fn not_found_on_the_mirror_falls_through_to_upstream() {
        let upstream = TestServer::start();
        let mirror = TestServer::start();
        let r = runc();
        upstream.add(&r.path, r.bytes.clone());
        let art = pin(&r, &upstream.base());
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.mirrors = vec![mirror.url("/files")];

        let got = resolve(std::slice::from_ref(&art), &o).unwrap();
        assert_eq!(
            got[0].origin,
            Origin::Upstream {
                url: art.url.clone()
            }
        );
        assert_eq!(mirror.total_hits(), 1);
        assert_eq!(std::fs::read(&got[0].path).unwrap(), r.bytes);
    }

    #[test]
    fn not_found_everywhere_names_every_url() {
        let upstream = TestServer::start();
        let mirror = TestServer::start();
        let r = runc();
        let art = pin(&r, &upstream.base());
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.mirrors = vec![mirror.url("/files")];

        let err = format!("{:#}", resolve(std::slice::from_ref(&art), &o).unwrap_err());
        let mirrored = mirror_url(&o.mirrors[0], &art.url).unwrap();
        assert!(
            err.contains(&format!("{mirrored}: not found (HTTP 404 Not Found)")),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}: not found (HTTP 404 Not Found)", art.url)),
            "{err}"
        );
        assert!(err.contains("runc.arm64"), "{err}");
        assert!(files_in(cache.path()).is_empty());
    }

    #[test]
    fn server_errors_are_retried_then_succeed() {
        let srv = TestServer::start();
        let c = containerd();
        srv.add_with(
            &c.path,
            c.bytes.clone(),
            Behaviour {
                fail_500: 2,
                ..Behaviour::default()
            },
        );
        let art = pin(&c, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(&[art], &opts(cache.path())).unwrap();
        assert_eq!(srv.statuses(&c.path), [500, 500, 200]);
        assert_eq!(std::fs::read(&got[0].path).unwrap(), c.bytes);
    }

    #[test]
    fn server_errors_beyond_the_retry_budget_fail() {
        let srv = TestServer::start();
        let c = containerd();
        srv.add_with(
            &c.path,
            c.bytes.clone(),
            Behaviour {
                fail_500: 100,
                ..Behaviour::default()
            },
        );
        let art = pin(&c, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let err = format!(
            "{:#}",
            resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap_err()
        );
        assert!(
            err.contains(&format!("{}: giving up after 3 attempts", art.url)),
            "{err}"
        );
        assert!(err.contains("HTTP 500"), "{err}");
        assert_eq!(srv.hits(&c.path), 3);
        assert!(files_in(cache.path()).is_empty());
    }

    #[test]
    fn dropped_connection_resumes_with_a_range_request() {
        let srv = TestServer::start();
        let c = containerd();
        srv.add_with(
            &c.path,
            c.bytes.clone(),
            Behaviour {
                drop_after: Some(100_000),
                ..Behaviour::default()
            },
        );
        let art = pin(&c, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
        assert_eq!(
            requests(&srv, &c.path),
            [(None, 200), (Some("bytes=100000-".to_string()), 206)]
        );
        assert_eq!(std::fs::read(&got[0].path).unwrap(), c.bytes);
        assert_eq!(files_in(cache.path()), entries(&[&art]));
    }

    #[test]
    fn dropped_connection_restarts_cleanly_without_working_ranges() {
        let srv = TestServer::start();
        let (c, r) = (containerd(), runc());
        // Advertises ranges but answers 200 with the whole file: the client must start over.
        srv.add_with(
            &c.path,
            c.bytes.clone(),
            Behaviour {
                drop_after: Some(100_000),
                ranges: Ranges::Ignore,
                ..Behaviour::default()
            },
        );
        // No Accept-Ranges: the client must not even ask for a range.
        srv.add_with(
            &r.path,
            r.bytes.clone(),
            Behaviour {
                drop_after: Some(50_000),
                ranges: Ranges::NotAdvertised,
                ..Behaviour::default()
            },
        );
        let arts = [pin(&c, &srv.base()), pin(&r, &srv.base())];
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(&arts, &opts(cache.path())).unwrap();
        assert_eq!(
            requests(&srv, &c.path),
            [(None, 200), (Some("bytes=100000-".to_string()), 200)]
        );
        assert_eq!(requests(&srv, &r.path), [(None, 200), (None, 200)]);
        assert_eq!(std::fs::read(&got[0].path).unwrap(), c.bytes);
        assert_eq!(std::fs::read(&got[1].path).unwrap(), r.bytes);
        assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
    }

    #[test]
    fn stalled_server_times_out_and_fails_after_retries() {
        let _load = alone();
        let srv = TestServer::start();
        let r = runc();
        srv.add_with(
            &r.path,
            r.bytes.clone(),
            Behaviour {
                stall: Some(Duration::from_secs(3)),
                ..Behaviour::default()
            },
        );
        let art = pin(&r, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.read_timeout = Duration::from_millis(300);
        o.retries = 1;
        let err = format!("{:#}", resolve(std::slice::from_ref(&art), &o).unwrap_err());
        assert!(
            err.contains(&format!("{}: giving up after 2 attempts", art.url)),
            "{err}"
        );
        assert!(err.contains("connection lost after 0 bytes"), "{err}");
        assert!(err.contains("timed out"), "{err}");
        assert_eq!(srv.hits(&r.path), 2);
        assert!(files_in(cache.path()).is_empty());
    }

    #[test]
    fn corrupted_cache_entry_is_discarded_and_fetched_again() {
        let srv = TestServer::start();
        let c = containerd();
        srv.add(&c.path, c.bytes.clone());
        let art = pin(&c, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let first = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();

        let path = &first[0].path;
        let mut bytes = std::fs::read(path).unwrap();
        bytes[1000] ^= 0xff;
        std::fs::write(path, &bytes).unwrap();
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        drop(f);

        let second = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
        assert_eq!(
            second[0].origin,
            Origin::Upstream {
                url: art.url.clone()
            }
        );
        assert_eq!(srv.hits(&c.path), 2);
        assert_eq!(std::fs::read(path).unwrap(), c.bytes);
        assert_eq!(files_in(cache.path()), entries(&[&art]));
    }

    #[test]
    fn touched_but_intact_entry_is_rehashed_not_fetched() {
        let srv = TestServer::start();
        let r = runc();
        srv.add(&r.path, r.bytes.clone());
        let art = pin(&r, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let first = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
        let stamp = cache
            .path()
            .join(format!("sha512/{}.verified", art.digest.hex()));
        let before = std::fs::read_to_string(&stamp).unwrap();
        let f = std::fs::File::options()
            .write(true)
            .open(&first[0].path)
            .unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000))
            .unwrap();
        drop(f);

        let second = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
        assert_eq!(second[0].origin, Origin::Cache);
        assert_eq!(srv.hits(&r.path), 1);
        let after = std::fs::read_to_string(&stamp).unwrap();
        assert_ne!(before, after);
        assert!(after.contains("\"mtime_secs\":1000000000"), "{after}");
    }

    #[test]
    fn offline_with_an_empty_cache_lists_every_missing_artifact_and_the_fetch_command() {
        let srv = TestServer::start();
        let fxs = [containerd(), runc(), cni()];
        for fx in &fxs {
            srv.add(&fx.path, fx.bytes.clone());
        }
        let arts: Vec<Artifact> = fxs.iter().map(|f| pin(f, &srv.base())).collect();
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.offline = true;
        o.mirrors = vec![srv.url("/mirror")];
        o.fetch_hint = "--arch arm64 --profile p.yaml".into();

        let err = format!("{:#}", resolve(&arts, &o).unwrap_err());
        assert!(
            err.contains("offline: 3 of 3 artifact(s) are not in the cache"),
            "{err}"
        );
        for a in &arts {
            let line = format!(
                "  - {} {} {} {} ({})",
                a.component, a.version, a.file_name, a.digest, a.url
            );
            assert!(err.contains(&line), "missing `{line}` in:\n{err}");
        }
        assert!(
            err.contains("\n    imagegen fetch --arch arm64 --profile p.yaml\n"),
            "{err}"
        );
        assert!(err.contains("imagegen cache import FILE..."), "{err}");
        assert_eq!(srv.total_hits(), 0, "offline must not touch the network");
        assert!(files_in(&cache.path().join("sha256")).is_empty());
    }

    #[test]
    fn offline_reads_a_file_mirror() {
        let http = TestServer::start();
        let (c, r) = (containerd(), runc());
        let arts = [pin(&c, "https://github.com"), pin(&r, "https://github.com")];
        let mirror = tempfile::tempdir().unwrap();
        for fx in [&c, &r] {
            let p = mirror.path().join(format!("github.com{}", fx.path));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &fx.bytes).unwrap();
        }
        let file_mirror = Url::from_directory_path(mirror.path()).unwrap().to_string();
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.offline = true;
        o.mirrors = vec![http.url("/mirror"), file_mirror.clone()];

        let got = resolve(&arts, &o).unwrap();
        for (res, a) in got.iter().zip(&arts) {
            assert_eq!(
                res.origin,
                Origin::Mirror {
                    url: mirror_url(&file_mirror, &a.url).unwrap()
                }
            );
        }
        assert_eq!(std::fs::read(&got[1].path).unwrap(), r.bytes);
        assert_eq!(http.total_hits(), 0);
        assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
    }

    #[test]
    fn the_same_digest_twice_is_downloaded_once() {
        let srv = TestServer::start();
        let r = runc();
        srv.add(&r.path, r.bytes.clone());
        let a = pin(&r, &srv.base());
        let mut b = a.clone();
        b.component = "runc-again".into();
        let c = cni();
        srv.add(&c.path, c.bytes.clone());
        let cc = pin(&c, &srv.base());
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(&[a.clone(), cc.clone(), b.clone()], &opts(cache.path())).unwrap();
        assert_eq!(srv.hits(&r.path), 1);
        assert_eq!(got[0].artifact, a);
        assert_eq!(got[1].artifact, cc);
        assert_eq!(got[2].artifact, b);
        assert_eq!(got[0].path, got[2].path);
    }

    #[test]
    fn downloads_run_in_parallel_within_the_jobs_bound() {
        let srv = TestServer::start();
        let mut arts = Vec::new();
        for i in 0..8u64 {
            let bytes = generated_bytes(100 + i, 256 * 1024);
            let path = format!("/kubernetes/release/v1.30.{i}/bin/linux/arm64/kubelet");
            srv.add_with(
                &path,
                bytes.clone(),
                Behaviour {
                    pace: Some(Duration::from_millis(50)),
                    ..Behaviour::default()
                },
            );
            arts.push(Artifact {
                component: format!("kubelet-{i}"),
                version: format!("1.30.{i}"),
                url: srv.url(&path),
                file_name: "kubelet".into(),
                digest: hash_reader(Algo::Sha256, &bytes[..]).unwrap(),
            });
        }
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.jobs = 3;
        resolve(&arts, &o).unwrap();
        assert_eq!(srv.total_hits(), 8);
        let max = srv.max_concurrent();
        assert!(max <= 3, "{max} requests at once with jobs = 3");
        assert!(max >= 2, "downloads did not overlap (max {max})");
    }

    #[test]
    fn every_failure_of_a_parallel_run_is_reported() {
        let srv = TestServer::start();
        let fxs = [containerd(), runc(), cni()];
        srv.add(&fxs[2].path, fxs[2].bytes.clone());
        let arts: Vec<Artifact> = fxs.iter().map(|f| pin(f, &srv.base())).collect();
        let cache = tempfile::tempdir().unwrap();
        let err = format!("{:#}", resolve(&arts, &opts(cache.path())).unwrap_err());
        assert!(
            err.starts_with("could not fetch 2 of 3 artifact(s):"),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}: not found", arts[0].url)),
            "{err}"
        );
        assert!(
            err.contains(&format!("{}: not found", arts[1].url)),
            "{err}"
        );
        // The one that worked is verified and kept.
        assert_eq!(files_in(cache.path()), entries(&[&arts[2]]));
    }

    #[test]
    fn import_matches_sha256_and_sha512_pins_and_rejects_strangers() {
        let (c, r) = (containerd(), runc());
        let mut r256 = pin(&r, "https://github.com");
        r256.component = "runc-sha256".into();
        r256.digest = hash_reader(Algo::Sha256, &r.bytes[..]).unwrap();
        let pins = [
            pin(&c, "https://github.com"),
            pin(&r, "https://github.com"),
            r256,
        ];
        let downloads = tempfile::tempdir().unwrap();
        let cfile = downloads
            .path()
            .join("containerd-1.7.20-linux-arm64.tar.gz");
        let rfile = downloads.path().join("runc.arm64");
        let stranger = downloads.path().join("runc.amd64");
        std::fs::write(&cfile, &c.bytes).unwrap();
        std::fs::write(&rfile, &r.bytes).unwrap();
        std::fs::write(&stranger, generated_bytes(99, 1000)).unwrap();
        let cache = tempfile::tempdir().unwrap();

        let got = import_files(cache.path(), &[cfile.clone(), rfile.clone()], &pins).unwrap();
        // runc matches both its sha512 pin and the sha256 one: stored under both digests.
        assert_eq!(
            got,
            [
                (cfile.clone(), pins[0].clone()),
                (rfile.clone(), pins[1].clone()),
                (rfile.clone(), pins[2].clone())
            ]
        );
        let all = entries(&[&pins[0], &pins[1], &pins[2]]);
        assert_eq!(files_in(cache.path()), all);

        let mut o = opts(cache.path());
        o.offline = true;
        let res = resolve(&pins, &o).unwrap();
        assert!(res.iter().all(|r| r.origin == Origin::Cache));

        let err = format!(
            "{:#}",
            import_files(cache.path(), &[stranger.clone(), cfile.clone()], &pins).unwrap_err()
        );
        assert!(
            err.contains("1 of 2 file(s) match no pinned artifact"),
            "{err}"
        );
        assert!(err.contains(&stranger.display().to_string()), "{err}");
        assert!(!err.contains(&format!("- {} (", cfile.display())), "{err}");
        assert_eq!(files_in(cache.path()), all);
    }

    #[cfg(target_os = "linux")]
    fn status_kib(field: &str) -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = s.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_download_is_streamed_in_bounded_memory() {
        // RSS is the whole test process's: nothing else heavy may run meanwhile.
        let _load = alone();
        const LEN: u64 = 200 * 1024 * 1024;
        let srv = TestServer::start();
        let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
        srv.add_body(
            path,
            Body::Generated { len: LEN, seed: 42 },
            Behaviour::default(),
        );
        let digest = hash_reader(
            Algo::Sha256,
            GeneratedReader {
                seed: 42,
                pos: 0,
                len: LEN,
            },
        )
        .unwrap();
        let art = Artifact {
            component: "kubernetes-node".into(),
            version: "1.30.0".into(),
            url: srv.url(path),
            file_name: "kubernetes-node-linux-arm64.tar.gz".into(),
            digest,
        };
        let cache = tempfile::tempdir().unwrap();
        // "5" resets VmHWM to the current RSS, so the peak below is this download's.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let base = if reset {
            status_kib("VmRSS:")
        } else {
            status_kib("VmHWM:")
        };
        let got = resolve(&[art], &opts(cache.path())).unwrap();
        let peak = status_kib("VmHWM:");
        assert_eq!(std::fs::metadata(&got[0].path).unwrap().len(), LEN);
        let grew_mib = peak.saturating_sub(base) / 1024;
        eprintln!("peak RSS grew by {grew_mib} MiB during a 200 MiB download");
        assert!(
            grew_mib < 64,
            "peak RSS grew by {grew_mib} MiB for a 200 MiB download"
        );
    }

    const BIG: u64 = 40 * 1024 * 1024;

    /// Serves a generated `len`-byte file at `path` and pins it (sha256).
    fn big_file(srv: &TestServer, path: &str, seed: u64, len: u64, b: Behaviour) -> Artifact {
        srv.add_body(path, Body::Generated { len, seed }, b);
        Artifact {
            component: "kubernetes-node".into(),
            version: "1.30.0".into(),
            url: srv.url(path),
            file_name: path.rsplit('/').next().unwrap().into(),
            digest: hash_reader(Algo::Sha256, GeneratedReader { seed, pos: 0, len }).unwrap(),
        }
    }

    /// Keeps every request in flight long enough for the other connections to join in.
    fn paced() -> Behaviour {
        Behaviour {
            pace: Some(Duration::from_millis(2)),
            ..Behaviour::default()
        }
    }

    /// `(first, last)` of every `bytes=first-last` request on `path` answered with 206.
    fn ranges_served(srv: &TestServer, path: &str) -> Vec<(u64, u64)> {
        requests(srv, path)
            .into_iter()
            .filter(|(_, status)| *status == 206)
            .map(|(range, _)| {
                let spec = range.unwrap();
                let (a, b) = spec
                    .strip_prefix("bytes=")
                    .unwrap()
                    .split_once('-')
                    .unwrap();
                (a.parse().unwrap(), b.parse().expect("a closed range"))
            })
            .collect()
    }

    /// Resolving verified the sha256 of the generated stream; this only rules out trailing bytes.
    fn assert_len(path: &Path, len: u64) {
        assert_eq!(std::fs::metadata(path).unwrap().len(), len);
    }

    /// Tests that move many MiB through debug-built code load both cores; the tests that rely on a
    /// short timeout or measure the process's RSS do not run next to them.
    static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

    fn heavy() -> std::sync::RwLockReadGuard<'static, ()> {
        LOAD.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
        LOAD.write().unwrap_or_else(PoisonError::into_inner)
    }

    #[test]
    fn a_large_file_is_fetched_over_several_ranged_connections_from_one_mirror() {
        let _load = heavy();
        let upstream = TestServer::start();
        let mirror = TestServer::start();
        let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
        let art = big_file(&upstream, path, 7, BIG, paced());
        let on_mirror = format!("/m/{}{path}", upstream.authority());
        big_file(&mirror, &on_mirror, 7, BIG, paced());
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.mirrors = vec![mirror.url("/m")];

        let got = resolve(std::slice::from_ref(&art), &o).unwrap();
        assert_eq!(
            got[0].origin,
            Origin::Mirror {
                url: mirror.url(&on_mirror)
            }
        );
        assert_len(&got[0].path, BIG);
        assert_eq!(files_in(cache.path()), entries(&[&art]));
        assert_eq!(
            upstream.total_hits(),
            0,
            "every piece comes from the mirror"
        );

        let reqs = requests(&mirror, &on_mirror);
        assert_eq!(reqs[0], (None, 200), "{reqs:?}");
        let ranges = ranges_served(&mirror, &on_mirror);
        assert_eq!(ranges.len(), reqs.len() - 1, "{reqs:?}");
        assert!(!ranges.is_empty(), "never split: {reqs:?}");
        let distinct: BTreeSet<_> = ranges.iter().collect();
        assert_eq!(distinct.len(), ranges.len(), "{reqs:?}");
        for &(a, b) in &ranges {
            assert!(a > 0 && a <= b && b < BIG, "{a}-{b}");
        }
        let max = mirror.max_concurrent_on(&on_mirror);
        assert!(
            max <= o.jobs,
            "{max} connections at once with jobs = {}",
            o.jobs
        );
        // The first stream holds its response open until the first ranged request answered.
        assert!(max >= 2, "pieces did not overlap: {reqs:?}");
    }

    #[test]
    fn a_dropped_piece_and_a_dropped_first_stream_are_resumed() {
        let _load = heavy();
        let srv = TestServer::start();
        let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-amd64.tar.gz";
        let art = big_file(
            &srv,
            path,
            8,
            BIG,
            Behaviour {
                drop_after: Some(1_000_000),
                drop_partial_after: Some(3_000_000),
                ..paced()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
        assert_len(&got[0].path, BIG);
        assert_eq!(files_in(cache.path()), entries(&[&art]));

        let reqs = requests(&srv, path);
        assert_eq!(reqs[0], (None, 200), "{reqs:?}");
        // The first stream went on from where it stopped (its end may be lowered by then).
        assert!(
            reqs.iter().any(|(r, s)| *s == 206
                && r.as_deref()
                    .is_some_and(|r| r.starts_with("bytes=1000000-"))),
            "{reqs:?}"
        );
        // One answer with 206 (a piece, or the first stream's resume) was cut after 3 MB and
        // asked for again from there.
        let ranges = ranges_served(&srv, path);
        assert!(
            ranges
                .iter()
                .any(|(a, _)| ranges.iter().any(|(b, _)| *b == a + 3_000_000)),
            "no range was resumed: {reqs:?}"
        );
        assert!(
            ranges
                .iter()
                .any(|(a, _)| *a != 1_000_000 && *a != 4_000_000),
            "never split: {reqs:?}"
        );
    }

    #[test]
    fn a_server_that_ignores_ranges_gets_one_stream_per_file() {
        let _load = heavy();
        let srv = TestServer::start();
        let ignores = "/kubernetes/release/v1.30.0/kubernetes-server-linux-arm64.tar.gz";
        let silent = "/kubernetes/release/v1.30.0/kubernetes-client-linux-arm64.tar.gz";
        let len = 20 * 1024 * 1024;
        let a = big_file(
            &srv,
            ignores,
            9,
            len,
            Behaviour {
                ranges: Ranges::Ignore,
                // The first stream reaches the start of the range it gave away (~10 MiB, 0.3 s)
                // before the ranged request is answered: it must wait there, then go on.
                range_delay: Some(Duration::from_millis(1500)),
                ..paced()
            },
        );
        let b = big_file(
            &srv,
            silent,
            10,
            len,
            Behaviour {
                ranges: Ranges::NotAdvertised,
                ..paced()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let got = resolve(&[a.clone(), b.clone()], &opts(cache.path())).unwrap();
        assert_len(&got[0].path, len);
        assert_len(&got[1].path, len);
        assert_eq!(files_in(cache.path()), entries(&[&a, &b]));

        // One ranged request (answered with the whole file) showed ranges don't work; the first
        // stream then went on alone.
        let reqs = requests(&srv, ignores);
        assert_eq!(reqs.len(), 2, "{reqs:?}");
        assert_eq!(reqs[0], (None, 200));
        assert_eq!(reqs[1].1, 200);
        assert!(reqs[1]
            .0
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=")));
        // Without Accept-Ranges nothing is even asked.
        assert_eq!(requests(&srv, silent), [(None, 200)]);
    }

    #[test]
    fn digest_mismatch_on_a_split_download_keeps_nothing() {
        let _load = heavy();
        let srv = TestServer::start();
        let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
        let mut art = big_file(&srv, path, 11, BIG, paced());
        let actual = art.digest.clone();
        art.digest = hash_reader(Algo::Sha256, &b"something else"[..]).unwrap();
        let cache = tempfile::tempdir().unwrap();

        let err = format!(
            "{:#}",
            resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap_err()
        );
        assert!(
            err.contains(&format!(
                "digest mismatch for {}: expected {}, got {actual}; the download was discarded",
                art.url, art.digest
            )),
            "{err}"
        );
        assert!(!ranges_served(&srv, path).is_empty(), "{:?}", srv.log());
        assert!(
            files_in(cache.path()).is_empty(),
            "{:?}",
            files_in(cache.path())
        );
    }

    #[test]
    fn a_failing_piece_fails_the_source_and_the_next_one_is_tried() {
        let _load = heavy();
        let upstream = TestServer::start();
        let mirror = TestServer::start();
        let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
        let art = big_file(&upstream, path, 12, BIG, paced());
        // The mirror confirms ranges, then cuts that first piece off at once; without retries
        // this source fails as a whole and upstream serves the file.
        let on_mirror = format!("/m/{}{path}", upstream.authority());
        big_file(
            &mirror,
            &on_mirror,
            12,
            BIG,
            Behaviour {
                drop_partial_after: Some(0),
                ..paced()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.mirrors = vec![mirror.url("/m")];
        o.retries = 0;
        let got = resolve(std::slice::from_ref(&art), &o).unwrap();
        assert_eq!(
            got[0].origin,
            Origin::Upstream {
                url: art.url.clone()
            }
        );
        assert_len(&got[0].path, BIG);
        assert_eq!(files_in(cache.path()), entries(&[&art]));
        assert!(
            requests(&mirror, &on_mirror).contains(&(None, 200)),
            "{:?}",
            mirror.log()
        );
        assert!(
            !ranges_served(&mirror, &on_mirror).is_empty(),
            "{:?}",
            mirror.log()
        );
    }

    #[test]
    fn several_large_files_share_the_jobs_budget() {
        let _load = heavy();
        let srv = TestServer::start();
        let len = 32 * 1024 * 1024;
        let arts: Vec<Artifact> = (0..3u64)
            .map(|i| {
                let path = format!("/kubernetes/release/v1.30.{i}/kubernetes-node.tar.gz");
                let mut a = big_file(&srv, &path, 20 + i, len, paced());
                a.component = format!("kubernetes-node-{i}");
                a
            })
            .collect();
        let cache = tempfile::tempdir().unwrap();
        let mut o = opts(cache.path());
        o.jobs = 4;
        let got = resolve(&arts, &o).unwrap();
        for g in &got {
            assert_len(&g.path, len);
        }
        let ranged = srv.log().iter().filter(|h| h.range.is_some()).count();
        assert!(ranged >= 1, "no file was split: {:?}", srv.log());
        let max = srv.max_concurrent();
        assert!(max <= 4, "{max} connections at once with jobs = 4");
        assert!(max >= 2, "downloads did not overlap (max {max})");
    }

    #[test]
    fn steals_halve_the_largest_piece_and_a_refused_probe_gives_it_back() {
        let file = tempfile::tempfile().unwrap();
        let meter = Meter {
            bar: ProgressBar::hidden(),
            overall: None,
        };
        let mib = 1024 * 1024;
        let s = Split::new("http://x/f", 64 * mib, file, meter, 0);
        assert_eq!(s.steal(), Some(1));
        assert_eq!(s.steal(), None, "no second piece before the probe answered");
        assert!(s.refuse(1));
        assert_eq!(
            lock(&s.state).pieces,
            [
                Piece {
                    pos: 0,
                    end: 64 * mib
                },
                Piece {
                    pos: 32 * mib,
                    end: 32 * mib
                }
            ]
        );
        assert_eq!(s.steal(), None, "ranges do not work here");

        let s = Split::new(
            "http://x/f",
            64 * mib,
            tempfile::tempfile().unwrap(),
            s.meter.clone(),
            0,
        );
        assert_eq!(s.steal(), Some(1));
        assert!(s.confirm(1));
        assert!(!s.refuse(1));
        assert_eq!(s.steal(), Some(2));
        let pieces = lock(&s.state).pieces.clone();
        assert_eq!(
            pieces,
            [
                Piece {
                    pos: 0,
                    end: 32 * mib
                },
                Piece {
                    pos: 32 * mib,
                    end: 48 * mib
                },
                Piece {
                    pos: 48 * mib,
                    end: 64 * mib
                },
            ]
        );
        // The piece with the most left is split next, however far the others are.
        lock(&s.state).pieces[1].pos = 46 * mib;
        lock(&s.state).pieces[2].pos = 50 * mib;
        assert_eq!(s.steal(), Some(3));
        assert_eq!(lock(&s.state).pieces[0].end, 16 * mib);
        assert_eq!(
            lock(&s.state).pieces[3],
            Piece {
                pos: 16 * mib,
                end: 32 * mib
            }
        );
        // A connection stops at its (lowered) end.
        match s.claim(0, 17 * mib) {
            Claim::Write { at, len, done } => assert_eq!((at, len, done), (0, 16 * mib, true)),
            Claim::Stop => panic!("stopped"),
        }
    }

    #[test]
    fn mirror_url_keeps_the_upstream_host_and_path() {
        let up = "https://github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz";
        assert_eq!(
            mirror_url("http://127.0.0.1:8080/m", up).unwrap(),
            "http://127.0.0.1:8080/m/github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz"
        );
        assert_eq!(
            mirror_url(
                "https://files.example/repo/",
                "https://dl.k8s.io/release/v1.30.0/bin/linux/arm64/kubelet"
            )
            .unwrap(),
            "https://files.example/repo/dl.k8s.io/release/v1.30.0/bin/linux/arm64/kubelet"
        );
        assert_eq!(
            mirror_url("file:///srv/mirror", "http://127.0.0.1:9000/a/b.tgz").unwrap(),
            "file:///srv/mirror/127.0.0.1:9000/a/b.tgz"
        );
        let e = mirror_url("ftp://m/", up).unwrap_err().to_string();
        assert!(e.contains("mirror `ftp://m/` must be"), "{e}");
        let e = mirror_url("http://m", "https://x.io/a?raw=true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("query"), "{e}");
        let e = mirror_url("http://m", "not a url").unwrap_err().to_string();
        assert!(e.contains("upstream URL `not a url`"), "{e}");
    }

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
}
