//! Seeds as a user gets them: golden snapshots of every generated file, cloud-init's own
//! validation, determinism, atomic output, secrets.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fs::{assert_same_tree, list_dir, read_tree};
use common::{build_fixed, validate_seed, Test};

const DEFAULT: &str = "profiles/kthw-1.31.yaml";

/// The VM directories of a build's `<out>/<arch>` (those with a user-data), sorted.
fn vm_dirs(arch_dir: &Path) -> Vec<PathBuf> {
    list_dir(arch_dir)
        .into_iter()
        .map(|n| arch_dir.join(n))
        .filter(|p| p.join("user-data").is_file())
        .collect()
}

fn snapshot_build(profile: &str, arch: &str, label: &str) {
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, profile, arch, &out)
        .args(["--payload", "fetch"])
        .run()
        .success();
    for vm in vm_dirs(&out.join(arch)) {
        let name = vm.file_name().unwrap().to_string_lossy().into_owned();
        let mut all = String::new();
        for f in ["meta-data", "network-config", "user-data"] {
            all.push_str(&format!("===== {f}\n"));
            all.push_str(&fs_err::read_to_string(vm.join(f)).unwrap());
        }
        insta::assert_snapshot!(format!("{label}-{arch}-{name}"), all);
    }
}

#[test]
fn golden_default_arm64() {
    snapshot_build(DEFAULT, "arm64", "default");
}

#[test]
fn golden_default_amd64() {
    snapshot_build(DEFAULT, "amd64", "default");
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
        let t = Test::new();
        let out = t.temp().join("out");
        build_fixed(&t, DEFAULT, arch, &out)
            .args(["--payload", "fetch"])
            .run()
            .success();
        let mut listing = String::new();
        let mut isos = Vec::new();
        for vm in [
            "gateway", "control0", "control1", "control2", "worker0", "worker1", "worker2",
        ] {
            let iso = out.join(arch).join(vm).join("seed.iso");
            let bytes = fs_err::read(&iso).unwrap();
            listing.push_str(&format!(
                "{}  {vm}/seed.iso\n",
                hex::encode(Sha256::digest(&bytes))
            ));
            isos.push(iso);
        }
        insta::assert_snapshot!(format!("default-{arch}-seed-iso-sha256"), listing);
        let v = Command::new(validate_seed()).args(&isos).output().unwrap();
        assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    }
}

