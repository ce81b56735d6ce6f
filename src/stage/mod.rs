//! Stage: for one node role, put exactly the files its install rules name into an overlay tree a
//! person can inspect (`out/<arch>/overlay/<role>/usr/local/bin/runc`...) and pack that tree once
//! as a deterministic gzip-compressed newc cpio (`out/<arch>/overlay-<role>.cpio.gz`).
//!
//! - Archives are read once each, streamed (tar over a gzip decoder), and only the selected
//!   members are written. Nothing is ever held whole in memory.
//! - The tree is built in a temp dir beside `overlay_root` and the archive in a temp file beside
//!   `archive_path`; both are renamed into place only when everything succeeded, so a failure
//!   leaves what was there before (or nothing).
//! - The cpio holds regular files only, no directory entries: the nodes are merged-/usr systems
//!   where `/bin` is a symlink to `usr/bin`, and a `bin` directory entry extracted by
//!   `cpio -idmu` would replace that symlink and break the node.
//! - A stamp next to the archive (`<archive>.stamp`) records what the archive was built from;
//!   when nothing changed, the previous result is reused without extracting or packing.
//!
//! Deliberate choices beyond the brief:
//! - Every entry of an archive we extract from is checked for absolute paths and `..`
//!   components, not only the selected ones: such a name cannot be matched to a rule with any
//!   confidence, and no well-formed release tarball has one. Links are refused only where a rule
//!   selects them (an unselected symlink is never written, so it cannot escape).
//! - A member present twice in an archive is an error rather than "last one wins", and so is a
//!   node path that two rules install.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use flate2::read::MultiGzDecoder;
use flate2::{Compression, GzBuilder};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::digest::{hash_reader, sha256_bytes, Algo, Digest, Hasher};
use crate::plan::{InstallRule, Source};

/// Fixed so that the same tree always packs to the same bytes. Level 1: on release binaries it
/// packs about 4x faster than zlib's default 6 for archives ~10% larger, and the archive is
/// read once, from local media, by the node.
const GZIP_LEVEL: u32 = 1;
/// Bumped when the layout or packing changes in a way the crate version would not reveal.
const STAMP_FORMAT: u32 = 2;
/// How many existing entries an error about a missing member lists.
const LISTED_ENTRIES: usize = 8;
const REGULAR_FILE: u32 = 0o100000;

/// What to stage for one role.
pub struct StageRequest<'a> {
    /// Role name, e.g. `worker`; used in file names, so `[A-Za-z0-9._-]` only.
    pub role: &'a str,
    pub rules: &'a [InstallRule],
    /// Component -> verified file in the download cache.
    pub artifacts: &'a BTreeMap<String, PathBuf>,
    /// Component -> the pinned digest that file was verified against (keys the reuse stamp).
    pub artifact_digests: &'a BTreeMap<String, Digest>,
    /// `out/<arch>/overlay/<role>`: replaced as a whole.
    pub overlay_root: &'a Path,
    /// `out/<arch>/overlay-<role>.cpio.gz`; the stamp is this path plus `.stamp`.
    pub archive_path: &'a Path,
    /// mtime of every cpio entry (SOURCE_DATE_EPOCH or a constant); newc holds 32 bits.
    pub mtime: u64,
}

/// One file of the overlay, as it will be on the node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayEntry {
    /// Absolute node path, e.g. `/usr/local/bin/runc`.
    pub path: String,
    /// Permission bits only (the file type is always "regular file").
    pub mode: u32,
    pub size: u64,
    pub sha256: Digest,
}

/// The staged overlay of one role: its manifest (sorted by path) and its packed archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    pub role: String,
    pub entries: Vec<OverlayEntry>,
    pub archive: PathBuf,
    pub archive_sha256: Digest,
    pub archive_size: u64,
    /// True when a previous result with identical inputs was reused and nothing was written.
    pub reused: bool,
}

/// Stages and packs one role's overlay; see the module docs.
pub fn stage_role(req: &StageRequest) -> Result<Overlay> {
    stage_role_inner(req).with_context(|| format!("staging the overlay of role `{}`", req.role))
}

/// Packs the given files of `root` (each at `root/<path without leading slash>`) into a
/// deterministic gzip-compressed newc cpio at `dest` (temp file + rename). Returns the sha256 and
/// size of the written file. Fails, leaving `dest` untouched, if a file's size or sha256 differs
/// from its entry (it changed after staging or while being packed).
pub fn pack_cpio_gz(
    root: &Path,
    entries: &[OverlayEntry],
    dest: &Path,
    mtime: u64,
) -> Result<(Digest, u64)> {
    let tmp = temp_file_beside(dest)?;
    let packed = write_cpio_gz(root, entries, tmp.as_file(), mtime, true)
        .with_context(|| format!("packing `{}` into `{}`", root.display(), dest.display()))?;
    persist(tmp, dest)?;
    Ok(packed)
}

