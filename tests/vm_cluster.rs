//! Cluster tests (issue #10): VMs booted together on the guide's host network, rebuilt inside a
//! network namespace (tests/vm/netns.sh: bridge with 192.168.1.1/24, one tap per VM, dnsmasq
//! with the DHCP/DNS lines imagegen generates, no route out), checked from inside each guest with
//! the collector's probes (tests/vm/guest/report.py), then stopped and the namespace removed,
//! also when a check fails.
//!
//! - `standins_speak_tls_with_debians_etcd_on_the_host`: the Kubernetes stand-ins of the test
//!   mirror against Debian's real etcd, on the host (tests/vm/standin/selftest.sh).
//! - `cluster_gateway_control0_worker0_serve_the_api_through_the_vip`: the cluster case of issue
//!   #10 (gateway, control0, worker0 at once, on imagegen's own dnsmasq and hosts lines).
//!
//! All are `#[ignore]`d like tests/vm_boot.rs and need root. See tests/vm/README.md.

mod common;

use common::node::{check_node, file, octal, Addressing, Checks, Cni};
use common::vm::{is_root, script, stop_vm, text, vm_dir, BootSpec, Booted, Fixture};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::{json, Value};

const ARCH: &str = "amd64";

fn fixture() -> &'static Fixture {
    assert!(
        is_root(),
        "the cluster tests need root (mmdebstrap, network namespaces, tap devices)"
    );
    common::vm::fixture("vm-cluster", ARCH)
}

// ---------------------------------------------------------------------------------------------
// The namespace and the VMs in it.

/// A tests/vm/netns.sh namespace and the VMs booted in it. Dropping it stops every VM and
/// deletes the namespace (which also kills whatever still runs in it), on success and on panic.
struct Network {
    name: String,
    vms: Mutex<Vec<PathBuf>>,
}

impl Network {
    /// `case` names the namespace `igvm-<case>-<pid>`; namespaces of earlier runs whose test
    /// process is gone are removed first.
    fn up(case: &str, dir: &Path, taps: &[&str], dnsmasq_conf: &Path, hosts: &Path) -> Network {
        let netns = vm_dir().join("netns.sh");
        script(Command::new(&netns).arg("gc"));
        let name = format!("igvm-{case}-{}", std::process::id());
        let work = dir.join("netns");
        script(
            Command::new(&netns)
                .args(["up", &name, "--work"])
                .arg(&work)
                .args(["--taps", &taps.join(",")])
                .arg("--dnsmasq-conf")
                .arg(dnsmasq_conf)
                .arg("--hosts")
                .arg(hosts),
        );
        Network {
            name,
            vms: Mutex::new(Vec::new()),
        }
    }

    /// Boots every VM at once (each with `--keep-running`, so that all stay up until the last
    /// has reported: each one's probes need the others) and returns their reports in order.
    fn boot_all(&self, specs: &[BootSpec]) -> Vec<Booted> {
        let f = fixture();
        let mut children = Vec::new();
        for spec in specs {
            assert!(spec.keep_running && spec.netns.is_some());
            self.vms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(spec.out.clone());
            children.push(spec.command(f).spawn().unwrap());
        }
        let statuses: Vec<_> = children
            .into_iter()
            .map(|mut c| c.wait().unwrap())
            .collect();
        specs
            .iter()
            .zip(statuses)
            .map(|(spec, status)| spec.booted(status))
            .collect()
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for out in self.vms.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            stop_vm(out);
        }
        let _ = Command::new(vm_dir().join("netns.sh"))
            .args(["down", &self.name])
            .status();
    }
}

