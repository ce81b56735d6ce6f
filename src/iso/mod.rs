//! Writes a cloud-init NoCloud seed ISO (ECMA-119 with Joliet and Rock Ridge) without any external tool.
//!
//! A seed is one flat root directory holding a handful of files, so this writer supports exactly that:
//! no subdirectories, at most 4 GiB - 1 per file (ISO 9660 stores sizes in 32 bits and we do not split
//! files into multiple extents).
//!
//! Names:
//! - Rock Ridge (NM) carries the exact name, what Linux and libarchive read. Names are 1..=255
//!   printable ASCII characters (Linux's NAME_MAX). `/ \ : ; * ?`, control characters,
//!   `.`/`..` and a trailing dot or space are rejected: Joliet forbids the former, and
//!   Linux/Windows strip trailing dots from Joliet names. Names differing only in case are
//!   rejected because macOS and Windows compare Joliet names case-insensitively. A name whose NM
//!   entry does not fit in its 255-byte directory record (past about 140 characters) goes to the
//!   Rock Ridge continuation area, in two NM entries past 250 characters.
//! - Joliet carries the exact name up to its limit of 64 characters. A longer name is cut to 64
//!   there only, as genisoimage and xorriso do: its start and its extension (up to 16
//!   characters), with `~1`, `~2`... before the extension when two cut names would be equal
//!   (case aside), numbered in name order. The Joliet directory is sorted by these names.
//! - The plain ISO 9660 name is level 1 (8.3 d-characters, e.g. `USER_DAT.;1`), the most portable form;
//!   collisions get a numeric suffix in the base (`USER_DA1.;1`), assigned in name order.
//!
//! Layout (sectors of 2048 bytes): 0-15 system area (zeros), 16 primary VD, 17 Joliet SVD,
//! 18 terminator, 19-22 L/M path tables (primary, then Joliet), the primary root directory, the
//! Rock Ridge continuation sectors holding the ER entry (too large for the root "." record) and
//! the NM entries of very long names (they must come after the directory because libarchive reads
//! strictly forward; no continuation area crosses a sector), the Joliet root directory and the
//! file data, each file starting on a sector boundary. The Rock Ridge
//! entries follow RRIP 1.10 framing (`RRIP_1991A`, 36-byte PX), which is what genisoimage and
//! xorriso write and what every reader accepts.
//!
//! The writer's flow and layout are here; `names` makes the three kinds of names, `records` the
//! bytes of directory records, System Use entries and volume descriptors.
//!
//! Determinism: every date is `IsoOptions::timestamp`, uid/gid are 0, files are sorted by name and all
//! padding is zero, so equal inputs give equal bytes regardless of the order of `files`.

mod names;
mod records;

use anyhow::{ensure, Context, Result};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::fsutil;
use names::{assign_iso_names, assign_joliet_names, check_name, check_volume_id};
use records::{continuation_area, dates, dir_record, joliet_dir, primary_dir, volume_descriptor};

const SECTOR: usize = 2048;
/// Sectors before the primary root directory: system area, 3 descriptors, 4 path tables.
const FIXED_SECTORS: usize = 23;
const PATH_TABLE_LEN: u32 = 10;

#[derive(Debug, Clone)]
pub enum IsoData {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct IsoFile {
    pub name: String,
    pub data: IsoData,
    /// Permission bits (e.g. 0o644), recorded in Rock Ridge PX.
    pub mode: u32,
}

#[derive(Debug, Clone)]
pub struct IsoOptions {
    pub volume_id: String,
    /// Unix seconds (UTC) used for every date in the image.
    pub timestamp: i64,
    /// Permission bits of the image file, set before any byte is written: 0o600 for an image
    /// holding a secret (user-data with keys), else 0o644 (VM managers may run as another user).
    pub mode: u32,
}

struct Entry<'a> {
    file: &'a IsoFile,
    size: u32,
    iso_name: Vec<u8>,
    joliet_name: String,
    /// Where this file's NM entries are in the continuation area, when not in its record:
    /// byte offset from the area's start and length.
    nm_in_ce: Option<(u32, u32)>,
    extent: u32,
}

