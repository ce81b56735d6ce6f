//! `imagegen pin`: moves a component of a profile to another version without editing URLs and
//! digests by hand, and `imagegen pin --check`: which components have newer releases.
//!
//! A pin reads, for each architecture, the checksum file the component's upstream publishes
//! beside the release file (`sums`: which file, per component, as data), checks that digest by
//! downloading the file into the cache (unless `trust_sums`; the next build finds it there),
//! then rewrites the version, digest and size values of the profile in place, leaving every
//! other byte as it was (`edit`), and writes it atomically, once the edited profile validates
//! and says what was asked. Nothing is written when any step fails. `feeds` knows where each
//! upstream lists its releases.
//!
//! Every file comes through `resolve`: from the mirrors in the upstream layout, then upstream
//! (not offline); release files land in the cache, checksum files and feeds are read as text.

mod edit;
mod feeds;
mod sums;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;

use anyhow::{bail, Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};

use crate::digest::{Algo, Digest};
use crate::fsutil;
use crate::plan::Artifact;
use crate::profile::{self, Arch, Component, ComponentKey, Profile};
use crate::resolve::{self, ResolveOptions};

use edit::Edit;

/// Every component a profile can pin, in profile order.
const KEYS: [ComponentKey; 8] = [
    ComponentKey::Containerd,
    ComponentKey::Runc,
    ComponentKey::Crictl,
    ComponentKey::CniPlugins,
    ComponentKey::KubernetesNode,
    ComponentKey::KubernetesServer,
    ComponentKey::Etcd,
    ComponentKey::BaseImage,
];

/// What `imagegen pin COMPONENT VERSION` was asked.
pub struct PinOptions {
    /// The profile file to rewrite.
    pub profile: Utf8PathBuf,
    /// A component key of the profile, or `kubernetes` (the node and server tarballs, which
    /// must be of one release).
    pub component: String,
    pub version: String,
    /// The architectures to pin; `None`: those the component pins now.
    pub archs: Option<Vec<Arch>>,
    /// Take the published checksums without downloading the files they describe.
    pub trust_sums: bool,
    /// Do everything but write the profile.
    pub dry_run: bool,
    pub resolve: ResolveOptions,
}

/// One release file to pin: a component for one architecture.
struct Job {
    key: ComponentKey,
    arch: Arch,
    url: String,
    file_name: String,
    sums_url: String,
    algo: Algo,
    old: Option<Digest>,
    new: Option<Digest>,
    size: Option<u64>,
}

/// Pins the component and returns what to print: each change, and whether it was written.
pub fn pin(o: &PinOptions) -> Result<String> {
    let file = o.profile.as_str();
    let text = fsutil::read_to_string(o.profile.as_std_path()).map_err(|e| {
        anyhow::anyhow!(
            "cannot read profile {file}: {}",
            fsutil::os_reason(&e, o.profile.as_std_path())
        )
    })?;
    let prof = profile::parse(&text, file)?;
    let keys = components_named(&prof, &o.component)?;
    let version = version_arg(&o.version)?;
    let mut jobs = Vec::new();
    for &key in &keys {
        let c = prof
            .component(key)
            .context("internal: component vanished")?;
        for arch in targets(c, o.archs.as_deref())? {
            let url = profile::expand_url(&c.url_template, &version, arch);
            let old = c.digests.get(&arch).cloned();
            let (sums_url, algo) = sums::sums_url(key, &url, old.as_ref().map(Digest::algo))
                .with_context(|| format!("{key} {version} for {arch}"))?;
            jobs.push(Job {
                key,
                arch,
                file_name: url.rsplit('/').next().unwrap_or(&url).to_string(),
                url,
                sums_url,
                algo,
                old,
                new: None,
                size: None,
            });
        }
    }
    read_published_digests(&mut jobs, &version, &o.resolve)?;
    if o.trust_sums {
        if let Some(j) = jobs.iter().find(|j| {
            prof.component(j.key)
                .is_some_and(|c| c.sizes.contains_key(&j.arch))
        }) {
            bail!(
                "{} pins a size for {} (`sizes`), which only a download can tell: pin without \
                 --trust-sums; {file} is unchanged",
                j.key,
                j.arch
            );
        }
    } else {
        check_by_download(&mut jobs, &version, &o.resolve, file)?;
    }
    let new_text = rewrite(&text, file, &prof, &jobs, &version)?;
    let mut report = summary(&prof, &jobs, &version, o.trust_sums);
    if new_text == text {
        let _ = write!(report, "{file} already pins this; nothing to change");
    } else if o.dry_run {
        let _ = write!(report, "dry run: {file} not changed");
    } else {
        write_profile(&o.profile, &new_text)?;
        let _ = write!(report, "wrote {file}");
    }
    Ok(report)
}

