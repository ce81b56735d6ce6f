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

use common::http;
use common::vm::{build_guest, node_path, script, text, vm_dir};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};

use serde_json::Value;

const ARCH: &str = "amd64";

struct Fixture {
    work: PathBuf,
    guest: PathBuf,
    accel: String,
    mirror: PathBuf,
    mirror_url: String,
}

/// Guest, accelerator, mirror and its HTTP server: built once per test binary.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-boot");
        fs_err::create_dir_all(&work).unwrap();
        let guest = build_guest(ARCH);
        let accel = match std::env::var("IMAGEGEN_VM_ACCEL") {
            Ok(a) if a != "auto" => a,
            _ => script(
                Command::new(vm_dir().join("boot.sh"))
                    .args(["--detect", "--guest"])
                    .arg(&guest),
            )
            .trim()
            .to_string(),
        };
        eprintln!(
            "vm-boot: accelerator {accel} (KVM only when a guest kernel really boots with it)"
        );
        let mirror = work.join("mirror");
        let _ = fs_err::remove_dir_all(&mirror);
        script(
            Command::new(vm_dir().join("build-mirror.sh"))
                .arg(ARCH)
                .arg(&mirror),
        );
        let mirror_url = serve(mirror.clone());
        Fixture {
            work,
            guest,
            accel,
            mirror,
            mirror_url,
        }
    })
}

/// The mirror over HTTP on 127.0.0.1, streamed from disk by the tests' one server. It lives as
/// long as the test process (the fixture is shared by every case).
fn serve(root: PathBuf) -> String {
    let server: &'static http::TestServer = Box::leak(Box::new(http::TestServer::start()));
    server.add_dir("/", &root);
    server.base()
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

struct Build {
    out: PathBuf,
    manifest: Value,
}

impl Build {
    fn vm(&self, name: &str) -> &Value {
        self.manifest["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in manifest.json"))
    }
    fn seed_dir(&self, vm: &str) -> PathBuf {
        self.out.join(ARCH).join(vm)
    }
}

/// A fresh per-case directory under the cargo target tmpdir.
fn case_dir(case: &str) -> PathBuf {
    let d = fixture().work.join(case);
    let _ = fs_err::remove_dir_all(&d);
    fs_err::create_dir_all(&d).unwrap();
    d
}

