//! imagegen's own PKI directory (`out/pki`): what `genauth.sh` and `genenckey.sh` make, made
//! once, checked at every run, and written as a set.
//!
//! Every run first checks what is there (`check`): a CA key that is not `ca.pem`'s, a
//! certificate without its key, a key that is not its certificate's, a certificate of another
//! CA or one whose subject or names the profile no longer has is an error naming the file and
//! the fix, and nothing is written. Then it works out what to make: what is missing, what
//! `--force NAME` / `--force-ca` asks for, a kubeconfig that no longer embeds its identity's
//! files or points elsewhere (written again: it holds no secret of its own), and what a run
//! of an older imagegen killed half-way left (`ca.pem` made again from `ca-key.pem`, a
//! certificate issued for a key that lacks one). Existing files are never overwritten
//! otherwise.
//!
//! The new files and links to the kept ones go into a temp directory beside `out/pki`, which
//! then replaces it in one swap (`fsutil::replace_dir`): a run killed at any moment leaves
//! the old complete set or the new one, never a CA key without `ca.pem`. The caller holds
//! `out/.lock`, so two runs never make two CAs.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};

use super::ca::{self, Ca};
use super::check::{self, CaFacts, CaState, Files, Judge, KubeconfigState, PairState, Severity};
use super::identities::{self, Identity, ENCRYPTION_CONFIG};
use super::x509::Cert;
use super::{encryption, issue, kubeconfig, Force, PkiMode};
use crate::fsutil;
use crate::plan::Plan;

/// What a run did, for the caller to say (names and reasons only, never content).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Files that did not exist before, in the order they were made.
    pub created: Vec<String>,
    /// What else changed, and why.
    pub notes: Vec<String>,
    /// Findings of the check that do not stop the run (`<dir>/<file>: ...`).
    pub warnings: Vec<String>,
    /// Kubeconfigs written again, and why (said as notes, grouped by reason).
    rewritten: Vec<(String, String)>,
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The files to write: name -> (content, mode).
type NewFiles = BTreeMap<String, (String, u32)>;

