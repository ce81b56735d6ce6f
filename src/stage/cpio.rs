//! Packing: the overlay tree as a gzip-compressed newc ("070701") cpio, which the node unpacks
//! with `cpio -idmu`. The bytes depend only on the manifest and the file contents: entries
//! sorted by path, owner 0:0, one fixed mtime, inode numbers by position, no directory entries
//! (see the module docs of `stage` for why), and a gzip stream with neither a name nor a time.
//! Each file is checked against its manifest entry while it is copied: always its size, and its
//! sha256 too when the tree was not written by this run.

use std::io::{self, BufWriter, Read as _, Write};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context as _, Result};

use super::gzip::ParallelGz;
use super::rules::node_components;
use super::OverlayEntry;
use crate::digest::{Algo, Digest, HashingWriter};

/// Fixed so that the same tree always packs to the same bytes. Level 1: on release binaries it
/// packs about 4x faster than zlib's default 6 for archives ~10% larger, and the archive is
/// read once, from local media, by the node.
const GZIP_LEVEL: u32 = 1;
/// The file-type bits of a regular file in a cpio mode field.
const REGULAR_FILE: u32 = 0o100000;

/// Packs `entries` (files of `root`, each at `root/<path without leading slash>`) into `out`
/// and syncs it; returns the sha256 and size of what was written. With `verify_content`, each
/// file's sha256 is checked against its entry as well as its size (needed for a tree this run
/// did not write itself).
pub(crate) fn write_cpio_gz(
    root: &Path,
    entries: &[OverlayEntry],
    out: &std::fs::File,
    mtime: u64,
    verify_content: bool,
) -> Result<(Digest, u64)> {
    let mtime = u32::try_from(mtime)
        .map_err(|_| anyhow!("mtime {mtime} does not fit the 32-bit cpio header (newc)"))?;
    let mut sorted: Vec<&OverlayEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].path == w[1].path) {
        bail!("`{}` is listed twice", pair[0].path);
    }

    // No file name and mtime 0 in the gzip header: only the content decides the bytes.
    let gz = ParallelGz::new(
        HashingWriter::new(BufWriter::new(out), Algo::Sha256),
        GZIP_LEVEL,
    );
    let mut cpio = NewcWriter::new(gz);
    for (index, entry) in sorted.iter().enumerate() {
        let name = node_components(&entry.path)?.join("/");
        ensure!(
            entry.mode & !0o7777 == 0,
            "`{}`: mode {:o} has bits beyond the permission bits",
            entry.path,
            entry.mode
        );
        let ino = u32::try_from(index + 1).context("too many files for a cpio archive")?;
        cpio.start_file(&name, ino, REGULAR_FILE | entry.mode, mtime, entry.size)?;
        copy_checked(&mut cpio, &root.join(&name), entry, verify_content)?;
        cpio.finish_file()?;
    }
    let gz = cpio.finish()?;
    let hashing = gz.finish().context("finishing the gzip stream")?;
    let (buffered, sha256, size) = hashing.finish();
    buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .context("flushing the packed archive")?;
    Ok((sha256, size))
}

/// Copies the file at `path` into the open cpio entry, failing if it is not exactly the size
/// (and, with `verify_content`, the sha256) the manifest says.
fn copy_checked<W: Write>(
    cpio: &mut NewcWriter<W>,
    path: &Path,
    entry: &OverlayEntry,
    verify_content: bool,
) -> Result<()> {
    let mut file = crate::fsutil::open_regular(path)?;
    let mut sha256 = None;
    let copied = if verify_content {
        let mut content = HashingWriter::new(&mut *cpio, Algo::Sha256);
        let copied = io::copy(&mut (&mut file).take(entry.size), &mut content);
        sha256 = Some(content.finish().1);
        copied
    } else {
        io::copy(&mut (&mut file).take(entry.size), cpio)
    }
    .with_context(|| format!("reading `{}`", path.display()))?;
    let mut probe = [0u8; 1];
    let longer = file.read(&mut probe)? != 0;
    ensure!(
        copied == entry.size && !longer,
        "`{}` changed while being packed: the manifest says {} bytes, the file has {}",
        path.display(),
        entry.size,
        if longer {
            "more".to_string()
        } else {
            copied.to_string()
        }
    );
    if let Some(sha256) = sha256 {
        ensure!(
            sha256 == entry.sha256,
            "`{}` changed after staging: its sha256 is {sha256}, the manifest says {}",
            path.display(),
            entry.sha256
        );
    }
    Ok(())
}