fn namespace_exists(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// A probe for the collector: `sh` retried until it exits 0 or `timeout_s` has passed.
fn probe(name: &str, sh: &str, timeout_s: u64) -> Value {
    json!({"name": name, "sh": sh, "until": "success", "timeout_s": timeout_s, "interval_s": 5})
}

fn check_probe<'a>(c: &mut Checks, r: &'a Value, vm: &str, name: &str) -> &'a str {
    let p = &r["probes"][name];
    c.check(p["ok"] == true, || {
        format!(
            "{vm}: probe {name} failed after {} attempt(s), {}s (rc {}):\n{}\n{}",
            p["attempts"],
            p["elapsed_s"],
            p["rc"],
            text(p, "/stdout"),
            text(p, "/stderr")
        )
    });
    text(p, "/stdout")
}

// ---------------------------------------------------------------------------------------------
// (i) The stand-ins on the host.

#[test]
#[ignore = "needs root and the test mirror; run by .ci/run with --include-ignored"]
fn standins_speak_tls_with_debians_etcd_on_the_host() {
    let f = fixture();
    let dir = f.case_dir("standins");
    let status = Command::new(vm_dir().join("standin/selftest.sh"))
        .arg(&f.mirror)
        .arg(dir.join("work"))
        .status()
        .unwrap();
    assert!(
        status.success(),
        "tests/vm/standin/selftest.sh failed ({status}); its logs are in {}",
        dir.join("work").display()
    );
}

// ---------------------------------------------------------------------------------------------
// (ii) The namespace harness with today's seeds.

fn yaml_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim_start().strip_prefix(key)?.strip_prefix(':')?;
        Some(v.split('#').next()?.trim().trim_matches('"').to_string())
    })
}

/// Every unit's flags (ExecStart and friends, as systemd parsed them) name files that exist on
/// the node, and the files named inside the config files those flags name exist too.
fn check_unit_paths(c: &mut Checks, r: &Value, vm: &str) {
    let Some(units) = r["exec_start"].as_object() else {
        c.check(false, || format!("{vm}: the report has no exec_start"));
        return;
    };
    for (unit, u) in units {
        for p in u["paths"].as_array().into_iter().flatten() {
            let p = p.as_str().unwrap_or("");
            c.check(file(r, p).is_some(), || {
                format!("{vm}: {unit} names {p}, which does not exist")
            });
            // Paths inside YAML configs and kubeconfigs named by a flag.
            let content = text(r, &format!("/files/{}/content", p.replace('/', "~1")));
            for line in content.lines() {
                let Some((key, value)) = line.split_once(':') else {
                    continue;
                };
                let key = key.trim();
                let value = value.trim().trim_matches('"');
                let named = [
                    "kubeconfig",
                    "clientCAFile",
                    "tlsCertFile",
                    "tlsPrivateKeyFile",
                ]
                .contains(&key)
                    || key.ends_with("certificate-authority")
                    || key.ends_with("client-certificate")
                    || key.ends_with("client-key");
                if named && value.starts_with('/') {
                    c.check(file(r, value).is_some(), || {
                        format!("{vm}: {p} (named by {unit}) names {value}, which does not exist")
                    });
                }
            }
        }
    }
}

fn check_modes(c: &mut Checks, r: &Value, vm: &str, expected: &[(&str, &str)]) {
    for (path, mode) in expected {
        match file(r, path) {
            None => c.check(false, || format!("{vm}: {path} is missing")),
            Some(f) => {
                let got = octal(text(f, "/mode"));
                c.check(got == octal(mode), || {
                    format!("{vm}: {path} has mode {got:04o}, cluster-design.md says {mode}")
                });
            }
        }
    }
}

fn check_units(c: &mut Checks, r: &Value, vm: &str, units: &[&str]) {
    for u in units {
        let s = &r["units"][*u];
        c.check(
            s["is_enabled"] == "enabled" && s["is_active"] == "active",
            || format!("{vm}: {u} is {} / {}", s["is_enabled"], s["is_active"]),
        );
    }
}

