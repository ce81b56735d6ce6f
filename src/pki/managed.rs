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
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Checks `dir` against the plan, makes what is missing or forced, and swaps the new set in.
/// `args` name the directory and profile to `imagegen pki`, for the fixes errors name.
pub(crate) fn complete(
    dir: &Utf8Path,
    plan: &Plan,
    force: &Force,
    args: &str,
) -> anyhow::Result<Outcome> {
    let dir = real_dir(dir)?;
    let ids = identities::all(plan);
    let mut run = Run {
        forced: forced_stems(force, &ids, args)?,
        force,
        files: Files::read(&dir, plan),
        judge: Judge {
            mode: PkiMode::Managed,
            plan,
            args,
            now: time::OffsetDateTime::now_utc(),
        },
        findings: check::Findings::default(),
        out: Outcome::default(),
        new: BTreeMap::new(),
        rewritten: Vec::new(),
    };
    let ca = run.ca(&ids)?;
    let facts = match &ca {
        Some(c) => Some(CaFacts {
            pem: c.pem.clone(),
            cert: Cert::parse(&c.pem).context("ca.pem: expected a PEM CA certificate")?,
        }),
        None => None,
    };
    for id in &ids {
        run.identity(id, ca.as_ref(), facts.as_ref())?;
    }
    if check::encryption(&run.files, &run.judge, &mut run.findings).is_none() {
        run.add(ENCRYPTION_CONFIG, encryption::generate()?, 0o600);
    }

    if run.findings.count(Severity::Error) > 0 {
        bail!(
            "{dir} cannot be used as it is (`imagegen pki check{args}` shows every file):\n  {}",
            run.findings.lines(&dir, Severity::Error).join("\n  ")
        );
    }
    run.say_what_changed();
    let mut out = run.out;
    out.warnings
        .splice(0..0, run.findings.lines(&dir, Severity::Warning));
    if !run.new.is_empty() {
        write_set(&dir, &run.new)?;
    }
    Ok(out)
}

/// One run over the directory: what was read, what the checks found, what is to be written.
struct Run<'a> {
    force: &'a Force,
    /// The identities issued again whatever they are (`--force`; all with `--force-ca`).
    forced: BTreeSet<&'a str>,
    files: Files,
    judge: Judge<'a>,
    findings: check::Findings,
    out: Outcome,
    /// The files to write: name -> (content, mode).
    new: BTreeMap<String, (String, u32)>,
    /// Kubeconfigs written again, and why (said as notes, grouped by reason).
    rewritten: Vec<(String, String)>,
}