fn stage_role_inner(req: &StageRequest) -> Result<Overlay> {
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
    let key = stamp_key(req)?;
    if let Some(overlay) = try_reuse(req, &key)? {
        return Ok(overlay);
    }

    let tree = temp_dir_beside(req.overlay_root)?;
    let entries = extract_all(req, tree.path())?;
    let archive = temp_file_beside(req.archive_path)?;
    let (archive_sha256, archive_size) =
        // The tree was written by this call into a private temp dir and hashed on the way in:
        // sizes are still checked, contents are not hashed a second time.
        write_cpio_gz(tree.path(), &entries, archive.as_file(), req.mtime, false)
            .with_context(|| format!("packing `{}`", req.archive_path.display()))?;

    // Commit. The stamp goes first and comes back last, so an interruption anywhere in between
    // leaves no stamp and the next run rebuilds instead of trusting a mixed state.
    let stamp = stamp_path(req.archive_path);
    remove_if_exists(&stamp)?;
    fs::set_permissions(tree.path(), std::fs::Permissions::from_mode(0o755))?;
    replace_dir(tree, req.overlay_root)?;
    persist(archive, req.archive_path)?;
    let overlay = Overlay {
        role: req.role.to_string(),
        entries,
        archive: req.archive_path.to_path_buf(),
        archive_sha256,
        archive_size,
        reused: false,
    };
    write_stamp(&stamp, &key, &overlay)?;
    Ok(overlay)
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
        Source::Dir { path } => {
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
fn node_components(dest: &str) -> Result<Vec<&str>> {
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
fn normalize_archive_path(raw: &str) -> std::result::Result<String, &'static str> {
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

fn split_parent(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Rules of one component, split by how they read its artifact.
#[derive(Default)]
struct ComponentRules<'r> {
    whole: Vec<&'r InstallRule>,
    from_archive: Vec<&'r InstallRule>,
}

fn extract_all(req: &StageRequest, root: &Path) -> Result<Vec<OverlayEntry>> {
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
                scope.spawn(move || -> Result<Staged> {
                    let mut staged = Staged {
                        root: part.path(),
                        entries: BTreeMap::new(),
                        origins: BTreeMap::new(),
                    };
                    let artifact = &req.artifacts[component];
                    for rule in rules.whole {
                        let mut file = fs::File::open(artifact)?;
                        let size = file.metadata()?.len();
                        staged.add(&rule.dest, rule.mode, &mut file, size, || {
                            format!("artifact `{}`", artifact.display())
                        })?;
                    }
                    if !rules.from_archive.is_empty() {
                        extract_archive(component, artifact, &rules.from_archive, &mut staged)?;
                    }
                    Ok(staged)
                })
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
    let mut merged = Staged {
        root,
        entries: BTreeMap::new(),
        origins: BTreeMap::new(),
    };
    for result in results {
        let staged = result?;
        for (path, origin) in &staged.origins {
            if let Some(first) = merged.origins.get(path) {
                bail!("`{path}` is installed twice: from {first} and from {origin}");
            }
            let rel = node_components(path)?.join("/");
            let dest = root.join(&rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(staged.root.join(&rel), &dest)?;
            merged.origins.insert(path.clone(), origin.clone());
        }
        merged.entries.extend(staged.entries);
    }
    for part in parts {
        part.close()
            .with_context(|| format!("removing a work directory in `{}`", root.display()))?;
    }
    Ok(merged.entries.into_values().collect())
}

/// The files written so far into the temp tree, by node path, and where each came from.
struct Staged<'p> {
    root: &'p Path,
    entries: BTreeMap<String, OverlayEntry>,
    origins: BTreeMap<String, String>,
}

impl Staged<'_> {
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
            fs::create_dir_all(parent)?;
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)?;
        let mut out = HashingWriter::new(BufWriter::new(file));
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
        fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
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

fn extract_archive(
    component: &str,
    archive_path: &Path,
    rules: &[&InstallRule],
    staged: &mut Staged,
) -> Result<()> {
    let shown = archive_path.display();
    let mut input = BufReader::with_capacity(1 << 16, fs::File::open(archive_path)?);
    let head = input.fill_buf()?;
    if !head.starts_with(&[0x1f, 0x8b]) {
        bail!(
            "`{shown}` (component `{component}`) is not gzip-compressed (it starts with {}), \
             but its install rules take files out of it, which needs a .tar.gz",
            if head.is_empty() {
                "nothing: it is empty".to_string()
            } else {
                format!("0x{}", hex::encode(&head[..head.len().min(4)]))
            }
        );
    }

    // Member path -> (rule, seen); Dir path -> (rule, files taken).
    let mut members: BTreeMap<String, Vec<(&InstallRule, bool)>> = BTreeMap::new();
    let mut dirs: Vec<(String, &InstallRule, usize)> = Vec::new();
    for rule in rules {
        match &rule.source {
            Source::Member { path } => members
                .entry(normalize_archive_path(path).map_err(|e| anyhow!(e))?)
                .or_default()
                .push((rule, false)),
            Source::Dir { path } => dirs.push((
                normalize_archive_path(path).map_err(|e| anyhow!(e))?,
                rule,
                0,
            )),
            Source::Whole => {}
        }
    }

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

        let (parent, file_name) = split_parent(&name);
        let mut targets: Vec<&InstallRule> = Vec::new();
        if let Some(wanted) = members.get_mut(&name) {
            for (rule, seen) in wanted.iter_mut() {
                ensure!(!*seen, "`{shown}` has the member `{name}` twice");
                *seen = true;
                targets.push(rule);
            }
        }
        let mut dir_targets: Vec<(&InstallRule, String)> = Vec::new();
        for (dir, rule, taken) in dirs.iter_mut() {
            if dir == parent {
                *taken += 1;
                dir_targets.push((rule, format!("{}/{file_name}", rule.dest)));
            }
        }
        if targets.is_empty() && dir_targets.is_empty() {
            continue;
        }

        if kind.is_symlink() || kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let (what, escapes) = if kind.is_symlink() {
                ("symlink", symlink_escapes(parent, &target))
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
            bail!(
                "`{shown}` has an entry `{raw}` of type {kind:?}; only regular files are installed"
            );
        }

        let size = entry.size();
        let origin = || format!("member `{raw}` of `{shown}`");
        let mut first: Option<String> = None;
        let node_paths = targets
            .iter()
            .map(|r| (r.dest.clone(), r.mode))
            .chain(dir_targets.iter().map(|(r, p)| (p.clone(), r.mode)));
        for (node_path, mode) in node_paths {
            // A member that two rules install is read from the archive once and copied after.
            match &first {
                None => {
                    staged.add(&node_path, mode, &mut entry, size, origin)?;
                    first = Some(node_path);
                }
                Some(done) => {
                    let copy_from = staged.root.join(&done[1..]);
                    let mut again = fs::File::open(copy_from)?;
                    staged.add(&node_path, mode, &mut again, size, origin)?;
                }
            }
        }
    }

    let listing = || {
        if listed.is_empty() {
            "it has no files at all".to_string()
        } else {
            format!("it has e.g. {}", listed.join(", "))
        }
    };
    for (member, wanted) in &members {
        if wanted.iter().any(|(_, seen)| !seen) {
            bail!(
                "`{shown}` (component `{component}`) has no member `{member}`; {}",
                listing()
            );
        }
    }
    for (dir, rule, taken) in &dirs {
        if *taken == 0 {
            let dir = if dir.is_empty() { "." } else { dir };
            bail!(
                "`{shown}` (component `{component}`) has no file directly in directory `{dir}` \
                 (for `{}`); {}",
                rule.dest,
                listing()
            );
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

fn write_cpio_gz(
    root: &Path,
    entries: &[OverlayEntry],
    out: &std::fs::File,
    mtime: u64,
    verify_content: bool,
) -> Result<(Digest, u64)> {
    let mtime = u32::try_from(mtime)
        .map_err(|_| anyhow!("mtime {mtime} does not fit the 32-bit cpio header (newc)"))?;
    let mut sorted: Vec<&OverlayEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].path == w[1].path) {
        bail!("`{}` is listed twice", pair[0].path);
    }

    // No file name and mtime 0 in the gzip header: only the content decides the bytes.
    let gz = ParallelGz::new(HashingWriter::new(BufWriter::new(out)), GZIP_LEVEL);
    let mut cpio = NewcWriter::new(gz);
    for (index, entry) in sorted.iter().enumerate() {
        let name = node_components(&entry.path)?.join("/");
        ensure!(
            entry.mode & !0o7777 == 0,
            "`{}`: mode {:o} has bits beyond the permission bits",
            entry.path,
            entry.mode
        );
        let path = root.join(&name);
        let mut file = fs::File::open(&path)?;
        let ino = u32::try_from(index + 1).context("too many files for a cpio archive")?;
        cpio.start_file(&name, ino, REGULAR_FILE | entry.mode, mtime, entry.size)?;
        let mut hasher = Hasher::new(Algo::Sha256);
        let copied = if verify_content {
            let mut content = Tee(&mut cpio, &mut hasher);
            io::copy(&mut (&mut file).take(entry.size), &mut content)
        } else {
            io::copy(&mut (&mut file).take(entry.size), &mut cpio)
        }
        .with_context(|| format!("reading `{}`", path.display()))?;
        let mut probe = [0u8; 1];
        let longer = file.read(&mut probe)? != 0;
        ensure!(
            copied == entry.size && !longer,
            "`{}` changed while being packed: the manifest says {} bytes, the file has {}",
            path.display(),
            entry.size,
            if longer {
                "more".to_string()
            } else {
                copied.to_string()
            }
        );
        if verify_content {
            let sha256 = hasher.finish();
            ensure!(
                sha256 == entry.sha256,
                "`{}` changed after staging: its sha256 is {sha256}, the manifest says {}",
                path.display(),
                entry.sha256
            );
        }
        cpio.finish_file()?;
    }
    let gz = cpio.finish()?;
    let hashing = gz.finish().context("finishing the gzip stream")?;
    let (buffered, sha256, size) = hashing.finish();
    buffered
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .context("flushing the packed archive")?;
    Ok((sha256, size))
}

/// A newc ("070701") cpio writer for regular files only. Hand-written rather than the `cpio`
/// crate (0.4.2): that one lets every header field be set, but its `finish()` accepts an entry
/// that got fewer bytes than its header declared and silently writes a corrupt archive (and sums
/// the size in u32 without overflow checks); wrapping it for that would be as long as this.
struct NewcWriter<W: Write> {
    inner: W,
    /// The open entry's name and how many of its declared bytes are still to come.
    open: Option<(String, u64, u64)>,
}

impl<W: Write> NewcWriter<W> {
    fn new(inner: W) -> Self {
        NewcWriter { inner, open: None }
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, mtime: u32, size: u32) -> Result<()> {
        let name_size = name.len() + 1;
        let name_size32 = u32::try_from(name_size).context("cpio entry name too long")?;
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        // namesize, check: uid/gid 0 (root), nlink 1, all devices 0.
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{mtime:08x}{size:08x}\
             {:08x}{:08x}{:08x}{:08x}{name_size32:08x}{:08x}",
            0, 0, 1, 0, 0, 0, 0, 0
        );
        self.inner.write_all(header.as_bytes())?;
        self.inner.write_all(name.as_bytes())?;
        self.inner.write_all(&[0])?;
        self.pad(110 + name_size as u64)?;
        Ok(())
    }

    /// Pads to the 4-byte boundary newc requires after a name and after file data.
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let pad = (4 - len % 4) % 4;
        self.inner.write_all(&[0u8; 3][..pad as usize])
    }

    fn start_file(&mut self, name: &str, ino: u32, mode: u32, mtime: u32, size: u64) -> Result<()> {
        ensure!(
            self.open.is_none(),
            "cpio entry started before the previous one ended"
        );
        let size32 = u32::try_from(size)
            .map_err(|_| anyhow!("`{name}` is {size} bytes; newc cpio holds at most 4 GiB - 1"))?;
        self.header(name, ino, mode, mtime, size32)?;
        self.open = Some((name.to_string(), size, size));
        Ok(())
    }

    fn finish_file(&mut self) -> Result<()> {
        match self.open.take() {
            Some((_, size, 0)) => Ok(self.pad(size)?),
            Some((name, size, left)) => bail!(
                "cpio entry `{name}` declared {size} bytes but got {}",
                size - left
            ),
            None => bail!("no cpio entry is open"),
        }
    }

    fn finish(mut self) -> Result<W> {
        ensure!(self.open.is_none(), "cpio archive finished inside an entry");
        self.header("TRAILER!!!", 0, 0, 0, 0)?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for NewcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some((name, size, left)) = &mut self.open else {
            return Err(io::Error::other("cpio data written outside an entry"));
        };
        if buf.len() as u64 > *left {
            return Err(io::Error::other(format!(
                "cpio entry `{name}` declared {size} bytes but got more"
            )));
        }
        let n = self.inner.write(buf)?;
        *left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes (sha256) and counts what passes through to the inner writer.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(Algo::Sha256),
            written: 0,
        }
    }

    fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// gzip compressed on every core: the stream is cut into fixed-size chunks, each compressed as a
