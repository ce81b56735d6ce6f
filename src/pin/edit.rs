//! Editing a profile in place: the version, digest and size scalars of a component are found
//! by their byte spans (serde-saphyr reports where each value was read) and replaced one by one,
//! so every comment, blank line, key order and quoting style outside them stays as it was. A
//! digest for an architecture the component did not pin yet is added as one more entry of its
//! `digests` mapping, in the mapping's own style (block or flow).

use std::collections::BTreeMap;

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// Only what editing needs of the file; every other key is ignored here (the profile parser
/// checks them).
#[derive(Deserialize)]
struct Top {
    components: BTreeMap<String, Component>,
}

#[derive(Deserialize)]
struct Component {
    version: Spanned<String>,
    digests: Spanned<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    sizes: BTreeMap<String, Spanned<u64>>,
}

/// Where a scalar's text is in the file (with its quotes, if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Scalar {
    start: usize,
    end: usize,
    quote: Option<char>,
}

/// Where one component's editable values are.
pub(super) struct Spans {
    pub(super) version: Scalar,
    pub(super) digests: BTreeMap<String, Scalar>,
    pub(super) sizes: BTreeMap<String, Scalar>,
    /// The `digests` mapping: where it starts, and whether it is a flow mapping (`{ ... }`).
    digests_at: usize,
    digests_flow: bool,
}

/// The spans of every component of the profile `text`; `file` names it in errors.
pub(super) fn locate(text: &str, file: &str) -> Result<BTreeMap<String, Spans>> {
    let top: Top = serde_saphyr::from_str(text)
        .with_context(|| format!("{file}: cannot read its components"))?;
    let mut out = BTreeMap::new();
    for (name, c) in top.components {
        let key = |k: &str| format!("{file}: components.{name}.{k}");
        let digests_at = start_of(&c.digests, text, &key("digests"))?;
        let spans = Spans {
            version: scalar(&c.version, text, &key("version"))?,
            digests: c
                .digests
                .value
                .iter()
                .map(|(arch, d)| {
                    Ok((
                        arch.clone(),
                        scalar(d, text, &key(&format!("digests.{arch}")))?,
                    ))
                })
                .collect::<Result<_>>()?,
            sizes: c
                .sizes
                .iter()
                .map(|(arch, s)| {
                    Ok((
                        arch.clone(),
                        scalar(s, text, &key(&format!("sizes.{arch}")))?,
                    ))
                })
                .collect::<Result<_>>()?,
            digests_flow: text[digests_at..].starts_with('{'),
            digests_at,
        };
        out.insert(name, spans);
    }
    Ok(out)
}

/// The byte offset where a value starts; a value written through an alias cannot be edited
/// in place (the edit would land on the anchor, which others may use).
fn start_of<T>(v: &Spanned<T>, text: &str, key: &str) -> Result<usize> {
    let offset = |l: &Location| l.span().byte_offset().map(|o| o as usize);
    match (offset(&v.referenced), offset(&v.defined)) {
        (Some(r), Some(d)) if r == d && r <= text.len() => Ok(r),
        (Some(_), Some(_)) => bail!("{key} is written through a YAML alias; edit it by hand"),
        _ => bail!("{key}: its place in the file is unknown"),
    }
}

fn scalar<T>(v: &Spanned<T>, text: &str, key: &str) -> Result<Scalar> {
    let start = start_of(v, text, key)?;
    let len = v.referenced.span().byte_len().unwrap_or(0) as usize;
    let end = start + len;
    let raw = text.get(start..end).unwrap_or("");
    let quote = raw.chars().next().filter(|c| *c == '"' || *c == '\'');
    let inner = match quote {
        Some(q) => raw.strip_prefix(q).and_then(|r| r.strip_suffix(q)),
        None => Some(raw),
    };
    // Our values (versions, digests, sizes) never need escapes; anything else is not ours to
    // rewrite.
    match inner {
        Some(i) if !i.is_empty() && !i.contains(['\\', '\'', '"', '\n']) => {
            Ok(Scalar { start, end, quote })
        }
        _ => bail!("{key}: `{raw}` is not a plain or simply quoted value; edit it by hand"),
    }
}

/// One change of the file: the bytes `start..end` become `text`.
pub(super) struct Edit {
    start: usize,
    end: usize,
    text: String,
}

impl Edit {
    /// `at` takes `value`, in the quoting style it had.
    pub(super) fn replace(at: Scalar, value: &str) -> Edit {
        let text = match at.quote {
            Some(q) => format!("{q}{value}{q}"),
            // A version of digits only would read as a number to other YAML tools.
            None if value.chars().all(|c| c.is_ascii_digit()) => format!("\"{value}\""),
            None => value.to_string(),
        };
        Edit {
            start: at.start,
            end: at.end,
            text,
        }
    }

