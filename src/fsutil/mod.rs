//! The filesystem kit: the only place that knows how imagegen puts bytes on disk.
//!
//! Three rules hold for everything written through it:
//! - a file's final mode is set before any byte lands (so a secret is never briefly readable by
//!   others, whatever the umask);
//! - a file or directory becomes visible at its final path only when complete (temp beside,
//!   then rename), so an interrupted run leaves the previous content or nothing;
//! - a finished directory replaces the previous one in one step where the OS can swap two paths
//!   atomically (Linux `renameat2(RENAME_EXCHANGE)`, macOS `renamex_np(RENAME_SWAP)`).
//!
//! Every error names the path it is about (`fs_err`).
//!
//! Stamps are part of the kit because all three kinds (the cache's "last verified", a packed
//! overlay's inputs, a seed ISO's inputs) share one format: a hidden JSON file `.<name>.stamp`
//! beside the file it describes, written atomically, read leniently (a missing, unreadable or
//! older-format stamp only means "no reuse").
//!
//! The rest has a file each: `open` (reading a file the user named without hanging on a FIFO or
//! device), `sweep` (temp paths that name their owning process, and removing those whose owner
//! died), `lock` (exclusive locks between imagegen processes) and `interrupt` (what to delete
//! on Ctrl-C or SIGTERM).

mod interrupt;
mod lock;
mod open;
mod sweep;

pub use interrupt::{cleanup as cleanup_on_interrupt, RemoveOnInterrupt};
pub use lock::Lock;
pub use open::{open_regular, open_writable, read, read_to_string, TEXT_LIMIT};
pub use sweep::{process_alive, sweep_stale};

use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use camino::Utf8Path;
use fs_err::os::unix::fs::OpenOptionsExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tempfile::{NamedTempFile, TempDir};

/// The parent of `path` (`.` for a bare name) and the file name, creating the parent.
fn parent_and_name(path: &Path) -> anyhow::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .with_context(|| format!("`{}` has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs_err::create_dir_all(&parent)?;
    Ok((parent, name))
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// A temp file beside `path` (same directory, so the final rename is atomic), named
/// `.<name>.<pid>.<random>.tmp`, already with `mode` (the umask cannot narrow or widen it).
/// Temps of the same name left by processes that are gone are removed first.
pub fn temp_file_beside(path: &Path, mode: u32) -> anyhow::Result<NamedTempFile> {
    let (parent, name) = parent_and_name(path)?;
    let prefix = format!(".{name}.");
    sweep_stale(&parent, &prefix);
    let tmp = tempfile::Builder::new()
        .prefix(&sweep::owned_prefix(&prefix))
        .suffix(sweep::SUFFIX)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(&parent)
        .with_context(|| format!("creating a temporary file in {}", parent.display()))?;
    // The umask applies at creation; set the exact mode before any data is written.
    set_mode(tmp.path(), mode)?;
    Ok(tmp)
}

/// A temp directory beside `path`, named `.<name>.<pid>.<random>.tmp`. Temps of the same
/// name left by processes that are gone are removed first.
pub fn temp_dir_beside(path: &Path) -> anyhow::Result<TempDir> {
    let (parent, name) = parent_and_name(path)?;
    temp_dir_in(&parent, &format!(".{name}."))
}

/// A temp directory in `parent` named `<prefix><pid>.<random>.tmp` (`prefix` starts with `.`
/// and ends with `.` or `-`, e.g. `.arm64.build-`), after removing those of the same prefix
/// whose process is gone.
pub fn temp_dir_in(parent: &Path, prefix: &str) -> anyhow::Result<TempDir> {
    fs_err::create_dir_all(parent)?;
    sweep_stale(parent, prefix);
    tempfile::Builder::new()
        .prefix(&sweep::owned_prefix(prefix))
        .suffix(sweep::SUFFIX)
        .tempdir_in(parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))
}

/// Makes a finished temp file durable and renames it to `dest`.
pub fn persist(tmp: NamedTempFile, dest: &Path) -> anyhow::Result<()> {
    tmp.as_file()
        .sync_data()
        .with_context(|| format!("writing {}", dest.display()))?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(())
}

/// Writes `data` to `path` with `mode`: temp file beside it, mode first, then rename.
pub fn write_atomic(path: &Utf8Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut tmp = temp_file_beside(path.as_std_path(), mode)?;
    tmp.write_all(data)
        .with_context(|| format!("writing {path}"))?;
    persist(tmp, path.as_std_path())
}

/// Like [`write_atomic`], but leaves the file (and its mtime) alone when it already holds `data`.
pub fn write_if_changed(path: &Utf8Path, data: &str, mode: u32) -> anyhow::Result<bool> {
    if let Ok(existing) = read_to_string(path.as_std_path()) {
        if existing == data {
            let meta = fs_err::metadata(path.as_std_path())?;
            if meta.permissions().mode() & 0o7777 != mode {
                set_mode(path.as_std_path(), mode)?;
            }
            return Ok(false);
        }
    }
    write_atomic(path, data.as_bytes(), mode)?;
    Ok(true)
}

/// Creates a new file with `mode` set before any data, and writes `data` (no temp: for files
/// inside a staging directory that is itself swapped into place).
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = create_new(path, mode)?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Creates a new file (failing if it exists) whose mode is exactly `mode` before any data.
pub fn create_new(path: &Path, mode: u32) -> anyhow::Result<fs_err::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    let f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask applied at creation: fix the mode through the open file, before writing.
    f.file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(f)
}

