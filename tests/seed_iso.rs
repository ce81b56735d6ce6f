//! `imagegen seed-iso` as a drop-in for cloud-localds, through the real binary: both argument
//! forms, the names files are stored under, the meta-data written when none is given, the
//! checks of user-data, meta-data and network-config, refused outputs, long names, stdin and
//! stdout. FAT images and qcow2 are in `seed_vfat.rs`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::iso::{check_all_renamed, extract_files, run};
use common::{validate_seed, Output, Test};
use imagegen::iso::{IsoData, IsoFile};

const UD: &[u8] = b"#cloud-config\nhostname: node1\n";
const MD: &[u8] = b"instance-id: node1-a\nlocal-hostname: node1\n";
const NET: &[u8] = b"network: {version: 2, ethernets: {}}\n";

fn args_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Writes `data` as `name` in the test's directory (the binary's working directory).
fn put(t: &Test, name: &str, data: &[u8]) -> PathBuf {
    let p = t.temp().join(name);
    fs_err::write(&p, data).unwrap();
    fs_err::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p
}

/// `imagegen seed-iso ARGS` in the test's directory with a fixed SOURCE_DATE_EPOCH.
fn seed_iso(t: &Test, args: &[&str]) -> Output {
    t.clone()
        .arg("seed-iso")
        .args(args)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run()
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    files.keys().map(String::as_str).collect()
}

fn mode(p: &Path) -> u32 {
    fs_err::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn validate(path: &Path) {
    let text = run(
        validate_seed().to_str().unwrap(),
        "python3-yaml python3-jsonschema (or pip pyyaml jsonschema)",
        &[path.to_str().unwrap()],
    );
    assert!(text.contains(" 0 problems"), "{text}");
}

#[test]
fn positional_form_stores_files_as_user_data_and_meta_data() {
    let t = Test::new();
    put(&t, "my-user-data", UD);
    put(&t, "my-meta-data", MD);
    let out = seed_iso(&t, &["seed.iso", "my-user-data", "my-meta-data"]).success();
    assert_eq!(out.stdout(), "");
    assert_eq!(
        out.stderr(),
        "",
        "the cloud-localds form stores by position, silently"
    );
    let iso = t.temp().join("seed.iso");
    let files = extract_files(&iso);
    assert_eq!(names(&files), ["meta-data", "user-data"]);
    assert_eq!(files["user-data"], UD);
    assert_eq!(files["meta-data"], MD);
    validate(&iso);
}

#[test]
fn dash_o_form_stores_nocloud_files_under_their_names_and_others_as_they_are() {
    let t = Test::new();
    put(&t, "my-user-data", UD);
    put(&t, "node1.meta-data", MD);
    put(&t, "worker0-network-config.yaml", NET);
    put(&t, "overlay-worker.cpio.gz", b"payload");
    let out = seed_iso(
        &t,
        &[
            "-o",
            "s.iso",
            "my-user-data",
            "node1.meta-data",
            "worker0-network-config.yaml",
            "overlay-worker.cpio.gz",
        ],
    )
    .success();
    assert_eq!(
        out.stderr(),
        "note: my-user-data is stored as user-data\n\
         note: node1.meta-data is stored as meta-data\n\
         note: worker0-network-config.yaml is stored as network-config\n"
    );
    let files = extract_files(&t.temp().join("s.iso"));
    assert_eq!(
        names(&files),
        [
            "meta-data",
            "network-config",
            "overlay-worker.cpio.gz",
            "user-data"
        ]
    );
    assert_eq!(files["user-data"], UD);
    assert_eq!(files["network-config"], NET);
    assert_eq!(files["overlay-worker.cpio.gz"], b"payload");
}

#[test]
fn cloud_localds_flags_and_the_named_flags_store_their_files() {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "md", MD);
    put(&t, "net.yaml", NET);
    put(&t, "vd", b"#cloud-config\n{}\n");
    // cloud-localds' short flags with its positional form...
    seed_iso(&t, &["-N", "net.yaml", "-V", "vd", "a.iso", "ud", "md"]).success();
    // ...and the long ones, and imagegen's named flags with -o.
    seed_iso(
        &t,
        &[
            "--network-config",
            "net.yaml",
            "--vendor-data",
            "vd",
            "-o",
            "b.iso",
            "--user-data",
            "ud",
            "--meta-data",
            "md",
        ],
    )
    .success();
    for iso in ["a.iso", "b.iso"] {
        let files = extract_files(&t.temp().join(iso));
        assert_eq!(
            names(&files),
            ["meta-data", "network-config", "user-data", "vendor-data"],
            "{iso}"
        );
        assert_eq!(files["vendor-data"], b"#cloud-config\n{}\n");
    }
    let a = fs_err::read(t.temp().join("a.iso")).unwrap();
    assert!(a == fs_err::read(t.temp().join("b.iso")).unwrap());
}

