//! What a stage request may ask for, checked before anything is read or written: the role name
//! (it becomes part of file names), the mtime (newc stores 32 bits), and each install rule's
//! node path, mode, archive path and artifact. The path helpers here are also the ones
//! extraction and packing use, so a node path or archive name is judged the same way everywhere.

use anyhow::{anyhow, ensure, Context as _, Result};

use super::StageRequest;
use crate::plan::{InstallRule, Source};

/// Checks the whole request; the first problem found is the error.
pub(crate) fn check_request(req: &StageRequest) -> Result<()> {
    ensure!(
        !req.role.is_empty()
            && !req.role.starts_with('.')
            && req
                .role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "role name `{}` must be non-empty, use only [A-Za-z0-9._-] and not start with `.`",
        req.role
    );
    u32::try_from(req.mtime).map_err(|_| {
        anyhow!(
            "mtime {} does not fit the 32-bit cpio header (newc); use a timestamp before 2106",
            req.mtime
        )
    })?;
    for rule in req.rules {
        check_rule(rule, req)?;
    }
    Ok(())
}

fn check_rule(rule: &InstallRule, req: &StageRequest) -> Result<()> {
    let what = || {
        format!(
            "install rule for component `{}` -> `{}`",
            rule.component, rule.dest
        )
    };
    node_components(&rule.dest).with_context(what)?;
    ensure!(
        rule.mode & !0o7777 == 0,
        "{}: mode {:o} has bits beyond the permission bits (0o7777)",
        what(),
        rule.mode
    );
    match &rule.source {
        Source::Whole => {}
        Source::Member { path } => {
            let normal = normalize_archive_path(path)
                .map_err(|why| anyhow!("{}: member path `{path}` {why}", what()))?;
            ensure!(
                !normal.is_empty(),
                "{}: member path `{path}` is empty",
                what()
            );
        }
        Source::Dir { path, .. } => {
            normalize_archive_path(path)
                .map_err(|why| anyhow!("{}: directory `{path}` {why}", what()))?;
        }
    }
    ensure!(
        req.artifacts.contains_key(&rule.component),
        "{}: no resolved artifact for component `{}`",
        what(),
        rule.component
    );
    ensure!(
        req.artifact_digests.contains_key(&rule.component),
        "{}: no digest for component `{}`",
        what(),
        rule.component
    );
    Ok(())
}

/// The components of an absolute node path; refuses anything that could leave the overlay root.
pub(crate) fn node_components(dest: &str) -> Result<Vec<&str>> {
    let rest = dest
        .strip_prefix('/')
        .ok_or_else(|| anyhow!("node path `{dest}` must be absolute"))?;
    let parts: Vec<&str> = rest.split('/').collect();
    ensure!(
        !rest.is_empty()
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\0')),
        "node path `{dest}` must be a normalized absolute path (no empty, `.` or `..` components)"
    );
    Ok(parts)
}

/// Archive paths compare without `./` prefixes, `.` components or trailing slashes, as GNU tar
/// writes `./bridge` where a rule says `bridge`.
pub(crate) fn normalize_archive_path(raw: &str) -> std::result::Result<String, &'static str> {
    if raw.starts_with('/') {
        return Err("is absolute");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("has a `..` component"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A normalized archive path's directory (empty at the root) and file name.
pub(crate) fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_paths_normalize_like_gnu_tar_writes_them() {
        assert_eq!(normalize_archive_path("./bridge").unwrap(), "bridge");
        assert_eq!(normalize_archive_path("bin/").unwrap(), "bin");
        assert_eq!(normalize_archive_path("a/./b//c").unwrap(), "a/b/c");
        assert_eq!(normalize_archive_path("./").unwrap(), "");
        assert_eq!(normalize_archive_path("/etc/passwd"), Err("is absolute"));
        assert_eq!(
            normalize_archive_path("a/../b"),
            Err("has a `..` component")
        );
        assert_eq!(split_parent("a/b/c"), ("a/b", "c"));
        assert_eq!(split_parent("c"), ("", "c"));
    }

    #[test]
    fn node_paths_stay_inside_the_overlay() {
        assert_eq!(
            node_components("/usr/local/bin/runc").unwrap(),
            ["usr", "local", "bin", "runc"]
        );
        for bad in [
            "",
            "/",
            "usr/bin/x",
            "/usr//x",
            "/usr/./x",
            "/usr/../x",
            "/x/",
        ] {
            assert!(node_components(bad).is_err(), "{bad:?}");
        }
    }
}
