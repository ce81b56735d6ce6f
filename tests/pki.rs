//! The PKI's lifecycle from the outside: `imagegen pki` reuses and never overwrites without
//! `--force`, re-issues what `--force NAME` names and everything with `--force-ca`, recovers
//! what older versions left half-made, writes kubeconfigs again when they no longer match;
//! `imagegen pki check` reports every file (snapshots); a build checks the PKI the same way
//! (managed: errors with the fix; `--pki DIR`: warnings, and errors for keys and issuers); no
//! key or secret ever reaches the output. openssl is the independent checker.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::fs::{list_dir, read_tree};
use common::openssl::{assert_whole_pki, cert_pubkey, key_pubkey, openssl, STEMS};
use common::{pki_fixture, root, Output, Test};

/// `imagegen pki --out out` in the test's directory, with more arguments to add.
fn pki(t: &Test) -> Test {
    t.clone().args(["pki", "--out", "out"])
}

fn pki_dir(t: &Test) -> PathBuf {
    t.temp().join("out/pki")
}

/// `imagegen build` of the (fetch-payload, ISO-less) seeds into `out`, which needs no download.
fn build(t: &Test) -> Test {
    t.clone()
        .fetch_build()
        .args(["--no-iso", "--out", "out"])
        .arg("--ssh-key")
        .arg(common::ssh_key_fixture())
}

/// The built-in profile with `edits` (from, to) applied, written into the test's directory.
fn profile(t: &Test, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = fs_err::read_to_string(root().join("profiles/kthw-1.31.yaml")).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from}");
        text = text.replacen(from, to, 1);
    }
    let path = t.temp().join(name);
    fs_err::write(&path, text).unwrap();
    path
}

/// `YYYY-MM-DD` becomes `[DATE]`: certificates made now expire on a date of their own.
fn dates(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let is_date = b.len() - i >= 10
            && b[i..i + 10].iter().enumerate().all(|(k, c)| match k {
                4 | 7 => *c == b'-',
                _ => c.is_ascii_digit(),
            });
        if is_date {
            out.push_str("[DATE]");
            i += 10;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// What a run printed, stdout then stderr.
fn printed(o: &Output) -> String {
    format!("{}{}", o.stdout(), o.stderr())
}

/// A change done to a PKI directory.
type Damage = fn(&Path);

fn mode(p: &Path) -> u32 {
    fs_err::metadata(p).unwrap().permissions().mode() & 0o777
}

fn copy(from: &Path, to: &Path) {
    fs_err::copy(from, to).unwrap();
}

#[test]
fn check_reports_every_file_of_a_provided_pki() {
    // The fixture's API server certificate names the built-in profile's VIP (.21), not this
    // profile's (.100), and its node certificates predate the `<node>.kubenet` names.
    let out = Test::new()
        .args(["pki", "check", "--pki"])
        .arg(pki_fixture())
        .arg("--profile")
        .arg(root().join("tests/profiles/good/twelve-workers.yaml"))
        .run()
        .success();
    insta::assert_snapshot!("check-provided-twelve-workers", out.snapshot());
}

#[test]
fn check_finds_what_no_longer_fits_and_a_build_says_the_same() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    // Another CA's admin certificate and key (they belong together, but ca.pem did not sign
    // them), and another kube-proxy kubeconfig.
    t.clone().args(["pki", "--out", "other"]).run().success();
    let other = t.temp().join("other/pki");
    for f in ["admin.pem", "admin-key.pem", "kube-proxy.kubeconfig"] {
        copy(&other.join(f), &dir.join(f));
    }
    // worker0's key is worker1's.
    copy(&dir.join("worker1-key.pem"), &dir.join("worker0-key.pem"));
    fs_err::remove_file(dir.join("encryption-config.yaml")).unwrap();
    // worker2's certificate, issued by openssl with the right names, ends in ten days.
    let csr = t.temp().join("w2.csr");
    let ext = t.temp().join("w2.ext");
    fs_err::write(
        &ext,
        "subjectAltName=DNS:worker2,DNS:worker2.kubenet,IP:192.168.1.16\n",
    )
    .unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-key",
            "worker2-key.pem",
            "-subj",
            "/CN=system:node:worker2/O=system:nodes",
            "-out",
            csr.to_str().unwrap(),
        ],
        &dir,
    );
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            "4242",
            "-days",
            "10",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            "worker2.pem",
        ],
        &dir,
    );
    // The profile moved on: a fourth control node, worker1 on another address, the API on
    // another port.
    let changed = profile(
        &t,
        "changed.yaml",
        &[
            ("https://kubernetes:6443", "https://kubernetes:7443"),
            ("address: 192.168.1.15 }", "address: 192.168.1.19 }"),
            (
                "  - { name: worker0,",
                "  - { name: control3, id: 7, role: control, mac: \"52:52:52:00:00:07\", address: 192.168.1.17 }\n  - { name: worker0,",
            ),
        ],
    );
    let before = read_tree(&dir);
    let check = t
        .clone()
        .args(["pki", "check", "--out", "out", "--profile"])
        .arg(&changed)
        .run()
        .code(1);
    insta::assert_snapshot!("check-managed-changed", dates(&check.snapshot()));
    assert!(read_tree(&dir) == before, "the check wrote");

    // A build with that profile stops at the same errors, with the same words and fixes.
    let failed = build(&t).arg("--profile").arg(&changed).run().code(1);
    let stderr = failed.normalize(failed.stderr());
    let lines = check.normalize(check.stdout());
    for file in [
        "kubernetes.pem",
        "worker1.pem",
        "worker0-key.pem",
        "admin.pem",
    ] {
        let reported = lines
            .lines()
            .find(|l| l.contains(&format!(" {file}:")) && l.trim_start().starts_with("error"))
            .unwrap_or_else(|| panic!("no error for {file}:\n{lines}"));
        let text = reported.split_once(": ").unwrap().1.trim_start();
        assert!(
            stderr.contains(&format!("out/pki/{file}: {text}")),
            "{file}: `{text}` not in\n{stderr}"
        );
    }
    assert!(
        stderr.contains("--force kubernetes` issues a new certificate"),
        "{stderr}"
    );
    assert!(read_tree(&dir) == before, "the failed build wrote");
    assert!(!t.temp().join("out/amd64").exists());
}