/// Creates a directory readable by its owner only (it holds keys).
pub fn create_private_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir.as_std_path())?;
    set_mode(dir.as_std_path(), 0o700)
}

/// Removes a file; a file that is not there is not an error.
pub fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The operating system's reason for a failed operation on `path`, without the operation and
/// path that `fs_err` puts in front (`failed to open file `x`: `), for a message that names the
/// file itself: `No such file or directory (os error 2)`.
pub fn os_reason(e: &io::Error, path: &Path) -> String {
    let full = e.to_string();
    let prefix_end = format!("`{}`: ", path.display());
    match full.split_once(&prefix_end) {
        Some((_, reason)) => reason.to_string(),
        None => full,
    }
}

/// A hard link where possible (same file system, no extra space), else a copy (of a regular
/// file only, with its mode set before data).
pub fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent)?;
    }
    if fs_err::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let mut src = open_regular(from)?;
    let mode = src.metadata()?.permissions().mode() & 0o7777;
    remove_if_exists(to)?;
    let mut dest = create_new(to, mode)?;
    io::copy(&mut src, &mut dest)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Swaps two existing paths in one step. `Ok(false)` when this OS or file system cannot (the
/// caller falls back to two renames).
fn exchange(a: &Path, b: &Path) -> anyhow::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let ca = CString::new(a.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", a.display()))?;
    let cb = CString::new(b.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", b.display()))?;
    #[cfg(target_os = "linux")]
    // SAFETY: both arguments are valid NUL-terminated paths that live across the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    #[cfg(target_os = "macos")]
    // SAFETY: as above.
    let rc = unsafe { libc::renamex_np(ca.as_ptr(), cb.as_ptr(), libc::RENAME_SWAP) };
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    let rc = {
        let _ = (&ca, &cb);
        return Ok(false);
    };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // Not supported by this kernel or file system.
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => Ok(false),
        _ => Err(err).with_context(|| format!("swapping {} and {}", a.display(), b.display())),
    }
}

/// Replaces directory `dest` with the finished directory `staged` (same parent) and removes the
/// previous content. The swap is atomic where the OS can exchange two paths: at every instant
/// `dest` is either the complete old tree or the complete new one; a crash after the swap leaves
/// the old tree at `staged`, for the next run to sweep. Elsewhere it is two renames, and a failed
/// second rename puts the old tree back.
pub fn replace_dir(staged: &Path, dest: &Path) -> anyhow::Result<()> {
    // An interrupt's cleanup (which may delete `staged`) waits until the swap is done, so it
    // never deletes a tree half-way that then becomes `dest`.
    let held = interrupt::hold();
    match fs_err::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs_err::rename(staged, dest)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
        Ok(_) => {}
    }
    if exchange(staged, dest)? {
        drop(held);
        // `staged` now holds the previous tree.
        fs_err::remove_dir_all(staged)?;
        return Ok(());
    }
    let trash = temp_dir_beside(dest)?;
    let old = trash.path().join("old");
    fs_err::rename(dest, &old)?;
    if let Err(e) = fs_err::rename(staged, dest) {
        // Put the previous tree back rather than leave nothing.
        let _ = fs_err::rename(&old, dest);
        return Err(e.into());
    }
    drop(held);
    trash
        .close()
        .with_context(|| format!("removing the previous content of {}", dest.display()))
}

