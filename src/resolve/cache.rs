//! The content-addressed download cache: `<cache>/<algo>/<hex>` holds a file whose digest was
//! verified to be `<algo>:<hex>`, so a file is found by its pin alone and never fetched twice.
//!
//! Re-hashing every entry on every run would cost seconds for a few hundred MiB, so each entry has
//! a stamp (`fsutil`'s format, `.<hex>.stamp` beside it) with its size and mtime when it was last
//! verified; an entry that still matches its stamp is trusted, any other one is hashed again.
//! Downloads in progress live in `<cache>/tmp/`, and a file only becomes an entry (by rename)
//! after its digest matched, so a crash can never leave a wrong entry.
//!
//! Several imagegen processes may share a cache: each artifact is worked on under a lock of its
//! own (`tmp/<algo>-<hex>.lock`, deleted after use), so two runs that need the same file fetch it
//! once, the second one finding the first one's entry. An HTTP download goes to
//! `tmp/<algo>-<hex>.part`, named by what it will be, so that a run that was killed or gave up
//! leaves it for the next run to continue with a `Range` request rather than start over (its
//! bytes are hashed again with the rest: the whole file is always checked against the pin).
//! Other temp files name their process and are swept once it is gone.

use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::digest::{Algo, Digest};
use crate::fsutil;

/// What an entry looked like when its digest was last verified.
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

/// The lock file of the work on `d` in the cache under `root` (see [`Cache::lock`]).
pub(super) fn lock_path(root: &Path, d: &Digest) -> PathBuf {
    root.join("tmp")
        .join(format!("{}-{}.lock", d.algo().name(), d.hex()))
}

/// Where the cache under `root` keeps the file pinned by `d`, whether it is there or not.
pub(super) fn entry_path(root: &Path, d: &Digest) -> PathBuf {
    root.join(d.algo().name()).join(d.hex())
}

pub(super) struct Cache {
    root: PathBuf,
    tmp: PathBuf,
}

impl Cache {
    pub(super) fn open(root: &Path) -> Result<Cache> {
        let tmp = root.join("tmp");
        fs_err::create_dir_all(&tmp).context("creating the download cache")?;
        let cache = Cache {
            root: root.to_path_buf(),
            tmp,
        };
        cache.sweep();
        Ok(cache)
    }

    /// Removes what killed runs left: temp files whose process is gone, and lock files nobody
    /// holds. Partial downloads stay, to be continued.
    fn sweep(&self) {
        fsutil::sweep_stale(&self.tmp, "");
        for algo in [Algo::Sha256, Algo::Sha512] {
            fsutil::sweep_stale(&self.root.join(algo.name()), "");
        }
        let Ok(entries) = fs_err::read_dir(&self.tmp) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".lock") {
                fsutil::Lock::remove_if_stale(&e.path());
            }
        }
    }

    /// `tmp/<algo>-<hex>` plus `suffix`: the files of the work on `d`.
    fn work_path(&self, d: &Digest, suffix: &str) -> PathBuf {
        self.tmp
            .join(format!("{}-{}{suffix}", d.algo().name(), d.hex()))
    }

    /// Waits for and takes the lock of the work on `d` (look up, fetch, store), showing
    /// `waiting` a line first if another process holds it.
    pub(super) fn lock(&self, d: &Digest, waiting: impl FnOnce(&str)) -> Result<fsutil::Lock> {
        fsutil::Lock::acquire_transient(&self.work_path(d, ".lock"), waiting)
    }

    /// The lock of the work on `d`, or `None` at once when another process holds it.
    pub(super) fn try_lock(&self, d: &Digest) -> Result<Option<fsutil::Lock>> {
        fsutil::Lock::try_acquire_transient(&self.work_path(d, ".lock"))
    }

    /// The partial download of `d`, as an earlier run left it (or a new, empty one). The caller
    /// must hold [`Cache::lock`] for `d`.
    pub(super) fn part(&self, d: &Digest) -> Result<Part> {
        Part::open(
            self.work_path(d, ".part"),
            self.work_path(d, ".part.prefix"),
        )
    }

    /// Moves a complete, verified partial download to the entry for `d`.
    pub(super) fn store_part(&self, mut part: Part, d: &Digest) -> Result<PathBuf> {
        let path = self.entry(d);
        fs_err::create_dir_all(path.parent().unwrap_or(&self.root))?;
        part.file
            .sync_data()
            .with_context(|| format!("writing {}", part.path.display()))?;
        fs_err::rename(&part.path, &path)?;
        part.stored = true;
        let _ = fs_err::remove_file(&part.prefix_path);
        fsutil::write_stamp(&path, &Stamp::of(&path)?)?;
        Ok(path)
    }

    fn entry(&self, d: &Digest) -> PathBuf {
        entry_path(&self.root, d)
    }

    /// A new file in `<cache>/tmp/` (owner-only, as before it is known to be the pinned file),
    /// deleted when dropped unless [`Cache::store`]d.
    pub(super) fn temp_file(&self) -> Result<NamedTempFile> {
        fsutil::temp_file_beside(&self.tmp.join("download"), 0o600)
    }

    /// The verified entry for `d`, if there is one. A changed entry is re-hashed; a wrong one is
    /// deleted (`discarded` says so, for the progress output).
    pub(super) fn lookup(
        &self,
        d: &Digest,
        discarded: impl FnOnce(&Path),
    ) -> Result<Option<PathBuf>> {
        let path = self.entry(d);
        let file = match fsutil::open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // Not a regular file (a FIFO, a directory): not an entry this cache wrote.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                discarded(&path);
                remove_any(&path)?;
                let _ = fs_err::remove_file(fsutil::stamp_path(&path));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let now = Stamp::of(&path)?;
        if fsutil::read_stamp::<Stamp>(&path).as_ref() == Some(&now) {
            return Ok(Some(path));
        }
        let ok = d
            .matches_reader(file)
            .with_context(|| format!("hashing cache entry {}", path.display()))?;
        if ok {
            fsutil::write_stamp(&path, &now)?;
            return Ok(Some(path));
        }
        discarded(&path);
        fs_err::remove_file(&path)?;
        let _ = fs_err::remove_file(fsutil::stamp_path(&path));
        Ok(None)
    }

    /// Moves a fully written, verified temp file to the entry for `d` (durable before it becomes
    /// visible: a torn entry would otherwise look verified).
    pub(super) fn store(&self, tmp: NamedTempFile, d: &Digest) -> Result<PathBuf> {
        let path = self.entry(d);
        fs_err::create_dir_all(path.parent().unwrap_or(&self.root))?;
        fsutil::persist(tmp, &path)?;
        fsutil::write_stamp(&path, &Stamp::of(&path)?)?;
        Ok(path)
    }
}

