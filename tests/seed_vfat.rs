//! `imagegen seed-iso -f vfat` and `-d qcow2` through the real binary, read back by tools that
//! do not share our code (mtools, fsck.fat, blkid, qemu-img, validate-seed), and the files of a
//! seed compared with what cloud-localds itself stores for the same arguments.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::iso::{extract_files, run};
use common::vfat::{check_blkid, check_fsck, extract_to, mcopy_all, mdir_names};
use common::{validate_seed, Output, Test};

const UD: &[u8] = b"#cloud-config\nhostname: node1\n";
const MD: &[u8] = b"instance-id: node1-a\nlocal-hostname: node1\n";
const NET: &[u8] = b"network: {version: 2, ethernets: {}}\n";

fn put(t: &Test, name: &str, data: &[u8]) {
    let p = t.temp().join(name);
    fs_err::write(&p, data).unwrap();
    fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn seed_iso(t: &Test, epoch: &str, args: &[&str]) -> Output {
    t.clone()
        .arg("seed-iso")
        .args(args)
        .env("SOURCE_DATE_EPOCH", epoch)
        .run()
}

fn mode(p: &Path) -> u32 {
    fs_err::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A test directory holding user-data, meta-data and network-config.
fn inputs() -> Test {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "md", MD);
    put(&t, "net.yaml", NET);
    t
}

#[test]
fn a_vfat_seed_reads_back_with_mtools_fsck_and_blkid() {
    let t = inputs();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let long = format!("overlay-{}.cpio.gz", "w".repeat(90));
    put(&t, &long, &payload);
    seed_iso(
        &t,
        "1700000000",
        &[
            "-f",
            "vfat",
            "-o",
            "seed.img",
            "--user-data",
            "ud",
            "--meta-data",
            "md",
            "-N",
            "net.yaml",
            &long,
        ],
    )
    .success();
    let img = t.temp().join("seed.img");
    check_fsck(&img);
    check_blkid(&img, "cidata");
    let mut want = vec![
        long.clone(),
        "meta-data".into(),
        "network-config".into(),
        "user-data".into(),
    ];
    want.sort();
    assert_eq!(mdir_names(&img), want);
    let files = mcopy_all(&img);
    assert_eq!(files["user-data"], UD);
    assert_eq!(files["meta-data"], MD);
    assert_eq!(files["network-config"], NET);
    assert!(files[&long] == payload, "the payload reads back whole");
    // Timestamps are SOURCE_DATE_EPOCH (2023-11-14 22:13:20 UTC), not the time of the run.
    let listing = run("mdir", "mtools", &["-i", img.to_str().unwrap(), "::"]);
    assert!(listing.contains("2023-11-14  22:13"), "{listing}");
    // validate-seed reads ISOs and directories: give it the files.
    let dir = tempfile::tempdir().unwrap();
    extract_to(&img, dir.path());
    let text = run(
        validate_seed().to_str().unwrap(),
        "python3-yaml python3-jsonschema (or pip pyyaml jsonschema)",
        &[dir.path().to_str().unwrap()],
    );
    assert!(text.contains(" 0 problems"), "{text}");
}

#[test]
fn the_vfat_label_is_what_cloud_init_looks_for() {
    let t = inputs();
    seed_iso(
        &t,
        "0",
        &["-f", "vfat", "--volid", "CIDATA", "a.img", "ud", "md"],
    )
    .code(1);
    // 1970 has no FAT date: the error says so.
    let out = seed_iso(&t, "0", &["-f", "vfat", "a.img", "ud", "md"]).code(1);
    assert!(
        out.stderr().contains("FAT dates hold years 1980..=2107"),
        "{}",
        out.stderr()
    );
    seed_iso(
        &t,
        "1700000000",
        &["-f", "vfat", "--volid", "CIDATA", "a.img", "ud", "md"],
    )
    .success();
    check_blkid(&t.temp().join("a.img"), "CIDATA");
    let out = seed_iso(
        &t,
        "1700000000",
        &["-f", "vfat", "--volid", "Cidata", "b.img", "ud", "md"],
    )
    .code(1);
    assert!(
        out.stderr().contains("exactly `cidata` or `CIDATA`"),
        "{}",
        out.stderr()
    );
}

#[test]
fn vfat_images_are_reproducible_and_private_when_an_input_is() {
    let a = inputs();
    let b = inputs();
    for t in [&a, &b] {
        put(t, "user-data", UD);
        put(t, "meta-data", MD);
        put(t, "network-config", NET);
    }
    let order = ["user-data", "meta-data", "network-config"];
    let with = |out: &'static str, files: &[&'static str]| {
        [&["-f", "vfat", "-o", out][..], files].concat()
    };
    seed_iso(&a, "1700000000", &with("s.img", &order)).success();
    // Other order, other directory, same files: same bytes.
    let reversed: Vec<&str> = order.iter().rev().copied().collect();
    seed_iso(&b, "1700000000", &with("s.img", &reversed)).success();
    let (ia, ib) = (a.temp().join("s.img"), b.temp().join("s.img"));
    assert!(fs_err::read(&ia).unwrap() == fs_err::read(&ib).unwrap());
    assert_eq!(mode(&ia), 0o644);
    // Another SOURCE_DATE_EPOCH: another image.
    seed_iso(&b, "1700000002", &with("t.img", &order)).success();
    assert!(fs_err::read(&ia).unwrap() != fs_err::read(b.temp().join("t.img")).unwrap());
    // A private user-data makes a private image.
    fs_err::set_permissions(a.temp().join("ud"), std::fs::Permissions::from_mode(0o600)).unwrap();
    seed_iso(&a, "1700000000", &["-f", "vfat", "p.img", "ud", "md"]).success();
    assert_eq!(mode(&a.temp().join("p.img")), 0o600);
}

