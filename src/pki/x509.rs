//! Reading certificates and keys back (x509-parser), for the checks: a certificate's subject,
//! names, validity and issuer signature, and the public half of a private key, which tells
//! whether a key belongs to a certificate. Keys come as imagegen writes them (PKCS#8) or as
//! the guide's cfssl does (`RSA PRIVATE KEY`, `EC PRIVATE KEY`).
//!
//! Nothing here returns key material in an error: a parse failure says what the file should
//! hold, never what it holds.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::der_parser::asn1_rs::Class;
use x509_parser::der_parser::ber::BerObject;
use x509_parser::der_parser::parse_der;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer as _, X509Certificate};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::identities::San;

/// A public key, compared by its numbers: an RSA key by modulus and exponent (leading zeros
/// dropped), any other by the bits of its `subjectPublicKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Raw(Vec<u8>),
}

fn trim_zeros(b: &[u8]) -> Vec<u8> {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    b[start..].to_vec()
}

impl PublicKey {
    fn of_spki(spki: &SubjectPublicKeyInfo) -> PublicKey {
        match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => PublicKey::Rsa {
                n: trim_zeros(rsa.modulus),
                e: trim_zeros(rsa.exponent),
            },
            _ => PublicKey::Raw(spki.subject_public_key.data.to_vec()),
        }
    }

    fn of_spki_der(der: &[u8]) -> Option<PublicKey> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(der).ok()?;
        Some(Self::of_spki(&spki))
    }
}

/// What the checks need of a certificate, owned.
pub(crate) struct Cert {
    der: Vec<u8>,
    /// `CN=..., O=...` (every attribute, in order), for messages.
    pub subject: String,
    pub issuer: String,
    pub common_name: String,
    pub organization: String,
    pub sans: Vec<San>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub public: PublicKey,
    /// The DER `SubjectPublicKeyInfo` (to check signatures made with this certificate's key).
    pub spki: Vec<u8>,
    /// The key identifier of the issuer, when the certificate names it.
    pub authority_key_id: Option<Vec<u8>>,
}

/// The first PEM block of `text` whose label satisfies `want`.
fn pem_block(text: &str, want: impl Fn(&str) -> bool) -> Option<Pem> {
    Pem::iter_from_buffer(text.as_bytes())
        .map_while(Result::ok)
        .find(|p| want(&p.label))
}

fn name_text(name: &x509_parser::x509::X509Name) -> String {
    // `Display` of X509Name writes `CN=..., O=...` and never fails on odd strings.
    name.to_string()
}

fn first_attr<'a>(
    mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> String {
    it.next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

impl Cert {
    /// Parses the first certificate of a PEM file; `None` when there is none.
    pub fn parse(text: &str) -> Option<Cert> {
        let pem = pem_block(text, |l| l == "CERTIFICATE")?;
        let der = pem.contents;
        let (_, x) = X509Certificate::from_der(&der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = x.subject_alternative_name() {
            for n in &ext.value.general_names {
                match n {
                    GeneralName::DNSName(d) => sans.push(San::Dns(d.to_string())),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            sans.push(San::Ip(IpAddr::from(a)));
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            sans.push(San::Ip(IpAddr::from(a)));
                        }
                    }
                    _ => {}
                }
            }
        }
        let authority_key_id = x
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        Some(Cert {
            subject: name_text(x.subject()),
            issuer: name_text(x.issuer()),
            common_name: first_attr(x.subject().iter_common_name()),
            organization: first_attr(x.subject().iter_organization()),
            sans,
            not_before: x.validity().not_before.to_datetime(),
            not_after: x.validity().not_after.to_datetime(),
            is_ca: x.is_ca(),
            public: PublicKey::of_spki(x.public_key()),
            spki: x.public_key().raw.to_vec(),
            authority_key_id,
            der: der.clone(),
        })
    }

    /// Whether the key of `issuer_spki` (a DER `SubjectPublicKeyInfo`) signed this certificate.
    pub fn signed_by(&self, issuer_spki: &[u8]) -> bool {
        let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(issuer_spki) else {
            return false;
        };
        X509Certificate::from_der(&self.der)
            .is_ok_and(|(_, x)| x.verify_signature(Some(&spki)).is_ok())
    }

    /// The issuer's name as rcgen writes it, to make a CA certificate with the very name the
    /// certificates it signed carry.
    pub fn issuer_name(&self) -> Option<rcgen::DistinguishedName> {
        use x509_parser::der_parser::asn1_rs::Tag;
        let (_, x) = X509Certificate::from_der(&self.der).ok()?;
        let mut dn = rcgen::DistinguishedName::new();
        for rdn in x.issuer().iter() {
            let mut attrs = rdn.iter();
            let attr = attrs.next()?;
            if attrs.next().is_some() {
                return None;
            }
            let oid: Vec<u64> = attr.attr_type().iter()?.collect();
            let text = attr.as_str().ok()?.to_string();
            let value = match attr.attr_value().header.tag() {
                Tag::PrintableString => rcgen::DnValue::PrintableString(text.try_into().ok()?),
                _ => rcgen::DnValue::Utf8String(text),
            };
            dn.push(rcgen::DnType::from_oid(&oid), value);
        }
        Some(dn)
    }
}

