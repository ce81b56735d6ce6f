//! `imagegen build` with packed payloads: resolve from a local mirror, stage, embed or share,
//! write ISOs; reuse, determinism, offline.

mod common;

use std::process::Command;

use common::*;

fn build_embed(
    m: &mirror::Mirror,
    out: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> String {
    let url = m.file_url();
    let mut args = vec![
        "build",
        "--arch",
        "amd64",
        "--profile",
        m.profile.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--mirror",
        &url,
        "--pki",
        "tests/fixtures/pki",
        "--ssh-key",
        "tests/fixtures/ssh/id_ed25519.pub",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let o = run_ok(&args);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn embed_build_writes_seed_isos_that_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let out = tmp.path().join("out");
    let summary = build_embed(&m, &out, &tmp.path().join("cache"), &[]);
    assert!(
        summary.contains("ISOs: 7 written, 0 unchanged"),
        "{summary}"
    );
    let w0 = out.join("amd64/worker0");
    for f in [
        "user-data",
        "meta-data",
        "network-config",
        "overlay-worker.cpio.gz",
        "seed.iso",
    ] {
        assert!(w0.join(f).is_file(), "{f}");
    }
    assert!(!out.join("amd64/gateway/overlay-worker.cpio.gz").exists());
    assert!(out
        .join("amd64/overlay/worker/usr/local/bin/kubelet")
        .is_file());
    assert!(out
        .join("amd64/overlay/worker/opt/cni/bin/bridge")
        .is_file());
    assert!(out.join("amd64/overlay/control/bin/containerd").is_file());

    let isos: Vec<_> = ["gateway", "control0", "worker0", "worker2"]
        .iter()
        .map(|v| out.join("amd64").join(v).join("seed.iso"))
        .collect();
    let v = Command::new(validate_seed())
        .arg("--cloud-init")
        .args(&isos)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));

    // The seed ISO carries the overlay byte for byte (read back by xorriso).
    let x = tmp.path().join("x.cpio.gz");
    let r = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&isos[2])
        .args(["-extract", "/overlay-worker.cpio.gz"])
        .arg(&x)
        .output()
        .expect("xorriso is needed: apt-get install xorriso");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        std::fs::read(&x).unwrap(),
        std::fs::read(w0.join("overlay-worker.cpio.gz")).unwrap()
    );

    // The user-data pins the archive's digest; the manifest lists the binaries.
    let ud = std::fs::read_to_string(w0.join("user-data")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("amd64/manifest.json")).unwrap()).unwrap();
    let sha = manifest["overlays"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "worker")
        .unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        ud.contains(sha.trim_start_matches("sha256:")),
        "user-data does not pin {sha}"
    );
    let vm = manifest["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "worker0")
        .unwrap();
    let paths: Vec<&str> = vm["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for p in [
        "/bin/containerd",
        "/usr/local/bin/runc",
        "/usr/local/bin/kube-proxy",
        "/opt/cni/bin/loopback",
        "/var/lib/kubelet/worker0-key.pem",
    ] {
        assert!(paths.contains(&p), "{p} not in manifest: {paths:?}");
    }
    assert!(!paths.contains(&"/usr/local/bin/kubeadm"));

    // The embed payload's user-data and first-boot script, pinned (fixture PKI, test mirror).
    insta::assert_snapshot!("embed-amd64-worker0-user-data", ud);
}

#[test]
fn rebuild_reuses_and_is_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let cache = tmp.path().join("cache");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    build_embed(&m, &a, &cache, &[]);
    let again = build_embed(&m, &a, &cache, &[]);
    assert!(again.contains("ISOs: 0 written, 7 unchanged"), "{again}");
    assert!(
        again.contains("overlays unchanged: control, worker"),
        "{again}"
    );
    build_embed(&m, &b, &cache, &[]);
    let fa = files_under(&a.join("amd64"));
    assert_eq!(fa, files_under(&b.join("amd64")));
    for f in &fa {
        assert!(
            std::fs::read(a.join("amd64").join(f)).unwrap()
                == std::fs::read(b.join("amd64").join(f)).unwrap(),
            "{} differs",
            f.display()
        );
    }
    // A changed input is not reused.
    let changed = imagegen()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "build",
            "--arch",
            "amd64",
            "--quiet",
            "--pki",
            "tests/fixtures/pki",
            "--profile",
        ])
        .arg(&m.profile)
        .arg("--out")
        .arg(&a)
        .arg("--cache")
        .arg(&cache)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains("ISOs: 7 written, 0 unchanged"),
        "{text}{}",
        String::from_utf8_lossy(&changed.stderr)
    );
}

#[test]
fn a_stage_failure_names_the_role_once() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let out = tmp.path().join("out");
    // newc cpio headers hold 32-bit mtimes: the stage refuses this one.
    let o = imagegen()
        .env("SOURCE_DATE_EPOCH", "5000000000")
        .args(["build", "--arch", "amd64", "--quiet", "--profile"])
        .arg(&m.profile)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("--mirror")
        .arg(m.file_url())
        .args(["--pki", "tests/fixtures/pki"])
        .args(["--ssh-key", "tests/fixtures/ssh/id_ed25519.pub"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: staging the overlay of role `control`: "),
        "{err}"
    );
    assert_eq!(
        err.matches("staging").count(),
        1,
        "context given twice: {err}"
    );
    assert!(!out.join("amd64").exists(), "nothing written");
}

