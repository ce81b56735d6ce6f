//! Kubeconfigs with embedded credentials (`kubectl config set-* --embed-certs`), built as data
//! and serialized, so no value can break the YAML.

use anyhow::Context as _;
use base64::Engine as _;
use serde::Serialize;

/// The name kubeconfigs give the cluster.
pub const CLUSTER_NAME: &str = "kubernetes-the-harder-way";

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
pub(crate) fn render(
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