#[test]
fn qcow2_images_convert_back_to_the_raw_ones() {
    let t = inputs();
    for fs in ["iso9660", "vfat"] {
        let raw = format!("{fs}.raw");
        let qcow = format!("{fs}.qcow2");
        seed_iso(&t, "1700000000", &["-f", fs, &raw, "ud", "md"]).success();
        seed_iso(
            &t,
            "1700000000",
            &["-f", fs, "-d", "qcow2", &qcow, "ud", "md"],
        )
        .success();
        let q = t.temp().join(&qcow);
        let info = run("qemu-img", "qemu-utils", &["info", q.to_str().unwrap()]);
        assert!(info.contains("file format: qcow2"), "{info}");
        let back = t.temp().join(format!("{fs}.back"));
        run(
            "qemu-img",
            "qemu-utils",
            &[
                "convert",
                "-f",
                "qcow2",
                "-O",
                "raw",
                q.to_str().unwrap(),
                back.to_str().unwrap(),
            ],
        );
        assert!(
            fs_err::read(&back).unwrap() == fs_err::read(t.temp().join(&raw)).unwrap(),
            "{fs}: qcow2 holds the raw image"
        );
        // Reproducible: the same conversion again gives the same bytes.
        let again = format!("{fs}-again.qcow2");
        seed_iso(
            &t,
            "1700000000",
            &["-f", fs, "-d", "qcow2", &again, "ud", "md"],
        )
        .success();
        assert!(
            fs_err::read(&q).unwrap() == fs_err::read(t.temp().join(&again)).unwrap(),
            "{fs}"
        );
        assert_eq!(mode(&q), 0o644);
    }
    fs_err::set_permissions(t.temp().join("ud"), std::fs::Permissions::from_mode(0o600)).unwrap();
    seed_iso(&t, "1700000000", &["-d", "qcow2", "p.qcow2", "ud", "md"]).success();
    assert_eq!(mode(&t.temp().join("p.qcow2")), 0o600);
    let left: Vec<String> = common::fs::list_dir(t.temp())
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left behind: {left:?}");
}

/// cloud-localds (cloud-image-utils) and seed-iso given the same arguments store the same
/// files with the same contents, in ISO and FAT images.
#[test]
fn the_same_arguments_store_the_same_files_as_cloud_localds() {
    let t = inputs();
    put(&t, "vd", b"#cloud-config\n{}\n");
    let cloud_localds = |args: &[&str]| {
        let mut full = vec!["cloud-localds"];
        full.extend(args);
        let out = std::process::Command::new(full[0])
            .args(&full[1..])
            .current_dir(t.temp())
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run cloud-localds ({e}); install it: apt-get install cloud-image-utils"
                )
            });
        assert!(
            out.status.success(),
            "cloud-localds {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    for (fs, read) in [
        (
            "iso9660",
            extract_files as fn(&Path) -> BTreeMap<String, Vec<u8>>,
        ),
        ("vfat", mcopy_all),
    ] {
        let args = ["-f", fs, "-N", "net.yaml", "-V", "vd"];
        let theirs = format!("theirs-{fs}.img");
        let ours = format!("ours-{fs}.img");
        cloud_localds(&[&args[..], &[&theirs, "ud", "md"]].concat());
        seed_iso(
            &t,
            "1700000000",
            &[&args[..], &[&ours, "ud", "md"]].concat(),
        )
        .success();
        let (a, b) = (read(&t.temp().join(&theirs)), read(&t.temp().join(&ours)));
        assert_eq!(a, b, "{fs}");
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["meta-data", "network-config", "user-data", "vendor-data"]
        );

        // Without meta-data both write one; ours has an id from the content and the hostname.
        let theirs = format!("theirs-{fs}-h.img");
        let ours = format!("ours-{fs}-h.img");
        cloud_localds(&["-f", fs, "-H", "node1", &theirs, "ud"]);
        seed_iso(&t, "1700000000", &["-f", fs, "-H", "node1", &ours, "ud"]).success();
        let (a, b) = (read(&t.temp().join(&theirs)), read(&t.temp().join(&ours)));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{fs}"
        );
        assert_eq!(a["user-data"], b["user-data"]);
        let md = String::from_utf8_lossy(&b["meta-data"]).into_owned();
        assert!(
            md.starts_with("instance-id: iid-") && md.contains("local-hostname: node1\n"),
            "{md}"
        );
    }
}
