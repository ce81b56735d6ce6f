//! The one-way data flow of ARCHITECTURE.md, enforced: a stage module may use the helpers and
//! the stages before it, never one after it.

use std::collections::BTreeSet;

const HELPERS: &[&str] = &["digest", "fsutil"];
/// Pipeline order; `build` runs them all, `cli` sits on top.
const STAGES: &[&str] = &[
    "profile", "plan", "pki", "resolve", "stage", "payload", "seed", "iso", "build", "cli",
];

fn uses(module: &str) -> BTreeSet<String> {
    let path = format!("{}/src/{module}.rs", env!("CARGO_MANIFEST_DIR"));
    let text = fs_err::read_to_string(&path).unwrap();
    // Only the module's own code: its #[cfg(test)] tests may use anything.
    let code = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or(&text);
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let name: String = code[i + 7..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "test_http" {
            out.insert(name);
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
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some(module) = name.strip_suffix(".rs") else {
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
