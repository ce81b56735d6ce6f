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

/// What a kubeconfig says, for the checks: the server and embedded credentials of its current
/// context (the PEM text the `*-data` fields hold). `Debug` is not derived: it holds a key.
pub(crate) struct View {
    pub server: String,
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
}

/// Reads a kubeconfig; `None` when it is not YAML with a cluster and a user. Never says why in
/// more detail: a parser's message could quote the embedded key.
pub(crate) fn read(text: &str) -> Option<View> {
    let doc: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    let named = |list: &str, name: Option<&str>, field: &str| -> Option<serde_json::Value> {
        let items = doc.get(list)?.as_array()?;
        let item = match name {
            Some(n) => items
                .iter()
                .find(|i| i.get("name").and_then(|v| v.as_str()) == Some(n)),
            None => items.first(),
        }?;
        item.get(field).cloned()
    };
    let current = doc.get("current-context").and_then(|v| v.as_str());
    let context = named("contexts", current.filter(|c| !c.is_empty()), "context");
    let pick = |key: &str| {
        context
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let (cluster_name, user_name) = (pick("cluster"), pick("user"));
    let cluster = named("clusters", cluster_name.as_deref(), "cluster")?;
    let user = named("users", user_name.as_deref(), "user")?;
    let data = |v: &serde_json::Value, key: &str| -> Option<String> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(v.get(key)?.as_str()?.trim())
            .ok()?;
        String::from_utf8(b).ok()
    };
    Some(View {
        server: cluster.get("server")?.as_str()?.to_string(),
        ca_pem: data(&cluster, "certificate-authority-data"),
        cert_pem: data(&user, "client-certificate-data"),
        key_pem: data(&user, "client-key-data"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_render_writes_read_gives_back() {
        let text = render("CA\n", "https://k:6443", "system:node:w", "CERT\n", "KEY\n").unwrap();
        let v = read(&text).unwrap();
        assert_eq!(v.server, "https://k:6443");
        assert_eq!(v.ca_pem.as_deref(), Some("CA\n"));
        assert_eq!(v.cert_pem.as_deref(), Some("CERT\n"));
        assert_eq!(v.key_pem.as_deref(), Some("KEY\n"));
        assert!(read("not: [a kubeconfig").is_none());
        assert!(read("clusters: []\n").is_none());
    }

    #[test]
    fn the_current_context_decides() {
        // As `kubectl config set-*` writes it: the wanted entries are not the first ones.
        let text = "apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: 'https://other:1'}
- name: kubenet
  cluster: {server: 'https://kubernetes:6443', certificate-authority-data: Q0E=}
users:
- name: x
  user: {}
- name: system:node:worker0
  user: {client-certificate-data: Q0VSVA==, client-key-data: S0VZ}
contexts:
- name: default
  context: {cluster: kubenet, user: 'system:node:worker0'}
current-context: default
";
        let v = read(text).unwrap();
        assert_eq!(v.server, "https://kubernetes:6443");
        assert_eq!(v.ca_pem.as_deref(), Some("CA"));
        assert_eq!(v.cert_pem.as_deref(), Some("CERT"));
        assert_eq!(v.key_pem.as_deref(), Some("KEY"));
    }
}