#[test]
fn meta_data_is_written_when_missing_with_an_id_from_the_content() {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "ud2", b"#cloud-config\nhostname: node2\n");
    put(&t, "eni", b"auto eth0\niface eth0 inet dhcp\n");
    let out = seed_iso(&t, &["a.iso", "ud"]).success();
    let a = extract_files(&t.temp().join("a.iso"));
    let md = String::from_utf8(a["meta-data"].clone()).unwrap();
    let id = md
        .strip_prefix("instance-id: ")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(id.starts_with("iid-") && id.len() == 20, "{md}");
    assert_eq!(
        out.stderr(),
        format!("note: no meta-data given: writing one with instance-id {id} (the same files give the same id)\n")
    );
    validate(&t.temp().join("a.iso"));

    // The same files elsewhere, later: the same id, the same image.
    let t2 = Test::new();
    put(&t2, "ud", UD);
    seed_iso(&t2, &["a.iso", "ud"]).success();
    assert!(
        fs_err::read(t.temp().join("a.iso")).unwrap()
            == fs_err::read(t2.temp().join("a.iso")).unwrap()
    );

    // Other user-data: another instance.
    seed_iso(&t, &["b.iso", "ud2"]).success();
    let b = extract_files(&t.temp().join("b.iso"));
    assert_ne!(a["meta-data"], b["meta-data"]);

    // cloud-localds' -H, -m and -i go into it.
    let out = seed_iso(
        &t,
        &[
            "-H", "node1", "--dsmode", "local", "-i", "eni", "c.iso", "ud",
        ],
    )
    .success();
    let c = extract_files(&t.temp().join("c.iso"));
    assert!(
        out.stderr().contains(", local-hostname node1 "),
        "{}",
        out.stderr()
    );
    insta::assert_snapshot!(
        "written-meta-data",
        String::from_utf8(c["meta-data"].clone()).unwrap()
    );
    validate(&t.temp().join("c.iso"));
}