/// Writes `files` into a new ISO at `dest` (via a temp file beside it that has `opts.mode` before
/// any data, renamed on success).
pub fn write_iso(dest: &Path, opts: &IsoOptions, files: &[IsoFile]) -> Result<()> {
    check_volume_id(&opts.volume_id)?;
    ensure!(
        opts.mode & !0o777 == 0,
        "mode {:o} of ISO image {} has bits beyond 0o777; pass permission bits only",
        opts.mode,
        dest.display()
    );
    let (date7, date17) = dates(opts.timestamp)?;
    let mut entries = checked_entries(files)?;
    assign_iso_names(&mut entries);
    assign_joliet_names(&mut entries);
    let layout = Layout::place(&mut entries, &date7)?;
    let header = header(&opts.volume_id, &layout, &date7, &date17);

    let mut tmp = fsutil::temp_file_beside(dest, opts.mode)?;
    write_image(tmp.as_file_mut(), dest, &header, &layout, &entries)?;
    fsutil::persist(tmp, dest)
}

/// One entry per file, sorted by name, after checking each file's name, mode, type and size
/// and that no two names differ only in case.
fn checked_entries(files: &[IsoFile]) -> Result<Vec<Entry<'_>>> {
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        check_name(&file.name)?;
        ensure!(
            file.mode & !0o7777 == 0,
            "mode {:o} of ISO file '{}' has bits beyond 0o7777; pass permission bits only",
            file.mode,
            file.name
        );
        let size = match &file.data {
            IsoData::Bytes(b) => b.len() as u64,
            IsoData::Path(p) => {
                let meta = fs_err::metadata(p)?;
                ensure!(
                    meta.is_file(),
                    "{} (for ISO file '{}') is not a regular file",
                    p.display(),
                    file.name
                );
                meta.len()
            }
        };
        let size = u32::try_from(size).map_err(|_| {
            anyhow::anyhow!(
                "ISO file '{}' is {size} bytes; ISO 9660 stores sizes in 32 bits, so a file may be at most 4294967295 bytes (4 GiB - 1)",
                file.name
            )
        })?;
        entries.push(Entry {
            file,
            size,
            iso_name: Vec::new(),
            joliet_name: String::new(),
            nm_in_ce: None,
            extent: 0,
        });
    }
    entries.sort_by(|a, b| a.file.name.cmp(&b.file.name));
    let mut seen = HashSet::new();
    for e in &entries {
        ensure!(
            seen.insert(e.file.name.to_ascii_lowercase()),
            "duplicate ISO file name '{}' (names must differ by more than case: Joliet readers ignore case)",
            e.file.name
        );
    }
    Ok(entries)
}

/// Where everything after the fixed sectors goes, and the root directories' and the
/// continuation area's bytes.
struct Layout {
    primary_root: u32,
    joliet_root: u32,
    total_sectors: u32,
    primary: Vec<u8>,
    ce_area: Vec<u8>,
    joliet: Vec<u8>,
}

impl Layout {
    /// Places the directories, the continuation area and then each file's data (setting its
    /// extent).
    fn place(entries: &mut [Entry], date7: &[u8; 7]) -> Result<Self> {
        let ce_area = continuation_area(entries, date7);
        // Directory sizes do not depend on extents, so a dry run with placeholder extents fixes
        // the layout.
        let primary_len = primary_dir(entries, 0, 0, date7).len();
        let joliet_len = joliet_dir(entries, 0, date7).len();
        let primary_root = FIXED_SECTORS as u32;
        let ce_sector = primary_root + (primary_len / SECTOR) as u32;
        let joliet_root = ce_sector + (ce_area.len() / SECTOR) as u32;
        let mut next = joliet_root + (joliet_len / SECTOR) as u32;
        for e in entries.iter_mut() {
            // Empty files point at the next free sector with length 0, as genisoimage does.
            e.extent = next;
            next = next
                .checked_add(e.size.div_ceil(SECTOR as u32))
                .context("ISO image would exceed 2^32 sectors")?;
        }
        Ok(Layout {
            primary_root,
            joliet_root,
            total_sectors: next,
            primary: primary_dir(entries, primary_root, ce_sector, date7),
            ce_area,
            joliet: joliet_dir(entries, joliet_root, date7),
        })
    }
}

