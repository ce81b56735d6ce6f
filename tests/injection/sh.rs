//! POSIX sh words, as the shell splits them before it runs anything: quotes removed, escapes
//! resolved, comments dropped. What the shell would expand is kept, marked: `$` that expands
//! becomes [`EXPANSION`] (a `$(...)` keeps its raw text after the mark), a backquote
//! [`BACKQUOTE`], an unquoted `*`, `?` or `[` [`GLOB`], a leading `~` [`TILDE`]. Operators
//! (`;`, `|`, `&`, `(`, `)`, `<`, `>`, and each line end) are tokens of their own, prefixed
//! by [`OP`]; a here-document's body is one token prefixed by [`HEREDOC`].
//!
//! Two scripts that differ only in a value the shell sees as literal text give the same words
//! up to that text; a value that escaped its quotes gives other words, or other marks.

pub const EXPANSION: char = '\u{E000}';
pub const BACKQUOTE: char = '\u{E001}';
pub const GLOB: char = '\u{E002}';
pub const TILDE: char = '\u{E003}';
pub const OP: char = '\u{E010}';
pub const HEREDOC: char = '\u{E011}';

struct Lexer {
    c: Vec<char>,
    i: usize,
    out: Vec<String>,
    word: String,
    in_word: bool,
    /// Here-documents whose bodies start after the current line: delimiter, quoted, `<<-`.
    pending: Vec<(String, bool, bool)>,
}

pub fn words(src: &str) -> Vec<String> {
    let mut l = Lexer {
        c: src.chars().collect(),
        i: 0,
        out: Vec::new(),
        word: String::new(),
        in_word: false,
        pending: Vec::new(),
    };
    l.run();
    l.out
}

impl Lexer {
    fn peek(&self, k: usize) -> Option<char> {
        self.c.get(self.i + k).copied()
    }

    fn flush(&mut self) {
        if self.in_word {
            self.out.push(std::mem::take(&mut self.word));
            self.in_word = false;
        }
    }

    fn op(&mut self, s: &str) {
        self.flush();
        self.out.push(format!("{OP}{s}"));
    }

    fn run(&mut self) {
        while let Some(ch) = self.peek(0) {
            match ch {
                ' ' | '\t' => {
                    self.flush();
                    self.i += 1;
                }
                '\n' => {
                    self.op("\n");
                    self.i += 1;
                    self.heredoc_bodies();
                }
                '#' if !self.in_word => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                '\\' => {
                    match self.peek(1) {
                        Some('\n') => {}
                        Some(c) => {
                            self.word.push(c);
                            self.in_word = true;
                        }
                        None => {
                            self.word.push('\\');
                            self.in_word = true;
                        }
                    }
                    self.i += 2;
                }
                '\'' => {
                    self.in_word = true;
                    self.i += 1;
                    while let Some(c) = self.peek(0) {
                        self.i += 1;
                        if c == '\'' {
                            break;
                        }
                        self.word.push(c);
                    }
                }
                '"' => {
                    self.in_word = true;
                    self.i += 1;
                    self.double_quoted();
                }
                '$' => {
                    self.in_word = true;
                    self.dollar();
                }
                '`' => {
                    self.in_word = true;
                    self.backquoted();
                }
                '<' if self.peek(1) == Some('<') => self.heredoc_start(),
                ';' | '&' | '|' | '(' | ')' | '<' | '>' => {
                    let two = self.peek(1).filter(|n| {
                        matches!((ch, n), (';', ';') | ('&', '&') | ('|', '|') | ('>', '>'))
                    });
                    match two {
                        Some(n) => {
                            self.op(&format!("{ch}{n}"));
                            self.i += 2;
                        }
                        None => {
                            self.op(&ch.to_string());
                            self.i += 1;
                        }
                    }
                }
                '*' | '?' | '[' => {
                    self.word.push(GLOB);
                    self.in_word = true;
                    self.i += 1;
                }
                '~' if !self.in_word => {
                    self.word.push(TILDE);
                    self.in_word = true;
                    self.i += 1;
                }
                c => {
                    self.word.push(c);
                    self.in_word = true;
                    self.i += 1;
                }
            }
        }
        self.flush();
    }

    /// After the opening quote, up to and past the closing one.
    fn double_quoted(&mut self) {
        while let Some(c) = self.peek(0) {
            match c {
                '"' => {
                    self.i += 1;
                    return;
                }
                '\\' => {
                    match self.peek(1) {
                        Some(n @ ('$' | '`' | '"' | '\\')) => self.word.push(n),
                        Some('\n') => {}
                        Some(n) => {
                            self.word.push('\\');
                            self.word.push(n);
                        }
                        None => self.word.push('\\'),
                    }
                    self.i += 2;
                }
                '$' => self.dollar(),
                '`' => self.backquoted(),
                c => {
                    self.word.push(c);
                    self.i += 1;
                }
            }
        }
    }

