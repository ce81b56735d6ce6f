//! What to delete when the process is interrupted (Ctrl-C, SIGTERM): a build registers its
//! staging directory here, and the CLI's signal handler calls [`cleanup`] before it exits.
//!
//! The swap of a finished directory ([`super::replace_dir`]) holds the same lock as
//! [`cleanup`], so an interrupt can never delete a directory half-way while it is being swapped
//! in: it waits for the swap, then deletes what the swap left at the registered path (the
//! previous tree).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

static REGISTERED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn registry() -> MutexGuard<'static, Vec<PathBuf>> {
    REGISTERED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Deletes `path` (a directory) if the process is interrupted while the guard lives.
#[derive(Debug)]
#[must_use = "the path is only removed on interrupt while the guard lives"]
pub struct RemoveOnInterrupt(PathBuf);

impl RemoveOnInterrupt {
    pub fn new(path: &Path) -> Self {
        registry().push(path.to_path_buf());
        RemoveOnInterrupt(path.to_path_buf())
    }
}

impl Drop for RemoveOnInterrupt {
    fn drop(&mut self) {
        let mut r = registry();
        if let Some(i) = r.iter().position(|p| *p == self.0) {
            r.remove(i);
        }
    }
}

/// Holds off [`cleanup`] while the returned guard lives (for a step that must not be cut in
/// half by an interrupt's deletions).
pub(super) fn hold() -> MutexGuard<'static, Vec<PathBuf>> {
    registry()
}

/// Deletes every registered path (best effort) and keeps the registry locked for good: the
/// caller is about to exit, and no swap may start after this.
pub fn cleanup() {
    let r = registry();
    for p in r.iter() {
        let _ = fs_err::remove_dir_all(p);
    }
    std::mem::forget(r);
}
