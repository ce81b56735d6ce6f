//! Locks between imagegen processes: an exclusive lock on a file (`flock`, through std's
//! `File::lock`), held until dropped and released by the kernel when the process dies however
//! it dies, so a lock is never left stale. The holder writes its pid into the file, so a
//! process that has to wait can say for whom.
//!
//! Two kinds: a lasting lock file (`out/.lock`), and a transient one that the holder deletes
//! when it is done (one per artifact in the download cache, which would otherwise fill with
//! lock files). Deleting a lock file others may be waiting on is safe here because every
//! acquirer checks, once it holds the lock, that the path still names the file it locked, and
//! starts over when it does not.

use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// An exclusive lock on a file, released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: fs_err::File,
    path: PathBuf,
    transient: bool,
}

impl Lock {
    /// Takes the lock on `path` (created, with its parent, if missing), waiting while another
    /// process holds it. A lock file that cannot be created is an error whose cause is the
    /// `io::Error` (kind `PermissionDenied` or `ReadOnlyFilesystem` on a read-only directory). Before waiting, `waiting` gets a line to show, e.g. `waiting for
    /// another imagegen (pid 4242) holding out/.lock`.
    pub fn acquire(path: &Path, waiting: impl FnOnce(&str)) -> anyhow::Result<Lock> {
        Self::take(path, false, Some(waiting))?.context("a waiting lock gave up")
    }

    /// Like [`Lock::acquire`], but the lock file is deleted when the lock is released.
    pub fn acquire_transient(path: &Path, waiting: impl FnOnce(&str)) -> anyhow::Result<Lock> {
        Self::take(path, true, Some(waiting))?.context("a waiting lock gave up")
    }

    /// Like [`Lock::acquire_transient`], but `None` at once when another process holds it.
    pub fn try_acquire_transient(path: &Path) -> anyhow::Result<Option<Lock>> {
        Self::take(path, true, None::<fn(&str)>)
    }

    /// Deletes the transient lock file at `path` if no process holds it (one left by a process
    /// that was killed while holding it). Best effort.
    pub fn remove_if_stale(path: &Path) {
        let Ok(file) = open(path) else { return };
        if file.file().try_lock().is_ok() && same_file(&file, path) {
            let _ = fs_err::remove_file(path);
        }
    }

    /// Takes the lock; without `waiting`, gives up (`None`) when another process holds it.
    fn take(
        path: &Path,
        transient: bool,
        waiting: Option<impl FnOnce(&str)>,
    ) -> anyhow::Result<Option<Lock>> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent)?;
        }
        let wait = waiting.is_some();
        let mut waiting = waiting;
        loop {
            let mut file = open(path)?;
            match file.file().try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) if !wait => return Ok(None),
                Err(std::fs::TryLockError::WouldBlock) => {
                    if let Some(w) = waiting.take() {
                        w(&waiting_line(&mut file, path));
                    }
                    file.file()
                        .lock()
                        .with_context(|| format!("locking {}", path.display()))?;
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", path.display()));
                }
            }
            // The holder before us may have deleted the file (transient locks): then the lock
            // we hold is on a file nobody else will look at, and we start over.
            if !same_file(&file, path) {
                continue;
            }
            record_pid(&mut file).with_context(|| format!("writing {}", path.display()))?;
            return Ok(Some(Lock {
                file,
                path: path.to_path_buf(),
                transient,
            }));
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Deleted while still held, so no one can take the old file after we let it go.
        if self.transient {
            let _ = fs_err::remove_file(&self.path);
        }
        let _ = self.file.file().unlock();
    }
}

/// The lock file, opened without blocking (a FIFO planted at the path must not hang us) and
/// refused unless it is a regular file.
/// The error keeps its `io::ErrorKind` (a caller may go on without a lock where nothing can be
/// written anyway).
fn open(path: &Path) -> anyhow::Result<fs_err::File> {
    super::open_writable(path, 0o644).map_err(|e| {
        let msg = format!(
            "cannot open the lock file {}: {}",
            path.display(),
            super::os_reason(&e, path)
        );
        anyhow::Error::new(io::Error::new(e.kind(), msg))
    })
}

fn same_file(file: &fs_err::File, path: &Path) -> bool {
    match (file.metadata(), fs_err::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn record_pid(file: &mut fs_err::File) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
}

/// What to show while waiting for the holder of `path`.
fn waiting_line(file: &mut fs_err::File, path: &Path) -> String {
    let mut text = String::new();
    let pid = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.take(32).read_to_string(&mut text))
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!(
            "waiting for another imagegen (pid {pid}) holding {}",
            path.display()
        ),
        None => format!("waiting for another imagegen holding {}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_second_holder_waits_says_for_whom_and_gets_it_after() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("out/.lock");
        let first = Lock::acquire(&path, |_| panic!("nobody holds it")).unwrap();
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = Lock::acquire(&p, |line| tx.send(line.to_string()).unwrap()).unwrap();
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            line,
            format!(
                "waiting for another imagegen (pid {}) holding {}",
                std::process::id(),
                path.display()
            )
        );
        drop(first);
        waiter.join().unwrap();
        assert!(path.exists(), "a lasting lock file stays");
    }

    #[test]
    fn transient_locks_hand_over_and_leave_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.lock");
        let first = Lock::acquire_transient(&path, |_| {}).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let l = Lock::acquire_transient(&p, |_| {}).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    drop(l);
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(20));
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert!(!path.exists());
        // A file nobody holds (its holder was killed) is swept; a held one is not.
        fs_err::write(&path, "1\n").unwrap();
        let held = Lock::acquire_transient(&path, |_| {}).unwrap();
        Lock::remove_if_stale(&path);
        assert!(path.exists());
        drop(held);
        fs_err::write(&path, "1\n").unwrap();
        Lock::remove_if_stale(&path);
        assert!(!path.exists());
    }
}
