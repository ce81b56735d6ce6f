//! How a profile's problems are reported: [`Problem`] (one located complaint) and
//! [`ProfileError`] (all of them, for one file), and the translation of a serde-saphyr error
//! into a problem in the words of the profile.

use std::fmt;

/// One problem in a profile, with the location of the offending value when known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based; 0 when the problem has no single place (e.g. "too many nodes").
    pub line: u64,
    /// 1-based, in characters.
    pub column: u64,
    /// Dotted key path, e.g. `nodes[3].mac`.
    pub key: String,
    pub message: String,
}

/// Every problem found in one profile file.
#[derive(Debug)]
pub struct ProfileError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl ProfileError {
    pub(super) fn one(file: &str, problem: Problem) -> Self {
        ProfileError {
            file: file.to_string(),
            problems: vec![problem],
        }
    }
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {} problem{} in profile",
            self.file,
            n,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "  {}", self.file)?;
            if p.line > 0 {
                write!(f, ":{}:{}", p.line, p.column)?;
            }
            if !p.key.is_empty() {
                write!(f, ": {}", p.key)?;
            }
            writeln!(f, ": {}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

/// The problem a serde-saphyr error (syntax, unknown key, wrong type, duplicate key) stands for,
/// with the key read back from `text` at the error's position.
pub(super) fn parse_problem(e: &serde_saphyr::Error, text: &str) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = plain_message(e);
    Problem {
        line,
        column,
        // A missing field is reported at its parent mapping: there is no key to name there.
        key: if message.starts_with("missing field") {
            String::new()
        } else {
            key_at(text, line, column)
        },
        message,
    }
}

/// serde-saphyr's Display adds a location and a source snippet; a profile error wants the
/// one-line reason, in the words of the profile rather than of Rust types.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut msg = full.lines().next().unwrap_or("invalid YAML").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("line ") {
        // "line X column Y: reason"
        if let Some((_, reason)) = rest.split_once(": ") {
            msg = reason;
        }
    }
    let msg = msg
        .trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable")
        .to_string();
    match msg.as_str() {
        "invalid u32" => "expected a whole number from 0 to 4294967295".into(),
        "invalid u8" => "expected a whole number from 0 to 255".into(),
        _ => msg,
    }
}

/// The mapping key at or just before `line:column` (1-based; the column counts characters, as
/// the parser does), read from the source text, so a parse error names the key even when the
/// parser only knows the position.
fn key_at(text: &str, line: u64, column: u64) -> String {
    let Some(src) = text.lines().nth((line as usize).saturating_sub(1)) else {
        return String::new();
    };
    // The column counts characters; slicing needs the byte offset of that character.
    let chars_before = (column as usize).saturating_sub(1);
    let col = src
        .char_indices()
        .nth(chars_before)
        .map_or(src.len(), |(byte, _)| byte);
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    // The error points at a key: take the word that starts there.
    let here: String = src[col..].chars().take_while(|c| is_key_char(*c)).collect();
    if !here.is_empty() && src[col + here.len()..].starts_with(':') {
        return here;
    }
    // It points at a value: take the key of the nearest `key:` before it.
    let before = src[..col].trim_end();
    if let Some(b) = before.strip_suffix(':') {
        let start = b
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_key_char(*c))
            .last()
            .map_or(b.len(), |(i, _)| i);
        return b[start..].to_string();
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_at_counts_characters_not_bytes() {
        // Column 33 is the `x`: the 32 characters before it take more bytes than that.
        let line = r#"  - { name: "wörkër0ääää",  id: x, role: worker }"#;
        let column = line.chars().position(|c| c == 'x').unwrap() as u64 + 1;
        assert_eq!(key_at(line, 1, column), "id");
        // The column of a key names the key itself.
        let column = line[..line.find("role").unwrap()].chars().count() as u64 + 1;
        assert_eq!(key_at(line, 1, column), "role");
    }

    #[test]
    fn key_at_past_the_end_or_nowhere_is_empty() {
        assert_eq!(key_at("a: b", 3, 1), "");
        assert_eq!(key_at("ä", 1, 99), "");
        assert_eq!(key_at("", 1, 1), "");
    }

    /// A flow-mapping node line: a quoted name of any text, then `id:` with a value of the
    /// wrong type.
    fn profile_with_bad_id(name: &str, pad: usize) -> String {
        let quoted = serde_json::to_string(name).unwrap();
        let line = format!("  - {{ name: {quoted},{}id: oops, role: worker, mac: \"52:52:52:00:00:04\", address: 192.168.1.14 }}", " ".repeat(pad));
        super::super::BUILTIN_YAML
            .lines()
            .map(|l| {
                if l.contains("name: worker0,") {
                    line.clone()
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    proptest! {
        // Whatever text stands before a wrongly typed value on its line, the error names the
        // key of that value and parsing never panics.
        #[test]
        fn a_type_error_after_any_text_names_its_key(
            name in "\\PC{0,24}",
            pad in 1usize..8,
        ) {
            let text = profile_with_bad_id(&name, pad);
            let err = crate::profile::parse(&text, "p.yaml").unwrap_err();
            prop_assert_eq!(err.problems.len(), 1, "{}", err);
            let p = &err.problems[0];
            prop_assert_eq!(&p.key, "id", "{}", err);
            prop_assert!(p.message.contains("whole number"), "{}", err);
        }
    }
}
