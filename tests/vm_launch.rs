//! The Linux launcher that `imagegen build` writes, run for real: `out/amd64/launch/worker0.sh`
//! itself (not a copy of its arguments) boots worker0 in QEMU through OVMF, from a copy-on-write
//! disk over a base image, with its seed; the node comes up configured; `imagegen launch
//! --status` and `--stop` see and end it.
//!
//! Two documented overrides of the launcher make it fit a test machine: `IMAGEGEN_LAUNCH_NIC`
//! swaps the tap device on the host's bridge for QEMU's user network restricted to QEMU itself
//! (its DHCP hands out the profile's address), and `IMAGEGEN_LAUNCH_BASE_IMAGE` swaps Ubuntu's
//! cloud image (which cannot be downloaded here) for the test guest's UEFI variant
//! (`tests/vm/build-guest.sh amd64 --uefi`: a Debian 12 cloud-init guest on a GPT disk that OVMF
//! boots like a cloud image, and whose collector reports the node's state on the serial
//! console). `IMAGEGEN_LAUNCH_ACCEL` takes the accelerator the harness found to work (KVM only
//! when a guest kernel really boots with it). The firmware is the launcher's own pick
//! (Debian's `ovmf`), the memory and vCPUs the profile's (made small for the 2-core machine).
//!
//! Root (the guest build), QEMU, OVMF; `#[ignore]`d like the other QEMU tests.
//!
//!     cargo test --test vm_launch -- --include-ignored --nocapture

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::vm::{script, text, vm_dir};

const ARCH: &str = "amd64";
const VM: &str = "worker0";

/// Stops the VM when the test ends, however it ends.
struct StopVm(PathBuf);