/// Each broken seed file, alone, and what seed-iso says about it.
#[test]
fn validation_errors_name_file_line_and_column() {
    let gz = |text: &[u8]| {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "user-data",
            "no-header",
            b"hostname: node1\nruncmd: [ls]\n".to_vec(),
        ),
        (
            "user-data",
            "spaced-header",
            b"# cloud-config\nhostname: node1\n".to_vec(),
        ),
        (
            "user-data",
            "header-on-line-2",
            b"\n#cloud-config\nhostname: node1\n".to_vec(),
        ),
        (
            "user-data",
            "bom",
            b"\xef\xbb\xbf#cloud-config\nhostname: node1\n".to_vec(),
        ),
        (
            "user-data",
            "shell-without-shebang",
            b"echo hello\n".to_vec(),
        ),
        (
            "user-data",
            "yaml-syntax",
            b"#cloud-config\nruncmd:\n  - echo a\n  - [ls\nhostname: x\n".to_vec(),
        ),
        (
            "user-data",
            "bad-indent",
            b"#cloud-config\nwrite_files:\n  - path: /etc/x\n   content: hi\n".to_vec(),
        ),
        (
            "user-data",
            "duplicate-key",
            b"#cloud-config\nruncmd: [a]\nhostname: x\nruncmd: [b]\n".to_vec(),
        ),
        (
            "user-data",
            "unknown-keys",
            b"#cloud-config\nhostnme: node1\nwrite_files:\n  - path: /x\n    contnet: hi\nzzz: 1\n"
                .to_vec(),
        ),
        (
            "user-data",
            "wrong-kinds",
            b"#cloud-config\nruncmd: echo hi\nwrite_files:\n  - path: /x\n    permissions: 0644\n"
                .to_vec(),
        ),
        ("user-data", "a-list", b"#cloud-config\n- a\n- b\n".to_vec()),
        (
            "user-data",
            "not-utf8",
            b"#cloud-config\nhostname: n\xffde\n".to_vec(),
        ),
        ("user-data", "gzip", gz(b"#cloud-config\nhostnme: x\n")),
        (
            "vendor-data",
            "unknown-key",
            b"#cloud-config\npackage: curl\n".to_vec(),
        ),
        ("meta-data", "a-list", b"- instance-id\n".to_vec()),
        (
            "meta-data",
            "bad-values",
            b"instance-id: 42\nlocal-hostname: node_1\n".to_vec(),
        ),
        (
            "network-config",
            "version-3",
            b"version: 3\nethernets: {}\n".to_vec(),
        ),
        (
            "network-config",
            "no-version",
            b"network:\n  ethernets: {}\n".to_vec(),
        ),
        (
            "network-config",
            "yaml-syntax",
            b"version: 2\nethernets: {\n".to_vec(),
        ),
    ];
    let mut all = String::new();
    for (kind, case, data) in cases {
        let t = Test::new();
        put(&t, "ud", UD);
        put(&t, "md", MD);
        let file = format!("{case}.{kind}");
        put(&t, &file, &data);
        let mut args = vec!["-o", "s.iso"];
        let flag = format!("--{kind}");
        match kind {
            "user-data" => args.extend(["--meta-data", "md"]),
            "meta-data" => args.extend(["--user-data", "ud"]),
            _ => args.extend(["--user-data", "ud", "--meta-data", "md"]),
        }
        args.extend([flag.as_str(), file.as_str()]);
        let out = seed_iso(&t, &args).code(1);
        assert!(
            !t.temp().join("s.iso").exists(),
            "{file}: no image on error"
        );
        all.push_str(&format!(
            "$ imagegen seed-iso {}\n{}\n",
            args.join(" "),
            out.snapshot()
        ));
    }
    insta::assert_snapshot!("validation-errors", all);
}

#[test]
fn a_meta_data_without_instance_id_is_a_warning() {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "md", b"local-hostname: node1\n");
    let out = seed_iso(&t, &["s.iso", "ud", "md"]).success();
    assert!(
        out.stderr()
            .starts_with("warning: md: no `instance-id`: cloud-init uses `nocloud`"),
        "{}",
        out.stderr()
    );
}

#[test]
fn every_format_cloud_init_knows_passes() {
    let gz = |text: &[u8]| {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        e.finish().unwrap()
    };
    for (case, data) in [
        ("empty", Vec::new()),
        ("cloud-config", b"#cloud-config\npackages: [curl]\nruncmd:\n  - [sh, -c, 'echo a: b']\n".to_vec()),
        ("empty-cloud-config", b"#cloud-config\n".to_vec()),
        ("crlf", b"#cloud-config\r\nhostname: x\r\n".to_vec()),
        ("script", b"#!/bin/sh\necho hi\n".to_vec()),
        ("include", b"#include\nhttps://example.com/user-data\n".to_vec()),
        ("boothook", b"#cloud-boothook\n#!/bin/sh\necho hi\n".to_vec()),
        ("jinja", b"## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n".to_vec()),
        ("archive", b"#cloud-config-archive\n- type: text/cloud-config\n  content: 'hostname: x'\n".to_vec()),
        (
            "mime",
            b"Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n--B\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho hi\n--B--\n".to_vec(),
        ),
        ("gzip", gz(b"#cloud-config\nhostname: x\n")),
    ] {
        let t = Test::new();
        put(&t, "ud", &data);
        put(&t, "md", MD);
        seed_iso(&t, &["s.iso", "ud", "md"]).success();
        assert_eq!(extract_files(&t.temp().join("s.iso"))["user-data"], data, "{case}");
    }
}

