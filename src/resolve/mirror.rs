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

/// A `--mirror` value as the base URL it stands for: an `http://`, `https://` or `file://` URL
/// as given, anything else a directory (relative to the working directory), as the `file://`
/// URL of its absolute path. The error says what was expected (clap names the flag).
pub fn parse_mirror(value: &str) -> Result<String, String> {
    if value.contains("://") {
        let url = Url::parse(value).map_err(|e| format!("`{value}` is not a valid URL ({e})"))?;
        return match url.scheme() {
            "http" | "https" if url.host_str().is_some() => Ok(value.to_string()),
            "http" | "https" => Err(format!("`{value}` has no host")),
            "file" if url.to_file_path().is_ok() => Ok(value.to_string()),
            "file" => Err(format!(
                "`{value}` is not a local file:// URL (expected file:///path/to/mirror)"
            )),
            other => Err(format!(
                "`{other}://` is not a mirror scheme; expected http://, https://, file:// or a directory"
            )),
        };
    }
    if value.is_empty() {
        return Err("expected a URL or a directory, got nothing".into());
    }
    let path = std::path::Path::new(value);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve the relative path `{value}`: {e}"))?
            .join(path)
    };
    match fs_err::metadata(&abs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{value} is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
            "{value}: no such directory (a mirror is a URL or a directory in the upstream layout)"
        ))
        }
        Err(e) => return Err(format!("{value}: {}", e.kind())),
    }
    Url::from_directory_path(&abs)
        .map(|u| u.to_string().trim_end_matches('/').to_string())
        .map_err(|()| format!("{value} cannot be written as a file:// URL"))
}

/// Characters no URL that reaches a node may hold: the first-boot script quotes it, but a
/// value that needs no quoting cannot break out of it either way.
const UNSAFE_IN_SEED: &str = "\"'`$\\<>|;&{}";

/// A `--node-mirror` value: the `http://` or `https://` base URL the nodes download from, in the
/// upstream layout. It lands in every node's first-boot script, so it may hold no whitespace,
/// quote, `$`, `\` or shell operator, and no query or fragment.
pub fn parse_node_mirror(value: &str) -> Result<String, String> {
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || UNSAFE_IN_SEED.contains(*c))
    {
        return Err(format!(
            "`{}` holds {c:?}, which a URL written into the nodes' first-boot script may not hold",
            value.escape_default()
        ));
    }
    let url = Url::parse(value).map_err(|e| format!("`{value}` is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{value}` must be an http:// or https:// URL the nodes can reach (they cannot read this machine's files)"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{value}` has a query or fragment, which a mirror layout cannot hold"
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Offline, nothing may be fetched over the network: an `http(s)://` mirror given with
/// `offline` is an error that says so, not a mirror silently skipped.
pub fn check_offline(mirrors: &[String], offline: bool) -> Result<()> {
    if !offline {
        return Ok(());
    }
    if let Some(m) = mirrors.iter().find(|m| !m.starts_with("file:")) {
        bail!(
            "--offline never uses the network, but --mirror {m} is fetched over it; offline, \
             only a local mirror is read (a directory or file:// URL): drop --offline to use {m}"
        );
    }
    Ok(())
}

/// One place to fetch an artifact from.
pub(super) struct Source {
    pub(super) url: String,
    /// A mirror (else the artifact's upstream URL).
    pub(super) mirror: bool,
}

/// The sources of `art`, in the order they are tried: each mirror, then upstream; offline,
/// only the mirrors (which [`check_offline`] holds to `file://`).
pub(super) fn sources(art: &Artifact, opts: &ResolveOptions) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for m in &opts.mirrors {
        out.push(Source {
            url: mirror_url(m, &art.url)?,
            mirror: true,
        });
    }
    if !opts.offline {
        out.push(Source {
            url: art.url.clone(),
            mirror: false,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_is_a_url_or_a_directory() {
        assert_eq!(
            parse_mirror("http://m:8080/k8s").unwrap(),
            "http://m:8080/k8s"
        );
        assert_eq!(parse_mirror("file:///srv/m").unwrap(), "file:///srv/m");
        let dir = tempfile::tempdir().unwrap();
        let given = dir.path().join("a b");
        fs_err::create_dir(&given).unwrap();
        let url = parse_mirror(given.to_str().unwrap()).unwrap();
        assert!(
            url.starts_with("file:///") && url.ends_with("/a%20b"),
            "{url}"
        );
        assert_eq!(
            Url::parse(&url).unwrap().to_file_path().unwrap(),
            given,
            "the URL names the directory"
        );
        for (bad, says) in [
            ("ftp://m/x", "not a mirror scheme"),
            ("http://", "not a valid URL"),
            ("file://host/x", "not a local file:// URL"),
            ("/no/such/dir/anywhere", "no such directory"),
            ("", "got nothing"),
        ] {
            let e = parse_mirror(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_mirror_is_http_and_safe_in_a_script() {
        assert_eq!(
            parse_node_mirror("http://192.168.1.1:8080/files/").unwrap(),
            "http://192.168.1.1:8080/files"
        );
        for (bad, says) in [
            ("http://m/a b", "' '"),
            ("http://m/$(reboot)", "'$'"),
            ("http://m/x'y", "'\\''"),
            ("http://m/x\ny", "'\\n'"),
            ("file:///srv/m", "http:// or https://"),
            ("http://m/x?y=1", "query"),
            ("m/files", "not a valid URL"),
        ] {
            let e = parse_node_mirror(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn offline_takes_only_local_mirrors() {
        let local = vec!["file:///m".to_string()];
        assert!(check_offline(&local, true).is_ok());
        let http = vec!["file:///m".to_string(), "http://m:8080".to_string()];
        assert!(check_offline(&http, false).is_ok());
        let e = check_offline(&http, true).unwrap_err().to_string();
        assert!(e.contains("--offline never uses the network"), "{e}");
        assert!(e.contains("--mirror http://m:8080"), "{e}");
    }
}
