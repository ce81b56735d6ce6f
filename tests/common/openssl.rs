//! openssl as the independent checker of the PKIs imagegen writes: a CA key that is `ca.pem`'s,
//! certificates that verify against `ca.pem`, keys that are their certificates', kubeconfigs
//! that embed the CA and their identity's own files.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use base64::Engine as _;

/// Runs `openssl args` in `dir`: whether it succeeded, and its stdout and stderr.
pub fn try_openssl(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed: apt-get install openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `openssl args` in `dir` and returns its stdout; fails the test when openssl fails.
#[track_caller]
pub fn openssl(args: &[&str], dir: &Path) -> String {
    let (ok, text) = try_openssl(args, dir);
    assert!(ok, "openssl {args:?} in {}: {text}", dir.display());
    text
}

/// The public key (PEM) of the certificate `cert` in `dir`.
pub fn cert_pubkey(dir: &Path, cert: &str) -> String {
    openssl(&["x509", "-noout", "-pubkey", "-in", cert], dir)
}

/// The public key (PEM) of the private key `key` in `dir`.
pub fn key_pubkey(dir: &Path, key: &str) -> String {
    openssl(&["pkey", "-pubout", "-in", key], dir)
}

/// Whether each of `certs` (in `dir`) verifies against `dir/ca.pem`.
pub fn verifies(dir: &Path, certs: &[String]) -> bool {
    let mut args = vec!["verify", "-CAfile", "ca.pem"];
    args.extend(certs.iter().map(String::as_str));
    try_openssl(&args, dir).0
}

/// The identities of the built-in profile (`<stem>.pem`, `-key.pem`), and those with a
/// kubeconfig.
pub const STEMS: &[&str] = &[
    "kubernetes",
    "admin",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-proxy",
    "service-account",
    "control0",
    "control1",
    "control2",
    "worker0",
    "worker1",
    "worker2",
];

pub fn has_kubeconfig(stem: &str) -> bool {
    !["kubernetes", "service-account"].contains(&stem)
}

/// Every file name of a whole PKI of the built-in profile, sorted.
pub fn whole_pki_names() -> Vec<String> {
    let mut names = vec![
        "ca.pem".to_string(),
        "ca-key.pem".to_string(),
        "encryption-config.yaml".to_string(),
    ];
    for s in STEMS {
        names.push(format!("{s}.pem"));
        names.push(format!("{s}-key.pem"));
        if has_kubeconfig(s) {
            names.push(format!("{s}.kubeconfig"));
        }
    }
    names.sort();
    names
}

fn b64(v: &serde_json::Value) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

/// The EC public points (`pub:` blocks) of every certificate or key in the PEM `files` of
/// `dir`, in order, read by one `openssl storeutl` (one process for all: the crash tests check
/// whole PKIs many times).
fn ec_public_points(dir: &Path, files: &[String]) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.pem");
    let mut text = String::new();
    for f in files {
        text.push_str(&fs_err::read_to_string(dir.join(f)).unwrap());
    }
    fs_err::write(&all, text).unwrap();
    let dump = openssl(&["storeutl", "-noout", "-text", all.to_str().unwrap()], dir);
    let mut points = Vec::new();
    let mut lines = dump.lines().peekable();
    while let Some(l) = lines.next() {
        if l.trim() != "pub:" {
            continue;
        }
        let mut hex = String::new();
        while let Some(h) = lines.peek() {
            let h = h.trim();
            if h.is_empty() || !h.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                break;
            }
            hex.push_str(h);
            lines.next();
        }
        points.push(hex);
    }
    points
}

/// Whether `dir` holds a whole PKI of the built-in profile (ECDSA keys, as imagegen makes
/// them) that hangs together; `Err` says what does not.
pub fn check_whole_pki(dir: &Path) -> Result<(), String> {
    let mut names: Vec<String> = super::fs::list_dir(dir);
    names.sort();
    if names != whole_pki_names() {
        return Err(format!("files: {names:?}"));
    }
    let certs: Vec<String> = STEMS.iter().map(|s| format!("{s}.pem")).collect();
    if !verifies(dir, &certs) {
        return Err("a certificate does not verify against ca.pem".into());
    }
    let mut stems = vec!["ca"];
    stems.extend(STEMS);
    let cert_files: Vec<String> = stems.iter().map(|s| format!("{s}.pem")).collect();
    let key_files: Vec<String> = stems.iter().map(|s| format!("{s}-key.pem")).collect();
    let (of_certs, of_keys) = (
        ec_public_points(dir, &cert_files),
        ec_public_points(dir, &key_files),
    );
    if of_certs.len() != stems.len() || of_keys.len() != stems.len() {
        return Err(format!(
            "{} certificates and {} keys read",
            of_certs.len(),
            of_keys.len()
        ));
    }
    for (i, s) in stems.iter().enumerate() {
        if of_certs[i] != of_keys[i] {
            return Err(format!("{s}-key.pem is not {s}.pem's"));
        }
    }
    let ca = fs_err::read_to_string(dir.join("ca.pem")).unwrap();
    for s in STEMS {
        if !has_kubeconfig(s) {
            continue;
        }
        let text = fs_err::read_to_string(dir.join(format!("{s}.kubeconfig"))).unwrap();
        let k: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let cert = fs_err::read_to_string(dir.join(format!("{s}.pem"))).unwrap();
        let key = fs_err::read_to_string(dir.join(format!("{s}-key.pem"))).unwrap();
        let user = &k["users"][0]["user"];
        if b64(&k["clusters"][0]["cluster"]["certificate-authority-data"]) != ca
            || b64(&user["client-certificate-data"]) != cert
            || b64(&user["client-key-data"]) != key
        {
            return Err(format!(
                "{s}.kubeconfig does not embed ca.pem, {s}.pem and its key"
            ));
        }
    }
    Ok(())
}

/// Asserts [`check_whole_pki`].
#[track_caller]
pub fn assert_whole_pki(dir: &Path) {
    if let Err(e) = check_whole_pki(dir) {
        panic!("{}: {e}", dir.display());
    }
}
