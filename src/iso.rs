//! Writes a cloud-init NoCloud seed ISO (ECMA-119 with Joliet and Rock Ridge) without any external tool.
//!
//! A seed is one flat root directory holding a handful of files, so this writer supports exactly that:
//! no subdirectories, at most 4 GiB - 1 per file (ISO 9660 stores sizes in 32 bits and we do not split
//! files into multiple extents).
//!
//! Names:
//! - Rock Ridge (NM) and Joliet carry the exact name. Names are 1..=64 printable ASCII characters
//!   (64 is Joliet's limit; longer names are an error rather than truncated, because a silently
//!   shortened name would no longer be found by cloud-init on Joliet-only readers). `/ \ : ; * ?`,
//!   control characters, `.`/`..` and a trailing dot or space are rejected: Joliet forbids the former,
//!   and Linux/Windows strip trailing dots from Joliet names. Names differing only in case are
//!   rejected because macOS and Windows compare Joliet names case-insensitively.
//! - The plain ISO 9660 name is level 1 (8.3 d-characters, e.g. `USER_DAT.;1`), the most portable form;
//!   collisions get a numeric suffix in the base (`USER_DA1.;1`), assigned in name order.
//!
//! Layout (sectors of 2048 bytes): 0-15 system area (zeros), 16 primary VD, 17 Joliet SVD,
//! 18 terminator, 19-22 L/M path tables (primary, then Joliet), the primary root directory, one
//! Rock Ridge continuation sector holding the ER entry (too large for the root "." record; it must
//! come after the directory because libarchive reads strictly forward), the Joliet root directory
//! and the file data, each file starting on a sector boundary. The Rock Ridge
//! entries follow RRIP 1.10 framing (`RRIP_1991A`, 36-byte PX), which is what genisoimage and
//! xorriso write and what every reader accepts.
//!
//! Determinism: every date is `IsoOptions::timestamp`, uid/gid are 0, files are sorted by name and all
//! padding is zero, so equal inputs give equal bytes regardless of the order of `files`.

use anyhow::{bail, ensure, Context, Result};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::fsutil;

const SECTOR: usize = 2048;
const MAX_NAME: usize = 64;
const MAX_VOLID: usize = 16;
/// Sectors before the primary root directory: system area, 3 descriptors, 4 path tables.
const FIXED_SECTORS: usize = 23;
const PATH_TABLE_LEN: u32 = 10;
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

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

/// Where everything after the fixed sectors goes, and the two root directories' bytes.
struct Layout {
    primary_root: u32,
    joliet_root: u32,
    total_sectors: u32,
    primary: Vec<u8>,
    joliet: Vec<u8>,
}