#[test]
fn shared_payload_writes_one_iso_per_role() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let out = tmp.path().join("out");
    build_embed(
        &m,
        &out,
        &tmp.path().join("cache"),
        &["--payload", "shared"],
    );
    let arch = out.join("amd64");
    for role in ["worker", "control"] {
        let iso = arch.join(format!("payload-{role}.iso"));
        let blkid = Command::new("blkid")
            .arg("-p")
            .arg("-o")
            .arg("export")
            .arg(&iso)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&blkid.stdout);
        assert!(text.contains(&format!("LABEL=payload-{role}")), "{text}");
        assert!(text.contains("TYPE=iso9660"), "{text}");
    }
    assert!(!arch.join("worker0/overlay-worker.cpio.gz").exists());
    let ud = std::fs::read_to_string(arch.join("worker0/user-data")).unwrap();
    let script = &ud[ud.find("# Payload:").unwrap()..ud.find("systemctl daemon-reload").unwrap()];
    insta::assert_snapshot!("shared-amd64-worker0-payload-block", script);
    assert!(
        ud.contains("/dev/disk/by-label/payload-worker"),
        "user-data must mount the payload drive"
    );
    let listing = Command::new("isoinfo")
        .args(["-R", "-f", "-i"])
        .arg(arch.join("worker0/seed.iso"))
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(!names.contains("overlay"), "{names}");
}

#[test]
fn offline_with_an_empty_cache_names_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let out = tmp.path().join("out");
    let offline_build = |extra: &[&str]| {
        imagegen()
            .args(["build", "--arch", "amd64", "--offline", "--profile"])
            .arg(&m.profile)
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(tmp.path().join("empty-cache"))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = offline_build(&["--pki", "tests/fixtures/pki"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "containerd-1.7.20-linux-amd64.tar.gz",
        "runc.amd64",
        "kubernetes-node-linux-amd64.tar.gz",
        "imagegen fetch --arch amd64 --profile",
        "imagegen cache import",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in:\n{err}");
    }
    assert!(!out.join("amd64").exists(), "nothing written");
    // Not even credentials: a build that cannot resolve creates no CA.
    let o = offline_build(&[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        !out.join("pki").exists(),
        "a failed build created {}",
        out.join("pki").display()
    );
}

#[test]
fn fetch_then_offline_build_and_cache_import() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "amd64", &|p| p);
    let cache = tmp.path().join("cache");
    let o = run_ok(&[
        "fetch",
        "--arch",
        "amd64",
        "--quiet",
        "--profile",
        m.profile.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--mirror",
        &m.file_url(),
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("6 artifacts for amd64 verified"), "{text}");
    run_ok(&[
        "build",
        "--arch",
        "amd64",
        "--offline",
        "--quiet",
        "--no-iso",
        "--pki",
        "tests/fixtures/pki",
        "--profile",
        m.profile.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    assert!(!tmp.path().join("out/amd64/worker0/seed.iso").exists());

    // Hand-downloaded files go into a fresh cache by digest; others are refused by name.
    let cache2 = tmp.path().join("cache2");
    let runc = m
        .root
        .join("github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64");
    let stray = tmp.path().join("stray.bin");
    std::fs::write(&stray, "not pinned").unwrap();
    let o = run_ok(&[
        "cache",
        "import",
        "--profile",
        m.profile.to_str().unwrap(),
        "--cache",
        cache2.to_str().unwrap(),
        runc.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("as runc 1.1.13"));
    let o = imagegen()
        .args(["cache", "import", "--profile"])
        .arg(&m.profile)
        .arg("--cache")
        .arg(&cache2)
        .arg(&stray)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("stray.bin"));
}

#[path = "../src/test_http.rs"]
mod test_http;

#[test]
fn fetch_over_http_from_a_loopback_mirror_then_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let m = mirror::build(tmp.path(), "arm64", &|p| p);
    let server = test_http::TestServer::start();
    for (path, data) in &m.files {
        server.add(&format!("/mirror/{path}"), data.clone());
    }
    let mirror_url = format!("{}/mirror", server.base());
    let cache = tmp.path().join("cache");
    let args = [
        "fetch",
        "--arch",
        "arm64",
        "--quiet",
        "--jobs",
        "3",
        "--profile",
        m.profile.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--mirror",
        &mirror_url,
    ];
    let o = run_ok(&args);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(6 downloaded, 0 already cached)"));
    assert_eq!(server.total_hits(), 6);
    assert!(server.max_concurrent() <= 3);
    let o = run_ok(&args);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(0 downloaded, 6 already cached)"));
    assert_eq!(
        server.total_hits(),
        6,
        "a warm fetch asks the server nothing"
    );
    // The build resolves from the same cache and never needs the server again.
    drop(server);
    run_ok(&[
        "build",
        "--arch",
        "arm64",
        "--quiet",
        "--offline",
        "--pki",
        "tests/fixtures/pki",
        "--profile",
        m.profile.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        tmp.path().join("out").to_str().unwrap(),
    ]);
    assert!(tmp.path().join("out/arm64/worker1/seed.iso").is_file());
}