/// The probes of the cluster case, per VM: gateway, control0, worker0.
fn cluster_probes(vip: &str, port: &str, control: &str) -> [Value; 3] {
    let etcd = format!(
        "etcdctl --endpoints=https://{control}:2379,https://127.0.0.1:2379 \
         --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/kubernetes.pem \
         --key=/etc/etcd/kubernetes-key.pem endpoint health"
    );
    let saw_worker = "grep 'client CN=system:node:worker0 O=system:nodes GET /healthz -> 200' \
                      /var/log/kube-apiserver-standin.log";
    // The binding is there, and the bootstrap service (Type=simple: it does not hold up the
    // boot) has finished its run.
    let rbac = "kubectl --kubeconfig /var/lib/kubernetes/admin.kubeconfig get --raw \
                /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:kube-apiserver \
                && [ \"$(systemctl show -p SubState --value imagegen-bootstrap-cluster)\" = dead ]";
    [
        json!([probe("ipvs", &ipvs_probe(vip, port, control), 600)]),
        json!([
            probe("etcd-health", &etcd, 600),
            probe("saw-worker0", saw_worker, 600),
            probe("rbac-applied", rbac, 600),
        ]),
        json!([
            probe("resolve-kubernetes", "getent hosts kubernetes", 300),
            probe(
                "healthz-via-vip",
                &healthz_probe("/var/lib/kubelet/kubeconfig"),
                600,
            ),
        ]),
    ]
}

/// Prints the IPVS table; succeeds once `control` is a real server of the VIP with weight > 0
/// (ldirectord's quiescent mode leaves a failing real server in the table with weight 0).
fn ipvs_probe(vip: &str, port: &str, control: &str) -> String {
    format!(
        "ipvsadm -Ln; ipvsadm -Ln -t {vip}:{port} | awk '$1 == \"->\" && $2 == \"{control}:{port}\" \
         && $4 > 0 {{ok = 1}} END {{exit !ok}}'"
    )
}

/// GET <server>/healthz with the CA, client certificate and key of `kubeconfig` (its current
/// context), by curl, which verifies the server under the host name of the server URL. Prints
/// the body, then the address curl connected to.
fn healthz_probe(kubeconfig: &str) -> String {
    format!(
        "d=$(mktemp -d) && python3 -c 'import base64, sys, yaml\n\
         k = yaml.safe_load(open(\"{kubeconfig}\"))\n\
         ctx = next(c[\"context\"] for c in k[\"contexts\"] if c[\"name\"] == k[\"current-context\"])\n\
         cl = next(c[\"cluster\"] for c in k[\"clusters\"] if c[\"name\"] == ctx[\"cluster\"])\n\
         u = next(x[\"user\"] for x in k[\"users\"] if x[\"name\"] == ctx[\"user\"])\n\
         print(cl[\"server\"])\n\
         for n, v in ((\"ca\", cl[\"certificate-authority-data\"]), \
         (\"cert\", u[\"client-certificate-data\"]), (\"key\", u[\"client-key-data\"])):\n\
         \x20   open(sys.argv[1] + \"/\" + n + \".pem\", \"wb\").write(base64.b64decode(v))\n\
         ' \"$d\" > \"$d/server\" && curl -sS --fail -m 10 --cacert \"$d/ca.pem\" \
         --cert \"$d/cert.pem\" --key \"$d/key.pem\" -w '\\n%{{remote_ip}}\\n' \
         \"$(cat \"$d/server\")/healthz\""
    )
}

#[test]
fn probe_scripts_are_valid_shell() {
    let [gw, c0, w0] = cluster_probes("192.168.1.21", "6443", "192.168.1.11");
    for probes in [gw, c0, w0] {
        for p in probes.as_array().unwrap() {
            let sh = p["sh"].as_str().unwrap();
            let ok = Command::new("sh").args(["-n", "-c", sh]).status().unwrap();
            assert!(ok.success(), "probe {} is not valid sh:\n{sh}", p["name"]);
        }
    }
}

