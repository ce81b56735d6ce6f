//! A kubeconfig against the profile's API endpoint, the CA and its identity's certificate and
//! key. In imagegen's PKI a kubeconfig that differs is written again (it holds no secret of its
//! own); in a `--pki DIR` what cannot work is an error and the rest a warning.

use super::certs::{subject, CaFacts};
use super::{cert_file, key_file, kubeconfig_file, Entry, Files, Findings, Judge, Severity};
use crate::pki::identities::Identity;
use crate::pki::kubeconfig;
use crate::pki::x509::{key_public, Cert};

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
    let mut reasons = Vec::new();
    if view.server != *endpoint {
        reasons.push(format!(
            "points at {}, not the profile's API endpoint {endpoint}",
            view.server
        ));
    }
    let it = Kubeconfig {
        name: &name,
        id,
        view: &view,
        ca,
        pair,
    };
    if j.managed() {
        managed(&it, reasons, j, f)
    } else {
        provided(&it, reasons, j, f)
    }
}

/// A kubeconfig read, and what it is checked against.
struct Kubeconfig<'a> {
    name: &'a str,
    id: &'a Identity,
    view: &'a kubeconfig::View,
    ca: Option<&'a CaFacts>,
    /// The identity's certificate and key, when there are files of them.
    pair: Option<(&'a str, &'a str)>,
}

fn same(a: &Option<String>, b: &str) -> bool {
    a.as_deref().map(str::trim) == Some(b.trim())
}

/// In imagegen's PKI: anything but what this run would write is stale.
fn managed(
    k: &Kubeconfig,
    mut reasons: Vec<String>,
    j: &Judge,
    f: &mut Findings,
) -> KubeconfigState {
    if let Some(ca) = k.ca {
        if !same(&k.view.ca_pem, &ca.pem) {
            reasons.push("embeds another CA than ca.pem".into());
        }
    }
    if let Some((cert, key)) = k.pair {
        if !same(&k.view.cert_pem, cert) {
            reasons.push(format!(
                "embeds another certificate than {}",
                cert_file(k.id)
            ));
        } else if !same(&k.view.key_pem, key) {
            reasons.push(format!("embeds another key than {}", key_file(k.id)));
        }
    }
    if reasons.is_empty() {
        f.ok(
            k.name,
            format!("{}, with {}", k.view.server, cert_file(k.id)),
        );
        return KubeconfigState::Good;
    }
    stale_kubeconfig(k.name, &reasons, j, f);
    KubeconfigState::Stale(reasons)
}

/// The user's kubeconfig, used as given: what cannot work is an error, the rest a warning.
fn provided(k: &Kubeconfig, reasons: Vec<String>, j: &Judge, f: &mut Findings) -> KubeconfigState {
    let name = k.name;
    let errors = f.count(Severity::Error);
    for r in reasons {
        f.push(name, Severity::Warning, r, None);
    }
    if let Some(ca) = k.ca {
        if !same(&k.view.ca_pem, &ca.pem) {
            f.push(
                name,
                Severity::Error,
                "embeds another CA than ca.pem (or none): the node would not trust the API server"
                    .into(),
                None,
            );
        }
    }
    match k.view.cert_pem.as_deref().and_then(Cert::parse) {
        None => f.push(
            name,
            Severity::Error,
            "embeds no client certificate (client-certificate-data)".into(),
            None,
        ),
        Some(cert) => embedded_credentials(k, &cert, j, f),
    }
    if f.count(Severity::Error) > errors {
        return KubeconfigState::Broken;
    }
    f.ok(name, format!("{}, as {}", k.view.server, k.id.common_name));
    KubeconfigState::Good
}

/// The client certificate a user's kubeconfig embeds: the CA's, with its own key, and the
/// identity's (its file's, or with the identity's subject when there is no file).
fn embedded_credentials(k: &Kubeconfig, cert: &Cert, j: &Judge, f: &mut Findings) {
    let name = k.name;
    if k.ca.is_some_and(|ca| !cert.signed_by(&ca.cert.spki)) {
        f.push(
            name,
            Severity::Error,
            format!(
                "embeds a certificate not signed by ca.pem (its issuer: {})",
                cert.issuer
            ),
            None,
        );
    }
    let key = k.view.key_pem.as_deref().map(key_public);
    if !matches!(key, Some(Ok(p)) if p == cert.public) {
        f.push(
            name,
            Severity::Error,
            "embeds a key that does not belong to its certificate (client-key-data)".into(),
            None,
        );
    }
    match k.pair {
        Some((c, _)) if !same(&k.view.cert_pem, c) => f.push(
            name,
            Severity::Warning,
            format!("embeds another certificate than {}", cert_file(k.id)),
            None,
        ),
        Some(_) => {}
        // No certificate file to compare with (kube-proxy's): the embedded one's subject.
        None => subject(cert, name, k.id, j, f),
    }
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