impl Layout {
    /// Places the directories and then each file's data (setting its extent).
    fn place(entries: &mut [Entry], date7: &[u8; 7]) -> Result<Self> {
        // Directory sizes do not depend on extents, so a dry run with placeholder extents fixes
        // the layout.
        let primary_len = primary_dir(entries, 0, 0, date7).len();
        let joliet_len = joliet_dir(entries, 0, date7).len();
        let primary_root = FIXED_SECTORS as u32;
        let ce_sector = primary_root + (primary_len / SECTOR) as u32;
        let joliet_root = ce_sector + 1;
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
    let mut ce_area = er_entry();
    ce_area.resize(SECTOR, 0);
    out.write_all(&ce_area).with_context(write_err)?;
    out.write_all(&layout.joliet).with_context(write_err)?;
    let zeros = [0u8; SECTOR];
    for e in entries {
        match &e.file.data {
            IsoData::Bytes(b) => out.write_all(b).with_context(write_err)?,
            IsoData::Path(p) => {
                // std::io::copy uses copy_file_range/sendfile between files: no user-space buffer.
                let src = fsutil::open_regular(p)?;
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

fn check_volume_id(v: &str) -> Result<()> {
    ensure!(
        !v.is_empty()
            && v.len() <= MAX_VOLID
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "volume id '{v}' must be 1..={MAX_VOLID} characters of A-Z, a-z, 0-9, '_' or '-' (Joliet holds 16)"
    );
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "ISO file name is empty");
    if let Some(c) = name
        .chars()
        .find(|c| !(' '..='~').contains(c) || "/\\:;*?".contains(*c))
    {
        bail!(
            "ISO file name {name:?} contains {c:?}; names are printable ASCII without / \\ : ; * ?"
        );
    }
    ensure!(
        name.len() <= MAX_NAME,
        "ISO file name '{name}' is {} characters; Joliet allows at most {MAX_NAME}",
        name.len()
    );
    ensure!(
        name != "." && name != ".." && !name.ends_with('.') && !name.ends_with(' '),
        "ISO file name '{name}' is '.'/'..' or ends with '.' or ' ', which Joliet readers strip"
    );
    Ok(())
}

/// Level-1 (8.3) identifiers, unique, assigned in name order so results are deterministic.
fn assign_iso_names(entries: &mut [Entry]) {
    let d_chars = |s: &str, max: usize| -> Vec<u8> {
        s.bytes()
            .map(|b| match b.to_ascii_uppercase() {
                c @ (b'A'..=b'Z' | b'0'..=b'9') => c,
                _ => b'_',
            })
            .take(max)
            .collect()
    };
    let ident = |base: &[u8], ext: &[u8]| [base, b".", ext, b";1"].concat();
    let mut used = HashSet::new();
    for e in entries.iter_mut() {
        let name = e.file.name.as_str();
        let (base, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
            _ => (name, ""),
        };
        let (mut base, ext) = (d_chars(base, 8), d_chars(ext, 3));
        if base.is_empty() {
            base.push(b'_');
        }
        let mut id = ident(&base, &ext);
        let mut n = 1u32;
        while !used.insert(id.clone()) {
            let suffix = n.to_string();
            let keep = base.len().min(8 - suffix.len());
            id = ident(&[&base[..keep], suffix.as_bytes()].concat(), &ext);
            n += 1;
        }
        e.iso_name = id;
    }
}

fn primary_dir(entries: &[Entry], root: u32, ce_sector: u32, date7: &[u8; 7]) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.iso_name.cmp(&b.iso_name));
    let files: Vec<Vec<u8>> = sorted
        .iter()
        .map(|e| {
            let su = [
                px(0o100000 | e.file.mode, 1),
                tf(date7),
                nm(e.file.name.as_bytes()),
            ]
            .concat();
            dir_record(&e.iso_name, e.extent, e.size, false, date7, &su)
        })
        .collect();
    let dot_su = [
        sp(),
        px(0o040755, 2),
        tf(date7),
        ce(ce_sector, er_entry().len() as u32),
    ]
    .concat();
    let dotdot_su = [px(0o040755, 2), tf(date7)].concat();
    directory(files, |size| {
        [
            dir_record(&[0], root, size, true, date7, &dot_su),
            dir_record(&[1], root, size, true, date7, &dotdot_su),
        ]
    })
}

fn joliet_dir(entries: &[Entry], root: u32, date7: &[u8; 7]) -> Vec<u8> {
    let files: Vec<Vec<u8>> = entries
        .iter()
        .map(|e| {
            let id: Vec<u8> = e
                .file
                .name
                .encode_utf16()
                .flat_map(u16::to_be_bytes)
                .collect();
            dir_record(&id, e.extent, e.size, false, date7, &[])
        })
        .collect();
    directory(files, |size| {
        [
            dir_record(&[0], root, size, true, date7, &[]),
            dir_record(&[1], root, size, true, date7, &[]),
        ]
    })
}

/// Packs "." and ".." (which record the directory's own size) followed by `files` into whole sectors.
fn directory(files: Vec<Vec<u8>>, dots: impl Fn(u32) -> [Vec<u8>; 2]) -> Vec<u8> {
    // The dots' length does not depend on the size they carry, so a first pass with 0 measures it.
    let size = pack(dots(0).iter().chain(&files)).len() as u32;
    pack(dots(size).iter().chain(&files))
}

/// Concatenates records into whole sectors, never letting a record cross a sector boundary.
fn pack<'a>(records: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        if out.len() % SECTOR + r.len() > SECTOR {
            out.resize(out.len().next_multiple_of(SECTOR), 0);
        }
        out.extend_from_slice(r);
    }
    out.resize(out.len().next_multiple_of(SECTOR), 0);
    out
}

