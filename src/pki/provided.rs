//! Reading a PKI directory with the guide's file names (`ca.pem`, `kubernetes.pem`,
//! `{node}-key.pem`, `*.kubeconfig`, `encryption-config.yaml`, ...): `--pki DIR` as given, and
//! imagegen's own directory once it is complete. Only the files the plan needs are read; each
//! missing or malformed one is named.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context as _};
use camino::Utf8Path;

use super::check_pem;

/// What a file of the guide's PKI holds, for error messages.
fn what(name: &str) -> &'static str {
    if name.ends_with("-key.pem") {
        "a private key"
    } else if name.ends_with(".pem") {
        "a certificate"
    } else if name.ends_with(".kubeconfig") {
        "a kubeconfig"
    } else {
        "the API servers' encryption config"
    }
}

/// Reads `names` from `dir`: file name -> content.
pub(crate) fn load(
    dir: &Utf8Path,
    names: &BTreeSet<String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for name in names {
        let path = dir.join(name);
        let text = crate::fsutil::read_to_string(path.as_std_path()).with_context(|| {
            format!(
                "--pki {dir}: expected {} in {path} (the guide's file names: ca.pem, ca-key.pem, kubernetes.pem, service-account.pem, admin.pem, {{node}}.pem, their -key.pem, {{node}}.kubeconfig, kube-*.kubeconfig, encryption-config.yaml)",
                what(name)
            )
        })?;
        if name.ends_with(".pem") {
            check_pem(&text, &path)?;
        } else if text.trim().is_empty() {
            bail!("{path}: expected {}, found an empty file", what(name));
        }
        files.insert(name.clone(), text);
    }
    Ok(files)
}
