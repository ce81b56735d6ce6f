//! user-data and vendor-data: one of the formats cloud-init knows, told by the first bytes as
//! cloud-init tells them (`cloudinit/handlers`: the longest matching prefix wins; gzip is
//! unpacked first; "mime-version:" in the first 4 KiB makes it a MIME message). Anything else is
//! ignored by cloud-init with only a line in its log. Cloud-config is further checked as YAML
//! and against cloud-init's schema.

use std::io::Read as _;

use super::{schema, utf8, yaml, Kind, Problem};

/// Headers cloud-init dispatches on, longest first (as cloud-init searches them).
const HEADERS: &[(&str, Format)] = &[
    ("#cloud-config-archive", Format::Archive),
    ("#cloud-config-jsonp", Format::Opaque),
    ("## template: jinja", Format::Opaque),
    ("#cloud-boothook", Format::Opaque),
    ("#part-handler", Format::Opaque),
    ("#cloud-config", Format::CloudConfig),
    ("#include-once", Format::Opaque),
    ("#include", Format::Opaque),
    ("#!", Format::Opaque),
];

/// A gzip-compressed user-data is unpacked in memory by cloud-init; more than this is not a
/// seed anyone meant to write.
const MAX_GUNZIPPED: u64 = 256 << 20;

#[derive(Clone, Copy)]
enum Format {
    CloudConfig,
    /// A YAML list of parts.
    Archive,
    /// Known to cloud-init, but its content is not ours to judge (scripts, templates, URLs).
    Opaque,
}

pub(super) fn check(kind: Kind, data: &[u8]) -> Vec<Problem> {
    if data.starts_with(&[0x1f, 0x8b]) {
        return gunzipped(kind, data);
    }
    check_text(kind, data)
}

/// `data` as cloud-init sees it after gunzipping (which it does once: gzip inside gzip is in no
/// format it knows).
fn check_text(kind: Kind, data: &[u8]) -> Vec<Problem> {
    // Empty user-data is valid: there is nothing to do.
    if data.is_empty() {
        return Vec::new();
    }
    let head = &data[..data.len().min(4096)];
    if head
        .to_ascii_lowercase()
        .windows(13)
        .any(|w| w == b"mime-version:")
    {
        // A MIME multipart message: each part carries its own type.
        return Vec::new();
    }
    match HEADERS.iter().find(|(h, _)| data.starts_with(h.as_bytes())) {
        Some((_, Format::CloudConfig)) => cloud_config(data),
        Some((_, Format::Archive)) => archive(data),
        Some((_, Format::Opaque)) => Vec::new(),
        None => vec![unknown_format(kind, data)],
    }
}

fn gunzipped(kind: Kind, data: &[u8]) -> Vec<Problem> {
    let mut text = Vec::new();
    let read = flate2::read::GzDecoder::new(data)
        .take(MAX_GUNZIPPED + 1)
        .read_to_end(&mut text);
    match read {
        Err(e) => vec![Problem::error(
            0,
            0,
            format!("starts like gzip but does not gunzip: {e}"),
        )],
        Ok(n) if n as u64 > MAX_GUNZIPPED => vec![Problem::error(
            0,
            0,
            format!("gunzips to more than {} MiB", MAX_GUNZIPPED >> 20),
        )],
        Ok(_) => check_text(kind, &text)
            .into_iter()
            .map(|mut p| {
                p.message = format!("in the gunzipped text: {}", p.message);
                p
            })
            .collect(),
    }
}

fn cloud_config(data: &[u8]) -> Vec<Problem> {
    let text = match utf8(data) {
        Ok(t) => t,
        Err(p) => return vec![p],
    };
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(p) => return vec![p],
    };
    match &doc.value {
        // Only the header: an empty cloud-config, which cloud-init accepts.
        serde_json::Value::Null => Vec::new(),
        serde_json::Value::Object(_) => schema::check(&doc),
        other => {
            let (line, column) = doc.value_at("");
            vec![Problem::error(
                line,
                column,
                format!(
                    "cloud-config must be a mapping of keys such as `runcmd:`, got {}",
                    schema::kind_of(other)
                ),
            )]
        }
    }
}

fn archive(data: &[u8]) -> Vec<Problem> {
    let text = match utf8(data) {
        Ok(t) => t,
        Err(p) => return vec![p],
    };
    match yaml::parse(text) {
        Err(p) => vec![p],
        Ok(doc) if doc.value.is_array() || doc.value.is_null() => Vec::new(),
        Ok(doc) => {
            let (line, column) = doc.value_at("");
            vec![Problem::error(
                line,
                column,
                format!(
                    "#cloud-config-archive must be a list of parts, got {}",
                    schema::kind_of(&doc.value)
                ),
            )]
        }
    }
}