fn dir_record(id: &[u8], extent: u32, size: u32, dir: bool, date7: &[u8; 7], su: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(extent));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(date7);
    r[25] = if dir { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if id.len().is_multiple_of(2) {
        r.push(0);
    }
    r.extend_from_slice(su);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    // Names are at most 64 ASCII characters, so a record is at most 33+12+1+36+26+69 = 177 bytes.
    r[0] = r.len() as u8;
    r
}

fn volume_descriptor(
    joliet: bool,
    volid: &str,
    sectors: u32,
    path_table: u32,
    root: &[u8],
    date17: &[u8; 17],
) -> Vec<u8> {
    let mut v = vec![0u8; SECTOR];
    v[0] = if joliet { 2 } else { 1 };
    v[1..7].copy_from_slice(b"CD001\x01");
    let text = |v: &mut [u8], s: &str| {
        if joliet {
            let units: Vec<u16> = s.encode_utf16().collect();
            for (i, pair) in v.chunks_mut(2).enumerate() {
                let u = units
                    .get(i)
                    .copied()
                    .unwrap_or(u16::from(b' '))
                    .to_be_bytes();
                let n = pair.len();
                pair.copy_from_slice(&u[..n]);
            }
            if v.len() % 2 == 1 {
                v[v.len() - 1] = 0;
            }
        } else {
            v.fill(b' ');
            v[..s.len()].copy_from_slice(s.as_bytes());
        }
    };
    text(&mut v[8..40], "");
    text(&mut v[40..72], volid);
    v[80..88].copy_from_slice(&both32(sectors));
    if joliet {
        v[88..91].copy_from_slice(b"%/E"); // UCS-2 level 3
    }
    v[120..124].copy_from_slice(&both16(1));
    v[124..128].copy_from_slice(&both16(1));
    v[128..132].copy_from_slice(&both16(SECTOR as u16));
    v[132..140].copy_from_slice(&both32(PATH_TABLE_LEN));
    v[140..144].copy_from_slice(&path_table.to_le_bytes());
    v[148..152].copy_from_slice(&(path_table + 1).to_be_bytes());
    v[156..190].copy_from_slice(root);
    for (range, s) in [
        (190..318, ""),
        (318..446, ""),
        (446..574, ""),
        (574..702, "IMAGEGEN"),
        (702..739, ""),
        (739..776, ""),
        (776..813, ""),
    ] {
        text(&mut v[range], s);
    }
    v[813..830].copy_from_slice(date17);
    v[830..847].copy_from_slice(date17);
    for unset in [847..864, 864..881] {
        v[unset.start..unset.end - 1].fill(b'0');
    }
    v[881] = 1;
    v
}