impl Run<'_> {
    /// A file to write; created when it did not exist.
    fn add(&mut self, name: &str, text: String, mode: u32) {
        if !self.files.exists(name) {
            self.out.created.push(name.to_string());
        }
        self.new.insert(name.to_string(), (text, mode));
    }

    /// The CA this run signs with: the existing one, a new one (none yet, or `--force-ca`),
    /// or `ca.pem` made again from `ca-key.pem`. `None` when the check found it broken.
    fn ca(&mut self, ids: &[Identity]) -> anyhow::Result<Option<Ca>> {
        if matches!(self.force, Force::Ca) {
            return self.new_ca().map(Some);
        }
        match check::ca(&self.files, true, &self.judge, &mut self.findings) {
            CaState::Usable(facts, Some(key)) => {
                Ok(Some(ca::load(&self.files.dir, &facts.pem, &key)?))
            }
            CaState::Usable(_, None) | CaState::Broken => Ok(None),
            CaState::Absent => {
                let signed: Vec<&str> = ids
                    .iter()
                    .filter(|i| self.files.exists(&check::cert_file(i)))
                    .map(|i| i.stem.as_str())
                    .collect();
                if signed.is_empty() {
                    return self.new_ca().map(Some);
                }
                self.findings.0.push(check::Finding {
                    file: "ca.pem".into(),
                    severity: Severity::Error,
                    message: format!(
                        "missing, with ca-key.pem, while certificates it signed are here ({})",
                        signed.join(", ")
                    ),
                    fix: Some(format!(
                        "restore ca.pem and ca-key.pem, or {} (a new CA: nodes running with the old credentials are cut off)",
                        self.judge.pki(" --force-ca")
                    )),
                });
                Ok(None)
            }
            CaState::KeyOnly(key) => {
                let certs: Vec<Cert> = ids
                    .iter()
                    .filter_map(|id| match self.files.entry(&check::cert_file(id)) {
                        check::Entry::Text(t) => Cert::parse(t),
                        _ => None,
                    })
                    .collect();
                let ca = ca::remake(&self.files.dir, &key, &certs)?;
                self.add("ca.pem", ca.pem.clone(), 0o644);
                self.out.notes.push(
                    "made ca.pem again from ca-key.pem (a run was killed between the two): the same key and subject, so the existing certificates keep verifying".into(),
                );
                Ok(Some(ca))
            }
        }
    }

    fn new_ca(&mut self) -> anyhow::Result<Ca> {
        let ca = ca::create()?;
        self.add("ca.pem", ca.pem.clone(), 0o644);
        self.add("ca-key.pem", ca.key_pem.clone(), 0o600);
        Ok(ca)
    }

    /// One identity: checked (unless forced), completed or issued again, its kubeconfig
    /// written when missing, stale or forced.
    fn identity(
        &mut self,
        id: &Identity,
        ca: Option<&Ca>,
        facts: Option<&CaFacts>,
    ) -> anyhow::Result<()> {
        let forced = self.forced.contains(id.stem.as_str());
        let pair = if forced {
            ca.map(|ca| self.issue(id, ca, None)).transpose()?
        } else {
            let state = check::pair(&self.files, id, facts, &self.judge, &mut self.findings);
            self.complete_pair(state, id, ca)?
        };
        let (Some((cert, key)), Some(facts)) = (pair, facts) else {
            return Ok(());
        };
        let mut names = vec![check::cert_file(id), check::key_file(id)];
        if id.kubeconfig {
            let name = check::kubeconfig_file(id);
            let plan = self.judge.plan;
            let text = || render_kubeconfig(id, facts, (&cert, &key), plan);
            let mut ignored = check::Findings::default();
            let state = check::kubeconfig(
                &self.files,
                id,
                Some(facts),
                Some((&cert, &key)),
                &self.judge,
                &mut ignored,
            );
            match state {
                _ if forced => {
                    self.add(&name, text()?, 0o600);
                    names.push(name);
                }
                KubeconfigState::Good => {}
                KubeconfigState::Stale(reasons) => {
                    self.add(&name, text()?, 0o600);
                    self.rewritten.push((name, reasons.join("; ")));
                }
                KubeconfigState::Absent | KubeconfigState::Broken => {
                    self.add(&name, text()?, 0o600)
                }
            }
        }
        if forced && matches!(self.force, Force::Identities(_)) {
            self.out.notes.push(format!(
                "issued {} again, with the same CA",
                and_list(&names)
            ));
        }
        Ok(())
    }

    /// A new certificate for `id` (for `key`, else with a new key).
    fn issue(
        &mut self,
        id: &Identity,
        ca: &Ca,
        key: Option<&str>,
    ) -> anyhow::Result<(String, String)> {
        let issued = issue::issue(&self.files.dir, id, ca, key)?;
        self.add(&check::cert_file(id), issued.cert_pem.clone(), 0o644);
        if key.is_none() {
            self.add(&check::key_file(id), issued.key_pem.clone(), 0o600);
        }
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// What the check found of an identity's pair, completed: a new pair when there is none,
    /// a certificate for a key left without one. `None` when the check found it broken (or
    /// there is no CA to issue with).
    fn complete_pair(
        &mut self,
        state: PairState,
        id: &Identity,
        ca: Option<&Ca>,
    ) -> anyhow::Result<Option<(String, String)>> {
        Ok(match (state, ca) {
            (PairState::Good { cert, key }, _) => Some((cert, key)),
            (PairState::Absent, Some(ca)) => Some(self.issue(id, ca, None)?),
            (PairState::KeyOnly(key), Some(ca)) => {
                self.out.notes.push(format!(
                    "issued {} for the existing {} (a run was killed between the two)",
                    check::cert_file(id),
                    check::key_file(id)
                ));
                Some(self.issue(id, ca, Some(&key))?)
            }
            _ => None,
        })
    }

    /// The notes on kubeconfigs written again (grouped by reason) and on `--force`.
    fn say_what_changed(&mut self) {
        let mut reasons: Vec<&str> = Vec::new();
        for (_, r) in &self.rewritten {
            if !reasons.contains(&r.as_str()) {
                reasons.push(r);
            }
        }
        for r in reasons {
            let names: Vec<String> = self
                .rewritten
                .iter()
                .filter(|(_, x)| x == r)
                .map(|(n, _)| n.clone())
                .collect();
            self.out.notes.push(format!(
                "wrote {} again from the PKI's files ({r})",
                and_list(&names)
            ));
        }
        match self.force {
            Force::Ca => {
                self.out.notes.push(format!(
                    "made a new CA and issued every certificate, key and kubeconfig again ({ENCRYPTION_CONFIG} is kept)"
                ));
                self.out.warnings.push(
                    "a new CA: nodes running with the old credentials can no longer reach the cluster, nor it them; rebuild the seeds and start every VM afresh (delete out/vms/<arch>/<vm>/)".into(),
                );
            }
            Force::Identities(_) => self.out.notes.push(
                "the replaced certificates stay valid until they expire (nothing revokes them); nodes get the new ones with their next seed".into(),
            ),
            Force::Nothing => {}
        }
    }
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

/// Writes the set: a temp directory beside `dir` with links to every file kept and the new
/// files (mode first, synced), swapped in for `dir` in one step.
fn write_set(dir: &Utf8Path, new: &BTreeMap<String, (String, u32)>) -> anyhow::Result<()> {
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
            fsutil::link_or_copy(&e.path(), staged_dir.join(&name).as_std_path())?;
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
