//! HTTP: the main stream of one download (from byte 0, or from where an earlier run stopped,
//! hashed as it arrives, resumed with `Range` after an interruption where the server allows it),
//! the retry loop with backoff every request goes through, and the one triage of HTTP answers
//! that the main stream and the ranged pieces of `split` share. No source may send more than the
//! artifact's `Limit`.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT_RANGES, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use super::cache::Part;
use super::fetch::{Ctx, Limit, SourceError};
use super::progress::{Bar, Reporter};
use super::split::{Claim, Split, SPLIT_MIN_LEN};
use super::ResolveOptions;
use crate::digest::{Algo, Digest, Hasher};
use crate::plan::Artifact;

/// Read size of one HTTP body read.
pub(super) const CHUNK: usize = 64 * 1024;

pub(super) fn client(opts: &ResolveOptions) -> Result<Client> {
    Client::builder()
        .connect_timeout(opts.connect_timeout)
        // The blocking client applies this to the response headers and to each body read
        // (not to the whole transfer), i.e. it is the read timeout.
        .timeout(opts.read_timeout)
        .user_agent(concat!("imagegen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("setting up the HTTP client")
}

/// A failed HTTP attempt, by what to do next. No error here names the URL: whoever reports it
/// does, once.
pub(super) enum Attempt {
    /// Timeout, connection reset, 5xx: retry (resuming if possible).
    Retry(anyhow::Error),
    NotFound(StatusCode),
    /// Nothing another try could change (DNS, connection refused, TLS, most 4xx), or the retries
    /// are used up.
    Fatal(anyhow::Error),
    /// Another connection of the same split download failed; its error is in the [`Split`].
    Stopped,
}

/// What any answer's status means, whatever was asked: 404/410 say this source does not have
/// the file; 5xx, 429 and 408 are worth another try. Anything else is the caller's to judge.
pub(super) fn triage(status: StatusCode) -> Result<(), Attempt> {
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        return Err(Attempt::NotFound(status));
    }
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        return Err(Attempt::Retry(anyhow!("server answered HTTP {status}")));
    }
    Ok(())
}

/// Why a request could not be sent or answered, in a few words, and whether another try may
/// change it. A failed DNS lookup, a refused connection, an unreachable network or a TLS
/// handshake that failed will fail the same way in a second (the usual first run without
/// network), so they are not retried; timeouts and connections reset or cut are.
pub(super) fn classify(e: reqwest::Error) -> Attempt {
    // Through a proxy, the host that could not be looked up or reached is the proxy's.
    let host = match e.url() {
        Some(u) => match proxy_for(u) {
            Some(proxy) => format!("the proxy {proxy}"),
            None => u.host_str().unwrap_or("the server").to_string(),
        },
        None => "the server".to_string(),
    };
    let connect = e.is_connect();
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut cause: &dyn std::error::Error = &e;
    loop {
        // hyper-util's connector says "dns error" for a failed lookup; the OS's own words
        // follow (the lookup may have failed for want of a network or of the name).
        if cause.to_string().starts_with("dns error") {
            return Attempt::Fatal(anyhow!("DNS lookup of {host} failed"));
        }
        if let Some(io) = cause.downcast_ref::<io::Error>().map(innermost_io) {
            use io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => {
                    return Attempt::Fatal(anyhow!("connection refused by {host}"))
                }
                K::NetworkUnreachable | K::HostUnreachable | K::NetworkDown => {
                    return Attempt::Fatal(anyhow!("no route to {host} ({})", io.kind()))
                }
                // rustls reports a failed handshake (a bad certificate, a server that does not
                // speak TLS) as invalid data while connecting.
                K::InvalidData if connect => {
                    let why = io
                        .get_ref()
                        .map_or_else(|| io.to_string(), |i| i.to_string());
                    return Attempt::Fatal(anyhow!("TLS handshake with {host} failed: {why}"));
                }
                _ => {}
            }
        }
        match cause.source() {
            Some(next) => cause = next,
            None => break,
        }
    }
    if timeout {
        return Attempt::Retry(anyhow!("timed out"));
    }
    Attempt::Retry(anyhow!(e))
}

