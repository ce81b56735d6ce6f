//! Where each component's upstream publishes the checksums of its release files, as data, and
//! how to read a checksum file (a bare digest, `sha256sum` lines, or BSD `SHA256 (f) = d` lines).
//!
//! The names, per project (checked against their release pages and kubespray's
//! `component_hash_update`): containerd puts `<file>.sha256sum` beside each archive; runc one
//! `runc.sha256sum` for all its binaries; cri-tools `<file>.sha256`; the CNI plugins
//! `<file>.sha256` and `<file>.sha512`; dl.k8s.io `<file>.sha256` and `<file>.sha512` beside
//! every file; etcd one `SHA256SUMS` per release; Ubuntu's cloud images one `SHA256SUMS` per
//! dated release directory.

use anyhow::{bail, Result};

use crate::digest::{Algo, Digest};
use crate::profile::ComponentKey;

/// Where a checksum file sits, relative to the release file it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum At {
    /// The release file's URL with this suffix (`.sha256`).
    Beside(&'static str),
    /// This file in the release file's directory (`SHA256SUMS`).
    InDir(&'static str),
}

/// One checksum file a component publishes: its algorithm and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Published {
    pub(super) algo: Algo,
    pub(super) at: At,
}

const fn sha256(at: At) -> Published {
    Published {
        algo: Algo::Sha256,
        at,
    }
}

const fn sha512(at: At) -> Published {
    Published {
        algo: Algo::Sha512,
        at,
    }
}

/// The checksum files `key`'s upstream publishes, the preferred one first.
pub(super) fn published(key: ComponentKey) -> &'static [Published] {
    use At::{Beside, InDir};
    const CONTAINERD: &[Published] = &[sha256(Beside(".sha256sum"))];
    const RUNC: &[Published] = &[sha256(InDir("runc.sha256sum"))];
    const CRICTL: &[Published] = &[sha256(Beside(".sha256"))];
    const CNI: &[Published] = &[sha256(Beside(".sha256")), sha512(Beside(".sha512"))];
    const KUBERNETES: &[Published] = &[sha512(Beside(".sha512")), sha256(Beside(".sha256"))];
    const SHA256SUMS: &[Published] = &[sha256(InDir("SHA256SUMS"))];
    match key {
        ComponentKey::Containerd => CONTAINERD,
        ComponentKey::Runc => RUNC,
        ComponentKey::Crictl => CRICTL,
        ComponentKey::CniPlugins => CNI,
        ComponentKey::KubernetesNode | ComponentKey::KubernetesServer => KUBERNETES,
        ComponentKey::Etcd | ComponentKey::BaseImage => SHA256SUMS,
    }
}

/// The checksum file of `key` for the release file at `url` with a digest of `algo` (the one
/// the profile pins, or the preferred one for a new pin): its URL, or why there is none.
pub(super) fn sums_url(key: ComponentKey, url: &str, algo: Option<Algo>) -> Result<(String, Algo)> {
    let choices = published(key);
    let p = match algo {
        Some(a) => choices.iter().find(|p| p.algo == a),
        None => choices.first(),
    };
    let Some(p) = p else {
        bail!(
            "{key} publishes no {} checksums (only {}); pin it with {} instead",
            algo.map_or("", |a| a.name()),
            choices
                .iter()
                .map(|p| p.algo.name())
                .collect::<Vec<_>>()
                .join(", "),
            choices[0].algo.name()
        );
    };
    let sums = match p.at {
        At::Beside(suffix) => format!("{url}{suffix}"),
        At::InDir(name) => match url.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{name}"),
            None => bail!("`{url}` has no directory"),
        },
    };
    Ok((sums, p.algo))
}

/// The `algo` digest of `file_name` in the checksum file `text`: a file holding one digest (and
/// maybe a name), `sha256sum` lines (`<hex>  <name>`, `<hex> *<name>`), or BSD lines
/// (`SHA256 (<name>) = <hex>`).
pub(super) fn digest_in(text: &str, file_name: &str, algo: Algo) -> Result<Digest> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut found = Vec::new();
    for line in &lines {
        let (hex, name) =
            if let Some(rest) = line.strip_prefix(&format!("{} (", algo.name().to_uppercase())) {
                match rest.split_once(") = ") {
                    Some((name, hex)) => (hex.trim(), Some(name)),
                    None => continue,
                }
            } else {
                let mut words = line.split_whitespace();
                let hex = words.next().unwrap_or("");
                (hex, words.next().map(|n| n.trim_start_matches('*')))
            };
        let named = match name {
            Some(n) => n.trim_start_matches("./") == file_name,
            // A bare digest: the file holds the checksum of one file, this one.
            None => lines.len() == 1,
        };
        if named {
            found.push(hex);
        }
    }
    let hex = match found.as_slice() {
        [one] => *one,
        [] => bail!("it lists no checksum for {file_name}"),
        _ if found.windows(2).all(|w| w[0] == w[1]) => found[0],
        _ => bail!("it lists different checksums for {file_name}"),
    };
    Digest::parse(&format!("{}:{}", algo.name(), hex.to_ascii_lowercase()))
        .map_err(|e| anyhow::anyhow!("its checksum for {file_name} is not one: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "cf80cd305f7d1c23aaf0c57bc1c1e37089cad9130d533db6fe968cdebd16c759";

    #[test]
    fn checksum_files_in_every_published_format() {
        let other = "0".repeat(64);
        for text in [
            format!("{H}\n"),
            format!("{H}  containerd-1.7.20-linux-arm64.tar.gz\n"),
            format!("{other}  runc.amd64\n{H} *containerd-1.7.20-linux-arm64.tar.gz\n"),
            format!("{other}  x\n{H}  ./containerd-1.7.20-linux-arm64.tar.gz\n"),
            format!(
                "SHA256 (containerd-1.7.20-linux-arm64.tar.gz) = {}\n",
                H.to_uppercase()
            ),
        ] {
            let d = digest_in(&text, "containerd-1.7.20-linux-arm64.tar.gz", Algo::Sha256);
            assert_eq!(d.unwrap().to_string(), format!("sha256:{H}"), "{text}");
        }
        let e = digest_in(&format!("{H}  other\n"), "mine", Algo::Sha256).unwrap_err();
        assert!(e.to_string().contains("no checksum for mine"), "{e}");
        let e = digest_in(&format!("{H}\n{H}\n"), "mine", Algo::Sha256).unwrap_err();
        assert!(e.to_string().contains("no checksum for mine"), "{e}");
        let e = digest_in("abc  mine\n", "mine", Algo::Sha256).unwrap_err();
        assert!(e.to_string().contains("is not one"), "{e}");
    }

    #[test]
    fn where_each_component_publishes_its_checksums() {
        let k = "https://dl.k8s.io/v1.32.0/kubernetes-node-linux-arm64.tar.gz";
        assert_eq!(
            sums_url(ComponentKey::KubernetesNode, k, Some(Algo::Sha512)).unwrap(),
            (format!("{k}.sha512"), Algo::Sha512)
        );
        let r = "https://github.com/opencontainers/runc/releases/download/v1.2.0/runc.arm64";
        assert_eq!(
            sums_url(ComponentKey::Runc, r, None).unwrap().0,
            "https://github.com/opencontainers/runc/releases/download/v1.2.0/runc.sha256sum"
        );
        let e = sums_url(ComponentKey::Etcd, r, Some(Algo::Sha512)).unwrap_err();
        assert!(
            e.to_string().contains("publishes no sha512 checksums"),
            "{e}"
        );
    }
}