/// complete gzip member (no name, mtime 0), and the members are written in order. A multi-member
/// file is plain gzip (RFC 1952; `gzip -dc` reads it as one stream), and fixed chunk boundaries
/// keep the bytes independent of the number of cores.
struct ParallelGz<W: Write> {
    out: W,
    level: u32,
    chunk: Vec<u8>,
    pending: std::collections::VecDeque<std::thread::JoinHandle<io::Result<Vec<u8>>>>,
    max_pending: usize,
    members: u64,
}

/// Input bytes per gzip member.
const GZIP_CHUNK: usize = 4 << 20;

impl<W: Write> ParallelGz<W> {
    fn new(out: W, level: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParallelGz {
            out,
            level,
            chunk: Vec::with_capacity(GZIP_CHUNK),
            pending: std::collections::VecDeque::new(),
            max_pending: cores.max(1),
            members: 0,
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.chunk, Vec::with_capacity(GZIP_CHUNK));
        let level = self.level;
        self.pending.push_back(std::thread::spawn(move || {
            let mut gz = GzBuilder::new()
                .mtime(0)
                .write(Vec::with_capacity(data.len() / 2), Compression::new(level));
            gz.write_all(&data)?;
            gz.finish()
        }));
        self.members += 1;
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(h) = self.pending.pop_front() {
            let member = h
                .join()
                .map_err(|_| io::Error::other("a compression thread panicked"))??;
            self.out.write_all(&member)?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        // An empty input still makes one (empty) member: a gzip file has at least one.
        if !self.chunk.is_empty() || self.members == 0 {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(GZIP_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == GZIP_CHUNK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to the first writer and mirrors exactly what it accepted into the second.
struct Tee<'a, A, B>(&'a mut A, &'a mut B);

impl<A: Write, B: Write> Write for Tee<'_, A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[derive(Serialize, Deserialize)]
struct Stamp {
    key: Digest,
    overlay: Overlay,
}

fn stamp_path(archive: &Path) -> PathBuf {
    let mut name = archive.as_os_str().to_owned();
    name.push(".stamp");
    PathBuf::from(name)
}

/// sha256 over everything the packed bytes depend on: rules, the digests of the artifacts they
/// read, mtime and this code's version.
fn stamp_key(req: &StageRequest) -> Result<Digest> {
    #[derive(Serialize)]
    struct Inputs<'a> {
        format: u32,
        tool: &'a str,
        tool_version: &'a str,
        role: &'a str,
        mtime: u64,
        rules: &'a [InstallRule],
        artifacts: BTreeMap<&'a str, &'a Digest>,
    }
    let artifacts = req
        .rules
        .iter()
        .map(|r| (r.component.as_str(), &req.artifact_digests[&r.component]))
        .collect();
    let inputs = Inputs {
        format: STAMP_FORMAT,
        tool: env!("CARGO_PKG_NAME"),
        tool_version: env!("CARGO_PKG_VERSION"),
        role: req.role,
        mtime: req.mtime,
        rules: req.rules,
        artifacts,
    };
    Ok(sha256_bytes(&serde_json::to_vec(&inputs)?))
}

/// The previous result, if its stamp matches and the archive on disk is the one it describes
/// (an archive replaced by hand or by an interrupted run is rebuilt, not trusted).
fn try_reuse(req: &StageRequest, key: &Digest) -> Result<Option<Overlay>> {
    let stamp_file = stamp_path(req.archive_path);
    let text = match fs::read_to_string(&stamp_file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // An unreadable stamp (older format, hand-edited) just means "rebuild".
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return Ok(None);
    };
    if stamp.key != *key || stamp.overlay.role != req.role || !req.overlay_root.is_dir() {
        return Ok(None);
    }
    let archive = match fs::File::open(req.archive_path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let size = archive.metadata()?.len();
    let sha256 = hash_reader(Algo::Sha256, BufReader::new(archive))
        .with_context(|| format!("hashing `{}`", req.archive_path.display()))?;
    if size != stamp.overlay.archive_size || sha256 != stamp.overlay.archive_sha256 {
        return Ok(None);
    }
    Ok(Some(Overlay {
        archive: req.archive_path.to_path_buf(),
        reused: true,
        ..stamp.overlay
    }))
}

fn write_stamp(path: &Path, key: &Digest, overlay: &Overlay) -> Result<()> {
    let tmp = temp_file_beside(path)?;
    // The archive is recorded by name only: the stamp must not depend on where the build ran,
    // so that two builds of the same inputs are byte-identical, stamps included.
    let archive = overlay
        .archive
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_default();
    let stamp = Stamp {
        key: key.clone(),
        overlay: Overlay {
            archive,
            ..overlay.clone()
        },
    };
    serde_json::to_writer_pretty(tmp.as_file(), &stamp)
        .with_context(|| format!("writing `{}`", path.display()))?;
    persist(tmp, path)
}

fn parent_and_name(path: &Path) -> Result<(&Path, String)> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("`{}` has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent)?;
    Ok((parent, name))
}

fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let (parent, name) = parent_and_name(path)?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(parent)
        .with_context(|| format!("creating a temp file in `{}`", parent.display()))
}

/// Renames a finished temp file into place, readable like any build output (temp files are 0600).
fn persist(tmp: tempfile::NamedTempFile, dest: &Path) -> Result<()> {
    fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(dest)
        .with_context(|| format!("renaming `{}` into place", dest.display()))?;
    Ok(())
}

fn temp_dir_beside(path: &Path) -> Result<tempfile::TempDir> {
    let (parent, name) = parent_and_name(path)?;
    tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempdir_in(parent)
        .with_context(|| format!("creating a temp dir in `{}`", parent.display()))
}

/// Swaps the finished tree in; the old tree (if any) is moved aside first because a directory
/// cannot be renamed over a non-empty one.
fn replace_dir(new: tempfile::TempDir, dest: &Path) -> Result<()> {
    let trash = temp_dir_beside(dest)?;
    let old = trash.path().join("old");
    let had_old = match fs::symlink_metadata(dest) {
        Ok(_) => {
            fs::rename(dest, &old)?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = fs::rename(new.path(), dest) {
        if had_old {
            // Best effort: put the previous tree back so a failed swap loses nothing.
            let _ = fs::rename(&old, dest);
        }
        return Err(e.into());
    }
    // Renamed away: nothing is left for the guard to delete.
    let _ = new.keep();
    trash
        .close()
        .with_context(|| format!("removing the previous tree of `{}`", dest.display()))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::Command;

    use tempfile::TempDir;

    const MTIME: u64 = 1_700_000_000;

    enum Node {
        Dir,
        File(Vec<u8>),
        Symlink(&'static str),
        Hardlink(&'static str),
    }

    /// Deterministic content that differs per label and length.
    fn content(label: &str, len: usize) -> Vec<u8> {
        let mut data = format!("\x7fELF fake {label}\n").into_bytes();
        let seed = label
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
        data.extend(
            (0..len as u32).map(|i| (seed.wrapping_add(i.wrapping_mul(2_654_435_761)) >> 13) as u8),
        );
        data
    }

    /// Writes a .tar.gz with exactly these raw entry names (the tar crate's own path setters
    /// would normalize `./bridge` and refuse `../evil`, which the tests need as they are).
    fn targz(path: &Path, entries: &[(&str, Node)]) {
        let file = std::fs::File::create(path).unwrap();
        let gz = GzBuilder::new().mtime(0).write(file, Compression::new(6));
        let mut builder = tar::Builder::new(gz);
        for (name, node) in entries {
            let mut header = tar::Header::new_gnu();
            header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_mtime(1_600_000_000);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_mode(0o755);
            header.set_size(0);
            let data: &[u8] = match node {
                Node::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    &[]
                }
                Node::File(data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    data
                }
                Node::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_link_name_literal(target).unwrap();
                    &[]
                }
                Node::Hardlink(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_link_name_literal(target).unwrap();
                    &[]
                }
            };
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
    }

    fn file(label: &str, len: usize) -> Node {
        Node::File(content(label, len))
    }

    struct Inputs {
        dir: TempDir,
        artifacts: BTreeMap<String, PathBuf>,
        digests: BTreeMap<String, Digest>,
    }

    impl Inputs {
        fn new() -> Self {
            let dir = TempDir::new().unwrap();
            std::fs::create_dir(dir.path().join("cache")).unwrap();
            Inputs {
                dir,
                artifacts: BTreeMap::new(),
                digests: BTreeMap::new(),
            }
        }

        fn cache(&self, name: &str) -> PathBuf {
            self.dir.path().join("cache").join(name)
        }

        fn add(&mut self, component: &str, path: PathBuf) {
            let digest = hash_reader(Algo::Sha256, std::fs::File::open(&path).unwrap()).unwrap();
            self.artifacts.insert(component.to_string(), path);
            self.digests.insert(component.to_string(), digest);
        }

        fn add_targz(&mut self, component: &str, name: &str, entries: &[(&str, Node)]) -> PathBuf {
            let path = self.cache(name);
            targz(&path, entries);
            self.add(component, path.clone());
            path
        }

        fn overlay_root(&self, role: &str) -> PathBuf {
            self.dir.path().join(format!("out/arm64/overlay/{role}"))
        }

        fn archive(&self, role: &str) -> PathBuf {
            self.dir
                .path()
                .join(format!("out/arm64/overlay-{role}.cpio.gz"))
        }

        fn stage(&self, role: &str, rules: &[InstallRule], mtime: u64) -> Result<Overlay> {
            let overlay_root = self.overlay_root(role);
            let archive_path = self.archive(role);
            stage_role(&StageRequest {
                role,
                rules,
                artifacts: &self.artifacts,
                artifact_digests: &self.digests,
                overlay_root: &overlay_root,
                archive_path: &archive_path,
                mtime,
            })
        }

        /// The error as printed, and proof that the failed run left nothing behind.
        fn fails_clean(&self, role: &str, rules: &[InstallRule]) -> String {
            let err = self.stage(role, rules, MTIME).unwrap_err();
            assert!(!self.overlay_root(role).exists());
            assert!(!self.archive(role).exists());
            assert!(!stamp_path(&self.archive(role)).exists());
            // Parent directories may have been created, but nothing is left inside them.
            let out = self.dir.path().join("out/arm64");
            if out.exists() {
                let left: Vec<_> = std::fs::read_dir(&out)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                assert_eq!(left, ["overlay"]);
                let left = std::fs::read_dir(out.join("overlay")).unwrap().count();
                assert_eq!(left, 0, "left behind in out/arm64/overlay");
            }
            format!("{err:#}")
        }
    }

    fn rule(component: &str, source: Source, dest: &str) -> InstallRule {
        InstallRule {
            component: component.to_string(),
            source,
            dest: dest.to_string(),
            mode: 0o755,
        }
    }

    fn member(path: &str) -> Source {
        Source::Member {
            path: path.to_string(),
        }
    }

    fn dir(path: &str) -> Source {
        Source::Dir {
            path: path.to_string(),
        }
    }

    /// Artifacts laid out as upstream publishes them (names and entry spellings), small content.
    fn upstream() -> Inputs {
        let mut inp = Inputs::new();
        inp.add_targz(
            "containerd",
            "containerd-1.7.20-linux-arm64.tar.gz",
            &[
                ("bin/", Node::Dir),
                ("bin/containerd-shim-runc-v2", file("shim", 3000)),
                ("bin/containerd", file("containerd", 5000)),
                ("bin/containerd-stress", file("stress", 2000)),
                ("bin/ctr", file("ctr", 4000)),
            ],
        );
        inp.add_targz(
            "crictl",
            "crictl-v1.31.1-linux-arm64.tar.gz",
            &[("crictl", file("crictl", 3500))],
        );
        inp.add_targz(
            "cni-plugins",
            "cni-plugins-linux-arm64-v1.5.1.tgz",
            &[
                ("./", Node::Dir),
                ("./bridge", file("bridge", 1500)),
                ("./host-local", file("host-local", 1200)),
                ("./loopback", file("loopback", 900)),
                ("./portmap", file("portmap", 1100)),
            ],
        );
        inp.add_targz(
            "kubernetes-node",
            "kubernetes-node-linux-arm64.tar.gz",
            &[
                ("kubernetes/", Node::Dir),
                ("kubernetes/node/", Node::Dir),
                ("kubernetes/node/bin/", Node::Dir),
                ("kubernetes/node/bin/kubeadm", file("kubeadm", 2500)),
                ("kubernetes/node/bin/kubelet", file("kubelet", 6000)),
                ("kubernetes/node/bin/kube-proxy", file("kube-proxy", 4500)),
            ],
        );
        inp.add_targz(
            "etcd",
            "etcd-v3.5.15-linux-arm64.tar.gz",
            &[
                ("etcd-v3.5.15-linux-arm64/", Node::Dir),
                ("etcd-v3.5.15-linux-arm64/README.md", file("readme", 300)),
                ("etcd-v3.5.15-linux-arm64/etcd", file("etcd", 5500)),
                ("etcd-v3.5.15-linux-arm64/etcdctl", file("etcdctl", 3300)),
                ("etcd-v3.5.15-linux-arm64/etcdutl", file("etcdutl", 3100)),
            ],
        );
        let runc = inp.cache("runc.arm64");
        std::fs::write(&runc, content("runc", 2800)).unwrap();
        inp.add("runc", runc);
        inp
    }

    fn worker_rules() -> Vec<InstallRule> {
        vec![
            rule("containerd", dir("bin"), "/bin"),
            rule("crictl", member("crictl"), "/usr/local/bin/crictl"),
            rule("cni-plugins", dir(""), "/opt/cni/bin"),
            rule(
                "kubernetes-node",
                member("kubernetes/node/bin/kubelet"),
                "/usr/local/bin/kubelet",
            ),
            rule(
                "kubernetes-node",
                member("./kubernetes/node/bin/kube-proxy"),
                "/usr/local/bin/kube-proxy",
            ),
            rule("runc", Source::Whole, "/usr/local/bin/runc"),
        ]
    }

    fn control_rules() -> Vec<InstallRule> {
        let mut rules = worker_rules();
        for tool in ["etcd", "etcdctl"] {
            rules.push(rule(
                "etcd",
                member(&format!("etcd-v3.5.15-linux-arm64/{tool}")),
                &format!("/usr/local/bin/{tool}"),
            ));
        }
        rules
    }

    fn listing(overlay: &Overlay) -> String {
        overlay
            .entries
            .iter()
            .map(|e| {
                format!(
                    "{:04o} {:>5} {} {}\n",
                    e.mode,
                    e.size,
                    e.sha256.hex(),
                    e.path
                )
            })
            .collect()
    }

    fn mode_string(mode: u32) -> String {
        let mut s = String::from("-");
        for shift in [6, 3, 0] {
            let bits = (mode >> shift) & 7;
            s.push(if bits & 4 != 0 { 'r' } else { '-' });
            s.push(if bits & 2 != 0 { 'w' } else { '-' });
            s.push(if bits & 1 != 0 { 'x' } else { '-' });
        }
        s
    }

    /// The tree holds exactly the manifest's files, with its modes, sizes and digests.
    fn check_tree(root: &Path, overlay: &Overlay) {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    found.push(format!("/{}", p.strip_prefix(root).unwrap().display()));
                }
            }
        }
        found.sort();
        let listed: Vec<_> = overlay.entries.iter().map(|e| e.path.clone()).collect();
        assert_eq!(found, listed);
        for e in &overlay.entries {
            let p = root.join(&e.path[1..]);
            let meta = std::fs::metadata(&p).unwrap();
            assert_eq!(meta.mode() & 0o7777, e.mode, "{}", e.path);
            assert_eq!(meta.len(), e.size, "{}", e.path);
            let d = hash_reader(Algo::Sha256, std::fs::File::open(&p).unwrap()).unwrap();
            assert_eq!(d, e.sha256, "{}", e.path);
        }
    }

    fn run(script: &str, arg: &Path, cwd: &Path) -> String {
        let out = Command::new("sh")
            .args(["-ec", script, "sh"])
            .arg(arg)
            .current_dir(cwd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ls -l`-style listings by GNU cpio and bsdtar: (mode, owner, group, size, name).
    fn parse_ls(text: &str) -> Vec<(String, String, String, u64, String)> {
        text.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 9, "{l}");
                (
                    f[0].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[4].parse().unwrap(),
                    f[8].to_string(),
                )
            })
            .collect()
    }

    /// GNU cpio and bsdtar read the archive back as exactly the manifest: regular files only,
    /// owned by 0:0 (root), in path order; and the gzip header carries neither a name nor a time.
    fn check_readers(overlay: &Overlay) {
        let expected: Vec<_> = overlay
            .entries
            .iter()
            .map(|e| {
                (
                    mode_string(e.mode),
                    "0".to_string(),
                    "0".to_string(),
                    e.size,
                    e.path[1..].to_string(),
                )
            })
            .collect();
        let here = Path::new("/");
        let cpio = run(
            "gzip -dc \"$1\" | cpio -itv --numeric-uid-gid --quiet",
            &overlay.archive,
            here,
        );
        assert_eq!(parse_ls(&cpio), expected);
        let bsdtar = run(
            "bsdtar -tv --numeric-owner -f \"$1\"",
            &overlay.archive,
            here,
        );
        assert_eq!(parse_ls(&bsdtar), expected);

        let bytes = std::fs::read(&overlay.archive).unwrap();
        let mode = std::fs::metadata(&overlay.archive).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o644);
        assert_eq!(bytes.len() as u64, overlay.archive_size);
        assert_eq!(sha256_bytes(&bytes), overlay.archive_sha256);
        assert_eq!(
            &bytes[..4],
            &[0x1f, 0x8b, 8, 0],
            "gzip header with no FNAME"
        );
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");
    }

    #[test]
    fn worker_overlay_golden() {
        let inp = upstream();
        let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
        assert!(!overlay.reused);
        assert_eq!(overlay.archive, inp.archive("worker"));
        insta::assert_snapshot!(listing(&overlay), @r#"
        0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
        0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
        0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
        0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
        0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
        0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
        0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
        0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
        0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
        0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
        0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
        0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
        "#);
        insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:d345db859ab125ca53eecea509be54cdb5221c4001959b2e695a44db25a31817"#);
        check_tree(&inp.overlay_root("worker"), &overlay);
        check_readers(&overlay);
    }

    #[test]
    fn control_overlay_golden() {
        let inp = upstream();
        let overlay = inp.stage("control", &control_rules(), MTIME).unwrap();
        insta::assert_snapshot!(listing(&overlay), @r#"
        0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
        0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
        0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
        0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
        0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
        0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
        0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
        0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
        0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
        0755  5515 c37f7adcf0ef5c0229ecf51b3969fad8e62c7e47e94d0680e9fef148e7c097d0 /usr/local/bin/etcd
        0755  3318 c9701df9a8c47808e47eff2918d05f1859e6aee4e21fa00212c6373d84e7eb7e /usr/local/bin/etcdctl
        0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
        0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
        0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
        "#);
        insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:ed63e6a3469369b262c53476d2d3a3feba253f46f09cf8412265193066293e6c"#);
        check_tree(&inp.overlay_root("control"), &overlay);
        check_readers(&overlay);
    }

    #[test]
    fn gnu_cpio_keeps_merged_usr_symlinks() {
        let inp = upstream();
        let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
        let node = TempDir::new().unwrap();
        let root = node.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/sh"), "#!shell").unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        run(
            "gzip -dc \"$1\" | cpio -idmu --quiet",
            &overlay.archive,
            root,
        );

        assert!(std::fs::symlink_metadata(root.join("bin"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(root.join("usr/bin/sh").is_file());
        let containerd = std::fs::symlink_metadata(root.join("usr/bin/containerd")).unwrap();
        assert!(containerd.is_file());
        assert_eq!(containerd.mode() & 0o7777, 0o755);
        assert_eq!(containerd.mtime() as u64, MTIME);
        assert_eq!((containerd.uid(), containerd.gid()), (0, 0));
        for path in [
            "usr/local/bin/kubelet",
            "opt/cni/bin/bridge",
            "usr/local/bin/runc",
        ] {
            assert!(root.join(path).is_file(), "{path}");
        }

        // The premise, shown with GNU cpio's own writer: a `bin` directory entry does replace the
        // symlink, so the check above would catch an archive with directory entries.
        let other = TempDir::new().unwrap();
        std::fs::create_dir_all(other.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", other.path().join("bin")).unwrap();
        let with_dirs = node.path().join("with-dirs.cpio");
        let out = Command::new("sh")
            .args([
                "-ec",
                "cd \"$1\" && printf 'bin\\nbin/containerd\\n' | cpio -o -H newc --quiet > \"$2\"",
            ])
            .arg("sh")
            .arg(inp.overlay_root("worker"))
            .arg(&with_dirs)
            .status()
            .unwrap();
        assert!(out.success());
        run("cpio -idmu --quiet < \"$1\"", &with_dirs, other.path());
        assert!(!std::fs::symlink_metadata(other.path().join("bin"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn packing_is_deterministic_and_mtime_matters() {
        let inp = upstream();
        let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
        let root = inp.overlay_root("worker");
        let out = TempDir::new().unwrap();
        let again = out.path().join("again.cpio.gz");
        let (sha, size) = pack_cpio_gz(&root, &overlay.entries, &again, MTIME).unwrap();
        assert_eq!(
            (sha, size),
            (overlay.archive_sha256.clone(), overlay.archive_size)
        );
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&overlay.archive).unwrap()
        );

        // Entry order given does not matter: the archive is sorted by path.
        let mut reversed = overlay.entries.clone();
        reversed.reverse();
        let shuffled = out.path().join("reversed.cpio.gz");
        let (sha, _) = pack_cpio_gz(&root, &reversed, &shuffled, MTIME).unwrap();
        assert_eq!(sha, overlay.archive_sha256);

        let later = out.path().join("later.cpio.gz");
        let (sha, _) = pack_cpio_gz(&root, &overlay.entries, &later, MTIME + 1).unwrap();
        assert_ne!(sha, overlay.archive_sha256);

        // A second, independent run in another directory gives the same bytes.
        let other = upstream();
        let second = other.stage("worker", &worker_rules(), MTIME).unwrap();
        assert_eq!(second.archive_sha256, overlay.archive_sha256);
        assert_eq!(second.entries, overlay.entries);
    }

    fn identity(path: &Path) -> (u64, i64, i64) {
        let m = std::fs::symlink_metadata(path).unwrap();
        (m.ino(), m.mtime(), m.mtime_nsec())
    }

    #[test]
    fn unchanged_inputs_reuse_the_packed_overlay() {
        let mut inp = upstream();
        let rules = worker_rules();
        let first = inp.stage("worker", &rules, MTIME).unwrap();
        assert!(!first.reused);
        let watched = [
            inp.archive("worker"),
            stamp_path(&inp.archive("worker")),
            inp.overlay_root("worker"),
            inp.overlay_root("worker").join("usr/local/bin/kubelet"),
        ];
        let before: Vec<_> = watched.iter().map(|p| identity(p)).collect();

        let second = inp.stage("worker", &rules, MTIME).unwrap();
        assert!(second.reused);
        assert_eq!(
            Overlay {
                reused: false,
                ..second
            },
            first
        );
        let after: Vec<_> = watched.iter().map(|p| identity(p)).collect();
        assert_eq!(after, before);

        // Any input change rebuilds: mtime, a rule's mode, an artifact's digest.
        let other_mtime = inp.stage("worker", &rules, MTIME + 60).unwrap();
        assert!(!other_mtime.reused);
        assert_ne!(other_mtime.archive_sha256, first.archive_sha256);
        let mut changed = rules.clone();
        changed[0].mode = 0o750;
        assert!(!inp.stage("worker", &changed, MTIME).unwrap().reused);
        let real = inp.digests["runc"].clone();
        inp.digests
            .insert("runc".into(), sha256_bytes(b"another runc"));
        assert!(!inp.stage("worker", &rules, MTIME).unwrap().reused);
        inp.digests.insert("runc".into(), real);

        // An archive that is not the one the stamp describes is rebuilt, not trusted.
        assert!(!inp.stage("worker", &rules, MTIME).unwrap().reused);
        assert!(inp.stage("worker", &rules, MTIME).unwrap().reused);
        std::fs::write(inp.archive("worker"), b"truncated").unwrap();
        let repaired = inp.stage("worker", &rules, MTIME).unwrap();
        assert!(!repaired.reused);
        assert_eq!(repaired.archive_sha256, first.archive_sha256);
        check_tree(&inp.overlay_root("worker"), &repaired);
    }

    #[test]
    fn failed_rebuild_keeps_the_previous_result() {
        let inp = upstream();
        let first = inp.stage("worker", &worker_rules(), MTIME).unwrap();
        let before = std::fs::read(inp.archive("worker")).unwrap();
        let mut rules = worker_rules();
        rules.push(rule("crictl", member("critest"), "/usr/local/bin/critest"));
        inp.stage("worker", &rules, MTIME).unwrap_err();
        assert_eq!(std::fs::read(inp.archive("worker")).unwrap(), before);
        check_tree(&inp.overlay_root("worker"), &first);
        assert!(inp.stage("worker", &worker_rules(), MTIME).unwrap().reused);
        let names: Vec<_> = std::fs::read_dir(inp.dir.path().join("out/arm64"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            names,
            [
                "overlay",
                "overlay-worker.cpio.gz",
                "overlay-worker.cpio.gz.stamp"
            ]
        );
    }

    #[test]
    fn refuses_dotdot_entry() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "containerd",
            "containerd.tar.gz",
            &[
                ("bin/containerd", file("c", 10)),
                ("../evil", file("evil", 10)),
            ],
        );
        let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin"), "/bin")]);
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` has an entry `../evil` that has a \
                 `..` component; refusing to extract from it",
                p.display()
            )
        );
    }

    #[test]
    fn refuses_absolute_entry() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "crictl",
            "crictl.tar.gz",
            &[
                ("crictl", file("crictl", 10)),
                ("/etc/passwd", file("pw", 10)),
            ],
        );
        let msg = inp.fails_clean(
            "worker",
            &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
        );
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` has an entry `/etc/passwd` that is \
                 absolute; refusing to extract from it",
                p.display()
            )
        );
    }

    #[test]
    fn refuses_selected_symlink() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "crictl",
            "crictl.tar.gz",
            &[
                ("crictl-real", file("crictl", 10)),
                ("crictl", Node::Symlink("crictl-real")),
            ],
        );
        let msg = inp.fails_clean(
            "worker",
            &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
        );
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` has an entry `crictl` that is a \
                 symlink to `crictl-real`; only regular files are installed",
                p.display()
            )
        );
    }

    #[test]
    fn refuses_escaping_symlink_in_selected_dir() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "containerd",
            "containerd.tar.gz",
            &[
                ("bin/", Node::Dir),
                ("bin/containerd", file("c", 10)),
                ("bin/ctr", Node::Symlink("../../etc/shadow")),
            ],
        );
        let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin"), "/bin")]);
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` has an entry `bin/ctr` that is a \
                 symlink to `../../etc/shadow`, outside the archive; refusing to extract from it",
                p.display()
            )
        );
    }

    #[test]
    fn refuses_hardlink_to_outside() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "cni-plugins",
            "cni.tgz",
            &[
                ("./", Node::Dir),
                ("./bridge", file("bridge", 10)),
                ("./loopback", Node::Hardlink("/etc/shadow")),
            ],
        );
        let msg = inp.fails_clean("worker", &[rule("cni-plugins", dir(""), "/opt/cni/bin")]);
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` has an entry `./loopback` that is a \
                 hard link to `/etc/shadow`, outside the archive; refusing to extract from it",
                p.display()
            )
        );
    }

    #[test]
    fn unselected_links_are_ignored() {
        let mut inp = Inputs::new();
        inp.add_targz(
            "kubernetes-node",
            "k.tar.gz",
            &[
                ("kubernetes/node/bin/kubelet", file("kubelet", 10)),
                ("kubernetes/addons/link", Node::Symlink("/etc/shadow")),
            ],
        );
        let rules = [rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        )];
        let overlay = inp.stage("worker", &rules, MTIME).unwrap();
        assert_eq!(overlay.entries.len(), 1);
    }

    #[test]
    fn missing_member_names_archive_member_and_what_exists() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "kubernetes-node",
            "kubernetes-node-linux-arm64.tar.gz",
            &[
                ("kubernetes/", Node::Dir),
                ("kubernetes/node/bin/kube-proxy", file("kube-proxy", 10)),
                ("kubernetes/node/bin/kubeadm", file("kubeadm", 10)),
            ],
        );
        let rules = [
            rule(
                "kubernetes-node",
                member("kubernetes/node/bin/kube-proxy"),
                "/usr/local/bin/kube-proxy",
            ),
            rule(
                "kubernetes-node",
                member("kubernetes/node/bin/kubelet"),
                "/usr/local/bin/kubelet",
            ),
        ];
        let msg = inp.fails_clean("worker", &rules);
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` (component `kubernetes-node`) has \
                 no member `kubernetes/node/bin/kubelet`; it has e.g. \
                 kubernetes/node/bin/kube-proxy, kubernetes/node/bin/kubeadm",
                p.display()
            )
        );
    }

    #[test]
    fn dir_rule_matching_nothing_fails() {
        let mut inp = Inputs::new();
        let p = inp.add_targz(
            "containerd",
            "containerd.tar.gz",
            &[("./", Node::Dir), ("./containerd", file("c", 10))],
        );
        let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin/"), "/bin")]);
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` (component `containerd`) has no \
                 file directly in directory `bin` (for `/bin`); it has e.g. containerd",
                p.display()
            )
        );
    }

    #[test]
    fn archive_rule_on_non_gzip_file_fails() {
        let mut inp = Inputs::new();
        let p = inp.cache("crictl");
        std::fs::write(&p, content("crictl", 100)).unwrap();
        inp.add("crictl", p.clone());
        let msg = inp.fails_clean(
            "worker",
            &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
        );
        assert_eq!(
            msg,
            format!(
                "staging the overlay of role `worker`: `{}` (component `crictl`) is not \
                 gzip-compressed (it starts with 0x7f454c46), but its install rules take files \
                 out of it, which needs a .tar.gz",
                p.display()
            )
        );
    }

    #[test]
    fn refuses_bad_rules_and_double_installs() {
        let inp = upstream();
        let msg = inp.fails_clean(
            "worker",
            &[rule("runc", Source::Whole, "usr/local/bin/runc")],
        );
        assert_eq!(
            msg,
            "staging the overlay of role `worker`: install rule for component `runc` -> \
             `usr/local/bin/runc`: node path `usr/local/bin/runc` must be absolute"
        );
        let msg = inp.fails_clean("worker", &[rule("runc", Source::Whole, "/usr/../etc/runc")]);
        assert!(msg.ends_with("no empty, `.` or `..` components)"), "{msg}");
        let msg = inp.fails_clean("worker", &[rule("crictl", member("../crictl"), "/x")]);
        assert!(
            msg.ends_with("member path `../crictl` has a `..` component"),
            "{msg}"
        );
        let msg = inp.fails_clean("worker", &[rule("cri-o", Source::Whole, "/x")]);
        assert!(
            msg.ends_with("no resolved artifact for component `cri-o`"),
            "{msg}"
        );
        let msg = inp.fails_clean("work/er", &[]);
        assert!(msg.contains("role name `work/er`"), "{msg}");
        let msg = inp.fails_clean(
            "worker",
            &[
                rule("runc", Source::Whole, "/bin/ctr"),
                rule("containerd", dir("bin"), "/bin"),
            ],
        );
        assert!(
            msg.ends_with(&format!(
                "`/bin/ctr` is installed twice: from member `bin/ctr` of `{}` and from \
                 artifact `{}`",
                inp.artifacts["containerd"].display(),
                inp.artifacts["runc"].display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn packing_refuses_files_that_changed() {
        let inp = upstream();
        let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
        let root = inp.overlay_root("worker");
        let kubelet = root.join("usr/local/bin/kubelet");
        let original = std::fs::read(&kubelet).unwrap();
        let out = TempDir::new().unwrap();
        let dest = out.path().join("o.cpio.gz");

        let mut grown = original.clone();
        grown.push(0);
        std::fs::write(&kubelet, &grown).unwrap();
        let msg = format!(
            "{:#}",
            pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
        );
        assert!(
            msg.ends_with(&format!(
                "`{}` changed while being packed: the manifest says 6018 bytes, the file has more",
                kubelet.display()
            )),
            "{msg}"
        );

        std::fs::write(&kubelet, &original[..100]).unwrap();
        let msg = format!(
            "{:#}",
            pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
        );
        assert!(
            msg.ends_with("the manifest says 6018 bytes, the file has 100"),
            "{msg}"
        );

        let mut flipped = original.clone();
        flipped[3000] ^= 1;
        std::fs::write(&kubelet, &flipped).unwrap();
        let msg = format!(
            "{:#}",
            pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
        );
        assert!(
            msg.contains("changed after staging: its sha256 is"),
            "{msg}"
        );

        let msg = format!(
            "{:#}",
            pack_cpio_gz(&root, &overlay.entries, &dest, 1 << 32).unwrap_err()
        );
        assert!(msg.contains("does not fit the 32-bit cpio header"), "{msg}");
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }

    #[test]
    fn newc_writer_enforces_declared_sizes() {
        let mut short = NewcWriter::new(Vec::new());
        short.start_file("a", 1, 0o100644, 0, 10).unwrap();
        short.write_all(b"12345").unwrap();
        assert_eq!(
            short.finish_file().unwrap_err().to_string(),
            "cpio entry `a` declared 10 bytes but got 5"
        );
        let mut long = NewcWriter::new(Vec::new());
        long.start_file("a", 1, 0o100644, 0, 3).unwrap();
        let err = long.write_all(b"12345").unwrap_err();
        assert_eq!(
            err.to_string(),
            "cpio entry `a` declared 3 bytes but got more"
        );

        // Byte layout: header, name + NUL padded to 4, data padded to 4, trailer.
        let mut ok = NewcWriter::new(Vec::new());
        ok.start_file("ab", 1, 0o100755, 0x5f5e100, 5).unwrap();
        ok.write_all(b"hello").unwrap();
        ok.finish_file().unwrap();
        let bytes = ok.finish().unwrap();
        let expected = [
            "070701",
            "00000001",
            "000081ed",
            "00000000",
            "00000000",
            "00000001",
            "05f5e100",
            "00000005",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000003",
            "00000000",
            "ab\0",
            "\0\0\0",
            "hello",
            "\0\0\0",
            "070701",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000001",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "00000000",
            "0000000b",
            "00000000",
            "TRAILER!!!\0",
            "\0\0\0",
        ]
        .concat();
        assert_eq!(String::from_utf8(bytes).unwrap(), expected);
    }

    fn vm_hwm_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Yields `len` bytes of a repeated 16 KiB pseudo-random block (compressible like a binary).
    struct Pattern {
        block: Vec<u8>,
        at: usize,
        left: u64,
    }

    impl Pattern {
        fn new(len: u64) -> Self {
            let mut x = 0x9e37_79b9_u32;
            let block = (0..16 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            Pattern {
                block,
                at: 0,
                left: len,
            }
        }
    }

    impl Read for Pattern {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf
                .len()
                .min(self.block.len() - self.at)
                .min(self.left as usize);
            buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
            self.at = (self.at + n) % self.block.len();
            self.left -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn large_member_is_streamed() {
        const SIZE: u64 = 300 << 20;
        let mut inp = Inputs::new();
        let path = inp.cache("kubernetes-node-linux-arm64.tar.gz");
        {
            let file = std::fs::File::create(&path).unwrap();
            let mut builder = tar::Builder::new(GzBuilder::new().write(file, Compression::fast()));
            let mut header = tar::Header::new_gnu();
            header.set_size(SIZE);
            header.set_mode(0o755);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(
                    &mut header,
                    "kubernetes/node/bin/kubelet",
                    Pattern::new(SIZE),
                )
                .unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        inp.add("kubernetes-node", path);
        let expected = hash_reader(Algo::Sha256, Pattern::new(SIZE)).unwrap();

        let before = vm_hwm_kib();
        let rules = [rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        )];
        let overlay = inp.stage("worker", &rules, MTIME).unwrap();
        let grown = vm_hwm_kib().saturating_sub(before);
        eprintln!("VmHWM before {before} KiB, grew by {grown} KiB staging a {SIZE}-byte member");
        assert_eq!(overlay.entries[0].size, SIZE);
        assert_eq!(overlay.entries[0].sha256, expected);
        assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
        let listed = run(
            "gzip -dc \"$1\" | cpio -itv --numeric-uid-gid --quiet",
            &overlay.archive,
            Path::new("/"),
        );
        assert_eq!(parse_ls(&listed)[0].3, SIZE);
    }
}
