//! Every output read the way its consumer reads it (PyYAML for YAML, `sh -n` and the shell's
//! word splitting for scripts, systemd's rules for units, JSON, AppleScript, lines of words),
//! with the files inside each user-data taken out and read by their kind; then two ways to
//! compare: exactly, after a marker is replaced by the value it stands for, and by structure.

use std::path::Path;

use serde_json::Value;

use super::render::{kind_of_path, Kind, Output};
use super::{applescript, judge, sh, unit};

#[derive(Clone, Debug, PartialEq)]
pub enum Decoded {
    Tokens(Vec<String>),
    Value(Value),
    Unit(Vec<unit::Entry>),
    Lines(Vec<Vec<String>>),
    Pem,
}

#[derive(Clone, Debug)]
pub struct Doc {
    pub name: String,
    pub decoded: Decoded,
}

/// The files a user-data writes, as outputs of their own, and its header comment.
fn user_data_files(o: &Output, v: &mut Value) -> Result<Vec<Output>, String> {
    let mut lines = o.text.lines();
    if lines.next() != Some("#cloud-config") {
        return Err("does not start with #cloud-config".into());
    }
    let header = lines.next().unwrap_or_default();
    if !header.starts_with("# ") {
        return Err(format!("second line is not the header comment: {header:?}"));
    }
    let mut outs = vec![Output {
        name: format!("{}#header", o.name),
        kind: Kind::Lines,
        text: header.to_string(),
    }];
    let map = v.as_object_mut().ok_or("is not a mapping")?;
    if let Some(files) = map.get_mut("write_files") {
        for f in files.as_array_mut().ok_or("write_files is not a list")? {
            let path = f["path"]
                .as_str()
                .ok_or("a file without a path")?
                .to_string();
            let content = f["content"]
                .as_str()
                .ok_or_else(|| format!("{path}: no content"))?
                .to_string();
            f["content"] = "<content>".into();
            outs.push(Output {
                name: format!("{}:{path}", o.name),
                kind: kind_of_path(&path),
                text: content,
            });
        }
    }
    if let Some(trusted) = map
        .get_mut("ca_certs")
        .and_then(|c| c.get_mut("trusted"))
        .and_then(Value::as_array_mut)
    {
        for t in trusted {
            if !t.as_str().is_some_and(|s| s.starts_with("-----BEGIN ")) {
                return Err("ca_certs.trusted holds something else than a PEM".into());
            }
            *t = "<pem>".into();
        }
    }
    Ok(outs)
}

/// The credentials of a kubeconfig (and the server of one the PKI made, when an earlier
/// profile's endpoint made it), and the content-derived part of an instance-id, replaced by
/// placeholders.
fn settle(o: &Output, v: &mut Value) -> Result<(), String> {
    match o.kind {
        Kind::Kubeconfig => {
            fn walk(v: &mut Value, from_pki: bool) {
                match v {
                    Value::Object(m) => {
                        for (k, x) in m.iter_mut() {
                            if k.ends_with("-data") || (from_pki && k == "server") {
                                *x = "<data>".into();
                            } else {
                                walk(x, from_pki);
                            }
                        }
                    }
                    Value::Array(a) => a.iter_mut().for_each(|x| walk(x, from_pki)),
                    _ => {}
                }
            }
            // The localhost kubeconfig a seed gets is made at render time, like the host's.
            let from_pki =
                o.name.contains(':') && !o.name.ends_with("/var/lib/kubernetes/admin.kubeconfig");
            walk(v, from_pki);
        }
        Kind::MetaData => {
            let host = v["local-hostname"]
                .as_str()
                .ok_or("no local-hostname")?
                .to_string();
            let id = v["instance-id"].as_str().ok_or("no instance-id")?;
            let hash = id
                .strip_prefix(&format!("{host}-"))
                .ok_or_else(|| format!("instance-id {id} is not <local-hostname>-<hash>"))?;
            if hash.len() != 16 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "instance-id {id}: not 16 hex digits after the name"
                ));
            }
            v["instance-id"] = format!("{host}-<hash>").into();
        }
        _ => {}
    }
    Ok(())
}

fn is_yaml(k: Kind) -> bool {
    matches!(
        k,
        Kind::UserData | Kind::MetaData | Kind::Yaml | Kind::Kubeconfig
    )
}

