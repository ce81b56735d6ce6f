//! The cluster as a whole, from the outside: the PKI `imagegen pki` and `build` make (checked
//! with openssl), `--pki` with the guide's file names, the files for the host, and every file a
//! systemd unit's flags name being on that node with the right mode.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::{build_fixed, mirror, pki_fixture, ssh_key_fixture, Test};
use serde_json::Value;

const DEFAULT: &str = "profiles/kthw-1.31.yaml";

fn mode(p: &Path) -> u32 {
    fs_err::metadata(p).unwrap().permissions().mode() & 0o777
}

fn openssl(args: &[&str], file: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .arg(file)
        .output()
        .expect("openssl is needed: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `CN` and `O` of a certificate's subject.
fn subject(cert: &Path) -> (String, String) {
    let text = openssl(
        &["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"],
        cert,
    );
    let rdns = text.trim().trim_start_matches("subject=");
    let get = |k: &str| {
        rdns.split(',')
            .find_map(|p| p.trim().strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_string()
    };
    (get("CN"), get("O"))
}

fn sans(cert: &Path) -> Vec<String> {
    let text = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in"], cert);
    text.lines()
        .skip(1)
        .flat_map(|l| l.split(", "))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A YAML document (user-data, kubeconfig) as JSON values.
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap()
}

fn b64(s: &Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn pki_makes_what_genauth_makes_and_openssl_agrees() {
    let t = Test::new();
    let out = t.clone().args(["pki", "--out", "out"]).run().success();
    let printed = format!("{}{}", out.stdout(), out.stderr());
    assert!(printed.contains("kubernetes-key.pem"), "{printed}");
    assert!(
        !printed.contains("PRIVATE KEY") && !printed.contains("secret:"),
        "{printed}"
    );
    let pki = t.temp().join("out/pki");
    check_subjects(&pki);
    check_api_and_node_names(&pki);
    check_kubeconfigs(&pki);
    check_encryption_config(&pki);
    // A second run completes nothing and changes nothing.
    let before = common::fs::read_tree(&pki);
    let again = t.clone().args(["pki", "--out", "out"]).run().success();
    assert!(
        again.stdout().contains("nothing created"),
        "{}",
        again.stdout()
    );
    assert!(
        common::fs::read_tree(&pki) == before,
        "a second run changed out/pki"
    );
}

/// Who is who: the API server reads CN as the user, O as the group; every certificate verifies
/// against the CA and its key is 0600.
fn check_subjects(pki: &Path) {
    let mut expected: Vec<(String, String, String)> = [
        ("kubernetes", "kubernetes", "Kubernetes"),
        ("admin", "admin", "system:masters"),
        (
            "kube-controller-manager",
            "system:kube-controller-manager",
            "system:kube-controller-manager",
        ),
        (
            "kube-scheduler",
            "system:kube-scheduler",
            "system:kube-scheduler",
        ),
        ("kube-proxy", "system:kube-proxy", "system:node-proxier"),
        ("service-account", "service-accounts", "Kubernetes"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    for n in [
        "control0", "control1", "control2", "worker0", "worker1", "worker2",
    ] {
        // The Node authorizer: system:node:<name> in system:nodes.
        expected.push((n.into(), format!("system:node:{n}"), "system:nodes".into()));
    }
    let ca = pki.join("ca.pem");
    for (stem, cn, o) in &expected {
        let cert = pki.join(format!("{stem}.pem"));
        let verify = openssl(&["verify", "-CAfile", ca.to_str().unwrap()], &cert);
        assert!(verify.contains(": OK"), "{stem}: {verify}");
        assert_eq!(subject(&cert), (cn.clone(), o.clone()), "{stem}");
        assert_eq!(mode(&pki.join(format!("{stem}-key.pem"))), 0o600, "{stem}");
    }
    assert!(
        !pki.join("gateway.pem").exists(),
        "the gateway is no Kubernetes node"
    );
}

/// The API server's names (the Service IP, the VIP, every control node) and a node's own.
fn check_api_and_node_names(pki: &Path) {
    let api = sans(&pki.join("kubernetes.pem"));
    for s in [
        "IP Address:10.32.0.1",
        "IP Address:192.168.1.21",
        "IP Address:192.168.1.11",
        "IP Address:192.168.1.13",
        "IP Address:127.0.0.1",
        "DNS:control2",
        "DNS:control2.kubenet",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:kubernetes.kubenet",
        "DNS:localhost",
    ] {
        assert!(api.contains(&s.to_string()), "{s} not in {api:?}");
    }
    assert!(!api.iter().any(|s| s.contains("worker")), "{api:?}");
    assert_eq!(
        sans(&pki.join("worker1.pem")),
        [
            "DNS:worker1",
            "DNS:worker1.kubenet",
            "IP Address:192.168.1.15"
        ]
    );
}

/// Kubeconfigs: the API endpoint, the CA, and the identity's own certificate.
fn check_kubeconfigs(pki: &Path) {
    let ca = pki.join("ca.pem");
    let ca_pem = fs_err::read_to_string(&ca).unwrap();
    for stem in [
        "admin",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
        "worker2",
        "control0",
    ] {
        let path = pki.join(format!("{stem}.kubeconfig"));
        assert_eq!(mode(&path), 0o600, "{stem}");
        let k = yaml(&fs_err::read_to_string(&path).unwrap());
        let cluster = &k["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://kubernetes:6443", "{stem}");
        assert_eq!(
            b64(&cluster["certificate-authority-data"]),
            ca_pem,
            "{stem}"
        );
        let user = &k["users"][0]["user"];
        assert_eq!(
            b64(&user["client-certificate-data"]),
            fs_err::read_to_string(pki.join(format!("{stem}.pem"))).unwrap(),
            "{stem}"
        );
        assert_eq!(
            b64(&user["client-key-data"]),
            fs_err::read_to_string(pki.join(format!("{stem}-key.pem"))).unwrap(),
            "{stem}"
        );
    }
    assert!(!pki.join("kubernetes.kubeconfig").exists());
    assert!(!pki.join("service-account.kubeconfig").exists());
}

/// The encryption config: one aescbc key of 32 bytes, 0600.
fn check_encryption_config(pki: &Path) {
    let enc = pki.join("encryption-config.yaml");
    assert_eq!(mode(&enc), 0o600);
    let e = yaml(&fs_err::read_to_string(&enc).unwrap());
    let key = &e["resources"][0]["providers"][0]["aescbc"]["keys"][0];
    assert_eq!(key["name"], "key1");
    let secret = base64::engine::general_purpose::STANDARD
        .decode(key["secret"].as_str().unwrap())
        .unwrap();
    assert_eq!(secret.len(), 32);
}

#[test]
fn builds_reuse_the_encryption_key_and_never_print_it() {
    let t = Test::new();
    let build = || {
        t.clone()
            .fetch_build()
            .args(["--no-iso"])
            .args(["--out", "out"])
            .run()
            .success()
    };
    let first = build();
    let enc = t.temp().join("out/pki/encryption-config.yaml");
    let text = fs_err::read_to_string(&enc).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .unwrap()
        .to_string();
    let second = build();
    assert_eq!(
        fs_err::read_to_string(&enc).unwrap(),
        text,
        "a rebuild made a new key"
    );
    for o in [&first, &second] {
        let printed = format!("{}{}", o.stdout(), o.stderr());
        assert!(!printed.contains(&secret), "the key was printed");
    }
    // Every control node holds that same key; no other node does.
    let out = t.temp().join("out/amd64");
    for vm in ["control0", "control1", "control2", "worker0", "gateway"] {
        let ud = fs_err::read_to_string(out.join(vm).join("user-data")).unwrap();
        assert_eq!(ud.contains(&secret), vm.starts_with("control"), "{vm}");
    }
}

#[test]
fn a_guide_pki_dir_is_taken_as_is() {
    let t = Test::new();
    // The guide's genauth.sh output: the same names imagegen uses.
    let guide = t.temp().join("auth");
    t.clone().args(["pki", "--out", "made"]).run().success();
    fs_err::rename(t.temp().join("made/pki"), &guide).unwrap();
    let before = common::fs::read_tree(&guide);
    let out = t.temp().join("out");
    t.clone()
        .args([
            "build",
            "--arch",
            "arm64",
            "--payload",
            "fetch",
            "--no-iso",
            "--pki",
        ])
        .arg(&guide)
        .arg("--out")
        .arg(&out)
        .run()
        .success();
    assert!(
        common::fs::read_tree(&guide) == before,
        "--pki DIR was written"
    );
    assert!(
        !out.join("pki").exists(),
        "a managed PKI was made beside --pki"
    );
    let ud = fs_err::read_to_string(out.join("arm64/control1/user-data")).unwrap();
    let d = yaml(&ud);
    let file = |path: &str| -> String {
        d["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} not written"))["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for (path, name) in [
        ("/etc/etcd/kubernetes-key.pem", "kubernetes-key.pem"),
        (
            "/var/lib/kubernetes/service-account.pem",
            "service-account.pem",
        ),
        (
            "/var/lib/kubernetes/encryption-config.yaml",
            "encryption-config.yaml",
        ),
        (
            "/var/lib/kubernetes/kube-scheduler.kubeconfig",
            "kube-scheduler.kubeconfig",
        ),
        ("/var/lib/kubelet/control1-key.pem", "control1-key.pem"),
    ] {
        assert_eq!(
            file(path),
            fs_err::read_to_string(guide.join(name)).unwrap(),
            "{path}"
        );
    }
    // A file the plan needs and the directory lacks is named.
    fs_err::remove_file(guide.join("service-account-key.pem")).unwrap();
    let failed = t
        .clone()
        .args([
            "build",
            "--arch",
            "arm64",
            "--payload",
            "fetch",
            "--no-iso",
            "--pki",
        ])
        .arg(&guide)
        .arg("--out")
        .arg(&out)
        .run()
        .code(1);
    assert!(
        failed.stderr().contains("service-account-key.pem"),
        "{}",
        failed.stderr()
    );
}

#[test]
fn the_host_gets_the_rbac_manifest_and_an_admin_kubeconfig() {
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, DEFAULT, "arm64", &out)
        .args(["--payload", "fetch", "--no-iso"])
        .run()
        .success();
    let arch = out.join("arm64");
    let admin = arch.join("host/admin.kubeconfig");
    assert_eq!(mode(&admin), 0o600);
    let k = yaml(&fs_err::read_to_string(&admin).unwrap());
    assert_eq!(
        k["clusters"][0]["cluster"]["server"],
        "https://kubernetes:6443"
    );
    assert_eq!(
        b64(&k["users"][0]["user"]["client-certificate-data"]),
        fs_err::read_to_string(pki_fixture().join("admin.pem")).unwrap()
    );
    let rbac = fs_err::read_to_string(arch.join("cluster/kubelet-access-rbac.yaml")).unwrap();
    assert!(
        rbac.contains("name: system:kube-apiserver-to-kubelet"),
        "{rbac}"
    );
    assert!(rbac.contains("kind: User\n    name: kubernetes"), "{rbac}");
    // The first control node applies exactly this manifest; the others do not carry it.
    let ud = |vm: &str| yaml(&fs_err::read_to_string(arch.join(vm).join("user-data")).unwrap());
    let written = |vm: &str, path: &str| {
        ud(vm)["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .map(|f| f["content"].as_str().unwrap().to_string())
    };
    let manifest_path = "/etc/kubernetes/imagegen/kubelet-access-rbac.yaml";
    assert_eq!(
        written("control0", manifest_path).as_deref(),
        Some(rbac.as_str())
    );
    assert_eq!(written("control1", manifest_path), None);
    let script = written("control0", "/usr/local/sbin/imagegen-first-boot").unwrap();
    assert!(
        script.contains("systemctl restart --no-block imagegen-bootstrap-cluster"),
        "{script}"
    );
    assert!(
        script.contains("systemctl restart --no-block etcd kube-apiserver kube-controller-manager kube-scheduler"),
        "{script}"
    );
    // The control node's own admin kubeconfig talks to the API server on the node.
    let local = yaml(&written("control0", "/var/lib/kubernetes/admin.kubeconfig").unwrap());
    assert_eq!(
        local["clusters"][0]["cluster"]["server"],
        "https://127.0.0.1:6443"
    );

    let manifest: Value =
        serde_json::from_str(&fs_err::read_to_string(arch.join("manifest.json")).unwrap()).unwrap();
    let outputs: BTreeMap<&str, &str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["path"].as_str().unwrap(), o["mode"].as_str().unwrap()))
        .collect();
    assert_eq!(outputs["cluster/kubelet-access-rbac.yaml"], "0644");
    assert_eq!(outputs["host/admin.kubeconfig"], "0600");
    // Every file beside the seeds is in the manifest, and nothing else is.
    let mut beside: Vec<String> = Vec::new();
    for dir in ["cluster", "host", "launch"] {
        if arch.join(dir).is_dir() {
            for f in common::fs::files_under(&arch.join(dir)) {
                beside.push(format!("{dir}/{}", f.display()));
            }
        }
    }
    beside.sort();
    let listed: Vec<String> = outputs.keys().map(|k| k.to_string()).collect();
    assert_eq!(listed, beside);
}

#[test]
fn static_addressing_writes_the_cluster_names_into_etc_hosts() {
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, "tests/profiles/good/static.yaml", "amd64", &out)
        .args(["--payload", "fetch", "--no-iso"])
        .run()
        .success();
    for vm in ["gateway", "control2", "worker1"] {
        let d =
            yaml(&fs_err::read_to_string(out.join("amd64").join(vm).join("user-data")).unwrap());
        // cloud-init keeps lines it did not write only in `localhost` mode.
        assert_eq!(d["manage_etc_hosts"], "localhost", "{vm}");
        let script = d["write_files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == "/usr/local/sbin/imagegen-first-boot")
            .unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string();
        for line in [
            "192.168.1.21 kubernetes.kubenet kubernetes",
            "192.168.1.10 gateway.kubenet gateway",
            "192.168.1.16 worker2.kubenet worker2",
        ] {
            assert!(script.contains(line), "{vm}: no `{line}`");
        }
    }
    // With DHCP the host's dnsmasq has the names: no block.
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, DEFAULT, "amd64", &out)
        .args(["--payload", "fetch", "--no-iso"])
        .run()
        .success();
    let ud = fs_err::read_to_string(out.join("amd64/worker1/user-data")).unwrap();
    assert!(!ud.contains("imagegen:begin") && ud.contains("manage_etc_hosts: true"));
}

#[test]
fn plan_shows_the_gateway_packages_and_who_installs_them() {
    let out = Test::new()
        .args(["plan", "--arch", "amd64"])
        .run()
        .success();
    let text = out.stdout();
    assert!(
        text.contains("packages: ipvsadm, ldirectord (installed by cloud-init at first boot"),
        "{text}"
    );
    assert!(text.contains("/usr/local/bin/kube-apiserver"), "{text}");
    let out = Test::new()
        .args(["plan", "--arch", "amd64", "--json"])
        .run()
        .success();
    let v: Value = serde_json::from_str(out.stdout()).unwrap();
    let gateway = v["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "gateway")
        .unwrap();
    assert_eq!(
        gateway["packages"],
        serde_json::json!(["ipvsadm", "ldirectord"])
    );
    assert_eq!(gateway["trust_cluster_ca"], true);
    assert_eq!(v["cluster"]["api_vip"], "192.168.1.21");
    assert_eq!(v["cluster"]["api_port"], 6443);
}

/// One VM's files: path -> mode, from the manifest (seed files and payload binaries).
fn node_files(vm: &Value) -> BTreeMap<String, String> {
    vm["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The program and the `--flag=/absolute/path` values (each of a comma-separated list) of a
/// unit's `ExecStart`, its continuation lines joined.
fn exec_start_paths(unit: &str) -> Vec<(String, String)> {
    let mut cmd = String::new();
    let mut lines = unit.lines();
    while let Some(l) = lines.next() {
        if let Some(rest) = l.strip_prefix("ExecStart=") {
            let mut line = rest.to_string();
            while line.ends_with('\\') {
                line.pop();
                line.push(' ');
                line.push_str(lines.next().unwrap_or_default());
            }
            cmd = line;
        }
    }
    let mut words = cmd.split_whitespace();
    let program = words.next().unwrap_or_default().to_string();
    let mut out = vec![("ExecStart".to_string(), program)];
    for w in words {
        if let Some((flag, value)) = w.split_once('=') {
            for v in value.split(',') {
                if v.starts_with('/') {
                    out.push((flag.to_string(), v.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn every_file_a_unit_flag_names_is_on_that_node_with_the_right_mode() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    t.clone()
        .args([
            "build",
            "--arch",
            "amd64",
            "--quiet",
            "--no-iso",
            "--profile",
        ])
        .arg(&m.profile)
        .args(["--mirror", &m.file_url(), "--pki"])
        .arg(pki_fixture())
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
        .arg("--out")
        .arg(&out)
        .run()
        .success();
    let manifest: Value =
        serde_json::from_str(&fs_err::read_to_string(out.join("amd64/manifest.json")).unwrap())
            .unwrap();
    // Written by the daemon itself, not by imagegen.
    let written_by_daemon = ["/var/log/audit.log"];
    let mut checked = 0;
    let mut problems = Vec::new();
    for vm in manifest["vms"].as_array().unwrap() {
        let name = vm["name"].as_str().unwrap();
        let files = node_files(vm);
        let ud =
            yaml(&fs_err::read_to_string(out.join("amd64").join(name).join("user-data")).unwrap());
        let write_files = ud["write_files"].as_array().unwrap();
        let script = write_files
            .iter()
            .find(|f| f["path"] == "/usr/local/sbin/imagegen-first-boot")
            .unwrap()["content"]
            .as_str()
            .unwrap();
        for unit in write_files
            .iter()
            .filter(|f| f["path"].as_str().unwrap().ends_with(".service"))
        {
            let unit_path = unit["path"].as_str().unwrap();
            for (flag, path) in exec_start_paths(unit["content"].as_str().unwrap()) {
                if written_by_daemon.contains(&path.as_str()) {
                    continue;
                }
                checked += 1;
                let private = path.ends_with("-key.pem")
                    || path.ends_with(".kubeconfig")
                    || path.ends_with("/kubeconfig")
                    || path.ends_with("encryption-config.yaml");
                let want = if flag == "ExecStart" || path.starts_with("/usr/local/sbin/") {
                    "0755"
                } else if private {
                    "0600"
                } else {
                    "0644"
                };
                match files.get(&path) {
                    Some(m) if m == want => {}
                    Some(m) => problems.push(format!(
                        "{name} {unit_path} {flag}: {path} is {m}, want {want}"
                    )),
                    // A directory the first-boot script makes (etcd's data dir).
                    None if script.contains(&format!("mkdir -p {path}\nchmod 0700 {path}\n")) => {}
                    None => problems.push(format!(
                        "{name} {unit_path} {flag}: {path} is not on the node"
                    )),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 100, "only {checked} paths checked");
}
