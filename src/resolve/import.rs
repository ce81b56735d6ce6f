//! `imagegen cache import`: files downloaded by hand (on another machine, through a browser, from
//! a USB stick) become cache entries when their digest matches a pin, so an offline build can use
//! them. A file is identified by its content alone; its name does not matter.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use tempfile::NamedTempFile;

use super::cache::Cache;
use crate::digest::{Algo, Digest, HashingWriter};
use crate::fsutil;
use crate::plan::Artifact;

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
        let (tmp, digests) = copy_in(&cache, file, algos.iter().copied())?;
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
                        let (copy, now) = copy_in(&cache, file, [pin.digest.algo()])?;
                        if now[0] != pin.digest {
                            bail!(
                                "{} changed while it was imported (now {})",
                                file.display(),
                                now[0]
                            );
                        }
                        copy
                    }
                };
                // Not while another run is fetching the same artifact into the cache.
                let _lock = cache.lock(&pin.digest, |line| eprintln!("{line}"))?;
                cache.store(entry, &pin.digest)?;
            }
            matched.push((file.clone(), (*pin).clone()));
        }
    }
    if !unmatched.is_empty() {
        bail!(unmatched_report(&unmatched, &matched, files.len()));
    }
    Ok(matched)
}

/// Copies `file` into a cache temp file, hashing it with each of `algos` (one digest each, in
/// order) on the way.
fn copy_in(
    cache: &Cache,
    file: &Path,
    algos: impl IntoIterator<Item = Algo>,
) -> Result<(NamedTempFile, Vec<Digest>)> {
    // `io::copy` reads through a `BufReader`'s own buffer: large reads instead of 8 KiB ones.
    let mut src = BufReader::with_capacity(256 * 1024, fsutil::open_regular(file)?);
    let mut out = HashingWriter::with_algos(cache.temp_file()?, algos);
    io::copy(&mut src, &mut out)
        .with_context(|| format!("copying {} into the cache", file.display()))?;
    let (tmp, digests, _) = out.finish_all();
    Ok((tmp, digests))
}

fn unmatched_report(
    unmatched: &[(&PathBuf, Vec<Digest>)],
    matched: &[(PathBuf, Artifact)],
    total: usize,
) -> String {
    let mut msg = format!(
        "{} of {total} file(s) match no pinned artifact and were not imported:",
        unmatched.len(),
    );
    for (file, digests) in unmatched {
        let ds: Vec<String> = digests.iter().map(ToString::to_string).collect();
        let _ = write!(msg, "\n  - {} ({})", file.display(), ds.join(", "));
    }
    if !matched.is_empty() {
        let _ = write!(msg, "\nimported:");
        for (file, art) in matched {
            let _ = write!(
                msg,
                "\n  - {} as {} {}",
                file.display(),
                art.component,
                art.file_name
            );
        }
    }
    msg
}
