//! gzip on every core. flate2 compresses on one thread, and the packed overlay holds every
//! release binary a role installs. This writer cuts the stream into fixed-size chunks,
//! compresses each as a complete gzip member (no name, mtime 0) on a thread of its own, and
//! writes the members in order. A multi-member file is plain gzip (RFC 1952; `gzip -dc` reads it
//! as one stream), and the fixed chunk boundaries keep the bytes independent of the number of
//! cores. At most one thread per core runs at once; when no thread can be started (a low
//! `ulimit -u`), a chunk is compressed on the calling thread: same bytes, no error.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

use flate2::{Compression, GzBuilder};

/// Input bytes per gzip member.
const GZIP_CHUNK: usize = 4 << 20;

/// One gzip member: being compressed on a thread, or compressed already.
enum Member {
    Thread(JoinHandle<io::Result<Vec<u8>>>),
    Done(io::Result<Vec<u8>>),
}

/// `data` as one complete gzip member with neither a name nor a time.
fn compress(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::with_capacity(data.len() / 2), Compression::new(level));
    gz.write_all(data)?;
    gz.finish()
}

pub(crate) struct ParallelGz<W: Write> {
    out: W,
    level: u32,
    chunk: Vec<u8>,
    /// Members being compressed (or already compressed, without a thread), oldest first (the
    /// order they are written in).
    pending: VecDeque<Member>,
    max_pending: usize,
    members: u64,
}

impl<W: Write> ParallelGz<W> {
    pub(crate) fn new(out: W, level: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParallelGz {
            out,
            level,
            chunk: Vec::with_capacity(GZIP_CHUNK),
            pending: VecDeque::new(),
            max_pending: cores.max(1),
            members: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(GZIP_CHUNK));
        let level = self.level;
        // The data comes back when the thread cannot be started.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let spawned = std::thread::Builder::new()
            .name("gzip".into())
            .spawn(move || {
                let data = rx.recv().unwrap_or_default();
                compress(&data, level)
            });
        let member = match spawned {
            Ok(h) => {
                // The receiver lives until the thread has it.
                let _ = tx.send(data);
                Member::Thread(h)
            }
            Err(_) => Member::Done(compress(&data, level)),
        };
        self.pending.push_back(member);
        self.members += 1;
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let member = match self.pending.pop_front() {
            None => return Ok(()),
            Some(Member::Done(m)) => m?,
            Some(Member::Thread(h)) => h
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??,
        };
        self.out.write_all(&member)
    }

    /// Compresses what is left and writes every member; returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        // An empty input still makes one (empty) member: a gzip file has at least one.
        if !self.chunk.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == GZIP_CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::MultiGzDecoder;

    use super::*;

    fn compress(data: &[u8], max_pending: usize) -> Vec<u8> {
        let mut gz = ParallelGz::new(Vec::new(), 1);
        gz.max_pending = max_pending;
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn members_decode_as_one_stream_whatever_the_core_count() {
        let data: Vec<u8> = (0..2 * GZIP_CHUNK + 12_345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let packed = compress(&data, 4);
        assert_eq!(packed, compress(&data, 1), "bytes depend on the core count");
        let mut back = Vec::new();
        MultiGzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Three members, each with gzip magic, no FNAME and mtime 0.
        let starts = packed
            .windows(8)
            .filter(|w| *w == [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert_eq!(starts.count(), 3);
    }

    #[test]
    fn empty_input_is_one_empty_member() {
        let packed = compress(&[], 2);
        let mut back = Vec::new();
        MultiGzDecoder::new(&packed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
        assert_eq!(&packed[..4], &[0x1f, 0x8b, 8, 0]);
    }
}