impl Drop for StopVm {
    fn drop(&mut self) {
        if let Ok(pid) = fs_err::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
#[ignore = "boots a QEMU guest with the generated launcher; run by .ci/run with --include-ignored"]
fn the_generated_linux_launcher_boots_worker0_configured_and_launch_sees_and_stops_it() {
    let uefi = vm_dir().join("uefi-boot.sh");
    assert!(
        uefi.exists(),
        "{} is missing: this test needs the UEFI test guest of tests/vm (build-guest.sh --uefi, await-report.py)",
        uefi.display()
    );
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-launch");
    let _ = fs_err::remove_dir_all(&work);
    fs_err::create_dir_all(&work).unwrap();

    let (base, accel) = base_image_and_accel();
    eprintln!("vm-launch: accelerator {accel}");
    let out = build_seeds(&work);
    let env = Overrides {
        base,
        accel,
        leases: work.join("no-leases"),
    };
    let state = out.join("vms").join(ARCH).join(VM);
    let _stop = StopVm(state.join("qemu.pid"));
    let started = Instant::now();
    let pid = start(&env, &out, &state);

    // The node's report comes on the serial console, which the launcher writes to its log.
    let console = state.join("console.log");
    let report_path = work.join("report.json");
    let timeout = std::env::var("IMAGEGEN_VM_TIMEOUT")
        .unwrap_or_else(|_| if env.accel == "kvm" { "300" } else { "900" }.into());
    let status = Command::new("python3")
        .arg(vm_dir().join("await-report.py"))
        .arg(&console)
        .arg(&report_path)
        .args(["--pid", &pid, "--timeout", &timeout])
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "no report from {VM} ({status}; 2 = timed out, 3 = QEMU exited); console: {}",
        console.display()
    );
    eprintln!(
        "vm-launch: report after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let r: Value = serde_json::from_str(&fs_err::read_to_string(&report_path).unwrap()).unwrap();
    check_report(&r, &console);

    status_and_stop(&env, &out, &pid, &state.join("disk.qcow2"));
}

/// The documented overrides the launcher is run with: the test guest as base image, the
/// accelerator that works here, QEMU's restricted user network as NIC.
struct Overrides {
    base: PathBuf,
    accel: String,
    leases: PathBuf,
}

impl Overrides {
    fn apply(&self, cmd: &mut Command) {
        let nic = "user,restrict=on,ipv6=off,model=virtio-net-pci,net=192.168.1.0/24,host=192.168.1.1,dhcpstart=192.168.1.14";
        cmd.env("IMAGEGEN_LAUNCH_NIC", nic)
            .env("IMAGEGEN_LAUNCH_BASE_IMAGE", &self.base)
            .env("IMAGEGEN_LAUNCH_ACCEL", &self.accel)
            .env("IMAGEGEN_LAUNCH_LEASES", &self.leases)
            .env_remove("IMAGEGEN_LAUNCH_FIRMWARE");
    }
}

/// The UEFI test guest's disk as base image, and the accelerator that really works here.
fn base_image_and_accel() -> (PathBuf, String) {
    let guest_dir = PathBuf::from(
        script(
            Command::new(vm_dir().join("build-guest.sh"))
                .arg(ARCH)
                .arg("--uefi"),
        )
        .lines()
        .last()
        .expect("build-guest.sh printed no path"),
    );
    let base = guest_dir.join("uefi/disk.qcow2");
    let accel = match std::env::var("IMAGEGEN_VM_ACCEL") {
        Ok(a) if a != "auto" => a,
        _ => script(
            Command::new(vm_dir().join("boot.sh"))
                .args(["--detect", "--guest"])
                .arg(&guest_dir),
        )
        .trim()
        .to_string(),
    };
    (base, accel)
}

/// The seeds, from the release mirror of the test (file:// and offline), with the profile's
/// worker made to fit the machine.
fn build_seeds(work: &Path) -> PathBuf {
    let mirror = work.join("mirror");
    script(
        Command::new(vm_dir().join("build-mirror.sh"))
            .arg(ARCH)
            .arg(&mirror),
    );
    let profile_text = fs_err::read_to_string(mirror.join("profile.yaml")).unwrap();
    let worker = "  worker:  { cpus: 4, memory: 4G, disk: 20G }";
    assert!(profile_text.contains(worker), "no worker resources line");
    let profile = work.join("profile.yaml");
    fs_err::write(
        &profile,
        profile_text.replace(worker, "  worker:  { cpus: 1, memory: 1G, disk: 20G }"),
    )
    .unwrap();
    let out = work.join("out");
    let o = common::imagegen()
        .args(["build", "--arch", ARCH, "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(work.join("imagegen-cache"))
        .arg("--mirror")
        .arg(format!("file://{}", mirror.display()))
        .args(["--offline", "--payload", "embed", "--quiet"])
        .args(["--ssh-key", "tests/fixtures/ssh/id_ed25519.pub"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "imagegen build failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The launcher itself starts worker0 and makes its disk over the base image; QEMU's pid.
fn start(env: &Overrides, out: &Path, state: &Path) -> String {
    let launcher = out.join(ARCH).join("launch").join(format!("{VM}.sh"));
    let mut cmd = Command::new("sh");
    cmd.arg(&launcher).arg("start");
    env.apply(&mut cmd);
    let o = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{} start failed:\n{said}",
        launcher.display()
    );
    assert!(said.contains("worker0: created"), "{said}");
    let pid = fs_err::read_to_string(state.join("qemu.pid"))
        .unwrap()
        .trim()
        .to_string();
    let disk = state.join("disk.qcow2");
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        info["backing-filename"],
        env.base.to_str().unwrap(),
        "{info}"
    );
    pid
}

/// `launch --status` sees it running, with what cloud-init said on the console; `--stop` ends
/// QEMU; `--status` then says stopped; the disk stays for the next start.
fn status_and_stop(env: &Overrides, out: &Path, pid: &str, disk: &Path) {
    let launch = |args: &[&str]| {
        let mut cmd = common::imagegen();
        cmd.args(["launch", VM, "--arch", ARCH, "--out"])
            .arg(out)
            .args(args);
        env.apply(&mut cmd);
        cmd.output().unwrap()
    };
    let o = launch(&["--status"]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{line}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        line.starts_with(&format!("{VM}: running (pid {pid})")),
        "{line}"
    );
    assert!(line.contains("cloud-init: done"), "{line}");

    let o = launch(&["--stop"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!alive(pid), "QEMU (pid {pid}) still runs after --stop");
    let o = launch(&["--status"]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(line.starts_with(&format!("{VM}: stopped;")), "{line}");
    assert!(disk.is_file());
    let o = launch(&["--dry-run"]);
    let text_out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text_out.contains("is there and is kept"), "{text_out}");
}

/// What the first boot must have done, as the collector saw it from inside the guest.
fn check_report(r: &Value, console: &Path) {
    let mut failures = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            failures.push(msg);
        }
    };
    let status = text(r, "/cloud_init/status_long/out");
    check(
        status.contains("status: done"),
        format!("cloud-init is not done: {status}"),
    );
    let errors = &r["cloud_init"]["result"]["v1"]["errors"];
    check(
        errors.as_array().is_some_and(|e| e.is_empty()),
        format!("cloud-init errors: {errors}"),
    );
    check(r["hostname"] == VM, format!("hostname {}", r["hostname"]));
    let log = text(r, "/cloud_init/output_log/text");
    check(
        log.contains(&format!("imagegen: {VM} is configured")),
        "no 'imagegen: worker0 is configured' in cloud-init-output.log".into(),
    );
    // The profile's MAC and, from QEMU's DHCP, the profile's address.
    let iface = r["ip_addr"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["address"] == "52:52:52:00:00:04"));
    let inet = iface
        .and_then(|i| i["addr_info"].as_array())
        .and_then(|a| a.iter().find(|x| x["family"] == "inet"));
    check(
        inet.is_some_and(|x| x["local"] == "192.168.1.14"),
        format!("no 192.168.1.14 on the MAC 52:52:52:00:00:04: {iface:?}"),
    );
    for unit in ["containerd", "kubelet", "kube-proxy"] {
        let u = &r["units"][unit];
        check(
            u["is_enabled"] == "enabled" && u["is_active"] == "active",
            format!("{unit} is {} / {}", u["is_enabled"], u["is_active"]),
        );
    }
    assert!(
        failures.is_empty(),
        "{VM} booted by its launcher is not configured:\n  - {}\nconsole: {}",
        failures.join("\n  - "),
        console.display()
    );
}
