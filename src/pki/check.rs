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

use std::collections::{BTreeMap, BTreeSet};

use camino::{Utf8Path, Utf8PathBuf};
use time::OffsetDateTime;

use super::identities::{self, Identity, San, ENCRYPTION_CONFIG};
use super::x509::{key_public, Cert};
use super::{encryption, kubeconfig, PkiMode};
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
const EXPIRY_WARNING_DAYS: i64 = 30;

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

fn date(t: OffsetDateTime) -> String {
    t.date().to_string()
}

/// Expiry and start of a certificate.
fn validity(cert: &Cert, file: &str, fix: Option<String>, j: &Judge, f: &mut Findings) {
    if cert.not_after < j.now {
        f.push(
            file,
            Severity::Error,
            format!("expired on {}", date(cert.not_after)),
            fix,
        );
    } else if cert.not_after - j.now < time::Duration::days(EXPIRY_WARNING_DAYS) {
        let days = (cert.not_after - j.now).whole_days();
        f.push(
            file,
            Severity::Warning,
            format!("expires on {}, in {days} days", date(cert.not_after)),
            fix,
        );
    }
    if cert.not_before > j.now {
        f.push(
            file,
            Severity::Warning,
            format!(
                "not valid before {} (is this machine's clock right?)",
                date(cert.not_before)
            ),
            None,
        );
    }
}

/// The CA as the other checks need it: `ca.pem`, parsed, and its key when there is one.
pub(crate) struct CaFacts {
    pub pem: String,
    pub cert: Cert,
}

/// What the CA files are.
pub(crate) enum CaState {
    /// `ca.pem` with its key (or, in a `--pki DIR` whose nodes need no CA key, alone).
    Usable(Box<CaFacts>, Option<String>),
    /// Neither file.
    Absent,
    /// `ca-key.pem` without `ca.pem` (a run of an older imagegen killed between the two).
    KeyOnly(String),
    /// Errors say what.
    Broken,
}

