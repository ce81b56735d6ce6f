//! The one way a certificate of the managed PKI is made: from an [`Identity`], signed by the
//! CA, with a new key or (a run killed between key and certificate) the key already there.
//! Writing is the caller's: the managed PKI is written as a set.

use anyhow::Context as _;
use camino::Utf8Path;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::ca::{validity, Ca};
use super::identities::{Identity, San};

/// Years a new leaf certificate is valid.
const LEAF_YEARS: i64 = 5;

/// A certificate and its key, as PEM. `Debug` is not derived so a key cannot reach a log line.
pub(crate) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Issues the certificate of `id`, for `key_pem` (the key in `dir`) when given, else with a
/// new key.
pub(crate) fn issue(
    dir: &Utf8Path,
    id: &Identity,
    ca: &Ca,
    key_pem: Option<&str>,
) -> anyhow::Result<Issued> {
    let key = match key_pem {
        Some(pem) => KeyPair::from_pem(pem).ok().with_context(|| {
            format!(
                "{dir}/{0}-key.pem: imagegen issues {0}.pem for a PKCS#8 key only; `openssl pkcs8 -topk8 -nocrypt` converts it",
                id.stem
            )
        })?,
        None => KeyPair::generate().with_context(|| format!("generating a key for {}", id.stem))?,
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.common_name.as_str());
    dn.push(DnType::OrganizationName, id.organization.as_str());
    params.distinguished_name = dn;
    params.subject_alt_names = id
        .sans
        .iter()
        .map(|s| match s {
            San::Dns(d) => d
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .with_context(|| format!("{}: `{d}` is not a DNS name", id.stem)),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
        })
        .collect::<anyhow::Result<_>>()?;
    // The guide's `kubernetes` signing profile: signing, key encipherment, server and client auth.
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    // CA:FALSE with the certificate's own key identifier, and the CA's key identifier: as
    // cfssl writes them. Without the two identifiers OpenSSL (ldirectord's health check,
    // `openssl verify`) takes `CN=kubernetes,O=Kubernetes` for self-issued, since it compares
    // names case-insensitively and the CA is `CN=Kubernetes,O=Kubernetes`.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_YEARS);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .with_context(|| format!("signing the certificate for {}", id.stem))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        // The key as it was given, byte for byte.
        key_pem: key_pem.map_or_else(|| key.serialize_pem(), str::to_string),
    })
}
