//! Stage: for one node role, put exactly the files its install rules name into an overlay tree a
//! person can inspect (`out/<arch>/overlay/<role>/usr/local/bin/runc`...) and pack that tree once
//! as a deterministic gzip-compressed newc cpio (`out/<arch>/overlay-<role>.cpio.gz`).
//!
//! - Archives are read once each, streamed (tar over a gzip decoder), and only the selected
//!   members are written. Nothing is ever held whole in memory.
//! - The tree is built in a temp dir beside `overlay_root` and the archive in a temp file beside
//!   `archive_path`; both are renamed into place only when everything succeeded, so a failure
//!   leaves what was there before (or nothing).
//! - The cpio holds regular files only, no directory entries: the nodes are merged-/usr systems
//!   where `/bin` is a symlink to `usr/bin`, and a `bin` directory entry extracted by
//!   `cpio -idmu` would replace that symlink and break the node.
//! - A stamp beside the archive (`.overlay-<role>.cpio.gz.stamp`, the `fsutil` stamp format)
//!   records what the archive was built from; when nothing changed, the previous result is
//!   reused without extracting or packing.
//!
//! Deliberate choices:
//! - Every entry of an archive we extract from is checked for absolute paths and `..`
//!   components, not only the selected ones: such a name cannot be matched to a rule with any
//!   confidence, and no well-formed release tarball has one. Links are refused only where a rule
//!   selects them (an unselected symlink is never written, so it cannot escape).
//! - A member present twice in an archive is an error rather than "last one wins", and so is a
//!   node path that two rules install.
//!
//! One file per concern: `rules` (what a request may ask for), `extract` (archives to tree),
//! `cpio` and `gzip` (tree to archive), `reuse` (the stamp).

mod cpio;
mod extract;
mod gzip;
mod reuse;
mod rules;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::fsutil;
use crate::plan::InstallRule;

/// A packed overlay is build output anyone may read (it holds no secrets).
const ARCHIVE_MODE: u32 = 0o644;

/// What to stage for one role.
pub struct StageRequest<'a> {
    /// Role name, e.g. `worker`; used in file names, so `[A-Za-z0-9._-]` only.
    pub role: &'a str,
    pub rules: &'a [InstallRule],
    /// Component -> verified file in the download cache.
    pub artifacts: &'a BTreeMap<String, PathBuf>,
    /// Component -> the pinned digest that file was verified against (keys the reuse stamp).
    pub artifact_digests: &'a BTreeMap<String, Digest>,
    /// Component -> how errors name its artifact, e.g. `containerd 1.7.20 for amd64
    /// (https://...)`; a component missing here is named by its path in the cache.
    pub artifact_names: &'a BTreeMap<String, String>,
    /// `out/<arch>/overlay/<role>`: replaced as a whole.
    pub overlay_root: &'a Path,
    /// `out/<arch>/overlay-<role>.cpio.gz`; its stamp sits beside it (`fsutil::stamp_path`).
    pub archive_path: &'a Path,
    /// mtime of every cpio entry (SOURCE_DATE_EPOCH or a constant); newc holds 32 bits.
    pub mtime: u64,
}

/// One file of the overlay, as it will be on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayEntry {
    /// Absolute node path, e.g. `/usr/local/bin/runc`.
    pub path: String,
    /// Permission bits only (the file type is always "regular file").
    pub mode: u32,
    pub size: u64,
    pub sha256: Digest,
}

/// The staged overlay of one role: its manifest (sorted by path) and its packed archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    pub role: String,
    pub entries: Vec<OverlayEntry>,
    pub archive: PathBuf,
    pub archive_sha256: Digest,
    pub archive_size: u64,
    /// True when a previous result with identical inputs was reused and nothing was written.
    pub reused: bool,
}

/// Stages and packs one role's overlay; see the module docs.
pub fn stage_role(req: &StageRequest) -> Result<Overlay> {
    stage_role_inner(req).with_context(|| format!("staging the overlay of role `{}`", req.role))
}

/// Packs the given files of `root` (each at `root/<path without leading slash>`) into a
/// deterministic gzip-compressed newc cpio at `dest` (temp file + rename). Returns the sha256 and
/// size of the written file. Fails, leaving `dest` untouched, if a file's size or sha256 differs
/// from its entry (it changed after staging or while being packed).
pub fn pack_cpio_gz(
    root: &Path,
    entries: &[OverlayEntry],
    dest: &Path,
    mtime: u64,
) -> Result<(Digest, u64)> {
    let tmp = fsutil::temp_file_beside(dest, ARCHIVE_MODE)?;
    let packed = cpio::write_cpio_gz(root, entries, tmp.as_file(), mtime, true)
        .with_context(|| format!("packing `{}` into `{}`", root.display(), dest.display()))?;
    fsutil::persist(tmp, dest)?;
    Ok(packed)
}

fn stage_role_inner(req: &StageRequest) -> Result<Overlay> {
    rules::check_request(req)?;
    let key = reuse::stamp_key(req)?;
    if let Some(overlay) = reuse::try_reuse(req, &key)? {
        return Ok(overlay);
    }

    let tree = fsutil::temp_dir_beside(req.overlay_root)?;
    let entries = extract::extract_all(req, tree.path())?;
    let archive = fsutil::temp_file_beside(req.archive_path, ARCHIVE_MODE)?;
    let (archive_sha256, archive_size) =
        // The tree was written by this call into a private temp dir and hashed on the way in:
        // sizes are still checked, contents are not hashed a second time.
        cpio::write_cpio_gz(tree.path(), &entries, archive.as_file(), req.mtime, false)
            .with_context(|| format!("packing `{}`", req.archive_path.display()))?;

    // Commit. The stamp goes first and comes back last, so an interruption anywhere in between
    // leaves no stamp and the next run rebuilds instead of trusting a mixed state.
    fsutil::remove_if_exists(&fsutil::stamp_path(req.archive_path))?;
    // Temp dirs are created private (0700); the tree is build output like the archive.
    fs_err::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o755))?;
    fsutil::replace_dir(tree.path(), req.overlay_root)?;
    // Renamed away: nothing is left at the temp path for the guard to delete.
    let _ = tree.keep();
    fsutil::persist(archive, req.archive_path)?;
    let overlay = Overlay {
        role: req.role.to_string(),
        entries,
        archive: req.archive_path.to_path_buf(),
        archive_sha256,
        archive_size,
        reused: false,
    };
    reuse::write_stamp(&key, &overlay)?;
    Ok(overlay)
}
