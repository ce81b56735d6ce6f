//! The cluster CA of the managed PKI: loaded when `ca.pem` and `ca-key.pem` exist, created when
//! neither does. It is made once and kept, because a new CA would cut off every node already
//! running; half of a CA is an error, never a reason to make another.

use anyhow::Context as _;
use camino::Utf8Path;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::fsutil;

/// The CA as the issuing code needs it.
pub(crate) struct Ca {
    pub pem: String,
    pub issuer: Issuer<'static, KeyPair>,
}

/// Years a new CA is valid (the guide's `ca-config.json` says 87600h).
const CA_YEARS: i64 = 10;

/// Sets the validity of a new certificate: from an hour ago (clock skew between the build host
/// and the VMs) for `years`.
pub(crate) fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
}

pub(crate) fn load_or_create(dir: &Utf8Path, created: &mut Vec<String>) -> anyhow::Result<Ca> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    if cert_path.exists() || key_path.exists() {
        let pem = crate::fsutil::read_to_string(cert_path.as_std_path())
            .with_context(|| format!("{dir} has a CA key but no usable ca.pem"))?;
        let key_pem = crate::fsutil::read_to_string(key_path.as_std_path())
            .with_context(|| format!("{dir} has ca.pem but no usable ca-key.pem"))?;
        let key = KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{key_path}: expected a PEM private key"))?;
        let issuer = Issuer::from_ca_cert_pem(&pem, key)
            .with_context(|| format!("{cert_path}: expected a PEM CA certificate"))?;
        return Ok(Ca { pem, issuer });
    }
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Kubernetes");
    dn.push(DnType::OrganizationName, "Kubernetes");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    let pem = cert.pem();
    // Key first: a ca.pem without its key would make the next run fail instead of regenerate.
    fsutil::write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    fsutil::write_atomic(&cert_path, pem.as_bytes(), 0o644)?;
    created.extend(["ca.pem".to_string(), "ca-key.pem".to_string()]);
    Ok(Ca {
        pem,
        issuer: Issuer::new(params, key),
    })
}