#[test]
fn force_issues_again_what_it_names_and_force_ca_everything() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    let before = read_tree(&dir);
    let out = pki(&t)
        .args(["--force", "kubernetes", "worker0"])
        .run()
        .success();
    insta::assert_snapshot!("force-kubernetes-worker0", out.snapshot());
    let after = read_tree(&dir);
    let changed: Vec<String> = before
        .keys()
        .filter(|f| before[*f] != after[*f])
        .map(|f| f.display().to_string())
        .collect();
    assert_eq!(
        changed,
        [
            "kubernetes-key.pem",
            "kubernetes.pem",
            "worker0-key.pem",
            "worker0.kubeconfig",
            "worker0.pem"
        ]
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert_whole_pki(&dir);
    assert_eq!(mode(&dir), 0o700);
    for (f, m) in [
        ("worker0-key.pem", 0o600),
        ("worker0.kubeconfig", 0o600),
        ("worker0.pem", 0o644),
    ] {
        assert_eq!(mode(&dir.join(f)), m, "{f}");
    }
    assert_eq!(list_dir(&t.temp().join("out")), [".lock", "pki"]);

    let unknown = pki(&t).args(["--force", "worker9"]).run().code(1);
    insta::assert_snapshot!("force-unknown", unknown.snapshot());

    // --force-ca: a new CA and everything issued again; the encryption key stays.
    let old_kubernetes = t.temp().join("old-kubernetes.pem");
    copy(&dir.join("kubernetes.pem"), &old_kubernetes);
    let out = pki(&t).arg("--force-ca").run().success();
    insta::assert_snapshot!("force-ca", out.snapshot());
    let now = read_tree(&dir);
    for (f, data) in &after {
        let same = now[f] == *data;
        assert_eq!(
            same,
            f.to_str() == Some("encryption-config.yaml"),
            "{}",
            f.display()
        );
    }
    assert_whole_pki(&dir);
    let (ok, text) = common::openssl::try_openssl(
        &[
            "verify",
            "-CAfile",
            "ca.pem",
            old_kubernetes.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(
        !ok,
        "the old certificate verifies against the new CA: {text}"
    );
}

#[test]
fn what_older_versions_left_half_made_is_completed() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    let whole = read_tree(&dir);

    // ca-key.pem without ca.pem: ca.pem again, from the same key and with the same subject,
    // and the certificates issued before still verify.
    fs_err::remove_file(dir.join("ca.pem")).unwrap();
    let out = pki(&t).run().success();
    insta::assert_snapshot!("remade-ca", out.snapshot());
    assert_eq!(cert_pubkey(&dir, "ca.pem"), key_pubkey(&dir, "ca-key.pem"));
    assert_eq!(
        openssl(&["x509", "-noout", "-subject", "-in", "ca.pem"], &dir).trim(),
        "subject=CN = Kubernetes, O = Kubernetes"
    );
    let certs: Vec<String> = STEMS.iter().map(|s| format!("{s}.pem")).collect();
    let verify = openssl(
        &[
            &["verify", "-CAfile", "ca.pem"],
            &certs.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
        &dir,
    );
    assert_eq!(verify.matches(": OK").count(), STEMS.len(), "{verify}");
    let now = read_tree(&dir);
    for (f, data) in &whole {
        let name = f.to_str().unwrap();
        if name.ends_with(".pem") && name != "ca.pem" {
            assert_eq!(now[f], *data, "{name} was written");
        }
    }
    assert_whole_pki(&dir);

    // A key without its certificate: the certificate is issued for that key.
    let key = fs_err::read(dir.join("worker1-key.pem")).unwrap();
    fs_err::remove_file(dir.join("worker1.pem")).unwrap();
    let out = pki(&t).run().success();
    assert!(
        out.stdout()
            .contains("issued worker1.pem for the existing worker1-key.pem"),
        "{}",
        out.stdout()
    );
    assert_eq!(fs_err::read(dir.join("worker1-key.pem")).unwrap(), key);
    assert_whole_pki(&dir);

    // Only a CA key (a run killed right after it): all the rest is made.
    let lone = Test::new();
    let lone_dir = pki_dir(&lone);
    fs_err::create_dir_all(&lone_dir).unwrap();
    copy(&dir.join("ca-key.pem"), &lone_dir.join("ca-key.pem"));
    pki(&lone).run().success();
    assert_whole_pki(&lone_dir);
    assert_eq!(
        fs_err::read(lone_dir.join("ca-key.pem")).unwrap(),
        fs_err::read(dir.join("ca-key.pem")).unwrap()
    );
}

#[test]
fn what_cannot_be_completed_is_an_error_naming_both_files_and_the_fix() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    let whole = read_tree(&dir);
    let mut report = String::new();
    let cases: [(&str, Damage); 4] = [
        ("a certificate without its key", |d| {
            fs_err::remove_file(d.join("worker2-key.pem")).unwrap()
        }),
        ("ca.pem without its key", |d| {
            fs_err::remove_file(d.join("ca-key.pem")).unwrap()
        }),
        ("a CA key that is not ca.pem's", |d| {
            fs_err::copy(d.join("admin-key.pem"), d.join("ca-key.pem")).unwrap();
        }),
        ("certificates without any CA", |d| {
            fs_err::remove_file(d.join("ca-key.pem")).unwrap();
            fs_err::remove_file(d.join("ca.pem")).unwrap();
        }),
    ];
    for (what, damage) in cases {
        damage(&dir);
        let damaged = read_tree(&dir);
        let out = pki(&t).run().code(1);
        assert!(read_tree(&dir) == damaged, "{what}: written");
        report.push_str(&format!("## {what}\n{}\n", out.snapshot()));
        // Put it back.
        fs_err::remove_dir_all(&dir).unwrap();
        fs_err::create_dir_all(&dir).unwrap();
        for (f, data) in &whole {
            fs_err::write(dir.join(f), data).unwrap();
        }
    }
    insta::assert_snapshot!("cannot-complete", report);
}

#[test]
fn kubeconfigs_that_no_longer_match_are_written_again() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    let before = read_tree(&dir);
    let moved = profile(
        &t,
        "port.yaml",
        &[("https://kubernetes:6443", "https://kubernetes:7443")],
    );
    let out = pki(&t).arg("--profile").arg(&moved).run().success();
    insta::assert_snapshot!("kubeconfigs-written-again", out.snapshot());
    let after = read_tree(&dir);
    for (f, data) in &before {
        let name = f.to_str().unwrap();
        assert_eq!(after[f] == *data, !name.ends_with(".kubeconfig"), "{name}");
    }
    let admin = fs_err::read_to_string(dir.join("admin.kubeconfig")).unwrap();
    assert!(admin.contains("server: https://kubernetes:7443"), "{admin}");
    // A kubeconfig that is not one any more is written again too; one that is right is not.
    fs_err::write(dir.join("worker0.kubeconfig"), "garbage: [").unwrap();
    let out = pki(&t).arg("--profile").arg(&moved).run().success();
    assert_eq!(
        out.stdout(),
        "out/pki: nothing created\nwrote worker0.kubeconfig again from the PKI's files (is not a kubeconfig with a cluster, a user and their embedded credentials)\n"
    );
    assert_whole_pki_for(&dir, &moved, &t);
}

