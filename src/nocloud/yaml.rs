//! YAML read the way cloud-init reads it (PyYAML `safe_load`: YAML 1.1 booleans such as `yes`,
//! `0644` as octal), turned into a JSON value for the schema, with the line and column of every
//! value and key kept beside it so a schema complaint can point into the file.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use super::Problem;

/// How deep collections may nest.
const MAX_DEPTH: usize = 32;

/// A parsed document: its value as JSON and where each part of it was written.
pub(crate) struct Doc {
    pub value: Value,
    /// JSON pointer (`/write_files/0/path`) to the line and column of the value.
    values: HashMap<String, (u64, u64)>,
    /// JSON pointer of a mapping entry to the line and column of its key.
    keys: HashMap<String, (u64, u64)>,
}

impl Doc {
    /// Where the value at `pointer` starts, else where its nearest written parent does.
    pub fn value_at(&self, pointer: &str) -> (u64, u64) {
        self.lookup(&self.values, pointer)
    }

    /// Where the key of the entry at `pointer` is, else where its value or a parent is.
    pub fn key_at(&self, pointer: &str) -> (u64, u64) {
        match self.keys.get(pointer) {
            Some(&at) => at,
            None => self.value_at(pointer),
        }
    }

    fn lookup(&self, map: &HashMap<String, (u64, u64)>, pointer: &str) -> (u64, u64) {
        let mut p = pointer;
        loop {
            if let Some(&at) = map.get(p) {
                return at;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

/// Parses one YAML document. A syntax error, a duplicate key or a second document is a
/// [`Problem`] at its place.
pub(crate) fn parse(text: &str) -> Result<Doc, Problem> {
    let options = serde_saphyr::options! {
        // PyYAML reads `0644` as octal 420; cloud-init then sees the same number.
        legacy_octal_numbers: true,
        // PyYAML keeps the last of two equal keys; the first one's content is lost without a
        // word, which is never what the author meant.
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // PyYAML's safe_load refuses tags it has no constructor for.
        reject_unsupported_tags: true,
        // Nodes are read recursively: 32 levels (far more than any cloud-config needs) keep
        // the stack small, for flow collections (`[[...]]`, 255 by default) as for blocks.
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            flow_nesting_limit: MAX_DEPTH,
        },
    };
    let node: Spanned<Node> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| yaml_problem(&e))?;
    let mut doc = Doc {
        value: Value::Null,
        values: HashMap::new(),
        keys: HashMap::new(),
    };
    doc.value = convert(node, String::new(), &mut doc);
    Ok(doc)
}

/// Escapes one JSON pointer segment (RFC 6901).
pub(crate) fn pointer_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn convert(node: Spanned<Node>, pointer: String, doc: &mut Doc) -> Value {
    let at = (node.referenced.line(), node.referenced.column());
    // Unknown locations (line 0) fall back to the parent's.
    if at.0 > 0 {
        doc.values.insert(pointer.clone(), at);
    }
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Int(i) => Value::from(i),
        Node::UInt(u) => Value::from(u),
        // JSON has no NaN or infinity; the schema only needs to see "a number that is not".
        Node::Float(f) => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        Node::Str(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| convert(item, format!("{pointer}/{i}"), doc))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, value) in entries {
                let child = format!("{pointer}/{}", pointer_segment(&key.value));
                if key.referenced.line() > 0 {
                    doc.keys.insert(
                        child.clone(),
                        (key.referenced.line(), key.referenced.column()),
                    );
                }
                let v = convert(value, child, doc);
                map.insert(key.value, v);
            }
            Value::Object(map)
        }
    }
}

/// A serde-saphyr error as a problem at its place, in one line without Rust or API words.
pub(crate) fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let msg = crate::profile::yaml_reason(e);
    let msg = if msg.starts_with("multiple YAML documents") {
        "a second YAML document (`---`); cloud-init reads exactly one".to_string()
    } else if msg.starts_with("budget breached: Depth") || msg == "recursion limit exceeded" {
        format!("nested too deep (more than {MAX_DEPTH} levels)")
    } else {
        msg
    };
    Problem::error(line, column, format!("invalid YAML: {msg}"))
}

/// A YAML node of any kind, each part with its location.
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Node, E> {
        // `!!binary`: the schema sees text, as cloud-init's validator sees Python bytes' repr.
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = a.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = a.next_key::<Spanned<String>>()? {
            let value = a.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_keys_keep_their_places() {
        let doc = parse("#cloud-config\nhostname: x\nwrite_files:\n  - path: /a\n    permissions: 0644\n  - {path: /b}\nok: yes\n").unwrap();
        assert_eq!(doc.value["write_files"][0]["permissions"], 420);
        assert_eq!(doc.value["ok"], true);
        assert_eq!(doc.value_at("/hostname"), (2, 11));
        assert_eq!(doc.key_at("/hostname"), (2, 1));
        assert_eq!(doc.key_at("/write_files/0/permissions"), (5, 5));
        assert_eq!(doc.value_at("/write_files/1/path"), (6, 12));
        // A pointer below a scalar falls back to the scalar.
        assert_eq!(doc.value_at("/hostname/x/y"), (2, 11));
    }

    #[test]
    fn syntax_errors_duplicates_and_second_documents_are_located() {
        let p = parse("a: 1\n  b: 2\n").err().unwrap();
        assert_eq!((p.line, p.column), (2, 4));
        assert!(p.message.starts_with("invalid YAML: "), "{}", p.message);
        let p = parse("runcmd: [a]\nruncmd: [b]\n").err().unwrap();
        assert_eq!((p.line, p.column), (2, 1));
        assert!(p.message.contains("duplicate"), "{}", p.message);
        assert!(!p.message.contains("DuplicateKeyPolicy"), "{}", p.message);
        let p = parse("a: 1\n---\nb: 1\n").err().unwrap();
        assert!(p.message.contains("second YAML document"), "{}", p.message);
        let deep: String = (0..100)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let p = parse(&deep).err().unwrap();
        assert_eq!(
            p.message,
            "invalid YAML: nested too deep (more than 32 levels)"
        );
        let p = parse(&format!(
            "a: {}{}\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        ))
        .err()
        .unwrap();
        assert_eq!(
            p.message,
            "invalid YAML: nested too deep (more than 32 levels)"
        );
    }

    #[test]
    fn pointer_segments_are_escaped() {
        assert_eq!(pointer_segment("a/b~c"), "a~1b~0c");
        let doc = parse("\"a/b\": 1\n").unwrap();
        assert_eq!(doc.key_at("/a~1b"), (1, 1));
    }
}
