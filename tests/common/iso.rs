//! Independent ISO readers used by every test that writes an image. A missing tool is a failure
//! naming the apt package, never a skip.
#![allow(dead_code)]

use imagegen::iso::{IsoData, IsoFile};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// What a reader should see for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    pub size: u64,
    pub mode: Option<u32>,
}

pub fn run(tool: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}); install it: apt-get install {package}")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{tool} {args:?} failed with {}:\n{text}",
        out.status
    );
    text
}

fn expected(files: &[IsoFile], with_mode: bool) -> BTreeMap<String, Seen> {
    files
        .iter()
        .map(|f| {
            let size = match &f.data {
                IsoData::Bytes(b) => b.len() as u64,
                IsoData::Path(p) => fs_err::metadata(p).unwrap().len(),
            };
            (
                f.name.clone(),
                Seen {
                    size,
                    mode: with_mode.then_some(f.mode),
                },
            )
        })
        .collect()
}

fn mode_bits(s: &str) -> u32 {
    assert!(
        s.len() == 10 && s.starts_with('-'),
        "expected a regular file mode string, got {s:?}"
    );
    s[1..]
        .chars()
        .fold(0, |m, c| (m << 1) | u32::from(c != '-'))
}

/// Parses `isoinfo -l` style lines: `-rw-r--r--   1    0    0   33 Jan  1 1970 [     26 00]  name `.
fn isoinfo_list(iso: &Path, flag: Option<&str>) -> BTreeMap<String, (String, u64)> {
    let mut args = vec!["-l", "-i", iso.to_str().unwrap()];
    args.extend(flag);
    let text = run("isoinfo", "genisoimage", &args);
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("]  ")) {
        let (meta, name) = line.split_once("]  ").unwrap();
        let fields: Vec<&str> = meta.split_whitespace().collect();
        let name = name.trim_end().to_string();
        if name == "." || name == ".." || name == "\u{0}" || name == "\u{1}" {
            continue;
        }
        out.insert(name, (fields[0].to_string(), fields[4].parse().unwrap()));
    }
    out
}

pub fn check_isoinfo_d(iso: &Path, volid: &str) {
    let text = run(
        "isoinfo",
        "genisoimage",
        &["-d", "-i", iso.to_str().unwrap()],
    );
    for want in [
        format!("Volume id: {volid}"),
        "Joliet with UCS level 3 found".to_string(),
        "Rock Ridge signatures version 1 found".to_string(),
        "Logical block size is: 2048".to_string(),
    ] {
        assert!(text.contains(&want), "isoinfo -d lacks {want:?}:\n{text}");
    }
    let size: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Volume size is: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        size * 2048,
        fs_err::metadata(iso).unwrap().len(),
        "volume size vs file size"
    );
}

pub fn check_isoinfo_joliet(iso: &Path, files: &[IsoFile]) {
    let seen: BTreeMap<String, Seen> = isoinfo_list(iso, Some("-J"))
        .into_iter()
        .map(|(n, (_, size))| (n, Seen { size, mode: None }))
        .collect();
    assert_eq!(seen, expected(files, false), "isoinfo -J -l");
}

pub fn check_isoinfo_rock(iso: &Path, files: &[IsoFile]) {
    let seen: BTreeMap<String, Seen> = isoinfo_list(iso, Some("-R"))
        .into_iter()
        .map(|(n, (m, size))| {
            (
                n,
                Seen {
                    size,
                    mode: Some(mode_bits(&m)),
                },
            )
        })
        .collect();
    assert_eq!(seen, expected(files, true), "isoinfo -R -l");
}

/// Without extensions, names must be unique ISO 9660 level-1 identifiers (8.3 d-characters, ";1").
pub fn check_isoinfo_plain(iso: &Path, files: &[IsoFile]) {
    let seen = isoinfo_list(iso, None);
    assert_eq!(
        seen.len(),
        files.len(),
        "plain ISO 9660 names must be unique: {seen:?}"
    );
    for name in seen.keys() {
        let stem = name
            .strip_suffix(";1")
            .unwrap_or_else(|| panic!("{name} lacks ;1"));
        let (base, ext) = stem
            .split_once('.')
            .unwrap_or_else(|| panic!("{name} lacks '.'"));
        let d = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        };
        assert!(
            (1..=8).contains(&base.len()) && ext.len() <= 3 && d(base) && d(ext),
            "not level 1: {name}"
        );
    }
    let mut sizes: Vec<u64> = seen.values().map(|(_, s)| *s).collect();
    let mut want: Vec<u64> = expected(files, false).values().map(|s| s.size).collect();
    sizes.sort();
    want.sort();
    assert_eq!(sizes, want, "plain ISO 9660 sizes");
}

