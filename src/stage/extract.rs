//! Extraction: the files the install rules select, streamed out of the cached artifacts into the
//! overlay tree, hashed on the way in. Nothing else is ever written, and nothing is written
//! outside the tree: every entry name is checked for absolute paths and `..` (tar slip), a
//! selected link is refused (saying whether it would have escaped), and each file is created
//! fresh under a node path that `rules` has already judged.

use std::collections::BTreeMap;
use std::io::{self, BufRead as _, BufReader, BufWriter, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use flate2::read::MultiGzDecoder;

use super::rules::{node_components, normalize_archive_path, split_parent};
use super::{OverlayEntry, StageRequest};
use crate::digest::{Algo, HashingWriter};
use crate::fsutil;
use crate::plan::{InstallRule, Source};

/// How many existing entries an error about a missing member lists.
const LISTED_ENTRIES: usize = 8;

/// Rules of one component, split by how they read its artifact.
#[derive(Default)]
struct ComponentRules<'r> {
    whole: Vec<&'r InstallRule>,
    from_archive: Vec<&'r InstallRule>,
}

/// Writes every file the rules select into `root`; returns the manifest, sorted by node path.
pub(crate) fn extract_all(req: &StageRequest, root: &Path) -> Result<Vec<OverlayEntry>> {
    let mut by_component: BTreeMap<&str, ComponentRules> = BTreeMap::new();
    for rule in req.rules {
        let slot = by_component.entry(&rule.component).or_default();
        match rule.source {
            Source::Whole => slot.whole.push(rule),
            Source::Member { .. } | Source::Dir { .. } => slot.from_archive.push(rule),
        }
    }
    // Each artifact is read by a thread of its own, into a directory of its own: inflating and
    // hashing dominate, and the artifacts are independent. The parts are then merged in
    // component order, so the outcome (and any duplicate-install error) does not depend on
    // scheduling.
    let parts: Vec<tempfile::TempDir> = by_component
        .keys()
        .map(|_| {
            tempfile::Builder::new()
                .prefix(".part-")
                .tempdir_in(root)
                .with_context(|| format!("creating a directory in `{}`", root.display()))
        })
        .collect::<Result<_>>()?;
    let results: Vec<Result<Staged>> = std::thread::scope(|scope| {
        let handles: Vec<_> = by_component
            .into_iter()
            .zip(&parts)
            .map(|((component, rules), part)| {
                scope.spawn(move || stage_component(req, component, rules, part.path()))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("an extraction thread panicked")))
            })
            .collect()
    });
    let entries = merge(root, results)?;
    for part in parts {
        part.close()
            .with_context(|| format!("removing a work directory in `{}`", root.display()))?;
    }
    Ok(entries)
}

/// Writes one component's files into `part`.
fn stage_component<'p>(
    req: &StageRequest,
    component: &str,
    rules: ComponentRules,
    part: &'p Path,
) -> Result<Staged<'p>> {
    let mut staged = Staged::new(part);
    let artifact = &req.artifacts[component];
    for rule in rules.whole {
        let mut file = fsutil::open_regular(artifact)?;
        let size = file.metadata()?.len();
        staged.add(&rule.dest, rule.mode, &mut file, size, || {
            format!("artifact `{}`", artifact.display())
        })?;
    }
    if !rules.from_archive.is_empty() {
        extract_archive(component, artifact, &rules.from_archive, &mut staged)?;
    }
    Ok(staged)
}

/// Moves the components' parts into `root`, in component order, refusing a node path that two
/// of them install.
fn merge(root: &Path, results: Vec<Result<Staged>>) -> Result<Vec<OverlayEntry>> {
    let mut merged = Staged::new(root);
    for result in results {
        let staged = result?;
        for (path, origin) in &staged.origins {
            if let Some(first) = merged.origins.get(path) {
                bail!("`{path}` is installed twice: from {first} and from {origin}");
            }
            let rel = node_components(path)?.join("/");
            let dest = root.join(&rel);
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent)?;
            }
            fs_err::rename(staged.root.join(&rel), &dest)?;
            merged.origins.insert(path.clone(), origin.clone());
        }
        merged.entries.extend(staged.entries);
    }
    Ok(merged.entries.into_values().collect())
}

/// The files written so far into the temp tree, by node path, and where each came from.
struct Staged<'p> {
    root: &'p Path,
    entries: BTreeMap<String, OverlayEntry>,
    origins: BTreeMap<String, String>,
}

