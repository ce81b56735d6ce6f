//! Lines imagegen keeps in files that others own too (`/etc/hosts`, Homebrew's
//! `dnsmasq.conf`): between a `# imagegen:begin <profile>` and a `# imagegen:end` line, so a
//! later run replaces exactly them and `--undo` removes exactly them. Pure text in, text out.

pub(super) const BEGIN: &str = "# imagegen:begin";
pub(super) const END: &str = "# imagegen:end";

/// `body` (lines ending in `\n`) between the markers, the begin marker naming `profile`.
pub(super) fn wrap(profile: &str, body: &str) -> String {
    format!("{BEGIN} {profile}\n{body}{END}\n")
}

/// Where the block is: the line numbers of its markers. `Err` names a begin marker without
/// an end (a file edited by hand), which no run should guess about.
fn find(text: &str) -> Result<Option<(usize, usize)>, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is = |l: &str, marker: &str| {
        let l = l.trim_end();
        l == marker || l.starts_with(&format!("{marker} "))
    };
    let Some(begin) = lines.iter().position(|l| is(l, BEGIN)) else {
        return Ok(None);
    };
    match lines[begin..].iter().position(|l| is(l, END)) {
        Some(n) => Ok(Some((begin, begin + n))),
        None => Err(format!(
            "line {} has `{BEGIN}` but no `{END}` follows; remove the partial block by hand",
            begin + 1
        )),
    }
}

/// `text` with its block replaced by `block` where it stands, or `block` appended.
pub(super) fn put(text: &str, block: &str) -> Result<String, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match find(text)? {
        Some((b, e)) => Ok(format!(
            "{}{block}{}",
            lines[..b].concat(),
            lines[e + 1..].concat()
        )),
        None if text.is_empty() || text.ends_with('\n') => Ok(format!("{text}{block}")),
        None => Ok(format!("{text}\n{block}")),
    }
}

/// `text` without its block; `None` when it has none.
pub(super) fn remove(text: &str) -> Result<Option<String>, String> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    Ok(find(text)?.map(|(b, e)| format!("{}{}", lines[..b].concat(), lines[e + 1..].concat())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_appends_then_replaces_in_place_and_remove_restores() {
        let hosts = "127.0.0.1 localhost\n::1 localhost\n";
        let one = wrap("p", "192.168.1.1 vmhost\n");
        let with = put(hosts, &one).unwrap();
        assert_eq!(with, format!("{hosts}{one}"));
        assert_eq!(put(&with, &one).unwrap(), with, "idempotent");

        let edited = format!("{with}10.0.0.1 later\n");
        let two = wrap("p", "192.168.1.2 vmhost\n");
        let replaced = put(&edited, &two).unwrap();
        assert_eq!(replaced, format!("{hosts}{two}10.0.0.1 later\n"));
        assert_eq!(
            remove(&replaced).unwrap().unwrap(),
            format!("{hosts}10.0.0.1 later\n")
        );
        assert_eq!(remove(hosts).unwrap(), None);
    }

    #[test]
    fn a_file_without_a_final_newline_and_an_empty_one() {
        assert_eq!(
            put("a", &wrap("p", "b\n")).unwrap(),
            "a\n# imagegen:begin p\nb\n# imagegen:end\n"
        );
        assert_eq!(
            put("", &wrap("p", "")).unwrap(),
            "# imagegen:begin p\n# imagegen:end\n"
        );
    }

    #[test]
    fn another_profile_block_is_replaced_and_a_broken_one_refused() {
        let old = format!("x\n{}", wrap("old-profile", "1\n"));
        assert_eq!(
            put(&old, &wrap("new", "2\n")).unwrap(),
            format!("x\n{}", wrap("new", "2\n"))
        );
        let broken = "x\n# imagegen:begin p\ny\n";
        let e = put(broken, &wrap("p", "")).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        assert!(remove(broken).is_err());
        // A marker-like comment of someone else is not ours.
        assert_eq!(remove("# imagegen:beginning\n").unwrap(), None);
    }
}
