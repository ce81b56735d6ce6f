//! Unknown keys, all of them: serde ignores the keys a file struct does not have
//! (`serde_ignored` records each one by its path), and each becomes a problem at the place the
//! key is written, with the keys that mapping may have and a "did you mean" for a misspelling.
//! Parsing goes on, so the rest of the profile is checked in the same run.

use serde::de::{self, Deserialize, Visitor};

use super::error::Problem;
use super::file::{
    ClusterFile, CniComponentFile, ComponentFile, ComponentsFile, FirstBootFile, NodeFile,
    ProfileFile, ResourcesFile, RoleResourcesFile,
};
use super::source::{dotted, Segment, Spans};

/// A key serde found no field for, by its path in the document.
pub(super) type Unknown = Vec<Segment>;

/// The path of an ignored key as [`Segment`]s, or `None` for a key serde-saphyr's own
/// `Spanned` wrapper ignores (its marker field: not in the document). Serde's wrappers
/// (`Option`, newtypes) are not steps in the document, nor is `Spanned`'s `value`.
pub(super) fn segments(path: &serde_ignored::Path) -> Option<Unknown> {
    let mut chain = Vec::new();
    let mut at = path;
    loop {
        chain.push(at);
        at = match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, .. }
            | serde_ignored::Path::Map { parent, .. }
            | serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => parent,
        };
    }
    let mut out = Vec::new();
    let mut in_newtype = false;
    for step in chain.iter().rev() {
        match step {
            serde_ignored::Path::Seq { index, .. } => out.push(Segment::Index(*index)),
            // Inside `Spanned`, only its `value` is the document's; it is no step of its own.
            serde_ignored::Path::Map { key, .. } if in_newtype && key != "value" => return None,
            serde_ignored::Path::Map { .. } if in_newtype => {}
            serde_ignored::Path::Map { key, .. } => out.push(Segment::Key(key.clone())),
            _ => {}
        }
        in_newtype = matches!(step, serde_ignored::Path::NewtypeStruct { .. });
    }
    Some(out)
}

/// One problem per unknown key, at the key.
pub(super) fn problems(unknown: &[Unknown], spans: &Spans) -> Vec<Problem> {
    unknown
        .iter()
        .filter_map(|path| {
            let (Segment::Key(key), parent) = path.split_last()? else {
                return None;
            };
            let (line, column) = spans.key(path).unwrap_or((0, 0));
            let known = known_keys(parent);
            let message = match known.and_then(|k| closest(key, k)) {
                Some(near) => format!("unknown key `{key}`: did you mean `{near}`?"),
                None => match known {
                    Some(k) => format!("unknown key `{key}`, expected one of: {}", k.join(", ")),
                    None => format!("unknown key `{key}`"),
                },
            };
            Some(Problem {
                line,
                column,
                key: dotted(path),
                message,
            })
        })
        .collect()
}

/// Whether `missing` (serde's "missing key `mac`" at mapping `nodes[0]`) is the other half of an
/// unknown key of that mapping that looks like a misspelling of it; that problem then says so,
/// and `missing` need not be reported.
pub(super) fn explains_missing(problems: &mut [Problem], missing: &Problem) -> bool {
    let Some(field) = missing
        .message
        .strip_prefix("missing key `")
        .and_then(|m| m.strip_suffix('`'))
    else {
        return false;
    };
    let suggestion = format!("did you mean `{field}`?");
    let parent = |key: &str| key.rsplit_once('.').map_or("", |(p, _)| p).to_string();
    match problems
        .iter_mut()
        .find(|p| p.message.ends_with(&suggestion) && parent(&p.key) == missing.key)
    {
        Some(p) => {
            p.message.push_str(&format!(" (`{field}` is missing)"));
            true
        }
        None => false,
    }
}

