//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn imagegen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    c.current_dir(root());
    // Builds must not depend on the tester's own keys or cache.
    c.env("HOME", root().join("tests/fixtures/home-does-not-exist"));
    c.env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Runs imagegen, panicking with its output when it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let out = imagegen().args(args).output().expect("running imagegen");
    assert!(
        out.status.success(),
        "imagegen {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds a profile with the fixed test PKI and SSH key, so output is comparable across runs.
pub fn build_fixed(profile: &str, arch: &str, out: &Path, extra: &[&str]) -> Output {
    let out_s = out.to_str().expect("utf-8 temp path");
    let mut args = vec![
        "build",
        "--arch",
        arch,
        "--profile",
        profile,
        "--out",
        out_s,
        "--pki",
        "tests/fixtures/pki",
        "--ssh-key",
        "tests/fixtures/ssh/id_ed25519.pub",
    ];
    args.extend_from_slice(extra);
    run_ok(&args)
}

pub fn validate_seed() -> PathBuf {
    let p = root().join("../shared/tools/validate-seed");
    assert!(
        p.exists(),
        "{} is missing: the tests need shared/ beside the project",
        p.display()
    );
    p
}

/// Every regular file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

pub mod http;
pub mod mirror;
pub mod vm;
