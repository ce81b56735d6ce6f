//! The API servers' encryption config (`genenckey.sh`): Secrets encrypted at rest with AES-CBC
//! under one 32-byte random key. Made once and kept with the PKI: every control node must hold
//! the same key, and a new one would make the Secrets already stored unreadable.

use anyhow::Context as _;
use base64::Engine as _;

/// A new config (0600 where it is written) with 32 random bytes as its key.
pub(crate) fn generate() -> anyhow::Result<String> {
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).context("reading 32 random bytes for the encryption key")?;
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    Ok(config(&secret))
}

/// Checks an existing config: YAML with at least one key of an encrypting provider, each
/// secret 16, 24 or 32 bytes of base64 (32 for secretbox). Returns what it holds (`aescbc key
/// key1`); an error says what was expected and never quotes the file, which holds the key.
pub(crate) fn check(text: &str) -> Result<String, &'static str> {
    const EXPECTED: &str = "expected an EncryptionConfiguration whose providers hold a key (aescbc, aesgcm or secretbox: a name and a base64 secret of 32 bytes)";
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|_| EXPECTED)?;
    let mut keys = Vec::new();
    let resources = doc
        .get("resources")
        .and_then(|r| r.as_array())
        .ok_or(EXPECTED)?;
    for r in resources {
        let providers = r
            .get("providers")
            .and_then(|p| p.as_array())
            .ok_or(EXPECTED)?;
        for p in providers {
            for kind in ["aescbc", "aesgcm", "secretbox"] {
                let Some(list) = p.get(kind) else { continue };
                let list = list
                    .get("keys")
                    .and_then(|k| k.as_array())
                    .ok_or(EXPECTED)?;
                for k in list {
                    let name = k.get("name").and_then(|n| n.as_str()).ok_or(EXPECTED)?;
                    let secret = k.get("secret").and_then(|s| s.as_str()).ok_or(EXPECTED)?;
                    let len = base64::engine::general_purpose::STANDARD
                        .decode(secret.trim())
                        .map_err(|_| EXPECTED)?
                        .len();
                    let fits = match kind {
                        "secretbox" => len == 32,
                        _ => matches!(len, 16 | 24 | 32),
                    };
                    if !fits {
                        return Err(EXPECTED);
                    }
                    keys.push(format!("{kind} key {name}"));
                }
            }
        }
    }
    if keys.is_empty() {
        return Err(EXPECTED);
    }
    Ok(keys.join(", "))
}

/// The config for `secret` (base64, which is a plain YAML scalar). The guide writes the legacy
/// `kind: EncryptionConfig`/`apiVersion: v1`; this is the form kube-apiserver documents.
fn config(secret: &str) -> String {
    format!(
        "kind: EncryptionConfiguration
apiVersion: apiserver.config.k8s.io/v1
resources:
  - resources:
      - secrets
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: {secret}
      - identity: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_config_holds_a_32_byte_key_and_checks_out() {
        let text = generate().unwrap();
        let secret = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret: "))
            .unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(generate().unwrap(), text, "random");
        assert_eq!(check(&text).unwrap(), "aescbc key key1");
        for bad in [
            "",
            "kind: EncryptionConfiguration\nresources: []\n",
            &text.replace(secret, "c2hvcnQ="),
            &text.replace(secret, "not base64!"),
        ] {
            let e = check(bad).unwrap_err();
            assert!(!e.contains(secret) && !e.contains("c2hvcnQ"), "{e}");
        }
    }
}
