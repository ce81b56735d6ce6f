//! AppleScript tokens: comments (`--` and `#` to the end of the line, `(* *)` nested) dropped,
//! string literals decoded (`\"`, `\\`, `\n`, `\t`, `\r`) into one token marked [`STRING`],
//! punctuation and line ends as tokens marked [`OP`], `¬` joining a line to the next. A value
//! that escaped its string literal gives other tokens.

pub const STRING: char = '\u{E030}';
pub const OP: char = '\u{E031}';

pub fn tokens(src: &str) -> Result<Vec<String>, String> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while i < c.len() {
        match c[i] {
            '-' if c.get(i + 1) == Some(&'-') => {
                flush(&mut word, &mut out);
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '#' => {
                flush(&mut word, &mut out);
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '(' if c.get(i + 1) == Some(&'*') => {
                flush(&mut word, &mut out);
                let mut depth = 0;
                while i < c.len() {
                    if c[i] == '(' && c.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 2;
                    } else if c[i] == '*' && c.get(i + 1) == Some(&')') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            '¬' => {
                flush(&mut word, &mut out);
                i += 1;
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                flush(&mut word, &mut out);
                let mut s = String::from(STRING);
                i += 1;
                loop {
                    let ch = *c.get(i).ok_or("an unclosed string literal")?;
                    i += 1;
                    match ch {
                        '"' => break,
                        '\\' => {
                            let e = *c.get(i).ok_or("a `\\` at the end")?;
                            i += 1;
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                'r' => '\r',
                                '"' | '\\' => e,
                                other => return Err(format!("unknown escape \\{other}")),
                            });
                        }
                        x => s.push(x),
                    }
                }
                out.push(s);
            }
            ch if ch.is_whitespace() && ch != '\n' => {
                flush(&mut word, &mut out);
                i += 1;
            }
            ch @ ('\n' | '(' | ')' | '{' | '}' | ',' | '&' | ':') => {
                flush(&mut word, &mut out);
                out.push(format!("{OP}{ch}"));
                i += 1;
            }
            ch => {
                word.push(ch);
                i += 1;
            }
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_comments() {
        let t = tokens("-- x \"\nset a to \"b\\\"c\" & d -- e\n").unwrap();
        assert_eq!(
            t,
            [
                format!("{OP}\n"),
                "set".into(),
                "a".into(),
                "to".into(),
                format!("{STRING}b\"c"),
                format!("{OP}&"),
                "d".into(),
                format!("{OP}\n"),
            ]
        );
    }
}
