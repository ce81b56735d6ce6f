//! Extraction: the files the install rules select, streamed out of the cached artifacts into the
//! overlay tree, hashed on the way in. Nothing else is ever written, and nothing is written
//! outside the tree: every entry name is checked for absolute paths and `..` (tar slip), a
//! selected link is refused (saying whether it would have escaped), and each file is created
//! fresh under a node path that `rules` has already judged.
//!
//! Every planned install produces its file: a member the archive lacks (or holds as a
//! directory), and a file a directory rule `required` that is not there, fail the stage naming
//! the component and the member. Reading is bounded: an archive with more than [`MAX_ENTRIES`]
//! entries, or that inflates to more than [`MAX_RATIO`] times its size (and more than
//! [`MIN_INFLATE_LIMIT`]), is refused as a likely gzip bomb. Errors name an artifact as the
//! build describes it (component, version, arch, URL), not by its path in the cache.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead as _, BufReader, BufWriter, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use flate2::read::MultiGzDecoder;

use super::rules::{node_components, normalize_archive_path, split_parent};
use super::{OverlayEntry, StageRequest};
use crate::digest::{Algo, HashingWriter};
use crate::fsutil;
use crate::plan::{InstallRule, Source};

/// How many existing entries an error about a missing member lists.
const LISTED_ENTRIES: usize = 8;
/// Entries one archive may have: release tarballs have tens.
pub(crate) const MAX_ENTRIES: u64 = 10_000;
/// How many times its own size an archive may inflate to: release binaries compress 3-5 times,
/// a gzip bomb a thousand times.
pub(crate) const MAX_RATIO: u64 = 20;
/// What any archive may inflate to, however small it is (tar headers and padding alone make a
/// tiny archive inflate far more than [`MAX_RATIO`] times).
pub(crate) const MIN_INFLATE_LIMIT: u64 = 256 << 20;

/// Rules of one component, split by how they read its artifact.
#[derive(Clone, Default)]
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
    // scheduling. A thread that cannot be started (a low `ulimit -u`) is no error: that
    // component is staged on this thread instead.
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
                let again = rules.clone();
                std::thread::Builder::new()
                    .name("extract".into())
                    .spawn_scoped(scope, move || {
                        stage_component(req, component, rules, part.path())
                    })
                    .map_err(|_| (component, again, part))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow!("an extraction thread panicked"))),
                Err((component, rules, part)) => {
                    stage_component(req, component, rules, part.path())
                }
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
    let name = match req.artifact_names.get(component) {
        Some(n) => n.clone(),
        None => format!("`{}` (component `{component}`)", artifact.display()),
    };
    for rule in rules.whole {
        let mut file = fsutil::open_regular(artifact)?;
        let size = file.metadata()?.len();
        staged.add(&rule.dest, rule.mode, &mut file, size, || name.clone())?;
    }
    if !rules.from_archive.is_empty() {
        extract_archive(&name, artifact, &rules.from_archive, &mut staged)?;
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

/// Reads one .tar.gz once, writing the members and directories its rules select. `name` is how
/// errors call the artifact.
fn extract_archive(
    name: &str,
    archive_path: &Path,
    rules: &[&InstallRule],
    staged: &mut Staged,
) -> Result<()> {
    let input = open_gzip(name, archive_path)?;
    let compressed = input.get_ref().metadata()?.len();
    let limit = MIN_INFLATE_LIMIT.max(compressed.saturating_mul(MAX_RATIO));
    let inflated = Rc::new(Cell::new(0u64));
    let reader = Inflated {
        inner: MultiGzDecoder::new(input),
        count: Rc::clone(&inflated),
        limit,
    };
    // A read error past the limit is the bomb, whatever the tar parser makes of it.
    let bomb = || {
        anyhow!(
            "{name} inflates to more than {limit} bytes (the limit for a {compressed}-byte \
             archive: {MAX_RATIO} times its size, at least {} MiB); refusing it as a likely gzip \
             bomb",
            MIN_INFLATE_LIMIT >> 20
        )
    };
    let tar_error = |e: io::Error| {
        if inflated.get() > limit {
            bomb()
        } else {
            anyhow!(e).context(format!("reading {name} as a tar archive"))
        }
    };
    let mut wanted = Wanted::new(rules)?;
    let mut listed: Vec<String> = Vec::new();
    let mut archive = tar::Archive::new(reader);
    let mut count = 0u64;
    for entry in archive.entries().map_err(tar_error)? {
        let mut entry = entry.map_err(tar_error)?;
        count += 1;
        ensure!(
            count <= MAX_ENTRIES,
            "{name} has more than {MAX_ENTRIES} entries; refusing it (release archives have tens)"
        );
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = normalize_archive_path(&raw).map_err(|why| {
            anyhow!("{name} has an entry `{raw}` that {why}; refusing to extract from it")
        })?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        if kind.is_dir() {
            wanted.dirs_seen.insert(path);
            continue;
        }
        if listed.len() < LISTED_ENTRIES {
            listed.push(path.clone());
        }
        let targets = wanted.targets(name, &path)?;
        if targets.is_empty() {
            continue;
        }
        refuse_unless_regular(&entry, name, &raw, &path)?;
        let size = entry.size();
        let origin = || format!("member `{raw}` of {name}");
        install(staged, &mut entry, size, &targets, origin).map_err(|e| {
            if inflated.get() > limit {
                bomb()
            } else {
                e
            }
        })?;
    }
    wanted.check_all_found(name, &listed)
}

/// The decompressed stream, failing once more than `limit` bytes came out of it.
struct Inflated<R> {
    inner: R,
    count: Rc<Cell<u64>>,
    limit: u64,
}

impl<R: Read> Read for Inflated<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        if self.count.get() > self.limit {
            return Err(io::Error::other("the archive inflates past its limit"));
        }
        Ok(n)
    }
}

