//! The cluster CA of the managed PKI: made once and kept, because a new CA would cut off every
//! node already running. Three ways to have one: load `ca.pem` with `ca-key.pem`, make a new
//! pair (when there is none, or `--force-ca`), or make `ca.pem` again from `ca-key.pem` when a
//! run of an older imagegen was killed between the two. The certificate made again has the
//! same key, subject and key identifier as the one the existing certificates name as their
//! issuer, so they keep verifying.

use anyhow::Context as _;
use camino::Utf8Path;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose,
};

use super::x509::Cert;

/// The CA as the issuing code needs it. `Debug` is not derived: it holds the key.
pub(crate) struct Ca {
    pub pem: String,
    pub key_pem: String,
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

/// The key of `dir/ca-key.pem` to sign with. rcgen (ring) signs with PKCS#8 keys only; the
/// error says how to convert another form. Never says more of the key.
fn signing_key(dir: &Utf8Path, key_pem: &str) -> anyhow::Result<KeyPair> {
    KeyPair::from_pem(key_pem).ok().with_context(|| {
        format!(
            "{dir}/ca-key.pem: imagegen signs with a PKCS#8 key (ECDSA P-256/P-384, Ed25519 or RSA); `openssl pkcs8 -topk8 -nocrypt -in ca-key.pem -out ca-key.pk8` converts it"
        )
    })
}

/// The CA of `dir/ca.pem` and `ca-key.pem` (the caller has checked that they belong
/// together).
pub(crate) fn load(dir: &Utf8Path, pem: &str, key_pem: &str) -> anyhow::Result<Ca> {
    let key = signing_key(dir, key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(pem, key)
        .ok()
        .with_context(|| format!("{dir}/ca.pem: expected a PEM CA certificate whose subject has one attribute per name part"))?;
    Ok(Ca {
        pem: pem.to_string(),
        key_pem: key_pem.to_string(),
        issuer,
    })
}

/// A new CA: a new key and its self-signed certificate, `CN=Kubernetes, O=Kubernetes`.
pub(crate) fn create() -> anyhow::Result<Ca> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Kubernetes");
    dn.push(DnType::OrganizationName, "Kubernetes");
    self_sign(key, dn, None)
}

/// `ca.pem` made again for the key in `key_pem`: with the issuer name and key identifier of
/// the first of `signed` (existing certificates) that this key signed, else as [`create`]
/// names a CA.
pub(crate) fn remake(dir: &Utf8Path, key_pem: &str, signed: &[Cert]) -> anyhow::Result<Ca> {
    let key = signing_key(dir, key_pem)?;
    use rcgen::PublicKeyData as _;
    let spki = key.subject_public_key_info();
    let model = signed.iter().find(|c| c.signed_by(&spki));
    let (dn, key_id) = match model.and_then(|c| Some((c.issuer_name()?, c))) {
        Some((dn, c)) => (dn, c.authority_key_id.clone()),
        None => {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Kubernetes");
            dn.push(DnType::OrganizationName, "Kubernetes");
            (dn, None)
        }
    };
    self_sign(key, dn, key_id)
}

fn self_sign(key: KeyPair, dn: DistinguishedName, key_id: Option<Vec<u8>>) -> anyhow::Result<Ca> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if let Some(id) = key_id {
        params.key_identifier_method = KeyIdMethod::PreSpecified(id);
    }
    validity(&mut params, CA_YEARS);
    let cert = params.self_signed(&key).context("self-signing the CA")?;
    Ok(Ca {
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        issuer: Issuer::new(params, key),
    })
}
