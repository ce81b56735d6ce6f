//! Helpers shared by the QEMU tests (tests/vm_boot*.rs, tests/vm_cluster.rs): the scripts under
//! tests/vm, the per-binary fixture (guest, accelerator, release mirror served on 127.0.0.1),
//! `imagegen build` against that mirror, and one boot through tests/vm/boot.sh.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

pub fn vm_dir() -> PathBuf {
    super::root().join("tests/vm")
}

/// Runs a helper script; its stderr (progress) goes to the test's stderr, its stdout is returned.
pub fn script(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({})", out.status);
    String::from_utf8(out.stdout).unwrap()
}

pub fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn node_path(file: &Value) -> String {
    let p = file["path"].as_str().unwrap();
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Builds (or takes from the cache) the guest for `arch` and returns its directory.
pub fn build_guest(arch: &str) -> PathBuf {
    let out = script(Command::new(vm_dir().join("build-guest.sh")).arg(arch));
    PathBuf::from(out.lines().last().expect("build-guest.sh printed no path"))
}

/// Where Debian's `ovmf` package puts the combined UEFI firmware image for `-bios`.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// Builds (or takes from the cache) the guest with its UEFI variant and returns the qcow2
/// image a launcher can use as its base image (a qemu-img backing file, like Ubuntu's .img).
pub fn build_uefi_guest(arch: &str) -> PathBuf {
    let out = script(
        Command::new(vm_dir().join("build-guest.sh"))
            .arg(arch)
            .arg("--uefi"),
    );
    let dir = PathBuf::from(out.lines().last().expect("build-guest.sh printed no path"));
    dir.join("uefi/disk.qcow2")
}

/// Waits for the collector's report in a serial console log (a VM without the igvm.report
/// port, e.g. started by a user's launcher) and writes it to `out`; with `stop`, stops `pid`
/// once the report is in (the UEFI guest keeps running after it). tests/vm/await-report.py:
/// exit 0 report, 2 timed out, 3 the VM exited without a decodable report.
pub fn await_report(log: &Path, out: &Path, pid: u32, timeout_s: u64, stop: bool) -> ExitStatus {
    let mut cmd = Command::new("python3");
    cmd.arg(vm_dir().join("await-report.py"))
        .arg(log)
        .arg(out)
        .args([
            "--pid",
            &pid.to_string(),
            "--timeout",
            &timeout_s.to_string(),
        ]);
    if stop {
        cmd.arg("--stop");
    }
    cmd.stderr(Stdio::inherit()).status().unwrap()
}

/// Whether the tests run as root (the QEMU tests need it: mmdebstrap, namespaces, tap devices).
pub fn is_root() -> bool {
    fs_err::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub struct Fixture {
    pub arch: &'static str,
    pub work: PathBuf,
    pub guest: PathBuf,
    pub accel: String,
    pub mirror: PathBuf,
    pub mirror_url: String,
}

/// Guest, accelerator, mirror and its HTTP server: built once per test binary, under
/// `CARGO_TARGET_TMPDIR/<work>` (the first caller's `work` names it).
pub fn fixture(work: &str, arch: &'static str) -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(work);
        fs_err::create_dir_all(&work).unwrap();
        let guest = build_guest(arch);
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
        eprintln!("vm: accelerator {accel} (KVM only when a guest kernel really boots with it)");
        let mirror = work.join("mirror");
        let _ = fs_err::remove_dir_all(&mirror);
        script(
            Command::new(vm_dir().join("build-mirror.sh"))
                .arg(arch)
                .arg(&mirror),
        );
        let mirror_url = serve(mirror.clone());
        Fixture {
            arch,
            work,
            guest,
            accel,
            mirror,
            mirror_url,
        }
    })
}

impl Fixture {
    /// A fresh per-case directory under the fixture's work directory.
    pub fn case_dir(&self, case: &str) -> PathBuf {
        let d = self.work.join(case);
        let _ = fs_err::remove_dir_all(&d);
        fs_err::create_dir_all(&d).unwrap();
        d
    }

    /// Seconds a boot may take: `IMAGEGEN_VM_TIMEOUT`, else 300 under KVM and `tcg` under TCG.
    pub fn timeout(&self, tcg: u64) -> String {
        std::env::var("IMAGEGEN_VM_TIMEOUT").unwrap_or_else(|_| {
            if self.accel == "kvm" {
                "300".into()
            } else {
                tcg.to_string()
            }
        })
    }

    /// `imagegen build` against the local mirror with one of its profiles. Builds share one
    /// download cache and run one at a time (they are quick next to a boot). Panics with
    /// imagegen's output when the build fails.
    pub fn build(&self, case: &Path, profile: &str, payload: &str) -> Build {
        static BUILD: Mutex<()> = Mutex::new(());
        let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
        let out = case.join("out");
        let profile = self.mirror.join(profile);
        let o = super::imagegen()
            .args(["build", "--arch", self.arch, "--profile"])
            .arg(&profile)
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(self.work.join("imagegen-cache"))
            .args(["--payload", payload])
            // This machine's mirror; with the fetch payload the nodes download instead, from
            // the URLs of the profile, and --mirror would be refused.
            .args(if payload == "fetch" {
                vec![]
            } else {
                vec!["--mirror", &self.mirror_url]
            })
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
        let manifest = fs_err::read_to_string(out.join(self.arch).join("manifest.json")).unwrap();
        Build {
            arch: self.arch,
            out,
            manifest: serde_json::from_str(&manifest).unwrap(),
        }
    }
}