/// Every output and every file inside a user-data, decoded; `Err` names the first that does
/// not parse the way its consumer reads it. `judged`: read the seed's YAML with cloud-init's
/// own loader and check every script with `sh -n` (a reference profile's outputs, known good,
/// are only decoded).
pub fn decode(outs: Vec<Output>, scratch: &Path, judged: bool) -> Result<Vec<Doc>, String> {
    let mut all: Vec<Output> = Vec::new();
    let mut values: Vec<Option<Value>> = Vec::new();
    // Two rounds of YAML: the outputs, then the YAML files inside the user-data.
    let mut pending = outs;
    while !pending.is_empty() {
        // cloud-init reads the seed's own files; Go programs read the rest.
        let yaml: Vec<(&str, bool)> = pending
            .iter()
            .filter(|o| is_yaml(o.kind))
            .map(|o| {
                let seed = !o.name.contains(':') && o.kind != Kind::Kubeconfig;
                (o.text.as_str(), judged && seed)
            })
            .collect();
        let mut parsed = judge::pyyaml(&yaml).into_iter();
        let mut next = Vec::new();
        for o in pending {
            let v = if is_yaml(o.kind) {
                let mut v = parsed
                    .next()
                    .unwrap()
                    .map_err(|e| format!("{}: PyYAML: {e}", o.name))?;
                if o.kind == Kind::UserData {
                    next.extend(
                        user_data_files(&o, &mut v).map_err(|e| format!("{}: {e}", o.name))?,
                    );
                }
                settle(&o, &mut v).map_err(|e| format!("{}: {e}", o.name))?;
                Some(v)
            } else {
                None
            };
            all.push(o);
            values.push(v);
        }
        pending = next;
    }
    let scripts: Vec<(String, &str)> = all
        .iter()
        .filter(|o| o.kind == Kind::Shell)
        .map(|o| (o.name.clone(), o.text.as_str()))
        .collect();
    let refused = if judged {
        judge::sh_n(scratch, &scripts)
    } else {
        Vec::new()
    };
    if !refused.is_empty() {
        return Err(format!("sh -n refuses: {}", refused.join("; ")));
    }
    let mut docs = Vec::new();
    for (o, v) in all.into_iter().zip(values) {
        let decoded = match o.kind {
            k if is_yaml(k) => Decoded::Value(v.unwrap()),
            Kind::Json => Decoded::Value(
                serde_json::from_str(&o.text).map_err(|e| format!("{}: JSON: {e}", o.name))?,
            ),
            Kind::Shell => Decoded::Tokens(sh::words(&o.text)),
            Kind::Unit => {
                Decoded::Unit(unit::parse(&o.text).map_err(|e| format!("{}: unit: {e}", o.name))?)
            }
            Kind::AppleScript => Decoded::Tokens(
                applescript::tokens(&o.text)
                    .map_err(|e| format!("{}: AppleScript: {e}", o.name))?,
            ),
            Kind::Lines => Decoded::Lines(
                o.text
                    .lines()
                    .map(|l| l.split_whitespace().map(str::to_string).collect())
                    .collect(),
            ),
            Kind::Pem => {
                if !o.text.starts_with("-----BEGIN ")
                    && !o.text.starts_with("kind: EncryptionConfig")
                {
                    return Err(format!("{}: not a PEM file", o.name));
                }
                Decoded::Pem
            }
            _ => unreachable!(),
        };
        docs.push(Doc {
            name: o.name,
            decoded,
        });
    }
    Ok(docs)
}

// ---------------------------------------------------------------------------------------------
// Comparing.

fn sub(s: &str, subs: &[(String, String)]) -> String {
    subs.iter().fold(s.to_string(), |s, (m, v)| s.replace(m, v))
}

