//! The fetch payload's first-boot script: downloads from `--node-mirror` in the upstream layout,
//! retried as the profile's `first_boot` says, and on failure no download left behind, the next
//! boot set to try again and the log saying where to look. The script's fetch part runs here, on
//! the host, in a temp root, against the loopback server (it needs `curl`, `sha256sum`,
//! `sha512sum` and `tar`); the boot tests (`tests/vm_boot.rs`) run all of it in a VM.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::first_boot::{self, SCRIPT};
use common::http::{Behaviour, TestServer};
use common::*;

const RUNC: &str = "/github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64";

/// The first-boot script of `vm` in a build's `out/amd64`, as cloud-init writes it.
fn first_boot_script(out: &Path, vm: &str) -> String {
    let ud = fs_err::read_to_string(out.join("amd64").join(vm).join("user-data")).unwrap();
    first_boot::script(&ud)
}

/// The download block of `script` (up to where installing starts), runnable on the host.
fn fetch_part(script: &str, root: &Path) -> String {
    first_boot::fetch_part(script, root, "say \"installing binaries\"", false)
}

/// Builds the mirror's seeds for amd64 with the fetch payload, the nodes downloading from
/// `node_mirror`, the profile's `first_boot` set to 3 tries 1 s apart.
fn fetch_build(t: &Test, m: &mirror::Mirror, node_mirror: &str) -> PathBuf {
    m.edit_profile(|p| p + "first_boot: { fetch_attempts: 3, fetch_backoff_seconds: 1 }\n");
    let out = t.temp().join("out");
    build_fixed(t, &m.profile, "amd64", &out)
        .args([
            "--payload",
            "fetch",
            "--no-iso",
            "--node-mirror",
            node_mirror,
        ])
        .run()
        .success();
    out
}

/// Runs `script` with `sh`; its exit code, stdout and stderr.
fn run_sh(script: &str, dir: &Path) -> (Option<i32>, String, String) {
    let path = dir.join("fetch-part.sh");
    fs_err::write(&path, script).unwrap();
    let o = Command::new("sh").arg(&path).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// What is left under `root/var/tmp`.
fn leftovers(root: &Path) -> Vec<String> {
    common::fs::list_dir(&root.join("var/tmp"))
}

#[test]
fn the_fetch_block_is_golden_and_valid_sh() {
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, "profiles/kthw-1.31.yaml", "amd64", &out)
        .args(["--payload", "fetch", "--no-iso"])
        .args(["--node-mirror", "http://192.168.1.1:8080/files"])
        .run()
        .success();
    let script = first_boot_script(&out, "worker0");
    let block = &script
        [script.find("# Payload:").unwrap()..script.find("say \"installing binaries\"").unwrap()];
    insta::assert_snapshot!("fetch-block-node-mirror", block);
    for vm in ["gateway", "control0", "worker0"] {
        let path = t.temp().join(format!("{vm}.sh"));
        fs_err::write(&path, first_boot_script(&out, vm)).unwrap();
        let o = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            o.status.success(),
            "{vm}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A node mirror on loopback serving the test mirror, runc failing its first `fail_500`
/// requests with HTTP 500; the server, the node's root and the fetch part of worker0's
/// first-boot script against that mirror.
fn runc_failing(t: &Test, fail_500: u32) -> (TestServer, PathBuf, String) {
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let srv = TestServer::start();
    for (path, data) in &m.files {
        srv.add(&format!("/{path}"), data.clone());
    }
    let runc = m
        .files
        .iter()
        .find(|(p, _)| format!("/{p}") == RUNC)
        .unwrap();
    srv.add_with(
        RUNC,
        runc.1.clone(),
        Behaviour {
            fail_500,
            ..Behaviour::default()
        },
    );
    let out = fetch_build(t, &m, &srv.base());
    let root = t.temp().join("root");
    fs_err::create_dir_all(root.join("var/tmp")).unwrap();
    let script = fetch_part(&first_boot_script(&out, "worker0"), &root);
    (srv, root, script)
}

#[test]
fn a_download_that_fails_twice_is_retried_and_succeeds() {
    let t = Test::new();
    let (srv, root, script) = runc_failing(&t, 2);

    let (code, stdout, stderr) = run_sh(&script, t.temp());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(srv.statuses(RUNC), [500, 500, 200]);
    for line in [
        "imagegen: downloading runc failed (attempt 1 of 3); retrying in 1 s",
        "imagegen: downloading runc failed (attempt 2 of 3); retrying in 2 s",
    ] {
        assert!(stderr.contains(line), "no `{line}` in:\n{stderr}");
    }
    for file in ["runc", "containerd", "kubernetes-node"] {
        assert!(
            stdout.contains(&format!("imagegen: verifying {file}\n")),
            "{stdout}"
        );
    }
    // Every download came from the node mirror, none from upstream.
    assert_eq!(srv.total_hits(), 5 + 2, "{:?}", srv.log());
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    assert!(!root.join("var/lib/cloud/scripts/per-boot").exists());
}

#[test]
fn a_download_that_never_comes_fails_cleanly_and_sets_up_a_retry() {
    let t = Test::new();
    // containerd comes (into the work directory, which must go too); runc never does.
    let (srv, root, script) = runc_failing(&t, u32::MAX);

    let (code, stdout, stderr) = run_sh(&script, t.temp());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(srv.statuses(RUNC), [500, 500, 500]);
    let url = srv.url(RUNC);
    for line in [
        format!("imagegen: could not download runc from {url} in 3 attempts"),
        "imagegen: FAILED while downloading runc (exit 1); the node is NOT configured".into(),
        format!(
            "imagegen: see 'cloud-init status --long' and /var/log/cloud-init-output.log; the \
             next boot tries again, or now: sudo {SCRIPT}"
        ),
    ] {
        assert!(stderr.contains(&line), "no `{line}` in:\n{stderr}");
    }
    assert!(
        stdout.contains("imagegen: verifying containerd\n"),
        "{stdout}"
    );
    // Nothing half-downloaded stays; the next boot runs the script again.
    assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
    let hook = root.join("var/lib/cloud/scripts/per-boot/imagegen-first-boot");
    assert_eq!(fs_err::read_link(&hook).unwrap(), Path::new(SCRIPT));
}