/// The components `name` stands for.
fn components_named(prof: &Profile, name: &str) -> Result<Vec<ComponentKey>> {
    let present = |k: ComponentKey| prof.component(k).is_some();
    let (node, server) = (ComponentKey::KubernetesNode, ComponentKey::KubernetesServer);
    if name == "kubernetes" {
        return Ok([node, server].into_iter().filter(|k| present(*k)).collect());
    }
    let Some(key) = KEYS.iter().copied().find(|k| k.as_str() == name) else {
        bail!(
            "unknown component `{name}` (known: {}, and kubernetes for both tarballs)",
            KEYS.map(ComponentKey::as_str).join(", ")
        );
    };
    if !present(key) {
        bail!("the profile pins no {key}");
    }
    if (key == node && present(server)) || (key == server && present(node)) {
        bail!(
            "kubernetes-node and kubernetes-server come from one Kubernetes release: pin both \
             with `imagegen pin kubernetes VERSION`"
        );
    }
    Ok(vec![key])
}

/// The version as the profile writes it: `v1.32.0` is `1.32.0`.
fn version_arg(v: &str) -> Result<String> {
    let v = v
        .strip_prefix('v')
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(v);
    let ok = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-+_".contains(c));
    if !ok {
        bail!("`{v}` is not a version like 1.7.22");
    }
    Ok(v.to_string())
}

/// The architectures to pin `c` for: `asked`, or those it pins. Asking for fewer than it pins
/// would leave the others' digests pinned to the old version's files under the new version.
fn targets(c: &Component, asked: Option<&[Arch]>) -> Result<Vec<Arch>> {
    let pinned: Vec<Arch> = c.digests.keys().copied().collect();
    let Some(asked) = asked else {
        return Ok(pinned);
    };
    if let Some(left) = pinned.iter().find(|a| !asked.contains(a)) {
        bail!(
            "{} pins {left} too: pinning {} alone would leave {left}'s digest of {} under the \
             new version; pin all of them (--arch all), or remove digests.{left} from the \
             profile first",
            c.key,
            asked
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            c.version
        );
    }
    Ok(asked.to_vec())
}

/// Reads each job's digest from its published checksum file (each file once).
fn read_published_digests(jobs: &mut [Job], version: &str, opts: &ResolveOptions) -> Result<()> {
    let mut texts: BTreeMap<String, String> = BTreeMap::new();
    for j in jobs.iter_mut() {
        let what = || format!("{} {version} for {}", j.key, j.arch);
        if !texts.contains_key(&j.sums_url) {
            let t = resolve::fetch_text(&j.sums_url, opts)
                .with_context(|| format!("{}: cannot get its published checksums", what()))?;
            texts.insert(j.sums_url.clone(), t);
        }
        let digest = sums::digest_in(&texts[&j.sums_url], &j.file_name, j.algo)
            .with_context(|| format!("{}: the checksum file {}", what(), j.sums_url))?;
        j.new = Some(digest);
    }
    Ok(())
}

/// Downloads every file into the cache, where its digest is checked against the published
/// one; records each size.
fn check_by_download(
    jobs: &mut [Job],
    version: &str,
    opts: &ResolveOptions,
    file: &str,
) -> Result<()> {
    let artifacts: Vec<Artifact> = jobs
        .iter()
        .filter_map(|j| {
            Some(Artifact {
                component: j.key.to_string(),
                version: version.to_string(),
                url: j.url.clone(),
                file_name: j.file_name.clone(),
                digest: j.new.clone()?,
                size: None,
            })
        })
        .collect();
    let resolved = resolve::resolve(&artifacts, opts).with_context(|| {
        format!("{file} is unchanged: not every release file could be checked against its published checksum")
    })?;
    for (j, r) in jobs.iter_mut().zip(resolved) {
        j.size = Some(
            fs_err::metadata(&r.path)
                .with_context(|| format!("reading back {}", r.path.display()))?
                .len(),
        );
    }
    Ok(())
}

