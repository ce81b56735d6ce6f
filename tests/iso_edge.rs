//! Edge cases, each image read back by every independent reader.

mod common;

use common::fs::list_dir;
use common::iso::*;
use imagegen::iso::{write_iso, IsoData, IsoFile, IsoOptions};

fn opts(ts: i64) -> IsoOptions {
    IsoOptions {
        volume_id: "cidata".into(),
        timestamp: ts,
        mode: 0o644,
    }
}

#[test]
fn sector_boundary_sizes_and_name_lengths() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = dir.path().join("src-2049");
    fs_err::write(&on_disk, pattern(2049, 3)).unwrap();
    let long = "n".repeat(30) + "-" + &"x".repeat(29) + ".bin"; // exactly 64 characters
    assert_eq!(long.len(), 64);
    let files = vec![
        bytes("empty", b"", 0o600),
        bytes("a", &pattern(1, 1), 0o755),
        bytes("exactly-2048", &pattern(2048, 2), 0o644),
        bytes("one-short-2047", &pattern(2047, 4), 0o640),
        IsoFile {
            name: "one-over-2049".into(),
            data: IsoData::Path(on_disk),
            mode: 0o444,
        },
        bytes(&long, &pattern(4097, 5), 0o644),
        bytes(
            "with space+punct,=[x]~!@#$%^&()",
            b"odd names survive\n",
            0o644,
        ),
        bytes(".dotfile", b"hidden\n", 0o644),
        bytes("empty-last-zz", b"", 0o644),
    ];
    let iso = dir.path().join("edge.iso");
    write_iso(&iso, &opts(1_700_000_000), &files).unwrap();
    check_all(&iso, "cidata", &files);
}

/// Names past Joliet's 64 characters: whole in Rock Ridge (in the directory record up to about
/// 140 characters, in the continuation area beyond, split over two NM entries past 250), cut
/// and made unique in Joliet. Every reader gets the names it should.
#[test]
fn long_names_are_whole_in_rock_ridge_and_cut_in_joliet() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("overlay-{}-", "w".repeat(56)); // 65 characters
    let files = vec![
        bytes("user-data", b"#cloud-config\n", 0o600),
        bytes(
            &format!("{prefix}control.cpio.gz"),
            &pattern(3000, 1),
            0o644,
        ),
        bytes(&format!("{prefix}worker.cpio.gz"), &pattern(5000, 2), 0o644),
        bytes(&"a".repeat(65), b"65\n", 0o644),
        bytes(&"b".repeat(143), b"143\n", 0o644),
        bytes(&"c".repeat(144), b"144\n", 0o755),
        bytes(&format!("{}.txt", "d".repeat(196)), b"200\n", 0o644),
        bytes(&"e".repeat(255), &pattern(2049, 3), 0o640),
    ];
    let joliet = [
        (files[1].name.as_str(), format!("{}.gz", &prefix[..61])),
        (files[2].name.as_str(), format!("{}~1.gz", &prefix[..59])),
        (files[3].name.as_str(), "a".repeat(64)),
        (files[4].name.as_str(), "b".repeat(64)),
        (files[5].name.as_str(), "c".repeat(64)),
        (files[6].name.as_str(), format!("{}.txt", "d".repeat(60))),
        (files[7].name.as_str(), "e".repeat(64)),
    ];
    let joliet: Vec<(&str, &str)> = joliet.iter().map(|(l, s)| (*l, s.as_str())).collect();
    let (a, b) = (dir.path().join("a.iso"), dir.path().join("b.iso"));
    write_iso(&a, &opts(1_700_000_000), &files).unwrap();
    check_all_renamed(&a, "cidata", &files, &joliet);
    // Reproducible, whatever the order of the inputs.
    let mut reversed = files.clone();
    reversed.reverse();
    write_iso(&b, &opts(1_700_000_000), &reversed).unwrap();
    assert!(fs_err::read(&a).unwrap() == fs_err::read(&b).unwrap());
}

#[test]
fn no_files_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("none.iso");
    write_iso(&iso, &opts(0), &[]).unwrap();
    check_isoinfo_d(&iso, "cidata");
    check_isovfy(&iso);
    check_blkid(&iso, "cidata");
    check_bsdtar_list(&iso, &[]);
    check_xorriso_find(&iso, &[]);
}

