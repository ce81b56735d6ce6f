//! The payload seam: how a node gets its binaries. The first-boot script and the runcmd are the
//! same for every strategy; only the payload block of the script and the media differ.
//!
//! - `fetch`: the node downloads each pinned artifact at first boot and checks its digest.
//! - `embed`: the role's overlay archive rides on each VM's seed ISO (label `cidata`).
//! - `shared`: one payload ISO per role, attached to every VM of that role as a second drive.

use std::fmt;

use serde::Serialize;

use crate::plan::{Plan, RolePlan, Source};
use crate::profile::{FirstBoot, Role};
use crate::resolve::mirror_url;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    Fetch,
    Embed,
    Shared,
}

impl fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadKind::Fetch => "fetch",
            PayloadKind::Embed => "embed",
            PayloadKind::Shared => "shared",
        })
    }
}

impl PayloadKind {
    /// How the overlay is packed at build time; `None` for fetch, where the nodes download the
    /// artifacts themselves and nothing is packed.
    pub fn packed(self) -> Option<PackedKind> {
        match self {
            PayloadKind::Fetch => None,
            PayloadKind::Embed => Some(PackedKind::Embed),
            PayloadKind::Shared => Some(PackedKind::Shared),
        }
    }
}

/// Where a role's overlay, packed at build time, reaches the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackedKind {
    /// On each VM's seed ISO.
    Embed,
    /// On one payload ISO per role.
    Shared,
}

/// The label of the seed media cloud-init's NoCloud looks for.
pub const SEED_LABEL: &str = "cidata";

/// Label of a role's shared payload ISO.
pub fn shared_label(role: Role) -> String {
    format!("payload-{role}")
}

/// File name of a role's shared payload ISO, in `out/<arch>/`.
pub fn shared_iso_name(role: Role) -> String {
    format!("{}.iso", shared_label(role))
}

/// File name of a role's packed overlay.
pub fn archive_name(role: Role) -> String {
    format!("overlay-{role}.cpio.gz")
}

/// One artifact the node downloads. Everything on the node is keyed by the component, never
/// by the URL's file name: two components whose URLs end in the same name stay two files.
#[derive(Clone, Debug, Serialize)]
pub struct Download {
    pub url: String,
    /// The work file it is saved as: the component's key (`containerd`, `cni-plugins`), unpacked
    /// into `<file>.d`.
    pub file: String,
    /// `sha256` or `sha512`; the script calls `<algorithm>sum`.
    pub algorithm: &'static str,
    pub hex: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FetchInstall {
    /// `whole`, `member` or `dir`.
    pub kind: &'static str,
    /// The work file of the download it comes from (its component's key).
    pub file: String,
    /// Path inside the archive (member or directory), without a leading `./`.
    pub path: String,
    pub dest: String,
    /// Octal, as `install -m` takes it.
    pub mode: String,
}

/// What the first-boot script of one role needs to know about its payload.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RolePayload {
    /// Nothing to install (the gateway today).
    None,
    Fetch {
        downloads: Vec<Download>,
        archives: Vec<String>,
        installs: Vec<FetchInstall>,
        /// `--node-mirror`: the base the download URLs are on, when not upstream.
        mirror: Option<String>,
        /// Tries per download, the wait before the first retry (doubled after each failure)
        /// and the longest wait: the profile's `first_boot`.
        attempts: u32,
        backoff_seconds: u32,
        max_backoff_seconds: u32,
    },
    Embed {
        archive: String,
        sha256: String,
        label: String,
    },
    Shared {
        archive: String,
        sha256: String,
        label: String,
    },
}

/// The fetch-at-first-boot payload of a role: its downloads from upstream, or from
/// `node_mirror` in the upstream layout, tried as `first_boot` says.
pub fn fetch(
    plan: &Plan,
    role: &RolePlan,
    first_boot: &FirstBoot,
    node_mirror: Option<&str>,
) -> anyhow::Result<RolePayload> {
    if role.installs.is_empty() {
        return Ok(RolePayload::None);
    }
    let mut downloads: Vec<Download> = Vec::new();
    let mut archives: Vec<String> = Vec::new();
    let mut installs = Vec::new();
    for rule in &role.installs {
        let Some(a) = plan.artifact(&rule.component) else {
            continue;
        };
        let work = a.component.clone();
        if !downloads.iter().any(|d| d.file == work) {
            downloads.push(Download {
                url: match node_mirror {
                    Some(m) => mirror_url(m, &a.url)?,
                    None => a.url.clone(),
                },
                file: work.clone(),
                algorithm: a.digest.algo().name(),
                hex: a.digest.hex().to_string(),
            });
        }
        let (kind, path) = match &rule.source {
            Source::Whole => ("whole", String::new()),
            Source::Member { path } => ("member", strip_dot(path)),
            Source::Dir { path, .. } => {
                let p = strip_dot(path);
                ("dir", if p.is_empty() { ".".to_string() } else { p })
            }
        };
        if kind != "whole" && !archives.contains(&work) {
            archives.push(work.clone());
        }
        installs.push(FetchInstall {
            kind,
            file: work,
            path,
            dest: rule.dest.clone(),
            mode: format!("{:04o}", rule.mode),
        });
    }
    Ok(RolePayload::Fetch {
        downloads,
        archives,
        installs,
        mirror: node_mirror.map(str::to_string),
        attempts: first_boot.fetch_attempts,
        backoff_seconds: first_boot.fetch_backoff_seconds,
        max_backoff_seconds: FirstBoot::MAX_BACKOFF_SECONDS,
    })
}

