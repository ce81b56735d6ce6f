//! The one tar.gz builder of the tests: release archives for mirrors and fixtures, including
//! the hostile ones a stage must refuse.
//!
//! Entry names are written byte for byte, as upstream tarballs have them: the `tar` crate's
//! own path setters would turn `./bridge` into `bridge` and refuse `../evil`, and a test of
//! the unpacker needs both as they are. Every entry has mtime 0 and owner 0:0, and the gzip
//! header carries no time, so the same entries give the same bytes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;

/// A tar.gz being written to `W` (`Vec<u8>` by [`TarGz::new`], a file by [`TarGz::create`]).
pub struct TarGz<W: Write> {
    builder: tar::Builder<GzEncoder<W>>,
}

impl TarGz<Vec<u8>> {
    /// An archive in memory; [`TarGz::finish`] returns its bytes.
    pub fn new() -> Self {
        Self::with_writer(Vec::new())
    }
}

impl Default for TarGz<Vec<u8>> {
    fn default() -> Self {
        Self::new()
    }
}

impl TarGz<fs_err::File> {
    /// An archive written to `path` as entries are added (for members too big to hold).
    pub fn create(path: &Path) -> Self {
        Self::with_writer(fs_err::File::create(path).unwrap())
    }
}

impl<W: Write> TarGz<W> {
    pub fn with_writer(w: W) -> Self {
        TarGz {
            builder: tar::Builder::new(GzEncoder::new(w, Compression::fast())),
        }
    }

    /// A directory entry (mode 0755); `name` as written, e.g. `bin/` or `./`.
    pub fn dir(self, name: &str) -> Self {
        let mut h = header(name, tar::EntryType::Directory, 0o755);
        self.append(&mut h, &[][..])
    }

    /// An executable (mode 0755) holding `data`.
    pub fn file(self, name: &str, data: impl AsRef<[u8]>) -> Self {
        self.file_mode(name, data, 0o755)
    }

    /// A regular file with `mode`.
    pub fn file_mode(self, name: &str, data: impl AsRef<[u8]>, mode: u32) -> Self {
        let data = data.as_ref();
        let mut h = header(name, tar::EntryType::Regular, mode);
        h.set_size(data.len() as u64);
        self.append(&mut h, data)
    }

    /// A regular file (mode 0755) of `size` bytes streamed from `data`, never held in memory.
    pub fn file_from(self, name: &str, size: u64, data: impl Read) -> Self {
        let mut h = header(name, tar::EntryType::Regular, 0o755);
        h.set_size(size);
        self.append(&mut h, data)
    }

    /// A symbolic link to `target`, written as given (absolute and `..` targets included).
    pub fn symlink(self, name: &str, target: &str) -> Self {
        let mut h = header(name, tar::EntryType::Symlink, 0o777);
        h.set_link_name_literal(target).unwrap();
        self.append(&mut h, &[][..])
    }

    /// A hard link to the earlier entry `target`.
    pub fn hardlink(self, name: &str, target: &str) -> Self {
        let mut h = header(name, tar::EntryType::Link, 0o755);
        h.set_link_name_literal(target).unwrap();
        self.append(&mut h, &[][..])
    }

    fn append(mut self, h: &mut tar::Header, data: impl Read) -> Self {
        h.set_cksum();
        self.builder.append(h, data).unwrap();
        self
    }

    /// Ends the archive and returns the writer (the bytes, for [`TarGz::new`]).
    pub fn finish(self) -> W {
        self.builder.into_inner().unwrap().finish().unwrap()
    }
}

/// A GNU header with the literal `name` (at most 100 bytes, the field's size).
fn header(name: &str, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let field = &mut h.as_gnu_mut().unwrap().name;
    assert!(
        name.len() <= field.len(),
        "tar entry name `{name}` is longer than {} bytes",
        field.len()
    );
    field[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h
}