/// `imagegen build` against the local mirror. Builds share one download cache and run one at a
/// time (they are quick next to a boot).
fn build(case: &Path, profile: &str, payload: &str) -> Build {
    static BUILD: Mutex<()> = Mutex::new(());
    let f = fixture();
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let out = case.join("out");
    let profile = f.mirror.join(profile);
    let o = common::imagegen()
        .args(["build", "--arch", ARCH, "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(f.work.join("imagegen-cache"))
        .args(["--mirror", &f.mirror_url, "--payload", payload])
        .args(["--ssh-key", "tests/fixtures/ssh/id_ed25519.pub", "--quiet"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "imagegen build --payload {payload} --profile {} failed:\n{}\n{}",
        profile.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let manifest = fs_err::read_to_string(out.join(ARCH).join("manifest.json")).unwrap();
    Build {
        out,
        manifest: serde_json::from_str(&manifest).unwrap(),
    }
}

struct BootSpec<'a> {
    vm: &'a Value,
    seed: PathBuf,
    payload: Option<PathBuf>,
    /// A QEMU guestfwd rule: the one address the guest may reach (fetch payload tests).
    guestfwd: Option<String>,
    /// Reused by a second boot of the same disk.
    disk: PathBuf,
    out: PathBuf,
}

struct Booted {
    report: Value,
    out: PathBuf,
}

fn boot(spec: &BootSpec) -> Booted {
    let f = fixture();
    let name = spec.vm["name"].as_str().unwrap();
    let address = spec.vm["address"].as_str().unwrap();
    let net = format!("{}.0/24", address.rsplit_once('.').unwrap().0);
    let paths = spec.out.with_extension("paths");
    let mut list = String::new();
    for file in spec.vm["files"].as_array().unwrap() {
        list.push_str(&node_path(file));
        list.push('\n');
    }
    fs_err::write(&paths, list).unwrap();
    let timeout = std::env::var("IMAGEGEN_VM_TIMEOUT")
        .unwrap_or_else(|_| if f.accel == "kvm" { "300" } else { "900" }.into());
    let mut cmd = Command::new(vm_dir().join("boot.sh"));
    cmd.arg("--guest")
        .arg(&f.guest)
        .arg("--disk")
        .arg(&spec.disk)
        .arg("--seed")
        .arg(&spec.seed)
        .args(["--mac", spec.vm["mac"].as_str().unwrap()])
        .args(["--address", address, "--net", &net])
        .arg("--paths")
        .arg(&paths)
        .arg("--out")
        .arg(&spec.out)
        .args(["--name", name, "--accel", &f.accel, "--timeout", &timeout]);
    if let Some(p) = &spec.payload {
        cmd.arg("--payload").arg(p);
    }
    if let Some(g) = &spec.guestfwd {
        cmd.arg("--guestfwd").arg(g);
    }
    let status = {
        let _slot = Slot::take();
        cmd.stderr(Stdio::inherit()).status().unwrap()
    };
    let console = spec.out.join("console.log");
    assert!(
        status.success(),
        "boot of {name} failed ({status}; exit 2 = timed out, 3 = no report); console: {}",
        console.display()
    );
    let report = fs_err::read_to_string(spec.out.join("report.json")).unwrap();
    Booted {
        report: serde_json::from_str(&report).unwrap(),
        out: spec.out.clone(),
    }
}

fn octal(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).unwrap_or(u32::MAX)
}

/// Collects every failed check so that one boot tells everything that is wrong.
struct Checks {
    what: String,
    failures: Vec<String>,
}

impl Checks {
    fn new(what: impl Into<String>) -> Self {
        Checks {
            what: what.into(),
            failures: Vec::new(),
        }
    }
    fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(msg());
        }
    }
    fn done(self, b: &Booted) {
        assert!(
            self.failures.is_empty(),
            "{}: {} failed check(s):\n  - {}\nreport: {}\nconsole: {}",
            self.what,
            self.failures.len(),
            self.failures.join("\n  - "),
            b.out.join("report.json").display(),
            b.out.join("console.log").display()
        );
    }
}

fn output_log(r: &Value) -> &str {
    text(r, "/cloud_init/output_log/text")
}

fn file<'a>(r: &'a Value, path: &str) -> Option<&'a Value> {
    r["files"].get(path).filter(|f| f.get("type").is_some())
}

#[derive(Clone, Copy, PartialEq)]
enum Addressing {
    Dhcp,
    Static,
}

#[derive(Clone, Copy, PartialEq)]
enum Cni {
    Bridge,
    Cilium,
}

