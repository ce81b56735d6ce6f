//! First-boot tests: imagegen's seeds booted for real in QEMU and checked from inside the guest.
//!
//! The guest is a Debian 12 root that resembles a stock cloud image (tests/vm/build-guest.sh,
//! cached per machine). The release mirror repackages Debian's containerd, runc and CNI plugins
//! under the upstream names and has stand-ins for kubelet, kube-proxy and crictl
//! (tests/vm/build-mirror.sh); it is served on 127.0.0.1 for `imagegen build --mirror`. Each VM
//! runs a collector unit baked into the guest (tests/vm/guest/report.py) that reports the node's
//! state once cloud-init is done and powers off; tests/vm/boot.sh runs QEMU (KVM when it really
//! works, TCG otherwise) with a hard timeout and the only NIC restricted to QEMU itself.
//! See tests/vm/README.md.

mod common;

use common::node::{check_node, file, output_log, Addressing, Checks, Cni};
use common::vm::{node_path, vm_dir, BootSpec, Booted, Build, Fixture};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use serde_json::Value;

const ARCH: &str = "amd64";

/// Guest, accelerator, mirror and its HTTP server: built once per test binary.
fn fixture() -> &'static Fixture {
    common::vm::fixture("vm-boot", ARCH)
}

fn case_dir(case: &str) -> PathBuf {
    fixture().case_dir(case)
}

fn build(case: &Path, profile: &str, payload: &str) -> Build {
    fixture().build(case, profile, payload)
}

/// One boot, at most [`Slots`] at once.
fn boot(spec: &BootSpec) -> Booted {
    let mut cmd = spec.command(fixture());
    let status = {
        let _slot = Slot::take();
        cmd.status().unwrap()
    };
    spec.booted(status)
}

