//! The API servers' encryption config (`genenckey.sh`): Secrets encrypted at rest with AES-CBC
//! under one 32-byte random key. Made once and kept with the PKI: every control node must hold
//! the same key, and a new one would make the Secrets already stored unreadable.

use anyhow::Context as _;
use base64::Engine as _;
use camino::Utf8Path;

use super::identities::ENCRYPTION_CONFIG;
use crate::fsutil;

/// Creates `dir/encryption-config.yaml` (0600) unless it exists.
pub(crate) fn create_if_missing(dir: &Utf8Path, created: &mut Vec<String>) -> anyhow::Result<()> {
    let path = dir.join(ENCRYPTION_CONFIG);
    if path.exists() {
        return Ok(());
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).context("reading 32 random bytes for the encryption key")?;
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    fsutil::write_atomic(&path, config(&secret).as_bytes(), 0o600)?;
    created.push(ENCRYPTION_CONFIG.to_string());
    Ok(())
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
    fn made_once_with_a_32_byte_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let mut created = Vec::new();
        create_if_missing(dir, &mut created).unwrap();
        assert_eq!(created, [ENCRYPTION_CONFIG]);
        let text = fs_err::read_to_string(dir.join(ENCRYPTION_CONFIG)).unwrap();
        let secret = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret: "))
            .unwrap();
        let key = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .unwrap();
        assert_eq!(key.len(), 32);
        create_if_missing(dir, &mut created).unwrap();
        assert_eq!(created.len(), 1, "reused, not made again");
        assert_eq!(
            fs_err::read_to_string(dir.join(ENCRYPTION_CONFIG)).unwrap(),
            text
        );
    }
}