/// Why a private key could not be read; says nothing of its content.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// No `... PRIVATE KEY` block.
    NotAKey,
    Encrypted,
    /// A key imagegen cannot take apart (its public half cannot be told).
    Unsupported,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::NotAKey => "expected a PEM private key",
            KeyError::Encrypted => "an encrypted private key: give it unencrypted (nodes read it without a passphrase)",
            KeyError::Unsupported => {
                "a private key of a kind imagegen cannot read (expected RSA, ECDSA P-256/P-384 or Ed25519, in PKCS#8, PKCS#1 or SEC1 form)"
            }
        })
    }
}

/// The public half of the private key in `text`.
pub(crate) fn key_public(text: &str) -> Result<PublicKey, KeyError> {
    let pem = pem_block(text, |l| l.ends_with("PRIVATE KEY")).ok_or(KeyError::NotAKey)?;
    match pem.label.as_str() {
        "PRIVATE KEY" => pkcs8_public(&pem.contents),
        "RSA PRIVATE KEY" => pkcs1_public(&pem.contents),
        "EC PRIVATE KEY" => sec1_public(&pem.contents),
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
        _ => Err(KeyError::Unsupported),
    }
}

fn sequence<'a>(der: &'a [u8]) -> Result<Vec<BerObject<'a>>, KeyError> {
    let (_, obj) = parse_der(der).map_err(|_| KeyError::Unsupported)?;
    obj.as_sequence()
        .cloned()
        .map_err(|_| KeyError::Unsupported)
}

/// PKCS#8: through rcgen (ring) where it can, else by its algorithm's inner form.
fn pkcs8_public(der: &[u8]) -> Result<PublicKey, KeyError> {
    if let Ok(key) = rcgen::KeyPair::try_from(der) {
        use rcgen::PublicKeyData as _;
        return PublicKey::of_spki_der(&key.subject_public_key_info()).ok_or(KeyError::Unsupported);
    }
    // PrivateKeyInfo ::= SEQUENCE { version, algorithm AlgorithmIdentifier, privateKey OCTET STRING, ... }
    let items = sequence(der)?;
    let alg = items
        .get(1)
        .and_then(|a| a.as_sequence().ok())
        .and_then(|a| a.first())
        .and_then(|o| o.as_oid().ok())
        .map(|o| o.to_id_string())
        .ok_or(KeyError::Unsupported)?;
    let inner = items
        .get(2)
        .and_then(|o| o.as_slice().ok())
        .ok_or(KeyError::Unsupported)?;
    match alg.as_str() {
        "1.2.840.113549.1.1.1" => pkcs1_public(inner),
        "1.2.840.10045.2.1" => sec1_public(inner),
        _ => Err(KeyError::Unsupported),
    }
}

