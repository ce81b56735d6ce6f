//! From seeds to running VMs: the launchers of a plan, as plain scripts a person can read and
//! edit, and `imagegen launch`, which runs those very scripts.
//!
//! `build` writes [`files`] to `out/<arch>/launch/`:
//! - `common.sh`: how a VM is started (its copy-on-write disk over the pinned base image, made
//!   when absent and never overwritten; QEMU with UEFI firmware, the seed ISO and, with the shared
//!   payload, the role's payload ISO attached as the guide does), stopped and looked at, for the
//!   arch's host kind (macOS/ARM64: HVF and vmnet-shared; Linux/AMD64: KVM or TCG, a tap device on
//!   the host's bridge);
//! - `<vm>.sh`: the VM's values (MAC, address, vCPUs, memory, disk size), then `common.sh`;
//! - `all.sh`, `tap-up.sh` (Linux), `utm.applescript` (macOS: the same VMs in UTM);
//! - `launch.json`: what `imagegen launch` needs besides the scripts (the VMs, the base image).
//!
//! Each VM's disk, pid file and console log live in `out/vms/<arch>/<vm>/` ([`STATE_DIR`]): a
//! build replaces `out/<arch>` as a whole, and a disk must outlive that.
//!
//! `render` fills the templates (`templates/*.j2`); `run` is `imagegen launch`.

mod render;
mod run;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::host::{HostKind, HostNet};
use crate::plan::{Artifact, Plan};
use crate::profile::{Arch, Role};

pub use run::{launch, Action, LaunchOptions};

/// `out/<arch>/launch/`: the scripts.
pub const LAUNCH_DIR: &str = "launch";
/// `out/vms/<arch>/<vm>/`: a VM's disk, pid file and console logs, outside `out/<arch>`.
pub const STATE_DIR: &str = "vms";
/// A VM's disk in its state directory.
pub const DISK: &str = "disk.qcow2";
/// What `imagegen launch` reads in `out/<arch>/launch/`.
pub const INFO: &str = "launch.json";

/// What the launchers are made from.
pub struct LaunchInputs<'a> {
    pub plan: &'a Plan,
    pub host: &'a HostNet,
    /// The pinned base image (the launchers find it in the cache, or are told where it is).
    pub base_image: &'a Artifact,
    /// Roles whose shared payload ISO (`out/<arch>/payload-<role>.iso`) exists.
    pub payload_roles: &'a BTreeSet<Role>,
}

/// `launch.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LaunchInfo {
    pub profile: String,
    pub arch: Arch,
    pub host: HostKind,
    pub base_image: BaseImage,
    /// In the profile's order.
    pub vms: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BaseImage {
    pub version: String,
    pub url: String,
    pub file_name: String,
    pub digest: Digest,
    /// Its size when the profile pins it (the download is bounded by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// A file of `out/<arch>/launch/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchFile {
    pub name: String,
    pub content: String,
    pub mode: u32,
}

/// Every file of `out/<arch>/launch/` for `inputs`.
pub fn files(inputs: &LaunchInputs) -> anyhow::Result<Vec<LaunchFile>> {
    let info = LaunchInfo {
        profile: inputs.plan.profile.clone(),
        arch: inputs.plan.arch,
        host: inputs.host.kind,
        base_image: BaseImage {
            version: inputs.base_image.version.clone(),
            url: inputs.base_image.url.clone(),
            file_name: inputs.base_image.file_name.clone(),
            digest: inputs.base_image.digest.clone(),
            size: inputs.base_image.size,
        },
        vms: inputs.plan.vms.iter().map(|v| v.name.clone()).collect(),
    };
    let mut files = render::scripts(inputs)?;
    let mut json = serde_json::to_string_pretty(&info)?;
    json.push('\n');
    files.push(LaunchFile {
        name: INFO.into(),
        content: json,
        mode: 0o644,
    });
    Ok(files)
}