/// Checks `dir` against the plan, makes what is missing or forced, and swaps the new set in.
pub(crate) fn complete(
    dir: &Utf8Path,
    plan: &Plan,
    force: &Force,
    args: &str,
) -> anyhow::Result<Outcome> {
    let dir = real_dir(dir)?;
    let ids = identities::all(plan);
    let forced = forced_stems(force, &ids, args)?;
    let files = Files::read(&dir, plan);
    let judge = Judge {
        mode: PkiMode::Managed,
        plan,
        args,
        now: time::OffsetDateTime::now_utc(),
    };
    let mut findings = check::Findings::default();
    let mut out = Outcome::default();
    let mut new = NewFiles::new();

    let ca = prepare_ca(
        &files,
        &ids,
        force,
        &judge,
        &mut findings,
        &mut new,
        &mut out,
    )?;
    let facts = match &ca {
        Some(c) => Some(CaFacts {
            pem: c.pem.clone(),
            cert: Cert::parse(&c.pem).context("ca.pem: expected a PEM CA certificate")?,
        }),
        None => None,
    };
    for id in &ids {
        let pair = if forced.contains(id.stem.as_str()) {
            ca.as_ref()
                .map(|ca| reissue(&files, id, ca, &mut new, &mut out))
                .transpose()?
        } else {
            let state = check::pair(&files, id, facts.as_ref(), &judge, &mut findings);
            complete_pair(state, id, ca.as_ref(), &mut new, &mut out)?
        };
        let (Some((cert, key)), Some(facts)) = (&pair, &facts) else {
            continue;
        };
        let mut names = vec![check::cert_file(id), check::key_file(id)];
        if !id.kubeconfig {
        } else if forced.contains(id.stem.as_str()) {
            let text = render_kubeconfig(id, facts, (cert, key), plan)?;
            let name = check::kubeconfig_file(id);
            replace(&mut new, &mut out, &files, &name, text, 0o600);
            names.push(name);
        } else {
            write_kubeconfig(&files, id, facts, (cert, key), &judge, &mut new, &mut out)?;
        }
        if matches!(force, Force::Identities(_)) && forced.contains(id.stem.as_str()) {
            out.notes.push(format!(
                "issued {} again, with the same CA",
                and_list(&names)
            ));
        }
    }
    let mut reasons: Vec<&str> = Vec::new();
    for (_, r) in &out.rewritten {
        if !reasons.contains(&r.as_str()) {
            reasons.push(r);
        }
    }
    let notes: Vec<String> = reasons
        .iter()
        .map(|r| {
            let names: Vec<String> = out
                .rewritten
                .iter()
                .filter(|(_, x)| x == r)
                .map(|(n, _)| n.clone())
                .collect();
            format!(
                "wrote {} again from the PKI's files ({r})",
                and_list(&names)
            )
        })
        .collect();
    out.notes.extend(notes);
    match force {
        Force::Ca => {
            out.notes.push(format!(
                "made a new CA and issued every certificate, key and kubeconfig again ({ENCRYPTION_CONFIG} is kept)"
            ));
            out.warnings.push(
                "a new CA: nodes running with the old credentials can no longer reach the cluster, nor it them; rebuild the seeds and start every VM afresh (delete out/vms/<arch>/<vm>/)".into(),
            );
        }
        Force::Identities(_) => out.notes.push(
            "the replaced certificates stay valid until they expire (nothing revokes them); nodes get the new ones with their next seed".into(),
        ),
        Force::Nothing => {}
    }
    match check::encryption(&files, &judge, &mut findings) {
        Some(_) => {}
        None => add(
            &mut new,
            &mut out,
            ENCRYPTION_CONFIG,
            encryption::generate()?,
            0o600,
        ),
    }

    if findings.count(Severity::Error) > 0 {
        bail!(
            "{dir} cannot be used as it is (`imagegen pki check{args}` shows every file):\n  {}",
            findings.lines(&dir, Severity::Error).join("\n  ")
        );
    }
    out.warnings
        .splice(0..0, findings.lines(&dir, Severity::Warning));
    if !new.is_empty() {
        write_set(&dir, &new)?;
    }
    Ok(out)
}

/// `out/pki` itself, or where it points when it is a symlink (the swap replaces a directory,
/// not the link to it).
fn real_dir(dir: &Utf8Path) -> anyhow::Result<Utf8PathBuf> {
    match fs_err::symlink_metadata(dir.as_std_path()) {
        Ok(m) if m.file_type().is_symlink() => {
            let real = fs_err::canonicalize(dir.as_std_path())?;
            Utf8PathBuf::from_path_buf(real)
                .map_err(|p| anyhow::anyhow!("{dir} points at {}, which is not UTF-8", p.display()))
        }
        _ => Ok(dir.to_owned()),
    }
}

/// The identities `--force` names (all with `--force-ca`); an unknown name is an error that
/// lists the known ones.
fn forced_stems<'a>(
    force: &Force,
    ids: &'a [Identity],
    args: &str,
) -> anyhow::Result<BTreeSet<&'a str>> {
    let all = ids.iter().map(|i| i.stem.as_str());
    match force {
        Force::Nothing => Ok(BTreeSet::new()),
        Force::Ca => Ok(all.collect()),
        Force::Identities(names) => {
            let mut out = BTreeSet::new();
            for n in names {
                match ids.iter().find(|i| i.stem == *n) {
                    Some(id) => out.insert(id.stem.as_str()),
                    None => bail!(
                        "`imagegen pki{args} --force {n}`: no identity {n} in the profile (expected one of: {})",
                        all.clone().collect::<Vec<_>>().join(", ")
                    ),
                };
            }
            Ok(out)
        }
    }
}

fn add(new: &mut NewFiles, out: &mut Outcome, name: &str, text: String, mode: u32) {
    out.created.push(name.to_string());
    new.insert(name.to_string(), (text, mode));
}