/// `imagegen pki check` of `dir` with `profile` finds nothing.
fn assert_whole_pki_for(dir: &Path, profile: &Path, t: &Test) {
    let out = t
        .clone()
        .args(["pki", "check", "--out"])
        .arg(dir.parent().unwrap())
        .arg("--profile")
        .arg(profile)
        .run()
        .success();
    assert!(
        out.stdout().ends_with("0 errors, 0 warnings\n"),
        "{}",
        out.stdout()
    );
}

#[test]
fn a_provided_pki_is_used_as_given_with_warnings_unless_it_cannot_work() {
    // Stale names: warnings, and the build goes on.
    let t = Test::new();
    let out = common::build_fixed(
        &t,
        "tests/profiles/good/twelve-workers.yaml",
        "amd64",
        &t.temp().join("out"),
    )
    .args(["--payload", "fetch", "--no-iso"])
    .run()
    .success();
    let warnings: String = out
        .normalize(out.stderr())
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("provided-stale-warnings", warnings);

    // What cannot work: a key that is not its certificate's, a certificate of another CA, a
    // CA key that is not ca.pem's, a kubeconfig that embeds another CA.
    let other = Test::new();
    pki(&other).run().success();
    let other = pki_dir(&other);
    let guide = t.temp().join("guide");
    let mut report = String::new();
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("worker0-key.pem", &[("worker1-key.pem", "worker0-key.pem")]),
        (
            "kubernetes.pem",
            &[
                ("OTHER/kubernetes.pem", "kubernetes.pem"),
                ("OTHER/kubernetes-key.pem", "kubernetes-key.pem"),
            ],
        ),
        ("ca-key.pem", &[("OTHER/ca-key.pem", "ca-key.pem")]),
        (
            "worker1.kubeconfig",
            &[("OTHER/worker1.kubeconfig", "worker1.kubeconfig")],
        ),
    ];
    for (file, copies) in cases {
        let _ = fs_err::remove_dir_all(&guide);
        fs_err::create_dir_all(&guide).unwrap();
        for f in list_dir(&pki_fixture()) {
            copy(&pki_fixture().join(&f), &guide.join(&f));
        }
        for (from, to) in copies {
            let from = match from.strip_prefix("OTHER/") {
                Some(f) => other.join(f),
                None => guide.join(from),
            };
            copy(&from, &guide.join(to));
        }
        let out = t
            .clone()
            .fetch_build()
            .args(["--no-iso", "--out", "o"])
            .arg("--ssh-key")
            .arg(common::ssh_key_fixture())
            .arg("--pki")
            .arg(&guide)
            .run()
            .code(1);
        let err = out.normalize(out.stderr());
        assert!(
            err.contains(&format!("[TEMP]/guide/{file}: ")),
            "{file}: {err}"
        );
        report.push_str(&format!("## {file}\n{}\n", err.trim_end()));
    }
    insta::assert_snapshot!("provided-cannot-work", report);
}