/// The fixed sectors: system area, the primary and Joliet volume descriptors, the terminator
/// and the four path tables.
fn header(volume_id: &str, layout: &Layout, date7: &[u8; 7], date17: &[u8; 17]) -> Vec<u8> {
    let mut header = vec![0u8; FIXED_SECTORS * SECTOR];
    let root_record = |extent, len: usize| dir_record(&[0], extent, len as u32, true, date7, &[]);
    header[16 * SECTOR..17 * SECTOR].copy_from_slice(&volume_descriptor(
        false,
        volume_id,
        layout.total_sectors,
        19,
        &root_record(layout.primary_root, layout.primary.len()),
        date17,
    ));
    header[17 * SECTOR..18 * SECTOR].copy_from_slice(&volume_descriptor(
        true,
        volume_id,
        layout.total_sectors,
        21,
        &root_record(layout.joliet_root, layout.joliet.len()),
        date17,
    ));
    header[18 * SECTOR..18 * SECTOR + 7].copy_from_slice(b"\xffCD001\x01");
    for (sector, extent) in [(19, layout.primary_root), (21, layout.joliet_root)] {
        // One root entry: id length 1, no extended attributes, extent, parent #1, id 0x00, pad.
        let (l, m) = (sector * SECTOR, (sector + 1) * SECTOR);
        header[l] = 1;
        header[l + 2..l + 6].copy_from_slice(&extent.to_le_bytes());
        header[l + 6] = 1;
        header[m] = 1;
        header[m + 2..m + 6].copy_from_slice(&extent.to_be_bytes());
        header[m + 7] = 1;
    }
    header
}

