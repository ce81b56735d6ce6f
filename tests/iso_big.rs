//! Large files, alone in this test binary so VmHWM (peak RSS) reflects only the write under test.

mod common;

use common::fs::list_dir;
use common::iso::*;
use imagegen::iso::{write_iso, IsoData, IsoFile, IsoOptions};
use std::io::{Read, Seek, SeekFrom, Write};

fn vm_hwm_kib() -> u64 {
    let status = fs_err::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A 3 GiB sparse payload streams through with a small, bounded peak RSS; its bytes land at the
/// extent an independent reader reports.
#[test]
fn three_gib_sparse_file_streams_with_small_rss() {
    const SIZE: u64 = 3 << 30;
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload");
    let mut f = fs_err::File::create(&payload).unwrap();
    f.write_all(b"HEAD-MARKER").unwrap();
    f.seek(SeekFrom::Start(SIZE - 11)).unwrap();
    f.write_all(b"TAIL-MARKER").unwrap();
    drop(f);
    let files = vec![
        bytes("meta-data", b"instance-id: x\n", 0o644),
        IsoFile {
            name: "overlay-worker.cpio.gz".into(),
            data: IsoData::Path(payload),
            mode: 0o644,
        },
    ];
    let iso = dir.path().join("big.iso");
    let before = vm_hwm_kib();
    write_iso(
        &iso,
        &IsoOptions {
            volume_id: "cidata".into(),
            timestamp: 0,
            mode: 0o644,
        },
        &files,
    )
    .unwrap();
    let grew = vm_hwm_kib().saturating_sub(before);
    assert!(
        grew < 16 * 1024,
        "peak RSS grew by {grew} KiB while writing a 3 GiB file"
    );

    check_isoinfo_d(&iso, "cidata");
    check_isoinfo_rock(&iso, &files);
    check_isoinfo_joliet(&iso, &files);
    check_bsdtar_list(&iso, &files);
    check_xorriso_find(&iso, &files);
    check_7z_list(&iso, &files);
    check_blkid(&iso, "cidata");
    check_isovfy(&iso);
    // Extracting 3 GiB twice would dominate the suite; instead read the payload's two ends at the
    // extent isoinfo reports.
    let text = run(
        "isoinfo",
        "genisoimage",
        &["-R", "-l", "-i", iso.to_str().unwrap()],
    );
    let line = text
        .lines()
        .find(|l| l.ends_with("overlay-worker.cpio.gz "))
        .unwrap();
    let extent: u64 = line
        .split('[')
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut img = fs_err::File::open(&iso).unwrap();
    let mut buf = [0u8; 11];
    img.seek(SeekFrom::Start(extent * 2048)).unwrap();
    img.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HEAD-MARKER");
    img.seek(SeekFrom::Start(extent * 2048 + SIZE - 11))
        .unwrap();
    img.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"TAIL-MARKER");
}

#[test]
fn four_gib_file_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("huge");
    fs_err::File::create(&payload)
        .unwrap()
        .set_len(1 << 32)
        .unwrap();
    let files = vec![IsoFile {
        name: "huge".into(),
        data: IsoData::Path(payload),
        mode: 0o644,
    }];
    let iso = dir.path().join("seed.iso");
    let err = write_iso(
        &iso,
        &IsoOptions {
            volume_id: "cidata".into(),
            timestamp: 0,
            mode: 0o644,
        },
        &files,
    )
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("'huge' is 4294967296 bytes") && msg.contains("4 GiB - 1"),
        "{msg}"
    );
    assert_eq!(list_dir(dir.path()), ["huge"], "only the input may exist");
}
