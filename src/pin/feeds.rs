//! `imagegen pin --check`: where each component's upstream says what its releases are, found
//! from the component's URL template, and the newer ones.
//!
//! - `https://github.com/OWNER/REPO/releases/download/...`: the GitHub releases API
//!   (`https://api.github.com/repos/OWNER/REPO/releases`, the 30 newest; drafts and
//!   pre-releases left out);
//! - `https://dl.k8s.io/...`: `https://dl.k8s.io/release/stable.txt` and
//!   `stable-MAJOR.MINOR.txt` (the newest patch of the pinned line);
//! - `https://cloud-images.ubuntu.com/releases/CODENAME/release-{version}/...`: the serial of
//!   `.../CODENAME/release/unpacked/build-info.txt` (the newest dated build).
//!
//! Each is fetched like any file: through the mirrors in the upstream layout first
//! (`MIRROR/api.github.com/repos/...`), then upstream unless offline.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;

use crate::resolve::{self, ResolveOptions};

/// Where a component's releases are listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Feed {
    GitHub { owner: String, repo: String },
    Kubernetes,
    UbuntuCloudImages { base: String },
}

/// The feed of a component whose URL template is `template`, if imagegen knows one.
pub(super) fn feed_of(template: &str) -> Option<Feed> {
    let rest = template.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let segments: Vec<&str> = path.split('/').collect();
    match (host, segments.as_slice()) {
        ("github.com", [owner, repo, "releases", "download", ..]) => Some(Feed::GitHub {
            owner: owner.to_string(),
            repo: repo.to_string(),
        }),
        ("dl.k8s.io", _) => Some(Feed::Kubernetes),
        ("cloud-images.ubuntu.com", _) => {
            let at = segments.iter().position(|s| *s == "release-{version}")?;
            Some(Feed::UbuntuCloudImages {
                base: format!("https://{host}/{}", segments[..at].join("/")),
            })
        }
        _ => None,
    }
}

/// The numeric parts of a version (`v1.7.20` -> [1, 7, 20]); `None` for anything else (a
/// pre-release, a tag of another kind).
pub(super) fn numeric(version: &str) -> Option<Vec<u64>> {
    let v = version.strip_prefix('v').unwrap_or(version);
    v.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// What a feed says is newer than the pinned version.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Newer {
    /// The newest release of the pinned line (same major.minor), when newer.
    pub(super) same_line: Option<String>,
    /// The newest release of all, when newer (and not the same as `same_line`).
    pub(super) newest: Option<String>,
}

impl Newer {
    /// From the releases listed, against `current`.
    fn from_list(current: &str, releases: &[String]) -> Newer {
        let Some(cur) = numeric(current) else {
            return Newer::default();
        };
        let parsed: Vec<(Vec<u64>, &String)> = releases
            .iter()
            .filter_map(|r| numeric(r).map(|n| (n, r)))
            .collect();
        let newer = |keep: &dyn Fn(&[u64]) -> bool| {
            parsed
                .iter()
                .filter(|(n, _)| keep(n) && n.as_slice().cmp(&cur) == Ordering::Greater)
                .max_by(|a, b| a.0.cmp(&b.0))
                .map(|(_, r)| r.trim_start_matches('v').to_string())
        };
        let same_line = if cur.len() >= 3 {
            newer(&|n: &[u64]| n.len() >= 2 && n[..2] == cur[..2])
        } else {
            None
        };
        let newest = newer(&|_: &[u64]| true).filter(|n| Some(n) != same_line.as_ref());
        Newer { same_line, newest }
    }
}

/// Fetches text once per URL during one check (the node and server tarballs share a feed).
pub(super) struct Fetcher<'a> {
    opts: &'a ResolveOptions,
    seen: BTreeMap<String, Result<String, String>>,
}

impl<'a> Fetcher<'a> {
    pub(super) fn new(opts: &'a ResolveOptions) -> Self {
        Fetcher {
            opts,
            seen: BTreeMap::new(),
        }
    }

