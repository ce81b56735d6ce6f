//! Random names and sizes: write_iso must never panic, must accept exactly the names its rules
//! allow, and every image it writes must pass isovfy and list the exact names under Rock Ridge and
//! Joliet.
#![no_main]

use imagegen::iso::{write_iso, IsoData, IsoFile, IsoOptions};
use libfuzzer_sys::fuzz_target;
use std::collections::{BTreeSet, HashSet};
use std::process::Command;

fn valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && !b"/\\:;*?".contains(&b))
        && name != "."
        && name != ".."
        && !name.ends_with('.')
        && !name.ends_with(' ')
}

fn listing(iso: &str, flag: &str) -> BTreeSet<String> {
    let out = Command::new("isoinfo")
        .args(["-f", flag, "-i", iso])
        .output()
        .expect("isoinfo (apt genisoimage)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches('/').to_string())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // Input: repeated [name_len, size_lo, size_hi, name bytes...]; bytes map mostly onto the safe
    // alphabet so most inputs are valid, with some raw bytes to exercise rejection.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._ABZ ~";
    let mut files = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 && files.len() < 40 {
        let (len, size) = (
            rest[0] as usize % 72,
            u16::from_le_bytes([rest[1], rest[2]]) as usize % 6000,
        );
        rest = &rest[3..];
        let take = len.min(rest.len());
        let name: String = rest[..take]
            .iter()
            .map(|&b| {
                if b < 0xf0 {
                    ALPHABET[b as usize % ALPHABET.len()] as char
                } else {
                    (b - 0xf0 + b'*') as char
                }
            })
            .collect();
        rest = &rest[take..];
        files.push(IsoFile {
            name,
            data: IsoData::Bytes(vec![0xa5; size]),
            mode: 0o644,
        });
    }
    let mut lower = HashSet::new();
    let expect_ok = files
        .iter()
        .all(|f| valid(&f.name) && lower.insert(f.name.to_ascii_lowercase()));
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("f.iso");
    let result = write_iso(
        &iso,
        &IsoOptions {
            volume_id: "cidata".into(),
            timestamp: 1_700_000_000,
        },
        &files,
    );
    assert_eq!(
        result.is_ok(),
        expect_ok,
        "{result:?} for {:?}",
        files.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    if result.is_err() {
        return;
    }
    let iso = iso.to_str().unwrap();
    let out = Command::new("isovfy")
        .arg(iso)
        .output()
        .expect("isovfy (apt genisoimage)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No errors found") && !text.contains("***"),
        "isovfy:\n{text}"
    );
    let want: BTreeSet<String> = files.iter().map(|f| f.name.clone()).collect();
    assert_eq!(listing(iso, "-R"), want, "Rock Ridge names");
    assert_eq!(listing(iso, "-J"), want, "Joliet names");
});