pub fn check_xorriso_find(iso: &Path, files: &[IsoFile]) {
    let text = run(
        "xorriso",
        "xorriso",
        &[
            "-indev",
            iso.to_str().unwrap(),
            "-find",
            "/",
            "-type",
            "f",
            "-exec",
            "lsdl",
        ],
    );
    let mut seen = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('-')) {
        let (meta, name) = line.split_once(" '/").unwrap();
        let f: Vec<&str> = meta.split_whitespace().collect();
        let name = name.strip_suffix('\'').unwrap().to_string();
        seen.insert(
            name,
            Seen {
                size: f[4].parse().unwrap(),
                mode: Some(mode_bits(f[0])),
            },
        );
    }
    assert_eq!(seen, expected(files, true), "xorriso -find:\n{text}");
}

pub fn check_7z_list(iso: &Path, files: &[IsoFile]) {
    let text = run("7z", "p7zip-full", &["l", "-slt", iso.to_str().unwrap()]);
    let listing = text
        .split("----------")
        .nth(1)
        .unwrap_or_else(|| panic!("7z l -slt:\n{text}"));
    let mut seen = BTreeMap::new();
    for block in listing.split("\n\n").filter(|b| b.contains("Path = ")) {
        let field = |k: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        seen.insert(
            field("Path = "),
            Seen {
                size: field("Size = ").parse().unwrap(),
                mode: None,
            },
        );
    }
    assert_eq!(seen, expected(files, false), "7z l:\n{text}");
}

pub fn check_bsdtar_list(iso: &Path, files: &[IsoFile]) {
    let text = run(
        "bsdtar",
        "libarchive-tools",
        &["-tvf", iso.to_str().unwrap()],
    );
    let mut seen = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('-')) {
        // perms links uid gid size month day year name (the name may contain spaces).
        let mut it = line.split_whitespace();
        let perms = it.next().unwrap();
        let size: u64 = it.nth(3).unwrap().parse().unwrap();
        let name = nth_field_rest(line, 8);
        seen.insert(
            name,
            Seen {
                size,
                mode: Some(mode_bits(perms)),
            },
        );
    }
    assert_eq!(seen, expected(files, true), "bsdtar -tv:\n{text}");
}

/// The rest of `line` after skipping `n` whitespace-separated fields.
fn nth_field_rest(line: &str, n: usize) -> String {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        rest = &rest[rest.find(char::is_whitespace).unwrap()..];
    }
    rest.trim_start().to_string()
}

pub fn check_blkid(iso: &Path, volid: &str) {
    let text = run(
        "blkid",
        "util-linux",
        &["-p", "-o", "export", iso.to_str().unwrap()],
    );
    assert!(
        text.lines().any(|l| l == format!("LABEL={volid}")),
        "blkid:\n{text}"
    );
    assert!(text.lines().any(|l| l == "TYPE=iso9660"), "blkid:\n{text}");
}

pub fn check_isovfy(iso: &Path) {
    let text = run("isovfy", "genisoimage", &[iso.to_str().unwrap()]);
    assert!(
        text.contains("No errors found") && !text.contains("***"),
        "isovfy:\n{text}"
    );
}

fn compare_tree(dir: &Path, files: &[IsoFile], with_mode: bool, who: &str) {
    let names = super::fs::list_dir(dir);
    let mut want: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    want.sort();
    assert_eq!(names, want, "{who} extracted names");
    for f in files {
        let got = dir.join(&f.name);
        let same = match &f.data {
            IsoData::Bytes(b) => fs_err::read(&got).unwrap() == *b,
            IsoData::Path(p) => files_equal(p, &got),
        };
        assert!(same, "{who}: {} differs from its input", f.name);
        if with_mode {
            let mode = fs_err::metadata(&got).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, f.mode, "{who}: mode of {}", f.name);
        }
    }
}

