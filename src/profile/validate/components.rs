//! The `components` section: each pinned component has a version, an http(s) URL template
//! with known placeholders only, and a well-formed digest per known architecture; the CNI
//! plugins are there when the cluster needs them, etcd and the Kubernetes server binaries when
//! it has control nodes, and the server binaries are of the kubelets' release.

use std::collections::BTreeMap;

use super::Checker;
use crate::digest::Digest;
use crate::profile::file::{ComponentsFile, S};
use crate::profile::{Arch, Cni, Component, ComponentKey, URL_PLACEHOLDERS};

/// The checked components, in profile order, and the CNI spec version when the CNI plugins are
/// pinned.
pub(super) struct Components {
    pub list: Vec<Component>,
    pub cni_spec_version: Option<String>,
}

pub(super) fn check(
    c: &mut Checker,
    cp: &ComponentsFile,
    cni: Cni,
    has_control: bool,
) -> Components {
    let mut list = Vec::new();
    for (key, f) in [
        (ComponentKey::Containerd, &cp.containerd),
        (ComponentKey::Runc, &cp.runc),
        (ComponentKey::Crictl, &cp.crictl),
    ] {
        list.push(component(c, key, &f.version, &f.url, &f.digests, &f.sizes));
    }
    let mut cni_spec_version = None;
    if let Some(f) = &cp.cni_plugins {
        list.push(component(
            c,
            ComponentKey::CniPlugins,
            &f.version,
            &f.url,
            &f.digests,
            &f.sizes,
        ));
        check_spec_version(c, &f.spec_version);
        cni_spec_version = Some(f.spec_version.value.clone());
    } else if cni == Cni::Bridge {
        c.unplaced(
            "components.cni-plugins",
            "required when cluster.cni is bridge (set cluster.cni: cilium to go without)",
        );
    }
    let node = &cp.kubernetes_node;
    list.push(component(
        c,
        ComponentKey::KubernetesNode,
        &node.version,
        &node.url,
        &node.digests,
        &node.sizes,
    ));
    for (key, f) in [
        (ComponentKey::KubernetesServer, &cp.kubernetes_server),
        (ComponentKey::Etcd, &cp.etcd),
    ] {
        match f {
            Some(f) => list.push(component(c, key, &f.version, &f.url, &f.digests, &f.sizes)),
            None if has_control => c.unplaced(
                format!("components.{key}"),
                "required when the profile has control nodes (they install it)",
            ),
            None => {}
        }
    }
    if let Some(f) = &cp.base_image {
        list.push(component(
            c,
            ComponentKey::BaseImage,
            &f.version,
            &f.url,
            &f.digests,
            &f.sizes,
        ));
    }
    if let Some(server) = &cp.kubernetes_server {
        // One release: the API server, the controllers and the kubelets must agree.
        if server.version.value != node.version.value {
            c.at(
                &server.version,
                "components.kubernetes-server.version",
                format!(
                    "must equal components.kubernetes-node.version ({}), got `{}`: the control plane and the kubelets come from one Kubernetes release",
                    node.version.value, server.version.value
                ),
            );
        }
    }
    Components {
        list,
        cni_spec_version,
    }
}

/// One component, with the digests that parsed (the others are recorded as problems).
fn component(
    c: &mut Checker,
    key: ComponentKey,
    version: &S<String>,
    url: &S<String>,
    digests: &BTreeMap<String, S<String>>,
    sizes: &BTreeMap<String, S<u64>>,
) -> Component {
    let base = format!("components.{key}");
    check_version(c, version, &format!("{base}.version"));
    check_url_template(c, url, &format!("{base}.url"));
    let mut pinned = BTreeMap::new();
    for (arch, d) in digests {
        let arch_key = match arch.as_str() {
            "arm64" => Arch::Arm64,
            "amd64" => Arch::Amd64,
            other => {
                c.at(
                    d,
                    format!("{base}.digests.{other}"),
                    format!("unknown architecture `{other}` (expected arm64 or amd64)"),
                );
                continue;
            }
        };
        match Digest::parse(&d.value) {
            Ok(dg) => {
                pinned.insert(arch_key, dg);
            }
            Err(e) => c.at(d, format!("{base}.digests.{arch}"), e),
        }
    }
    if digests.is_empty() {
        c.at(
            url,
            format!("{base}.digests"),
            "expected a digest for at least one architecture",
        );
    }
    Component {
        key,
        version: version.value.clone(),
        url_template: url.value.clone(),
        sizes: check_sizes(c, &base, sizes, &pinned),
        digests: pinned,
    }
}

/// The pinned sizes: a known architecture that has a digest, and at least one byte.
fn check_sizes(
    c: &mut Checker,
    base: &str,
    sizes: &BTreeMap<String, S<u64>>,
    digests: &BTreeMap<Arch, Digest>,
) -> BTreeMap<Arch, u64> {
    let mut out = BTreeMap::new();
    for (arch, size) in sizes {
        let key = format!("{base}.sizes.{arch}");
        let arch_key = match arch.as_str() {
            "arm64" => Arch::Arm64,
            "amd64" => Arch::Amd64,
            other => {
                c.at(
                    size,
                    key,
                    format!("unknown architecture `{other}` (expected arm64 or amd64)"),
                );
                continue;
            }
        };
        if size.value == 0 {
            c.at(size, key, "expected the size of the file in bytes, got 0");
        } else if !digests.contains_key(&arch_key) {
            c.at(
                size,
                key,
                format!("a size for {arch} needs a digest for {arch} ({base}.digests.{arch})"),
            );
        } else {
            out.insert(arch_key, size.value);
        }
    }
    out
}

fn check_version(c: &mut Checker, version: &S<String>, key: &str) {
    let v = &version.value;
    let ok = v.starts_with(|ch: char| ch.is_ascii_digit())
        && v.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ".-+_".contains(ch));
    if !ok {
        c.at(
            version,
            key,
            format!("expected a version like 1.7.20, got `{v}`"),
        );
    }
}

fn check_spec_version(c: &mut Checker, sv: &S<String>) {
    let ok = sv.value.split('.').count() == 3
        && sv
            .value
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit()));
    if !ok {
        c.at(
            sv,
            "components.cni-plugins.spec_version",
            format!("expected a CNI spec version like 1.0.0, got `{}`", sv.value),
        );
    }
}

fn check_url_template(c: &mut Checker, url: &S<String>, key: &str) {
    let u = &url.value;
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        c.at(
            url,
            key,
            format!("expected an http(s) URL template, got `{u}`"),
        );
        return;
    }
    if u.chars()
        .any(|ch| ch.is_whitespace() || "\"'`$\\<>|;&".contains(ch))
    {
        c.at(
            url,
            key,
            "URL contains a character that is not allowed (whitespace, quotes, `$`, `\\`, `<>|;&`)",
        );
    }
    let mut rest = u.as_str();
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            c.at(url, key, "unclosed `{` in URL template");
            return;
        };
        let name = &after[..close];
        if !URL_PLACEHOLDERS.contains(&name) {
            c.at(
                url,
                key,
                format!(
                    "unknown placeholder `{{{name}}}` (known: {})",
                    URL_PLACEHOLDERS
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        c.at(url, key, "unmatched `}` in URL template");
    }
    if u.ends_with('/') {
        c.at(url, key, "URL must name a file, not end with `/`");
    }
}