/// Every key and secret of a PKI directory: the base64 lines of each PEM key, the
/// encryption secret.
fn secrets(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for f in list_dir(dir) {
        let text = fs_err::read_to_string(dir.join(&f)).unwrap_or_default();
        if f.ends_with("-key.pem") {
            out.extend(
                text.lines()
                    .filter(|l| !l.starts_with("-----") && l.len() > 16)
                    .map(str::to_string),
            );
        }
        if let Some(s) = text.lines().find_map(|l| l.trim().strip_prefix("secret: ")) {
            out.push(s.to_string());
        }
    }
    out
}

#[test]
fn no_key_or_secret_reaches_the_output_on_any_path() {
    let t = Test::new();
    pki(&t).run().success();
    let dir = pki_dir(&t);
    let whole = read_tree(&dir);
    let all_secrets = secrets(&dir);
    assert!(all_secrets.len() > 12);
    let mut runs: Vec<Output> = Vec::new();
    let damages: [(&str, Damage); 6] = [
        ("a truncated key", |d| {
            let k = fs_err::read_to_string(d.join("worker0-key.pem")).unwrap();
            fs_err::write(d.join("worker0-key.pem"), &k[..k.len() / 2]).unwrap();
        }),
        ("a key in place of a certificate", |d| {
            fs_err::copy(d.join("worker0-key.pem"), d.join("worker0.pem")).unwrap();
        }),
        ("another key", |d| {
            fs_err::copy(d.join("worker1-key.pem"), d.join("worker0-key.pem")).unwrap();
        }),
        ("a broken kubeconfig", |d| {
            let k = fs_err::read_to_string(d.join("admin.kubeconfig")).unwrap();
            fs_err::write(d.join("admin.kubeconfig"), format!("{k}\n: : [\n")).unwrap();
        }),
        ("a broken encryption config", |d| {
            let k = fs_err::read_to_string(d.join("encryption-config.yaml")).unwrap();
            fs_err::write(
                d.join("encryption-config.yaml"),
                k.replace("secret: ", "secret: ["),
            )
            .unwrap();
        }),
        ("a CA key in place of ca.pem", |d| {
            fs_err::copy(d.join("ca-key.pem"), d.join("ca.pem")).unwrap();
        }),
    ];
    for (_, damage) in damages {
        damage(&dir);
        runs.push(pki(&t).run());
        runs.push(t.clone().args(["pki", "check", "--out", "out"]).run());
        runs.push(build(&t).run());
        runs.push(build(&t).arg("--pki").arg(&dir).run());
        runs.push(t.clone().args(["pki", "check", "--pki"]).arg(&dir).run());
        fs_err::remove_dir_all(&dir).unwrap();
        fs_err::create_dir_all(&dir).unwrap();
        for (f, data) in &whole {
            fs_err::write(dir.join(f), data).unwrap();
        }
    }
    let failures = runs.iter().filter(|r| !r.status().success()).count();
    assert!(failures >= 20, "only {failures} runs failed");
    for r in &runs {
        let text = printed(r);
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for s in &all_secrets {
            assert!(!text.contains(s.as_str()), "a secret in:\n{text}");
        }
    }
}

