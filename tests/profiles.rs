//! The bad-profile corpus: every `tests/profiles/bad/NAME.yaml` must fail `imagegen profile check`
//! with exactly the text in `NAME.expected` (file, line, column, key and reason), and write nothing.
//! Every good profile must pass.

use std::path::Path;
use std::process::Command;

fn imagegen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn every_bad_profile_fails_with_its_exact_error() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/profiles/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 25,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let rel = case.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        let expected_path = case.with_extension("expected");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .expected file", rel.display()));
        let out = imagegen()
            .args(["profile", "check"])
            .arg(rel)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || stderr != expected || !out.stdout.is_empty() {
            failures.push(format!(
                "{}: exit {:?}\n--- expected\n{expected}--- got\n{stderr}",
                rel.display(),
                out.status.code()
            ));
        }
        // Every problem line names the file; those with a position name line and column.
        for line in expected.lines().skip(1) {
            assert!(
                line.trim_start().starts_with(&rel.display().to_string()),
                "{line}"
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_profile_builds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = imagegen()
        .args([
            "build",
            "--arch",
            "arm64",
            "--profile",
            "tests/profiles/bad/duplicate-node-name.yaml",
            "--out",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("duplicate node name `worker1`"));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn good_profiles_pass() {
    for p in [
        "profiles/kthw-1.31.yaml",
        "tests/profiles/good/cilium.yaml",
        "tests/profiles/good/static.yaml",
        "tests/profiles/good/twelve-workers.yaml",
    ] {
        let out = imagegen().args(["profile", "check", p]).output().unwrap();
        assert!(
            out.status.success(),
            "{p}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok ("));
    }
}

#[test]
fn builtin_profile_is_the_shipped_file() {
    let out = imagegen().args(["profile", "show"]).output().unwrap();
    let file = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/kthw-1.31.yaml"))
        .unwrap();
    assert_eq!(out.stdout, file);
}
