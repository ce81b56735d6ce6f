//! One arm64 first boot under TCG (`qemu-system-aarch64 -M virt`): an arm64 Debian 12 guest built
//! with mmdebstrap through qemu-user-static, booted with imagegen's embedded-payload seed for
//! worker0, checked from inside the guest like tests/vm_boot.rs does for amd64.
//!
//! OPT-IN: a cold run takes longer than the suite's budget on the 2-core CI machine (see the
//! "arm64" section of tests/vm/README.md for the measured times), so this test does its work
//! only with `IMAGEGEN_VM_ARM64=1` and otherwise prints that it is opt-in and returns. That
//! early return is acceptable only because the test is explicitly opt-in; it is also
//! `#[ignore]`d like the amd64 boots.
//!
//!     IMAGEGEN_VM_ARM64=1 cargo test --test vm_boot_arm64 -- --include-ignored --nocapture
//!
//! Needs, besides what tests/vm/README.md lists for amd64: qemu-system-arm (bookworm-backports)
//! and qemu-user-static with binfmt_misc registered for aarch64.

mod common;

use common::vm::{build_guest, node_path, script, text, vm_dir};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

const ARCH: &str = "arm64";
const VM: &str = "worker0";

#[test]
#[ignore = "boots an arm64 QEMU guest under TCG; opt-in with IMAGEGEN_VM_ARM64=1"]
fn arm64_worker_embed_boots_configured_under_tcg() {
    if std::env::var("IMAGEGEN_VM_ARM64").as_deref() != Ok("1") {
        eprintln!("vm-boot-arm64: opt-in test, skipped (set IMAGEGEN_VM_ARM64=1 to run it)");
        return;
    }
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-boot-arm64");
    let _ = fs_err::remove_dir_all(&work);
    fs_err::create_dir_all(&work).unwrap();

    let guest = build_guest(ARCH);
    let mirror = work.join("mirror");
    script(
        Command::new(vm_dir().join("build-mirror.sh"))
            .arg(ARCH)
            .arg(&mirror),
    );

    let (out, vm) = build_seeds(&work, &mirror);
    let (r, boot_out) = boot(&work, &guest, &out, &vm);
    check_report(&r, &vm, &boot_out);
}

