//! One large download over several connections: real download hosts limit each connection's
//! rate, so one connection per file would leave the largest file alone bounding the whole run.
//! Here a connection with nothing else to do takes over half of what is left of a running
//! download (work stealing) and fetches it with a ranged request into the same temp file, so all
//! connections keep busy until the end and finish together. The first such request is a probe:
//! a server that does not answer it with the range asked for gets one stream for that file.

use std::io::Read as _;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use anyhow::anyhow;
use reqwest::blocking::Client;
use reqwest::header::RANGE;
use reqwest::StatusCode;

use super::fetch::Ctx;
use super::http::{self, Attempt, CHUNK};
use super::pool::{lock, wait};
use super::progress::Meter;

/// Files at least this large may be fetched over several connections at once, when the server
/// honours `Range`. Smaller ones finish soon enough over one.
pub(super) const SPLIT_MIN_LEN: u64 = 16 * 1024 * 1024;
/// While a file is fetched over several connections, how often (in bytes of growth) the complete
/// start of it is recorded for a run that continues it.
const RECORD_EVERY: u64 = 8 << 20;
/// Smallest share a connection takes over from another. Below this, a new request (a round trip,
/// maybe a TLS handshake) costs about as much as it saves.
pub(super) const SPLIT_MIN_PIECE: u64 = 4 * 1024 * 1024;

