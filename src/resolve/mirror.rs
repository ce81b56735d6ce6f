//! Mirrors: where an upstream file lives on a mirror (the kubespray `files_repo` layout, so one
//! mirror serves every upstream host), and the order in which an artifact's sources are tried.

use anyhow::{bail, Context as _, Result};
use reqwest::Url;

use super::ResolveOptions;
use crate::plan::Artifact;

/// Where `upstream` lives on `mirror`, keeping the upstream host and path (kubespray `files_repo`
/// layout): `mirror_url("http://m:8080/repo", "https://github.com/a/b/c.tgz")` is
/// `http://m:8080/repo/github.com/a/b/c.tgz`. A non-default upstream port stays in the host part
/// (`host:port`).
pub fn mirror_url(mirror: &str, upstream: &str) -> Result<String> {
    let up = Url::parse(upstream)
        .with_context(|| format!("upstream URL `{upstream}` is not a valid URL"))?;
    if !matches!(up.scheme(), "http" | "https") {
        bail!("upstream URL `{upstream}` must be http:// or https://");
    }
    let host = up
        .host_str()
        .with_context(|| format!("upstream URL `{upstream}` has no host"))?;
    if up.query().is_some() || up.fragment().is_some() {
        bail!(
            "upstream URL `{upstream}` has a query or fragment, which a mirror layout cannot hold"
        );
    }
    let m = Url::parse(mirror).with_context(|| format!("mirror `{mirror}` is not a valid URL"))?;
    if !matches!(m.scheme(), "http" | "https" | "file") {
        bail!("mirror `{mirror}` must be an http://, https:// or file:// URL");
    }
    let port = up.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!(
        "{}/{host}{port}{}",
        mirror.trim_end_matches('/'),
        up.path()
    ))
}

/// One place to fetch an artifact from.
pub(super) struct Source {
    pub(super) url: String,
    /// A mirror (else the artifact's upstream URL).
    pub(super) mirror: bool,
}

/// The sources of `art`, in the order they are tried: each mirror, then upstream. Offline, only
/// `file://` mirrors.
pub(super) fn sources(art: &Artifact, opts: &ResolveOptions) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for m in &opts.mirrors {
        let url = mirror_url(m, &art.url)?;
        if !opts.offline || url.starts_with("file:") {
            out.push(Source { url, mirror: true });
        }
    }
    if !opts.offline {
        out.push(Source {
            url: art.url.clone(),
            mirror: false,
        });
    }
    Ok(out)
}
