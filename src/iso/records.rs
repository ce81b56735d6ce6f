//! The bytes of an ISO seed's structures: directory records with their Rock Ridge System Use
//! entries (PX, TF, NM, CE, and the ER in the continuation area), whole-sector directories,
//! volume descriptors and ECMA-119 dates.

use anyhow::{ensure, Result};

use super::{Entry, PATH_TABLE_LEN, SECTOR};

/// The name bytes one NM entry holds (its length field is one byte, 5 of it header).
const NM_MAX: usize = 250;
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// The record of a file in the primary directory: its Rock Ridge PX, TF and either its NM or a
/// CE pointing at its NM entries in the continuation area (which starts at `ce_sector`).
pub(super) fn file_record(e: &Entry, ce_sector: u32, date7: &[u8; 7]) -> Vec<u8> {
    let mut su = [px(0o100000 | e.file.mode, 1), tf(date7)].concat();
    match e.nm_in_ce {
        None => su.extend(nm(e.file.name.as_bytes())),
        Some((offset, len)) => su.extend(ce(
            ce_sector + offset / SECTOR as u32,
            offset % SECTOR as u32,
            len,
        )),
    }
    dir_record(&e.iso_name, e.extent, e.size, false, date7, &su)
}

/// The Rock Ridge continuation area in whole sectors: the ER entry, then the NM entries of
/// each name too long for its record (setting `nm_in_ce`), none crossing a sector.
pub(super) fn continuation_area(entries: &mut [Entry], date7: &[u8; 7]) -> Vec<u8> {
    let mut area = er_entry();
    for e in entries.iter_mut() {
        let name = e.file.name.as_bytes();
        // PX and TF, and NM with its 5-byte header.
        let su_len = px(0, 0).len() + tf(date7).len() + 5 + name.len();
        if record_len(&e.iso_name, su_len) <= 255 {
            e.nm_in_ce = None;
            continue;
        }
        let nms: Vec<u8> = name
            .chunks(NM_MAX)
            .enumerate()
            .flat_map(|(i, part)| {
                // Flag 1 (CONTINUE): the name goes on in the next NM entry.
                let more = (i + 1) * NM_MAX < name.len();
                susp(b"NM", &[&[u8::from(more)][..], part].concat())
            })
            .collect();
        if area.len() % SECTOR + nms.len() > SECTOR {
            area.resize(area.len().next_multiple_of(SECTOR), 0);
        }
        e.nm_in_ce = Some((area.len() as u32, nms.len() as u32));
        area.extend(nms);
    }
    area.resize(area.len().next_multiple_of(SECTOR), 0);
    area
}

