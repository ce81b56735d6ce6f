//! The checks of a PKI directory against the profile, one set for `imagegen pki check`,
//! `imagegen pki` and every build, so all three say the same thing about a file.
//!
//! Per file: a certificate's key belongs to it, the CA signed it, it is valid now (and for 30
//! more days), its subject and names are the profile's; a kubeconfig points at the profile's
//! API endpoint and embeds the CA and the identity's own certificate and key; the encryption
//! config holds a key. How bad a mismatch is depends on whose files they are: in imagegen's
//! own PKI anything the profile no longer matches is an error with a fix (`imagegen pki
//! --force NAME`); in a `--pki DIR` a stale name or subject is a warning (the files are used as
//! given), while a key that does not belong to its certificate or a certificate of another CA
//! is an error either way, since nothing built from it could work.
//!
//! Messages name files and what was expected; they never quote a key or a secret.
//!
//! Here: findings, the files read once, the judge (whose files, which fixes), the encryption
//! config, the whole report; `certs` checks the CA and each identity's certificate and key,
//! `kubeconfigs` each kubeconfig.

mod certs;
mod kubeconfigs;

pub(crate) use certs::{ca, pair, CaFacts, CaState, PairState};
pub(crate) use kubeconfigs::{kubeconfig, KubeconfigState};

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};
use time::OffsetDateTime;

use super::identities::{self, Identity, ENCRYPTION_CONFIG};
use super::{encryption, PkiMode};
use crate::plan::Plan;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One thing a check found about one file.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The file's name in the PKI directory.
    pub file: String,
    pub severity: Severity,
    /// What was found (for `Ok`: what the file is, e.g. its expiry).
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Finding {
    /// The message and its fix, as the check, `imagegen pki` and a build all print it.
    pub fn text(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{}; fix: {fix}", self.message),
            None => self.message.clone(),
        }
    }
}

/// Findings in the order the files were checked.
#[derive(Debug, Default)]
pub(crate) struct Findings(pub Vec<Finding>);

impl Findings {
    fn push(&mut self, file: &str, severity: Severity, message: String, fix: Option<String>) {
        self.0.push(Finding {
            file: file.to_string(),
            severity,
            message,
            fix,
        });
    }

    fn ok(&mut self, file: &str, message: String) {
        self.push(file, Severity::Ok, message, None);
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.0.iter().filter(|f| f.severity == severity).count()
    }

    /// Each finding of `severity` as `<dir>/<file>: <message>; fix: <fix>`.
    pub fn lines(&self, dir: &Utf8Path, severity: Severity) -> Vec<String> {
        self.0
            .iter()
            .filter(|f| f.severity == severity)
            .map(|f| format!("{}: {}", dir.join(&f.file), f.text()))
            .collect()
    }
}

/// One file of the directory, read once.
pub(crate) enum Entry {
    Missing,
    /// Why it cannot be read (the OS's reason).
    Unreadable(String),
    Text(String),
}

/// The files of a PKI directory that the plan's identities name, read once.
pub(crate) struct Files {
    pub dir: Utf8PathBuf,
    /// In the order reports list them: the CA, each identity's certificate, key and
    /// kubeconfig, the encryption config.
    names: Vec<String>,
    entries: BTreeMap<String, Entry>,
}

impl Files {
    pub fn read(dir: &Utf8Path, plan: &Plan) -> Files {
        let mut names = vec!["ca.pem".to_string(), "ca-key.pem".to_string()];
        for id in identities::all(plan) {
            names.extend([cert_file(&id), key_file(&id), kubeconfig_file(&id)]);
        }
        names.push(ENCRYPTION_CONFIG.to_string());
        let entries = names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let entry = match crate::fsutil::read_to_string(path.as_std_path()) {
                    Ok(text) => Entry::Text(text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entry::Missing,
                    Err(e) => Entry::Unreadable(crate::fsutil::os_reason(&e, path.as_std_path())),
                };
                (name.clone(), entry)
            })
            .collect();
        Files {
            dir: dir.to_owned(),
            names,
            entries,
        }
    }

    pub fn entry(&self, name: &str) -> &Entry {
        self.entries.get(name).unwrap_or(&Entry::Missing)
    }

    pub fn exists(&self, name: &str) -> bool {
        !matches!(self.entry(name), Entry::Missing)
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

pub(crate) fn cert_file(id: &Identity) -> String {
    format!("{}.pem", id.stem)
}

pub(crate) fn key_file(id: &Identity) -> String {
    format!("{}-key.pem", id.stem)
}

pub(crate) fn kubeconfig_file(id: &Identity) -> String {
    format!("{}.kubeconfig", id.stem)
}

/// Whose files these are, against which profile, and how to name a fix.
pub(crate) struct Judge<'a> {
    pub mode: PkiMode,
    pub plan: &'a Plan,
    /// The arguments of `imagegen pki` that name this directory and profile (` --profile F
    /// --out DIR`, see `pki::args_hint`), for fixes.
    pub args: &'a str,
    pub now: OffsetDateTime,
}

/// Days before its end from which a certificate's expiry is a warning.
pub(crate) const EXPIRY_WARNING_DAYS: i64 = 30;

impl Judge<'_> {
    fn managed(&self) -> bool {
        self.mode == PkiMode::Managed
    }

    /// A file that no longer matches the profile: an error in imagegen's PKI, which can issue
    /// it again; a warning in the user's, which is used as given.
    fn stale(&self) -> Severity {
        if self.managed() {
            Severity::Error
        } else {
            Severity::Warning
        }
    }

    /// `imagegen pki` with this directory's arguments and `tail`, quoted.
    pub fn pki(&self, tail: &str) -> String {
        format!("`imagegen pki{}{tail}`", self.args)
    }

    fn force(&self, stem: &str) -> String {
        format!(
            "{} issues a new certificate and key with the same CA",
            self.pki(&format!(" --force {stem}"))
        )
    }

    fn force_ca(&self) -> String {
        format!(
            "{} makes a new CA and issues everything again (nodes running with the old credentials are cut off)",
            self.pki(" --force-ca")
        )
    }

    /// The fix for a certificate of `stem` that must be issued again.
    fn reissue(&self, stem: &str, provided: &str) -> Option<String> {
        Some(if self.managed() {
            self.force(stem)
        } else {
            provided.to_string()
        })
    }
}

