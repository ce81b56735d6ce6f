//! The one way a certificate of the managed PKI is made: from an [`Identity`], signed by the CA,
//! written key first (0600) then certificate (0644). An identity whose certificate and key both
//! exist is reused as it is; one with only half of the pair is an error naming both files,
//! since making a new pair would overwrite the other half.

use anyhow::{bail, Context as _};
use camino::Utf8Path;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::ca::{validity, Ca};
use super::identities::{Identity, San};
use crate::fsutil;

/// Years a new leaf certificate is valid.
const LEAF_YEARS: i64 = 5;

/// A certificate and its key, as PEM. `Debug` is not derived so a key cannot reach a log line.
pub(crate) struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Reuses `<stem>.pem` and `<stem>-key.pem` from `dir`, or issues them when neither exists.
pub(crate) fn load_or_issue(
    dir: &Utf8Path,
    id: &Identity,
    ca: &Ca,
    created: &mut Vec<String>,
) -> anyhow::Result<Issued> {
    let cert_name = format!("{}.pem", id.stem);
    let key_name = format!("{}-key.pem", id.stem);
    let (cert_path, key_path) = (dir.join(&cert_name), dir.join(&key_name));
    match (cert_path.exists(), key_path.exists()) {
        (true, true) => {
            let cert_pem = crate::fsutil::read_to_string(cert_path.as_std_path())?;
            let key_pem = crate::fsutil::read_to_string(key_path.as_std_path())?;
            super::check_pem(&cert_pem, &cert_path)?;
            super::check_pem(&key_pem, &key_path)?;
            return Ok(Issued { cert_pem, key_pem });
        }
        (true, false) | (false, true) => {
            let (has, lacks) = if cert_path.exists() {
                (&cert_path, &key_path)
            } else {
                (&key_path, &cert_path)
            };
            bail!("{has} exists but {lacks} does not: restore it, or remove {has} to have a new pair made");
        }
        (false, false) => {}
    }
    let key = KeyPair::generate().with_context(|| format!("generating a key for {}", id.stem))?;
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
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    fsutil::write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
    fsutil::write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)?;
    created.extend([cert_name, key_name]);
    Ok(Issued { cert_pem, key_pem })
}
