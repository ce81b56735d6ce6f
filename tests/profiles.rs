//! The bad-profile corpus: every `tests/profiles/bad/NAME.yaml` must fail `imagegen profile check`
//! with exactly the text in `NAME.expected` (each problem's key and reason, its file, line and
//! column, the source line with a caret under the value; the run has no colour), and write
//! nothing. Every good profile must pass. `profile check` takes several files and stdin.

mod common;

use common::fs::list_dir;
use common::{root, Test};

#[test]
fn every_bad_profile_fails_with_its_exact_error() {
    let dir = root().join("tests/profiles/bad");
    let cases: Vec<String> = list_dir(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert!(
        cases.len() >= 25,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let rel = format!("tests/profiles/bad/{case}");
        let expected_path = dir.join(case).with_extension("expected");
        let expected = fs_err::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{rel} has no .expected file"));
        // Run in the repository so the errors name the profile as given: `tests/profiles/...`.
        let out = Test::new()
            .current_dir(root())
            .args(["profile", "check", &rel])
            .run();
        if out.status().code() != Some(1) || out.stderr() != expected || !out.stdout().is_empty() {
            failures.push(format!(
                "{rel}: exit {:?}\n--- expected\n{expected}--- got\n{}{}",
                out.status().code(),
                out.stdout(),
                out.stderr()
            ));
        }
        // Every problem names the file (`--> FILE[:LINE:COLUMN]`), then comes the count.
        let problems = expected
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count()
            - 1;
        let places: Vec<&str> = expected
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("--> "))
            .collect();
        assert_eq!(places.len(), problems, "{rel}:\n{expected}");
        for place in places {
            assert!(place.starts_with(&rel), "{place}");
        }
        let last = expected.lines().last().unwrap_or_default();
        assert!(
            last.starts_with(&format!("error: {rel}: {problems} problem")),
            "{last}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_bad_profile_builds_nothing() {
    let t = Test::new();
    let out = t
        .clone()
        .args(["build", "--arch", "arm64", "--profile"])
        .arg(root().join("tests/profiles/bad/duplicate-node-name.yaml"))
        .args(["--out", "out"])
        .run()
        .code(1);
    insta::assert_snapshot!("bad-profile-build", out.snapshot());
    assert_eq!(list_dir(t.temp()), ["home"], "nothing written");
}

#[test]
fn good_profiles_pass() {
    let mut all = String::new();
    for p in [
        "profiles/kthw-1.31.yaml",
        "tests/profiles/good/cilium.yaml",
        "tests/profiles/good/static.yaml",
        "tests/profiles/good/twelve-workers.yaml",
    ] {
        let out = Test::new()
            .args(["profile", "check"])
            .arg(root().join(p))
            .run()
            .success();
        assert_eq!(out.stderr(), "", "{p}");
        all.push_str(&out.normalize(out.stdout()));
    }
    insta::assert_snapshot!("good-profiles-check", all);
}

#[test]
fn check_takes_several_files_and_stdin() {
    let good = root().join("profiles/kthw-1.31.yaml");
    let bad = root().join("tests/profiles/bad/bad-mac.yaml");
    let text = fs_err::read_to_string(root().join("tests/profiles/bad/unknown-role.yaml")).unwrap();
    // Each file is checked; one bad file makes the exit status 1.
    let out = Test::new()
        .args(["profile", "check"])
        .arg(&good)
        .arg(&bad)
        .arg("-")
        .arg("missing.yaml")
        .stdin(text)
        .run()
        .code(1);
    insta::assert_snapshot!("check-several-and-stdin", out.snapshot());
    // Good ones only: 0.
    let out = Test::new()
        .args(["profile", "check", "-"])
        .arg(&good)
        .stdin(fs_err::read(&good).unwrap())
        .run()
        .success();
    assert_eq!(
        out.normalize(out.stdout()),
        "<stdin>: ok (7 nodes, 8 components)\n[ROOT]/profiles/kthw-1.31.yaml: ok (7 nodes, 8 components)\n"
    );
    // No file at all is a usage error.
    Test::new().args(["profile", "check"]).run().code(2);
}

#[test]
fn builtin_profile_is_the_shipped_file() {
    let out = Test::new().args(["profile", "show"]).run().success();
    let file = fs_err::read_to_string(root().join("profiles/kthw-1.31.yaml")).unwrap();
    assert_eq!(out.stdout(), file);
}
