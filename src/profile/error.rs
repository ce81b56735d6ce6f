//! How a profile's problems are reported: [`Problem`] (one located complaint) and
//! [`ProfileError`] (all of them, for one file), and the translation of a serde-saphyr error
//! into a problem in the words of the profile.
//!
//! A report reads as rustc's: each problem an `error:` line, the place as `--> file:line:column`
//! and the source line with a caret under the value; a last line counts them. [`ProfileError::render`]
//! can style it as clap styles its errors (the CLI decides whether the terminal gets colour).

use std::fmt::{self, Write as _};

use anstyle::{AnsiColor, Style};

use super::source::{dotted, Spans};

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
    /// The profile's text, for the source lines under each problem (empty: none shown).
    pub(super) text: String,
}

impl ProfileError {
    /// The problems of `file`, ordered by position (those without one last).
    pub(super) fn new(file: &str, mut problems: Vec<Problem>) -> Self {
        problems.sort_by_key(|p| (p.line == 0, p.line, p.column));
        ProfileError {
            file: file.to_string(),
            problems,
            text: String::new(),
        }
    }

    pub(super) fn one(file: &str, problem: Problem) -> Self {
        Self::new(file, vec![problem])
    }

    /// The report, styled (bold red `error:`, blue gutter) when `styled`: for a stream that
    /// drops the styles where they do not belong (`anstream`).
    pub fn render(&self, styled: bool) -> String {
        let st = |s: Style| if styled { s } else { Style::new() };
        let error = st(Style::new().bold().fg_color(Some(AnsiColor::Red.into())));
        let bold = st(Style::new().bold());
        let gutter = st(Style::new().bold().fg_color(Some(AnsiColor::Blue.into())));
        let spans = Spans::of(&self.text);
        let mut out = String::new();
        for p in &self.problems {
            let what = if p.key.is_empty() {
                p.message.clone()
            } else {
                format!("{}: {}", p.key, p.message)
            };
            let _ = writeln!(out, "{error}error{error:#}{bold}: {what}{bold:#}");
            let source = (p.line > 0)
                .then(|| self.text.lines().nth(p.line as usize - 1))
                .flatten();
            let Some(source) = source else {
                let place = if p.line > 0 {
                    format!("{}:{}:{}", self.file, p.line, p.column)
                } else {
                    self.file.clone()
                };
                let _ = writeln!(out, "  {gutter}-->{gutter:#} {place}");
                continue;
            };
            let number = p.line.to_string();
            let pad = " ".repeat(number.len());
            let end = spans.scalar_end((p.line, p.column)).unwrap_or(p.column + 1);
            let (line, before, width) = caret_line(source, p.column, end);
            let _ = writeln!(
                out,
                "{pad}{gutter}-->{gutter:#} {}:{}:{}",
                self.file, p.line, p.column
            );
            let _ = writeln!(out, "{pad} {gutter}|{gutter:#}");
            let _ = writeln!(out, "{gutter}{number} |{gutter:#} {line}");
            let _ = writeln!(
                out,
                "{pad} {gutter}|{gutter:#} {before}{error}{}{error:#}",
                "^".repeat(width)
            );
        }
        let n = self.problems.len();
        let _ = writeln!(
            out,
            "{error}error{error:#}{bold}: {}: {n} problem{} in profile{bold:#}",
            self.file,
            if n == 1 { "" } else { "s" }
        );
        out
    }
}

/// The source line to show (tabs as spaces, so the caret lines up; any other control character
/// as U+FFFD, so a profile cannot send escape sequences to the terminal), the blanks before the
/// caret and its width, for a value from `column` to just before `end` (1-based characters).
fn caret_line(source: &str, column: u64, end: u64) -> (String, String, usize) {
    let mut line = String::new();
    let mut before = String::new();
    let mut width = 0;
    for (i, c) in source.chars().enumerate() {
        let at = i as u64 + 1;
        let shown = if c == '\t' {
            "    ".to_string()
        } else if c.is_control() {
            char::REPLACEMENT_CHARACTER.to_string()
        } else {
            c.to_string()
        };
        if at < column {
            before.push_str(&" ".repeat(shown.chars().count()));
        } else if at < end {
            width += shown.chars().count();
        }
        line.push_str(&shown);
    }
    (line.trim_end().to_string(), before, width.max(1))
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for ProfileError {}

/// The problem a serde-saphyr error (syntax, wrong type, duplicate key, missing key) stands
/// for, named by the key path of the value at its position (`spans`, else the key read back from
/// `text`). A missing key is placed at the mapping that lacks it.
pub(super) fn parse_problem(e: &serde_saphyr::Error, text: &str, spans: &Spans) -> Problem {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = plain_message(e);
    if message.starts_with("missing key") {
        // The parser is at the last key of the mapping that lacks one.
        let mapping = spans.mapping_of_key_at((line, column));
        let place = mapping.and_then(|m| spans.mapping_place(m));
        return match (mapping, place) {
            // Inside a mapping of the file: at its key, named by its path.
            (Some(path), Some((l, c))) if !path.is_empty() => Problem {
                line: l,
                column: c,
                key: dotted(path),
                message,
            },
            // The file as a whole lacks it: no one place to show.
            _ => Problem {
                line: 0,
                column: 0,
                key: String::new(),
                message,
            },
        };
    }
    // At a value (a wrong type) or at a key (a duplicate): its path, else the key read back.
    let path = spans
        .value((line, column))
        .or_else(|| spans.key_at((line, column)));
    Problem {
        line,
        column,
        key: path.map_or_else(|| key_at(text, line, column), dotted),
        message,
    }
}

/// The one-line reason of a serde-saphyr error: its Display adds a location and a source
/// snippet, and advice about its own API. Profiles and `seed-iso`'s YAML checks both say it.
pub(crate) fn yaml_reason(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut msg = full.lines().next().unwrap_or("invalid YAML").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("line ") {
        // "line X column Y: reason"
        if let Some((_, reason)) = rest.split_once(": ") {
            msg = reason;
        }
    }
    msg.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable")
        .trim_end_matches("; use from_str_multiple or from_str_multiple_with_options")
        .to_string()
}

/// A profile error wants the one-line reason in the words of the profile rather than of Rust
/// types.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let msg = yaml_reason(e);
    if let Some(field) = msg.strip_prefix("missing field ") {
        return format!("missing key {field}");
    }
    if let Some(key) = msg.strip_prefix("duplicate mapping key: ") {
        return format!("duplicate key `{key}`: a mapping has each key once");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
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
    fn the_source_line_sends_no_control_character_to_the_terminal() {
        let (line, before, width) = caret_line("name: \u{1b}[31mred\u{7}", 7, 17);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert_eq!(line.chars().count(), 15);
        assert_eq!((before.len(), width), (6, 9));
    }

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
            prop_assert_eq!(&p.key, "nodes[4].id", "{}", err);
            prop_assert!(p.message.contains("whole number"), "{}", err);
        }
    }
}