#[test]
#[ignore = "boots three QEMU guests at once; run by .ci/run with --include-ignored"]
fn cluster_gateway_control0_worker0_serve_the_api_through_the_vip() {
    let f = fixture();
    let dir = f.case_dir("cluster");
    let profile = fs_err::read_to_string(f.mirror.join("profile-cluster.yaml")).unwrap();
    let vip = yaml_value(&profile, "api_vip").expect("profile-cluster.yaml has no api_vip");
    let endpoint = yaml_value(&profile, "api_endpoint").unwrap_or("https://kubernetes:6443".into());
    let port = endpoint
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let build = f.build(&dir, "profile-cluster.yaml", "embed");
    let host = build.out.join(ARCH).join("host");
    let (conf, hosts) = (host.join("dnsmasq.conf"), host.join("hosts"));
    for p in [&conf, &hosts] {
        assert!(p.is_file(), "imagegen wrote no {}", p.display());
    }
    let names = ["gateway", "control0", "worker0"];
    let control = text(build.vm("control0"), "/address").to_string();
    let worker = text(build.vm("worker0"), "/address").to_string();

    let probes = cluster_probes(&vip, &port, &control);
    let net = Network::up("cluster", &dir, &["tap0", "tap1", "tap2"], &conf, &hosts);
    let ns = net.name.clone();
    let specs: Vec<BootSpec> = names
        .iter()
        .zip(probes)
        .enumerate()
        .map(|(i, (vm, probes))| BootSpec {
            netns: Some((net.name.clone(), format!("tap{i}"))),
            keep_running: true,
            probes: Some(probes),
            mem_mib: Some(if *vm == "control0" { 1536 } else { 1024 }),
            tcg_timeout: 1800,
            ..BootSpec::new(
                build.vm(vm),
                build.seed_dir(vm).join("seed.iso"),
                dir.join(format!("{vm}.qcow2")),
                dir.join(vm),
            )
        })
        .collect();
    let booted = net.boot_all(&specs);
    drop(net);
    let [gw, c0, w0] = [&booted[0].report, &booted[1].report, &booted[2].report];

    // Every failure of every node in one message: one boot of three VMs tells all.
    let mut failed = Vec::new();

    // Every node as today's contract says, from the namespace's DHCP.
    for (b, vm) in booted.iter().zip(names) {
        let mut c = Checks::new(format!("cluster: {vm}"));
        check_node(
            &mut c,
            &b.report,
            build.vm(vm),
            Addressing::Dhcp,
            Cni::Bridge,
        );
        check_unit_paths(&mut c, &b.report, vm);
        failed.extend(c.summary(&b.out));
    }

    // The gateway balances the VIP onto control0, which answers its health check.
    let mut c = Checks::new("cluster: gateway");
    check_modes(&mut c, gw, "gateway", GATEWAY_FILES);
    check_units(&mut c, gw, "gateway", &["ldirectord"]);
    check_probe(&mut c, gw, "gateway", "ipvs");
    let modules = gw["modules"].as_array().cloned().unwrap_or_default();
    c.check(modules.iter().any(|m| m == "ip_vs"), || {
        "gateway: ip_vs is not loaded".into()
    });
    failed.extend(c.summary(&booted[0].out));

    // control0: etcd over TLS, the control plane up, the RBAC bootstrap done, and the API
    // server saw worker0's certificate come through the VIP (gate: the source stays worker0).
    let mut c = Checks::new("cluster: control0");
    check_modes(&mut c, c0, "control0", CONTROL_FILES);
    check_units(
        &mut c,
        c0,
        "control0",
        &[
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ],
    );
    let health = check_probe(&mut c, c0, "control0", "etcd-health");
    let err = text(c0, "/probes/etcd-health/stderr");
    c.check(
        format!("{health}{err}").matches("is healthy").count() >= 2,
        || format!("control0: etcd is not healthy on both endpoints:\n{health}{err}"),
    );
    let saw = check_probe(&mut c, c0, "control0", "saw-worker0");
    c.check(saw.contains(&format!(" {worker}:")), || {
        format!("control0: worker0's requests did not come from {worker}:\n{saw}")
    });
    check_probe(&mut c, c0, "control0", "rbac-applied");
    let boot = &c0["units"]["imagegen-bootstrap-cluster"]["show"];
    c.check(
        boot["Result"] == "success"
            && boot["ExecMainStatus"] == "0"
            && boot["ActiveState"] == "inactive",
        || format!("control0: imagegen-bootstrap-cluster did not succeed: {boot}"),
    );
    let lo_vip = c0["ip_addr"].as_array().into_iter().flatten().any(|i| {
        i["ifname"] == "lo"
            && i["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["local"] == vip.as_str() && a["prefixlen"] == 32)
    });
    c.check(lo_vip, || format!("control0: no {vip}/32 on lo"));
    for (key, want) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
    ] {
        let got = &c0["sysctl"][key];
        c.check(got == want, || {
            format!("control0: {key} = {got}, want {want}")
        });
    }
    failed.extend(c.summary(&booted[1].out));

    // worker0: `kubernetes` is the VIP, and /healthz through it says ok to its kubelet's cert.
    let mut c = Checks::new("cluster: worker0");
    let resolved = check_probe(&mut c, w0, "worker0", "resolve-kubernetes");
    c.check(
        resolved.split_whitespace().next() == Some(vip.as_str()),
        || format!("worker0: kubernetes resolves to {resolved:?}, not the VIP {vip}"),
    );
    let out = check_probe(&mut c, w0, "worker0", "healthz-via-vip");
    let lines: Vec<&str> = out.lines().collect();
    c.check(lines == ["ok", vip.as_str()], || {
        format!("worker0: /healthz through the VIP said {out:?}, want ok from {vip}")
    });
    failed.extend(c.summary(&booted[2].out));
    assert!(!namespace_exists(&ns), "namespace {ns} is still there");
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
} // ---------------------------------------------------------------------------------------------
  // (A) The cluster case of issue #10.

