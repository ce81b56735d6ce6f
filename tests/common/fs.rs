//! The one directory walker of the tests, and the comparisons built on it: what a directory
//! holds, and whether two trees are byte-identical.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every file (anything but a directory) under `dir`, relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .map(|e| e.unwrap_or_else(|e| panic!("walking {}: {e}", dir.display())))
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}

/// Every file under `dir` with its bytes, by relative path.
pub fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let data = fs_err::read(dir.join(&f)).unwrap();
            (f, data)
        })
        .collect()
}

/// Asserts that `a` and `b` hold the same files with the same bytes, naming what differs.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (read_tree(a), read_tree(b));
    let names = |t: &BTreeMap<PathBuf, Vec<u8>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&ta),
        names(&tb),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    let differ: Vec<_> = ta
        .iter()
        .filter(|(f, data)| tb[*f] != **data)
        .map(|(f, _)| f.display().to_string())
        .collect();
    assert!(
        differ.is_empty(),
        "{} and {} differ in: {}",
        a.display(),
        b.display(),
        differ.join(", ")
    );
}

/// The names directly in `dir`, sorted.
pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Makes a named pipe (FIFO) at `path`: what a test puts where a file is expected, to prove
/// that nothing opens it blocking (no process ever writes to it).
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).unwrap();
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}
