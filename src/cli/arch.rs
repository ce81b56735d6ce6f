//! `--arch`: the names people know an architecture by (what `uname -m` prints on Linux and
//! macOS, Debian's and Go's names, Windows' `x64`), in any case, and the host's architecture
//! when the flag is left out.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::profile::Arch;

/// The help of every `--arch`.
pub(super) const HELP: &str = "Architecture of the VMs: arm64 (also aarch64) or amd64 (also x86_64, x64), in any case [default: this machine's]";

/// Each architecture with the other names it is known by.
const NAMES: &[(Arch, &[&str])] = &[
    (Arch::Arm64, &["aarch64"]),
    (Arch::Amd64, &["x86_64", "x64"]),
];

/// The architecture named `s` (any case, any known name).
fn from_name(s: &str) -> Option<Arch> {
    NAMES.iter().find_map(|(arch, aliases)| {
        (arch.as_str().eq_ignore_ascii_case(s) || aliases.iter().any(|a| a.eq_ignore_ascii_case(s)))
            .then_some(*arch)
    })
}

/// The architecture of this machine, when VMs of it can be built.
fn host() -> Option<Arch> {
    from_name(std::env::consts::ARCH)
}

/// `--arch` when given, else this machine's architecture.
pub(super) fn or_host(given: Option<Arch>) -> anyhow::Result<Arch> {
    match given.or_else(host) {
        Some(arch) => Ok(arch),
        None => anyhow::bail!(
            "this machine is {}, not arm64 or amd64: say which VMs with --arch arm64 or --arch amd64",
            std::env::consts::ARCH
        ),
    }
}

/// `--arch` when given, else this machine's architecture, else (a machine of neither) the
/// other one: for commands whose result does not depend on it (the PKI).
pub(super) fn or_host_or_any(given: Option<Arch>) -> Arch {
    given.or_else(host).unwrap_or(Arch::Amd64)
}

/// Parses `--arch` (and `IMAGEGEN_ARCH`); completions and the help list the names.
#[derive(Clone, Copy)]
pub(super) struct ArchParser;

impl TypedValueParser for ArchParser {
    type Value = Arch;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Arch, clap::Error> {
        let text = value.to_string_lossy();
        if let Some(arch) = from_name(&text) {
            return Ok(arch);
        }
        // clap's own form of the error, naming every accepted value (aliases too).
        let mut err = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
        let arg = arg.map_or_else(|| "--arch".to_string(), ToString::to_string);
        err.insert(ContextKind::InvalidArg, ContextValue::String(arg));
        err.insert(
            ContextKind::InvalidValue,
            ContextValue::String(text.into_owned()),
        );
        let accepted = NAMES
            .iter()
            .flat_map(|(arch, aliases)| {
                std::iter::once(arch.as_str()).chain(aliases.iter().copied())
            })
            .map(String::from)
            .collect();
        err.insert(ContextKind::ValidValue, ContextValue::Strings(accepted));
        Err(err)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(NAMES.iter().map(|(arch, aliases)| {
            PossibleValue::new(arch.as_str()).aliases(aliases.iter().copied())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_any_case() {
        for (name, arch) in [
            ("arm64", Arch::Arm64),
            ("ARM64", Arch::Arm64),
            ("aarch64", Arch::Arm64),
            ("AArch64", Arch::Arm64),
            ("amd64", Arch::Amd64),
            ("x86_64", Arch::Amd64),
            ("X64", Arch::Amd64),
        ] {
            assert_eq!(from_name(name), Some(arch), "{name}");
        }
        assert_eq!(from_name("riscv64"), None);
        assert_eq!(from_name(""), None);
    }
}
