//! The three names of each file in an ISO seed: the exact one (Rock Ridge), the Joliet one (cut
//! to 64 characters when longer) and the plain ISO 9660 level-1 one (8.3), each unique and
//! assigned in name order so the image does not depend on the order of the inputs.

use std::collections::HashSet;

use anyhow::{bail, ensure, Result};

use super::Entry;

/// Linux's NAME_MAX, and what two Rock Ridge NM entries hold.
const MAX_NAME: usize = 255;
/// Joliet's limit in UCS-2 characters.
const JOLIET_MAX: usize = 64;
/// The longest extension a shortened Joliet name keeps.
const JOLIET_MAX_EXT: usize = 16;
const MAX_VOLID: usize = 16;

pub(super) fn check_volume_id(v: &str) -> Result<()> {
    ensure!(
        !v.is_empty()
            && v.len() <= MAX_VOLID
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "volume id '{v}' must be 1..={MAX_VOLID} characters of A-Z, a-z, 0-9, '_' or '-' (Joliet holds 16)"
    );
    Ok(())
}

pub(super) fn check_name(name: &str) -> Result<()> {
    ensure!(!name.is_empty(), "ISO file name is empty");
    if let Some(c) = name
        .chars()
        .find(|c| !(' '..='~').contains(c) || "/\\:;*?".contains(*c))
    {
        bail!(
            "ISO file name {name:?} contains {c:?}; names are printable ASCII without / \\ : ; * ?"
        );
    }
    ensure!(
        name.len() <= MAX_NAME,
        "ISO file name '{name}' is {} characters; Rock Ridge (and Linux) allow at most {MAX_NAME}",
        name.len()
    );
    ensure!(
        name != "." && name != ".." && !name.ends_with('.') && !name.ends_with(' '),
        "ISO file name '{name}' is '.'/'..' or ends with '.' or ' ', which Joliet readers strip"
    );
    Ok(())
}

/// Level-1 (8.3) identifiers, unique, assigned in name order so results are deterministic.
pub(super) fn assign_iso_names(entries: &mut [Entry]) {
    let d_chars = |s: &str, max: usize| -> Vec<u8> {
        s.bytes()
            .map(|b| match b.to_ascii_uppercase() {
                c @ (b'A'..=b'Z' | b'0'..=b'9') => c,
                _ => b'_',
            })
            .take(max)
            .collect()
    };
    let ident = |base: &[u8], ext: &[u8]| [base, b".", ext, b";1"].concat();
    let mut used = HashSet::new();
    for e in entries.iter_mut() {
        let name = e.file.name.as_str();
        let (base, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (&name[..i], &name[i + 1..]),
            _ => (name, ""),
        };
        let (mut base, ext) = (d_chars(base, 8), d_chars(ext, 3));
        if base.is_empty() {
            base.push(b'_');
        }
        let mut id = ident(&base, &ext);
        let mut n = 1u32;
        while !used.insert(id.clone()) {
            let suffix = n.to_string();
            let keep = base.len().min(8 - suffix.len());
            id = ident(&[&base[..keep], suffix.as_bytes()].concat(), &ext);
            n += 1;
        }
        e.iso_name = id;
    }
}

/// Joliet names: the name itself up to 64 characters; a longer one cut to its start and its
/// extension, made unique (case aside) with `~N` in name order. Names that fit keep priority.
pub(super) fn assign_joliet_names(entries: &mut [Entry]) {
    let mut used: HashSet<String> = entries
        .iter()
        .filter(|e| e.file.name.len() <= JOLIET_MAX)
        .map(|e| e.file.name.to_ascii_lowercase())
        .collect();
    for e in entries.iter_mut() {
        let name = e.file.name.as_str();
        if name.len() <= JOLIET_MAX {
            e.joliet_name = name.to_string();
            continue;
        }
        let ext = match name.rfind('.') {
            Some(i)
                if i > 0
                    && name.len() - i <= JOLIET_MAX_EXT
                    && name[i + 1..]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                &name[i..]
            }
            _ => "",
        };
        let stem = &name[..name.len() - ext.len()];
        for n in 0u32.. {
            let suffix = if n == 0 {
                String::new()
            } else {
                format!("~{n}")
            };
            let keep = JOLIET_MAX - ext.len() - suffix.len();
            // A cut that ends in '.' or ' ' would be stripped by readers.
            let base = stem[..keep].trim_end_matches(['.', ' ']);
            let candidate = format!("{base}{suffix}{ext}");
            if used.insert(candidate.to_ascii_lowercase()) {
                e.joliet_name = candidate;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entry, file};
    use super::*;
    use crate::iso::IsoFile;

    /// The Joliet names of `names` (given in any order), in name order.
    fn joliet_names(names: &[String]) -> Vec<String> {
        let files: Vec<IsoFile> = names.iter().map(|n| file(n)).collect();
        let mut entries: Vec<Entry> = files.iter().map(entry).collect();
        entries.sort_by(|a, b| a.file.name.cmp(&b.file.name));
        assign_joliet_names(&mut entries);
        entries.into_iter().map(|e| e.joliet_name).collect()
    }

    #[test]
    fn level_1_names_are_unique_d_characters() {
        let names = [
            "user-data",
            "user_data",
            "User.Data",
            "a.b.c.tar.gz",
            ".profile",
            "x",
            "abcdefghij.klmno",
        ];
        let files: Vec<IsoFile> = names.iter().map(|n| file(n)).collect();
        let mut entries: Vec<Entry> = files.iter().map(|f| entry(f)).collect();
        entries.sort_by(|a, b| a.file.name.cmp(&b.file.name));
        assign_iso_names(&mut entries);
        let got: Vec<(&str, String)> = entries
            .iter()
            .map(|e| {
                (
                    e.file.name.as_str(),
                    String::from_utf8(e.iso_name.clone()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (".profile", "_PROFILE.;1".to_string()),
                ("User.Data", "USER.DAT;1".into()),
                ("a.b.c.tar.gz", "A_B_C_TA.GZ;1".into()),
                ("abcdefghij.klmno", "ABCDEFGH.KLM;1".into()),
                ("user-data", "USER_DAT.;1".into()),
                ("user_data", "USER_DA1.;1".into()),
                ("x", "X.;1".into()),
            ]
        );
    }

    #[test]
    fn long_names_are_cut_for_joliet_only_uniquely_and_keep_their_extension() {
        let p = format!("payload-{}-", "p".repeat(60));
        let names = vec![
            format!("{p}aaa.cpio.gz"),
            format!("{p}bbb.cpio.gz"),
            format!("{p}ccc.cpio.gz"),
            "x".repeat(64),
            "y".repeat(65),
            format!("{}.{}", "z".repeat(60), "e".repeat(20)),
        ];
        let got = joliet_names(&names);
        let cut = &p[..61];
        assert_eq!(
            got,
            [
                format!("{cut}.gz"),
                format!("{}~1.gz", &p[..59]),
                format!("{}~2.gz", &p[..59]),
                "x".repeat(64),
                "y".repeat(64),
                "z".repeat(60) + ".eee",
            ]
        );
        assert!(got.iter().all(|n| n.len() <= 64));
        // A short name keeps its own name even when a cut would produce it.
        let short = format!("{cut}.gz");
        let got = joliet_names(&[format!("{p}aaa.cpio.gz"), short.clone()]);
        assert_eq!(got, [short, format!("{}~1.gz", &p[..59])]);
        // A cut never ends in '.' or ' '.
        let got = joliet_names(&[format!("{}. {}", "d".repeat(62), "x".repeat(10))]);
        assert_eq!(got, ["d".repeat(62)]);
    }
}
