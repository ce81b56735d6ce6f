//! Certificates and kubeconfigs for the nodes.
//!
//! Two modes. `Provided`: a directory with the guide's file names (`ca.pem`, `{vm}.pem`,
//! `{vm}-key.pem`, `{vm}.kubeconfig`, `kube-proxy.kubeconfig`), used as is. `Managed`: imagegen
//! keeps a CA and per-node credentials in a directory of its own, generates what is missing and
//! reuses what exists, because a new CA would cut off every node already running.
//! Keys and kubeconfigs are written 0600 and never printed.

use std::collections::BTreeMap;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use camino::{Utf8Path, Utf8PathBuf};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::Serialize;

use crate::fsutil;
use crate::plan::Plan;

/// The name kubeconfigs give the cluster.
pub const CLUSTER_NAME: &str = "kubernetes-the-harder-way";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkiMode {
    /// `--pki DIR`: the user's files, never written.
    Provided,
    /// imagegen's own directory: generate what is missing, reuse the rest.
    Managed,
}

/// Credentials of one node. `Debug` is not derived so a key cannot end up in a log line.
#[derive(Clone)]
pub struct NodeCreds {
    pub cert_pem: String,
    pub key_pem: String,
    pub kubeconfig: String,
}

#[derive(Clone)]
pub struct Pki {
    pub dir: Utf8PathBuf,
    pub ca_pem: String,
    pub nodes: BTreeMap<String, NodeCreds>,
    pub kube_proxy_kubeconfig: String,
    /// Files this run created (for the build summary; names only).
    pub created: Vec<String>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Loads (and in managed mode completes) the PKI for every Kubernetes node of the plan.
pub fn prepare(dir: &Utf8Path, mode: PkiMode, plan: &Plan) -> anyhow::Result<Pki> {
    let k8s: Vec<&str> = plan
        .vms
        .iter()
        .filter(|v| v.role.is_kubernetes_node())
        .map(|v| v.name.as_str())
        .collect();
    match mode {
        PkiMode::Provided => load_provided(dir, &k8s),
        PkiMode::Managed => managed(dir, plan, &k8s),
    }
}

fn read(dir: &Utf8Path, name: &str, what: &str) -> anyhow::Result<String> {
    let p = dir.join(name);
    fsutil::read_to_string(p.as_std_path()).with_context(|| {
        format!("--pki {dir}: expected {what} in {p} (the guide's file names: ca.pem, {{vm}}.pem, {{vm}}-key.pem, {{vm}}.kubeconfig, kube-proxy.kubeconfig)")
    })
}

fn load_provided(dir: &Utf8Path, nodes: &[&str]) -> anyhow::Result<Pki> {
    let ca_pem = read(dir, "ca.pem", "the cluster CA certificate")?;
    check_pem(&ca_pem, "CERTIFICATE", &dir.join("ca.pem"))?;
    let mut creds = BTreeMap::new();
    for n in nodes {
        let cert_pem = read(dir, &format!("{n}.pem"), "the node certificate")?;
        check_pem(&cert_pem, "CERTIFICATE", &dir.join(format!("{n}.pem")))?;
        let key_pem = read(dir, &format!("{n}-key.pem"), "the node private key")?;
        check_pem(&key_pem, "PRIVATE KEY", &dir.join(format!("{n}-key.pem")))?;
        let kubeconfig = read(dir, &format!("{n}.kubeconfig"), "the node kubeconfig")?;
        creds.insert(
            n.to_string(),
            NodeCreds {
                cert_pem,
                key_pem,
                kubeconfig,
            },
        );
    }
    let kube_proxy_kubeconfig = read(dir, "kube-proxy.kubeconfig", "the kube-proxy kubeconfig")?;
    Ok(Pki {
        dir: dir.to_owned(),
        ca_pem,
        nodes: creds,
        kube_proxy_kubeconfig,
        created: Vec::new(),
    })
}

fn check_pem(text: &str, kind: &str, path: &Utf8Path) -> anyhow::Result<()> {
    // "PRIVATE KEY" also matches "EC PRIVATE KEY" and "RSA PRIVATE KEY".
    if !text.contains("-----BEGIN ") || !text.lines().any(|l| l.contains(kind)) {
        bail!("{path}: expected a PEM {kind}");
    }
    Ok(())
}

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn managed(dir: &Utf8Path, plan: &Plan, nodes: &[&str]) -> anyhow::Result<Pki> {
    fsutil::create_private_dir(dir)?;
    let mut created = Vec::new();
    let ca = load_or_create_ca(dir, &mut created)?;
    let server = &plan.cluster.api_endpoint;
    let mut creds = BTreeMap::new();
    for name in nodes {
        let vm = plan
            .vms
            .iter()
            .find(|v| v.name == *name)
            .context("internal: node missing from plan")?;
        let (cert_pem, key_pem) = load_or_issue(
            dir,
            name,
            &format!("system:node:{name}"),
            "system:nodes",
            vec![
                SanType::DnsName(name.to_string().try_into()?),
                SanType::IpAddress(vm.address.into()),
            ],
            &ca,
            &mut created,
        )?;
        let kubeconfig = kubeconfig(
            &ca.pem,
            server,
            &format!("system:node:{name}"),
            &cert_pem,
            &key_pem,
        )?;
        fsutil::write_if_changed(&dir.join(format!("{name}.kubeconfig")), &kubeconfig, 0o600)?;
        creds.insert(
            name.to_string(),
            NodeCreds {
                cert_pem,
                key_pem,
                kubeconfig,
            },
        );
    }
    let (kp_cert, kp_key) = load_or_issue(
        dir,
        "kube-proxy",
        "system:kube-proxy",
        "system:node-proxier",
        Vec::new(),
        &ca,
        &mut created,
    )?;
    let kube_proxy_kubeconfig =
        kubeconfig(&ca.pem, server, "system:kube-proxy", &kp_cert, &kp_key)?;
    fsutil::write_if_changed(
        &dir.join("kube-proxy.kubeconfig"),
        &kube_proxy_kubeconfig,
        0o600,
    )?;
    Ok(Pki {
        dir: dir.to_owned(),
        ca_pem: ca.pem,
        nodes: creds,
        kube_proxy_kubeconfig,
        created,
    })
}

fn validity(params: &mut CertificateParams, years: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365 * years);
}