    /// At a `$`: an expansion (marked, with its raw text) or a literal `$`.
    fn dollar(&mut self) {
        let start = self.i;
        match self.peek(1) {
            Some('(') => {
                self.i = scan_balanced(&self.c, self.i + 1, '(', ')');
            }
            Some('{') => {
                self.i = scan_balanced(&self.c, self.i + 1, '{', '}');
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                self.i += 1;
                while self
                    .peek(0)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    self.i += 1;
                }
            }
            Some(c) if c.is_ascii_digit() || "?#@*!$-".contains(c) => self.i += 2,
            _ => {
                self.word.push('$');
                self.i += 1;
                return;
            }
        }
        self.word.push(EXPANSION);
        let raw: String = self.c[start + 1..self.i.min(self.c.len())].iter().collect();
        self.word.push_str(&raw);
    }

    fn backquoted(&mut self) {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek(0) {
            self.i += 1;
            match c {
                '\\' => self.i += 1,
                '`' => break,
                _ => {}
            }
        }
        self.word.push(BACKQUOTE);
        let raw: String = self.c[start + 1..self.i.min(self.c.len())].iter().collect();
        self.word.push_str(&raw);
    }

    /// `<<` or `<<-` and its delimiter word; the body is read at the next line end.
    fn heredoc_start(&mut self) {
        self.flush();
        self.i += 2;
        let strip = self.peek(0) == Some('-');
        if strip {
            self.i += 1;
        }
        self.op(if strip { "<<-" } else { "<<" });
        while self.peek(0).is_some_and(|c| c == ' ' || c == '\t') {
            self.i += 1;
        }
        let mut delim = String::new();
        let mut quoted = false;
        while let Some(c) = self.peek(0) {
            match c {
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')' => break,
                '\'' | '"' => {
                    quoted = true;
                    self.i += 1;
                    while let Some(q) = self.peek(0) {
                        self.i += 1;
                        if q == c {
                            break;
                        }
                        delim.push(q);
                    }
                }
                '\\' => {
                    quoted = true;
                    if let Some(n) = self.peek(1) {
                        delim.push(n);
                    }
                    self.i += 2;
                }
                c => {
                    delim.push(c);
                    self.i += 1;
                }
            }
        }
        self.out.push(delim.clone());
        self.pending.push((delim, quoted, strip));
    }

    /// The bodies of the pending here-documents, each one token up to its delimiter line.
    fn heredoc_bodies(&mut self) {
        for (delim, quoted, strip) in std::mem::take(&mut self.pending) {
            let mut body = String::new();
            loop {
                let mut line = String::new();
                while let Some(c) = self.peek(0) {
                    self.i += 1;
                    if c == '\n' {
                        break;
                    }
                    line.push(c);
                }
                let bare = if strip {
                    line.trim_start_matches('\t')
                } else {
                    &line
                };
                if bare == delim || self.peek(0).is_none() && line.is_empty() {
                    break;
                }
                body.push_str(bare);
                body.push('\n');
            }
            if !quoted {
                body = body
                    .replace('$', &EXPANSION.to_string())
                    .replace('`', &BACKQUOTE.to_string());
            }
            self.out.push(format!("{HEREDOC}{body}"));
        }
    }
}

/// From `open` at `i`, the index past its matching `close`, skipping quoted text and nested
/// substitutions.
fn scan_balanced(c: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0usize;
    while i < c.len() {
        match c[i] {
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            '\\' => i += 1,
            '\'' if open == '(' => {
                i += 1;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
            }
            '"' => i = scan_double_quoted(c, i + 1) - 1,
            _ => {}
        }
        i += 1;
    }
    c.len()
}

/// From just inside a `"`, the index past the closing one.
fn scan_double_quoted(c: &[char], mut i: usize) -> usize {
    while i < c.len() {
        match c[i] {
            '"' => return i + 1,
            '\\' => i += 2,
            '$' if c.get(i + 1) == Some(&'(') => i = scan_balanced(c, i + 1, '(', ')'),
            _ => i += 1,
        }
    }
    c.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        words(s)
    }

    #[test]
    fn quotes_and_marks() {
        assert_eq!(w("a 'b c' \"d\\\"e\""), ["a", "b c", "d\"e"]);
        assert_eq!(w("x'a'\\''b'"), ["xa'b"]);
        assert_eq!(w("'$(x)'"), ["$(x)"]);
        assert_eq!(w("\"$(x)\"")[0], format!("{EXPANSION}(x)"));
        assert_eq!(w("echo $(a \"$(b)\") c").len(), 3);
        assert_eq!(w("a # c\nb"), ["a", &format!("{OP}\n"), "b"]);
        assert_eq!(w("a#b"), ["a#b"]);
        assert_eq!(w("a;b")[1], format!("{OP};"));
    }

    #[test]
    fn heredocs() {
        let t = w("cat <<'E'\n$x `y`\nE\nnext");
        assert!(t.contains(&format!("{HEREDOC}$x `y`\n")), "{t:?}");
        assert_eq!(t.last().unwrap(), "next");
        let t = w("cat <<E\n$x\nE\n");
        assert!(t.contains(&format!("{HEREDOC}{EXPANSION}x\n")), "{t:?}");
    }
}