/// The node contract, checked from inside the guest.
fn check_node(c: &mut Checks, r: &Value, vm: &Value, addressing: Addressing, cni: Cni) {
    let name = vm["name"].as_str().unwrap();
    let role = vm["role"].as_str().unwrap();

    // cloud-init finished without errors and without complaining about the schema.
    let status = text(r, "/cloud_init/status_long/out");
    c.check(status.contains("status: done"), || {
        format!("cloud-init status is not done:\n{status}")
    });
    let errors = &r["cloud_init"]["result"]["v1"]["errors"];
    c.check(errors.as_array().is_some_and(|e| e.is_empty()), || {
        format!("result.json errors: {errors}")
    });
    if let Some(stages) = r["cloud_init"]["status"]["v1"].as_object() {
        for (stage, s) in stages {
            if let Some(errs) = s.get("errors").and_then(Value::as_array) {
                c.check(errs.is_empty(), || {
                    format!("status.json {stage} errors: {errs:?}")
                });
            }
        }
    }
    let schema = &r["cloud_init"]["schema_warnings"];
    c.check(schema.as_array().is_some_and(|w| w.is_empty()), || {
        format!("schema warnings in cloud-init.log: {schema}")
    });
    let log = output_log(r);
    c.check(
        log.contains(&format!("imagegen: {name} is configured")),
        || format!("no 'imagegen: {name} is configured' in cloud-init-output.log"),
    );

    // Identity and network.
    c.check(r["hostname"] == name, || {
        format!("hostname {} != {name}", r["hostname"])
    });
    let mac = vm["mac"].as_str().unwrap().to_ascii_lowercase();
    let address = vm["address"].as_str().unwrap();
    let iface = r["ip_addr"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["address"] == mac.as_str()));
    match iface {
        None => c.check(false, || format!("no interface with MAC {mac}")),
        Some(i) => {
            c.check(i["operstate"] == "UP", || {
                format!("{} is {}", i["ifname"], i["operstate"])
            });
            let inet = i["addr_info"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["family"] == "inet"));
            c.check(inet.is_some_and(|x| x["local"] == address), || {
                format!(
                    "{} has no address {address}: {}",
                    i["ifname"], i["addr_info"]
                )
            });
            let dynamic = inet.is_some_and(|x| x["dynamic"] == true);
            match addressing {
                Addressing::Dhcp => c.check(dynamic, || {
                    format!("{address} is not a DHCP lease: {inet:?}")
                }),
                Addressing::Static => c.check(!dynamic, || {
                    format!("{address} came from DHCP, not the static config: {inet:?}")
                }),
            }
        }
    }

    // Every file the manifest lists, as recorded.
    for f in vm["files"].as_array().unwrap() {
        let path = node_path(f);
        let Some(got) = file(r, &path) else {
            c.check(false, || format!("{path} is missing"));
            continue;
        };
        let mode = octal(text(got, "/mode"));
        c.check(mode == octal(f["mode"].as_str().unwrap()), || {
            format!("{path}: mode {:04o}, manifest says {}", mode, f["mode"])
        });
        let owner = format!("{}:{}", text(got, "/owner"), text(got, "/group"));
        c.check(owner == f["owner"].as_str().unwrap(), || {
            format!("{path}: owner {owner}, manifest says {}", f["owner"])
        });
        c.check(got["sha256"] == f["sha256"], || {
            format!(
                "{path}: sha256 {}, manifest says {}",
                got["sha256"], f["sha256"]
            )
        });
        let private =
            f["secret"] == true || path.ends_with("-key.pem") || path.ends_with("kubeconfig");
        c.check(!private || mode & 0o077 == 0, || {
            format!("{path} is private but has mode {mode:04o}")
        });
    }

    if role == "gateway" {
        return;
    }

    // Binaries of the contract.
    let mut bins = vec![
        "/usr/local/bin/crictl",
        "/usr/local/bin/runc",
        "/usr/local/bin/kubelet",
        "/bin/containerd",
        "/bin/containerd-shim-runc-v2",
        "/bin/ctr",
    ];
    if cni == Cni::Bridge {
        bins.extend([
            "/usr/local/bin/kube-proxy",
            "/opt/cni/bin/bridge",
            "/opt/cni/bin/loopback",
            "/opt/cni/bin/host-local",
            "/etc/cni/net.d/10-bridge.conf",
            "/etc/cni/net.d/99-loopback.conf",
            "/var/lib/kube-proxy/kubeconfig",
        ]);
    }
    for b in bins {
        c.check(file(r, b).is_some_and(|f| f["type"] == "file"), || {
            format!("{b} is missing")
        });
    }
    if cni == Cni::Cilium {
        let cni_files: Vec<&String> = r["files"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|p| {
                (p.starts_with("/opt/cni/bin/") || p.starts_with("/etc/cni/net.d/"))
                    && file(r, p).is_some_and(|f| f["type"] == "file")
            })
            .collect();
        c.check(cni_files.is_empty(), || {
            format!("cilium node has CNI plugin files: {cni_files:?}")
        });
        c.check(file(r, "/usr/local/bin/kube-proxy").is_none(), || {
            "cilium node has /usr/local/bin/kube-proxy".into()
        });
        let kp = &r["units"]["kube-proxy"];
        c.check(
            kp["is_enabled"] != "enabled" && kp["is_active"] != "active",
            || format!("cilium node runs kube-proxy: {kp}"),
        );
    }

    // br_netfilter now and at every boot; bridged traffic through iptables; swap off.
    let modules = r["modules"].as_array().unwrap();
    c.check(modules.iter().any(|m| m == "br_netfilter"), || {
        "br_netfilter is not loaded".into()
    });
    let persisted = r["files"].as_object().unwrap().iter().any(|(p, f)| {
        p.starts_with("/etc/modules-load.d/")
            && text(f, "/content")
                .lines()
                .any(|l| l.trim() == "br_netfilter")
    });
    c.check(persisted, || {
        "no /etc/modules-load.d/ file lists br_netfilter".into()
    });
    let nf = &r["sysctl"]["net.bridge.bridge-nf-call-iptables"];
    c.check(nf == "1", || format!("bridge-nf-call-iptables = {nf}"));
    let swaps = text(r, "/swap/proc_swaps");
    c.check(swaps.lines().count() <= 1, || {
        format!("swap is on:\n{swaps}")
    });

    // Services.
    let mut services = vec!["containerd", "kubelet"];
    if cni == Cni::Bridge {
        services.push("kube-proxy");
    }
    for s in services {
        let u = &r["units"][s];
        c.check(
            u["is_enabled"] == "enabled" && u["is_active"] == "active",
            || format!("{s} is {} / {}", u["is_enabled"], u["is_active"]),
        );
    }
    let ctr = &r["ctr_version"];
    c.check(
        ctr["rc"] == 0 && text(ctr, "/out").contains("Server:"),
        || format!("ctr version did not answer: {ctr}"),
    );
    let cc = &r["containerd_config"];
    c.check(cc["binary_name"] == "/usr/local/bin/runc", || {
        format!("containerd's runc is {}", cc["binary_name"])
    });
    c.check(cc["runtime_type"] == "io.containerd.runc.v2", || {
        format!("containerd's runtime_type is {}", cc["runtime_type"])
    });
    c.check(cc["systemd_cgroup"] == true, || {
        format!("SystemdCgroup is {}", cc["systemd_cgroup"])
    });
    c.check(r["runc_version"]["rc"] == 0, || {
        format!("the configured runc does not run: {}", r["runc_version"])
    });
    let failed = r["failed_units"].as_array().unwrap();
    c.check(failed.is_empty(), || format!("failed units: {failed:?}"));

    // Merged /usr survived the payload.
    c.check(r["symlinks"]["/bin"] == "usr/bin", || {
        format!("/bin is no longer a symlink: {}", r["symlinks"]["/bin"])
    });
    c.check(r["sh_works"] == "ok", || "/bin/sh does not run".into());

    let kubelet_config = text(r, "/files/~1var~1lib~1kubelet~1kubelet-config.yaml/content");
    let tainted = kubelet_config.contains("registerWithTaints")
        && kubelet_config.contains("node-role.kubernetes.io/control-plane")
        && kubelet_config.contains("NoSchedule");
    if role == "control" {
        c.check(tainted, || {
            format!("control node without the control-plane taint:\n{kubelet_config}")
        });
    } else {
        c.check(!kubelet_config.contains("registerWithTaints"), || {
            "worker registers with taints".into()
        });
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
        vm,
        seed: build.seed_dir(vm_name).join("seed.iso"),
        payload,
        guestfwd: None,
        disk: dir.join("disk.qcow2"),
        out: dir.join("boot1"),
    });
    let mut c = Checks::new(format!("{case}: {vm_name}"));
    check_node(&mut c, &b.report, vm, addressing, cni);
    c.done(&b);
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
    let second = boot(&BootSpec {
        vm,
        seed: build.seed_dir("worker0").join("seed.iso"),
        payload: None,
        guestfwd: None,
        disk: dir.join("disk.qcow2"),
        out: dir.join("boot2"),
    });
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
    c.done(&second);
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
    let b = boot(&BootSpec {
        vm,
        seed: iso,
        payload: None,
        guestfwd: None,
        disk: dir.join("disk.qcow2"),
        out: dir.join("boot1"),
    });
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
    c.done(&b);
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
        vm,
        seed: build.seed_dir("worker1").join("seed.iso"),
        payload: None,
        guestfwd: Some(guestfwd()),
        disk: dir.join("disk.qcow2"),
        out: dir.join("boot1"),
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
    c.done(&b);
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
        vm,
        seed: build.seed_dir("worker2").join("seed.iso"),
        payload: None,
        guestfwd: Some(guestfwd()),
        disk: dir.join("disk.qcow2"),
        out: dir.join("boot1"),
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
    c.done(&b);
}