/// The proxy reqwest takes from the environment for `url` (`HTTPS_PROXY`, `HTTP_PROXY`,
/// `ALL_PROXY`, lower case too, unless `NO_PROXY` names the host), so an error can say that it
/// was the proxy that could not be reached.
fn proxy_for(url: &reqwest::Url) -> Option<String> {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
    };
    let proxy = match url.scheme() {
        "https" => env(&["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]),
        _ => env(&["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]),
    }?;
    let host = url.host_str()?;
    let exempt = env(&["NO_PROXY", "no_proxy"]).is_some_and(|list| {
        list.split(',').map(str::trim).any(|n| {
            let n = n.trim_start_matches('.');
            n == "*" || host == n || host.ends_with(&format!(".{n}"))
        })
    });
    (!exempt).then_some(proxy)
}

/// The io::Error an io::Error wraps, if it wraps one (hyper-rustls wraps tokio-rustls' error
/// as `Other`; an io::Error's `source()` skips the error it wraps, so the chain never shows it).
fn innermost_io(mut io: &io::Error) -> &io::Error {
    while let Some(inner) = io.get_ref().and_then(|e| e.downcast_ref::<io::Error>()) {
        io = inner;
    }
    io
}

/// `(first, last, total)` of a `Content-Range: bytes first-last/total` header.
pub(super) fn content_range(resp: &Response) -> Option<(u64, u64, u64)> {
    let v = resp.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some((
        first.trim().parse().ok()?,
        last.trim().parse().ok()?,
        total.trim().parse().ok()?,
    ))
}

/// Runs `attempt` until it succeeds, retrying timeouts, cut connections and 5xx with backoff
/// (each retry a warning that says when it comes). Errors come back as `NotFound`, `Stopped` or
/// `Fatal`; `what` (the URL) is for the warnings only.
pub(super) fn with_retries(
    ctx: &Ctx,
    what: &str,
    attempt: impl FnMut() -> Result<(), Attempt>,
) -> Result<(), Attempt> {
    retrying(ctx.opts, ctx.reporter, what, attempt)
}

/// [`with_retries`] outside a download run: the options and a reporter are all it needs.
pub(super) fn retrying(
    opts: &ResolveOptions,
    reporter: &Reporter,
    what: &str,
    mut attempt: impl FnMut() -> Result<(), Attempt>,
) -> Result<(), Attempt> {
    let mut failures = 0u32;
    loop {
        match attempt() {
            Err(Attempt::Retry(e)) => {
                failures += 1;
                if failures > opts.retries {
                    return Err(Attempt::Fatal(
                        e.context(format!("gave up after {failures} attempts")),
                    ));
                }
                let delay = opts
                    .retry_backoff
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(Duration::from_secs(30));
                reporter.note(&format!(
                    "{e:#} for {what}; retry {failures}/{} in {}",
                    opts.retries,
                    short_duration(delay)
                ));
                std::thread::sleep(delay);
            }
            other => return other,
        }
    }
}

/// `500 ms`, `1 s`, `1.5 s`: a delay as a retry line shows it.
pub(super) fn short_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// The main stream of a download: bytes `[0, have)` are in `out` and `hasher` has seen exactly
/// those bytes.
struct Partial<'a> {
    out: &'a Part,
    hasher: Hasher,
    algo: Algo,
    have: u64,
    /// The server said `Accept-Ranges: bytes`, so an interruption can continue with `Range`.
    resumable: bool,
    /// Set once other connections may fetch parts of this file (this stream is `pieces[0]`).
    split: Option<Arc<Split>>,
    limit: Limit,
}

impl Partial<'_> {
    fn restart(&mut self, bar: &Bar) -> Result<(), Attempt> {
        match self.split.clone() {
            // Other connections' bytes are in the file: only this stream's piece starts over.
            Some(s) => s.restart_first().map_err(Attempt::Fatal)?,
            None => self.out.file().set_len(0).map_err(|e| {
                Attempt::Fatal(anyhow!(e).context("truncating the partial download"))
            })?,
        }
        self.hasher = Hasher::new(self.algo);
        bar.rewind(self.have);
        self.have = 0;
        Ok(())
    }

    /// Fails the download for sending too much, emptying the file (its bytes are of no use).
    fn too_much(&self) -> Attempt {
        let _ = self.out.file().set_len(0);
        Attempt::Fatal(self.limit.exceeded())
    }
}

/// Downloads `url` into `out`, continuing what an earlier run left there (with the help of
/// other connections if it turns out large and resumable), and returns its digest with the
/// algorithm of the artifact's pin.
pub(super) fn download(
    ctx: &Ctx,
    url: &str,
    art: &Artifact,
    out: &mut Part,
    bar: &Bar,
) -> Result<Digest, SourceError> {
    let limit = Limit::of(art, ctx.opts);
    if out.resume_len() > limit.bytes {
        out.reset().map_err(SourceError::Other)?;
    }
    let have = out.resume_len();
    let mut hasher = Hasher::new(art.digest.algo());
    if have > 0 {
        // The earlier bytes are hashed with the rest: the whole file is checked, not the tail.
        hash_rest(out.file(), 0, have, &mut hasher)
            .context("reading back the partial download")
            .map_err(SourceError::Other)?;
        bar.inc(have);
        if hasher.clone().finish() == art.digest {
            // The earlier run had all of it and stopped before storing it.
            return Ok(hasher.finish());
        }
    }
    let out: &Part = out;
    let client = ctx.client().map_err(SourceError::Other)?;
    let mut part = Partial {
        out,
        hasher,
        algo: art.digest.algo(),
        have,
        // Asking for the rest is worth a try; a server that answers with the whole file
        // starts it over.
        resumable: have > 0,
        split: None,
        limit,
    };
    let result = with_retries(ctx, url, || attempt(ctx, &client, url, &mut part, bar));
    let Some(split) = part.split.take() else {
        return match result {
            Ok(()) => Ok(part.hasher.finish()),
            Err(e) => Err(source_error(e)),
        };
    };
    if result.is_ok() {
        while let Some(i) = split.next_for_owner() {
            super::split::help(ctx, &split, i);
        }
    } else {
        split.abort();
    }
    ctx.pool.remove(&split);
    if let Some(e) = split.take_failure() {
        return Err(SourceError::Other(e));
    }
    result.map_err(source_error)?;
    // This stream hashed `[0, first_end)` as it arrived; the rest came over other connections.
    let mut hasher = part.hasher;
    hash_rest(out.file(), split.first_end(), split.len, &mut hasher)
        .context("reading back the download")
        .map_err(SourceError::Other)?;
    Ok(hasher.finish())
}

fn source_error(e: Attempt) -> SourceError {
    match e {
        Attempt::NotFound(status) => SourceError::NotFound(format!("not found (HTTP {status})")),
        Attempt::Fatal(e) | Attempt::Retry(e) => SourceError::Other(e),
        Attempt::Stopped => SourceError::Other(anyhow!("download stopped")),
    }
}

/// Feeds bytes `[from, len)` of `file` to `hasher` (which has seen `[0, from)`), in order.
fn hash_rest(mut file: &std::fs::File, from: u64, len: u64, hasher: &mut Hasher) -> Result<()> {
    file.seek(SeekFrom::Start(from))?;
    // `io::copy` reads through a `BufReader`'s own buffer: large reads instead of 8 KiB ones.
    let mut rest = BufReader::with_capacity(256 * 1024, file.take(len - from));
    let got = io::copy(&mut rest, hasher)?;
    if from + got != len {
        bail!("the file has {} bytes, expected {len}", from + got);
    }
    Ok(())
}

/// One request of the main stream: from `part.have` to the end of its piece (the file's end
/// unless other connections took the rest).
fn attempt(
    ctx: &Ctx,
    client: &Client,
    url: &str,
    part: &mut Partial,
    bar: &Bar,
) -> Result<(), Attempt> {
    if part.have > 0 && !part.resumable {
        part.restart(bar)?;
    }
    let ranged = part.have > 0;
    let resp = send(client, url, part, ranged)?;
    accept(ctx, url, part, &resp, ranged, bar)?;
    if part.split.is_none() {
        if let Some(len) = resp.content_length() {
            bar.set_length(part.have + len);
        }
    }
    read_body(part, resp, bar)
}

/// Asks for the whole file, or (`ranged`) for the rest of this stream's piece.
fn send(client: &Client, url: &str, part: &Partial, ranged: bool) -> Result<Response, Attempt> {
    let mut req = client.get(url);
    if ranged {
        let spec = match &part.split {
            Some(s) => match s.first_end() {
                end if end < s.len => format!("bytes={}-{}", part.have, end - 1),
                _ => format!("bytes={}-", part.have),
            },
            None => format!("bytes={}-", part.have),
        };
        req = req.header(RANGE, spec);
    }
    let resp = req.send().map_err(classify)?;
    triage(resp.status())?;
    Ok(resp)
}

/// Checks that the answer continues the stream where it stopped, starting over when it cannot.
fn accept(
    ctx: &Ctx,
    url: &str,
    part: &mut Partial,
    resp: &Response,
    ranged: bool,
    bar: &Bar,
) -> Result<(), Attempt> {
    let status = resp.status();
    match status {
        StatusCode::PARTIAL_CONTENT if ranged => {
            let range = content_range(resp);
            if let Some((_, _, total)) = range {
                check_total(part, total)?;
            }
            let start = range.map(|(s, _, _)| s);
            if start != Some(part.have) {
                // Continuing at the wrong offset would corrupt the file; start over instead.
                part.resumable = false;
                part.restart(bar)?;
                return Err(Attempt::Retry(anyhow!(
                    "server answered a range request with an unexpected Content-Range"
                )));
            }
        }
        StatusCode::OK => {
            if part.have > 0 {
                // The server ignored `Range` and is sending the whole file again.
                part.restart(bar)?;
            }
            if let Some(len) = resp.content_length() {
                check_total(part, len)?;
            }
            part.resumable = resp
                .headers()
                .get(ACCEPT_RANGES)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("bytes")));
            offer_split(ctx, url, part, resp, bar);
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            part.resumable = false;
            part.restart(bar)?;
            return Err(Attempt::Retry(anyhow!(
                "server rejected the range request (HTTP 416)"
            )));
        }
        _ => return Err(Attempt::Fatal(anyhow!("unexpected HTTP status {status}"))),
    }
    Ok(())
}

