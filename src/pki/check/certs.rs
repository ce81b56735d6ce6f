//! The CA and each identity's certificate and key: they belong together, the CA signed the
//! certificate, it is valid, and its subject and names are the ones the profile gives it.

use time::OffsetDateTime;

use super::{cert_file, key_file, Entry, Files, Findings, Judge, Severity, EXPIRY_WARNING_DAYS};
use crate::pki::identities::{Identity, San};
use crate::pki::x509::{key_public, Cert};

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
    let (cert_text, key_entry) = match (files.entry("ca.pem"), files.entry("ca-key.pem")) {
        (Entry::Unreadable(why), _) => return unreadable("ca.pem", why, f, CaState::Broken),
        (_, Entry::Unreadable(why)) => return unreadable("ca-key.pem", why, f, CaState::Broken),
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
    let errors = f.count(Severity::Error);
    let Some(cert) = ca_cert(cert_text, j, f) else {
        return CaState::Broken;
    };
    let key = match ca_key(key_entry, &cert, key_needed, j, f) {
        Ok(key) => key,
        Err(()) => return CaState::Broken,
    };
    if f.count(Severity::Error) > errors {
        return CaState::Broken;
    }
    let pem = cert_text.clone();
    CaState::Usable(Box::new(CaFacts { pem, cert }), key)
}

/// An error for a file that cannot be read; returns `state`.
fn unreadable<T>(file: &str, why: &str, f: &mut Findings, state: T) -> T {
    f.push(
        file,
        Severity::Error,
        format!("cannot be read: {why}"),
        None,
    );
    state
}

/// `ca.pem`: a CA certificate, valid now.
fn ca_cert(text: &str, j: &Judge, f: &mut Findings) -> Option<Cert> {
    let Some(cert) = Cert::parse(text) else {
        let fix = j
            .managed()
            .then(|| "remove it: `imagegen pki` makes it again from ca-key.pem".to_string());
        f.push(
            "ca.pem",
            Severity::Error,
            "expected a PEM certificate (the cluster CA)".into(),
            fix,
        );
        return None;
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
        return None;
    }
    validity(&cert, "ca.pem", j.managed().then(|| j.force_ca()), j, f);
    f.ok(
        "ca.pem",
        format!(
            "the cluster CA ({}), valid until {}",
            cert.subject,
            date(cert.not_after)
        ),
    );
    Some(cert)
}

/// `ca-key.pem`: there (in imagegen's PKI, or when control nodes need it) and `ca.pem`'s.
fn ca_key(
    entry: &Entry,
    cert: &Cert,
    needed: bool,
    j: &Judge,
    f: &mut Findings,
) -> Result<Option<String>, ()> {
    let key = match entry {
        Entry::Text(k) => k,
        _ if j.managed() => {
            f.push(
                "ca-key.pem",
                Severity::Error,
                "missing, and ca.pem is there: every certificate here was signed with it".into(),
                Some(format!("restore ca-key.pem, or {}", j.force_ca())),
            );
            return Err(());
        }
        _ if needed => {
            f.push(
                "ca-key.pem",
                Severity::Error,
                "missing: control nodes get the CA key".into(),
                Some("add the key of ca.pem".into()),
            );
            return Err(());
        }
        _ => return Ok(None),
    };
    match key_public(key) {
        Err(e) => {
            f.push("ca-key.pem", Severity::Error, e.to_string(), None);
            Err(())
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
            Err(())
        }
        Ok(_) => {
            f.ok("ca-key.pem", "belongs to ca.pem".into());
            Ok(Some(key.clone()))
        }
    }
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
        (Entry::Unreadable(why), _) => return unreadable(&cert_name, why, f, PairState::Broken),
        (_, Entry::Unreadable(why)) => return unreadable(&key_name, why, f, PairState::Broken),
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
    key_of(&cert, key_text, id, j, f);
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

/// `<stem>-key.pem` is the key of `cert`.
fn key_of(cert: &Cert, key_text: &str, id: &Identity, j: &Judge, f: &mut Findings) {
    let (cert_name, key_name) = (cert_file(id), key_file(id));
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

pub(super) fn subject(cert: &Cert, file: &str, id: &Identity, j: &Judge, f: &mut Findings) {
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