/// The profile text with the new version, digests and sizes, checked by parsing it again.
fn rewrite(text: &str, file: &str, prof: &Profile, jobs: &[Job], version: &str) -> Result<String> {
    let spans = edit::locate(text, file)?;
    let mut edits = Vec::new();
    let mut keys: Vec<ComponentKey> = jobs.iter().map(|j| j.key).collect();
    keys.dedup();
    for key in &keys {
        let s = spans
            .get(key.as_str())
            .with_context(|| format!("{file}: components.{key} not found"))?;
        edits.push(Edit::replace(s.version, version));
    }
    for j in jobs {
        let s = &spans[j.key.as_str()];
        let digest = j.new.as_ref().context("internal: no digest")?.to_string();
        match s.digests.get(j.arch.as_str()) {
            Some(at) => edits.push(Edit::replace(*at, &digest)),
            None => edits.push(
                Edit::add_digest(text, s, j.arch.as_str(), &digest)
                    .with_context(|| format!("{file}: components.{}.digests", j.key))?,
            ),
        }
        if let (Some(at), Some(size)) = (s.sizes.get(j.arch.as_str()), j.size) {
            edits.push(Edit::number(*at, size));
        }
    }
    let new_text = edit::apply(text, edits);
    // The edit must say what was asked, and nothing else may have moved.
    let again = profile::parse(&new_text, file)
        .map_err(anyhow::Error::new)
        .context("internal error: the edited profile does not validate; nothing was written")?;
    for j in jobs {
        let c = again.component(j.key);
        let ok = c.is_some_and(|c| {
            c.version == version
                && c.digests.get(&j.arch) == j.new.as_ref()
                && prof
                    .component(j.key)
                    .is_some_and(|old| old.url_template == c.url_template)
        });
        if !ok {
            bail!("internal error: the edited profile does not pin {} {version} for {} as asked; nothing was written", j.key, j.arch);
        }
    }
    Ok(new_text)
}

fn summary(prof: &Profile, jobs: &[Job], version: &str, trusted: bool) -> String {
    let mut s = String::new();
    let mut last = None;
    for j in jobs {
        if last != Some(j.key) {
            let old = prof.component(j.key).map_or("", |c| c.version.as_str());
            let _ = writeln!(s, "{} {old} -> {version}", j.key);
            last = Some(j.key);
        }
        let how = match (trusted, j.size) {
            (true, _) => format!("from {} (not downloaded: --trust-sums)", j.sums_url),
            (false, Some(n)) => format!("checked: the {n}-byte file matches {}", j.sums_url),
            (false, None) => String::new(),
        };
        let old = j
            .old
            .as_ref()
            .map_or("(none)".to_string(), Digest::to_string);
        let new = j.new.as_ref().map_or(String::new(), Digest::to_string);
        let _ = writeln!(s, "  {}: {old}\n      -> {new}\n         {how}", j.arch);
    }
    s
}

/// Replaces the profile with `text`, atomically, keeping its mode (a symlink's target is
/// replaced, not the link).
fn write_profile(path: &Utf8Path, text: &str) -> Result<()> {
    let real = fs_err::canonicalize(path.as_std_path())?;
    let real = Utf8PathBuf::from_path_buf(real)
        .map_err(|p| anyhow::anyhow!("{} is not a UTF-8 path", p.display()))?;
    let mode = fs_err::metadata(real.as_std_path())?.permissions().mode() & 0o7777;
    fsutil::write_atomic(&real, text.as_bytes(), mode)
}

/// What `imagegen pin --check` found.
pub struct CheckReport {
    /// One line per component, then what to do.
    pub text: String,
    /// Components whose releases could not be looked up.
    pub unreachable: usize,
}

/// Looks up, for every component of the profile, whether its upstream has newer releases.
pub fn check(prof: &Profile, opts: &ResolveOptions) -> CheckReport {
    let mut fetcher = feeds::Fetcher::new(opts);
    let width = prof
        .components
        .iter()
        .map(|c| c.key.as_str().len())
        .max()
        .unwrap_or(0);
    let vwidth = prof
        .components
        .iter()
        .map(|c| c.version.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    let mut unreachable = 0;
    let mut newer = 0;
    for c in &prof.components {
        let what = match feeds::feed_of(&c.url_template) {
            None => "no release feed known for this URL; check its project by hand".to_string(),
            Some(feed) => match fetcher.newer(&feed, &c.version) {
                Ok(n) => {
                    let mut found = Vec::new();
                    if let Some(v) = &n.same_line {
                        found.push(format!("{v} (newest of its line)"));
                    }
                    if let Some(v) = &n.newest {
                        found.push(format!("{v} (newest)"));
                    }
                    if found.is_empty() {
                        "up to date".to_string()
                    } else {
                        newer += 1;
                        format!("newer: {}", found.join(", "))
                    }
                }
                Err(e) => {
                    unreachable += 1;
                    format!("cannot check: {e:#}")
                }
            },
        };
        let _ = writeln!(
            text,
            "{:width$}  {:vwidth$}  {what}",
            c.key.as_str(),
            c.version
        );
    }
    if newer > 0 {
        text.push_str("to move one: imagegen pin COMPONENT VERSION --profile FILE\n");
    }
    if unreachable > 0 {
        let _ = writeln!(
            text,
            "could not reach the release lists of {unreachable} component{}; without network, \
             a mirror in the upstream layout that holds them serves too (--mirror URL, e.g. \
             URL/api.github.com/repos/containerd/containerd/releases, \
             URL/dl.k8s.io/release/stable.txt)",
            if unreachable == 1 { "" } else { "s" }
        );
    }
    CheckReport { text, unreachable }
}