/// Names whose 8.3 forms collide, and enough long names that every directory spans several sectors.
#[test]
fn many_files_span_several_directory_sectors_in_all_trees() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<IsoFile> = (0..240)
        .map(|i| {
            let name = format!("payload-file-with-a-long-shared-prefix-{i:03}.cpio.gz");
            bytes(&name, &pattern(i * 37 % 3000, i as u64), 0o644)
        })
        .collect();
    let iso = dir.path().join("many.iso");
    write_iso(&iso, &opts(86_400), &files).unwrap();
    check_all(&iso, "cidata", &files);
    for flag in [None, Some("-J"), Some("-R")] {
        let mut args = vec!["-l", "-i", iso.to_str().unwrap()];
        args.extend(flag);
        let text = run("isoinfo", "genisoimage", &args);
        let dot = text.lines().find(|l| l.ends_with("]  . ")).unwrap();
        let size: u64 = dot.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!(
            size >= 3 * 2048,
            "{flag:?}: root directory is only {size} bytes"
        );
    }
}

#[test]
fn custom_volume_id() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("v.iso");
    let files = vec![bytes("user-data", b"#cloud-config\n", 0o644)];
    let o = IsoOptions {
        volume_id: "CIDATA".into(),
        timestamp: 0,
        mode: 0o644,
    };
    write_iso(&iso, &o, &files).unwrap();
    check_all(&iso, "CIDATA", &files);
}

#[test]
fn deterministic_and_order_independent() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload");
    fs_err::write(&payload, pattern(10_000, 9)).unwrap();
    let mut files = vec![
        bytes("user-data", b"#cloud-config\nhostname: x\n", 0o644),
        bytes("meta-data", b"instance-id: x\n", 0o644),
        IsoFile {
            name: "overlay.cpio.gz".into(),
            data: IsoData::Path(payload),
            mode: 0o600,
        },
    ];
    let (a, b, c) = (
        dir.path().join("a.iso"),
        dir.path().join("b.iso"),
        dir.path().join("c.iso"),
    );
    write_iso(&a, &opts(1_000_000_000), &files).unwrap();
    files.reverse();
    write_iso(&b, &opts(1_000_000_000), &files).unwrap();
    write_iso(&c, &opts(1_000_000_001), &files).unwrap();
    for iso in [&a, &b, &c] {
        check_all(iso, "cidata", &files);
    }
    let (ba, bb, bc) = (
        fs_err::read(&a).unwrap(),
        fs_err::read(&b).unwrap(),
        fs_err::read(&c).unwrap(),
    );
    assert!(
        ba == bb,
        "same inputs in another order must give the same bytes"
    );
    assert!(ba != bc, "a different timestamp must change the image");
    assert_eq!(ba.len(), bc.len());
}

#[test]
fn replaces_an_existing_destination_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("seed.iso");
    fs_err::write(&iso, b"old").unwrap();
    let files = vec![bytes("meta-data", b"instance-id: x\n", 0o644)];
    write_iso(&iso, &opts(0), &files).unwrap();
    check_all(&iso, "cidata", &files);
    assert_eq!(
        list_dir(dir.path()),
        ["seed.iso"],
        "no temp file may remain"
    );
}

/// sysfs reports 4096 bytes for a file that reads far shorter: the copy comes up short mid-write.
#[test]
fn short_read_fails_and_leaves_old_destination_and_no_temp_file() {
    let src = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
    assert_eq!(
        fs_err::metadata(src).unwrap().len(),
        4096,
        "this test needs a sysfs file that lies about its size"
    );
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("seed.iso");
    fs_err::write(&iso, b"old").unwrap();
    let files = vec![
        bytes("a-first", &pattern(5000, 1), 0o644),
        IsoFile {
            name: "liar".into(),
            data: IsoData::Path(src.into()),
            mode: 0o644,
        },
    ];
    let err = format!("{:#}", write_iso(&iso, &opts(0), &files).unwrap_err());
    assert!(
        err.contains("shrank") && err.contains("transparent_hugepage"),
        "{err}"
    );
    assert_eq!(fs_err::read(&iso).unwrap(), b"old");
    assert_eq!(
        list_dir(dir.path()),
        ["seed.iso"],
        "no temp file may remain"
    );
}