/// Removes whatever is at `path`: a file, a FIFO, a directory tree.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs_err::remove_dir_all(path),
        Ok(_) => fs_err::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Records in the sidecar `path` that bytes `[0, n)` of its partial download are complete, for
/// a run that continues the download after this one stopped while other connections were
/// writing further on in the file.
pub(super) fn record_prefix(path: &Path, n: u64) -> Result<()> {
    let path = camino::Utf8Path::from_path(path)
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    fsutil::write_atomic(path, format!("{n}\n").as_bytes(), 0o600)
}

/// The digest whose partial download `name` (in `tmp/`) holds, read back from the name
/// [`Cache::work_path`] gives it; `None` for any other file.
pub(super) fn partial_digest(name: &str) -> Option<Digest> {
    let (algo, hex) = name.strip_suffix(".part")?.split_once('-')?;
    Digest::parse(&format!("{algo}:{hex}")).ok()
}

/// A download in progress in `tmp/<algo>-<hex>.part`. Bytes are written in order from the
/// start, except while other connections fetch later ranges of it (`split`): then the sidecar
/// `.part.prefix` records how much of the start is known to be complete, and the rest is not
/// trusted by the next run. Deleted when dropped empty; kept (for the next run) otherwise,
/// unless [`Part::discard`]ed.
pub(super) struct Part {
    file: std::fs::File,
    path: PathBuf,
    prefix_path: PathBuf,
    /// Bytes an earlier run left that can be continued from.
    resume: u64,
    stored: bool,
}

impl Part {
    fn open(path: PathBuf, prefix_path: PathBuf) -> Result<Part> {
        let file = match fsutil::open_writable(&path, 0o600) {
            // Not a regular file (a FIFO, a directory): not something this cache wrote.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                remove_any(&path)?;
                fsutil::open_writable(&path, 0o600)?
            }
            other => other?,
        }
        .into_parts()
        .0;
        let len = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let recorded = match fsutil::open_regular(&prefix_path) {
            Ok(f) => {
                let mut text = String::new();
                io::Read::read_to_string(&mut io::Read::take(f, 32), &mut text).ok();
                // A sidecar that does not parse trusts nothing of the file.
                Some(text.trim().parse::<u64>().unwrap_or(0))
            }
            Err(_) => None,
        };
        let resume = recorded.map_or(len, |r| r.min(len));
        if resume != len {
            file.set_len(resume)
                .with_context(|| format!("truncating {}", path.display()))?;
        }
        if recorded.is_some() {
            fsutil::remove_if_exists(&prefix_path)?;
        }
        Ok(Part {
            file,
            path,
            prefix_path,
            resume,
            stored: false,
        })
    }

    pub(super) fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// How many bytes an earlier run left to continue from (0: start from scratch).
    pub(super) fn resume_len(&self) -> u64 {
        self.resume
    }

    /// Where [`record_prefix`] records how much of the file is complete while other
    /// connections write further on in it.
    pub(super) fn prefix_path(&self) -> &Path {
        &self.prefix_path
    }

    /// Empties the file: what it holds is of no use (wrong bytes, or too many).
    pub(super) fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .with_context(|| format!("truncating {}", self.path.display()))?;
        self.resume = 0;
        fsutil::remove_if_exists(&self.prefix_path)
    }

    /// Writes `data` at `offset`.
    pub(super) fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if self.stored {
            return;
        }
        if self.file.metadata().map_or(true, |m| m.len() == 0) {
            let _ = fs_err::remove_file(&self.path);
            let _ = fs_err::remove_file(&self.prefix_path);
        }
    }
}
