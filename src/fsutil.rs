//! Small filesystem helpers every stage uses: atomic writes with the final mode set before any
//! byte lands (so a secret is never briefly world-readable), and the swap of a finished build
//! directory into place.

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use camino::Utf8Path;

/// Writes `data` to a temp file beside `path` with `mode`, then renames it over `path`.
pub fn write_atomic(path: &Utf8Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    fs_err::create_dir_all(dir.as_std_path())?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".imagegen-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir.as_std_path())
        .with_context(|| format!("creating a temporary file in {dir}"))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_data())
        .with_context(|| format!("writing {path}"))?;
    // The umask may have narrowed the mode given at creation.
    fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    tmp.persist(path.as_std_path())
        .with_context(|| format!("renaming into {path}"))?;
    Ok(())
}

/// Like [`write_atomic`], but leaves the file (and its mtime) alone when it already holds `data`.
pub fn write_if_changed(path: &Utf8Path, data: &str, mode: u32) -> anyhow::Result<bool> {
    if let Ok(existing) = std::fs::read(path.as_std_path()) {
        if existing == data.as_bytes() {
            let meta = fs_err::metadata(path.as_std_path())?;
            if meta.permissions().mode() & 0o7777 != mode {
                fs_err::set_permissions(path.as_std_path(), std::fs::Permissions::from_mode(mode))?;
            }
            return Ok(false);
        }
    }
    write_atomic(path, data.as_bytes(), mode)?;
    Ok(true)
}

/// Creates a directory readable by its owner only (it holds keys).
pub fn create_private_dir(dir: &Utf8Path) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir.as_std_path())?;
    fs_err::set_permissions(dir.as_std_path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes a new file with `mode` (no temp: used inside a staging directory that is itself
/// renamed into place).
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent)?;
    }
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Replaces directory `dest` with the finished directory `staged` (same parent). The previous
/// content stays intact until the new one is complete; the swap is two renames.
pub fn replace_dir(staged: &Path, dest: &Path) -> anyhow::Result<()> {
    let old = dest.with_file_name(format!(
        ".{}.old-{}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let had_old = dest.exists();
    if had_old {
        fs_err::rename(dest, &old)?;
    }
    if let Err(e) = fs_err::rename(staged, dest) {
        if had_old {
            // Put the previous build back rather than leave nothing.
            let _ = std::fs::rename(&old, dest);
        }
        return Err(e.into());
    }
    if had_old {
        fs_err::remove_dir_all(&old)?;
    }
    Ok(())
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
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!write_if_changed(&p, "two", 0o600).unwrap());
        assert!(write_if_changed(&p, "three", 0o600).unwrap());
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn replace_dir_swaps() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("arm64");
        let staged = tmp.path().join(".arm64.new");
        std::fs::create_dir_all(&dest).unwrap();
        std::fs::write(dest.join("old"), "x").unwrap();
        std::fs::create_dir_all(&staged).unwrap();
        std::fs::write(staged.join("new"), "y").unwrap();
        replace_dir(&staged, &dest).unwrap();
        assert!(dest.join("new").exists());
        assert!(!dest.join("old").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
