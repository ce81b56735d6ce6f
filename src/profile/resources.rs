//! What each role's VMs get from the host: vCPUs, memory and disk size (the profile's
//! `resources` section). Sizes are whole MiB, written the way QEMU and `qemu-img` take them
//! (`2G`, `512M`), so a launcher passes them on unchanged.

use std::fmt;

use serde::{Serialize, Serializer};

use super::Role;

/// A size in MiB; binary units (`1G` = 1024 MiB), as QEMU reads `-m 2G` and `qemu-img` `20G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    mib: u64,
}

impl Size {
    pub const fn from_mib(mib: u64) -> Size {
        Size { mib }
    }

    pub const fn gib(n: u64) -> Size {
        Size { mib: n * 1024 }
    }

    pub fn mib(self) -> u64 {
        self.mib
    }

    /// `<whole number><M|G|T>`, e.g. `512M`, `4G`; anything else is an error saying so.
    pub fn parse(s: &str) -> Result<Size, String> {
        let expected = || {
            format!(
                "expected a size like 4G or 512M (a whole number and M, G or T), got `{}`",
                super::validate::shown(s)
            )
        };
        // The unit is the last character, whatever its width in bytes.
        let cut = s.char_indices().last().map_or(0, |(i, _)| i);
        let (digits, unit) = s.split_at(cut);
        let factor: u64 = match unit {
            "M" => 1,
            "G" => 1024,
            "T" => 1024 * 1024,
            _ => return Err(expected()),
        };
        if digits.is_empty()
            || digits.starts_with('0')
            || !digits.chars().all(|c| c.is_ascii_digit())
        {
            return Err(expected());
        }
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .map(|mib| Size { mib })
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the size: `2G`, `1536M`, `1T`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const T: u64 = 1024 * 1024;
        if self.mib.is_multiple_of(T) {
            write!(f, "{}T", self.mib / T)
        } else if self.mib.is_multiple_of(1024) {
            write!(f, "{}G", self.mib / 1024)
        } else {
            write!(f, "{}M", self.mib)
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl schemars::JsonSchema for Size {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[1-9][0-9]*[MGT]$",
            "description": "A size in binary units, as QEMU and qemu-img take it: 512M, 2G, 1T"
        })
    }
}

/// One VM's share of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct VmResources {
    pub cpus: u32,
    pub memory: Size,
    /// The virtual size of the VM's disk (its copy-on-write layer over the base image).
    pub disk: Size,
}

/// Resources per role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub gateway: VmResources,
    pub control: VmResources,
    pub worker: VmResources,
}

impl Resources {
    /// The guide's `vmlaunch.sh` and `vmsetup.sh`: gateway and control nodes 2 vCPUs and 2 GiB,
    /// workers 4 vCPUs and 4 GiB, every disk 20 GiB.
    pub const GUIDE: Resources = Resources {
        gateway: VmResources {
            cpus: 2,
            memory: Size::gib(2),
            disk: Size::gib(20),
        },
        control: VmResources {
            cpus: 2,
            memory: Size::gib(2),
            disk: Size::gib(20),
        },
        worker: VmResources {
            cpus: 4,
            memory: Size::gib(4),
            disk: Size::gib(20),
        },
    };

    pub fn of(&self, role: Role) -> VmResources {
        match role {
            Role::Gateway => self.gateway,
            Role::Control => self.control,
            Role::Worker => self.worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_as_qemu_takes_them() {
        for (text, mib, shown) in [
            ("512M", 512, "512M"),
            ("2G", 2048, "2G"),
            ("1536M", 1536, "1536M"),
            ("2048M", 2048, "2G"),
            ("1T", 1024 * 1024, "1T"),
        ] {
            let s = Size::parse(text).unwrap();
            assert_eq!(s.mib(), mib, "{text}");
            assert_eq!(s.to_string(), shown, "{text}");
        }
        for bad in [
            "", "G", "4", "4GB", "4g", "04G", "-1G", "1.5G", " 4G", "4 G", "4é", "0Gé", "é",
        ] {
            let e = Size::parse(bad).unwrap_err();
            assert!(e.contains("expected a size like 4G"), "{bad}: {e}");
        }
        assert!(Size::parse("99999999999999999999T")
            .unwrap_err()
            .contains("too large"));
    }
}