/// The CA this run signs with: the existing one, a new one (none yet, or `--force-ca`), or
/// `ca.pem` made again from `ca-key.pem`. `None` when the check found it broken.
fn prepare_ca(
    files: &Files,
    ids: &[Identity],
    force: &Force,
    judge: &Judge,
    findings: &mut check::Findings,
    new: &mut NewFiles,
    out: &mut Outcome,
) -> anyhow::Result<Option<Ca>> {
    if matches!(force, Force::Ca) {
        let ca = ca::create()?;
        replace(new, out, files, "ca.pem", ca.pem.clone(), 0o644);
        replace(new, out, files, "ca-key.pem", ca.key_pem.clone(), 0o600);
        return Ok(Some(ca));
    }
    match check::ca(files, true, judge, findings) {
        CaState::Usable(facts, Some(key)) => Ok(Some(ca::load(&facts.pem, &key)?)),
        CaState::Usable(_, None) | CaState::Broken => Ok(None),
        CaState::Absent => {
            let signed: Vec<&str> = ids
                .iter()
                .filter(|i| files.exists(&check::cert_file(i)))
                .map(|i| i.stem.as_str())
                .collect();
            if !signed.is_empty() {
                findings.0.push(check::Finding {
                    file: "ca.pem".into(),
                    severity: Severity::Error,
                    message: format!(
                        "missing, with ca-key.pem, while certificates it signed are here ({})",
                        signed.join(", ")
                    ),
                    fix: Some(format!(
                        "restore ca.pem and ca-key.pem, or {} (a new CA: nodes running with the old credentials are cut off)",
                        judge.pki(" --force-ca")
                    )),
                });
                return Ok(None);
            }
            let ca = ca::create()?;
            add(new, out, "ca.pem", ca.pem.clone(), 0o644);
            add(new, out, "ca-key.pem", ca.key_pem.clone(), 0o600);
            Ok(Some(ca))
        }
        CaState::KeyOnly(key) => {
            let certs: Vec<Cert> = ids
                .iter()
                .filter_map(|id| match files.entry(&check::cert_file(id)) {
                    check::Entry::Text(t) => Cert::parse(t),
                    _ => None,
                })
                .collect();
            let ca = ca::remake(&key, &certs)?;
            add(new, out, "ca.pem", ca.pem.clone(), 0o644);
            out.notes.push(
                "made ca.pem again from ca-key.pem (a run was killed between the two): the same key and subject, so the existing certificates keep verifying".into(),
            );
            Ok(Some(ca))
        }
    }
}

/// Adds a file that replaces an existing one (noted), or is new (created).
fn replace(
    new: &mut NewFiles,
    out: &mut Outcome,
    files: &Files,
    name: &str,
    text: String,
    mode: u32,
) {
    if files.exists(name) {
        new.insert(name.to_string(), (text, mode));
    } else {
        add(new, out, name, text, mode);
    }
}

/// What the check found of an identity's pair, completed: a new pair when there is none, a
/// certificate for a key left without one. `None` when the check found it broken (or there
/// is no CA to issue with).
fn complete_pair(
    state: PairState,
    id: &Identity,
    ca: Option<&Ca>,
    new: &mut NewFiles,
    out: &mut Outcome,
) -> anyhow::Result<Option<(String, String)>> {
    let (cert_name, key_name) = (check::cert_file(id), check::key_file(id));
    Ok(match (state, ca) {
        (PairState::Good { cert, key }, _) => Some((cert, key)),
        (PairState::Absent, Some(ca)) => {
            let issued = issue::issue(id, ca, None)?;
            add(new, out, &cert_name, issued.cert_pem.clone(), 0o644);
            add(new, out, &key_name, issued.key_pem.clone(), 0o600);
            Some((issued.cert_pem, issued.key_pem))
        }
        (PairState::KeyOnly(key), Some(ca)) => {
            let issued = issue::issue(id, ca, Some(&key))?;
            add(new, out, &cert_name, issued.cert_pem.clone(), 0o644);
            out.notes.push(format!(
                "issued {cert_name} for the existing {key_name} (a run was killed between the two)"
            ));
            Some((issued.cert_pem, key))
        }
        _ => None,
    })
}

