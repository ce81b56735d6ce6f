//! What the CLI reads besides its arguments: the SSH public keys for the VMs (`--ssh-key` or
//! `~/.ssh/id_*.pub`), `SOURCE_DATE_EPOCH`, the default cache directory, and a text on stdin
//! (`profile check -`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use camino::{Utf8Path, Utf8PathBuf};

use crate::fsutil;
use crate::resolve;

/// Timestamp of every packed file and ISO date when `SOURCE_DATE_EPOCH` is unset
/// (2024-01-01T00:00:00Z): a constant, so builds are reproducible by default.
const DEFAULT_EPOCH: u64 = 1_704_067_200;

/// Reads `SOURCE_DATE_EPOCH` (reproducible-builds.org), defaulting to [`DEFAULT_EPOCH`].
pub(super) fn epoch_from_env() -> anyhow::Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!("SOURCE_DATE_EPOCH: expected whole seconds since 1970, got `{v}`")
        }),
        _ => Ok(DEFAULT_EPOCH),
    }
}

/// All of stdin as UTF-8 text, at most as large as a file of text may be
/// ([`fsutil::TEXT_LIMIT`]).
pub(super) fn read_stdin() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(fsutil::TEXT_LIMIT + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > fsutil::TEXT_LIMIT {
        anyhow::bail!("larger than {} MiB", fsutil::TEXT_LIMIT >> 20);
    }
    Ok(text)
}

/// `--cache DIR` when given, else the default cache directory (`$IMAGEGEN_CACHE`, then the XDG
/// or platform cache directory).
pub(super) fn cache_dir(flag: Option<&Utf8Path>) -> anyhow::Result<PathBuf> {
    resolve::cache_dir(flag.map(Utf8Path::as_std_path))
}

/// Reads the public keys for `ssh_authorized_keys`: the given files, or the user's
/// `~/.ssh/id_*.pub`. Returns the keys and, when there are none, a warning to print.
pub(super) fn ssh_keys(
    files: &[Utf8PathBuf],
    home: Option<&Path>,
) -> anyhow::Result<(Vec<String>, Option<String>)> {
    let paths = if files.is_empty() {
        home.map(default_key_files).unwrap_or_default()
    } else {
        files.to_vec()
    };
    let mut keys = Vec::new();
    for p in &paths {
        let text = fsutil::read_to_string(p.as_std_path()).map_err(|e| {
            anyhow::anyhow!(
                "--ssh-key {p}: cannot read the public key: {}",
                fsutil::os_reason(&e, p.as_std_path())
            )
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            check_ssh_key(line).with_context(|| format!("--ssh-key {p}:{}", i + 1))?;
            keys.push(line.to_string());
        }
    }
    let warning = keys.is_empty().then(|| {
        "no SSH public key given (--ssh-key FILE) and none found in ~/.ssh/id_*.pub: the VMs will accept no SSH login"
            .to_string()
    });
    Ok((keys, warning))
}

/// `~/.ssh/id_*.pub`, sorted; none when `~/.ssh` cannot be listed (the warning says so).
fn default_key_files(home: &Path) -> Vec<Utf8PathBuf> {
    let Ok(entries) = fs_err::read_dir(home.join(".ssh")) else {
        return Vec::new();
    };
    let mut found: Vec<Utf8PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Utf8PathBuf::from_path_buf(e.path()).ok())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.starts_with("id_") && n.ends_with(".pub"))
        })
        .collect();
    found.sort();
    found
}

fn check_ssh_key(line: &str) -> anyhow::Result<()> {
    // First, so a private key given by mistake is named as such.
    if line.contains("PRIVATE KEY") {
        anyhow::bail!("this is a private key; give the .pub file");
    }
    let mut parts = line.split_whitespace();
    let kind = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let known =
        kind.starts_with("ssh-") || kind.starts_with("ecdsa-sha2-") || kind.starts_with("sk-");
    if !known || body.len() < 16 {
        anyhow::bail!(
            "expected an OpenSSH public key line (`ssh-ed25519 AAAA... comment`), got `{}`",
            line.chars().take(40).collect::<String>()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_is_named_as_such() {
        let err = check_ssh_key("-----BEGIN OPENSSH PRIVATE KEY-----").unwrap_err();
        assert!(err.to_string().contains("this is a private key"), "{err}");
        let err = check_ssh_key("not a key").unwrap_err();
        assert!(
            err.to_string().contains("expected an OpenSSH public key"),
            "{err}"
        );
        check_ssh_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake user@host").unwrap();
    }
}
