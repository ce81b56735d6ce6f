//! Small text files beside the artifacts (published checksums, release feeds), fetched the way
//! artifacts are: from each mirror in the upstream layout, then upstream (not offline), with the
//! same triage and retries, but into memory and never past [`TEXT_LIMIT`]. Nothing is cached:
//! what they say changes upstream.

use std::io::Read as _;

use anyhow::{anyhow, bail, Context as _, Result};
use reqwest::{StatusCode, Url};

use super::http::{self, Attempt};
use super::mirror::mirror_url;
use super::progress::Reporter;
use super::{check_offline, ResolveOptions};
use crate::fsutil;

/// More than any checksum list or release feed: a larger answer is not one.
pub const TEXT_LIMIT: u64 = 4 << 20;

/// The text at `url` (an upstream http(s) URL), from the first source that has it: each mirror
/// (`mirror_url`), then `url` itself unless offline. The error names every source tried, with
/// its reason, in one line.
pub fn fetch_text(url: &str, opts: &ResolveOptions) -> Result<String> {
    check_offline(&opts.mirrors, opts.offline)?;
    let mut sources = Vec::new();
    for m in &opts.mirrors {
        sources.push(mirror_url(m, url)?);
    }
    if !opts.offline {
        sources.push(url.to_string());
    }
    let reporter = Reporter::new(opts.progress, 0);
    let mut tried = Vec::new();
    for source in sources {
        let got = if source.starts_with("file:") {
            read_file_url(&source)
        } else {
            get(&source, opts, &reporter)
        };
        match got {
            Ok(text) => return Ok(text),
            Err(e) => tried.push(format!("{e:#} for {source}")),
        }
    }
    if tried.is_empty() {
        bail!("offline, and no mirror to look in for {url}");
    }
    Err(anyhow!(tried.join("; ")))
}

fn read_file_url(url: &str) -> Result<String> {
    let path = Url::parse(url)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .context("not a usable file:// URL")?;
    let file = match fsutil::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("not found"),
        Err(e) => return Err(e.into()),
    };
    let mut data = Vec::new();
    file.take(TEXT_LIMIT + 1).read_to_end(&mut data)?;
    text_of(data)
}

fn get(url: &str, opts: &ResolveOptions, reporter: &Reporter) -> Result<String> {
    let client = http::client(opts)?;
    let mut body = None;
    let result = http::retrying(opts, reporter, url, || {
        let resp = client.get(url).send().map_err(http::classify)?;
        http::triage(resp.status())?;
        if resp.status() != StatusCode::OK {
            return Err(Attempt::Fatal(anyhow!(
                "server answered HTTP {}",
                resp.status()
            )));
        }
        let mut data = Vec::new();
        resp.take(TEXT_LIMIT + 1)
            .read_to_end(&mut data)
            .map_err(|e| Attempt::Retry(anyhow!(e).context("connection lost")))?;
        body = Some(data);
        Ok(())
    });
    match result {
        Ok(()) => text_of(body.unwrap_or_default()),
        Err(Attempt::NotFound(status)) => bail!("not found (HTTP {status})"),
        Err(Attempt::Fatal(e) | Attempt::Retry(e)) => Err(e),
        Err(Attempt::Stopped) => bail!("stopped"),
    }
}

fn text_of(data: Vec<u8>) -> Result<String> {
    if data.len() as u64 > TEXT_LIMIT {
        bail!("more than {TEXT_LIMIT} bytes: not a checksum list or release feed");
    }
    String::from_utf8(data).map_err(|_| anyhow!("not UTF-8 text"))
}