fn load_or_create_ca(dir: &Utf8Path, created: &mut Vec<String>) -> anyhow::Result<Ca> {
    let cert_path = dir.join("ca.pem");
    let key_path = dir.join("ca-key.pem");
    if cert_path.exists() || key_path.exists() {
        let pem = fsutil::read_to_string(cert_path.as_std_path())
            .with_context(|| format!("{dir} has a CA key but no usable ca.pem"))?;
        let key_pem = fsutil::read_to_string(key_path.as_std_path())
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
    validity(&mut params, 10);
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

fn load_or_issue(
    dir: &Utf8Path,
    file_stem: &str,
    common_name: &str,
    organization: &str,
    sans: Vec<SanType>,
    ca: &Ca,
    created: &mut Vec<String>,
) -> anyhow::Result<(String, String)> {
    let cert_path = dir.join(format!("{file_stem}.pem"));
    let key_path = dir.join(format!("{file_stem}-key.pem"));
    if cert_path.exists() && key_path.exists() {
        let cert = fsutil::read_to_string(cert_path.as_std_path())?;
        let key = fsutil::read_to_string(key_path.as_std_path())?;
        check_pem(&cert, "CERTIFICATE", &cert_path)?;
        check_pem(&key, "PRIVATE KEY", &key_path)?;
        return Ok((cert, key));
    }
    let key = KeyPair::generate().with_context(|| format!("generating a key for {file_stem}"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    params.distinguished_name = dn;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    validity(&mut params, 5);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .with_context(|| format!("signing the certificate for {file_stem}"))?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    fsutil::write_atomic(&key_path, key_pem.as_bytes(), 0o600)?;
    fsutil::write_atomic(&cert_path, cert_pem.as_bytes(), 0o644)?;
    created.extend([format!("{file_stem}.pem"), format!("{file_stem}-key.pem")]);
    Ok((cert_pem, key_pem))
}

#[derive(Serialize)]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'a str,
    clusters: Vec<Named<ClusterEntry>>,
    users: Vec<Named<UserEntry>>,
    contexts: Vec<Named<ContextEntry<'a>>>,
    #[serde(rename = "current-context")]
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize)]
struct ClusterEntry {
    cluster: ClusterData,
}

#[derive(Serialize)]
struct ClusterData {
    #[serde(rename = "certificate-authority-data")]
    ca_data: String,
    server: String,
}

#[derive(Serialize)]
struct UserEntry {
    user: UserData,
}

#[derive(Serialize)]
struct UserData {
    #[serde(rename = "client-certificate-data")]
    cert_data: String,
    #[serde(rename = "client-key-data")]
    key_data: String,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextData<'a>,
}

#[derive(Serialize)]
struct ContextData<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// A kubeconfig with embedded credentials, as `kubectl config set-* --embed-certs` writes.
pub fn kubeconfig(
    ca_pem: &str,
    server: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: CLUSTER_NAME.into(),
            inner: ClusterEntry {
                cluster: ClusterData {
                    ca_data: b64(ca_pem),
                    server: server.into(),
                },
            },
        }],
        users: vec![Named {
            name: user.into(),
            inner: UserEntry {
                user: UserData {
                    cert_data: b64(cert_pem),
                    key_data: b64(key_pem),
                },
            },
        }],
        contexts: vec![Named {
            name: "default".into(),
            inner: ContextEntry {
                context: ContextData {
                    cluster: CLUSTER_NAME,
                    user,
                },
            },
        }],
        current_context: "default",
    };
    serde_saphyr::to_string(&doc).context("serializing a kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{self, Arch};
    use std::os::unix::fs::PermissionsExt;

    fn plan() -> Plan {
        let p = profile::parse(profile::BUILTIN_YAML, "builtin").unwrap();
        crate::plan::plan(&p, Arch::Amd64).unwrap()
    }

    #[test]
    fn generates_once_then_reuses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap().join("pki");
        let first = prepare(&dir, PkiMode::Managed, &plan()).unwrap();
        assert!(first.created.contains(&"ca.pem".to_string()));
        assert_eq!(first.nodes.len(), 6);
        let mode = |f: &str| fs_err::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("ca-key.pem"), 0o600);
        assert_eq!(mode("worker0-key.pem"), 0o600);
        assert_eq!(mode("worker0.kubeconfig"), 0o600);
        assert_eq!(mode("ca.pem"), 0o644);
        let second = prepare(&dir, PkiMode::Managed, &plan()).unwrap();
        assert!(second.created.is_empty());
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(
            first.nodes["worker0"].kubeconfig,
            second.nodes["worker0"].kubeconfig
        );
        // The managed directory is a valid --pki directory.
        let provided = prepare(&dir, PkiMode::Provided, &plan()).unwrap();
        assert_eq!(provided.ca_pem, first.ca_pem);
    }

    #[test]
    fn node_cert_is_signed_by_the_ca_with_the_guide_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let pki = prepare(&dir, PkiMode::Managed, &plan()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.join("ca.pem"))
            .arg(dir.join("worker1.pem"))
            .output();
        if let Ok(out) = out {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::process::Command::new("openssl")
                .args([
                    "x509",
                    "-noout",
                    "-subject",
                    "-ext",
                    "subjectAltName",
                    "-in",
                ])
                .arg(dir.join("worker1.pem"))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&text.stdout);
            assert!(text.contains("CN = system:node:worker1"), "{text}");
            assert!(text.contains("O = system:nodes"), "{text}");
            assert!(text.contains("IP Address:192.168.1.15"), "{text}");
            assert!(text.contains("DNS:worker1"), "{text}");
        }
        assert!(pki.nodes["worker1"]
            .kubeconfig
            .contains("server: https://kubernetes:6443"));
    }

    #[test]
    fn provided_dir_missing_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap().to_owned();
        let err = prepare(&dir, PkiMode::Provided, &plan()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("ca.pem"), "{msg}");
    }
}
