//! A small real HTTP/1.1 server on 127.0.0.1 for tests (std only, one thread per connection).
//!
//! It serves bodies from a path -> body map and can be told, per path, to misbehave the way real
//! servers and networks do: 404, 500 a few times, drop the connection part-way (once, for the first
//! request and/or the first 206), stall after the headers, honour (`bytes=N-`, `bytes=N-M`) or
//! ignore `Range`, answer ranged requests late, trickle the body slowly, or send it without a
//! length (a body that never ends). It records every
//! request so tests can assert how many hits a path got, which `Range` was asked for and which
//! status was answered, and how many requests were in flight at once, in all and per path.
//!
//! The one test server of the integration tests (`common::http::TestServer`): the resolve suite
//! uses it as upstream and mirror, the CLI suites as a loopback mirror.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What a path serves.
#[derive(Clone)]
pub enum Body {
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes from [`fill_generated`], produced while sending: never held in memory.
    Generated {
        len: u64,
        seed: u64,
    },
    /// A file on disk, read at each offset while sending (a whole release mirror can be served
    /// without holding it in memory).
    File {
        path: Arc<PathBuf>,
        len: u64,
    },
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Generated { len, .. } | Body::File { len, .. } => *len,
        }
    }

    fn fill(&self, offset: u64, buf: &mut [u8]) {
        match self {
            Body::Bytes(b) => {
                let start = offset as usize;
                buf.copy_from_slice(&b[start..start + buf.len()]);
            }
            Body::Generated { seed, .. } => fill_generated(*seed, offset, buf),
            Body::File { path, .. } => {
                use std::os::unix::fs::FileExt as _;
                fs_err::File::open(path.as_path())
                    .and_then(|f| f.file().read_exact_at(buf, offset))
                    .unwrap_or_else(|e| panic!("serving {}: {e}", path.display()));
            }
        }
    }
}

/// How a path treats `Range` requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ranges {
    /// Advertises `Accept-Ranges: bytes` and answers `Range: bytes=N-` / `bytes=N-M` with 206.
    #[default]
    Honour,
    /// Advertises `Accept-Ranges: bytes` but answers every request with the full body (200).
    Ignore,
    /// No `Accept-Ranges` header; a `Range` header is ignored (200).
    NotAdvertised,
}

/// Per-path behaviour. `Default` is a well-behaved path.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer 404 even though a body is registered.
    pub not_found: bool,
    /// Answer the first N requests with 500.
    pub fail_500: u32,
    /// On the first request that gets a body, close the connection after this many body bytes.
    pub drop_after: Option<u64>,
    /// On the first request answered with 206, close the connection after this many body bytes.
    pub drop_partial_after: Option<u64>,
    /// Send the headers, then sleep this long and close without a body (every request).
    pub stall: Option<Duration>,
    pub ranges: Ranges,
    /// Sleep this long between 64 KiB chunks, to keep requests in flight.
    pub pace: Option<Duration>,
    /// Sleep this long before answering a request that has a `Range` header.
    pub range_delay: Option<Duration>,
    /// No `Content-Length`: the body ends when the connection does (with a huge generated
    /// body, a body that never ends).
    pub no_length: bool,
}

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
}

struct Route {
    body: Body,
    behaviour: Behaviour,
    served_500: u32,
    dropped: bool,
    dropped_partial: bool,
}

/// A request being answered: its path and a handle to see whether the client still holds it.
struct Active {
    id: u64,
    path: String,
    conn: TcpStream,
}