#[test]
fn no_validate_writes_the_files_as_they_are() {
    let t = Test::new();
    let bad = b"hostname: node1\nnot yaml: [\n";
    put(&t, "ud", bad);
    put(&t, "md", b"- not a mapping\n");
    put(&t, "net", b"version: 9\n");
    seed_iso(&t, &["-N", "net", "s.iso", "ud", "md"]).code(1);
    seed_iso(&t, &["--no-validate", "-N", "net", "s.iso", "ud", "md"]).success();
    let files = extract_files(&t.temp().join("s.iso"));
    assert_eq!(files["user-data"], bad);
    assert_eq!(files["network-config"], b"version: 9\n");
}

#[test]
fn an_output_that_is_also_an_input_or_an_earlier_seed_is_refused() {
    let t = Test::new();
    let dir = t.temp().join("out/arm64/worker0");
    fs_err::create_dir_all(&dir).unwrap();
    for (name, data) in [
        ("user-data", UD),
        ("meta-data", MD),
        ("network-config", NET),
    ] {
        fs_err::write(dir.join(name), data).unwrap();
    }
    let glob = |with_seed: bool| {
        let mut v: Vec<String> = ["meta-data", "network-config", "seed.iso", "user-data"]
            .iter()
            .filter(|n| with_seed || **n != "seed.iso")
            .map(|n| format!("out/arm64/worker0/{n}"))
            .collect();
        v.sort();
        v
    };
    let mut args = vec!["-o".to_string(), "out/arm64/worker0/seed.iso".to_string()];
    args.extend(glob(false));
    seed_iso(&t, &args_of(&args)).success();
    let seed = dir.join("seed.iso");
    let before = fs_err::read(&seed).unwrap();

    let mut all = String::new();
    // The shell's out/arm64/worker0/* now holds seed.iso: as the output...
    let mut again = vec!["-o".to_string(), "out/arm64/worker0/seed.iso".to_string()];
    again.extend(glob(true));
    // ...as another name of the output (a hard link)...
    fs_err::hard_link(&seed, t.temp().join("link.iso")).unwrap();
    let linked: Vec<String> = [
        "-o",
        "link.iso",
        "out/arm64/worker0/seed.iso",
        "out/arm64/worker0/user-data",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // ...and as an input of a new image.
    let mut elsewhere = vec!["-o".to_string(), "new.iso".to_string()];
    elsewhere.extend(glob(true));
    for args in [again, linked, elsewhere] {
        let out = seed_iso(&t, &args_of(&args)).code(1);
        all.push_str(&format!(
            "$ imagegen seed-iso {}\n{}\n",
            args.join(" "),
            out.snapshot()
        ));
    }
    insta::assert_snapshot!("output-among-inputs", all);
    assert!(
        fs_err::read(&seed).unwrap() == before,
        "the refused output is untouched"
    );
    assert!(!t.temp().join("new.iso").exists());
}

#[test]
fn long_names_are_whole_in_rock_ridge_and_cut_in_joliet() {
    let t = Test::new();
    put(&t, "user-data", UD);
    put(&t, "meta-data", MD);
    let long = format!("overlay-{}.cpio.gz", "w".repeat(70));
    put(&t, &long, b"payload\n");
    seed_iso(&t, &["-o", "s.iso", "user-data", "meta-data", &long]).success();
    let files: Vec<IsoFile> = [
        ("user-data", UD),
        ("meta-data", MD),
        (long.as_str(), &b"payload\n"[..]),
    ]
    .iter()
    .map(|(n, d)| IsoFile {
        name: n.to_string(),
        data: IsoData::Bytes(d.to_vec()),
        mode: 0o644,
    })
    .collect();
    let joliet = format!("overlay-{}.gz", "w".repeat(53));
    check_all_renamed(
        &t.temp().join("s.iso"),
        "cidata",
        &files,
        &[(long.as_str(), joliet.as_str())],
    );
}

#[test]
fn usage_and_input_errors() {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "md", MD);
    put(&t, "my-user-data", UD);
    put(&t, "user-data", UD);
    let no_qemu = t.temp().join("empty-path");
    fs_err::create_dir(&no_qemu).unwrap();
    let mut all = String::new();
    let cases: &[&[&str]] = &[
        &[],
        &["s.iso", "ud", "md", "net"],
        &["s.iso", "ud", "--user-data", "ud"],
        &["-o", "s.iso", "-"],
        &["s.iso", "-", "--meta-data", "-"],
        &["-o", "s.iso", "md"],
        &["-o", "s.iso", "user-data", "my-user-data"],
        &["-H", "node1", "s.iso", "ud", "md"],
        &["-H", "node_1", "s.iso", "ud"],
        &["--volid", "CiData", "s.iso", "ud"],
        &["s.iso", "missing-user-data"],
        &["-f", "ext4", "s.iso", "ud"],
        &["-d", "vmdk", "s.iso", "ud"],
    ];
    for args in cases {
        let out = seed_iso(&t, args).failure();
        all.push_str(&format!(
            "$ imagegen seed-iso {}\n{}\n",
            args.join(" "),
            out.snapshot()
        ));
    }
    let args = ["-d", "qcow2", "s.qcow2", "ud"];
    let out = t
        .clone()
        .arg("seed-iso")
        .args(args)
        .env("PATH", &no_qemu)
        .run()
        .code(1);
    all.push_str(&format!(
        "$ PATH=(no qemu-img) imagegen seed-iso {}\n{}\n",
        args.join(" "),
        out.snapshot()
    ));
    insta::assert_snapshot!("usage-and-input-errors", all);
    assert!(!t.temp().join("s.iso").exists() && !t.temp().join("s.qcow2").exists());
}

