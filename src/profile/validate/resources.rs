//! The `resources` section: each role's vCPUs, memory and disk size are in a range a VM of the
//! guide can boot with; what a role leaves out is the guide's value.

use super::Checker;
use crate::profile::file::{ResourcesFile, RoleResourcesFile, S};
use crate::profile::{Resources, Role, Size, VmResources};

const MAX_CPUS: u32 = 64;
/// A cloud image with cloud-init does not come up in less.
const MIN_MEMORY: Size = Size::from_mib(512);
/// The Ubuntu cloud image alone is 2.2 GiB; a node needs room for images and logs beyond it.
const MIN_DISK: Size = Size::gib(4);

/// The resources of every role, the guide's where the profile says nothing (or something
/// wrong, which is recorded).
pub(super) fn check(c: &mut Checker, raw: &ResourcesFile) -> Resources {
    let guide = Resources::GUIDE;
    Resources {
        gateway: role(c, Role::Gateway, &raw.gateway, guide.gateway),
        control: role(c, Role::Control, &raw.control, guide.control),
        worker: role(c, Role::Worker, &raw.worker, guide.worker),
    }
}

fn role(c: &mut Checker, role: Role, raw: &RoleResourcesFile, guide: VmResources) -> VmResources {
    let key = |f: &str| format!("resources.{role}.{f}");
    let mut r = guide;
    if let Some(cpus) = &raw.cpus {
        if (1..=MAX_CPUS).contains(&cpus.value) {
            r.cpus = cpus.value;
        } else {
            c.at(
                cpus,
                key("cpus"),
                format!("expected 1 to {MAX_CPUS} vCPUs, got {}", cpus.value),
            );
        }
    }
    if let Some(m) = size(c, raw.memory.as_ref(), &key("memory"), MIN_MEMORY) {
        r.memory = m;
    }
    if let Some(d) = size(c, raw.disk.as_ref(), &key("disk"), MIN_DISK) {
        r.disk = d;
    }
    r
}

fn size(c: &mut Checker, raw: Option<&S<String>>, key: &str, min: Size) -> Option<Size> {
    let raw = raw?;
    match Size::parse(&raw.value) {
        Ok(s) if s >= min => Some(s),
        Ok(s) => {
            c.at(
                raw,
                key,
                format!("{s} is too small; expected at least {min}"),
            );
            None
        }
        Err(e) => {
            c.at(raw, key, e);
            None
        }
    }
}