fn files_equal(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (
        fs_err::File::open(a).unwrap(),
        fs_err::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        let mut m = 0;
        while m < n {
            let k = fb.read(&mut bb[m..n]).unwrap();
            if k == 0 {
                return false;
            }
            m += k;
        }
        if ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

pub fn check_xorriso_extract(iso: &Path, files: &[IsoFile]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    run(
        "xorriso",
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            iso.to_str().unwrap(),
            "-extract",
            "/",
            out.to_str().unwrap(),
        ],
    );
    compare_tree(&out, files, true, "xorriso -osirrox");
}

pub fn check_bsdtar_extract(iso: &Path, files: &[IsoFile]) {
    let dir = tempfile::tempdir().unwrap();
    run(
        "bsdtar",
        "libarchive-tools",
        &[
            "-xpf",
            iso.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
        ],
    );
    compare_tree(dir.path(), files, true, "bsdtar -x");
}

pub fn check_7z_extract(iso: &Path, files: &[IsoFile]) {
    let dir = tempfile::tempdir().unwrap();
    run(
        "7z",
        "p7zip-full",
        &[
            "x",
            "-y",
            &format!("-o{}", dir.path().display()),
            iso.to_str().unwrap(),
        ],
    );
    compare_tree(dir.path(), files, false, "7z x (Joliet)");
}

/// Every reader, listing and extracting.
pub fn check_all(iso: &Path, volid: &str, files: &[IsoFile]) {
    check_all_renamed(iso, volid, files, &[]);
}

/// Every reader, listing and extracting, where Joliet readers (isoinfo -J, 7z) see the names
/// longer than 64 characters as given in `joliet` (full name, Joliet name) and the Rock Ridge
/// readers see the full names.
pub fn check_all_renamed(iso: &Path, volid: &str, files: &[IsoFile], joliet: &[(&str, &str)]) {
    let view = joliet_view(files, joliet);
    check_isoinfo_d(iso, volid);
    check_isoinfo_joliet(iso, &view);
    check_isoinfo_rock(iso, files);
    check_isoinfo_plain(iso, files);
    check_xorriso_find(iso, files);
    check_7z_list(iso, &view);
    check_bsdtar_list(iso, files);
    check_blkid(iso, volid);
    check_isovfy(iso);
    check_xorriso_extract(iso, files);
    check_bsdtar_extract(iso, files);
    check_7z_extract(iso, &view);
}

/// `files` as a Joliet reader sees them: each name longer than 64 characters replaced by its
/// Joliet name from `joliet` (which must name every such file).
pub fn joliet_view(files: &[IsoFile], joliet: &[(&str, &str)]) -> Vec<IsoFile> {
    files
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if let Some((_, short)) = joliet.iter().find(|(long, _)| *long == f.name) {
                f.name = short.to_string();
            } else {
                assert!(
                    f.name.len() <= 64,
                    "{}: a name past 64 characters needs its expected Joliet name",
                    f.name
                );
            }
            f
        })
        .collect()
}

/// Whether `short` is a start and an end of `full`, with an optional `~N` between them.
fn is_cut_of(short: &str, full: &str) -> bool {
    let short = match short.split_once('~') {
        Some((a, b)) => format!("{a}{}", b.trim_start_matches(|c: char| c.is_ascii_digit())),
        None => short.to_string(),
    };
    short.len() < full.len()
        && (0..=short.len()).any(|k| full.starts_with(&short[..k]) && full.ends_with(&short[k..]))
}

/// The Joliet tree holds one name per file, each at most 64 characters: the file's own name
/// when it fits, else a start and an end of the file's name, maybe with `~N` between them;
/// sizes match. For random names (without `~`), whose exact Joliet forms are not spelled out.
pub fn check_joliet_names_fit(iso: &Path, files: &[IsoFile]) {
    let seen = isoinfo_list(iso, Some("-J"));
    assert_eq!(seen.len(), files.len(), "isoinfo -J -l: {seen:?}");
    let mut lower: Vec<String> = seen.keys().map(|n| n.to_ascii_lowercase()).collect();
    lower.sort();
    lower.dedup();
    assert_eq!(
        lower.len(),
        seen.len(),
        "Joliet names differ by more than case: {seen:?}"
    );
    for f in files {
        let size = expected(std::slice::from_ref(f), false)[&f.name].size;
        if f.name.len() <= 64 {
            assert_eq!(seen.get(&f.name).map(|s| s.1), Some(size), "{}", f.name);
        } else {
            assert!(
                seen.iter()
                    .any(|(n, s)| s.1 == size && is_cut_of(n, &f.name)),
                "no Joliet name for {} in {seen:?}",
                f.name
            );
        }
    }
    assert!(seen.keys().all(|n| n.len() <= 64), "{seen:?}");
}

pub fn bytes(name: &str, data: &[u8], mode: u32) -> IsoFile {
    IsoFile {
        name: name.to_string(),
        data: IsoData::Bytes(data.to_vec()),
        mode,
    }
}

/// Deterministic pseudo-random content so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every file of the image with its bytes, by its Rock Ridge name (bsdtar extracts it).
pub fn extract_files(iso: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    run(
        "bsdtar",
        "libarchive-tools",
        &[
            "-xf",
            iso.to_str().unwrap(),
            "-C",
            dir.path().to_str().unwrap(),
        ],
    );
    super::fs::read_tree(dir.path())
        .into_iter()
        .map(|(p, data)| (p.to_string_lossy().into_owned(), data))
        .collect()
}
