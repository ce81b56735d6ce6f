//! A real seed ISO built by the `seed-iso` CLI, read back by each independent reader in its own test.

mod iso_common;

use imagegen::iso::{IsoData, IsoFile};
use iso_common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Seed {
    _dir: tempfile::TempDir,
    iso: PathBuf,
    files: Vec<IsoFile>,
}

fn seed() -> Seed {
    let dir = tempfile::tempdir().unwrap();
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
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        files.push(IsoFile {
            name: name.to_string(),
            data: IsoData::Path(path),
            mode: 0o644,
        });
    }
    let iso = dir.path().join("out").join("seed.iso");
    std::fs::create_dir(iso.parent().unwrap()).unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let status = Command::new(env!("CARGO_BIN_EXE_imagegen"))
        .arg("seed-iso")
        .args(["-o", iso.to_str().unwrap()])
        .args([
            "--user-data",
            &p("user-data"),
            "--meta-data",
            &p("meta-data"),
        ])
        .args([
            "--network-config",
            &p("network-config"),
            "--vendor-data",
            &p("vendor-data"),
        ])
        .arg(p("overlay-worker.cpio.gz"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .status()
        .unwrap();
    assert!(status.success());
    Seed {
        _dir: dir,
        iso,
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
    let tool = Path::new("/work/shared/tools/validate-seed");
    let text = run(
        tool.to_str().unwrap(),
        "python3-yaml python3-jsonschema (or pip pyyaml jsonschema)",
        &[s.iso.to_str().unwrap()],
    );
    assert!(text.contains("0 problems"), "{text}");
}

#[test]
fn cli_rejects_missing_output_and_unknown_options() {
    for args in [
        &["--user-data", "x"][..],
        &["-o", "a.iso", "--bogus"][..],
        &["-o"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_imagegen"))
            .arg("seed-iso")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--output")
                && out.status.code() == Some(2),
            "{args:?}"
        );
    }
}