/// The seeds, and worker0's entry of the manifest. A file:// mirror with --offline: the build
/// reads the local mirror and nothing else.
fn build_seeds(work: &Path, mirror: &Path) -> (PathBuf, Value) {
    let out = work.join("out");
    let o = common::imagegen()
        .args(["build", "--arch", ARCH, "--profile"])
        .arg(mirror.join("profile.yaml"))
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(work.join("imagegen-cache"))
        .arg("--mirror")
        .arg(format!("file://{}", mirror.display()))
        .args(["--offline", "--payload", "embed"])
        .args(["--ssh-key", "tests/fixtures/ssh/id_ed25519.pub", "--quiet"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "imagegen build --arch arm64 failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let manifest: Value = serde_json::from_str(
        &fs_err::read_to_string(out.join(ARCH).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let vm = manifest["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == VM)
        .expect("worker0 not in manifest.json")
        .clone();
    (out, vm)
}

/// Boots worker0 with its seed under TCG; its report and the boot's directory.
fn boot(work: &Path, guest: &Path, out: &Path, vm: &Value) -> (Value, PathBuf) {
    let files = vm["files"].as_array().unwrap();
    let address = vm["address"].as_str().unwrap();
    let net = format!("{}.0/24", address.rsplit_once('.').unwrap().0);
    let paths = work.join("boot1.paths");
    let list: String = files.iter().map(|f| node_path(f) + "\n").collect();
    fs_err::write(&paths, list).unwrap();
    let boot_out = work.join("boot1");
    let timeout = std::env::var("IMAGEGEN_VM_TIMEOUT").unwrap_or_else(|_| "2400".into());
    let status = Command::new(vm_dir().join("boot.sh"))
        .arg("--guest")
        .arg(guest)
        .arg("--disk")
        .arg(work.join("disk.qcow2"))
        .arg("--seed")
        .arg(out.join(ARCH).join(VM).join("seed.iso"))
        .args(["--mac", vm["mac"].as_str().unwrap()])
        .args(["--address", address, "--net", &net])
        .arg("--paths")
        .arg(&paths)
        .arg("--out")
        .arg(&boot_out)
        .args([
            "--name",
            "arm64-worker0",
            "--accel",
            "tcg",
            "--timeout",
            &timeout,
        ])
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    let console = boot_out.join("console.log");
    assert!(
        status.success(),
        "arm64 boot failed ({status}; exit 2 = timed out, 3 = no report); console: {}",
        console.display()
    );
    let r: Value =
        serde_json::from_str(&fs_err::read_to_string(boot_out.join("report.json")).unwrap())
            .unwrap();
    (r, boot_out)
}

/// What the guest reported: an arm64 kernel, cloud-init done, the payload installed and running.
fn check_report(r: &Value, vm: &Value, boot_out: &Path) {
    let files = vm["files"].as_array().unwrap();
    let console = boot_out.join("console.log");
    let mut failures = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            failures.push(msg);
        }
    };
    check(
        r["kernel"].as_str().is_some_and(|k| k.ends_with("-arm64")),
        format!("the guest kernel is {}, not an arm64 one", r["kernel"]),
    );
    let status = text(r, "/cloud_init/status_long/out");
    check(
        status.contains("status: done"),
        format!("cloud-init status is not done:\n{status}"),
    );
    let errors = &r["cloud_init"]["result"]["v1"]["errors"];
    check(
        errors.as_array().is_some_and(|e| e.is_empty()),
        format!("result.json errors: {errors}"),
    );
    let log = text(r, "/cloud_init/output_log/text");
    check(
        log.contains(&format!("imagegen: {VM} is configured")),
        format!("no 'imagegen: {VM} is configured' in cloud-init-output.log:\n{log}"),
    );
    check(
        r["hostname"] == VM,
        format!("hostname {} != {VM}", r["hostname"]),
    );
    // Every file of the manifest is there with its digest: the arm64 payload was installed.
    for f in files {
        let path = node_path(f);
        let got = &r["files"][path.as_str()];
        check(
            got["sha256"] == f["sha256"],
            format!(
                "{path}: sha256 {}, manifest says {}",
                got["sha256"], f["sha256"]
            ),
        );
    }
    for bin in [
        "/usr/local/bin/runc",
        "/usr/local/bin/kubelet",
        "/usr/local/bin/kube-proxy",
        "/bin/containerd",
        "/opt/cni/bin/bridge",
    ] {
        check(
            files.iter().any(|f| node_path(f) == bin) && r["files"][bin]["type"] == "file",
            format!("{bin} is not installed from the manifest"),
        );
    }
    for unit in ["containerd", "kubelet", "kube-proxy"] {
        let u = &r["units"][unit];
        check(
            u["is_enabled"] == "enabled" && u["is_active"] == "active",
            format!("{unit} is {} / {}", u["is_enabled"], u["is_active"]),
        );
    }
    // The repackaged arm64 binaries run natively in the guest.
    let ctr = &r["ctr_version"];
    check(
        ctr["rc"] == 0 && text(ctr, "/out").contains("Server:"),
        format!("ctr version did not answer: {ctr}"),
    );
    check(
        r["runc_version"]["rc"] == 0,
        format!("the configured runc does not run: {}", r["runc_version"]),
    );
    check(
        r["modules"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "br_netfilter")),
        "br_netfilter is not loaded".into(),
    );
    let failed = &r["failed_units"];
    check(
        failed.as_array().is_some_and(|f| f.is_empty()),
        format!("failed units: {failed}"),
    );
    assert!(
        failures.is_empty(),
        "arm64 {VM}: {} failed check(s):\n  - {}\nreport: {}\nconsole: {}",
        failures.len(),
        failures.join("\n  - "),
        boot_out.join("report.json").display(),
        console.display()
    );
}
