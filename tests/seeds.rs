//! Seeds as a user gets them: golden snapshots of every generated file, cloud-init's own
//! validation, determinism, atomic output, secrets.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn snapshot_build(profile: &str, arch: &str, label: &str) {
    let tmp = tempfile::tempdir().unwrap();
    build_fixed(profile, arch, tmp.path(), &["--payload", "fetch"]);
    let arch_dir = tmp.path().join(arch);
    let mut vms: Vec<_> = std::fs::read_dir(&arch_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    vms.sort();
    for vm in vms {
        let name = vm.file_name().unwrap().to_string_lossy().into_owned();
        let mut all = String::new();
        for f in ["meta-data", "network-config", "user-data"] {
            all.push_str(&format!("===== {f}\n"));
            all.push_str(&std::fs::read_to_string(vm.join(f)).unwrap());
        }
        insta::assert_snapshot!(format!("{label}-{arch}-{name}"), all);
    }
}

#[test]
fn golden_default_arm64() {
    snapshot_build("profiles/kthw-1.31.yaml", "arm64", "default");
}

#[test]
fn golden_default_amd64() {
    snapshot_build("profiles/kthw-1.31.yaml", "amd64", "default");
}

#[test]
fn golden_cilium() {
    snapshot_build("tests/profiles/good/cilium.yaml", "arm64", "cilium");
}

#[test]
fn golden_static() {
    snapshot_build("tests/profiles/good/static.yaml", "amd64", "static");
}

#[test]
fn golden_twelve_workers() {
    snapshot_build("tests/profiles/good/twelve-workers.yaml", "amd64", "twelve");
}