pub(super) fn primary_dir(
    entries: &[Entry],
    root: u32,
    ce_sector: u32,
    date7: &[u8; 7],
) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.iso_name.cmp(&b.iso_name));
    let files: Vec<Vec<u8>> = sorted
        .iter()
        .map(|e| file_record(e, ce_sector, date7))
        .collect();
    let dot_su = [
        sp(),
        px(0o040755, 2),
        tf(date7),
        ce(ce_sector, 0, er_entry().len() as u32),
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

pub(super) fn joliet_dir(entries: &[Entry], root: u32, date7: &[u8; 7]) -> Vec<u8> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.joliet_name.cmp(&b.joliet_name));
    let files: Vec<Vec<u8>> = sorted
        .iter()
        .map(|e| {
            let id: Vec<u8> = e
                .joliet_name
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
pub(super) fn directory(files: Vec<Vec<u8>>, dots: impl Fn(u32) -> [Vec<u8>; 2]) -> Vec<u8> {
    // The dots' length does not depend on the size they carry, so a first pass with 0 measures it.
    let size = pack(dots(0).iter().chain(&files)).len() as u32;
    pack(dots(size).iter().chain(&files))
}

/// Concatenates records into whole sectors, never letting a record cross a sector boundary.
pub(super) fn pack<'a>(records: impl Iterator<Item = &'a Vec<u8>>) -> Vec<u8> {
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

/// The length of a directory record with identifier `id` and `su_len` bytes of system use.
pub(super) fn record_len(id: &[u8], su_len: usize) -> usize {
    // 33 fixed bytes, the id, a pad byte after an even-length id, and a pad to an even length.
    (33 + id.len() + usize::from(id.len().is_multiple_of(2)) + su_len).next_multiple_of(2)
}

pub(super) fn dir_record(
    id: &[u8],
    extent: u32,
    size: u32,
    dir: bool,
    date7: &[u8; 7],
    su: &[u8],
) -> Vec<u8> {
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
    // Callers keep records within 255 bytes: a Rock Ridge name that would not fit goes to the
    // continuation area, a Joliet name has at most 64 characters (33 + 128 + 1 bytes).
    debug_assert_eq!(r.len(), record_len(id, su.len()));
    debug_assert!(r.len() <= 255, "directory record of {} bytes", r.len());
    r[0] = r.len() as u8;
    r
}

pub(super) fn volume_descriptor(
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
pub(super) fn dates(ts: i64) -> Result<([u8; 7], [u8; 17])> {
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

pub(super) fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

pub(super) fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

pub(super) fn susp(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    [&sig[..], &[(4 + body.len()) as u8, 1], body].concat()
}

pub(super) fn sp() -> Vec<u8> {
    susp(b"SP", &[0xbe, 0xef, 0])
}

pub(super) fn px(mode: u32, links: u32) -> Vec<u8> {
    susp(
        b"PX",
        &[both32(mode), both32(links), both32(0), both32(0)].concat(),
    )
}

pub(super) fn tf(date7: &[u8; 7]) -> Vec<u8> {
    // Flags 0x0e: modify, access and attribute-change times, 7-byte form.
    susp(b"TF", &[&[0x0e][..], date7, date7, date7].concat())
}

pub(super) fn nm(name: &[u8]) -> Vec<u8> {
    susp(b"NM", &[&[0][..], name].concat())
}

pub(super) fn ce(extent: u32, offset: u32, len: u32) -> Vec<u8> {
    susp(
        b"CE",
        &[both32(extent), both32(offset), both32(len)].concat(),
    )
}

pub(super) fn er_entry() -> Vec<u8> {
    let head = [ER_ID.len() as u8, ER_DES.len() as u8, ER_SRC.len() as u8, 1];
    susp(b"ER", &[&head[..], ER_ID, ER_DES, ER_SRC].concat())
}

#[cfg(test)]
mod tests {
    use super::super::names::assign_iso_names;
    use super::super::tests::{entry, file};
    use super::*;
    use crate::iso::IsoFile;

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
    fn names_too_long_for_their_record_go_to_the_continuation_area() {
        // 33 + 11 (`MMMMMMMM.;1`) + 36 (PX) + 26 (TF) + 5 + 143 = 254 bytes fit; one more
        // character makes 255, padded to 256.
        let names = [
            "short".to_string(),
            "m".repeat(143),
            "n".repeat(144),
            "o".repeat(255),
        ];
        let files: Vec<IsoFile> = names.iter().map(|n| file(n)).collect();
        let mut entries: Vec<Entry> = files.iter().map(entry).collect();
        assign_iso_names(&mut entries);
        let area = continuation_area(&mut entries, &[0; 7]);
        let er = er_entry().len() as u32;
        let placed: Vec<Option<(u32, u32)>> = entries.iter().map(|e| e.nm_in_ce).collect();
        assert_eq!(placed[..2], [None, None]);
        assert_eq!(placed[2], Some((er, 149)));
        // 255 characters: two NM entries, the first flagged CONTINUE.
        assert_eq!(placed[3], Some((er + 149, 5 + 250 + 5 + 5)));
        let at = (er + 149) as usize;
        assert_eq!(&area[at..at + 5], b"NM\xff\x01\x01");
        assert_eq!(&area[at + 255..at + 260], b"NM\x0a\x01\x00");
        assert_eq!(area.len(), SECTOR);
        for e in &entries {
            assert!(file_record(e, 30, &[0; 7]).len() <= 255);
        }
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