/// A newc ("070701") cpio writer for regular files only. Hand-written rather than the `cpio`
/// crate (0.4.2): that one lets every header field be set, but its `finish()` accepts an entry
/// that got fewer bytes than its header declared and silently writes a corrupt archive (and sums
/// the size in u32 without overflow checks); wrapping it for that would be as long as this.
struct NewcWriter<W: Write> {
    inner: W,
    /// The open entry's name and how many of its declared bytes are still to come.
    open: Option<(String, u64, u64)>,
}

impl<W: Write> NewcWriter<W> {
    fn new(inner: W) -> Self {
        NewcWriter { inner, open: None }
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, mtime: u32, size: u32) -> Result<()> {
        let name_size = name.len() + 1;
        let name_size32 = u32::try_from(name_size).context("cpio entry name too long")?;
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        // namesize, check: uid/gid 0 (root), nlink 1, all devices 0.
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{mtime:08x}{size:08x}\
             {:08x}{:08x}{:08x}{:08x}{name_size32:08x}{:08x}",
            0, 0, 1, 0, 0, 0, 0, 0
        );
        self.inner.write_all(header.as_bytes())?;
        self.inner.write_all(name.as_bytes())?;
        self.inner.write_all(&[0])?;
        self.pad(110 + name_size as u64)?;
        Ok(())
    }

    /// Pads to the 4-byte boundary newc requires after a name and after file data.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let pad = (4 - len % 4) % 4;
        self.inner.write_all(&[0u8; 3][..pad as usize])
    }

    fn start_file(&mut self, name: &str, ino: u32, mode: u32, mtime: u32, size: u64) -> Result<()> {
        ensure!(
            self.open.is_none(),
            "cpio entry started before the previous one ended"
        );
        let size32 = u32::try_from(size)
            .map_err(|_| anyhow!("`{name}` is {size} bytes; newc cpio holds at most 4 GiB - 1"))?;
        self.header(name, ino, mode, mtime, size32)?;
        self.open = Some((name.to_string(), size, size));
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        match self.open.take() {
            Some((_, size, 0)) => Ok(self.pad(size)?),
            Some((name, size, left)) => bail!(
                "cpio entry `{name}` declared {size} bytes but got {}",
                size - left
            ),
            None => bail!("no cpio entry is open"),
        }
    }

    fn finish(mut self) -> Result<W> {
        ensure!(self.open.is_none(), "cpio archive finished inside an entry");
        self.header("TRAILER!!!", 0, 0, 0, 0)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for NewcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((name, size, left)) = &mut self.open else {
            return Err(io::Error::other("cpio data written outside an entry"));
        };
        if buf.len() as u64 > *left {
            return Err(io::Error::other(format!(
                "cpio entry `{name}` declared {size} bytes but got more"
            )));
        }
        let n = self.inner.write(buf)?;
        *left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_writer_enforces_declared_sizes() {
        let mut short = NewcWriter::new(Vec::new());
        short.start_file("a", 1, 0o100644, 0, 10).unwrap();
        short.write_all(b"12345").unwrap();
        assert_eq!(
            short.finish_file().unwrap_err().to_string(),
            "cpio entry `a` declared 10 bytes but got 5"
        );
        let mut long = NewcWriter::new(Vec::new());
        long.start_file("a", 1, 0o100644, 0, 3).unwrap();
        let err = long.write_all(b"12345").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cpio entry `a` declared 3 bytes but got more"
        );

        // Byte layout: header, name + NUL padded to 4, data padded to 4, trailer.
        let mut ok = NewcWriter::new(Vec::new());
        ok.start_file("ab", 1, 0o100755, 0x5f5e100, 5).unwrap();
        ok.write_all(b"hello").unwrap();
        ok.finish_file().unwrap();
        let bytes = ok.finish().unwrap();
        let expected = [
            "070701",
            "00000001",
            "000081ed",
            "00000000",
            "00000000",
            "00000001",
            "05f5e100",
            "00000005",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000003",
            "00000000",
            "ab\0",
            "\0\0\0",
            "hello",
            "\0\0\0",
            "070701",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000001",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "0000000b",
            "00000000",
            "TRAILER!!!\0",
            "\0\0\0",
        ]
        .concat();
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }
}
