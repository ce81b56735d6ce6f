//! The one-way data flow of ARCHITECTURE.md, enforced: a stage module may use the helpers and
//! the stages before it, never one after it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const HELPERS: &[&str] = &["digest", "fsutil"];
/// Pipeline order; `build` runs them all, `cli` sits on top.
const STAGES: &[&str] = &[
    "profile", "plan", "pki", "resolve", "pin", "stage", "payload", "seed", "nocloud", "iso",
    "vfat", "host", "launch", "build", "cli",
];

/// The source files of a module: `src/<module>.rs`, or every `.rs` file under `src/<module>/`
/// (a module folder), sorted.
fn module_files(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let dir = src.join(module);
    assert!(
        dir.is_dir(),
        "neither src/{module}.rs nor src/{module}/ exists"
    );
    let mut out = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The `crate::` modules a module's own code uses (its `#[cfg(test)] mod tests` may use anything).
fn uses(module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for path in module_files(module) {
        // An out-of-line test module is test code too.
        if path.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        let text = fs_err::read_to_string(&path).unwrap();
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
            // A module folder's files name their siblings through `crate::<module>::`.
            let allowed = used == *module
                || HELPERS.contains(&used.as_str())
                || STAGES[..i].contains(&used.as_str());
            if !allowed {
                problems.push(format!("src/{module} uses crate::{used}, a later stage"));
            }
        }
    }
    for helper in HELPERS {
        for used in uses(helper) {
            if used != *helper && !HELPERS.contains(&used.as_str()) {
                problems.push(format!("helper src/{helper} uses crate::{used}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_module_is_placed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for e in fs_err::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        // A module is a file `src/<m>.rs` or a folder `src/<m>/` (with its mod.rs).
        let module = if e.path().is_dir() {
            name.clone()
        } else if let Some(m) = name.strip_suffix(".rs") {
            m.to_string()
        } else {
            continue;
        };
        if ["lib", "main", "test_http"].contains(&module.as_str()) {
            continue;
        }
        assert!(
            STAGES.contains(&module.as_str()) || HELPERS.contains(&module.as_str()),
            "src/{name} is neither a stage nor a helper: add it to ARCHITECTURE.md and to this test"
        );
    }
}

/// Every file a user names, and every file imagegen reads back, is opened through the
/// filesystem kit (`fsutil::open_regular`, `read_to_string`, `read`): a plain open of a FIFO or
/// a device would hang or read forever. Outside the kit, production code never opens a file
/// for reading by itself.
#[test]
fn files_are_read_through_the_kit() {
    const RAW_READS: &[&str] = &[
        "fs_err::read_to_string(",
        "fs_err::read(",
        "fs_err::File::open(",
        "std::fs::read_to_string(",
        "std::fs::read(",
        "std::fs::File::open(",
        "File::open(",
    ];
    let mut problems = Vec::new();
    for module in STAGES.iter().chain(HELPERS).filter(|m| **m != "fsutil") {
        for path in module_files(module) {
            if path.file_stem().is_some_and(|s| s == "tests") {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\n").next().unwrap_or(&text);
            for (n, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                if let Some(raw) = RAW_READS.iter().find(|r| line.contains(*r)) {
                    problems.push(format!(
                        "{}:{}: `{raw}`: read through fsutil (open_regular, read_to_string, read)",
                        path.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