#[test]
fn every_seed_and_its_iso_pass_validate_seed_with_cloud_init() {
    let t = Test::new();
    let mut dirs = Vec::new();
    for (i, (profile, arch)) in [
        (DEFAULT, "arm64"),
        (DEFAULT, "amd64"),
        ("tests/profiles/good/cilium.yaml", "amd64"),
        ("tests/profiles/good/static.yaml", "arm64"),
        ("tests/profiles/good/twelve-workers.yaml", "amd64"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = t.temp().join(i.to_string());
        build_fixed(&t, profile, arch, &out)
            .args(["--payload", "fetch"])
            .run()
            .success();
        dirs.extend(vm_dirs(&out.join(arch)));
    }
    assert!(dirs.len() >= 7 * 4 + 16);
    // And the ISOs as QEMU gets them: label, file names, the same files.
    let isos: Vec<PathBuf> = dirs.iter().map(|d| d.join("seed.iso")).collect();
    dirs.extend(isos);
    let v = Command::new(validate_seed())
        .arg("--cloud-init")
        .args(&dirs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "validate-seed failed:\n{text}\n{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        text.contains(&format!("{} checked, 0 problems", dirs.len())),
        "{text}"
    );
}

#[test]
fn builds_are_byte_identical() {
    let t = Test::new();
    for out in ["a", "b"] {
        build_fixed(&t, DEFAULT, "arm64", &t.temp().join(out))
            .args(["--payload", "fetch"])
            .run()
            .success();
    }
    assert_same_tree(&t.temp().join("a/arm64"), &t.temp().join("b/arm64"));
}

#[test]
fn a_failed_build_leaves_the_previous_output_intact() {
    let t = Test::new();
    let out = t.temp().join("out");
    let build = || build_fixed(&t, DEFAULT, "arm64", &out).args(["--payload", "fetch"]);
    build().run().success();
    let before = read_tree(&out.join("arm64"));
    // A template that fails while rendering: the build dies after it started writing seeds.
    let tpl = t.temp().join("templates");
    fs_err::create_dir(&tpl).unwrap();
    fs_err::write(tpl.join("kubelet.service.j2"), "{{ vm.no_such_field }}").unwrap();
    let failed = build().arg("--templates").arg(&tpl).run().code(1);
    insta::assert_snapshot!("failed-template-build", failed.snapshot());
    assert!(
        read_tree(&out.join("arm64")) == before,
        "previous output changed"
    );
    let leftovers: Vec<_> = list_dir(&out)
        .into_iter()
        // `.lock` is the build lock, kept between runs.
        .filter(|n| n.starts_with('.') && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn secrets_are_private_and_never_printed() {
    let t = Test::new();
    // No --pki: the build makes its own CA under out/pki.
    let build = || {
        t.clone()
            .fetch_build()
            .args(["--out", "out"])
            .run()
            .success()
    };
    let first = build();
    let printed = format!("{}{}", first.stdout(), first.stderr());
    assert!(!printed.contains("PRIVATE KEY") && !printed.contains("client-key-data"));
    let mode = |p: &Path| fs_err::metadata(p).unwrap().permissions().mode() & 0o777;
    let out = t.temp().join("out");
    let pki = out.join("pki");
    assert_eq!(mode(&pki), 0o700);
    for f in [
        "ca-key.pem",
        "worker0-key.pem",
        "worker0.kubeconfig",
        "kube-proxy.kubeconfig",
    ] {
        assert_eq!(mode(&pki.join(f)), 0o600, "{f}");
    }
    let ud = out.join("amd64/worker0/user-data");
    assert_eq!(mode(&ud), 0o600, "user-data holds keys");
    assert_eq!(
        mode(&out.join("amd64/worker0/seed.iso")),
        0o600,
        "the seed ISO holds keys"
    );
    // Repacking a seed directory by hand keeps the image private too.
    t.clone()
        .args(["seed-iso", "-o", "repacked.iso"])
        .args(["out/amd64/worker0/user-data", "out/amd64/worker0/meta-data"])
        .run()
        .success();
    assert_eq!(mode(&t.temp().join("repacked.iso")), 0o600);
    let text = fs_err::read_to_string(&ud).unwrap();
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
    let ca = fs_err::read(pki.join("ca.pem")).unwrap();
    build();
    assert_eq!(ca, fs_err::read(pki.join("ca.pem")).unwrap());
}

#[test]
fn plan_prints_vms_components_and_files() {
    let out = Test::new()
        .args(["plan", "--arch", "arm64"])
        .run()
        .success();
    let text = out.stdout();
    assert!(text.contains("control0"), "{text}");
    assert!(text.contains("10.6.0.0/16"), "{text}");
    assert!(
        text.contains("node-role.kubernetes.io/control-plane:NoSchedule"),
        "{text}"
    );
    assert!(text.contains("runc.arm64"), "{text}");
    assert!(text.contains("/opt/cni/bin/*"), "{text}");

    let out = Test::new()
        .args(["plan", "--arch", "amd64", "--json"])
        .run()
        .success();
    let v: serde_json::Value = serde_json::from_str(out.stdout()).unwrap();
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
    let t = Test::new();
    t.clone().args(["plan", "--arch", "arm64"]).run().success();
    assert_eq!(list_dir(t.temp()), ["home"], "plan wrote files");
    assert_eq!(list_dir(&t.home()), Vec::<String>::new());
}

#[test]
fn help_has_examples_and_version_prints() {
    for args in [
        &["--help"][..],
        &["build", "--help"],
        &["plan", "--help"],
        &["profile", "check", "--help"],
        &["profile", "show", "--help"],
    ] {
        let out = Test::new().args(args).run().success();
        assert!(
            out.stdout().contains("Example"),
            "{args:?}: {}",
            out.stdout()
        );
    }
    let out = Test::new().arg("--version").run().success();
    assert_eq!(
        out.stdout().trim(),
        format!("imagegen {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn ssh_key_is_checked() {
    let t = Test::new();
    fs_err::write(
        t.temp().join("id.pub"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = t
        .clone()
        .args([
            "build",
            "--arch",
            "arm64",
            "--ssh-key",
            "id.pub",
            "--out",
            "o",
        ])
        .run()
        .code(1);
    insta::assert_snapshot!("private-key-as-ssh-key", out.snapshot());
    assert!(!t.temp().join("o").exists());
}