/// Where the stamp of `file` lives: `.<name>.stamp` in the same directory.
pub fn stamp_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file.with_file_name(format!(".{name}.stamp"))
}

/// The stamp of `file`, if there is one that parses as `T`.
pub fn read_stamp<T: DeserializeOwned>(file: &Path) -> Option<T> {
    let text = read_to_string(&stamp_path(file)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the stamp of `file` (pretty JSON, atomically, 0644).
pub fn write_stamp<T: Serialize>(file: &Path, value: &T) -> anyhow::Result<()> {
    let path = stamp_path(file);
    let mut json = serde_json::to_vec_pretty(value).context("serializing a stamp")?;
    json.push(b'\n');
    let mut tmp = temp_file_beside(&path, 0o644)?;
    tmp.write_all(&json)
        .with_context(|| format!("writing {}", path.display()))?;
    persist(tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let p = camino::Utf8PathBuf::from_path_buf(tmp.path().join("a/b/secret")).unwrap();
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs_err::read(&p).unwrap(), b"two");
        let mode = fs_err::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write_if_changed(&p, "two", 0o600).unwrap());
        assert!(write_if_changed(&p, "three", 0o600).unwrap());
        let leftovers: Vec<_> = fs_err::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn new_files_get_their_mode_whatever_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        for mode in [0o600, 0o644, 0o755] {
            let p = tmp.path().join(format!("f{mode:o}"));
            write_new(&p, b"x", mode).unwrap();
            assert_eq!(
                fs_err::metadata(&p).unwrap().permissions().mode() & 0o777,
                mode
            );
            let t = temp_file_beside(&tmp.path().join(format!("t{mode:o}")), mode).unwrap();
            assert_eq!(
                fs_err::metadata(t.path()).unwrap().permissions().mode() & 0o777,
                mode
            );
        }
        assert!(write_new(&tmp.path().join("f600"), b"y", 0o600).is_err());
    }

    #[test]
    fn a_fifo_where_a_stamp_or_an_old_file_is_does_not_hang() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("seed.iso");
        for p in [stamp_path(&f), tmp.path().join("kubeconfig")] {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        }
        assert_eq!(read_stamp::<u32>(&f), None);
        let p = camino::Utf8PathBuf::from_path_buf(tmp.path().join("kubeconfig")).unwrap();
        assert!(write_if_changed(&p, "x", 0o600).unwrap());
        assert_eq!(fs_err::read_to_string(&p).unwrap(), "x");
    }

    #[test]
    fn stamps_round_trip_and_tolerate_garbage() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("seed.iso");
        assert_eq!(stamp_path(&f), tmp.path().join(".seed.iso.stamp"));
        assert_eq!(read_stamp::<u32>(&f), None);
        write_stamp(&f, &42u32).unwrap();
        assert_eq!(read_stamp::<u32>(&f), Some(42));
        fs_err::write(stamp_path(&f), "not json").unwrap();
        assert_eq!(read_stamp::<u32>(&f), None);
    }

    #[test]
    fn os_reason_leaves_out_the_path() {
        let path = Path::new("/nonexistent/imagegen-test");
        let e = fs_err::read(path).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/imagegen-test"), "{e}");
        let reason = os_reason(&e, path);
        assert!(reason.starts_with("No such file or directory"), "{reason}");
        assert!(!reason.contains("/nonexistent"), "{reason}");
    }

    #[test]
    fn replace_dir_swaps_and_creates() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("arm64");
        let staged = tmp.path().join(".arm64.new");
        fs_err::create_dir_all(&staged).unwrap();
        fs_err::write(staged.join("first"), "x").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert!(dest.join("first").exists());
        fs_err::create_dir_all(&staged).unwrap();
        fs_err::write(staged.join("new"), "y").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert!(dest.join("new").exists());
        assert!(!dest.join("first").exists());
        assert_eq!(fs_err::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
