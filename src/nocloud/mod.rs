//! The files of a cloud-init NoCloud seed as cloud-init will judge them, checked before they
//! are packed: a seed that cloud-init ignores or half-reads boots a VM that does nothing and
//! says nothing.
//!
//! - `userdata`: user-data and vendor-data formats (`#cloud-config`, scripts, MIME, `#include`,
//!   gzip...), and for cloud-config the YAML (`yaml`) and cloud-init's own JSON schema
//!   (`schema`, an embedded copy of upstream's).
//! - `metadata`: meta-data as given, and the one written when none is given.
//! - `network`: network-config (YAML, version 1 or 2).
//!
//! Every problem has the line and column it is about (1-based; 0 when the whole file is meant).

mod metadata;
mod network;
mod schema;
mod userdata;
mod yaml;

use std::fmt;

pub use metadata::{generate_meta_data, MetaDataFields};

/// Which NoCloud file a text is, and so which rules it must follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    UserData,
    VendorData,
    MetaData,
    NetworkConfig,
}

impl Kind {
    /// The file name cloud-init looks for.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::UserData => "user-data",
            Kind::VendorData => "vendor-data",
            Kind::MetaData => "meta-data",
            Kind::NetworkConfig => "network-config",
        }
    }

    /// The kind whose NoCloud file name is `name`.
    pub fn from_file_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.file_name() == name)
    }

    pub const ALL: [Kind; 4] = [
        Kind::UserData,
        Kind::MetaData,
        Kind::NetworkConfig,
        Kind::VendorData,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// cloud-init would ignore or misread the file: not packed without `--no-validate`.
    Error,
    /// The seed works, but probably not as meant.
    Warning,
}

/// One complaint about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// 1-based; 0 when the problem is about the whole file.
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    pub message: String,
}

impl Problem {
    pub(crate) fn error(line: u64, column: u64, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            line,
            column,
            message: message.into(),
        }
    }

    pub(crate) fn warning(line: u64, column: u64, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            line,
            column,
            message: message.into(),
        }
    }

    /// `FILE:LINE:COLUMN: message` (or `FILE: message` without a place).
    pub fn display<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        struct D<'a>(&'a Problem, &'a str);
        impl fmt::Display for D<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (p, file) = (self.0, self.1);
                if p.line > 0 {
                    write!(f, "{file}:{}:{}: {}", p.line, p.column, p.message)
                } else {
                    write!(f, "{file}: {}", p.message)
                }
            }
        }
        D(self, file)
    }
}

/// Checks `data` as the NoCloud file `kind`; the problems come sorted by place.
pub fn check(kind: Kind, data: &[u8]) -> Vec<Problem> {
    let mut problems = match kind {
        Kind::UserData | Kind::VendorData => userdata::check(kind, data),
        Kind::MetaData => metadata::check(data),
        Kind::NetworkConfig => network::check(data),
    };
    problems.sort_by_key(|p| (p.line, p.column, p.severity));
    problems
}

/// Whether `name` is a host name cloud-init can set: dot-separated labels of letters, digits
/// and inner hyphens, each at most 63 characters, at most 253 in all.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Text of a file that must be UTF-8 (YAML), or the problem saying where it is not.
fn utf8(data: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(data).map_err(|e| {
        let before = &data[..e.valid_up_to()];
        let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count() as u64
            + 1;
        Problem::error(
            line,
            column,
            "not UTF-8 text; cloud-init reads YAML as UTF-8",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in ["a", "node-1", "worker0.cluster.local", &"a".repeat(63)] {
            assert!(valid_hostname(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "ä", &"a".repeat(64), "a b"] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }

    #[test]
    fn not_utf8_is_located() {
        let p = utf8(b"a: 1\nb: x\xff\n").unwrap_err();
        assert_eq!((p.line, p.column), (2, 5));
    }

    #[test]
    fn problems_display_with_and_without_a_place() {
        let p = Problem::error(3, 7, "bad");
        assert_eq!(p.display("ud").to_string(), "ud:3:7: bad");
        let p = Problem::warning(0, 0, "meh");
        assert_eq!(p.display("md").to_string(), "md: meh");
    }
}