/// The mirror over HTTP on 127.0.0.1, streamed from disk by the tests' one server. It lives as
/// long as the test process (the fixture is shared by every case).
fn serve(root: PathBuf) -> String {
    let server: &'static super::http::TestServer =
        Box::leak(Box::new(super::http::TestServer::start()));
    server.add_dir("/", &root);
    server.base()
}

/// What `imagegen build` wrote: the output directory and its manifest.json.
pub struct Build {
    pub arch: &'static str,
    pub out: PathBuf,
    pub manifest: Value,
}

impl Build {
    pub fn vm(&self, name: &str) -> &Value {
        self.manifest["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in manifest.json"))
    }
    pub fn seed_dir(&self, vm: &str) -> PathBuf {
        self.out.join(self.arch).join(vm)
    }
}

/// One boot of one VM through tests/vm/boot.sh. [`BootSpec::new`] gives the first-boot tests'
/// defaults: QEMU's restricted user networking handing out the manifest's address, the VM
/// powers off after its report.
pub struct BootSpec<'a> {
    pub vm: &'a Value,
    pub seed: PathBuf,
    pub payload: Option<PathBuf>,
    /// A QEMU guestfwd rule: the one address the guest may reach (fetch payload tests).
    pub guestfwd: Option<String>,
    /// Reused by a second boot of the same disk.
    pub disk: PathBuf,
    pub out: PathBuf,
    /// (namespace, tap): the NIC is that tap of a tests/vm/netns.sh namespace instead.
    pub netns: Option<(String, String)>,
    /// Probes the collector runs before it reports (guest/report.py), as a JSON list.
    pub probes: Option<Value>,
    /// The VM stays up after its report; stop it with [`stop_vm`].
    pub keep_running: bool,
    pub mem_mib: Option<u32>,
    /// Seconds under TCG (see [`Fixture::timeout`]).
    pub tcg_timeout: u64,
}

impl<'a> BootSpec<'a> {
    pub fn new(vm: &'a Value, seed: PathBuf, disk: PathBuf, out: PathBuf) -> Self {
        BootSpec {
            vm,
            seed,
            payload: None,
            guestfwd: None,
            disk,
            out,
            netns: None,
            probes: None,
            keep_running: false,
            mem_mib: None,
            tcg_timeout: 900,
        }
    }

    /// The boot.sh command line; its paths disk (every manifest path of the VM) and probes
    /// file are written beside `out`.
    pub fn command(&self, f: &Fixture) -> Command {
        let name = self.vm["name"].as_str().unwrap();
        let paths = self.out.with_extension("paths");
        let mut list = String::new();
        for file in self.vm["files"].as_array().unwrap() {
            list.push_str(&node_path(file));
            list.push('\n');
        }
        fs_err::write(&paths, list).unwrap();
        let mut cmd = Command::new(vm_dir().join("boot.sh"));
        cmd.arg("--guest")
            .arg(&f.guest)
            .arg("--disk")
            .arg(&self.disk)
            .arg("--seed")
            .arg(&self.seed)
            .args(["--mac", self.vm["mac"].as_str().unwrap()])
            .arg("--paths")
            .arg(&paths)
            .arg("--out")
            .arg(&self.out)
            .args(["--name", name, "--accel", &f.accel])
            .args(["--timeout", &f.timeout(self.tcg_timeout)]);
        match &self.netns {
            Some((ns, tap)) => {
                cmd.args(["--netns", ns, "--tap", tap]);
            }
            None => {
                let address = self.vm["address"].as_str().unwrap();
                let net = format!("{}.0/24", address.rsplit_once('.').unwrap().0);
                cmd.args(["--address", address, "--net", &net]);
            }
        }
        if let Some(p) = &self.payload {
            cmd.arg("--payload").arg(p);
        }
        if let Some(g) = &self.guestfwd {
            cmd.arg("--guestfwd").arg(g);
        }
        if let Some(probes) = &self.probes {
            let file = self.out.with_extension("probes.json");
            fs_err::write(&file, serde_json::to_string_pretty(probes).unwrap()).unwrap();
            cmd.arg("--probes").arg(file);
        }
        if self.keep_running {
            cmd.arg("--keep-running");
        }
        if let Some(m) = self.mem_mib {
            cmd.args(["--mem", &m.to_string()]);
        }
        cmd.stderr(Stdio::inherit());
        cmd
    }

    /// The report of a boot that `status` ended; panics naming the console log if there is none.
    pub fn booted(&self, status: ExitStatus) -> Booted {
        let name = self.vm["name"].as_str().unwrap();
        assert!(
            status.success(),
            "boot of {name} failed ({status}; exit 2 = timed out, 3 = no report); console: {}",
            self.out.join("console.log").display()
        );
        let report = fs_err::read_to_string(self.out.join("report.json")).unwrap();
        Booted {
            report: serde_json::from_str(&report).unwrap(),
            out: self.out.clone(),
        }
    }
}

pub struct Booted {
    pub report: Value,
    pub out: PathBuf,
}

/// Stops a VM that `--keep-running` left up (quiet if it is gone already).
pub fn stop_vm(out: &Path) {
    let _ = Command::new(vm_dir().join("boot.sh"))
        .arg("--stop")
        .arg(out)
        .status();
}