fn sub_value(v: &Value, subs: &[(String, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(sub(s, subs)),
        Value::Array(a) => Value::Array(a.iter().map(|x| sub_value(x, subs)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (sub(k, subs), sub_value(x, subs)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `d` with every marker replaced by its value, in every string it holds.
pub fn substitute(d: &Doc, subs: &[(String, String)]) -> Doc {
    let s = |x: &String| sub(x, subs);
    let decoded = match &d.decoded {
        Decoded::Tokens(t) => Decoded::Tokens(t.iter().map(s).collect()),
        Decoded::Value(v) => Decoded::Value(sub_value(v, subs)),
        Decoded::Unit(es) => Decoded::Unit(
            es.iter()
                .map(|e| unit::Entry {
                    section: s(&e.section),
                    key: s(&e.key),
                    value: e.value.iter().map(s).collect(),
                })
                .collect(),
        ),
        Decoded::Lines(ls) => {
            Decoded::Lines(ls.iter().map(|l| l.iter().map(s).collect()).collect())
        }
        Decoded::Pem => Decoded::Pem,
    };
    Doc {
        name: s(&d.name),
        decoded,
    }
}

/// The characters that stand for something a consumer would expand or treat as syntax.
const MARKS: [char; 8] = [
    sh::EXPANSION,
    sh::BACKQUOTE,
    sh::GLOB,
    sh::TILDE,
    unit::SPECIFIER,
    unit::EXPANSION,
    applescript::STRING,
    sh::HEREDOC,
];

fn marks(s: &str) -> Vec<usize> {
    MARKS.iter().map(|m| s.matches(*m).count()).collect()
}

fn is_op(s: &str) -> bool {
    s.starts_with(sh::OP) || s.starts_with(applescript::OP)
}

fn value_shape(a: &Value, b: &Value, at: &str) -> Result<(), String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<_> = x.keys().collect();
            let ky: Vec<_> = y.keys().collect();
            if kx != ky {
                return Err(format!("{at}: keys {kx:?}, expected {ky:?}"));
            }
            for (k, v) in x {
                value_shape(v, &y[k], &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Err(format!("{at}: {} items, expected {}", x.len(), y.len()));
            }
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                value_shape(v, w, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => Ok(()),
        _ => Err(format!("{at}: {a}, expected something like {b}")),
    }
}

/// Whether `a` has the structure of `b`: the same tokens, keys, sections, lines and word counts,
/// the same operators and marks in each word; the words themselves may differ.
pub fn same_shape(a: &Decoded, b: &Decoded) -> Result<(), String> {
    match (a, b) {
        (Decoded::Tokens(x), Decoded::Tokens(y)) => {
            if x.len() != y.len() {
                return Err(format!("{} tokens, expected {}", x.len(), y.len()));
            }
            for (i, (s, t)) in x.iter().zip(y).enumerate() {
                if (is_op(s) || is_op(t)) && s != t {
                    return Err(format!("token {i}: {s:?}, expected {t:?}"));
                }
                if marks(s) != marks(t) {
                    return Err(format!("token {i}: {s:?} is expanded unlike {t:?}"));
                }
            }
            Ok(())
        }
        (Decoded::Value(x), Decoded::Value(y)) => value_shape(x, y, "$"),
        (Decoded::Unit(x), Decoded::Unit(y)) => {
            let keys = |u: &[unit::Entry]| -> Vec<(String, String, usize)> {
                u.iter()
                    .map(|e| (e.section.clone(), e.key.clone(), e.value.len()))
                    .collect()
            };
            if keys(x) != keys(y) {
                return Err(format!(
                    "unit entries {:?}, expected {:?}",
                    keys(x),
                    keys(y)
                ));
            }
            for (e, f) in x.iter().zip(y) {
                for (w, v) in e.value.iter().zip(&f.value) {
                    if marks(w) != marks(v) {
                        return Err(format!("{}: {w:?} is expanded unlike {v:?}", e.key));
                    }
                }
            }
            Ok(())
        }
        (Decoded::Lines(x), Decoded::Lines(y)) => {
            let counts = |l: &[Vec<String>]| l.iter().map(Vec::len).collect::<Vec<_>>();
            if counts(x) != counts(y) {
                return Err(format!(
                    "words per line {:?}, expected {:?}",
                    counts(x),
                    counts(y)
                ));
            }
            Ok(())
        }
        (Decoded::Pem, Decoded::Pem) => Ok(()),
        _ => Err("another kind of file".into()),
    }
}

fn value_diff(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) if x.keys().eq(y.keys()) => x
            .iter()
            .find_map(|(k, v)| value_diff(v, &y[k], &format!("{at}.{k}"))),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| value_diff(v, w, &format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{at}: {a}, expected {b}")),
    }
}

/// Where `a` first differs from `b`, if it does.
pub fn difference(a: &Decoded, b: &Decoded) -> Option<String> {
    fn seq<T: PartialEq + std::fmt::Debug>(x: &[T], y: &[T]) -> Option<String> {
        let i = x.iter().zip(y).position(|(p, q)| p != q);
        match i {
            Some(i) => Some(format!(
                "item {i}: {:?}, expected {:?} (after {:?})",
                x[i],
                y[i],
                &x[i.saturating_sub(3)..i]
            )),
            None if x.len() != y.len() => Some(format!("{} items, expected {}", x.len(), y.len())),
            None => None,
        }
    }
    match (a, b) {
        (Decoded::Tokens(x), Decoded::Tokens(y)) => seq(x, y),
        (Decoded::Unit(x), Decoded::Unit(y)) => seq(x, y),
        (Decoded::Lines(x), Decoded::Lines(y)) => seq(x, y),
        (Decoded::Value(x), Decoded::Value(y)) => value_diff(x, y, "$"),
        (Decoded::Pem, Decoded::Pem) => None,
        _ => Some("another kind of file".into()),
    }
}