/// Fails (emptying the file) when the whole file, as the server announces it, is over the
/// artifact's limit (or not its pinned size).
fn check_total(part: &Partial, total: u64) -> Result<(), Attempt> {
    part.limit.check_len(total).map_err(|e| {
        let _ = part.out.file().set_len(0);
        Attempt::Fatal(e)
    })
}

/// Lets idle connections help with this file when it is large and the server takes `Range`.
fn offer_split(ctx: &Ctx, url: &str, part: &mut Partial, resp: &Response, bar: &Bar) {
    if part.split.is_some() || !part.resumable || ctx.opts.jobs <= 1 {
        return;
    }
    let len = resp.content_length().filter(|&l| l >= SPLIT_MIN_LEN);
    // Without a second handle on the file other connections cannot write, and without a record
    // of the complete start a later run could not trust the file; then this stream simply
    // fetches it alone.
    let Some(len) = len else { return };
    let Ok(file) = part.out.file().try_clone() else {
        return;
    };
    let progress = part.out.prefix_path();
    if super::cache::record_prefix(progress, part.have).is_err() {
        return;
    }
    bar.set_length(len);
    let split = Arc::new(Split::new(
        url,
        len,
        file,
        bar.meter(),
        part.have,
        Some(progress.to_path_buf()),
    ));
    ctx.pool.add(Arc::clone(&split));
    part.split = Some(split);
}