/// Modes notes/cluster-design.md gives the files of each role (besides today's node files,
/// which check_node compares with the manifest).
const CONTROL_FILES: &[(&str, &str)] = &[
    ("/etc/etcd/ca.pem", "0644"),
    ("/etc/etcd/kubernetes.pem", "0644"),
    ("/etc/etcd/kubernetes-key.pem", "0600"),
    ("/var/lib/etcd", "0700"),
    ("/var/lib/kubernetes/ca.pem", "0644"),
    ("/var/lib/kubernetes/ca-key.pem", "0600"),
    ("/var/lib/kubernetes/kubernetes.pem", "0644"),
    ("/var/lib/kubernetes/kubernetes-key.pem", "0600"),
    ("/var/lib/kubernetes/service-account.pem", "0644"),
    ("/var/lib/kubernetes/service-account-key.pem", "0600"),
    ("/var/lib/kubernetes/encryption-config.yaml", "0600"),
    (
        "/var/lib/kubernetes/kube-controller-manager.kubeconfig",
        "0600",
    ),
    ("/var/lib/kubernetes/kube-scheduler.kubeconfig", "0600"),
    ("/var/lib/kubernetes/admin.kubeconfig", "0600"),
    ("/etc/kubernetes/config/kube-scheduler.yaml", "0644"),
    ("/etc/kubernetes/imagegen/kubelet-access-rbac.yaml", "0644"),
    ("/etc/sysctl.d/50-vip-arp.conf", "0644"),
    ("/usr/local/sbin/imagegen-bootstrap-cluster", "0755"),
    ("/usr/local/bin/etcd", "0755"),
    ("/usr/local/bin/etcdctl", "0755"),
    ("/usr/local/bin/kube-apiserver", "0755"),
    ("/usr/local/bin/kube-controller-manager", "0755"),
    ("/usr/local/bin/kube-scheduler", "0755"),
    ("/usr/local/bin/kubectl", "0755"),
];
const GATEWAY_FILES: &[(&str, &str)] = &[
    ("/etc/ha.d/ldirectord.cf", "0644"),
    ("/etc/modules-load.d/ipvs.conf", "0644"),
];
