//! The command line's own contract: exit codes and what goes to stdout and stderr, whatever
//! the command.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn imagegen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c.env(
        "HOME",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home-does-not-exist"),
    );
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

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
