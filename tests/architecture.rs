//! The one-way data flow of ARCHITECTURE.md, enforced: a stage module may use the helpers and
//! the stages before it, never one after it.

use std::collections::BTreeSet;

const HELPERS: &[&str] = &["digest", "fsutil"];
/// Pipeline order; `build` runs them all, `cli` sits on top.
const STAGES: &[&str] = &[
    "profile", "plan", "pki", "resolve", "stage", "payload", "seed", "iso", "build", "cli",
];

/// The source files of a module: `src/<module>.rs`, or every `.rs` file of `src/<module>/`.
fn sources(module: &str) -> Vec<String> {
    let src = format!("{}/src", env!("CARGO_MANIFEST_DIR"));
    let file = format!("{src}/{module}.rs");
    if std::path::Path::new(&file).is_file() {
        return vec![file];
    }
    let dir = format!("{src}/{module}");
    let mut files: Vec<String> = fs_err::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| p.ends_with(".rs"))
        .collect();
    files.sort();
    files
}

fn uses(module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for path in sources(module) {
        let text = fs_err::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
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
            if !name.is_empty() && name != "test_http" {
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
                problems.push(format!("src/{module} uses crate::{used}, a later stage"));
            }
        }
    }
    for helper in HELPERS {
        for used in uses(helper) {
            if !HELPERS.contains(&used.as_str()) {
                problems.push(format!("helper src/{helper} uses crate::{used}"));
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
        // A module is `src/<name>.rs` or a folder `src/<name>/`.
        let module = if e.path().is_dir() {
            name.as_str()
        } else if let Some(module) = name.strip_suffix(".rs") {
            module
        } else {
            continue;
        };
        if ["lib", "main", "test_http"].contains(&module) {
            continue;
        }
        assert!(
            STAGES.contains(&module) || HELPERS.contains(&module),
            "src/{name} is neither a stage nor a helper: add it to ARCHITECTURE.md and to this test"
        );
    }
}