/// `--force NAME`: a new key and certificate with the same CA (the caller writes the
/// kubeconfig).
fn reissue(
    files: &Files,
    id: &Identity,
    ca: &Ca,
    new: &mut NewFiles,
    out: &mut Outcome,
) -> anyhow::Result<(String, String)> {
    let issued = issue::issue(id, ca, None)?;
    let (cert_name, key_name) = (check::cert_file(id), check::key_file(id));
    replace(new, out, files, &cert_name, issued.cert_pem.clone(), 0o644);
    replace(new, out, files, &key_name, issued.key_pem.clone(), 0o600);
    Ok((issued.cert_pem, issued.key_pem))
}

fn render_kubeconfig(
    id: &Identity,
    ca: &CaFacts,
    (cert, key): (&str, &str),
    plan: &Plan,
) -> anyhow::Result<String> {
    kubeconfig::render(
        &ca.pem,
        &plan.cluster.api_endpoint,
        &id.common_name,
        cert,
        key,
    )
}

/// Writes `<stem>.kubeconfig` when it is missing or no longer what this run would write.
fn write_kubeconfig(
    files: &Files,
    id: &Identity,
    ca: &CaFacts,
    (cert, key): (&str, &str),
    judge: &Judge,
    new: &mut NewFiles,
    out: &mut Outcome,
) -> anyhow::Result<()> {
    let name = check::kubeconfig_file(id);
    let text = || render_kubeconfig(id, ca, (cert, key), judge.plan);
    // Its findings are what this run fixes, not what it reports.
    let mut ignored = check::Findings::default();
    match check::kubeconfig(files, id, Some(ca), Some((cert, key)), judge, &mut ignored) {
        KubeconfigState::Good => {}
        KubeconfigState::Absent => add(new, out, &name, text()?, 0o600),
        KubeconfigState::Stale(reasons) => {
            new.insert(name.clone(), (text()?, 0o600));
            out.rewritten.push((name, reasons.join("; ")));
        }
        // Not in imagegen's own PKI: what cannot be read is stale there.
        KubeconfigState::Broken => {
            new.insert(name.clone(), (text()?, 0o600));
        }
    }
    Ok(())
}

/// Writes the set: a temp directory beside `dir` with links to every file kept and the new
/// files (mode first, synced), swapped in for `dir` in one step.
fn write_set(dir: &Utf8Path, new: &NewFiles) -> anyhow::Result<()> {
    let staged = fsutil::temp_dir_beside(dir.as_std_path())?;
    let _on_interrupt = fsutil::RemoveOnInterrupt::new(staged.path());
    let staged_dir = Utf8Path::from_path(staged.path())
        .with_context(|| format!("{} is not UTF-8", staged.path().display()))?;
    fsutil::create_private_dir(staged_dir)?;
    if dir.is_dir() {
        for e in fs_err::read_dir(dir.as_std_path())? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if new.contains_key(&name) {
                continue;
            }
            if e.file_type()?.is_dir() {
                bail!(
                    "{}: a directory in the PKI directory; imagegen writes {dir} as a whole: move it elsewhere",
                    dir.join(&name)
                );
            }
            fsutil::link_or_copy(&e.path(), &staged_dir.join(&name).into_std_path_buf())?;
        }
    }
    for (name, (text, mode)) in new {
        let path = staged_dir.join(name);
        let mut f = fsutil::create_new(path.as_std_path(), *mode)?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {path}"))?;
    }
    let staged_path = staged.keep();
    fsutil::replace_dir(&staged_path, dir.as_std_path()).inspect_err(|_| {
        let _ = fs_err::remove_dir_all(&staged_path);
    })
}