/// One download fetched over several connections, each filling its own byte range (piece) of the
/// same temp file. It starts as the ordinary single stream (`pieces[0]`, from offset 0, hashed as
/// it arrives); a connection with nothing else to do takes over the second half of the largest
/// piece still left ([`Split::steal`]), so all connections keep busy until the end and finish
/// together. The first such request is a probe: until it answered 206 with the range asked for, no
/// other piece is handed out, and if it did not, the first stream simply goes on to the end.
pub(super) struct Split {
    pub(super) url: String,
    pub(super) len: u64,
    file: std::fs::File,
    meter: Meter,
    state: Mutex<SplitState>,
    changed: Condvar,
    /// Where the complete start of the file is recorded for a run that continues it after
    /// this one stopped (`cache::Part`), and what was recorded last.
    progress: Option<(PathBuf, Mutex<u64>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    /// Where the piece began.
    start: u64,
    /// Next offset to write (bytes before it are claimed by the connection filling this piece).
    pos: u64,
    /// Bytes `[start, written)` are in the file (claimed bytes may still be on their way).
    written: u64,
    /// Exclusive; only ever lowered, when another connection takes over the rest.
    end: u64,
}

impl Piece {
    fn new(start: u64, end: u64) -> Piece {
        Piece {
            start,
            pos: start,
            written: start,
            end,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    Untested,
    /// Piece `.0` is the first ranged request; its answer decides.
    Pending(usize),
    Confirmed,
    Refused,
}

struct SplitState {
    pieces: Vec<Piece>,
    probe: Probe,
    /// Pieces other than `pieces[0]` being fetched right now.
    helpers: usize,
    /// No more pieces are handed out.
    closed: bool,
    /// Every connection stops at its next read (a piece failed, or the first stream gave up).
    stop: bool,
    failure: Option<anyhow::Error>,
}

/// What a connection may do with the bytes it just read.
pub(super) enum Claim {
    /// Write `len` bytes at `at`; `done` when that completes the piece.
    Write {
        at: u64,
        len: u64,
        done: bool,
    },
    Stop,
}

impl Split {
    /// `have` bytes of the file are there already; `progress` is where to record how much of
    /// its start is complete, if anywhere.
    pub(super) fn new(
        url: &str,
        len: u64,
        file: std::fs::File,
        meter: Meter,
        have: u64,
        progress: Option<PathBuf>,
    ) -> Split {
        Split {
            url: url.to_string(),
            len,
            file,
            meter,
            progress: progress.map(|p| (p, Mutex::new(have))),
            state: Mutex::new(SplitState {
                pieces: vec![Piece {
                    start: 0,
                    pos: have,
                    written: have,
                    end: len,
                }],
                probe: Probe::Untested,
                helpers: 0,
                closed: false,
                stop: false,
                failure: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// The size of the largest piece a steal would split, if one may happen now.
    pub(super) fn stealable(&self) -> Option<u64> {
        let st = lock(&self.state);
        Self::victim(&st).map(|(_, left)| left)
    }

    fn victim(st: &SplitState) -> Option<(usize, u64)> {
        if st.closed || st.stop || matches!(st.probe, Probe::Pending(_) | Probe::Refused) {
            return None;
        }
        st.pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.end - p.pos))
            .max_by_key(|&(_, left)| left)
            .filter(|&(_, left)| left >= 2 * SPLIT_MIN_PIECE)
    }

    /// Takes over the second half of the largest piece left; the caller must fetch the returned
    /// piece with [`help`].
    pub(super) fn steal(&self) -> Option<usize> {
        Self::steal_locked(&mut lock(&self.state))
    }

    fn steal_locked(st: &mut SplitState) -> Option<usize> {
        let (i, left) = Self::victim(st)?;
        let mid = st.pieces[i].pos + left / 2;
        let piece = Piece::new(mid, st.pieces[i].end);
        st.pieces[i].end = mid;
        st.pieces.push(piece);
        let idx = st.pieces.len() - 1;
        if st.probe == Probe::Untested {
            st.probe = Probe::Pending(idx);
        }
        st.helpers += 1;
        Some(idx)
    }

    /// The `(pos, end)` still to fetch for piece `idx`; `None` when there is nothing to do.
    fn range(&self, idx: usize) -> Option<(u64, u64)> {
        let st = lock(&self.state);
        let p = st.pieces[idx];
        (!st.stop && p.pos < p.end).then_some((p.pos, p.end))
    }

    /// Where the first stream's piece ends (the file's end until another connection took a share).
    pub(super) fn first_end(&self) -> u64 {
        lock(&self.state).pieces[0].end
    }

    /// The first stream starts its piece over from byte 0 (its server ignored `Range`); the
    /// other pieces keep what they wrote.
    pub(super) fn restart_first(&self) -> anyhow::Result<()> {
        {
            let mut st = lock(&self.state);
            st.pieces[0].pos = 0;
            st.pieces[0].written = 0;
        }
        if let Some((path, recorded)) = &self.progress {
            let mut recorded = lock(recorded);
            super::cache::record_prefix(path, 0)?;
            *recorded = 0;
        }
        Ok(())
    }

    /// Piece `idx` has `len` more bytes in the file (after a [`Claim::Write`]). Every
    /// [`RECORD_EVERY`] bytes of growth, records how much of the file's start is complete.
    pub(super) fn wrote(&self, idx: usize, len: u64) -> anyhow::Result<()> {
        let complete = {
            let mut st = lock(&self.state);
            st.pieces[idx].written += len;
            complete_prefix(&st.pieces)
        };
        let Some((path, recorded)) = &self.progress else {
            return Ok(());
        };
        let mut recorded = lock(recorded);
        if complete >= *recorded + RECORD_EVERY {
            super::cache::record_prefix(path, complete)?;
            *recorded = complete;
        }
        Ok(())
    }

    /// Claims up to `n` bytes for piece `idx`. The first stream does not cut its data short while
    /// the probe is out: if ranges turn out not to work, it has to go on to the end of the file.
    pub(super) fn claim(&self, idx: usize, n: u64) -> Claim {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                return Claim::Stop;
            }
            let p = st.pieces[idx];
            let room = p.end - p.pos;
            if idx == 0 && n >= room && matches!(st.probe, Probe::Pending(_)) {
                st = wait(&self.changed, st);
                continue;
            }
            let len = n.min(room);
            st.pieces[idx].pos += len;
            return Claim::Write {
                at: p.pos,
                len,
                done: len == room,
            };
        }
    }

    /// Piece `idx` got the answer it asked for. True if that settled the probe.
    fn confirm(&self, idx: usize) -> bool {
        let mut st = lock(&self.state);
        if st.probe != Probe::Pending(idx) {
            return false;
        }
        st.probe = Probe::Confirmed;
        self.changed.notify_all();
        true
    }

    /// If piece `idx` is the probe and it failed, gives its range back to the first stream (which
    /// waits at the border for this) and stops splitting this file. True if it was the probe.
    fn refuse(&self, idx: usize) -> bool {
        let mut st = lock(&self.state);
        if st.probe != Probe::Pending(idx) {
            return false;
        }
        st.probe = Probe::Refused;
        let p = st.pieces[idx];
        st.pieces[0].end = p.end;
        st.pieces[idx].end = p.pos;
        self.changed.notify_all();
        true
    }

    /// Stops every connection of this file; the download from this source fails with `e`.
    pub(super) fn fail(&self, e: anyhow::Error) {
        let mut st = lock(&self.state);
        st.stop = true;
        st.closed = true;
        st.failure.get_or_insert(e);
        self.changed.notify_all();
    }

    fn release(&self) {
        lock(&self.state).helpers -= 1;
        self.changed.notify_all();
    }

    /// For the first stream once its own piece is done: a piece of its own file to fetch next, or
    /// `None` once every piece is done (or the download failed) and no more will be handed out.
    pub(super) fn next_for_owner(&self) -> Option<usize> {
        let mut st = lock(&self.state);
        loop {
            if st.stop {
                st.closed = true;
                return None;
            }
            if let Some(i) = Self::steal_locked(&mut st) {
                return Some(i);
            }
            if st.helpers == 0 {
                st.closed = true;
                return None;
            }
            st = wait(&self.changed, st);
        }
    }

    /// Stops every connection of this file and waits until they are gone.
    pub(super) fn abort(&self) {
        let mut st = lock(&self.state);
        st.stop = true;
        st.closed = true;
        self.changed.notify_all();
        while st.helpers > 0 {
            st = wait(&self.changed, st);
        }
    }

    pub(super) fn take_failure(&self) -> Option<anyhow::Error> {
        lock(&self.state).failure.take()
    }
}

/// How many bytes from the start of the file are in it without a gap: through every piece
/// written to its end, up to where the first unfinished one stands.
fn complete_prefix(pieces: &[Piece]) -> u64 {
    let mut by_start: Vec<&Piece> = pieces.iter().collect();
    by_start.sort_by_key(|p| p.start);
    let mut done = 0;
    for p in by_start {
        if p.start > done {
            break;
        }
        if p.end <= done {
            continue;
        }
        done = done.max(p.written);
        if p.written < p.end {
            break;
        }
    }
    done
}

/// Fetches piece `idx` of `split` (handed out by [`Split::steal`]): a ranged request per attempt,
/// resuming where the last one stopped. Its failure fails the whole download from this source.
pub(super) fn help(ctx: &Ctx, split: &Split, idx: usize) {
    struct Release<'a>(&'a Split);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.release();
        }
    }
    let _release = Release(split);
    let mut buf = vec![0u8; CHUNK];
    let result = ctx.client().map_err(Attempt::Fatal).and_then(|client| {
        http::with_retries(ctx, &split.url, || {
            let r = fetch_piece(ctx, &client, split, idx, &mut buf);
            // Nothing was written yet: the probe is only confirmed by a good answer.
            if r.is_err() && split.refuse(idx) {
                ctx.reporter.note(&format!(
                    "{}: fetching it over one connection ({})",
                    split.url,
                    match &r {
                        Err(Attempt::Retry(e) | Attempt::Fatal(e)) => format!("{e:#}"),
                        Err(Attempt::NotFound(s)) => format!("HTTP {s} for a range"),
                        _ => "stopped".into(),
                    }
                ));
                return Ok(());
            }
            r
        })
    });
    match result {
        Ok(()) | Err(Attempt::Stopped) => {}
        Err(Attempt::Fatal(e) | Attempt::Retry(e)) => split.fail(e),
        Err(Attempt::NotFound(status)) => split.fail(anyhow!(
            "not found (HTTP {status}) when asking for a range of it"
        )),
    }
}