/// Returns the 7-byte directory-record date and the 17-byte volume-descriptor date, both UTC.
fn dates(ts: i64) -> Result<([u8; 7], [u8; 17])> {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Civil-from-days (proleptic Gregorian), shifted so years start in March.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    ensure!(
        (1900..=2155).contains(&year),
        "timestamp {ts} is in year {year}; ISO 9660 directory records hold years 1900..=2155"
    );
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let d7 = [
        (year - 1900) as u8,
        month as u8,
        day as u8,
        h as u8,
        m as u8,
        s as u8,
        0,
    ];
    let mut d17 = [0u8; 17];
    d17[..16]
        .copy_from_slice(format!("{year:04}{month:02}{day:02}{h:02}{m:02}{s:02}00").as_bytes());
    Ok((d7, d17))
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn susp(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    [&sig[..], &[(4 + body.len()) as u8, 1], body].concat()
}

fn sp() -> Vec<u8> {
    susp(b"SP", &[0xbe, 0xef, 0])
}

fn px(mode: u32, links: u32) -> Vec<u8> {
    susp(
        b"PX",
        &[both32(mode), both32(links), both32(0), both32(0)].concat(),
    )
}

fn tf(date7: &[u8; 7]) -> Vec<u8> {
    // Flags 0x0e: modify, access and attribute-change times, 7-byte form.
    susp(b"TF", &[&[0x0e][..], date7, date7, date7].concat())
}

fn nm(name: &[u8]) -> Vec<u8> {
    susp(b"NM", &[&[0][..], name].concat())
}

fn ce(extent: u32, len: u32) -> Vec<u8> {
    susp(b"CE", &[both32(extent), both32(0), both32(len)].concat())
}

fn er_entry() -> Vec<u8> {
    let head = [ER_ID.len() as u8, ER_DES.len() as u8, ER_SRC.len() as u8, 1];
    susp(b"ER", &[&head[..], ER_ID, ER_DES, ER_SRC].concat())
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

    fn file(name: &str) -> IsoFile {
        IsoFile {
            name: name.into(),
            data: IsoData::Bytes(b"x".to_vec()),
            mode: 0o644,
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
        let long = "a".repeat(65);
        for (name, want) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("a\0b", "'\\0'"),
            ("a\\b", "'\\\\'"),
            ("a:b", "':'"),
            ("ü", "'ü'"),
            ("tab\there", "'\\t'"),
            (long.as_str(), "at most 64"),
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

    #[test]
    fn dates_are_utc_civil_time() {
        let d = |ts| dates(ts).unwrap();
        assert_eq!(d(0).0, [70, 1, 1, 0, 0, 0, 0]);
        assert_eq!(&d(0).1, b"1970010100000000\0");
        assert_eq!(&d(951_825_599).1[..16], b"2000022911595900"); // leap day
        assert_eq!(&d(2_147_483_647).1[..16], b"2038011903140700");
        assert_eq!(d(-1).0, [69, 12, 31, 23, 59, 59, 0]);
        assert_eq!(d(-2_208_988_800).0, [0, 1, 1, 0, 0, 0, 0]); // 1900-01-01
        assert_eq!(d(5_869_583_999).0, [255, 12, 31, 23, 59, 59, 0]); // last second of 2155
        assert!(dates(5_869_584_000).is_err());
    }

    #[test]
    fn level_1_names_are_unique_d_characters() {
        let names = [
            "user-data",
            "user_data",
            "User.Data",
            "a.b.c.tar.gz",
            ".profile",
            "x",
            "abcdefghij.klmno",
        ];
        let files: Vec<IsoFile> = names.iter().map(|n| file(n)).collect();
        let mut entries: Vec<Entry> = files
            .iter()
            .map(|f| Entry {
                file: f,
                size: 1,
                iso_name: Vec::new(),
                extent: 0,
            })
            .collect();
        entries.sort_by(|a, b| a.file.name.cmp(&b.file.name));
        assign_iso_names(&mut entries);
        let got: Vec<(&str, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.file.name.as_str(),
                    String::from_utf8(e.iso_name.clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (".profile", "_PROFILE.;1".to_string()),
                ("User.Data", "USER.DAT;1".into()),
                ("a.b.c.tar.gz", "A_B_C_TA.GZ;1".into()),
                ("abcdefghij.klmno", "ABCDEFGH.KLM;1".into()),
                ("user-data", "USER_DAT.;1".into()),
                ("user_data", "USER_DA1.;1".into()),
                ("x", "X.;1".into()),
            ]
        );
    }

    #[test]
    fn records_never_cross_sectors_and_dots_carry_the_directory_size() {
        let recs: Vec<Vec<u8>> = (0..100).map(|i| vec![i as u8; 100 + i % 50]).collect();
        let dir = directory(recs.clone(), |size| [vec![size as u8; 34], vec![1; 34]]);
        assert_eq!(dir.len() % SECTOR, 0);
        assert_eq!(
            dir[0] as usize,
            (dir.len() % 256),
            "first dot carries the packed size"
        );
        let mut at = 68;
        for r in &recs {
            if at % SECTOR + r.len() > SECTOR {
                assert!(
                    dir[at..at.next_multiple_of(SECTOR)].iter().all(|&b| b == 0),
                    "padding must be zero"
                );
                at = at.next_multiple_of(SECTOR);
            }
            assert_eq!(&dir[at..at + r.len()], &r[..]);
            at += r.len();
        }
        assert!(dir.len() > 3 * SECTOR);
    }

    #[test]
    fn both_endian_fields() {
        assert_eq!(both16(0x0102), [2, 1, 1, 2]);
        assert_eq!(both32(0x01020304), [4, 3, 2, 1, 1, 2, 3, 4]);
        let r = dir_record(b"AB.;1", 0x11223344, 7, false, &[1; 7], &nm(b"ab"));
        assert_eq!(r[0] as usize, r.len());
        assert_eq!(r.len() % 2, 0);
        assert_eq!(&r[2..10], &both32(0x11223344));
    }
}