/// The payload of a role whose overlay was packed at build time.
pub fn packed(kind: PackedKind, role: Role, archive_sha256_hex: &str) -> RolePayload {
    let archive = archive_name(role);
    let sha256 = archive_sha256_hex.to_string();
    match kind {
        PackedKind::Embed => RolePayload::Embed {
            archive,
            sha256,
            label: SEED_LABEL.to_string(),
        },
        PackedKind::Shared => RolePayload::Shared {
            archive,
            sha256,
            label: shared_label(role),
        },
    }
}

fn strip_dot(p: &str) -> String {
    let p = p.strip_prefix("./").unwrap_or(p);
    p.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{self, Arch};

    #[test]
    fn fetch_lists_each_download_once() {
        let prof = profile::parse(profile::BUILTIN_YAML, "builtin").unwrap();
        let plan = crate::plan::plan(&prof, Arch::Arm64).unwrap();
        let role = plan.role(Role::Worker).unwrap();
        let RolePayload::Fetch {
            downloads,
            archives,
            installs,
            ..
        } = fetch(&plan, role, &FirstBoot::DEFAULT, None).unwrap()
        else {
            panic!("expected a fetch payload");
        };
        assert_eq!(downloads.len(), 5);
        let node = downloads
            .iter()
            .find(|d| d.file == "kubernetes-node")
            .unwrap();
        assert_eq!(node.algorithm, "sha512");
        assert!(node.url.ends_with("/kubernetes-node-linux-arm64.tar.gz"));
        assert!(!archives.contains(&"runc".to_string()));
        assert!(installs
            .iter()
            .any(|i| i.dest == "/usr/local/bin/kube-proxy" && i.mode == "0755"));
    }

    #[test]
    fn two_urls_with_one_file_name_are_two_downloads() {
        let text = profile::BUILTIN_YAML
            .replace(
                "download/v{version}/containerd-{version}-linux-{arch}.tar.gz",
                "download/v{version}/release.tar.gz",
            )
            .replace(
                "download/v{version}/crictl-v{version}-linux-{arch}.tar.gz",
                "download/v{version}/release.tar.gz",
            );
        let prof = profile::parse(&text, "same-name").unwrap();
        let plan = crate::plan::plan(&prof, Arch::Amd64).unwrap();
        let RolePayload::Fetch {
            downloads,
            archives,
            installs,
            ..
        } = fetch(
            &plan,
            plan.role(Role::Worker).unwrap(),
            &FirstBoot::DEFAULT,
            None,
        )
        .unwrap()
        else {
            panic!("expected a fetch payload");
        };
        let of = |work: &str| downloads.iter().filter(|d| d.file == work).count();
        assert_eq!((of("containerd"), of("crictl")), (1, 1));
        assert!(archives.contains(&"containerd".into()) && archives.contains(&"crictl".into()));
        let crictl = installs
            .iter()
            .find(|i| i.dest == "/usr/local/bin/crictl")
            .unwrap();
        assert_eq!(crictl.file, "crictl");
    }

    #[test]
    fn a_node_mirror_takes_the_upstream_layout() {
        let prof = profile::parse(profile::BUILTIN_YAML, "builtin").unwrap();
        let plan = crate::plan::plan(&prof, Arch::Amd64).unwrap();
        let role = plan.role(Role::Worker).unwrap();
        let RolePayload::Fetch { downloads, .. } = fetch(
            &plan,
            role,
            &FirstBoot::DEFAULT,
            Some("http://192.168.1.1:8080/files"),
        )
        .unwrap() else {
            panic!("expected a fetch payload");
        };
        let runc = downloads.iter().find(|d| d.file == "runc").unwrap();
        assert_eq!(
            runc.url,
            "http://192.168.1.1:8080/files/github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64"
        );
    }
}