/// Whether `encryption-config.yaml` is there and holds a key.
pub(crate) fn encryption(files: &Files, j: &Judge, f: &mut Findings) -> Option<bool> {
    let text = match files.entry(ENCRYPTION_CONFIG) {
        Entry::Missing => return None,
        Entry::Unreadable(why) => {
            f.push(
                ENCRYPTION_CONFIG,
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return Some(false);
        }
        Entry::Text(t) => t,
    };
    match encryption::check(text) {
        Ok(what) => {
            f.ok(ENCRYPTION_CONFIG, what);
            Some(true)
        }
        Err(e) => {
            let fix = j.managed().then(|| {
                "restore it (the control nodes hold its key); removing it makes `imagegen pki` write a new key, and Secrets stored with the old one become unreadable".to_string()
            });
            f.push(ENCRYPTION_CONFIG, Severity::Error, e.into(), fix);
            Some(false)
        }
    }
}

/// Every check of the directory as it is, for `imagegen pki check`: what is missing is an
/// error too (in imagegen's PKI with the fix `imagegen pki`; in a `--pki DIR` when the plan's
/// nodes need it).
pub(crate) fn all(files: &Files, j: &Judge) -> Findings {
    let mut f = Findings::default();
    let needed = identities::files_needed(j.plan);
    let wanted = |name: &str| j.managed() || needed.contains(name);
    let make = format!("{} makes it", j.pki(""));
    let missing = |f: &mut Findings, name: &str, fix: &str| {
        let fix = if j.managed() {
            fix.to_string()
        } else {
            "add it".to_string()
        };
        f.push(name, Severity::Error, "missing".into(), Some(fix));
    };
    let ca = match ca(files, wanted("ca-key.pem"), j, &mut f) {
        CaState::Usable(facts, _) => Some(*facts),
        CaState::Absent => {
            missing(&mut f, "ca.pem", &make);
            missing(&mut f, "ca-key.pem", &make);
            None
        }
        CaState::KeyOnly(_) => {
            let fix = format!(
                "{} makes it again from ca-key.pem (same key and subject: the certificates keep verifying)",
                j.pki("")
            );
            missing(&mut f, "ca.pem", &fix);
            None
        }
        CaState::Broken => None,
    };
    for id in identities::all(j.plan) {
        let (cert, key, kc) = (cert_file(&id), key_file(&id), kubeconfig_file(&id));
        let mut good = None;
        match pair(files, &id, ca.as_ref(), j, &mut f) {
            PairState::Good { cert, key } => good = Some((cert, key)),
            PairState::Absent => {
                for name in [&cert, &key] {
                    if wanted(name) {
                        missing(&mut f, name, &make);
                    }
                }
            }
            PairState::KeyOnly(_) => {
                let fix = format!("{} issues it for the existing {key}", j.pki(""));
                if wanted(&cert) || j.managed() {
                    missing(&mut f, &cert, &fix);
                }
            }
            PairState::Broken => {}
        }
        if id.kubeconfig {
            let pair = good.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            if let KubeconfigState::Absent = kubeconfig(files, &id, ca.as_ref(), pair, j, &mut f) {
                if wanted(&kc) {
                    missing(&mut f, &kc, &make);
                }
            }
        }
    }
    if encryption(files, j, &mut f).is_none() && wanted(ENCRYPTION_CONFIG) {
        let fix = format!(
            "{} makes it (a new key: fine before the cluster stores Secrets)",
            j.pki("")
        );
        missing(&mut f, ENCRYPTION_CONFIG, &fix);
    }
    f
}

/// The report of `imagegen pki check`: each file once, with what is wrong with it or, when
/// nothing is, what it is; then the count.
pub(crate) fn render(files: &Files, mode: PkiMode, plan: &Plan, f: &Findings) -> String {
    let whose = match mode {
        PkiMode::Managed => "imagegen's PKI",
        PkiMode::Provided => "--pki",
    };
    let mut out = format!(
        "{} ({whose}) against profile {}:\n",
        files.dir, plan.profile
    );
    let listed: Vec<&str> = files
        .names()
        .iter()
        .map(String::as_str)
        .filter(|n| f.0.iter().any(|x| x.file == *n))
        .collect();
    let width = listed.iter().map(|n| n.len()).max().unwrap_or(0) + 2;
    for file in listed {
        let of_file: Vec<&Finding> = f.0.iter().filter(|x| x.file == file).collect();
        let problems: BTreeSet<usize> = of_file
            .iter()
            .enumerate()
            .filter(|(_, x)| x.severity != Severity::Ok)
            .map(|(i, _)| i)
            .collect();
        for (i, x) in of_file.iter().enumerate() {
            let show = if problems.is_empty() {
                i == 0
            } else {
                problems.contains(&i)
            };
            if show {
                out.push_str(&format!(
                    "  {:<8}{:<width$}{}\n",
                    x.severity.label(),
                    format!("{file}:"),
                    x.text()
                ));
            }
        }
    }
    let (errors, warnings) = (f.count(Severity::Error), f.count(Severity::Warning));
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!(
        "{}, {}\n",
        plural(errors, "error"),
        plural(warnings, "warning")
    ));
    out
}
