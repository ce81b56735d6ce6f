//! A systemd unit file as systemd reads it: `[Section]` headers, `Key=Value` lines, comments
//! (`#`, `;`) dropped, a line ending in `\` joined to the next with a space (comment lines
//! inside such a continuation skipped). The command lines (`Exec*=`) are split into words after
//! systemd's unquoting (double and single quotes, C escapes); what systemd would still expand is
//! marked: a `%` specifier as [`SPECIFIER`] and the letter, `$VAR` and `${VAR}` as
//! [`EXPANSION`] and the name. Other values keep their text, specifiers marked.

pub const SPECIFIER: char = '\u{E020}';
pub const EXPANSION: char = '\u{E021}';

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub section: String,
    pub key: String,
    /// The words of a command line; one element, the value, for any other key.
    pub value: Vec<String>,
}

pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let mut line = line.to_string();
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        while line.ends_with('\\') {
            line.pop();
            line.push(' ');
            let Some((_, next)) = lines.by_ref().find(|(_, l)| {
                let t = l.trim_start();
                !(t.starts_with('#') || t.starts_with(';'))
            }) else {
                break;
            };
            line.push_str(next);
        }
        logical.push((n + 1, line));
    }
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, line) in logical {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[') {
            section = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {n}: a section header without `]`: {t}"))?
                .to_string();
            continue;
        }
        if section.is_empty() {
            return Err(format!("line {n}: an assignment before any section: {t}"));
        }
        let (key, value) = t
            .split_once('=')
            .ok_or_else(|| format!("line {n}: not KEY=VALUE: {t}"))?;
        let key = key.trim().to_string();
        let value = value.trim();
        let value = if key.starts_with("Exec") {
            command_words(value)?
        } else {
            vec![specifiers(value)]
        };
        out.push(Entry {
            section: section.clone(),
            key,
            value,
        });
    }
    Ok(out)
}

/// `%%` is a `%`; any other `%x` is marked.
fn specifiers(v: &str) -> String {
    let mut s = String::new();
    let mut c = v.chars();
    while let Some(ch) = c.next() {
        if ch == '%' {
            match c.next() {
                Some('%') => s.push('%'),
                Some(x) => {
                    s.push(SPECIFIER);
                    s.push(x);
                }
                None => s.push(SPECIFIER),
            }
        } else {
            s.push(ch);
        }
    }
    s
}

/// The words of an `Exec*=` value.
fn command_words(v: &str) -> Result<Vec<String>, String> {
    let c: Vec<char> = v.chars().collect();
    let mut words = Vec::new();
    let mut i = 0;
    while i < c.len() {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        if i >= c.len() {
            break;
        }
        let mut w = String::new();
        let mut quote: Option<char> = None;
        while i < c.len() {
            let ch = c[i];
            match (quote, ch) {
                (None, x) if x.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(ch),
                (Some(q), x) if x == q => quote = None,
                (_, '\\') => {
                    i += 1;
                    let e = *c.get(i).ok_or("a `\\` at the end of a command line")?;
                    w.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        's' => ' ',
                        'a' => '\u{7}',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'v' => '\u{b}',
                        '\\' | '"' | '\'' => e,
                        other => return Err(format!("unknown escape \\{other}")),
                    });
                }
                (_, '%') => {
                    i += 1;
                    match c.get(i) {
                        Some('%') => w.push('%'),
                        Some(x) => {
                            w.push(SPECIFIER);
                            w.push(*x);
                        }
                        None => w.push(SPECIFIER),
                    }
                }
                (_, '$') => {
                    w.push(EXPANSION);
                    if c.get(i + 1) == Some(&'$') {
                        // `$$` is a literal `$`.
                        w.pop();
                        w.push('$');
                        i += 1;
                    }
                }
                (_, x) => w.push(x),
            }
            i += 1;
        }
        if quote.is_some() {
            return Err(format!("an unclosed quote in `{v}`"));
        }
        words.push(w);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_quotes_and_marks() {
        let u = "[Unit]\nDescription=a %n\n# c\n[Service]\nExecStart=/bin/x \\\n  --a=\"b c\" \\\n  $V %% \\\\s\n";
        let e = parse(u).unwrap();
        assert_eq!(e[0].value, [format!("a {SPECIFIER}n")]);
        assert_eq!(e[1].key, "ExecStart");
        assert_eq!(
            e[1].value,
            ["/bin/x", "--a=b c", &format!("{EXPANSION}V"), "%", "\\s"]
        );
    }
}