pub(crate) fn ca(files: &Files, key_needed: bool, j: &Judge, f: &mut Findings) -> CaState {
    let (cert_text, key_text) = match (files.entry("ca.pem"), files.entry("ca-key.pem")) {
        (Entry::Unreadable(why), _) => {
            f.push(
                "ca.pem",
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return CaState::Broken;
        }
        (_, Entry::Unreadable(why)) => {
            f.push(
                "ca-key.pem",
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return CaState::Broken;
        }
        (Entry::Missing, Entry::Missing) => return CaState::Absent,
        (Entry::Missing, Entry::Text(key)) if j.managed() => return CaState::KeyOnly(key.clone()),
        (Entry::Missing, Entry::Text(_)) => {
            f.push(
                "ca.pem",
                Severity::Error,
                "missing, and ca-key.pem is there".into(),
                Some("add the CA certificate of ca-key.pem".into()),
            );
            return CaState::Broken;
        }
        (Entry::Text(c), key) => (c, key),
    };
    let Some(cert) = Cert::parse(cert_text) else {
        let fix = j
            .managed()
            .then(|| "remove it: `imagegen pki` makes it again from ca-key.pem".to_string());
        f.push(
            "ca.pem",
            Severity::Error,
            "expected a PEM certificate (the cluster CA)".into(),
            fix,
        );
        return CaState::Broken;
    };
    if !cert.is_ca {
        f.push(
            "ca.pem",
            Severity::Error,
            format!(
                "{} is not a CA certificate (no basicConstraints CA:TRUE)",
                cert.subject
            ),
            j.managed().then(|| j.force_ca()),
        );
        return CaState::Broken;
    }
    let errors = f.count(Severity::Error);
    validity(&cert, "ca.pem", j.managed().then(|| j.force_ca()), j, f);
    f.ok(
        "ca.pem",
        format!(
            "the cluster CA ({}), valid until {}",
            cert.subject,
            date(cert.not_after)
        ),
    );
    let key = match key_text {
        Entry::Text(k) => Some(k.clone()),
        _ if j.managed() => {
            f.push(
                "ca-key.pem",
                Severity::Error,
                "missing, and ca.pem is there: every certificate here was signed with it".into(),
                Some(format!("restore ca-key.pem, or {}", j.force_ca())),
            );
            return CaState::Broken;
        }
        _ if key_needed => {
            f.push(
                "ca-key.pem",
                Severity::Error,
                "missing: control nodes get the CA key".into(),
                Some("add the key of ca.pem".into()),
            );
            return CaState::Broken;
        }
        _ => None,
    };
    if let Some(k) = &key {
        match key_public(k) {
            Err(e) => {
                f.push("ca-key.pem", Severity::Error, e.to_string(), None);
                return CaState::Broken;
            }
            Ok(p) if p != cert.public => {
                let fix = if j.managed() {
                    format!("restore the key of ca.pem, or {}", j.force_ca())
                } else {
                    "give the key that belongs to ca.pem".into()
                };
                f.push(
                    "ca-key.pem",
                    Severity::Error,
                    "does not belong to ca.pem".into(),
                    Some(fix),
                );
                return CaState::Broken;
            }
            Ok(_) => f.ok("ca-key.pem", "belongs to ca.pem".into()),
        }
    }
    if f.count(Severity::Error) > errors {
        return CaState::Broken;
    }
    CaState::Usable(
        Box::new(CaFacts {
            pem: cert_text.clone(),
            cert,
        }),
        key,
    )
}

/// What an identity's certificate and key are.
pub(crate) enum PairState {
    /// Both, belonging together and signed by the CA (with warnings, maybe).
    Good {
        cert: String,
        key: String,
    },
    Absent,
    /// The key without its certificate (a run of an older imagegen killed between the two).
    KeyOnly(String),
    /// Errors say what.
    Broken,
}

fn san_text(s: &San) -> String {
    match s {
        San::Dns(d) => format!("DNS:{d}"),
        San::Ip(ip) => format!("IP:{ip}"),
    }
}

fn same_san(a: &San, b: &San) -> bool {
    match (a, b) {
        (San::Dns(x), San::Dns(y)) => x.eq_ignore_ascii_case(y),
        (San::Ip(x), San::Ip(y)) => x == y,
        _ => false,
    }
}

pub(crate) fn pair(
    files: &Files,
    id: &Identity,
    ca: Option<&CaFacts>,
    j: &Judge,
    f: &mut Findings,
) -> PairState {
    let (cert_name, key_name) = (cert_file(id), key_file(id));
    let (cert_text, key_text) = match (files.entry(&cert_name), files.entry(&key_name)) {
        (Entry::Unreadable(why), _) => {
            f.push(
                &cert_name,
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return PairState::Broken;
        }
        (_, Entry::Unreadable(why)) => {
            f.push(
                &key_name,
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return PairState::Broken;
        }
        (Entry::Missing, Entry::Missing) => return PairState::Absent,
        (Entry::Missing, Entry::Text(k)) => return PairState::KeyOnly(k.clone()),
        (Entry::Text(_), Entry::Missing) => {
            let fix = if j.managed() {
                format!("restore {key_name}, or {}", j.force(&id.stem))
            } else {
                format!("add the key of {cert_name}")
            };
            f.push(
                &key_name,
                Severity::Error,
                format!("missing, and {} is there", files.dir.join(&cert_name)),
                Some(fix),
            );
            return PairState::Broken;
        }
        (Entry::Text(c), Entry::Text(k)) => (c, k),
    };
    let errors = f.count(Severity::Error);
    let Some(cert) = Cert::parse(cert_text) else {
        let fix = j.reissue(&id.stem, "give the PEM certificate");
        f.push(
            &cert_name,
            Severity::Error,
            "expected a PEM certificate".into(),
            fix,
        );
        return PairState::Broken;
    };
    match key_public(key_text) {
        Err(e) => {
            let fix = j.managed().then(|| j.force(&id.stem));
            f.push(&key_name, Severity::Error, e.to_string(), fix);
        }
        Ok(p) if p != cert.public => {
            let fix = if j.managed() {
                format!("restore the key of {cert_name}, or {}", j.force(&id.stem))
            } else {
                format!("give the key that belongs to {cert_name}")
            };
            f.push(
                &key_name,
                Severity::Error,
                format!("does not belong to {cert_name}"),
                Some(fix),
            );
        }
        Ok(_) => f.ok(&key_name, format!("belongs to {cert_name}")),
    }
    if let Some(ca) = ca {
        if !cert.signed_by(&ca.cert.spki) {
            f.push(
                &cert_name,
                Severity::Error,
                format!("was not signed by ca.pem (its issuer: {})", cert.issuer),
                j.reissue(&id.stem, "issue it with this ca.pem"),
            );
        }
    }
    validity(
        &cert,
        &cert_name,
        j.reissue(&id.stem, "issue it again"),
        j,
        f,
    );
    subject_and_names(&cert, &cert_name, id, j, f);
    f.ok(&cert_name, format!("valid until {}", date(cert.not_after)));
    if f.count(Severity::Error) > errors {
        return PairState::Broken;
    }
    PairState::Good {
        cert: cert_text.clone(),
        key: key_text.clone(),
    }
}

/// The subject (CN and O: user and group to the API server) and the names the profile gives
/// the identity.
fn subject_and_names(cert: &Cert, file: &str, id: &Identity, j: &Judge, f: &mut Findings) {
    subject(cert, file, id, j, f);
    names(cert, file, id, j, f);
}

fn stale_fix(id: &Identity, j: &Judge) -> Option<String> {
    j.reissue(
        &id.stem,
        "issue it again with the profile's names (until then it is used as given)",
    )
}

fn subject(cert: &Cert, file: &str, id: &Identity, j: &Judge, f: &mut Findings) {
    if (cert.common_name.as_str(), cert.organization.as_str())
        != (id.common_name.as_str(), id.organization.as_str())
    {
        f.push(
            file,
            j.stale(),
            format!(
                "is for CN={}, O={}; the profile's {} is CN={}, O={}",
                cert.common_name, cert.organization, id.stem, id.common_name, id.organization
            ),
            stale_fix(id, j),
        );
    }
}

fn names(cert: &Cert, file: &str, id: &Identity, j: &Judge, f: &mut Findings) {
    let missing: Vec<String> = id
        .sans
        .iter()
        .filter(|want| !cert.sans.iter().any(|have| same_san(want, have)))
        .map(san_text)
        .collect();
    if !missing.is_empty() {
        f.push(
            file,
            j.stale(),
            format!(
                "lacks {}, which the profile names for {}",
                missing.join(", "),
                id.stem
            ),
            stale_fix(id, j),
        );
    }
    let extra: Vec<String> = cert
        .sans
        .iter()
        .filter(|have| !id.sans.iter().any(|want| same_san(want, have)))
        .map(san_text)
        .collect();
    if !extra.is_empty() {
        f.push(
            file,
            Severity::Warning,
            format!(
                "also names {}, which the profile does not",
                extra.join(", ")
            ),
            j.managed().then(|| j.force(&id.stem)),
        );
    }
}

/// What a kubeconfig is.
pub(crate) enum KubeconfigState {
    Good,
    Absent,
    /// In imagegen's PKI: no longer what it would write (the reasons); it is written again.
    Stale(Vec<String>),
    Broken,
}

/// Checks `<stem>.kubeconfig` against the profile's API endpoint, the CA and (when given) the
/// identity's certificate and key.
pub(crate) fn kubeconfig(
    files: &Files,
    id: &Identity,
    ca: Option<&CaFacts>,
    pair: Option<(&str, &str)>,
    j: &Judge,
    f: &mut Findings,
) -> KubeconfigState {
    let name = kubeconfig_file(id);
    let text = match files.entry(&name) {
        Entry::Missing => return KubeconfigState::Absent,
        Entry::Unreadable(why) if j.managed() => {
            return KubeconfigState::Stale(vec![format!("cannot be read: {why}")])
        }
        Entry::Unreadable(why) => {
            f.push(
                &name,
                Severity::Error,
                format!("cannot be read: {why}"),
                None,
            );
            return KubeconfigState::Broken;
        }
        Entry::Text(t) => t,
    };
    let endpoint = &j.plan.cluster.api_endpoint;
    let Some(view) = kubeconfig::read(text) else {
        let what = "is not a kubeconfig with a cluster, a user and their embedded credentials";
        if j.managed() {
            let reasons = vec![what.to_string()];
            stale_kubeconfig(&name, &reasons, j, f);
            return KubeconfigState::Stale(reasons);
        }
        f.push(&name, Severity::Error, what.into(), None);
        return KubeconfigState::Broken;
    };
    let same = |a: &Option<String>, b: &str| a.as_deref().map(str::trim) == Some(b.trim());
    let mut reasons = Vec::new();
    if view.server != *endpoint {
        reasons.push(format!(
            "points at {}, not the profile's API endpoint {endpoint}",
            view.server
        ));
    }
    if j.managed() {
        if let Some(ca) = ca {
            if !same(&view.ca_pem, &ca.pem) {
                reasons.push("embeds another CA than ca.pem".into());
            }
        }
        if let Some((cert, key)) = pair {
            if !same(&view.cert_pem, cert) {
                reasons.push(format!("embeds another certificate than {}", cert_file(id)));
            } else if !same(&view.key_pem, key) {
                reasons.push(format!("embeds another key than {}", key_file(id)));
            }
        }
        if reasons.is_empty() {
            f.ok(&name, format!("{endpoint}, with {}", cert_file(id)));
            return KubeconfigState::Good;
        }
        stale_kubeconfig(&name, &reasons, j, f);
        return KubeconfigState::Stale(reasons);
    }
    // The user's kubeconfig, used as given: what cannot work is an error, the rest a warning.
    let errors = f.count(Severity::Error);
    for r in reasons {
        f.push(&name, Severity::Warning, r, None);
    }
    if let Some(ca) = ca {
        if !same(&view.ca_pem, &ca.pem) {
            f.push(
                &name,
                Severity::Error,
                "embeds another CA than ca.pem (or none): the node would not trust the API server"
                    .into(),
                None,
            );
        }
    }
    match view.cert_pem.as_deref().and_then(Cert::parse) {
        None => f.push(
            &name,
            Severity::Error,
            "embeds no client certificate (client-certificate-data)".into(),
            None,
        ),
        Some(cert) => {
            if ca.is_some_and(|ca| !cert.signed_by(&ca.cert.spki)) {
                f.push(
                    &name,
                    Severity::Error,
                    format!(
                        "embeds a certificate not signed by ca.pem (its issuer: {})",
                        cert.issuer
                    ),
                    None,
                );
            }
            let key = view.key_pem.as_deref().map(key_public);
            if !matches!(key, Some(Ok(p)) if p == cert.public) {
                f.push(
                    &name,
                    Severity::Error,
                    "embeds a key that does not belong to its certificate (client-key-data)".into(),
                    None,
                );
            }
            match pair {
                Some((c, _)) if !same(&view.cert_pem, c) => f.push(
                    &name,
                    Severity::Warning,
                    format!("embeds another certificate than {}", cert_file(id)),
                    None,
                ),
                Some(_) => {}
                // No certificate file to compare with (kube-proxy's): the embedded one's subject.
                None => subject(&cert, &name, id, j, f),
            }
        }
    }
    if f.count(Severity::Error) > errors {
        return KubeconfigState::Broken;
    }
    f.ok(&name, format!("{}, as {}", view.server, id.common_name));
    KubeconfigState::Good
}

fn stale_kubeconfig(name: &str, reasons: &[String], j: &Judge, f: &mut Findings) {
    f.push(
        name,
        Severity::Warning,
        reasons.join("; "),
        Some(format!(
            "{} (or the next build) writes it again from the PKI's files; it holds no secret of its own",
            j.pki("")
        )),
    );
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
