//! Certificates, keys, kubeconfigs and the encryption config of the cluster.
//!
//! Two modes. `Provided`: a directory with the guide's file names (`ca.pem`, `ca-key.pem`,
//! `kubernetes.pem`, `service-account.pem`, `admin.pem`, `{node}.pem`, each with its
//! `-key.pem`, `{node}.kubeconfig`, `kube-*.kubeconfig`, `encryption-config.yaml`), used as is.
//! `Managed`: imagegen keeps that same set in a directory of its own, makes what `genauth.sh` and
//! `genenckey.sh` make when it is missing (`managed`), and reuses what exists, because a new CA
//! would cut off every node already running and a new encryption key every stored Secret.
//! Either way the files the plan needs are then read by name (`provided`).
//!
//! One concern per file: `identities` (who gets which certificate, as data), `ca`, `issue` (the
//! one way a certificate is made), `kubeconfig`, `encryption`, `managed`, `provided`.
//! Keys and kubeconfigs are written 0600 and never printed or logged.

mod ca;
mod encryption;
mod identities;
mod issue;
mod kubeconfig;
mod managed;
mod provided;

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};

use crate::plan::Plan;

pub use kubeconfig::CLUSTER_NAME;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkiMode {
    /// `--pki DIR`: the user's files, never written.
    Provided,
    /// imagegen's own directory: generate what is missing, reuse the rest.
    Managed,
}

/// The PKI files a build hands out, by the guide's file name. `Debug` shows names only, so no
/// key can end up in a log line.
#[derive(Clone)]
pub struct Pki {
    pub dir: Utf8PathBuf,
    /// Files this run created (for the summary; names only).
    pub created: Vec<String>,
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("created", &self.created)
            .finish()
    }
}

impl Pki {
    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        self.files.get("ca.pem").map_or("", String::as_str)
    }

    /// A file of the PKI by the guide's name (`kubernetes-key.pem`, `worker0.kubeconfig`); only
    /// the files the plan needs were read.
    pub fn file(&self, name: &str) -> anyhow::Result<&str> {
        self.files
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("no {name} in the PKI {}", self.dir))
    }

    /// A kubeconfig for `server` with `identity`'s certificate and key (`<identity>.pem`,
    /// `<identity>-key.pem`), the user named after the identity.
    pub fn kubeconfig(&self, identity: &str, server: &str) -> anyhow::Result<String> {
        kubeconfig::render(
            self.ca_pem(),
            server,
            identity,
            self.file(&format!("{identity}.pem"))?,
            self.file(&format!("{identity}-key.pem"))?,
        )
    }
}

/// Loads (and in managed mode first completes) the PKI of the plan: every file its VMs are
/// given, and the admin certificate and key for the host's kubeconfig.
pub fn prepare(dir: &Utf8Path, mode: PkiMode, plan: &Plan) -> anyhow::Result<Pki> {
    let created = match mode {
        PkiMode::Provided => Vec::new(),
        PkiMode::Managed => managed::complete(dir, plan)?,
    };
    let files = provided::load(dir, &identities::files_needed(plan))?;
    Ok(Pki {
        dir: dir.to_owned(),
        created,
        files,
    })
}

/// The identity whose credentials the host's `admin.kubeconfig` holds.
pub const ADMIN: &str = identities::ADMIN;

/// A PEM file's content is what its name says: a private key for `*-key.pem`, else a certificate.
fn check_pem(text: &str, path: &Utf8Path) -> anyhow::Result<()> {
    // "PRIVATE KEY" also matches "EC PRIVATE KEY" and "RSA PRIVATE KEY".
    let kind = if path.as_str().ends_with("-key.pem") {
        "PRIVATE KEY"
    } else {
        "CERTIFICATE"
    };
    if !text.contains("-----BEGIN ") || !text.lines().any(|l| l.contains(kind)) {
        bail!("{path}: expected a PEM {kind}");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
