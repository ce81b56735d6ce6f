//! Cloud-config checked against cloud-init's own JSON schema (an embedded copy of upstream's
//! `schema-cloud-config-v1.json`, see `cloud-init/README.md`), with each complaint turned into
//! one line at the key or value it is about, in YAML words ("a mapping", "a list").

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::yaml::{pointer_segment, Doc};
use super::Problem;

const SCHEMA: &str = include_str!("cloud-init/schema-cloud-config-v1.json");

/// The parsed schema (for "did you mean") and its validator, built once.
fn schema() -> &'static (Value, Validator) {
    static SCHEMA_AND_VALIDATOR: OnceLock<(Value, Validator)> = OnceLock::new();
    SCHEMA_AND_VALIDATOR.get_or_init(|| {
        // The embedded schema is part of the program; a unit test builds it.
        let schema: Value = serde_json::from_str(SCHEMA).expect("the embedded schema is JSON");
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            // Like validate-seed (Python jsonschema without a format checker): formats are
            // hints in cloud-init's schema, not rules.
            .should_validate_formats(false)
            .build(&schema)
            .expect("the embedded schema compiles");
        (schema, validator)
    })
}

/// Every schema violation in `doc`, one problem per place and reason.
pub(super) fn check(doc: &Doc) -> Vec<Problem> {
    let (schema, validator) = schema();
    let mut out = Vec::new();
    for err in validator.iter_errors(&doc.value) {
        describe(&err, schema, doc, &mut out);
    }
    out.dedup();
    out
}

/// What kind of YAML value `v` is, in the words a YAML author uses.
pub(super) fn kind_of(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("true/false ({b})"),
        Value::Number(n) if n.is_f64() => format!("a number ({n})"),
        Value::Number(n) => format!("a whole number ({n})"),
        Value::String(s) => format!("text ({})", short_text(s)),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::Null => "null",
        JsonType::Boolean => "true/false",
        JsonType::Integer => "a whole number",
        JsonType::Number => "a number",
        JsonType::String => "text",
        JsonType::Array => "a list",
        JsonType::Object => "a mapping",
    }
}

fn short_text(s: &str) -> String {
    let mut t: String = s.chars().take(40).collect();
    if t.len() < s.len() {
        t.push_str("...");
    }
    format!("{t:?}")
}

fn short_value(v: &Value) -> String {
    match v {
        Value::String(s) => short_text(s),
        Value::Array(_) | Value::Object(_) => kind_of(v),
        other => other.to_string(),
    }
}

/// `/write_files/0/path` as `write_files[0].path`.
fn yaml_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// Appends the problems `err` stands for.
fn describe(err: &ValidationError, schema: &Value, doc: &Doc, out: &mut Vec<Problem>) {
    let pointer = err.instance_path().as_str();
    let path = yaml_path(pointer);
    let at_value = |message: String| {
        let (line, column) = doc.value_at(pointer);
        let message = if path.is_empty() {
            message
        } else {
            format!("`{path}`: {message}")
        };
        Problem::error(line, column, message)
    };
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_keys(err, schema);
            for key in unexpected {
                let (line, column) = doc.key_at(&format!("{pointer}/{}", pointer_segment(key)));
                let place = if path.is_empty() {
                    "cloud-init's schema has no such key".to_string()
                } else {
                    format!("`{path}` has no such key in cloud-init's schema")
                };
                let hint = closest(key, &known)
                    .map(|k| format!("; did you mean `{k}`?"))
                    .unwrap_or_default();
                out.push(Problem::error(
                    line,
                    column,
                    format!("unknown key `{key}`: {place}{hint}"),
                ));
            }
        }
        ValidationErrorKind::Type { kind } => {
            let types: Vec<JsonType> = match kind {
                jsonschema::error::TypeKind::Single(t) => vec![*t],
                jsonschema::error::TypeKind::Multiple(set) => set.iter().collect(),
            };
            out.push(at_value(type_message(&types, err.instance())));
        }
        ValidationErrorKind::Enum { options } => {
            let options = match options.as_ref() {
                Value::Array(items) => items.iter().map(short_value).collect::<Vec<_>>(),
                other => vec![short_value(other)],
            };
            out.push(at_value(format!(
                "{} is not one of {}",
                short_value(err.instance()),
                options.join(", ")
            )));
        }
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or(property.to_string(), str::to_string);
            out.push(at_value(format!("missing the required key `{name}`")));
        }
        ValidationErrorKind::Pattern { pattern } => out.push(at_value(format!(
            "{} does not match the pattern `{pattern}`",
            short_value(err.instance())
        ))),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            one_of(err, context, schema, doc, out, at_value);
        }
        _ => {
            let mut message = err.to_string();
            if message.chars().count() > 200 {
                message = message.chars().take(200).collect::<String>() + "...";
            }
            out.push(at_value(message));
        }
    }
}

