//! A real seed ISO built by the `seed-iso` CLI, read back by each independent reader in its own test.

mod common;

use std::path::PathBuf;

use common::iso::*;
use common::{validate_seed, Test};
use imagegen::iso::{IsoData, IsoFile};

struct Seed {
    /// Holds the temp dir with the inputs and the image.
    _test: Test,
    iso: PathBuf,
    files: Vec<IsoFile>,
}

fn seed() -> Seed {
    let t = Test::new();
    let inputs: [(&str, Vec<u8>); 5] = [
        ("user-data", b"#cloud-config\nhostname: x\n".to_vec()),
        ("meta-data", b"instance-id: x\nlocal-hostname: x\n".to_vec()),
        (
            "network-config",
            b"network: {version: 2, ethernets: {}}\n".to_vec(),
        ),
        ("vendor-data", b"#cloud-config\n{}\n".to_vec()),
        ("overlay-worker.cpio.gz", pattern(300_000, 7)),
    ];
    let mut files = Vec::new();
    for (name, data) in inputs {
        let path = t.temp().join(name);
        fs_err::write(&path, data).unwrap();
        files.push(IsoFile {
            name: name.to_string(),
            data: IsoData::Path(path),
            mode: 0o644,
        });
    }
    fs_err::create_dir(t.temp().join("out")).unwrap();
    // Inputs by relative name: the run's working directory is the temp dir.
    t.clone()
        .args(["seed-iso", "-o", "out/seed.iso"])
        .args(["--user-data", "user-data", "--meta-data", "meta-data"])
        .args(["--network-config", "network-config"])
        .args(["--vendor-data", "vendor-data"])
        .arg("overlay-worker.cpio.gz")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run()
        .success();
    Seed {
        iso: t.temp().join("out/seed.iso"),
        _test: t,
        files,
    }
}

#[test]
fn isoinfo_d_sees_volume_joliet_and_rock_ridge() {
    let s = seed();
    check_isoinfo_d(&s.iso, "cidata");
}

#[test]
fn isoinfo_joliet_lists_exact_names() {
    let s = seed();
    check_isoinfo_joliet(&s.iso, &s.files);
}

#[test]
fn isoinfo_rock_ridge_lists_names_and_modes() {
    let s = seed();
    check_isoinfo_rock(&s.iso, &s.files);
}

#[test]
fn isoinfo_plain_names_are_level_1() {
    let s = seed();
    check_isoinfo_plain(&s.iso, &s.files);
    let text = run(
        "isoinfo",
        "genisoimage",
        &["-l", "-i", s.iso.to_str().unwrap()],
    );
    for want in [
        "USER_DAT.;1",
        "META_DAT.;1",
        "NETWORK_.;1",
        "VENDOR_D.;1",
        "OVERLAY_.GZ;1",
    ] {
        assert!(text.contains(want), "plain listing lacks {want}:\n{text}");
    }
}

#[test]
fn xorriso_find_lists_names_and_modes() {
    let s = seed();
    check_xorriso_find(&s.iso, &s.files);
}

#[test]
fn sevenzip_lists_names() {
    let s = seed();
    check_7z_list(&s.iso, &s.files);
}

#[test]
fn bsdtar_lists_names_and_modes() {
    let s = seed();
    check_bsdtar_list(&s.iso, &s.files);
}

#[test]
fn blkid_sees_cidata_iso9660() {
    let s = seed();
    check_blkid(&s.iso, "cidata");
}

#[test]
fn isovfy_finds_no_errors() {
    let s = seed();
    check_isovfy(&s.iso);
}

#[test]
fn xorriso_extracts_identical_files() {
    let s = seed();
    check_xorriso_extract(&s.iso, &s.files);
}

#[test]
fn bsdtar_extracts_identical_files() {
    let s = seed();
    check_bsdtar_extract(&s.iso, &s.files);
}

#[test]
fn sevenzip_extracts_identical_files() {
    let s = seed();
    check_7z_extract(&s.iso, &s.files);
}

#[test]
fn validate_seed_accepts_it() {
    let s = seed();
    let tool = validate_seed();
    let text = run(
        tool.to_str().unwrap(),
        "python3-yaml python3-jsonschema (or pip pyyaml jsonschema)",
        &[s.iso.to_str().unwrap()],
    );
    assert!(text.contains("0 problems"), "{text}");
}

/// Usage errors (exit 2, with the usage of both forms) say what is missing or unknown.
#[test]
fn cli_rejects_missing_output_and_unknown_options() {
    let mut all = String::new();
    for args in [
        &["--user-data", "x"][..],
        &["-o", "a.iso", "--bogus"][..],
        &["-o"][..],
    ] {
        let out = Test::new().arg("seed-iso").args(args).run().code(2);
        all.push_str(&format!(
            "$ imagegen seed-iso {}\n{}\n",
            args.join(" "),
            out.snapshot()
        ));
    }
    insta::assert_snapshot!("seed-iso-usage-errors", all);
}