/// One ranged request for what is left of piece `idx`, written at its offsets as it arrives.
fn fetch_piece(
    ctx: &Ctx,
    client: &Client,
    split: &Split,
    idx: usize,
    buf: &mut [u8],
) -> Result<(), Attempt> {
    let Some((pos, end)) = split.range(idx) else {
        return Ok(());
    };
    let mut resp = client
        .get(&split.url)
        .header(RANGE, format!("bytes={pos}-{}", end - 1))
        .send()
        .map_err(http::classify)?;
    let status = resp.status();
    http::triage(status)?;
    let got = http::content_range(&resp);
    if status != StatusCode::PARTIAL_CONTENT || got != Some((pos, end - 1, split.len)) {
        let got = got.map_or("no Content-Range".into(), |(a, b, t)| {
            format!("Content-Range {a}-{b}/{t}")
        });
        return Err(Attempt::Retry(anyhow!(
            "asked for bytes {pos}-{} of {}, got HTTP {status} with {got}",
            end - 1,
            split.len
        )));
    }
    if split.confirm(idx) {
        ctx.pool.poke();
    }
    loop {
        let n = match resp.read(buf) {
            Ok(0) => {
                let at = split.range(idx).map_or(end, |(p, _)| p);
                return Err(Attempt::Retry(anyhow!(
                    "connection closed at byte {at} of the range {pos}-{}",
                    end - 1
                )));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let at = split.range(idx).map_or(end, |(p, _)| p);
                return Err(Attempt::Retry(anyhow!(e).context(format!(
                    "connection lost at byte {at} of the range {pos}-{}",
                    end - 1
                ))));
            }
        };
        match split.claim(idx, n as u64) {
            Claim::Stop => return Ok(()),
            Claim::Write { at, len, done } => {
                split
                    .file
                    .write_all_at(&buf[..len as usize], at)
                    .map_err(|e| {
                        Attempt::Fatal(anyhow!(e).context("writing the download to the cache"))
                    })?;
                split.wrote(idx, len).map_err(Attempt::Fatal)?;
                split.meter.inc(len);
                if done {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(pos, end)` of every piece.
    fn spans(s: &Split) -> Vec<(u64, u64)> {
        lock(&s.state)
            .pieces
            .iter()
            .map(|p| (p.pos, p.end))
            .collect()
    }

    #[test]
    fn the_complete_prefix_runs_through_finished_pieces_to_the_first_gap() {
        let p = |start, written, end| Piece {
            start,
            pos: written,
            written,
            end,
        };
        assert_eq!(complete_prefix(&[p(0, 5, 10)]), 5);
        assert_eq!(complete_prefix(&[p(0, 10, 10), p(10, 12, 20)]), 12);
        // Listed in steal order, not file order; an emptied probe piece is skipped.
        assert_eq!(
            complete_prefix(&[p(0, 4, 4), p(8, 16, 16), p(4, 8, 8), p(6, 6, 6)]),
            16
        );
        assert_eq!(complete_prefix(&[p(0, 4, 4), p(8, 9, 16), p(4, 6, 8)]), 6);
    }

    #[test]
    fn steals_halve_the_largest_piece_and_a_refused_probe_gives_it_back() {
        let file = tempfile::tempfile().unwrap();
        let meter = Meter::hidden();
        let mib = 1024 * 1024;
        let s = Split::new("http://x/f", 64 * mib, file, meter, 0, None);
        assert_eq!(s.steal(), Some(1));
        assert_eq!(s.steal(), None, "no second piece before the probe answered");
        assert!(s.refuse(1));
        assert_eq!(spans(&s), [(0, 64 * mib), (32 * mib, 32 * mib)]);
        assert_eq!(s.steal(), None, "ranges do not work here");

        let s = Split::new(
            "http://x/f",
            64 * mib,
            tempfile::tempfile().unwrap(),
            s.meter.clone(),
            0,
            None,
        );
        assert_eq!(s.steal(), Some(1));
        assert!(s.confirm(1));
        assert!(!s.refuse(1));
        assert_eq!(s.steal(), Some(2));
        assert_eq!(
            spans(&s),
            [(0, 32 * mib), (32 * mib, 48 * mib), (48 * mib, 64 * mib)]
        );
        // The piece with the most left is split next, however far the others are.
        lock(&s.state).pieces[1].pos = 46 * mib;
        lock(&s.state).pieces[2].pos = 50 * mib;
        assert_eq!(s.steal(), Some(3));
        assert_eq!(lock(&s.state).pieces[0].end, 16 * mib);
        assert_eq!(spans(&s)[3], (16 * mib, 32 * mib));
        // A connection stops at its (lowered) end.
        match s.claim(0, 17 * mib) {
            Claim::Write { at, len, done } => assert_eq!((at, len, done), (0, 16 * mib, true)),
            Claim::Stop => panic!("stopped"),
        }
    }
}
