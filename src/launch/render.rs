//! The launcher scripts and the UTM AppleScript, rendered from `templates/*.j2` (compiled in;
//! strict: a value the template names and the context lacks is an error). Values that reach a
//! shell or AppleScript through a path are quoted by the `sh` and `applescript` filters.

use minijinja::{context, Environment, UndefinedBehavior};
use serde::Serialize;

use super::{LaunchFile, LaunchInputs, DISK, STATE_DIR};
use crate::host::{HostKind, BRIDGE};
use crate::payload;
use crate::plan::VmPlan;

const TEMPLATES: &[(&str, &str)] = &[
    ("common.sh", include_str!("templates/common.sh.j2")),
    ("vm.sh", include_str!("templates/vm.sh.j2")),
    ("all.sh", include_str!("templates/all.sh.j2")),
    ("tap-up.sh", include_str!("templates/tap-up.sh.j2")),
    (
        "utm.applescript",
        include_str!("templates/utm.applescript.j2"),
    ),
];

/// Where each kind of host keeps QEMU's UEFI firmware for `-bios`, in the order tried.
fn firmware_paths(kind: HostKind) -> &'static [&'static str] {
    match kind {
        // Debian's and Ubuntu's `ovmf`; Ubuntu's link (the guide's path).
        HostKind::Linux => &["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"],
        // Homebrew's `qemu` (Apple silicon, then Intel prefix); Debian's `qemu-efi-aarch64` for
        // whoever runs these on Linux/ARM64.
        HostKind::MacOs => &[
            "/opt/homebrew/share/qemu/edk2-aarch64-code.fd",
            "/usr/local/share/qemu/edk2-aarch64-code.fd",
            "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd",
        ],
    }
}

fn env() -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("sh", |s: String| sh_quote(&s));
    env.add_filter("applescript", |s: String| applescript_quote(&s));
    for (name, text) in TEMPLATES {
        env.add_template(name, text)?;
    }
    Ok(env)
}

/// `s` as one shell word: as is when it holds nothing a shell treats specially, else in single
/// quotes.
pub(super) fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:=,@%+-".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` as an AppleScript string literal.
fn applescript_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', r"\\").replace('"', "\\\""))
}

/// A VM as the templates see it.
#[derive(Serialize)]
struct Vm<'a> {
    #[serde(flatten)]
    plan: &'a VmPlan,
    /// The role's shared payload ISO in `out/<arch>/`, or empty.
    payload: String,
    cpus: u32,
    memory_mib: u64,
    disk: String,
}

pub(super) fn scripts(i: &LaunchInputs) -> anyhow::Result<Vec<LaunchFile>> {
    let env = env()?;
    let kind = i.host.kind;
    let linux = kind == HostKind::Linux;
    let arch = i.plan.arch;
    let vms: Vec<Vm> = i
        .plan
        .vms
        .iter()
        .map(|v| Vm {
            plan: v,
            payload: if i.payload_roles.contains(&v.role) {
                payload::shared_iso_name(v.role)
            } else {
                String::new()
            },
            cpus: v.resources.cpus,
            memory_mib: v.resources.memory.mib(),
            disk: v.resources.disk.to_string(),
        })
        .collect();
    let base = i.base_image;
    let ctx = context! {
        profile => &i.plan.profile,
        host => format!("{kind}/{}", arch.as_str().to_uppercase()),
        arch => arch.as_str(),
        linux => linux,
        vms => &vms,
        qemu => if linux { "qemu-system-x86_64" } else { "qemu-system-aarch64" },
        qemu_hint => if linux { "apt-get install qemu-system-x86 qemu-utils" } else { "brew install qemu" },
        firmware_paths => firmware_paths(kind),
        firmware_hint => if linux { "apt-get install ovmf" } else { "brew install qemu" },
        accel_doc => if linux {
            "kvm or tcg [kvm when /dev/kvm is usable, else tcg, said out loud]"
        } else {
            "hvf, kvm or tcg [hvf]"
        },
        nic_doc => if linux {
            format!("a tap device on {BRIDGE}, joined by tap-up.sh")
        } else {
            format!("vmnet-shared,{}", i.host.vmnet_options())
        },
        bridge => BRIDGE,
        vmnet => i.host.vmnet_options(),
        leases => kind.dnsmasq_leases(),
        state_dir => format!("{STATE_DIR}/{arch}"),
        disk_name => DISK,
        host_address => i.host.host_address.to_string(),
        dhcp_end => i.host.dhcp_range.1.to_string(),
        default_cache => if linux { "~/.cache/imagegen" } else { "~/Library/Caches/imagegen" },
        default_cache_home => if linux { ".cache" } else { "Library/Caches" },
        base_digest_path => format!("{}/{}", base.digest.algo().name(), base.digest.hex()),
        base_url => &base.url,
        base_file => &base.file_name,
        base_version => &base.version,
        base_digest => base.digest.to_string(),
    };
    let render = |template: &str, ctx: &minijinja::Value| -> anyhow::Result<String> {
        env.get_template(template)?
            .render(ctx)
            .map_err(|e| anyhow::anyhow!("rendering the launcher {template}: {e:#}"))
    };
    let mut files = vec![LaunchFile {
        name: "common.sh".into(),
        content: render("common.sh", &ctx)?,
        mode: 0o644,
    }];
    for vm in &vms {
        let vm_ctx = context! { vm => vm, ..ctx.clone() };
        files.push(LaunchFile {
            name: format!("{}.sh", vm.plan.name),
            content: render("vm.sh", &vm_ctx)?,
            mode: 0o755,
        });
    }
    let names: Vec<&str> = vms.iter().map(|v| v.plan.name.as_str()).collect();
    files.push(LaunchFile {
        name: "all.sh".into(),
        content: render("all.sh", &context! { vms => names, ..ctx.clone() })?,
        mode: 0o755,
    });
    if linux {
        files.push(LaunchFile {
            name: "tap-up.sh".into(),
            content: render("tap-up.sh", &ctx)?,
            mode: 0o755,
        });
    } else {
        files.push(LaunchFile {
            name: "utm.applescript".into(),
            content: render("utm.applescript", &ctx)?,
            mode: 0o644,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_and_applescript_quoting() {
        assert_eq!(sh_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(applescript_quote(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
