//! The one-way data flow of ARCHITECTURE.md, enforced: a stage module may use the helpers and
//! the stages before it, never one after it.

use std::collections::BTreeSet;
use std::path::Path;

const HELPERS: &[&str] = &["digest", "fsutil"];
/// Pipeline order; `build` runs them all, `cli` sits on top.
const STAGES: &[&str] = &[
    "profile", "plan", "pki", "resolve", "stage", "payload", "seed", "iso", "build", "cli",
];

/// The text of every file of `module`: `src/<module>.rs`, or each `.rs` file under the module
/// folder `src/<module>/`.
fn texts(module: &str) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![fs_err::read_to_string(&file).unwrap()];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for e in fs_err::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(fs_err::read_to_string(&p).unwrap());
            }
        }
    }
    assert!(
        !out.is_empty(),
        "no src/{module}.rs and no src/{module}/*.rs"
    );
    out
}

/// The other crate modules `module` uses (`crate::<name>`).
fn uses(module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for text in texts(module) {
        // Only the module's own code: its #[cfg(test)] tests may use anything.
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn stages_only_use_earlier_stages() {
    let mut problems = Vec::new();
    for (i, module) in STAGES.iter().enumerate() {
        for used in uses(module) {
            let allowed = HELPERS.contains(&used.as_str()) || STAGES[..i].contains(&used.as_str());
            if !allowed {
                problems.push(format!("src/{module}.rs uses crate::{used}, a later stage"));
            }
        }
    }
    for helper in HELPERS {
        for used in uses(helper) {
            if !HELPERS.contains(&used.as_str()) {
                problems.push(format!("helper src/{helper}.rs uses crate::{used}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_is_placed() {
    let dir = format!("{}/src", env!("CARGO_MANIFEST_DIR"));
    for e in fs_err::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // A module is a file `src/<m>.rs` or a folder `src/<m>/`.
        let module = match name.strip_suffix(".rs") {
            Some(m) => m,
            None if e.path().is_dir() => name.as_str(),
            None => continue,
        };
        if ["lib", "main"].contains(&module) {
            continue;
        }
        assert!(
            STAGES.contains(&module) || HELPERS.contains(&module),
            "src/{name} is neither a stage nor a helper: add it to ARCHITECTURE.md and to this test"
        );
    }
}