/// Writes the body at `part.have` onwards, hashing it, until the response or this stream's piece
/// ends.
fn read_body(part: &mut Partial, mut resp: Response, bar: &Bar) -> Result<(), Attempt> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => match &part.split {
                // The response ended before this stream's piece did.
                Some(s) => {
                    return Err(Attempt::Retry(anyhow!(
                        "connection closed after {} of {} bytes",
                        part.have,
                        s.len
                    )))
                }
                None => return Ok(()),
            },
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Attempt::Retry(
                    anyhow!(e).context(format!("connection lost after {} bytes", part.have)),
                ))
            }
        };
        let (len, done) = match &part.split {
            None => (n as u64, false),
            Some(s) => match s.claim(0, n as u64) {
                Claim::Write { at, len, done } => {
                    debug_assert_eq!(at, part.have);
                    (len, done)
                }
                Claim::Stop => return Err(Attempt::Stopped),
            },
        };
        if part.have + len > part.limit.bytes {
            return Err(part.too_much());
        }
        let data = &buf[..len as usize];
        part.out
            .write_at(data, part.have)
            .map_err(|e| Attempt::Fatal(anyhow!(e).context("writing the download to the cache")))?;
        part.hasher.update(data);
        part.have += len;
        bar.inc(len);
        if let Some(s) = &part.split {
            s.wrote(0, len).map_err(Attempt::Fatal)?;
        }
        if done {
            // Dropping the response closes the connection; the rest is another connection's.
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_read_short() {
        for (ms, text) in [
            (500, "500 ms"),
            (1000, "1 s"),
            (1500, "1.5 s"),
            (30_000, "30 s"),
        ] {
            assert_eq!(short_duration(Duration::from_millis(ms)), text);
        }
    }
}
