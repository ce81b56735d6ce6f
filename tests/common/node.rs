//! The node contract of node-contract.md, checked from a collector report (tests/vm/guest/report.py)
//! against the build's manifest; shared by the first-boot tests and the cluster tests.
#![allow(dead_code)]

use std::path::Path;

use serde_json::Value;

use super::vm::{node_path, text};

pub fn octal(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).unwrap_or(u32::MAX)
}

/// Collects every failed check so that one boot tells everything that is wrong.
pub struct Checks {
    what: String,
    failures: Vec<String>,
}

impl Checks {
    pub fn new(what: impl Into<String>) -> Self {
        Checks {
            what: what.into(),
            failures: Vec::new(),
        }
    }
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        if !ok {
            self.failures.push(msg());
        }
    }
    pub fn failures(&self) -> &[String] {
        &self.failures
    }
    /// Every failure in one text naming the report and console log of the boot in `out`, or
    /// None when all checks passed.
    pub fn summary(self, out: &Path) -> Option<String> {
        (!self.failures.is_empty()).then(|| {
            format!(
                "{}: {} failed check(s):\n  - {}\nreport: {}\nconsole: {}",
                self.what,
                self.failures.len(),
                self.failures.join("\n  - "),
                out.join("report.json").display(),
                out.join("console.log").display()
            )
        })
    }
    /// Panics with every failure (see [`Checks::summary`]).
    pub fn done(self, out: &Path) {
        if let Some(s) = self.summary(out) {
            panic!("{s}");
        }
    }
}

pub fn output_log(r: &Value) -> &str {
    text(r, "/cloud_init/output_log/text")
}

/// A file the report describes, if it exists on the node.
pub fn file<'a>(r: &'a Value, path: &str) -> Option<&'a Value> {
    r["files"].get(path).filter(|f| f.get("type").is_some())
}

#[derive(Clone, Copy, PartialEq)]
pub enum Addressing {
    Dhcp,
    Static,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Cni {
    Bridge,
    Cilium,
}

/// The node contract, checked from inside the guest.
pub fn check_node(c: &mut Checks, r: &Value, vm: &Value, addressing: Addressing, cni: Cni) {
    let name = vm["name"].as_str().unwrap();
    let role = vm["role"].as_str().unwrap();
    check_cloud_init(c, r, name);
    check_identity(c, r, vm, addressing);
    check_manifest_files(c, r, vm);
    if role == "gateway" {
        return;
    }
    check_binaries(c, r, cni);
    check_kernel(c, r);
    check_services(c, r, cni);
    check_usr_and_taint(c, r, role);
}

/// cloud-init finished without errors and without complaining about the schema.
fn check_cloud_init(c: &mut Checks, r: &Value, name: &str) {
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
}

/// Identity and network: host name, the NIC with the profile's MAC, its address and where it came from.
fn check_identity(c: &mut Checks, r: &Value, vm: &Value, addressing: Addressing) {
    let name = vm["name"].as_str().unwrap();
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
            // The node's own address among the NIC's (the gateway also has the VIP there).
            let inet = i["addr_info"].as_array().and_then(|a| {
                a.iter()
                    .find(|x| x["family"] == "inet" && x["local"] == address)
            });
            c.check(inet.is_some(), || {
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
}

/// Every file the manifest lists, as recorded; private files readable by their owner only.
fn check_manifest_files(c: &mut Checks, r: &Value, vm: &Value) {
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
}

/// The binaries of the contract (and none of the bridge CNI's with Cilium).
fn check_binaries(c: &mut Checks, r: &Value, cni: Cni) {
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
}

/// br_netfilter now and at every boot; bridged traffic through iptables; swap off.
fn check_kernel(c: &mut Checks, r: &Value) {
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
}

/// The node's services run, containerd answers with runc as configured, no unit failed.
fn check_services(c: &mut Checks, r: &Value, cni: Cni) {
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
}

/// Merged /usr survived the payload; control nodes register with the control-plane taint.
fn check_usr_and_taint(c: &mut Checks, r: &Value, role: &str) {
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