/// The artifact, buffered, once its first bytes show it is gzip: a rule that takes files out of
/// a plain binary gets an error saying so instead of a tar parse error.
fn open_gzip(name: &str, archive_path: &Path) -> Result<BufReader<fs_err::File>> {
    let mut input = BufReader::with_capacity(1 << 16, fsutil::open_regular(archive_path)?);
    let head = input.fill_buf()?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "{name} is not gzip-compressed (it starts with {}), but its install rules take \
             files out of it, which needs a .tar.gz",
            if head.is_empty() {
                "nothing: it is empty".to_string()
            } else {
                format!("0x{}", hex::encode(&head[..head.len().min(4)]))
            }
        );
    }
    Ok(input)
}

/// A directory rule, and the files taken from its directory so far.
struct DirRule<'r> {
    dir: String,
    rule: &'r InstallRule,
    required: &'r [String],
    taken: BTreeSet<String>,
}

/// What the rules of one archive select, and what has been found so far.
struct Wanted<'r> {
    /// Member path -> (rule, seen).
    members: BTreeMap<String, Vec<(&'r InstallRule, bool)>>,
    dirs: Vec<DirRule<'r>>,
    /// Directory entries of the archive, to say so when a wanted file is one.
    dirs_seen: BTreeSet<String>,
}

impl<'r> Wanted<'r> {
    fn new(rules: &[&'r InstallRule]) -> Result<Self> {
        let mut wanted = Wanted {
            members: BTreeMap::new(),
            dirs: Vec::new(),
            dirs_seen: BTreeSet::new(),
        };
        for rule in rules {
            match &rule.source {
                Source::Member { path } => wanted
                    .members
                    .entry(normalize_archive_path(path).map_err(|e| anyhow!(e))?)
                    .or_default()
                    .push((rule, false)),
                Source::Dir { path, required } => wanted.dirs.push(DirRule {
                    dir: normalize_archive_path(path).map_err(|e| anyhow!(e))?,
                    rule,
                    required,
                    taken: BTreeSet::new(),
                }),
                Source::Whole => {}
            }
        }
        Ok(wanted)
    }

    /// The node paths (and modes) the entry `path` goes to: member rules first, then directory
    /// rules. Records the entry as found; a member seen twice is an error.
    fn targets(&mut self, name: &str, path: &str) -> Result<Vec<(String, u32)>> {
        let (parent, file_name) = split_parent(path);
        let mut targets = Vec::new();
        if let Some(rules) = self.members.get_mut(path) {
            for (rule, seen) in rules.iter_mut() {
                ensure!(!*seen, "{name} has the member `{path}` twice");
                *seen = true;
                targets.push((rule.dest.clone(), rule.mode));
            }
        }
        for d in self.dirs.iter_mut() {
            if d.dir == parent {
                d.taken.insert(file_name.to_string());
                targets.push((format!("{}/{file_name}", d.rule.dest), d.rule.mode));
            }
        }
        Ok(targets)
    }

    /// Fails on the first member, directory or required file the archive did not have as a
    /// regular file, listing what it has.
    fn check_all_found(&self, name: &str, listed: &[String]) -> Result<()> {
        let listing = || {
            if listed.is_empty() {
                "it has no files at all".to_string()
            } else {
                format!("it has e.g. {}", listed.join(", "))
            }
        };
        let missing = |member: &str, dest: &str| {
            if self.dirs_seen.contains(member) {
                anyhow!(
                    "{name} holds `{member}` as a directory, not a file, so `{dest}` cannot be \
                     installed"
                )
            } else {
                anyhow!(
                    "{name} has no member `{member}` (for `{dest}`); {}",
                    listing()
                )
            }
        };
        for (member, wanted) in &self.members {
            if let Some((rule, _)) = wanted.iter().find(|(_, seen)| !seen) {
                return Err(missing(member, &rule.dest));
            }
        }
        for d in &self.dirs {
            if d.taken.is_empty() {
                let dir = if d.dir.is_empty() { "." } else { &d.dir };
                bail!(
                    "{name} has no file directly in directory `{dir}` (for `{}`); {}",
                    d.rule.dest,
                    listing()
                );
            }
            for file in d.required {
                if !d.taken.contains(file) {
                    let member = if d.dir.is_empty() {
                        file.clone()
                    } else {
                        format!("{}/{file}", d.dir)
                    };
                    return Err(missing(&member, &format!("{}/{file}", d.rule.dest)));
                }
            }
        }
        Ok(())
    }
}

/// Only regular files are installed; a selected link says where it points and whether that is
/// outside the archive (the tar-slip attempt worth naming).
fn refuse_unless_regular<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
    raw: &str,
    path: &str,
) -> Result<()> {
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry
            .link_name_bytes()
            .map(|t| String::from_utf8_lossy(&t).into_owned())
            .unwrap_or_default();
        let (what, escapes) = if kind.is_symlink() {
            ("symlink", symlink_escapes(split_parent(path).0, &target))
        } else {
            ("hard link", normalize_archive_path(&target).is_err())
        };
        if escapes {
            bail!(
                "{name} has an entry `{raw}` that is a {what} to `{target}`, outside the \
                 archive; refusing to extract from it"
            );
        }
        bail!(
            "{name} has an entry `{raw}` that is a {what} to `{target}`; only regular files \
             are installed"
        );
    }
    if !kind.is_file() {
        bail!("{name} has an entry `{raw}` of type {kind:?}; only regular files are installed");
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
