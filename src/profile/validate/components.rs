//! The `components` section: each pinned component has a version, an http(s) URL template
//! with known placeholders only, and a well-formed digest per known architecture; the CNI
//! plugins are there when the cluster needs them, etcd and the Kubernetes server binaries when
//! it has control nodes, and the server binaries are of the kubelets' release; two components
//! that download the same URL pin the same digest.

use std::collections::BTreeMap;

use super::grammar::{is_label, is_url_char, is_version, shown, MAX_URL, MAX_VERSION};
use super::Checker;
use crate::digest::Digest;
use crate::profile::file::{ComponentsFile, S};
use crate::profile::{expand_url, Arch, Cni, Component, ComponentKey, URL_PLACEHOLDERS};

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
    same_url_same_digest(c, &list, cp);
    if let Some(server) = &cp.kubernetes_server {
        // One release: the API server, the controllers and the kubelets must agree.
        if server.version.value != node.version.value {
            c.at(
                &server.version,
                "components.kubernetes-server.version",
                format!(
                    "must equal components.kubernetes-node.version ({}), got `{}`: the control plane and the kubelets come from one Kubernetes release",
                    shown(&node.version.value),
                    shown(&server.version.value)
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
    if !is_version(v) {
        c.at(
            version,
            key,
            format!(
                "expected a version like 1.7.20 (a digit, then up to {} ASCII letters, digits, '.', '+', '_' and '-'), got `{}`",
                MAX_VERSION - 1,
                shown(v)
            ),
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
            format!(
                "expected a CNI spec version like 1.0.0, got `{}`",
                shown(&sv.value)
            ),
        );
    }
}

/// An http(s) URL whose placeholders are known, made of characters that mean nothing to a
/// shell or a config file (`grammar::is_url_char`), with `%` only as a percent-escape, and a
/// host and a file name once the placeholders are filled.
fn check_url_template(c: &mut Checker, url: &S<String>, key: &str) {
    if let Some(problem) = url_text_problem(&url.value) {
        c.at(url, key, problem);
        return;
    }
    let problems = placeholder_problems(&url.value);
    let shape_known = problems.is_empty();
    for p in problems {
        c.at(url, key, p);
    }
    if shape_known {
        check_url_shape(c, url, key);
    }
}

/// What is wrong with the text of a URL template: its scheme, its length, a character it may
/// not hold, a `%` that starts no escape.
fn url_text_problem(u: &str) -> Option<String> {
    if !(u.starts_with("https://") || u.starts_with("http://")) {
        return Some(format!(
            "expected an http(s) URL template, got `{}`",
            shown(u)
        ));
    }
    if u.split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with('/'))
    {
        return Some("the URL names no host".into());
    }
    if u.len() > MAX_URL {
        return Some(format!(
            "URL is {} characters long; at most {MAX_URL}",
            u.len()
        ));
    }
    let mut bad: Vec<char> = Vec::new();
    for ch in u
        .chars()
        .filter(|&ch| !is_url_char(ch) && ch != '{' && ch != '}')
    {
        if !bad.contains(&ch) {
            bad.push(ch);
        }
    }
    if !bad.is_empty() {
        let listed: String = bad
            .iter()
            .take(8)
            .map(|ch| format!("`{}` ", shown(&ch.to_string())))
            .collect();
        return Some(format!(
            "URL contains {listed}which a URL template may not hold (allowed: ASCII letters, digits, `-._~:/?=@+,`, `%` before two hex digits, and the placeholders)"
        ));
    }
    let bytes = u.as_bytes();
    let bad_escape = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    bad_escape.then(|| "`%` in a URL must start a percent-escape like %2B".into())
}

/// Every `{...}` is a known placeholder and every brace is matched; the URL names a file.
fn placeholder_problems(u: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut rest = u;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return vec!["unclosed `{` in URL template".into()];
        };
        let name = &after[..close];
        if !URL_PLACEHOLDERS.contains(&name) {
            problems.push(format!(
                "unknown placeholder `{{{}}}` (known: {})",
                shown(name),
                URL_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        problems.push("unmatched `}` in URL template".into());
    } else if u.ends_with('/') {
        problems.push("URL must name a file, not end with `/`".into());
    }
    problems
}

/// With the placeholders filled (a valid version has no character that changes a URL's
/// shape), the URL has a host and its path ends in a file name.
fn check_url_shape(c: &mut Checker, url: &S<String>, key: &str) {
    let expanded = expand_url(&url.value, "1.0.0", Arch::Amd64);
    let parsed = reqwest::Url::parse(&expanded);
    let problem = match &parsed {
        Err(e) => Some(format!("not a URL once filled in ({e})")),
        Ok(p) if p.host_str().is_none_or(str::is_empty) => {
            Some("the URL names no host".to_string())
        }
        Ok(p) if !p.host_str().is_some_and(is_host) => Some(format!(
            "the URL's host `{}` is neither a host name nor an IPv4 address",
            p.host_str().unwrap_or_default()
        )),
        Ok(p) => match p.path().rsplit('/').next() {
            None | Some("") | Some(".") | Some("..") => {
                Some("the URL's path must end in a file name".to_string())
            }
            Some(_) => None,
        },
    };
    if let Some(p) = problem {
        c.at(url, key, p);
    }
}

/// A host name of non-empty labels (the URL parser has lowercased it) or an IPv4 address.
fn is_host(h: &str) -> bool {
    h.parse::<std::net::Ipv4Addr>().is_ok() || h.len() <= 253 && h.split('.').all(is_label)
}

/// Two components that download the same URL for an architecture pin the same digest there:
/// else one of them fails its check on every build and every node.
fn same_url_same_digest(c: &mut Checker, list: &[Component], cp: &ComponentsFile) {
    let url_span = |key: ComponentKey| -> Option<&S<String>> {
        match key {
            ComponentKey::Containerd => Some(&cp.containerd.url),
            ComponentKey::Runc => Some(&cp.runc.url),
            ComponentKey::Crictl => Some(&cp.crictl.url),
            ComponentKey::CniPlugins => cp.cni_plugins.as_ref().map(|f| &f.url),
            ComponentKey::KubernetesNode => Some(&cp.kubernetes_node.url),
            ComponentKey::KubernetesServer => cp.kubernetes_server.as_ref().map(|f| &f.url),
            ComponentKey::Etcd => cp.etcd.as_ref().map(|f| &f.url),
            ComponentKey::BaseImage => cp.base_image.as_ref().map(|f| &f.url),
        }
    };
    for (i, a) in list.iter().enumerate() {
        for b in &list[..i] {
            for (arch, da) in &a.digests {
                let Some(db) = b.digests.get(arch) else {
                    continue;
                };
                let url = expand_url(&a.url_template, &a.version, *arch);
                if da != db && url == expand_url(&b.url_template, &b.version, *arch) {
                    if let Some(span) = url_span(a.key) {
                        c.at(
                            span,
                            format!("components.{}.url", a.key),
                            format!(
                                "downloads the same file as components.{} for {arch} ({}) but pins another digest",
                                b.key,
                                shown(&url)
                            ),
                        );
                    }
                }
            }
        }
    }
}
