//! The grammar of each free-form string of a profile. Every string the profile holds reaches a
//! seed or a host file somewhere: a YAML comment, a shell line, a systemd unit, a dnsmasq line,
//! an AppleScript. Rather than trust each of those places to escape, a value is accepted only
//! when it is made of characters that mean nothing special in any of them (no whitespace,
//! quote, `$`, `` ` ``, `\`, `%`, `#`, `;`, `{`, control character or non-ASCII letter), and the
//! error says which grammar it broke. `shown` prints a rejected value on one line.

use std::fmt::Write as _;

/// The longest profile name: it stands in file headers and marker lines, and a DNS label's
/// length is a familiar bound.
pub(super) const MAX_PROFILE_NAME: usize = 63;

/// The longest version: it lands in URLs, archive paths and file names.
pub(super) const MAX_VERSION: usize = 64;

/// The longest URL template.
pub(super) const MAX_URL: usize = 2048;

/// `value` on one line, for an error message: control characters, line breaks, invisible
/// format characters and the like as `\n`, `\t`, `\u{..}`, so a rejected value can neither
/// split the message nor hide in it.
pub(crate) fn shown(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for ch in value.chars() {
        match ch {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            ' ' => s.push(' '),
            c if c.is_control() || c.is_whitespace() || is_invisible(c) => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s
}

/// Format characters that render as nothing or reorder text (zero-width, bidi controls, BOM).
fn is_invisible(c: char) -> bool {
    matches!(c as u32, 0xAD | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF)
}

/// The profile's `name`: 1 to 63 ASCII letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit.
pub(super) fn is_profile_name(s: &str) -> bool {
    (1..=MAX_PROFILE_NAME).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// One DNS label as a host name (RFC 1123): 1 to 63 lowercase letters, digits and `-`, not
/// starting or ending with `-`. Lowercase, because host names are case-insensitive and
/// Kubernetes knows a node by its lowercase host name.
pub(super) fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS name of lowercase labels, at most 253 characters, whose last label is not all digits
/// (else it reads as an address).
pub(super) fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(is_label)
        && !s
            .rsplit('.')
            .next()
            .is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()))
}

/// A release version: starts with a digit; ASCII letters, digits, `.`, `+`, `_` and `-`.
pub(super) fn is_version(s: &str) -> bool {
    (1..=MAX_VERSION).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+_-".contains(c))
}

/// A character a URL template may hold outside its placeholders: RFC 3986's unreserved
/// characters and `:/?=@+,%`, which are all a release URL needs. Not `#` (a fragment means
/// nothing to a download), `&`, `;`, `'`, `$`, `!`, `*`, `(`, `)`, `[`, `]`: each means
/// something to a shell.
pub(super) fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?=@+,%".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_domains() {
        assert!(is_label("worker0"));
        assert!(is_label("0600"));
        assert!(!is_label("-bad"));
        assert!(!is_label("Worker0"));
        assert!(!is_label("under_score"));
        assert!(!is_label(&"a".repeat(64)));
        assert!(is_domain("cluster.local"));
        assert!(!is_domain("cluster..local"));
        assert!(!is_domain("kube.123"));
        assert!(!is_domain("Cluster.local"));
        assert!(!is_domain(""));
    }

    #[test]
    fn profile_names() {
        assert!(is_profile_name("kthw-1.31"));
        assert!(is_profile_name("My_Cluster"));
        assert!(!is_profile_name("-x"));
        assert!(!is_profile_name("kthw\nbootcmd: x"));
        assert!(!is_profile_name("a b"));
        assert!(!is_profile_name(""));
        assert!(!is_profile_name(&"a".repeat(64)));
    }

    #[test]
    fn shown_keeps_a_value_on_one_line() {
        assert_eq!(shown("a\nb\tc\0d"), "a\\nb\\tc\\u{0}d");
        assert_eq!(shown("wörker \u{202e}x"), "wörker \\u{202e}x");
        assert_eq!(shown("a\u{2028}b"), "a\\u{2028}b");
    }
}
