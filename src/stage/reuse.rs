//! Reuse: staging a role's overlay inflates, hashes and recompresses every binary it installs,
//! and a rebuild with the same inputs would produce the same bytes. The stamp beside the archive
//! (the `fsutil` stamp format) records a key over everything the bytes depend on and the
//! resulting `Overlay`; when the key matches and the archive on disk is still the one recorded,
//! the previous result is returned without reading an artifact or writing a file (nor the
//! archive itself, when it is no newer than its stamp).

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use super::{Overlay, StageRequest};
use crate::digest::{hash_reader, sha256_bytes, Algo, Digest};
use crate::fsutil;
use crate::plan::InstallRule;

/// Bumped when the layout or packing changes in a way the crate version would not reveal.
const STAMP_FORMAT: u32 = 2;

#[derive(Serialize, Deserialize)]
struct Stamp {
    key: Digest,
    overlay: Overlay,
}

/// sha256 over everything the packed bytes depend on: rules, the digests of the artifacts they
/// read, mtime and this code's version.
pub(crate) fn stamp_key(req: &StageRequest) -> Result<Digest> {
    #[derive(Serialize)]
    struct Inputs<'a> {
        format: u32,
        tool: &'a str,
        tool_version: &'a str,
        role: &'a str,
        mtime: u64,
        rules: &'a [InstallRule],
        artifacts: BTreeMap<&'a str, &'a Digest>,
    }
    let artifacts = req
        .rules
        .iter()
        .map(|r| (r.component.as_str(), &req.artifact_digests[&r.component]))
        .collect();
    let inputs = Inputs {
        format: STAMP_FORMAT,
        tool: env!("CARGO_PKG_NAME"),
        tool_version: env!("CARGO_PKG_VERSION"),
        role: req.role,
        mtime: req.mtime,
        rules: req.rules,
        artifacts,
    };
    Ok(sha256_bytes(&serde_json::to_vec(&inputs)?))
}

/// The previous result, if its stamp matches and the archive on disk is the one it describes
/// (an archive replaced by hand or by an interrupted run is rebuilt, not trusted).
pub(crate) fn try_reuse(req: &StageRequest, key: &Digest) -> Result<Option<Overlay>> {
    // A missing or unreadable stamp (older format, hand-edited) just means "rebuild".
    let Some(stamp) = fsutil::read_stamp::<Stamp>(req.archive_path) else {
        return Ok(None);
    };
    if stamp.key != *key || stamp.overlay.role != req.role || !req.overlay_root.is_dir() {
        return Ok(None);
    }
    let archive = match fsutil::open_regular(req.archive_path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let meta = archive.metadata()?;
    if meta.len() != stamp.overlay.archive_size {
        return Ok(None);
    }
    // The archive is renamed into place before its stamp is written: one no newer than its stamp
    // is the one the stamp describes, and hashing it again (hundreds of MB for a control node)
    // would be most of a no-change rebuild. A newer one (a run killed between the two renames,
    // a hand edit) is hashed.
    let stamp_time = fs_err::metadata(fsutil::stamp_path(req.archive_path))
        .and_then(|m| m.modified())
        .ok();
    let older = matches!((meta.modified().ok(), stamp_time), (Some(a), Some(s)) if a <= s);
    if !older {
        let sha256 = hash_reader(Algo::Sha256, BufReader::new(archive))
            .with_context(|| format!("hashing `{}`", req.archive_path.display()))?;
        if sha256 != stamp.overlay.archive_sha256 {
            return Ok(None);
        }
    }
    Ok(Some(Overlay {
        archive: req.archive_path.to_path_buf(),
        reused: true,
        ..stamp.overlay
    }))
}

/// Writes the stamp of `overlay.archive`, keyed by `key`.
pub(crate) fn write_stamp(key: &Digest, overlay: &Overlay) -> Result<()> {
    // The archive is recorded by name only: the stamp must not depend on where the build ran,
    // so that two builds of the same inputs are byte-identical, stamps included.
    let archive = overlay
        .archive
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let stamp = Stamp {
        key: key.clone(),
        overlay: Overlay {
            archive,
            ..overlay.clone()
        },
    };
    fsutil::write_stamp(&overlay.archive, &stamp)
}