#[test]
fn a_lost_ca_pem_is_made_again_with_the_name_and_key_id_its_certificates_name() {
    // A CA as cfssl names it (the guide's ca-csr.json), made by openssl, that signed worker0;
    // then ca.pem is lost.
    let t = Test::new();
    let dir = pki_dir(&t);
    fs_err::create_dir_all(&dir).unwrap();
    let work = t.temp().join("work");
    fs_err::create_dir_all(&work).unwrap();
    let subject = "/C=PL/ST=Lesser Poland/L=Krakow/O=Kubernetes/OU=CA/CN=Kubernetes";
    for args in [
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ca-key.pem",
        ][..],
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            "ca-key.pem",
            "-subj",
            subject,
            "-days",
            "3650",
            "-out",
            "ca.pem",
        ],
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "worker0-key.pem",
        ],
        &[
            "req",
            "-new",
            "-key",
            "worker0-key.pem",
            "-subj",
            "/CN=system:node:worker0/O=system:nodes",
            "-out",
            "w.csr",
        ],
    ] {
        openssl(args, &work);
    }
    fs_err::write(
        work.join("ext"),
        "subjectAltName=DNS:worker0,DNS:worker0.kubenet,IP:192.168.1.14\nauthorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "w.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-set_serial",
            "7",
            "-days",
            "365",
            "-extfile",
            "ext",
            "-out",
            "worker0.pem",
        ],
        &work,
    );
    for f in ["ca-key.pem", "worker0.pem", "worker0-key.pem"] {
        copy(&work.join(f), &dir.join(f));
    }
    let out = pki(&t).run().success();
    assert!(
        out.stdout().contains("made ca.pem again from ca-key.pem"),
        "{}",
        out.stdout()
    );
    let subject_of = |d: &Path| openssl(&["x509", "-noout", "-subject", "-in", "ca.pem"], d);
    assert_eq!(subject_of(&dir), subject_of(&work));
    let ski = |d: &Path| {
        openssl(
            &[
                "x509",
                "-noout",
                "-ext",
                "subjectKeyIdentifier",
                "-in",
                "ca.pem",
            ],
            d,
        )
    };
    assert_eq!(ski(&dir), ski(&work));
    let verify = openssl(&["verify", "-CAfile", "ca.pem", "worker0.pem"], &dir);
    assert!(verify.contains("worker0.pem: OK"), "{verify}");
    assert_eq!(
        fs_err::read(dir.join("worker0.pem")).unwrap(),
        fs_err::read(work.join("worker0.pem")).unwrap()
    );
}
