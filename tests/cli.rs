//! The command line's own contract: exit codes and what goes to stdout and stderr, whatever
//! the command.

use std::process::{Output, Stdio};

mod common;
use common::imagegen;

/// Runs imagegen with a stdout whose reader is already gone: every write to it fails with a
/// broken pipe.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    imagegen()
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    for args in [
        &["plan", "--arch", "arm64"][..],
        &["plan", "--arch", "amd64", "--json"],
        &["profile", "show"],
        &["profile", "check", "profiles/kthw-1.31.yaml"],
        &["cache", "dir", "--cache", "/tmp/imagegen-cache"],
        &["--help"],
        &["--version"],
    ] {
        let out = run_into_closed_pipe(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "imagegen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "imagegen {args:?} complained: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn profile_check_of_a_missing_file_names_the_file_and_the_cause() {
    let out = imagegen()
        .args(["profile", "check", "tests/profiles/no-such-profile.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot read profile tests/profiles/no-such-profile.yaml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_private_key_given_as_ssh_key_is_named_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id_ed25519");
    fs_err::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = imagegen()
        .args([
            "build",
            "--arch",
            "arm64",
            "--payload",
            "fetch",
            "--ssh-key",
        ])
        .arg(&key)
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("id_ed25519:1: this is a private key; give the .pub file"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn an_output_directory_that_cannot_be_made_names_out() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs_err::write(&file, "").unwrap();
    let out = file.join("out");
    let o = imagegen()
        .args(["build", "--arch", "amd64", "--payload", "fetch", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "error: the output directory (--out {}) cannot be made",
            out.display()
        )),
        "{stderr}"
    );
}