    fn get(&mut self, url: &str) -> Result<String> {
        let opts = self.opts;
        self.seen
            .entry(url.to_string())
            .or_insert_with(|| resolve::fetch_text(url, opts).map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(|e| anyhow!(e))
    }

    /// What `feed` says is newer than `current`.
    pub(super) fn newer(&mut self, feed: &Feed, current: &str) -> Result<Newer> {
        match feed {
            Feed::GitHub { owner, repo } => {
                #[derive(Deserialize)]
                struct Release {
                    tag_name: String,
                    #[serde(default)]
                    draft: bool,
                    #[serde(default)]
                    prerelease: bool,
                }
                let url = format!("https://api.github.com/repos/{owner}/{repo}/releases");
                let text = self.get(&url)?;
                let list: Vec<Release> = serde_json::from_str(&text)
                    .with_context(|| format!("{url} is not a list of GitHub releases"))?;
                let tags: Vec<String> = list
                    .into_iter()
                    .filter(|r| !r.draft && !r.prerelease)
                    .map(|r| r.tag_name)
                    .collect();
                Ok(Newer::from_list(current, &tags))
            }
            Feed::Kubernetes => {
                let stable = self.stable_txt("https://dl.k8s.io/release/stable.txt")?;
                let mut listed = vec![stable];
                if let Some(n) = numeric(current).filter(|n| n.len() >= 2) {
                    let line = format!("https://dl.k8s.io/release/stable-{}.{}.txt", n[0], n[1]);
                    listed.push(self.stable_txt(&line)?);
                }
                Ok(Newer::from_list(current, &listed))
            }
            Feed::UbuntuCloudImages { base } => {
                let url = format!("{base}/release/unpacked/build-info.txt");
                let text = self.get(&url)?;
                let serial = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("serial="))
                    .with_context(|| format!("{url} names no serial="))?;
                Ok(Newer::from_list(current, &[serial.trim().to_string()]))
            }
        }
    }

    /// The one version a `stable*.txt` file holds.
    fn stable_txt(&mut self, url: &str) -> Result<String> {
        let text = self.get(url)?;
        let v = text.trim();
        if numeric(v).is_none() {
            bail!("{url} holds `{v}`, not a version");
        }
        Ok(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_come_from_the_url_templates() {
        assert_eq!(
            feed_of("https://github.com/containerd/containerd/releases/download/v{version}/x.tgz"),
            Some(Feed::GitHub {
                owner: "containerd".into(),
                repo: "containerd".into()
            })
        );
        assert_eq!(
            feed_of("https://dl.k8s.io/v{version}/kubernetes-node-linux-{arch}.tar.gz"),
            Some(Feed::Kubernetes)
        );
        assert_eq!(
            feed_of(
                "https://cloud-images.ubuntu.com/releases/jammy/release-{version}/u-{arch}.img"
            ),
            Some(Feed::UbuntuCloudImages {
                base: "https://cloud-images.ubuntu.com/releases/jammy".into()
            })
        );
        assert_eq!(feed_of("http://mirror.lan/x/{version}.tgz"), None);
    }

    #[test]
    fn newer_releases_of_the_line_and_of_all() {
        let list: Vec<String> = [
            "v2.1.1",
            "v1.7.27",
            "v1.7.20",
            "v1.6.99",
            "api/v1.9.0",
            "v2.2.0-rc.1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            Newer::from_list("1.7.20", &list),
            Newer {
                same_line: Some("1.7.27".into()),
                newest: Some("2.1.1".into())
            }
        );
        assert_eq!(Newer::from_list("2.1.1", &list), Newer::default());
        assert_eq!(
            Newer::from_list("20250305", &["20250601".to_string()]),
            Newer {
                same_line: None,
                newest: Some("20250601".into())
            }
        );
    }
}
