//! imagegen's own PKI directory (`out/pki`): what `genauth.sh` and `genenckey.sh` make, made
//! once. Existing files are reused and never overwritten: the CA, then each identity of the
//! table (`identities`) through the one issue path (`issue`), its kubeconfig, and the
//! encryption config. A kubeconfig whose certificate exists is kept as it is; one left without
//! its certificate and key is an error, since a new pair would not match it.

use anyhow::bail;
use camino::Utf8Path;

use super::identities::{self, Identity};
use super::{ca, encryption, issue, kubeconfig};
use crate::fsutil;
use crate::plan::Plan;

/// Creates what is missing in `dir`; returns the names of the files created, in order.
pub(crate) fn complete(dir: &Utf8Path, plan: &Plan) -> anyhow::Result<Vec<String>> {
    fsutil::create_private_dir(dir)?;
    let mut created = Vec::new();
    let ca = ca::load_or_create(dir, &mut created)?;
    for id in identities::all(plan) {
        let kubeconfig_path = dir.join(format!("{}.kubeconfig", id.stem));
        let pair_missing = !dir.join(format!("{}.pem", id.stem)).exists()
            && !dir.join(format!("{}-key.pem", id.stem)).exists();
        if id.kubeconfig && pair_missing && kubeconfig_path.exists() {
            bail!(
                "{kubeconfig_path} exists but {0}.pem and {0}-key.pem do not: restore them, or remove the kubeconfig to have all three made",
                id.stem
            );
        }
        let issued = issue::load_or_issue(dir, &id, &ca, &mut created)?;
        if id.kubeconfig && !kubeconfig_path.exists() {
            write_kubeconfig(dir, plan, &id, &ca.pem, &issued)?;
            created.push(format!("{}.kubeconfig", id.stem));
        }
    }
    encryption::create_if_missing(dir, &mut created)?;
    Ok(created)
}

/// `<stem>.kubeconfig` (0600) for the profile's API endpoint, the user named by the CN.
fn write_kubeconfig(
    dir: &Utf8Path,
    plan: &Plan,
    id: &Identity,
    ca_pem: &str,
    issued: &issue::Issued,
) -> anyhow::Result<()> {
    let text = kubeconfig::render(
        ca_pem,
        &plan.cluster.api_endpoint,
        &id.common_name,
        &issued.cert_pem,
        &issued.key_pem,
    )?;
    fsutil::write_atomic(
        &dir.join(format!("{}.kubeconfig", id.stem)),
        text.as_bytes(),
        0o600,
    )
}
