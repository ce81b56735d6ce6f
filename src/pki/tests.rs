//! The PKI through its public API: made once, reused, readable as a `--pki` directory.

use std::os::unix::fs::PermissionsExt;

use camino::Utf8Path;

use super::*;
use crate::profile::{self, Arch};

const CMD: &str = "";

fn plan() -> Plan {
    let p = profile::parse(profile::BUILTIN_YAML, "builtin").unwrap();
    crate::plan::plan(&p, Arch::Amd64).unwrap()
}

#[test]
fn generates_once_then_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().join("pki");
    let first = prepare(&dir, PkiMode::Managed, &plan(), CMD).unwrap();
    for f in [
        "ca.pem",
        "kubernetes-key.pem",
        "service-account.pem",
        "admin.kubeconfig",
        "kube-scheduler.kubeconfig",
        "kube-controller-manager.kubeconfig",
        "worker0.kubeconfig",
        "encryption-config.yaml",
    ] {
        assert!(first.created.contains(&f.to_string()), "{f} not created");
    }
    let mode = |f: &str| fs_err::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    for f in [
        "ca-key.pem",
        "worker0-key.pem",
        "worker0.kubeconfig",
        "admin.kubeconfig",
        "encryption-config.yaml",
    ] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
    assert_eq!(mode("ca.pem"), 0o644);
    let second = prepare(&dir, PkiMode::Managed, &plan(), CMD).unwrap();
    assert!(second.created.is_empty(), "{:?}", second.created);
    assert_eq!(first.ca_pem(), second.ca_pem());
    assert_eq!(
        first.file("worker0.kubeconfig").unwrap(),
        second.file("worker0.kubeconfig").unwrap()
    );
    assert_eq!(
        first.file("encryption-config.yaml").unwrap(),
        second.file("encryption-config.yaml").unwrap()
    );
    // The managed directory is a valid --pki directory.
    let provided = prepare(&dir, PkiMode::Provided, &plan(), CMD).unwrap();
    assert_eq!(provided.ca_pem(), first.ca_pem());
    // Names only in Debug.
    let debug = format!("{first:?}");
    assert!(
        !debug.contains("PRIVATE KEY") && debug.contains("ca-key.pem"),
        "{debug}"
    );
}

#[test]
fn a_local_kubeconfig_points_at_the_given_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    let pki = prepare(&dir, PkiMode::Managed, &plan(), CMD).unwrap();
    let local = pki.kubeconfig(ADMIN, "https://127.0.0.1:6443").unwrap();
    assert!(local.contains("server: https://127.0.0.1:6443"), "{local}");
    assert!(pki
        .file("worker1.kubeconfig")
        .unwrap()
        .contains("server: https://kubernetes:6443"));
}

#[test]
fn half_a_pair_is_an_error_not_a_new_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    prepare(&dir, PkiMode::Managed, &plan(), CMD).unwrap();
    let cert = fs_err::read(dir.join("worker0.pem")).unwrap();
    fs_err::remove_file(dir.join("worker0-key.pem")).unwrap();
    let err = format!(
        "{:#}",
        prepare(&dir, PkiMode::Managed, &plan(), CMD).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "{dir}/worker0-key.pem: missing, and {dir}/worker0.pem is there"
        )) && err.contains("`imagegen pki --force worker0`"),
        "{err}"
    );
    assert_eq!(
        fs_err::read(dir.join("worker0.pem")).unwrap(),
        cert,
        "not overwritten"
    );
}

#[test]
fn provided_dir_missing_file_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    let err = prepare(&dir, PkiMode::Provided, &plan(), CMD).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("admin-key.pem"), "{msg}");
    assert!(!dir.join("ca.pem").exists(), "--pki is never written");
}