#[test]
fn user_data_from_stdin_and_the_image_to_stdout() {
    let t = Test::new();
    put(&t, "ud", UD);
    put(&t, "md", MD);
    t.clone()
        .args(["seed-iso", "s.iso", "-", "md"])
        .stdin(UD)
        .run()
        .success();
    let iso = t.temp().join("s.iso");
    assert_eq!(extract_files(&iso)["user-data"], UD);
    assert_eq!(mode(&iso), 0o600, "stdin may hold secrets");
    seed_iso(&t, &["file.iso", "ud", "md"]).success();
    let file = fs_err::read(t.temp().join("file.iso")).unwrap();
    // The image is binary: read stdout as bytes (Test keeps text).
    let piped = std::process::Command::new(env!("CARGO_BIN_EXE_imagegen"))
        .current_dir(t.temp())
        .args(["seed-iso", "-", "ud", "md"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(
        piped.stdout == file,
        "stdout holds the same image as a file"
    );
    // A reader that goes away early is its own choice, not a failure.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let closed = std::process::Command::new(env!("CARGO_BIN_EXE_imagegen"))
        .current_dir(t.temp())
        .args(["seed-iso", "-", "ud", "md"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(closed.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_private_input_makes_a_private_image() {
    let t = Test::new();
    let ud = put(&t, "ud", UD);
    put(&t, "md", MD);
    seed_iso(&t, &["open.iso", "ud", "md"]).success();
    assert_eq!(mode(&t.temp().join("open.iso")), 0o644);
    fs_err::set_permissions(&ud, std::fs::Permissions::from_mode(0o600)).unwrap();
    seed_iso(&t, &["closed.iso", "ud", "md"]).success();
    let iso = t.temp().join("closed.iso");
    assert_eq!(mode(&iso), 0o600);
    // Inside, the private file keeps its privacy (Rock Ridge modes).
    let listing = run(
        "isoinfo",
        "genisoimage",
        &["-R", "-l", "-i", iso.to_str().unwrap()],
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-------") && l.ends_with("user-data ")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with("meta-data ")),
        "{listing}"
    );
}