impl<'p> Staged<'p> {
    fn new(root: &'p Path) -> Self {
        Staged {
            root,
            entries: BTreeMap::new(),
            origins: BTreeMap::new(),
        }
    }

    /// Streams `data` (which must yield exactly `size` bytes) to the node path's place in the tree.
    fn add(
        &mut self,
        node_path: &str,
        mode: u32,
        data: &mut dyn Read,
        size: u64,
        origin: impl Fn() -> String,
    ) -> Result<()> {
        if let Some(first) = self.origins.get(node_path) {
            bail!(
                "`{node_path}` is installed twice: from {first} and from {}",
                origin()
            );
        }
        let dest = self.root.join(node_components(node_path)?.join("/"));
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent)?;
        }
        let file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)?;
        let mut out = HashingWriter::new(BufWriter::new(file), Algo::Sha256);
        io::copy(data, &mut out)
            .with_context(|| format!("copying {} to `{}`", origin(), dest.display()))?;
        let (buffered, sha256, written) = out.finish();
        buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing `{}`", dest.display()))?;
        ensure!(
            written == size,
            "{} is truncated: expected {size} bytes, got {written}",
            origin()
        );
        // The mode comes after the data: writing to a file clears its setuid/setgid bits (for a
        // process without CAP_FSETID), and the tree must show the mode the rule asked for. These
        // are not secrets, so nothing is exposed meanwhile.
        fs_err::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
        self.origins.insert(node_path.to_string(), origin());
        self.entries.insert(
            node_path.to_string(),
            OverlayEntry {
                path: node_path.to_string(),
                mode,
                size,
                sha256,
            },
        );
        Ok(())
    }
}

/// Reads one .tar.gz once, writing the members and directories its rules select.
fn extract_archive(
    component: &str,
    archive_path: &Path,
    rules: &[&InstallRule],
    staged: &mut Staged,
) -> Result<()> {
    let shown = archive_path.display();
    let input = open_gzip(component, archive_path)?;
    let mut wanted = Wanted::new(rules)?;
    let mut listed: Vec<String> = Vec::new();
    let mut archive = tar::Archive::new(MultiGzDecoder::new(input));
    let entries = archive
        .entries()
        .with_context(|| format!("reading `{shown}` as a tar archive"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("reading `{shown}` as a tar archive"))?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = normalize_archive_path(&raw).map_err(|why| {
            anyhow!("`{shown}` has an entry `{raw}` that {why}; refusing to extract from it")
        })?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if listed.len() < LISTED_ENTRIES {
            listed.push(name.clone());
        }
        let targets = wanted.targets(archive_path, &name)?;
        if targets.is_empty() {
            continue;
        }
        refuse_unless_regular(&entry, archive_path, &raw, &name)?;
        let size = entry.size();
        let origin = || format!("member `{raw}` of `{shown}`");
        install(staged, &mut entry, size, &targets, origin)?;
    }
    wanted.check_all_found(archive_path, component, &listed)
}

/// The artifact, buffered, once its first bytes show it is gzip: a rule that takes files out of
/// a plain binary gets an error saying so instead of a tar parse error.
fn open_gzip(component: &str, archive_path: &Path) -> Result<BufReader<fs_err::File>> {
    let mut input = BufReader::with_capacity(1 << 16, fsutil::open_regular(archive_path)?);
    let head = input.fill_buf()?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "`{}` (component `{component}`) is not gzip-compressed (it starts with {}), \
             but its install rules take files out of it, which needs a .tar.gz",
            archive_path.display(),
            if head.is_empty() {
                "nothing: it is empty".to_string()
            } else {
                format!("0x{}", hex::encode(&head[..head.len().min(4)]))
            }
        );
    }
    Ok(input)
}