/// The keys the mapping at `path` may have: the fields of the file struct read there. A struct
/// of `file` that is not listed here still has its unknown keys reported, without the list.
fn known_keys(path: &[Segment]) -> Option<&'static [&'static str]> {
    let key = |i: usize| match path.get(i) {
        Some(Segment::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    Some(match (path.len(), key(0), key(1)) {
        (0, ..) => fields::<ProfileFile>(),
        (1, Some("cluster"), _) => fields::<ClusterFile>(),
        (2, Some("nodes"), None) => fields::<NodeFile>(),
        (1, Some("components"), _) => fields::<ComponentsFile>(),
        (2, Some("components"), Some("cni-plugins")) => fields::<CniComponentFile>(),
        (2, Some("components"), Some(_)) => fields::<ComponentFile>(),
        (1, Some("resources"), _) => fields::<ResourcesFile>(),
        (2, Some("resources"), Some(_)) => fields::<RoleResourcesFile>(),
        (1, Some("first_boot"), _) => fields::<FirstBootFile>(),
        _ => return None,
    })
}

/// The known key `key` is most likely a misspelling of: the same but for case and `-`/`_`, or
/// close by edit distance (at most a third of its length).
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let plain = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    if let Some(k) = known.iter().find(|k| plain(k) == plain(key)) {
        return Some(k);
    }
    let limit = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The field names of a derived `Deserialize` struct, as the file spells them (renames
/// applied): serde hands them to the deserializer, which here only writes them down.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut names));
    names
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> de::Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("only the field names were wanted"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_as_the_file_spells_them() {
        assert!(fields::<ComponentsFile>().contains(&"cni-plugins"));
        assert!(fields::<NodeFile>().contains(&"mac"));
        assert_eq!(fields::<RoleResourcesFile>(), ["cpus", "memory", "disk"]);
    }

    /// Every mapping of a complete profile (every optional section written out) has its keys
    /// known here: a section added to file.rs without a line in `known_keys` fails this.
    #[test]
    fn every_section_has_its_known_keys() {
        fn walk(v: &serde_json::Value, path: &mut Vec<Segment>) {
            match v {
                serde_json::Value::Object(map) => {
                    // Maps keyed by architecture hold data, not keys of the format.
                    let by_arch = matches!(path.last(), Some(Segment::Key(k)) if k == "digests" || k == "sizes");
                    if !by_arch {
                        let known = known_keys(path)
                            .unwrap_or_else(|| panic!("no known keys for `{}`", dotted(path)));
                        for k in map.keys() {
                            assert!(
                                known.contains(&k.as_str()),
                                "`{k}` not known at `{}`",
                                dotted(path)
                            );
                        }
                    }
                    for (k, v) in map {
                        path.push(Segment::Key(k.clone()));
                        walk(v, path);
                        path.pop();
                    }
                }
                serde_json::Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        path.push(Segment::Index(i));
                        walk(v, path);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        let text = format!(
            "{}\nfirst_boot: {{ fetch_attempts: 3, fetch_backoff_seconds: 5 }}\n",
            crate::profile::BUILTIN_YAML
        );
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        for section in ["cluster", "nodes", "components", "resources", "first_boot"] {
            assert!(
                doc.get(section).is_some(),
                "the test profile lacks `{section}`"
            );
        }
        walk(&doc, &mut Vec::new());
    }

    #[test]
    fn suggestions() {
        let known = ["pod_cidr", "service_cidr", "cni", "cni-plugins"];
        assert_eq!(closest("pod_cidrr", &known), Some("pod_cidr"));
        assert_eq!(closest("Service-CIDR", &known), Some("service_cidr"));
        assert_eq!(closest("cni_plugins", &known), Some("cni-plugins"));
        assert_eq!(closest("ram", &known), None);
    }

    #[test]
    fn paths_read_as_problems_name_them() {
        let p = vec![
            Segment::Key("nodes".into()),
            Segment::Index(3),
            Segment::Key("macc".into()),
        ];
        assert_eq!(dotted(&p), "nodes[3].macc");
        assert_eq!(dotted(&p[..1]), "nodes");
    }
}