/// RSAPrivateKey ::= SEQUENCE { version, modulus, publicExponent, ... }
fn pkcs1_public(der: &[u8]) -> Result<PublicKey, KeyError> {
    let items = sequence(der)?;
    let int = |i: usize| {
        items
            .get(i)
            .and_then(|o| o.as_slice().ok())
            .map(trim_zeros)
            .ok_or(KeyError::Unsupported)
    };
    Ok(PublicKey::Rsa {
        n: int(1)?,
        e: int(2)?,
    })
}

/// ECPrivateKey ::= SEQUENCE { version, privateKey, [0] parameters OPTIONAL,
/// [1] publicKey BIT STRING OPTIONAL }: the public key when the file carries it (OpenSSL,
/// cfssl and ring always write it).
fn sec1_public(der: &[u8]) -> Result<PublicKey, KeyError> {
    let items = sequence(der)?;
    for item in items.iter().skip(2) {
        let tag = &item.header;
        if tag.class() != Class::ContextSpecific || tag.tag().0 != 1 {
            continue;
        }
        let inner = item.as_slice().map_err(|_| KeyError::Unsupported)?;
        let (_, bits) = parse_der(inner).map_err(|_| KeyError::Unsupported)?;
        let bits = bits.as_slice().map_err(|_| KeyError::Unsupported)?;
        return Ok(PublicKey::Raw(bits.to_vec()));
    }
    Err(KeyError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `openssl` writes a key in the form `args` asks for; its certificate comes with it.
    fn openssl_pair(dir: &std::path::Path, genkey: &[&str], convert: &[&str]) -> (String, String) {
        let key = dir.join("key.pem");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        run(&[genkey, &["-out", "key.pem"]].concat());
        let cert = run(&[
            "req",
            "-new",
            "-x509",
            "-key",
            "key.pem",
            "-subj",
            "/CN=t/O=o",
            "-days",
            "1",
            "-addext",
            "subjectAltName=DNS:a,IP:10.0.0.1",
        ]);
        let converted = if convert.is_empty() {
            fs_err::read_to_string(&key).unwrap()
        } else {
            String::from_utf8(run(&[convert, &["-in", "key.pem"]].concat())).unwrap()
        };
        (String::from_utf8(cert).unwrap(), converted)
    }

    #[test]
    fn keys_of_every_form_match_their_certificate_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let cases: [(&[&str], &[&str], &str); 4] = [
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ],
                &[],
                "PRIVATE KEY",
            ),
            (
                &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
                &[],
                "EC PRIVATE KEY",
            ),
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ],
                &[],
                "PRIVATE KEY",
            ),
            (
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                ],
                &["rsa", "-traditional"],
                "RSA PRIVATE KEY",
            ),
        ];
        let mut publics = Vec::new();
        for (gen, convert, label) in cases {
            let (cert, key) = openssl_pair(tmp.path(), gen, convert);
            assert!(
                key.contains(&format!("BEGIN {label}")),
                "{label}: {key:.40}"
            );
            let c = Cert::parse(&cert).unwrap();
            assert_eq!(key_public(&key).unwrap(), c.public, "{label}");
            assert_eq!(
                (c.common_name.as_str(), c.organization.as_str()),
                ("t", "o")
            );
            assert_eq!(
                c.sans,
                [San::Dns("a".into()), San::Ip("10.0.0.1".parse().unwrap())]
            );
            assert!(c.signed_by(&c.spki), "self-signed");
            publics.push(c.public);
        }
        publics.dedup();
        assert_eq!(publics.len(), 4);
        assert_eq!(key_public("nothing"), Err(KeyError::NotAKey));
        assert_eq!(
            key_public("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            Err(KeyError::Encrypted)
        );
        assert!(
            Cert::parse("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_none()
        );
    }
}