/// At most this many VMs at once (2 cores): `IMAGEGEN_VM_JOBS`, default 2.
struct Slots {
    used: Mutex<usize>,
    freed: Condvar,
}
static SLOTS: Slots = Slots {
    used: Mutex::new(0),
    freed: Condvar::new(),
};
struct Slot;
impl Slot {
    fn take() -> Slot {
        let max = std::env::var("IMAGEGEN_VM_JOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2usize)
            .max(1);
        let mut used = SLOTS.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= max {
            used = SLOTS.freed.wait(used).unwrap_or_else(|e| e.into_inner());
        }
        *used += 1;
        Slot
    }
}
impl Drop for Slot {
    fn drop(&mut self) {
        *SLOTS.used.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        SLOTS.freed.notify_one();
    }
}

fn boot_and_check(
    case: &str,
    build: &Build,
    vm_name: &str,
    payload: Option<PathBuf>,
    addressing: Addressing,
    cni: Cni,
) -> Booted {
    let dir = fixture().work.join(case);
    let vm = build.vm(vm_name);
    let b = boot(&BootSpec {
        payload,
        ..BootSpec::new(
            vm,
            build.seed_dir(vm_name).join("seed.iso"),
            dir.join("disk.qcow2"),
            dir.join("boot1"),
        )
    });
    let mut c = Checks::new(format!("{case}: {vm_name}"));
    check_node(&mut c, &b.report, vm, addressing, cni);
    c.done(&b.out);
    b
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn worker_embed_boots_configured_and_a_second_boot_changes_nothing() {
    let dir = case_dir("worker-embed");
    let build = build(&dir, "profile.yaml", "embed");
    let first = boot_and_check(
        "worker-embed",
        &build,
        "worker0",
        None,
        Addressing::Dhcp,
        Cni::Bridge,
    );

    let vm = build.vm("worker0");
    let second = boot(&BootSpec::new(
        vm,
        build.seed_dir("worker0").join("seed.iso"),
        dir.join("disk.qcow2"),
        dir.join("boot2"),
    ));
    let (r1, r2) = (&first.report, &second.report);
    let mut c = Checks::new("worker-embed: second boot of worker0");
    check_node(&mut c, r2, vm, Addressing::Dhcp, Cni::Bridge);
    c.check(r1["boot_id"] != r2["boot_id"], || {
        "the second boot is the same boot".into()
    });
    c.check(
        r1["cloud_init"]["instance_id"] == r2["cloud_init"]["instance_id"],
        || "the instance id changed".into(),
    );
    // Nothing changed: same content, mode and owner everywhere the collector looks, and what
    // imagegen installed was not even rewritten (same mtime). cloud-init itself rewrites some
    // files with the same content at every boot (/etc/hosts under manage_etc_hosts), so other
    // files may have a new mtime.
    let installed: BTreeSet<String> = vm["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(node_path)
        .collect();
    let keys: BTreeSet<&String> = r1["files"]
        .as_object()
        .unwrap()
        .keys()
        .chain(r2["files"].as_object().unwrap().keys())
        .collect();
    let state = |r: &Value, k: &str| {
        let mut f = r["files"].get(k).cloned();
        if !installed.contains(k) {
            if let Some(Value::Object(m)) = f.as_mut() {
                m.remove("mtime_ns");
            }
        }
        f
    };
    let changed: Vec<&&String> = keys
        .iter()
        .filter(|k| state(r1, k) != state(r2, k))
        .collect();
    c.check(changed.is_empty(), || {
        format!("files changed by the second boot: {changed:?}")
    });
    // The first-boot steps ran once: the install script's lines appear once in the log that
    // both boots appended to.
    for line in [
        "imagegen: worker0 is configured",
        "imagegen: loading kernel modules",
    ] {
        let n = output_log(r2).matches(line).count();
        c.check(n == 1, || {
            format!("'{line}' appears {n} times after two boots")
        });
    }
    c.done(&second.out);
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn control_embed_boots_configured_with_the_taint() {
    let dir = case_dir("control-embed");
    let build = build(&dir, "profile.yaml", "embed");
    boot_and_check(
        "control-embed",
        &build,
        "control0",
        None,
        Addressing::Dhcp,
        Cni::Bridge,
    );
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn worker_shared_payload_boots_configured() {
    let dir = case_dir("worker-shared");
    let build = build(&dir, "profile.yaml", "shared");
    let payload = build.out.join(ARCH).join("payload-worker.iso");
    assert!(payload.is_file(), "{} missing", payload.display());
    assert!(
        !build
            .seed_dir("worker1")
            .join("overlay-worker.cpio.gz")
            .exists(),
        "a shared build still embeds the overlay in the seed"
    );
    boot_and_check(
        "worker-shared",
        &build,
        "worker1",
        Some(payload),
        Addressing::Dhcp,
        Cni::Bridge,
    );
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn cilium_worker_has_no_kube_proxy_and_no_cni_plugins() {
    let dir = case_dir("worker-cilium");
    let build = build(&dir, "profile-cilium.yaml", "embed");
    boot_and_check(
        "worker-cilium",
        &build,
        "worker2",
        None,
        Addressing::Dhcp,
        Cni::Cilium,
    );
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn static_addressing_worker_gets_its_address_without_dhcp() {
    let dir = case_dir("worker-static");
    let build = build(&dir, "profile-static.yaml", "embed");
    boot_and_check(
        "worker-static",
        &build,
        "worker0",
        None,
        Addressing::Static,
        Cni::Bridge,
    );
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn tampered_payload_is_refused_and_nothing_of_it_is_installed() {
    let dir = case_dir("worker-tampered");
    let build = build(&dir, "profile.yaml", "embed");
    let seed = build.seed_dir("worker0");
    let copy = dir.join("seed");
    fs_err::create_dir_all(&copy).unwrap();
    let mut files = Vec::new();
    for e in fs_err::read_dir(&seed).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() == "seed.iso" {
            continue;
        }
        let to = copy.join(p.file_name().unwrap());
        fs_err::copy(&p, &to).unwrap();
        files.push(to);
    }
    let overlay = copy.join("overlay-worker.cpio.gz");
    let mut bytes = fs_err::read(&overlay).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs_err::write(&overlay, bytes).unwrap();
    let iso = dir.join("tampered-seed.iso");
    let o = common::imagegen()
        .args(["seed-iso", "-o"])
        .arg(&iso)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "seed-iso: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let vm = build.vm("worker0");
    let b = boot(&BootSpec::new(
        vm,
        iso,
        dir.join("disk.qcow2"),
        dir.join("boot1"),
    ));
    let r = &b.report;
    let mut c = Checks::new("worker-tampered: worker0");
    let log = output_log(r);
    let refusal = log.lines().find(|l| {
        l.contains("overlay-worker.cpio.gz") && l.to_ascii_lowercase().contains("mismatch")
    });
    c.check(refusal.is_some(), || {
        format!(
            "no digest mismatch line for overlay-worker.cpio.gz in cloud-init-output.log:\n{log}"
        )
    });
    c.check(!log.contains("imagegen: worker0 is configured"), || {
        "the tampered node says it is configured".into()
    });
    // The failure is visible to whoever asks cloud-init.
    let errors = &r["cloud_init"]["result"]["v1"]["errors"];
    c.check(errors.as_array().is_some_and(|e| !e.is_empty()), || {
        "cloud-init reports no error for the refused payload".into()
    });
    for f in vm["files"].as_array().unwrap() {
        let path = node_path(f);
        let payload = ["/usr/local/bin/", "/bin/", "/usr/bin/", "/opt/cni/bin/"]
            .iter()
            .any(|d| path.starts_with(d));
        if payload {
            c.check(file(r, &path).is_none(), || {
                format!("{path} from the refused payload is installed")
            });
        }
    }
    c.check(r["units"]["containerd"]["is_active"] != "active", || {
        "containerd runs without its payload".into()
    });
    c.check(r["symlinks"]["/bin"] == "usr/bin", || {
        "/bin is no longer a symlink".into()
    });
    c.done(&b.out);
}

/// Where a fetch-payload guest finds the mirror: an address of its own network that QEMU relays
/// to the test's HTTP server on 127.0.0.1 (tests/vm/relay.py). Nothing else is reachable.
const FETCH_HOST: &str = "192.168.1.250";

/// The mirror's profile with URLs pointing at [`FETCH_HOST`] (the mirror keeps the upstream
/// host/path layout), edited further by `edit`; written beside the mirror's own profiles.
fn fetch_profile(name: &str, edit: impl Fn(String) -> String) -> String {
    let f = fixture();
    let text = fs_err::read_to_string(f.mirror.join("profile.yaml")).unwrap();
    let text = text.replace("url: https://", &format!("url: http://{FETCH_HOST}/"));
    assert!(text.contains(&format!("http://{FETCH_HOST}/dl.k8s.io/")));
    fs_err::write(f.mirror.join(name), edit(text)).unwrap();
    name.to_string()
}

fn guestfwd() -> String {
    let port = fixture().mirror_url.rsplit(':').next().unwrap().to_string();
    format!(
        "tcp:{FETCH_HOST}:80-cmd:python3 {} {port}",
        vm_dir().join("relay.py").display()
    )
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn worker_fetch_payload_downloads_verifies_and_boots_configured() {
    let dir = case_dir("worker-fetch");
    let profile = fetch_profile("profile-fetch.yaml", |t| t);
    let build = build(&dir, &profile, "fetch");
    let vm = build.vm("worker1");
    let b = boot(&BootSpec {
        guestfwd: Some(guestfwd()),
        ..BootSpec::new(
            vm,
            build.seed_dir("worker1").join("seed.iso"),
            dir.join("disk.qcow2"),
            dir.join("boot1"),
        )
    });
    let mut c = Checks::new("worker-fetch: worker1");
    check_node(&mut c, &b.report, vm, Addressing::Dhcp, Cni::Bridge);
    let log = output_log(&b.report);
    // The node keeps each download under its component's name.
    for component in ["runc", "kubernetes-node"] {
        c.check(
            log.contains(&format!("imagegen: verifying {component}\n")),
            || format!("the node did not verify {component}:\n{log}"),
        );
    }
    c.done(&b.out);
}

#[test]
#[ignore = "boots QEMU guests; run by .ci/run with --include-ignored"]
fn fetch_payload_with_a_wrong_digest_installs_nothing() {
    let dir = case_dir("worker-fetch-mismatch");
    // runc's pin no longer matches what the mirror serves.
    let profile = fetch_profile("profile-fetch-mismatch.yaml", |t| {
        let mut out = String::new();
        let mut in_runc = false;
        for line in t.lines() {
            if line.starts_with("  ") && !line.starts_with("   ") {
                in_runc = line.trim_start().starts_with("runc:");
            }
            if in_runc && line.trim_start().starts_with("amd64: sha256:") {
                out.push_str(&format!("      amd64: sha256:{}\n", "0".repeat(64)));
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        assert_ne!(out, t, "no runc digest was replaced");
        out
    });
    let build = build(&dir, &profile, "fetch");
    let vm = build.vm("worker2");
    let b = boot(&BootSpec {
        guestfwd: Some(guestfwd()),
        ..BootSpec::new(
            vm,
            build.seed_dir("worker2").join("seed.iso"),
            dir.join("disk.qcow2"),
            dir.join("boot1"),
        )
    });
    let r = &b.report;
    let mut c = Checks::new("worker-fetch-mismatch: worker2");
    let log = output_log(r);
    let line = format!("imagegen: DIGEST MISMATCH for runc from http://{FETCH_HOST}/");
    c.check(log.contains(&line), || {
        format!("no `{line}` in cloud-init-output.log:\n{log}")
    });
    c.check(!log.contains("imagegen: worker2 is configured"), || {
        "the node says it is configured".into()
    });
    let errors = &r["cloud_init"]["result"]["v1"]["errors"];
    c.check(errors.as_array().is_some_and(|e| !e.is_empty()), || {
        "cloud-init reports no error for the refused download".into()
    });
    for path in [
        "/usr/local/bin/runc",
        "/usr/local/bin/kubelet",
        "/usr/local/bin/crictl",
        "/opt/cni/bin/bridge",
    ] {
        c.check(file(r, path).is_none(), || format!("{path} is installed"));
    }
    c.check(r["units"]["containerd"]["is_active"] != "active", || {
        "containerd runs without its payload".into()
    });
    c.done(&b.out);
}
