//! The content-addressed download cache: `<cache>/<algo>/<hex>` holds a file whose digest was
//! verified to be `<algo>:<hex>`, so a file is found by its pin alone and never fetched twice.
//!
//! Re-hashing every entry on every run would cost seconds for a few hundred MiB, so each entry has
//! a stamp (`fsutil`'s format, `.<hex>.stamp` beside it) with its size and mtime when it was last
//! verified; an entry that still matches its stamp is trusted, any other one is hashed again.
//! Downloads in progress live in `<cache>/tmp/`, and a file only becomes an entry (by rename)
//! after its digest matched, so a crash can never leave a wrong entry.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::digest::Digest;
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

pub(super) struct Cache {
    root: PathBuf,
    tmp: PathBuf,
}

impl Cache {
    pub(super) fn open(root: &Path) -> Result<Cache> {
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
