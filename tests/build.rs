//! `imagegen build` with packed payloads: resolve from a local mirror, stage, embed or share,
//! write ISOs; reuse, determinism, offline.

mod common;

use std::path::Path;
use std::process::Command;

use common::fs::assert_same_tree;
use common::*;

/// A build of the mirror's profile for amd64 from the mirror into `out`, quiet, with the
/// fixed PKI and SSH key; the download cache is the test's own.
fn build_from_mirror(t: &Test, m: &mirror::Mirror, out: &Path) -> Test {
    build_fixed(t, &m.profile, "amd64", out).args(["--mirror", &m.file_url(), "--quiet"])
}

#[test]
fn embed_build_writes_seed_isos_that_validate() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    let summary = build_from_mirror(&t, &m, &out).run().success();
    assert!(
        summary.stdout().contains("ISOs: 7 written, 0 unchanged"),
        "{}",
        summary.stdout()
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
    let x = t.temp().join("x.cpio.gz");
    let r = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&isos[2])
        .args(["-extract", "/overlay-worker.cpio.gz"])
        .arg(&x)
        .output()
        .expect("xorriso is needed: apt-get install xorriso");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(
        fs_err::read(&x).unwrap(),
        fs_err::read(w0.join("overlay-worker.cpio.gz")).unwrap()
    );

    // The user-data pins the archive's digest; the manifest lists the binaries.
    let ud = fs_err::read_to_string(w0.join("user-data")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(out.join("amd64/manifest.json")).unwrap()).unwrap();
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
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let a = t.temp().join("a");
    let b = t.temp().join("b");
    build_from_mirror(&t, &m, &a).run().success();
    let again = build_from_mirror(&t, &m, &a).run().success();
    let text = again.stdout();
    assert!(text.contains("ISOs: 0 written, 7 unchanged"), "{text}");
    assert!(
        text.contains("overlays unchanged: control, worker"),
        "{text}"
    );
    build_from_mirror(&t, &m, &b).run().success();
    assert_same_tree(&a.join("amd64"), &b.join("amd64"));
    // A changed input is not reused.
    let changed = build_fixed(&t, &m.profile, "amd64", &a)
        .arg("--quiet")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .run()
        .success();
    let text = changed.stdout();
    assert!(text.contains("ISOs: 7 written, 0 unchanged"), "{text}");
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
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    build_from_mirror(&t, &m, &out)
        .args(["--payload", "shared"])
        .run()
        .success();
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
    let ud = fs_err::read_to_string(arch.join("worker0/user-data")).unwrap();
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
    // Every seed of the shared mode passes cloud-init's checks too.
    let seeds: Vec<_> = [
        "gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2",
    ]
    .iter()
    .map(|v| arch.join(v).join("seed.iso"))
    .collect();
    let v = Command::new(validate_seed())
        .arg("--cloud-init")
        .args(&seeds)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn offline_with_an_empty_cache_names_what_is_missing() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    // The test's own cache (IMAGEGEN_CACHE) starts empty.
    let offline_build = || {
        t.clone()
            .args(["build", "--arch", "amd64", "--offline", "--profile"])
            .arg(&m.profile)
            .arg("--out")
            .arg(&out)
    };
    let o = offline_build()
        .arg("--pki")
        .arg(pki_fixture())
        .run()
        .code(1);
    insta::assert_snapshot!("offline-empty-cache", o.snapshot());
    assert!(!out.join("amd64").exists(), "nothing written");
    // Not even credentials: a build that cannot resolve creates no CA.
    offline_build().run().code(1);
    assert!(
        !out.join("pki").exists(),
        "a failed build created {}",
        out.join("pki").display()
    );
}

#[test]
fn fetch_then_offline_build_and_cache_import() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let o = t
        .clone()
        .args(["fetch", "--arch", "amd64", "--quiet", "--profile"])
        .arg(&m.profile)
        .args(["--mirror", &m.file_url()])
        .run()
        .success();
    assert!(
        o.stdout().contains("8 artifacts for amd64 verified"),
        "{}",
        o.stdout()
    );
    build_fixed(&t, &m.profile, "amd64", &t.temp().join("out"))
        .args(["--offline", "--quiet", "--no-iso"])
        .run()
        .success();
    assert!(!t.temp().join("out/amd64/worker0/seed.iso").exists());

    // Hand-downloaded files go into a fresh cache by digest; others are refused by name.
    let runc = m
        .root
        .join("github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64");
    fs_err::write(t.temp().join("stray.bin"), "not pinned").unwrap();
    let import = |file: &Path| {
        t.clone()
            .args(["cache", "import", "--profile"])
            .arg(&m.profile)
            .args(["--cache", "cache2"])
            .arg(file)
            .run()
    };
    let o = import(&runc).success();
    assert!(o.stdout().contains("as runc 1.1.13"), "{}", o.stdout());
    let o = import(Path::new("stray.bin")).code(1);
    insta::assert_snapshot!("cache-import-unpinned-file", o.snapshot());
}

#[test]
fn fetch_over_http_from_a_loopback_mirror_then_from_the_cache() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "arm64", &|p| p);
    let server = http::TestServer::start();
    for (path, data) in &m.files {
        server.add(&format!("/mirror/{path}"), data.clone());
    }
    let mirror_url = format!("{}/mirror", server.base());
    let fetch = || {
        t.clone()
            .args([
                "fetch",
                "--arch",
                "arm64",
                "--quiet",
                "--jobs",
                "3",
                "--profile",
            ])
            .arg(&m.profile)
            .args(["--mirror", &mirror_url])
            .run()
            .success()
    };
    let o = fetch();
    assert!(
        o.stdout().contains("(8 downloaded, 0 already cached)"),
        "{}",
        o.stdout()
    );
    assert_eq!(server.total_hits(), 8);
    assert!(server.max_concurrent() <= 3);
    let o = fetch();
    assert!(
        o.stdout().contains("(0 downloaded, 8 already cached)"),
        "{}",
        o.stdout()
    );
    assert_eq!(
        server.total_hits(),
        8,
        "a warm fetch asks the server nothing"
    );
    // The build resolves from the same cache and never needs the server again.
    drop(server);
    build_fixed(&t, &m.profile, "arm64", &t.temp().join("out"))
        .args(["--quiet", "--offline"])
        .run()
        .success();
    assert!(t.temp().join("out/arm64/worker1/seed.iso").is_file());
}
