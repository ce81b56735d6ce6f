//! The launchers and host files a build writes (`out/<arch>/launch/`, `out/<arch>/host/`) as
//! golden snapshots for both host kinds, `imagegen launch` running those scripts (with a
//! stand-in QEMU: nothing boots here; `tests/vm_launch.rs` boots for real), and `host-setup`
//! printed, and applied and undone under `--root` for macOS (which needs no privilege; the Linux
//! network steps are tested in a network namespace by `tests/host_setup_netns.rs`).

mod common;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::fs::{list_dir, read_tree};
use common::{build_fixed, mirror, Test};

const DEFAULT: &str = "profiles/kthw-1.31.yaml";

/// A build of the built-in profile for `arch` (nodes download their binaries, so nothing is
/// fetched here) into `<temp>/out`.
fn build(t: &Test, arch: &str) -> PathBuf {
    let out = t.temp().join("out");
    build_fixed(t, DEFAULT, arch, &out)
        .args(["--payload", "fetch"])
        .run()
        .success();
    out
}

/// Every file of `dir` with its mode, one after the other: one snapshot for a directory.
fn dir_snapshot(dir: &Path, skip: &[&str]) -> String {
    let mut all = String::new();
    for name in list_dir(dir) {
        if skip.contains(&name.as_str()) {
            continue;
        }
        let path = dir.join(&name);
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o7777;
        all.push_str(&format!("===== {name} ({mode:04o})\n"));
        all.push_str(&fs_err::read_to_string(&path).unwrap());
    }
    all
}