#[derive(Default)]
struct State {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Hit>>,
    active: Mutex<Vec<Active>>,
    next_id: AtomicU64,
    max_active: AtomicUsize,
    max_active_path: Mutex<HashMap<String, usize>>,
    stop: AtomicBool,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let accept = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = Arc::clone(&st);
                thread::spawn(move || handle(conn, &st));
            }
        });
        TestServer {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT`, the host part a mirror layout uses for this server.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    pub fn add(&self, path: &str, body: Vec<u8>) {
        self.add_body(path, Body::Bytes(Arc::new(body)), Behaviour::default());
    }

    pub fn add_with(&self, path: &str, body: Vec<u8>, behaviour: Behaviour) {
        self.add_body(path, Body::Bytes(Arc::new(body)), behaviour);
    }

    pub fn add_body(&self, path: &str, body: Body, behaviour: Behaviour) {
        assert!(path.starts_with('/'), "paths start with /: {path}");
        self.state.routes.lock().unwrap().insert(
            path.to_string(),
            Route {
                body,
                behaviour,
                served_500: 0,
                dropped: false,
                dropped_partial: false,
            },
        );
    }

    /// Serves every file under `root` at `prefix` + its relative path (e.g. a release mirror
    /// in the upstream layout at `/`).
    pub fn add_dir(&self, prefix: &str, root: &Path) {
        for rel in super::fs::files_under(root) {
            let path = root.join(&rel);
            let len = fs_err::metadata(&path).unwrap().len();
            let url = format!("{}/{}", prefix.trim_end_matches('/'), rel.display());
            self.add_body(
                &url,
                Body::File {
                    path: Arc::new(path),
                    len,
                },
                Behaviour::default(),
            );
        }
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> Vec<Hit> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn hits(&self, path: &str) -> usize {
        self.log().iter().filter(|h| h.path == path).count()
    }

    pub fn total_hits(&self) -> usize {
        self.log().len()
    }

    pub fn statuses(&self, path: &str) -> Vec<u16> {
        self.log()
            .iter()
            .filter(|h| h.path == path)
            .map(|h| h.status)
            .collect()
    }

    /// The largest number of requests that were being answered at the same moment (a request
    /// whose connection the client has closed no longer counts, even if the server has not noticed
    /// yet).
    pub fn max_concurrent(&self) -> usize {
        self.state.max_active.load(Ordering::SeqCst)
    }

    /// [`TestServer::max_concurrent`] for the requests of one path.
    pub fn max_concurrent_on(&self, path: &str) -> usize {
        self.state
            .max_active_path
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept() so the thread sees `stop`.
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

struct ActiveGuard<'a>(&'a State, u64);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.lock().unwrap().retain(|a| a.id != self.1);
    }
}

/// Whether the client still has this connection open. A client that stops reading a response
/// part-way closes its socket, but this server only notices at its next write: asking the socket
/// keeps such a request from being counted next to the client's next one.
fn client_still_there(conn: &TcpStream) -> bool {
    // Nothing else reads this socket while its response is being written, so the short read
    // timeout set here affects no one.
    if conn
        .set_read_timeout(Some(Duration::from_millis(1)))
        .is_err()
    {
        return false;
    }
    match conn.peek(&mut [0u8; 1]) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Counts a new request in, with every request still in flight.
fn enter<'a>(st: &'a State, path: &str, conn: &TcpStream) -> ActiveGuard<'a> {
    let id = st.next_id.fetch_add(1, Ordering::SeqCst);
    let mut active = st.active.lock().unwrap();
    active.retain(|a| client_still_there(&a.conn));
    if let Ok(c) = conn.try_clone() {
        active.push(Active {
            id,
            path: path.to_string(),
            conn: c,
        });
    }
    st.max_active.fetch_max(active.len(), Ordering::SeqCst);
    let on_path = active.iter().filter(|a| a.path == path).count();
    let mut per_path = st.max_active_path.lock().unwrap();
    let max = per_path.entry(path.to_string()).or_default();
    *max = (*max).max(on_path);
    ActiveGuard(st, id)
}

enum Plan {
    Status(u16),
    Stall(Duration),
    Serve {
        body: Body,
        start: u64,
        /// Exclusive.
        end: u64,
        partial: bool,
        advertise: bool,
        drop_after: Option<u64>,
        pace: Option<Duration>,
        no_length: bool,
    },
}

fn handle(conn: TcpStream, st: &State) {
    if st.stop.load(Ordering::SeqCst) {
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some((path, range)) = read_request(&conn) else {
        return;
    };
    let guard = enter(st, &path, &conn);

    let plan = {
        let mut routes = st.routes.lock().unwrap();
        match routes.get_mut(&path) {
            None => Plan::Status(404),
            Some(r) if r.behaviour.not_found => Plan::Status(404),
            Some(r) if r.served_500 < r.behaviour.fail_500 => {
                r.served_500 += 1;
                Plan::Status(500)
            }
            Some(r) if r.behaviour.stall.is_some() => Plan::Stall(r.behaviour.stall.unwrap()),
            Some(r) => {
                let len = r.body.len();
                let honour = r.behaviour.ranges == Ranges::Honour;
                let span = match (&range, honour) {
                    (Some(spec), true) => match parse_range(spec) {
                        Some((s, e)) if s < len && e.is_none_or(|e| e >= s) => {
                            Some((s, e.map_or(len, |e| e.min(len - 1) + 1)))
                        }
                        _ => None,
                    },
                    _ => Some((0, len)),
                };
                let partial = range.is_some() && honour;
                match span {
                    None => Plan::Status(416),
                    Some((start, end)) => {
                        let mut drop_after = None;
                        if !r.dropped && r.behaviour.drop_after.is_some() {
                            r.dropped = true;
                            drop_after = r.behaviour.drop_after;
                        } else if partial
                            && !r.dropped_partial
                            && r.behaviour.drop_partial_after.is_some()
                        {
                            r.dropped_partial = true;
                            drop_after = r.behaviour.drop_partial_after;
                        }
                        Plan::Serve {
                            body: r.body.clone(),
                            start,
                            end,
                            partial,
                            advertise: r.behaviour.ranges != Ranges::NotAdvertised,
                            drop_after,
                            pace: r.behaviour.pace,
                            no_length: r.behaviour.no_length,
                        }
                    }
                }
            }
        }
    };
    let status = match &plan {
        Plan::Status(s) => *s,
        Plan::Stall(_) => 200,
        Plan::Serve { partial, .. } => {
            if *partial {
                206
            } else {
                200
            }
        }
    };
    let delay = range.as_ref().and(route_range_delay(st, &path));
    st.log.lock().unwrap().push(Hit {
        path,
        range,
        status,
    });
    if let Some(d) = delay {
        thread::sleep(d);
    }
    if let Ok(Some(conn)) = respond(conn, plan, guard) {
        drain(conn);
    }
}

fn route_range_delay(st: &State, path: &str) -> Option<Duration> {
    st.routes
        .lock()
        .unwrap()
        .get(path)
        .and_then(|r| r.behaviour.range_delay)
}

fn read_request(conn: &TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let _method = parts.next()?;
    let path = parts.next()?.to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    Some((path, range))
}

/// `bytes=N-` or `bytes=N-M` (inclusive `M`) as `(N, Some(M))`.
fn parse_range(spec: &str) -> Option<(u64, Option<u64>)> {
    let rest = spec.strip_prefix("bytes=")?;
    let (start, end) = rest.split_once('-')?;
    let end = match end.trim() {
        "" => None,
        e => Some(e.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, end))
}

/// Writes the response; returns the connection when it should be closed gracefully.
///
/// `active` is released just before the last write: the client cannot have read the end of the
/// response before then, so requests counted as in flight here were in flight at the client too.
fn respond(
    mut conn: TcpStream,
    plan: Plan,
    active: ActiveGuard,
) -> std::io::Result<Option<TcpStream>> {
    let mut active = Some(active);
    match plan {
        Plan::Status(code) => {
            drop(active.take());
            let msg = format!("{code}\n");
            write!(
                conn,
                "HTTP/1.1 {code} {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                reason(code),
                msg.len()
            )?;
        }
        Plan::Stall(d) => {
            drop(active.take());
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n"
            )?;
            conn.flush()?;
            thread::sleep(d);
        }
        Plan::Serve {
            body,
            start,
            end,
            partial,
            advertise,
            drop_after,
            pace,
            no_length,
        } => {
            let total = body.len();
            let len = end - start;
            let mut head = if partial {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\n",
                    end - 1
                )
            } else {
                "HTTP/1.1 200 OK\r\n".to_string()
            };
            if !no_length {
                head.push_str(&format!("Content-Length: {len}\r\n"));
            }
            head.push_str("Content-Type: application/octet-stream\r\nConnection: close\r\n");
            if advertise {
                head.push_str("Accept-Ranges: bytes\r\n");
            }
            head.push_str("\r\n");
            conn.write_all(head.as_bytes())?;
            let limit = drop_after.map_or(len, |k| k.min(len));
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            if limit == 0 {
                drop(active.take());
            }
            while sent < limit {
                let n = (limit - sent).min(buf.len() as u64) as usize;
                if sent > 0 {
                    if let Some(p) = pace {
                        thread::sleep(p);
                    }
                }
                body.fill(start + sent, &mut buf[..n]);
                if sent + n as u64 == limit {
                    drop(active.take());
                }
                conn.write_all(&buf[..n])?;
                sent += n as u64;
            }
            conn.flush()?;
            if drop_after.is_some() && limit < len {
                // An abrupt close mid-body, as a broken connection looks to the client.
                let _ = conn.shutdown(Shutdown::Both);
                return Ok(None);
            }
        }
    }
    conn.flush()?;
    Ok(Some(conn))
}

/// Lets the client read everything before the socket is dropped (avoids a RST on close).
fn drain(mut conn: TcpStream) {
    let _ = conn.shutdown(Shutdown::Write);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 512];
    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn mix(seed: u64, block: u64) -> u64 {
    // splitmix64 finaliser over (seed, block index): any offset can be produced independently,
    // which is what serving a Range of a generated body needs.
    let mut z = seed.wrapping_add(block.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fills `buf` with the generated stream for `seed` starting at byte `offset`.
pub fn fill_generated(seed: u64, mut offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let within = (offset % 8) as usize;
        let bytes = mix(seed, offset / 8).to_le_bytes();
        let n = (8 - within).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&bytes[within..within + n]);
        i += n;
        offset += n as u64;
    }
}

/// The generated stream as a `Read`, so a test can hash it without holding it.
pub struct GeneratedReader {
    pub seed: u64,
    pub pos: u64,
    pub len: u64,
}

impl Read for GeneratedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        fill_generated(self.seed, self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Deterministic pseudo-random bytes (for fixture binaries).
pub fn generated_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill_generated(seed, 0, &mut v);
    v
}