    /// `at`, a number, becomes `value`.
    pub(super) fn number(at: Scalar, value: u64) -> Edit {
        Edit {
            start: at.start,
            end: at.end,
            text: value.to_string(),
        }
    }

    /// A new `arch: digest` entry in the `digests` mapping of `spans`, after its last entry.
    pub(super) fn add_digest(text: &str, spans: &Spans, arch: &str, digest: &str) -> Result<Edit> {
        let Some(last) = spans.digests.values().max_by_key(|s| s.end) else {
            bail!("its digests mapping is empty; add the entry by hand");
        };
        if spans.digests_flow {
            return Ok(Edit {
                start: last.end,
                end: last.end,
                text: format!(", {arch}: {digest}"),
            });
        }
        // Block mapping: a line like the first entry's, after the last entry's line.
        let line_start = text[..spans.digests_at].rfind('\n').map_or(0, |i| i + 1);
        let indent = &text[line_start..spans.digests_at];
        if !indent.chars().all(|c| c == ' ') {
            bail!("its digests mapping is not one entry per line; add the entry by hand");
        }
        let after = text[last.end..]
            .find('\n')
            .map_or(text.len(), |i| last.end + i + 1);
        let newline = if after == text.len() && !text.ends_with('\n') {
            "\n"
        } else {
            ""
        };
        Ok(Edit {
            start: after,
            end: after,
            text: format!("{newline}{indent}{arch}: {digest}\n"),
        })
    }
}

/// `text` with every edit applied (they must not overlap).
pub(super) fn apply(text: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| std::cmp::Reverse((e.start, e.end)));
    let mut out = text.to_string();
    for e in edits {
        out.replace_range(e.start..e.end, &e.text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# top comment
components:
  base-image:   # the disk
    version: \"20250305\"   # dated
    url: u
    digests:
      arm64: sha256:aaa  # arm
      amd64: 'sha256:bbb'
    sizes: {arm64: 123}
  runc:
    version: 1.1.13
    digests: { arm64: sha256:ccc }
";

    #[test]
    fn values_are_replaced_in_their_own_style_and_nothing_else_moves() {
        let spans = locate(TEXT, "p.yaml").unwrap();
        let b = &spans["base-image"];
        let r = &spans["runc"];
        let edits = vec![
            Edit::replace(b.version, "20250601"),
            Edit::replace(b.digests["arm64"], "sha256:xxx"),
            Edit::replace(b.digests["amd64"], "sha256:yyy"),
            Edit::number(b.sizes["arm64"], 456),
            Edit::replace(r.version, "1.2.0"),
            Edit::replace(r.digests["arm64"], "sha256:zzz"),
            Edit::add_digest(TEXT, r, "amd64", "sha256:www").unwrap(),
        ];
        let want = TEXT
            .replace("20250305", "20250601")
            .replace("sha256:aaa", "sha256:xxx")
            .replace("sha256:bbb", "sha256:yyy")
            .replace("123", "456")
            .replace("1.1.13", "1.2.0")
            .replace("sha256:ccc", "sha256:zzz, amd64: sha256:www");
        assert_eq!(apply(TEXT, edits), want);
    }

    #[test]
    fn a_digest_for_a_new_arch_is_a_line_like_the_others() {
        let text = "components:\n  runc:\n    version: 1.1.13\n    digests:\n      arm64: sha256:ccc   # note\n    url: u\n";
        let spans = locate(text, "p.yaml").unwrap();
        let e = Edit::add_digest(text, &spans["runc"], "amd64", "sha256:ddd").unwrap();
        assert_eq!(
            apply(text, vec![e]),
            text.replace("# note\n", "# note\n      amd64: sha256:ddd\n")
        );
    }

    #[test]
    fn aliases_and_escapes_are_left_to_the_user() {
        let alias =
            "v: &v 1.1.13\ncomponents:\n  runc:\n    version: *v\n    digests: {arm64: sha256:c}\n";
        let e = locate(alias, "p.yaml").err().unwrap().to_string();
        assert!(
            e.contains("components.runc.version is written through a YAML alias"),
            "{e}"
        );
        let escaped =
            "components:\n  runc:\n    version: \"1.1\\u002e13\"\n    digests: {arm64: sha256:c}\n";
        let e = locate(escaped, "p.yaml").err().unwrap().to_string();
        assert!(e.contains("not a plain or simply quoted value"), "{e}");
    }
}