#[test]
fn golden_launchers_and_host_files_for_both_host_kinds() {
    for arch in ["amd64", "arm64"] {
        let t = Test::new();
        let out = build(&t, arch);
        let launch = out.join(arch).join("launch");
        insta::assert_snapshot!(
            format!("launchers-{arch}"),
            t.normalize(&dir_snapshot(&launch, &["utm.applescript"]))
        );
        // admin.kubeconfig holds a key; tests/cluster.rs checks it.
        insta::assert_snapshot!(
            format!("host-files-{arch}"),
            dir_snapshot(&out.join(arch).join("host"), &["admin.kubeconfig"])
        );
        let names = list_dir(&launch);
        assert_eq!(
            names.contains(&"utm.applescript".to_string()),
            arch == "arm64",
            "{names:?}"
        );
        assert_eq!(
            names.contains(&"tap-up.sh".to_string()),
            arch == "amd64",
            "{names:?}"
        );
        // The scripts parse as POSIX sh (dash is Debian's /bin/sh) and as bash.
        for name in names.iter().filter(|n| n.ends_with(".sh")) {
            for shell in ["sh", "bash"] {
                let o = Command::new(shell)
                    .arg("-n")
                    .arg(launch.join(name))
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{shell} -n {name}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

#[test]
fn golden_utm_applescript() {
    let t = Test::new();
    let out = build(&t, "arm64");
    let script = fs_err::read_to_string(out.join("arm64/launch/utm.applescript")).unwrap();
    insta::assert_snapshot!("utm-applescript-arm64", t.normalize(&script));
}

/// The launchers take the vmnet range, the bridge, the resources and the MACs from the profile:
/// a profile that changes them changes the scripts.
#[test]
fn launchers_follow_the_profile() {
    let t = Test::new();
    let text = fs_err::read_to_string(common::root().join(DEFAULT))
        .unwrap()
        .replace(
            "  worker:  { cpus: 4, memory: 4G, disk: 20G }",
            "  worker:  { cpus: 8, memory: 1536M }",
        )
        .replace(
            "host_network: 192.168.1.0/24",
            "host_network: 192.168.7.0/24",
        )
        .replace("192.168.1.", "192.168.7.");
    let profile = t.temp().join("p.yaml");
    fs_err::write(&profile, text).unwrap();
    let out = t.temp().join("out");
    build_fixed(&t, &profile, "arm64", &out)
        .args(["--payload", "fetch"])
        .run()
        .success();
    let worker = fs_err::read_to_string(out.join("arm64/launch/worker1.sh")).unwrap();
    for line in [
        "cpus=8\n",
        "memory=1536M\n",
        "disk_size=20G\n",
        "mac=52:52:52:00:00:05\n",
        "address=192.168.7.15\n",
    ] {
        assert!(worker.contains(line), "{line:?} not in\n{worker}");
    }
    let common = fs_err::read_to_string(out.join("arm64/launch/common.sh")).unwrap();
    assert!(
        common.contains("vmnet-shared,start-address=192.168.7.1,end-address=192.168.7.20,subnet-mask=255.255.255.0"),
        "{common}"
    );
    let hosts = fs_err::read_to_string(out.join("arm64/host/hosts")).unwrap();
    assert!(hosts.contains("192.168.7.21  kubernetes\n"), "{hosts}");
}

#[test]
fn golden_dry_run_and_status_of_a_fresh_build() {
    for arch in ["amd64", "arm64"] {
        let t = Test::new();
        build(&t, arch);
        let o = t
            .clone()
            .args(["launch", "all", "--arch", arch, "--dry-run"])
            .env(
                "IMAGEGEN_LAUNCH_ACCEL",
                if arch == "amd64" { "kvm" } else { "hvf" },
            )
            .env("IMAGEGEN_LAUNCH_FIRMWARE", "/firmware/for/the/test.fd")
            .run()
            .success();
        insta::assert_snapshot!(format!("dry-run-{arch}"), o.snapshot());
        let o = t
            .clone()
            .args(["launch", "all", "--arch", arch, "--status"])
            .env("IMAGEGEN_LAUNCH_LEASES", "/no/such/leases")
            .run()
            .success();
        insta::assert_snapshot!(format!("status-fresh-{arch}"), o.snapshot());
        assert!(
            !t.temp().join("out/vms").exists(),
            "dry-run and status create nothing"
        );
    }
}

#[test]
fn the_shared_payload_iso_is_attached_read_only_to_its_role() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    build_fixed(&t, &m.profile, "amd64", &out)
        .args([
            "--payload",
            "shared",
            "--offline",
            "--quiet",
            "--mirror",
            &m.file_url(),
        ])
        .run()
        .success();
    let o = t
        .clone()
        .args(["launch", "worker1", "--arch", "amd64", "--dry-run"])
        .env("IMAGEGEN_LAUNCH_ACCEL", "kvm")
        .run()
        .success();
    let want = format!(
        "-drive file={}/amd64/payload-worker.iso,driver=raw,if=virtio,readonly=on",
        out.display()
    );
    assert!(o.stdout().contains(&want), "{}", o.stdout());
    let gateway = fs_err::read_to_string(out.join("amd64/launch/gateway.sh")).unwrap();
    assert!(
        gateway.contains("\npayload=\n"),
        "the gateway installs nothing: {gateway}"
    );
}

#[test]
fn launch_names_what_is_missing() {
    let t = Test::new();
    let o = t
        .clone()
        .args(["launch", "all", "--arch", "amd64", "--status"])
        .run()
        .code(1);
    assert!(
        o.stderr().contains(
            "no launchers in out/amd64/launch: `imagegen build --arch amd64` writes them"
        ),
        "{}",
        o.stderr()
    );
    build(&t, "amd64");
    let o = t
        .clone()
        .args(["launch", "worker9", "--arch", "amd64"])
        .run()
        .code(1);
    assert!(
        o.stderr().contains("no VM named `worker9`"),
        "{}",
        o.stderr()
    );
    // A start needs the base image; offline and with an empty cache it cannot be had.
    let o = t
        .clone()
        .args(["launch", "worker0", "--arch", "amd64", "--offline"])
        .run()
        .code(1);
    assert!(o.stderr().contains("base-image"), "{}", o.stderr());
    assert!(!t.temp().join("out/vms").exists());
    // Without a usable firmware a start says where it looked.
    let o = t
        .clone()
        .args(["launch", "worker0", "--arch", "amd64"])
        .env("IMAGEGEN_LAUNCH_BASE_IMAGE", t.temp().join("no-base.qcow2"))
        .env("IMAGEGEN_LAUNCH_FIRMWARE", t.temp().join("no-firmware.fd"))
        .env("IMAGEGEN_LAUNCH_NIC", "user,restrict=on")
        .env("IMAGEGEN_LAUNCH_ACCEL", "tcg")
        .run()
        .code(1);
    assert!(
        o.stderr()
            .contains("IMAGEGEN_LAUNCH_FIRMWARE: there is no file"),
        "{}",
        o.stderr()
    );
}

/// A stand-in for `qemu-system-x86_64` in `dir`: records its arguments, writes a console line
/// cloud-init would print, and leaves a process named like QEMU behind, its pid in QEMU's
/// `-pidfile`, as `-daemonize` does.
fn standin_qemu(dir: &Path) {
    let sleep = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v sleep"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    fs_err::copy(sleep.trim(), dir.join("qemu-standin-sleep")).unwrap();
    let script = r#"#!/bin/sh
printf '%s\n' "$@" >> "$(dirname "$0")/qemu.args"
echo --- >> "$(dirname "$0")/qemu.args"
while [ $# -gt 0 ]; do
  case $1 in
    -pidfile) pidfile=$2; shift ;;
    -serial) console=${2#file:}; shift ;;
    -name) name=$2; shift ;;
  esac
  shift
done
printf 'Cloud-init v. 22.4 finished at Mon, 01 Jan 2024 00:00:00 +0000. Up 42.00 seconds\r\nimagegen: %s is configured\r\n' "$name" > "$console"
"$(dirname "$0")/qemu-standin-sleep" 600 </dev/null >/dev/null 2>&1 &
echo $! > "$pidfile"
"#;
    let path = dir.join("qemu-system-x86_64");
    fs_err::write(&path, script).unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Kills the stand-in VMs a test left running, whatever its outcome.
struct KillStandins(PathBuf);

impl Drop for KillStandins {
    fn drop(&mut self) {
        for vm in list_dir_or_empty(&self.0) {
            if let Ok(pid) = fs_err::read_to_string(self.0.join(vm).join("qemu.pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

fn list_dir_or_empty(dir: &Path) -> Vec<String> {
    if dir.is_dir() {
        list_dir(dir)
    } else {
        Vec::new()
    }
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .status()
        .unwrap()
        .success()
}

#[test]
fn launch_start_status_stop_run_the_scripts_and_keep_the_disk() {
    if Command::new("qemu-img").arg("--version").output().is_err() {
        eprintln!("skipped: qemu-img is not installed (apt-get install qemu-utils)");
        return;
    }
    let t = Test::new();
    let out = build(&t, "amd64");
    let state = out.join("vms/amd64");
    let _kill = KillStandins(state.clone());
    let l = Launcher::new(&t);
    let (pid, inode) = first_start(&l, &out, &state);
    status_and_stop(&l, &pid);
    second_start(&l, &state, inode);
}

/// `imagegen launch --arch amd64` with a stand-in QEMU first on `PATH` and every override
/// pointing into the test's directory (an empty qcow2 as base image, an empty firmware file).
struct Launcher {
    t: Test,
    tools: PathBuf,
    base: PathBuf,
    firmware: PathBuf,
    leases: PathBuf,
}

impl Launcher {
    fn new(t: &Test) -> Self {
        let tools = t.temp().join("tools");
        fs_err::create_dir(&tools).unwrap();
        standin_qemu(&tools);
        let base = t.temp().join("base.qcow2");
        let o = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&base)
            .arg("64M")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let firmware = t.temp().join("firmware.fd");
        fs_err::write(&firmware, "").unwrap();
        Launcher {
            t: t.clone(),
            tools,
            base,
            firmware,
            leases: t.temp().join("dnsmasq.leases"),
        }
    }

    fn run(&self, args: &[&str]) -> common::Output {
        self.t
            .clone()
            .arg("launch")
            .args(args)
            .args(["--arch", "amd64"])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.tools.display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .env("IMAGEGEN_LAUNCH_BASE_IMAGE", &self.base)
            .env("IMAGEGEN_LAUNCH_FIRMWARE", &self.firmware)
            .env("IMAGEGEN_LAUNCH_NIC", "user,restrict=on")
            .env("IMAGEGEN_LAUNCH_ACCEL", "tcg")
            .env("IMAGEGEN_LAUNCH_LEASES", &self.leases)
            .run()
    }
}

/// The first start makes the disk over the base image at the profile's size and runs QEMU with
/// the VM's values; QEMU's pid and the disk's inode.
fn first_start(l: &Launcher, out: &Path, state: &Path) -> (String, u64) {
    let o = l.run(&["worker0"]).success();
    assert!(o.stderr().contains("worker0: created"), "{}", o.stderr());
    assert!(
        o.stderr().contains("worker0: started (pid "),
        "{}",
        o.stderr()
    );
    let disk = state.join("worker0/disk.qcow2");
    let info = Command::new("qemu-img")
        .args(["info", "--output=json", "-U"])
        .arg(&disk)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["backing-filename"], l.base.to_str().unwrap(), "{info}");
    assert_eq!(
        info["virtual-size"],
        20u64 << 30,
        "the profile's 20G: {info}"
    );
    let inode = fs_err::metadata(&disk).unwrap().ino();
    let args = fs_err::read_to_string(l.tools.join("qemu.args")).unwrap();
    for want in [
        "q35,accel=tcg",
        "max",
        "-smp\n4\n",
        "-m\n4G\n",
        &format!("file={},if=virtio,format=qcow2", disk.display()),
        &format!(
            "file={}/amd64/worker0/seed.iso,driver=raw,if=virtio",
            out.display()
        ),
        "user,restrict=on,mac=52:52:52:00:00:04",
        "-daemonize",
    ] {
        assert!(
            args.contains(want),
            "{want:?} not in the QEMU arguments:\n{args}"
        );
    }
    let pid = fs_err::read_to_string(state.join("worker0/qemu.pid"))
        .unwrap()
        .trim()
        .to_string();
    assert!(alive(&pid));
    (pid, inode)
}

/// `--status` while it runs and after `--stop`, from the console log and the DHCP lease; a
/// second start of a running VM is refused.
fn status_and_stop(l: &Launcher, pid: &str) {
    let o = l.run(&["worker0", "--status"]).success();
    assert_eq!(
        o.stdout(),
        format!("worker0: running (pid {pid}); address 192.168.1.14 (the profile's; cannot read {}); cloud-init: done, node configured (console log)\n", l.leases.display())
    );
    let o = l.run(&["worker0"]).success();
    assert!(
        o.stderr()
            .contains(&format!("worker0: already running (pid {pid})")),
        "{}",
        o.stderr()
    );

    let o = l.run(&["all", "--stop"]).success();
    assert!(o.stderr().contains("worker0: stopped"), "{}", o.stderr());
    assert!(
        o.stderr().contains("gateway: not running"),
        "{}",
        o.stderr()
    );
    assert!(!alive(pid), "pid {pid} still runs");
    fs_err::write(
        &l.leases,
        "1704067200 52:52:52:00:00:04 192.168.1.14 worker0 01:52:52:52:00:00:04\n",
    )
    .unwrap();
    let o = l.run(&["worker0", "--status"]).success();
    assert_eq!(
        o.stdout(),
        "worker0: stopped; address 192.168.1.14 (DHCP lease); cloud-init: done, node configured (console log)\n"
    );
}

/// A second start keeps the disk (same file) and the last boot's console log; only worker0 has
/// a disk.
fn second_start(l: &Launcher, state: &Path, inode: u64) {
    let disk = state.join("worker0/disk.qcow2");
    l.run(&["worker0"]).success();
    assert_eq!(
        fs_err::metadata(&disk).unwrap().ino(),
        inode,
        "the disk was made again"
    );
    assert!(state.join("worker0/console.prev.log").is_file());
    let o = l.run(&["worker0", "--dry-run"]).success();
    assert!(
        o.stdout().contains("its disk") && o.stdout().contains("is there and is kept"),
        "{}",
        o.stdout()
    );
    assert!(!o.stdout().contains("qemu-img create"), "{}", o.stdout());
    l.run(&["worker0", "--stop"]).success();
    // Only worker0 was started: no other VM has a disk.
    assert_eq!(list_dir(state), ["worker0"]);
    let tree = read_tree(state);
    assert!(
        tree.keys().all(|p| p.starts_with("worker0")),
        "{:?}",
        tree.keys()
    );
}

#[test]
fn golden_host_setup_print_for_both_host_kinds() {
    for host in ["linux", "macos"] {
        let o = Test::new()
            .args(["host-setup", "--print", "--host", host])
            .run()
            .success();
        insta::assert_snapshot!(format!("host-setup-print-{host}"), o.snapshot());
    }
}

/// macOS' host-setup is files only (vmnet makes the network), so it runs without privileges
/// under --root: applied, applied again (no change), undone (the files as before).
#[test]
fn macos_host_setup_applies_once_and_undoes_exactly() {
    let t = Test::new();
    let out = build(&t, "arm64");
    let root = t.temp().join("root");
    fs_err::create_dir_all(root.join("etc")).unwrap();
    let hosts = "127.0.0.1\tlocalhost\n255.255.255.255\tbroadcasthost\n::1             localhost\n";
    fs_err::write(root.join("etc/hosts"), hosts).unwrap();
    let before = read_tree(&root);
    let setup = |extra: &[&str]| {
        t.clone()
            .args(["host-setup", "--host", "macos", "--root"])
            .arg(&root)
            .args(extra)
            .run()
            .success()
    };
    let o = setup(&[]);
    assert!(
        o.stdout()
            .contains("added the imagegen lines to /etc/hosts"),
        "{}",
        o.stdout()
    );
    let block = fs_err::read_to_string(out.join("arm64/host/hosts")).unwrap();
    assert_eq!(
        fs_err::read_to_string(root.join("etc/hosts")).unwrap(),
        format!("{hosts}{block}")
    );
    let dnsmasq = fs_err::read_to_string(out.join("arm64/host/dnsmasq.conf")).unwrap();
    assert_eq!(
        fs_err::read_to_string(root.join("opt/homebrew/etc/dnsmasq.conf")).unwrap(),
        dnsmasq
    );
    let o = setup(&[]);
    assert!(o.stdout().contains("nothing to change"), "{}", o.stdout());
    let o = setup(&["--undo"]);
    assert!(
        o.stdout()
            .contains("removed the imagegen lines from /etc/hosts"),
        "{}",
        o.stdout()
    );
    assert_eq!(read_tree(&root), before, "undo left the files as they were");
    assert_eq!(
        list_dir(&root),
        ["etc"],
        "the directories host-setup made are gone"
    );
    let o = setup(&["--undo"]);
    assert!(o.stdout().contains("nothing to undo"), "{}", o.stdout());
}

#[test]
fn host_setup_for_another_kind_of_host_only_prints() {
    let other = if cfg!(target_os = "macos") {
        "linux"
    } else {
        "macos"
    };
    let o = Test::new()
        .args(["host-setup", "--host", other])
        .run()
        .code(1);
    assert!(
        o.stderr().contains("only --print, or --root DIR"),
        "{}",
        o.stderr()
    );
}
