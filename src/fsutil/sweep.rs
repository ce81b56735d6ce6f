//! Temp paths that name their owner, and the sweep that removes those whose owner is gone.
//!
//! A run killed with SIGKILL (or by a power cut) cannot delete its temp files and staging
//! directories. So every temp path the kit makes carries the id of the process that made it:
//! `<prefix><pid>.<random>.tmp` (`.seed.iso.4242.Ab3dE9.tmp`, `.arm64.build-4242.Ab3dE9.tmp`),
//! and a later run removes those whose process no longer exists. A path whose process is alive
//! (this one, or another user's) is never touched; a reused pid only delays the sweep. Paths of
//! other formats are left alone.

use std::io;
use std::path::{Path, PathBuf};

/// Suffix of every temp path the kit makes.
pub(super) const SUFFIX: &str = ".tmp";

/// `prefix` followed by this process's id and the separator before the random part.
pub(super) fn owned_prefix(prefix: &str) -> String {
    format!("{prefix}{}.", std::process::id())
}

/// The process id recorded in a kit temp name (`.<anything>[.-]<pid>.<random>.tmp`).
pub(super) fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    let (head, random) = rest.rsplit_once('.')?;
    if random.is_empty() || !random.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let sep = head.rfind(|c: char| !c.is_ascii_digit())?;
    if !matches!(head.as_bytes()[sep], b'.' | b'-') {
        return None;
    }
    head[sep + 1..].parse().ok()
}

/// Whether process `pid` exists on this machine (a process of another user counts).
pub fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists; no pointers involved.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes every kit temp file or directory directly in `dir` whose name starts with `prefix`
/// (`""`: any) and whose owner is gone; returns what it removed. Best effort: a missing `dir`,
/// an entry another process removed first, or one that cannot be removed is skipped (it is
/// garbage, not something this run depends on).
pub fn sweep_stale(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(prefix) {
            continue;
        }
        let Some(pid) = owner(name) else { continue };
        if process_alive(pid) {
            continue;
        }
        let path = e.path();
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => fs_err::remove_dir_all(&path),
            _ => fs_err::remove_file(&path),
        };
        if gone.is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_kit_names_only() {
        assert_eq!(owner(".seed.iso.4242.Ab3dE9.tmp"), Some(4242));
        assert_eq!(owner(".arm64.build-17.xYz012.tmp"), Some(17));
        assert_eq!(owner(".v1.2.3.99.abcdef.tmp"), Some(99));
        for other in [
            "seed.iso",
            ".seed.iso.stamp",
            ".seed.iso.Ab3dE9.tmp",
            ".seed.iso.42x.Ab3dE9.tmp",
            ".arm64.build-Ab3dE9",
            ".x.12..tmp",
            ".12.abc.tmp",
        ] {
            assert_eq!(owner(other), None, "{other}");
        }
    }

    #[test]
    fn only_the_dead_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that cannot be running: beyond the kernel's pid_max (at most 2^22).
        let dead = 1u32 << 30;
        let mine = std::process::id();
        let names = [
            format!(".a.{dead}.aaaaaa.tmp"),
            format!(".a.{mine}.bbbbbb.tmp"),
            format!(".arm64.build-{dead}.cccccc.tmp"),
            format!(".b.{dead}.dddddd.tmp"),
            "keep.tmp".to_string(),
        ];
        for n in &names {
            fs_err::write(tmp.path().join(n), "x").unwrap();
        }
        fs_err::create_dir(tmp.path().join(format!(".c.{dead}.eeeeee.tmp"))).unwrap();
        fs_err::write(tmp.path().join(format!(".c.{dead}.eeeeee.tmp/f")), "x").unwrap();

        let removed = sweep_stale(tmp.path(), ".a.");
        assert_eq!(removed, [tmp.path().join(&names[0])]);
        let mut removed = sweep_stale(tmp.path(), "");
        removed.sort();
        assert_eq!(removed.len(), 3, "{removed:?}");
        let mut left: Vec<String> = fs_err::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [names[1].clone(), "keep.tmp".to_string()]);
        assert!(!process_alive(dead));
        assert!(process_alive(mine));
        assert!(process_alive(1), "init runs (as another user, maybe)");
    }
}