/// Writes the image in sector order: header, primary root, the Rock Ridge continuation
/// sector, Joliet root, then each file's data padded to a sector boundary.
fn write_image(
    out: &mut std::fs::File,
    dest: &Path,
    header: &[u8],
    layout: &Layout,
    entries: &[Entry],
) -> Result<()> {
    let write_err = || format!("writing ISO temp file for {}", dest.display());
    out.write_all(header).with_context(write_err)?;
    out.write_all(&layout.primary).with_context(write_err)?;
    out.write_all(&layout.ce_area).with_context(write_err)?;
    out.write_all(&layout.joliet).with_context(write_err)?;
    let zeros = [0u8; SECTOR];
    for e in entries {
        match &e.file.data {
            IsoData::Bytes(b) => out.write_all(b).with_context(write_err)?,
            IsoData::Path(p) => {
                // std::io::copy uses copy_file_range/sendfile between files: no user-space buffer.
                let src = crate::fsutil::open_regular(p)?;
                let copied = std::io::copy(&mut src.file().take(u64::from(e.size)), out)
                    .with_context(|| format!("copying {} into {}", p.display(), dest.display()))?;
                ensure!(
                    copied == u64::from(e.size),
                    "{} shrank from {} to {copied} bytes while writing {}",
                    p.display(),
                    e.size,
                    dest.display()
                );
            }
        }
        let pad = (SECTOR - e.size as usize % SECTOR) % SECTOR;
        out.write_all(&zeros[..pad]).with_context(write_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> IsoOptions {
        IsoOptions {
            volume_id: "cidata".into(),
            timestamp: 0,
            mode: 0o644,
        }
    }

    /// A file named `name` holding one byte.
    pub(super) fn file(name: &str) -> IsoFile {
        IsoFile {
            name: name.into(),
            data: IsoData::Bytes(b"x".to_vec()),
            mode: 0o644,
        }
    }

    /// An entry for `f`, before names and places are assigned.
    pub(super) fn entry(f: &IsoFile) -> Entry<'_> {
        Entry {
            file: f,
            size: 1,
            iso_name: Vec::new(),
            joliet_name: String::new(),
            nm_in_ce: None,
            extent: 0,
        }
    }

    /// Runs write_iso expecting an error; no image (nor temp file) may appear.
    fn error_of(opts: &IsoOptions, files: &[IsoFile]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let err = write_iso(&dir.path().join("seed.iso"), opts, files).unwrap_err();
        assert_eq!(
            fs_err::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing may be written on error"
        );
        format!("{err:#}")
    }

    #[test]
    fn rejects_bad_names_with_clear_errors() {
        let long = "a".repeat(256);
        for (name, want) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("a\0b", "'\\0'"),
            ("a\\b", "'\\\\'"),
            ("a:b", "':'"),
            ("ü", "'ü'"),
            ("tab\there", "'\\t'"),
            (long.as_str(), "at most 255"),
            (".", "'.'/'..'"),
            ("..", "'.'/'..'"),
            ("trailing.", "ends with"),
            ("trailing ", "ends with"),
        ] {
            let err = error_of(&opts(), &[file(name)]);
            assert!(err.contains(want), "{name:?}: {err}");
        }
    }

    #[test]
    fn rejects_duplicates_including_case_only_differences() {
        let err = error_of(
            &opts(),
            &[file("user-data"), file("meta-data"), file("user-data")],
        );
        assert!(err.contains("duplicate ISO file name 'user-data'"), "{err}");
        let err = error_of(&opts(), &[file("User-Data"), file("user-data")]);
        assert!(err.contains("duplicate"), "{err}");
    }

    #[test]
    fn rejects_bad_volume_ids_modes_timestamps_and_sources() {
        for v in ["", "seventeen-chars-x", "ci data", "cïdata"] {
            let o = IsoOptions {
                volume_id: v.into(),
                timestamp: 0,
                mode: 0o644,
            };
            assert!(error_of(&o, &[]).contains("volume id"), "{v:?}");
        }
        let mut f = file("x");
        f.mode = 0o100644;
        assert!(error_of(&opts(), &[f]).contains("bits beyond 0o7777"));
        for ts in [-2_208_988_801, 5_869_584_000] {
            let o = IsoOptions {
                volume_id: "cidata".into(),
                timestamp: ts,
                mode: 0o644,
            };
            assert!(error_of(&o, &[]).contains("years 1900..=2155"), "{ts}");
        }
        let missing = IsoFile {
            name: "p".into(),
            data: IsoData::Path("/nonexistent/payload".into()),
            mode: 0o644,
        };
        assert!(error_of(&opts(), &[missing]).contains("/nonexistent/payload"));
        let dir = IsoFile {
            name: "p".into(),
            data: IsoData::Path("/tmp".into()),
            mode: 0o644,
        };
        assert!(error_of(&opts(), &[dir]).contains("not a regular file"));
    }

    #[test]
    fn the_image_has_the_mode_asked_for() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644] {
            let iso = dir.path().join(format!("seed-{mode:o}.iso"));
            let o = IsoOptions { mode, ..opts() };
            write_iso(&iso, &o, &[file("user-data")]).unwrap();
            let got = fs_err::metadata(&iso).unwrap().permissions().mode() & 0o7777;
            assert_eq!(got, mode, "{}", iso.display());
        }
        let o = IsoOptions {
            mode: 0o4755,
            ..opts()
        };
        assert!(error_of(&o, &[]).contains("bits beyond 0o777"));
    }
}