/// What the rules of one archive select, and what has been found so far.
struct Wanted<'r> {
    /// Member path -> (rule, seen).
    members: BTreeMap<String, Vec<(&'r InstallRule, bool)>>,
    /// Directory path -> (rule, files taken).
    dirs: Vec<(String, &'r InstallRule, usize)>,
}

impl<'r> Wanted<'r> {
    fn new(rules: &[&'r InstallRule]) -> Result<Self> {
        let mut wanted = Wanted {
            members: BTreeMap::new(),
            dirs: Vec::new(),
        };
        for rule in rules {
            match &rule.source {
                Source::Member { path } => wanted
                    .members
                    .entry(normalize_archive_path(path).map_err(|e| anyhow!(e))?)
                    .or_default()
                    .push((rule, false)),
                Source::Dir { path } => wanted.dirs.push((
                    normalize_archive_path(path).map_err(|e| anyhow!(e))?,
                    rule,
                    0,
                )),
                Source::Whole => {}
            }
        }
        Ok(wanted)
    }

    /// The node paths (and modes) the entry `name` goes to: member rules first, then directory
    /// rules. Records the entry as found; a member seen twice is an error.
    fn targets(&mut self, archive_path: &Path, name: &str) -> Result<Vec<(String, u32)>> {
        let (parent, file_name) = split_parent(name);
        let mut targets = Vec::new();
        if let Some(rules) = self.members.get_mut(name) {
            for (rule, seen) in rules.iter_mut() {
                ensure!(
                    !*seen,
                    "`{}` has the member `{name}` twice",
                    archive_path.display()
                );
                *seen = true;
                targets.push((rule.dest.clone(), rule.mode));
            }
        }
        for (dir, rule, taken) in self.dirs.iter_mut() {
            if dir == parent {
                *taken += 1;
                targets.push((format!("{}/{file_name}", rule.dest), rule.mode));
            }
        }
        Ok(targets)
    }

    /// Fails on the first member or directory the archive did not have, listing what it has.
    fn check_all_found(
        &self,
        archive_path: &Path,
        component: &str,
        listed: &[String],
    ) -> Result<()> {
        let shown = archive_path.display();
        let listing = || {
            if listed.is_empty() {
                "it has no files at all".to_string()
            } else {
                format!("it has e.g. {}", listed.join(", "))
            }
        };
        for (member, wanted) in &self.members {
            if wanted.iter().any(|(_, seen)| !seen) {
                bail!(
                    "`{shown}` (component `{component}`) has no member `{member}`; {}",
                    listing()
                );
            }
        }
        for (dir, rule, taken) in &self.dirs {
            if *taken == 0 {
                let dir = if dir.is_empty() { "." } else { dir };
                bail!(
                    "`{shown}` (component `{component}`) has no file directly in directory \
                     `{dir}` (for `{}`); {}",
                    rule.dest,
                    listing()
                );
            }
        }
        Ok(())
    }
}

/// Only regular files are installed; a selected link says where it points and whether that is
/// outside the archive (the tar-slip attempt worth naming).
fn refuse_unless_regular<R: Read>(
    entry: &tar::Entry<'_, R>,
    archive_path: &Path,
    raw: &str,
    name: &str,
) -> Result<()> {
    let shown = archive_path.display();
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();
        let (what, escapes) = if kind.is_symlink() {
            ("symlink", symlink_escapes(split_parent(name).0, &target))
        } else {
            ("hard link", normalize_archive_path(&target).is_err())
        };
        if escapes {
            bail!(
                "`{shown}` has an entry `{raw}` that is a {what} to `{target}`, outside the \
                 archive; refusing to extract from it"
            );
        }
        bail!(
            "`{shown}` has an entry `{raw}` that is a {what} to `{target}`; only regular \
             files are installed"
        );
    }
    if !kind.is_file() {
        bail!("`{shown}` has an entry `{raw}` of type {kind:?}; only regular files are installed");
    }
    Ok(())
}

/// Writes one member to each of its node paths. A member that two rules install is read from
/// the archive once and copied after.
fn install(
    staged: &mut Staged,
    entry: &mut dyn Read,
    size: u64,
    targets: &[(String, u32)],
    origin: impl Fn() -> String + Copy,
) -> Result<()> {
    let mut first: Option<&str> = None;
    for (node_path, mode) in targets {
        match first {
            None => {
                staged.add(node_path, *mode, entry, size, origin)?;
                first = Some(node_path);
            }
            Some(done) => {
                let mut again = fsutil::open_regular(&staged.root.join(&done[1..]))?;
                staged.add(node_path, *mode, &mut again, size, origin)?;
            }
        }
    }
    Ok(())
}

/// Whether a symlink at `<parent>/x` pointing to `target` resolves outside the archive root.
fn symlink_escapes(parent: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth = parent.split('/').filter(|p| !p.is_empty()).count() as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_escape_only_above_the_archive_root() {
        assert!(symlink_escapes("bin", "/etc/shadow"));
        assert!(symlink_escapes("bin", "../../etc/shadow"));
        assert!(symlink_escapes("", "../x"));
        assert!(!symlink_escapes("bin", "../lib/x"));
        assert!(!symlink_escapes("bin", "containerd"));
        assert!(!symlink_escapes("a/b", "../../c"));
        assert!(symlink_escapes("a/b", "x/../../../../c"));
    }
}