/// A value that matches none of several allowed forms: when it is not even of a kind any form
/// takes, say which kinds are allowed; otherwise explain the closest form's complaints.
fn one_of(
    err: &ValidationError,
    branches: &[Vec<ValidationError<'static>>],
    schema: &Value,
    doc: &Doc,
    out: &mut Vec<Problem>,
    at_value: impl Fn(String) -> Problem,
) {
    let here = err.instance_path().as_str();
    let wrong_kind = |e: &ValidationError| {
        e.instance_path().as_str() == here && matches!(e.kind(), ValidationErrorKind::Type { .. })
    };
    let fitting: Vec<&Vec<ValidationError>> = branches
        .iter()
        .filter(|errors| !errors.iter().any(wrong_kind))
        .collect();
    match fitting.iter().min_by_key(|errors| errors.len()) {
        Some(best) if !best.is_empty() => {
            for e in best.iter() {
                describe(e, schema, doc, out);
            }
        }
        _ => {
            let mut types = Vec::new();
            for e in branches.iter().flatten() {
                if let ValidationErrorKind::Type { kind } = e.kind() {
                    match kind {
                        jsonschema::error::TypeKind::Single(t) => types.push(*t),
                        jsonschema::error::TypeKind::Multiple(set) => types.extend(set.iter()),
                    }
                }
            }
            if types.is_empty() {
                out.push(at_value(format!(
                    "{} matches none of the forms cloud-init's schema allows here",
                    short_value(err.instance())
                )));
            } else {
                out.push(at_value(type_message(&types, err.instance())));
            }
        }
    }
}

fn type_message(types: &[JsonType], got: &Value) -> String {
    let mut names: Vec<&str> = Vec::new();
    for t in types {
        let n = type_name(*t);
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let expected = match names.as_slice() {
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => "another kind of value".to_string(),
    };
    let mut message = format!("expected {expected}, got {}", kind_of(got));
    if names.contains(&"text") && matches!(got, Value::Number(_) | Value::Bool(_)) {
        message.push_str(": quote it, or YAML reads it as a number or true/false");
    }
    message
}

/// The keys the schema allows where `err` (an additionalProperties failure) happened.
fn known_keys(err: &ValidationError, schema: &Value) -> Vec<String> {
    // The keyword's own location in the schema document, without the `additionalProperties`.
    let location = err
        .absolute_keyword_location()
        .and_then(|uri| uri.fragment().map(|f| f.as_str().to_string()))
        .unwrap_or_else(|| err.schema_path().as_str().to_string());
    let parent = location
        .rsplit_once('/')
        .map_or("", |(parent, _)| parent)
        .replace("%24", "$");
    let Some(node) = schema.pointer(&parent) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = node
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The known key closest to `key` by edit distance, if it is close enough to be a typo.
fn closest<'a>(key: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(1);
    known
        .iter()
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::yaml;
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let doc = yaml::parse(text).unwrap();
        check(&doc)
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn the_embedded_schema_compiles_and_accepts_good_config() {
        let text = "#cloud-config\nhostname: node1\npreserve_hostname: false\nssh_pwauth: yes\n\
            write_files:\n  - path: /etc/x\n    permissions: '0644'\n    owner: root:root\n    content: |\n      hi\n    defer: true\n\
            runcmd:\n  - [sh, -c, 'echo hi']\n  - echo two\npackages: [curl]\n";
        assert_eq!(problems(text), Vec::<String>::new());
    }

    #[test]
    fn unknown_keys_are_placed_at_the_key_with_a_suggestion() {
        let p = problems("#cloud-config\nhostnme: x\n");
        assert_eq!(
            p,
            ["2:1: unknown key `hostnme`: cloud-init's schema has no such key; did you mean `hostname`?"]
        );
        let p = problems("#cloud-config\nwrite_files:\n  - path: /x\n    contnet: hi\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("4:5: unknown key `contnet`: `write_files[0]` has no such key"),
            "{p:?}"
        );
        assert!(p[0].ends_with("did you mean `content`?"), "{p:?}");
        let p = problems("#cloud-config\nzzzzzz: 1\n");
        assert!(!p[0].contains("did you mean"), "{p:?}");
    }

    #[test]
    fn wrong_kinds_name_what_was_expected() {
        let p = problems("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("4:18: `write_files[0].permissions`: expected text, got a whole number (420): quote it"),
            "{p:?}"
        );
        let p = problems("#cloud-config\nruncmd: echo hi\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("2:9: `runcmd`: expected a list, got text"),
            "{p:?}"
        );
        let p = problems("#cloud-config\nwrite_files:\n  - content: x\n");
        assert!(
            p.iter()
                .any(|m| m.contains("missing the required key `path`")),
            "{p:?}"
        );
    }

    #[test]
    fn paths_read_like_yaml() {
        assert_eq!(yaml_path(""), "");
        assert_eq!(yaml_path("/write_files/0/path"), "write_files[0].path");
        assert_eq!(yaml_path("/a~1b/c~0d"), "a/b.c~d");
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("hostnme", "hostname"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
