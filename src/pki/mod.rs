//! Certificates, keys, kubeconfigs and the encryption config of the cluster.
//!
//! Two modes. `Provided`: a directory with the guide's file names (`ca.pem`, `ca-key.pem`,
//! `kubernetes.pem`, `service-account.pem`, `admin.pem`, `{node}.pem`, each with its
//! `-key.pem`, `{node}.kubeconfig`, `kube-*.kubeconfig`, `encryption-config.yaml`), used as is.
//! `Managed`: imagegen keeps that same set in a directory of its own, makes what `genauth.sh` and
//! `genenckey.sh` make when it is missing (`managed`), and reuses what exists, because a new CA
//! would cut off every node already running and a new encryption key every stored Secret.
//! Either way the files the plan needs are then read by name (`provided`), and every run
//! checks them (`check`): the CA key is `ca.pem`'s, each key its certificate's, each
//! certificate the CA's, and valid, with the subject and names the profile gives it. The same
//! checks are `imagegen pki check`.
//!
//! One concern per file: `identities` (who gets which certificate, as data), `ca`, `issue` (the
//! one way a certificate is made), `kubeconfig`, `encryption`, `x509` (reading certificates
//! and keys back), `check`, `managed` (written as a set; `--force`), `provided`.
//! Keys and kubeconfigs are written 0600 and never printed or logged.

mod ca;
mod check;
mod encryption;
mod identities;
mod issue;
mod kubeconfig;
mod managed;
mod provided;
mod x509;

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

/// What `imagegen pki` may replace besides what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Force {
    Nothing,
    /// These identities (file stems: `kubernetes`, `worker0`): a new key, certificate and
    /// kubeconfig each, signed by the same CA.
    Identities(Vec<String>),
    /// A new CA and every identity issued again (the encryption config is kept).
    Ca,
}

/// The PKI files a build hands out, by the guide's file name. `Debug` shows names only, so no
/// key can end up in a log line.
#[derive(Clone)]
pub struct Pki {
    pub dir: Utf8PathBuf,
    /// Files this run created (for the summary; names only).
    pub created: Vec<String>,
    /// What else this run changed and why (a kubeconfig written again, `ca.pem` made again
    /// from its key, `--force`); names and reasons only.
    pub notes: Vec<String>,
    /// What the checks found that does not stop a build (`<dir>/<file>: ...; fix: ...`).
    pub warnings: Vec<String>,
    files: BTreeMap<String, String>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("created", &self.created)
            .field("notes", &self.notes)
            .field("warnings", &self.warnings)
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

/// Loads (and in managed mode first checks and completes) the PKI of the plan: every file its
/// VMs are given, and the admin certificate and key for the host's kubeconfig. A problem the
/// checks call an error fails it, naming the file and the fix; `args` are the arguments of
/// `imagegen pki` for this directory and profile (see [`args_hint`]), for those fixes.
pub fn prepare(dir: &Utf8Path, mode: PkiMode, plan: &Plan, args: &str) -> anyhow::Result<Pki> {
    match mode {
        PkiMode::Managed => manage(dir, plan, &Force::Nothing, args),
        PkiMode::Provided => {
            let files = provided::load(dir, &identities::files_needed(plan))?;
            let found = check_dir(dir, mode, plan, args);
            if found.count(check::Severity::Error) > 0 {
                bail!(
                    "--pki {dir} cannot be used as it is (`imagegen pki check{args} --pki {dir}` shows every file):\n  {}",
                    found.lines(dir, check::Severity::Error).join("\n  ")
                );
            }
            Ok(Pki {
                dir: dir.to_owned(),
                created: Vec::new(),
                notes: Vec::new(),
                warnings: found.lines(dir, check::Severity::Warning),
                files,
            })
        }
    }
}

/// `imagegen pki`: checks imagegen's own PKI in `dir`, makes what is missing and what `force`
/// asks for, and writes the new set in one swap. The caller holds the output directory's lock.
pub fn manage(dir: &Utf8Path, plan: &Plan, force: &Force, args: &str) -> anyhow::Result<Pki> {
    let outcome = managed::complete(dir, plan, force, args)?;
    let files = provided::load(dir, &identities::files_needed(plan))?;
    Ok(Pki {
        dir: dir.to_owned(),
        created: outcome.created,
        notes: outcome.notes,
        warnings: outcome.warnings,
        files,
    })
}

/// The report of `imagegen pki check`: each file of the PKI in `dir` against the plan.
pub struct CheckReport {
    /// The report's text, one line per file (the problems, or what the file is).
    pub text: String,
    pub errors: usize,
    pub warnings: usize,
}

/// Checks the PKI in `dir` (imagegen's own, or a `--pki DIR`) against the plan, reading only.
pub fn check(dir: &Utf8Path, mode: PkiMode, plan: &Plan, args: &str) -> CheckReport {
    let files = check::Files::read(dir, plan);
    let found = check::all(&files, &judge(mode, plan, args));
    CheckReport {
        text: check::render(&files, mode, plan, &found),
        errors: found.count(check::Severity::Error),
        warnings: found.count(check::Severity::Warning),
    }
}

fn judge<'a>(mode: PkiMode, plan: &'a Plan, args: &'a str) -> check::Judge<'a> {
    check::Judge {
        mode,
        plan,
        args,
        now: time::OffsetDateTime::now_utc(),
    }
}

/// The checks of a `--pki DIR` a build runs: those of `imagegen pki check`.
fn check_dir(dir: &Utf8Path, mode: PkiMode, plan: &Plan, args: &str) -> check::Findings {
    let files = check::Files::read(dir, plan);
    check::all(&files, &judge(mode, plan, args))
}

/// The arguments that name `profile` and the output directory `out` (when not the default)
/// to `imagegen pki`: ` --profile p.yaml --out /tmp/o`, for the commands fixes name.
pub fn args_hint(profile: Option<&Utf8Path>, out: Option<&Utf8Path>) -> String {
    let mut s = String::new();
    if let Some(p) = profile {
        s.push_str(&format!(" --profile {p}"));
    }
    if let Some(out) = out.filter(|o| *o != "out") {
        s.push_str(&format!(" --out {out}"));
    }
    s
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
