//! Opening a file the user named, without ever hanging on it.
//!
//! A plain `open(2)` of a FIFO for reading blocks until some process opens it for writing, which
//! may be never; a character device (`/dev/zero`, a terminal) reads forever. So every file a user
//! names (profile, template, SSH key, PKI file, `cache import` input, seed-iso input, a file in a
//! `file://` mirror) and every file imagegen reads back from its own cache or output is opened
//! here: with `O_NONBLOCK` (the open itself returns at once, whatever the file is), then checked
//! through the open descriptor (no race between a check and the open), then switched back to
//! blocking reads. Anything but a regular file is an error naming what it is.

use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use fs_err::os::unix::fs::OpenOptionsExt as _;

/// How much [`read_to_string`] reads at most: far more than any profile, template, key or
/// certificate, far less than a runaway file.
pub const TEXT_LIMIT: u64 = 16 << 20;

/// Opens `path` for reading if it is a regular file (after following symlinks); never blocks on
/// a FIFO or device. The error names the path like `fs_err`'s do, so
/// [`super::os_reason`] gives the bare reason (`is a named pipe (FIFO), not a regular file`).
pub fn open_regular(path: &Path) -> io::Result<fs_err::File> {
    let file = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    check_regular(file, path)
}

/// Opens `path` for reading and writing, creating it with `mode` if it is missing (never
/// truncating it), under the same rules as [`open_regular`]: no blocking, regular files only.
pub fn open_writable(path: &Path, mode: u32) -> io::Result<fs_err::File> {
    let file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    check_regular(file, path)
}

/// `file` (just opened non-blocking from `path`) switched to blocking, if it is a regular file.
fn check_regular(file: fs_err::File, path: &Path) -> io::Result<fs_err::File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "failed to open file `{}`: {}, not a regular file",
                path.display(),
                kind_of(&meta.file_type())
            ),
        ));
    }
    set_blocking(file.file()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("failed to open file `{}`: {e}", path.display()),
        )
    })?;
    Ok(file)
}

/// The whole of a small regular file (at most [`TEXT_LIMIT`] bytes) as UTF-8, opened with
/// [`open_regular`]. Errors name the path.
pub fn read_to_string(path: &Path) -> io::Result<String> {
    let file = open_regular(path)?;
    let mut text = String::new();
    file.take(TEXT_LIMIT + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("failed to read file `{}`: {e}", path.display()),
            )
        })?;
    if text.len() as u64 > TEXT_LIMIT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "failed to read file `{}`: larger than {} MiB, which is not a file of this kind",
                path.display(),
                TEXT_LIMIT >> 20
            ),
        ));
    }
    Ok(text)
}

/// The whole of a regular file as bytes, opened with [`open_regular`] (for files of any size
/// that a caller has reason to hold, such as a seed's user-data). Errors name the path.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let mut data = Vec::new();
    file.file().read_to_end(&mut data).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("failed to read file `{}`: {e}", path.display()),
        )
    })?;
    Ok(data)
}

/// What a file type is, in words, for "X is a named pipe (FIFO), not a regular file".
fn kind_of(t: &std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "is a directory"
    } else if t.is_fifo() {
        "is a named pipe (FIFO)"
    } else if t.is_socket() {
        "is a socket"
    } else if t.is_char_device() {
        "is a character device"
    } else if t.is_block_device() {
        "is a block device"
    } else {
        "is a special file"
    }
}

/// Clears `O_NONBLOCK`, so reads of the (regular) file behave as usual.
fn set_blocking(f: &std::fs::File) -> io::Result<()> {
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function's caller owns; no pointers involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt as _;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn a_fifo_a_directory_and_a_device_are_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        mkfifo(&fifo);
        let link = tmp.path().join("link");
        fs_err::os::unix::fs::symlink(&fifo, &link).unwrap();
        for (p, what) in [
            (fifo.as_path(), "is a named pipe (FIFO), not a regular file"),
            (link.as_path(), "is a named pipe (FIFO), not a regular file"),
            (tmp.path(), "is a directory, not a regular file"),
            (
                Path::new("/dev/null"),
                "is a character device, not a regular file",
            ),
        ] {
            let e = open_regular(p).unwrap_err();
            assert_eq!(super::super::os_reason(&e, p), what, "{e}");
            let e = read_to_string(p).unwrap_err();
            assert!(e.to_string().contains(&p.display().to_string()), "{e}");
        }
    }

    #[test]
    fn a_regular_file_reads_normally_and_a_huge_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        fs_err::write(&p, "hello").unwrap();
        assert_eq!(read_to_string(&p).unwrap(), "hello");
        let f = fs_err::File::create(&p).unwrap();
        f.set_len(TEXT_LIMIT + 10).unwrap();
        let e = read_to_string(&p).unwrap_err();
        assert!(e.to_string().contains("larger than 16 MiB"), "{e}");
        let missing = tmp.path().join("missing");
        let e = open_regular(&missing).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