/// Why cloud-init would ignore `data`, with the likely fix.
fn unknown_format(kind: Kind, data: &[u8]) -> Problem {
    let text = String::from_utf8_lossy(&data[..data.len().min(4096)]);
    let ignored = format!("cloud-init would ignore this {}", kind.file_name());
    if text.starts_with('\u{feff}') {
        return Problem::error(
            1,
            1,
            format!("starts with a byte-order mark, so {ignored}: save it without one, with `#cloud-config` (or another header) as its first bytes"),
        );
    }
    let first = text.lines().next().unwrap_or("").trim_end();
    let squashed: String = first
        .to_ascii_lowercase()
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '_'))
        .collect();
    if squashed == "#cloudconfig" {
        return Problem::error(
            1,
            1,
            format!(
                "the first line is `{first}`, so {ignored}: it must be exactly `#cloud-config`"
            ),
        );
    }
    if let Some(n) = text.lines().position(|l| l.trim_end() == "#cloud-config") {
        return Problem::error(
            n as u64 + 1,
            1,
            format!("`#cloud-config` must be the very first line, or {ignored}"),
        );
    }
    let hint = match yaml::parse(&text) {
        Ok(doc) if doc.value.is_object() => {
            " (this looks like cloud-config YAML: add `#cloud-config` as its first line)"
        }
        _ => "",
    };
    Problem::error(
        1,
        1,
        format!("no format cloud-init knows, so {ignored}: start it with `#cloud-config` (YAML), `#!` (a script), `#include` (URLs) or `#cloud-boothook`, or make it MIME multipart{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(data: &[u8]) -> Vec<String> {
        check(Kind::UserData, data)
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn known_formats_pass() {
        for data in [
            &b""[..],
            b"#cloud-config\n",
            b"#cloud-config\nhostname: x\n",
            b"#cloud-config\r\nhostname: x\r\n",
            b"#!/bin/sh\necho hi\n",
            b"#include\nhttps://example.com/ud\n",
            b"#include-once\nhttps://example.com/ud\n",
            b"#cloud-boothook\n#!/bin/sh\n",
            b"#part-handler\ndef list_types(): return []\n",
            b"## template: jinja\n#cloud-config\nhostname: {{ v1.local_hostname }}\n",
            b"#cloud-config-archive\n- type: text/cloud-config\n  content: 'a: 1'\n",
            b"#cloud-config-jsonp\n[]\n",
            b"Content-Type: multipart/mixed; boundary=\"x\"\nMIME-Version: 1.0\n\n--x--\n",
        ] {
            assert_eq!(
                messages(data),
                Vec::<String>::new(),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn gzip_is_unpacked_and_checked() {
        use std::io::Write as _;
        let gz = |text: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text).unwrap();
            e.finish().unwrap()
        };
        assert!(messages(&gz(b"#cloud-config\nhostname: x\n")).is_empty());
        let m = messages(&gz(b"#cloud-config\nhostnme: x\n"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("2:1: in the gunzipped text: unknown key"),
            "{m:?}"
        );
        let m = messages(&[0x1f, 0x8b, 0, 1, 2]);
        assert!(m[0].contains("does not gunzip"), "{m:?}");
        // cloud-init gunzips once.
        let m = messages(&gz(&gz(b"#cloud-config\n")));
        assert!(
            m[0].contains("in the gunzipped text: no format cloud-init knows"),
            "{m:?}"
        );
    }

    #[test]
    fn unknown_formats_say_why_and_what_to_do() {
        let one = |data: &[u8]| {
            let m = messages(data);
            assert_eq!(m.len(), 1, "{m:?}");
            m[0].clone()
        };
        let m = one(b"hostname: x\n");
        assert!(
            m.starts_with(
                "1:1: no format cloud-init knows, so cloud-init would ignore this user-data"
            ),
            "{m}"
        );
        assert!(m.contains("add `#cloud-config` as its first line"), "{m}");
        assert!(one(b"# cloud-config\nhostname: x\n").contains("must be exactly `#cloud-config`"));
        assert!(one(b"#Cloud-Config\n").contains("must be exactly"));
        let m = one(b"\n#cloud-config\nhostname: x\n");
        assert!(
            m.starts_with("2:1: `#cloud-config` must be the very first line"),
            "{m}"
        );
        assert!(one(b"\xef\xbb\xbf#cloud-config\n").contains("byte-order mark"));
        let m = one(b"echo hi\n");
        assert!(!m.contains("looks like cloud-config"), "{m}");
    }

    #[test]
    fn cloud_config_must_be_a_mapping_of_yaml() {
        let m = messages(b"#cloud-config\n- a\n- b\n");
        assert_eq!(m.len(), 1);
        assert!(
            m[0].starts_with("2:1: cloud-config must be a mapping"),
            "{m:?}"
        );
        let m = messages(b"#cloud-config\nruncmd:\n  - [ls\nfoo: bar\n");
        assert!(m[0].starts_with("4:4: invalid YAML: "), "{m:?}");
        let m = messages(b"#cloud-config-archive\na: 1\n");
        assert!(m[0].contains("must be a list of parts"), "{m:?}");
    }
}