/// The default cluster's seed ISOs, pinned by digest: a change in their bytes is a reviewed change.
#[test]
fn golden_default_seed_iso_digests() {
    use sha2::{Digest, Sha256};
    for arch in ["arm64", "amd64"] {
        let tmp = tempfile::tempdir().unwrap();
        build_fixed(
            "profiles/kthw-1.31.yaml",
            arch,
            tmp.path(),
            &["--payload", "fetch"],
        );
        let mut listing = String::new();
        let mut isos = Vec::new();
        for vm in [
            "gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2",
        ] {
            let iso = tmp.path().join(arch).join(vm).join("seed.iso");
            let bytes = std::fs::read(&iso).unwrap();
            listing.push_str(&format!(
                "{}  {vm}/seed.iso\n",
                hex::encode(Sha256::digest(&bytes))
            ));
            isos.push(iso);
        }
        insta::assert_snapshot!(format!("default-{arch}-seed-iso-sha256"), listing);
        let out = Command::new(validate_seed()).args(&isos).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn every_seed_passes_validate_seed_with_cloud_init() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = Vec::new();
    for (i, (profile, arch)) in [
        ("profiles/kthw-1.31.yaml", "arm64"),
        ("profiles/kthw-1.31.yaml", "amd64"),
        ("tests/profiles/good/cilium.yaml", "amd64"),
        ("tests/profiles/good/static.yaml", "arm64"),
        ("tests/profiles/good/twelve-workers.yaml", "amd64"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = tmp.path().join(i.to_string());
        build_fixed(profile, arch, &out, &["--payload", "fetch"]);
        for e in std::fs::read_dir(out.join(arch)).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    assert!(dirs.len() >= 7 * 4 + 16);
    let out = Command::new(validate_seed())
        .arg("--cloud-init")
        .args(&dirs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "validate-seed failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("{} checked, 0 problems", dirs.len())),
        "{text}"
    );
}

#[test]
fn builds_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    build_fixed(
        "profiles/kthw-1.31.yaml",
        "arm64",
        a.path(),
        &["--payload", "fetch"],
    );
    build_fixed(
        "profiles/kthw-1.31.yaml",
        "arm64",
        b.path(),
        &["--payload", "fetch"],
    );
    let fa = files_under(&a.path().join("arm64"));
    assert_eq!(fa, files_under(&b.path().join("arm64")));
    for f in &fa {
        let x = std::fs::read(a.path().join("arm64").join(f)).unwrap();
        let y = std::fs::read(b.path().join("arm64").join(f)).unwrap();
        assert!(x == y, "{} differs between two builds", f.display());
    }
}

#[test]
fn a_failed_build_leaves_the_previous_output_intact() {
    let tmp = tempfile::tempdir().unwrap();
    build_fixed(
        "profiles/kthw-1.31.yaml",
        "arm64",
        tmp.path(),
        &["--payload", "fetch"],
    );
    let before: Vec<_> = files_under(&tmp.path().join("arm64"))
        .into_iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::read(tmp.path().join("arm64").join(&f)).unwrap(),
            )
        })
        .collect();
    // A template that fails while rendering: the build dies after it started writing seeds.
    let tpl = tempfile::tempdir().unwrap();
    std::fs::write(
        tpl.path().join("kubelet.service.j2"),
        "{{ vm.no_such_field }}",
    )
    .unwrap();
    let out = imagegen()
        .args([
            "build",
            "--arch",
            "arm64",
            "--payload",
            "fetch",
            "--pki",
            "tests/fixtures/pki",
            "--out",
        ])
        .arg(tmp.path())
        .arg("--templates")
        .arg(tpl.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubelet.service.j2"), "{err}");
    let after: Vec<_> = files_under(&tmp.path().join("arm64"))
        .into_iter()
        .map(|f| {
            (
                f.clone(),
                std::fs::read(tmp.path().join("arm64").join(&f)).unwrap(),
            )
        })
        .collect();
    assert_eq!(before, after, "previous output changed");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn secrets_are_private_and_never_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(&[
        "build",
        "--arch",
        "amd64",
        "--payload",
        "fetch",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains("PRIVATE KEY") && !printed.contains("client-key-data"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let pki = tmp.path().join("pki");
    assert_eq!(mode(&pki), 0o700);
    for f in [
        "ca-key.pem",
        "worker0-key.pem",
        "worker0.kubeconfig",
        "kube-proxy.kubeconfig",
    ] {
        assert_eq!(mode(&pki.join(f)), 0o600, "{f}");
    }
    let ud = tmp.path().join("amd64/worker0/user-data");
    assert_eq!(mode(&ud), 0o600, "user-data holds keys");
    assert_eq!(
        mode(&tmp.path().join("amd64/worker0/seed.iso")),
        0o600,
        "the seed ISO holds keys"
    );
    // Repacking a seed directory by hand keeps the image private too.
    let repacked = tmp.path().join("repacked.iso");
    run_ok(&[
        "seed-iso",
        "-o",
        repacked.to_str().unwrap(),
        ud.to_str().unwrap(),
        tmp.path().join("amd64/worker0/meta-data").to_str().unwrap(),
    ]);
    assert_eq!(mode(&repacked), 0o600);
    let text = std::fs::read_to_string(&ud).unwrap();
    // In write_files, keys and kubeconfigs are 0600 too.
    let doc: Vec<&str> = text.split("- path: ").collect();
    for part in doc {
        if part.starts_with("/var/lib/kubelet/worker0-key.pem")
            || part.starts_with("/var/lib/kubelet/kubeconfig")
            || part.starts_with("/var/lib/kube-proxy/kubeconfig")
        {
            assert!(part.contains("permissions: \"0600\""), "{}", &part[..80]);
        }
    }
    // A second build reuses the CA (a new one would cut off running nodes).
    let ca = std::fs::read(pki.join("ca.pem")).unwrap();
    run_ok(&[
        "build",
        "--arch",
        "amd64",
        "--payload",
        "fetch",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    assert_eq!(ca, std::fs::read(pki.join("ca.pem")).unwrap());
}

#[test]
fn plan_prints_vms_components_and_files() {
    let out = run_ok(&["plan", "--arch", "arm64"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("control0"), "{text}");
    assert!(text.contains("10.6.0.0/16"), "{text}");
    assert!(
        text.contains("node-role.kubernetes.io/control-plane:NoSchedule"),
        "{text}"
    );
    assert!(text.contains("runc.arm64"), "{text}");
    assert!(text.contains("/opt/cni/bin/*"), "{text}");

    let out = run_ok(&["plan", "--arch", "amd64", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["arch"], "amd64");
    assert_eq!(v["vms"][4]["name"], "worker0");
    assert_eq!(v["vms"][4]["pod_cidr"], "10.4.0.0/16");
    assert_eq!(
        v["vms"][1]["taints"][0]["key"],
        "node-role.kubernetes.io/control-plane"
    );
    assert_eq!(v["artifacts"][0]["component"], "containerd");
    assert!(v["artifacts"][0]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["role"] == "worker"));
}

#[test]
fn plan_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = imagegen()
        .current_dir(tmp.path())
        .args(["plan", "--arch", "arm64"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn help_has_examples_and_version_prints() {
    for args in [
        vec!["--help"],
        vec!["build", "--help"],
        vec!["plan", "--help"],
        vec!["profile", "check", "--help"],
        vec!["profile", "show", "--help"],
    ] {
        let out = run_ok(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{args:?}: {text}");
    }
    let out = run_ok(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("imagegen {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn ssh_key_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("id.pub");
    std::fs::write(&bad, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
    let out = imagegen()
        .args(["build", "--arch", "arm64", "--ssh-key"])
        .arg(&bad)
        .arg("--out")
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("id.pub:1") && err.contains("this is a private key; give the .pub file"),
        "{err}"
    );
    assert!(!tmp.path().join("o").exists());
}
