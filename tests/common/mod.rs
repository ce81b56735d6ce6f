//! Support shared by the integration tests: the [`Test`] builder that runs the binary, the
//! tar.gz builder, the directory walker, the local mirror, ISO readers and VM helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod archive;
pub mod first_boot;
pub mod fs;
pub mod http;
pub mod iso;
pub mod mirror;
pub mod node;
pub mod openssl;
pub mod test;
pub mod vfat;
pub mod vm;

#[allow(unused_imports)]
pub use test::{Output, Running, Test, TESTER_ENV};

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The fixed test CA (`--pki`), so certificates are the same in every run.
pub fn pki_fixture() -> PathBuf {
    root().join("tests/fixtures/pki")
}

/// The fixed test SSH public key (`--ssh-key`).
pub fn ssh_key_fixture() -> PathBuf {
    root().join("tests/fixtures/ssh/id_ed25519.pub")
}

/// `imagegen` as a plain command in the repository root, for the VM boot tests that keep
/// their own long-lived directories. Everything else uses [`Test`].
pub fn imagegen() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_imagegen"));
    c.current_dir(root());
    // Builds must not depend on the tester's own keys or cache.
    c.env("HOME", root().join("tests/fixtures/home-does-not-exist"));
    c.env_remove("SOURCE_DATE_EPOCH");
    for var in TESTER_ENV {
        c.env_remove(var);
    }
    c
}

/// `imagegen build` of `profile` (relative to the repository, or absolute) for `arch` into
/// `out`, with the fixed test PKI and SSH key, so output is comparable across runs. Add
/// arguments, then run.
pub fn build_fixed(t: &Test, profile: impl AsRef<Path>, arch: &str, out: &Path) -> Test {
    t.clone()
        .args(["build", "--arch", arch, "--profile"])
        .arg(root().join(profile))
        .arg("--out")
        .arg(out)
        .arg("--pki")
        .arg(pki_fixture())
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
}

/// The seed checker of `shared/tools` (cloud-init's own schema and parsers).
pub fn validate_seed() -> PathBuf {
    let p = root().join("../shared/tools/validate-seed");
    assert!(
        p.exists(),
        "{} is missing: the tests need shared/ beside the project",
        p.display()
    );
    p
}
