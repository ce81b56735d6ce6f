//! `imagegen plan`'s two forms as interfaces: the JSON has a `schema_version`, one spelling for
//! modes ("0755") and digests ("sha256:..."), and validates against its published schema
//! (docs/plan.schema.json, which must be what the binary prints); the text uses the profile's
//! words, never Rust's.

mod common;

use common::{root, Test};
use serde_json::Value;

const PROFILES: &[&str] = &[
    "profiles/kthw-1.31.yaml",
    "tests/profiles/good/cilium.yaml",
    "tests/profiles/good/static.yaml",
    "tests/profiles/good/twelve-workers.yaml",
];

fn plan_json(profile: &str, arch: &str) -> Value {
    let out = Test::new()
        .args(["plan", "--json", "--arch", arch, "--profile"])
        .arg(root().join(profile))
        .run()
        .success();
    serde_json::from_str(out.stdout()).unwrap()
}

#[test]
fn the_published_schema_is_the_binarys() {
    let out = Test::new().args(["plan", "--json-schema"]).run().success();
    let published = fs_err::read_to_string(root().join("docs/plan.schema.json")).unwrap();
    assert!(
        out.stdout() == published,
        "docs/plan.schema.json is stale: regenerate it with\n  cargo run -- plan --json-schema > docs/plan.schema.json"
    );
}

#[test]
fn real_plans_validate_against_the_schema() {
    let schema: Value = serde_json::from_str(
        &fs_err::read_to_string(root().join("docs/plan.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    for profile in PROFILES {
        for arch in ["amd64", "arm64"] {
            // The twelve-worker profile pins amd64 only.
            if profile.contains("twelve") && arch == "arm64" {
                continue;
            }
            let plan = plan_json(profile, arch);
            let errors: Vec<String> = validator
                .iter_errors(&plan)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{profile} {arch}:\n{}",
                errors.join("\n")
            );
        }
    }
    // The schema is not a formality: a mode as a number, a bare digest or another version fail.
    let mut plan = plan_json(PROFILES[0], "amd64");
    plan["roles"][1]["installs"][0]["mode"] = Value::from(493);
    plan["artifacts"][0]["digest"] = Value::from("cf80cd305f7d");
    plan["schema_version"] = Value::from(2);
    assert_eq!(validator.iter_errors(&plan).count(), 3);
}

/// Every value of `key` anywhere in `v`.
fn all_of<'a>(v: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == key {
                    found.push(x);
                }
                all_of(x, key, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| all_of(x, key, found)),
        _ => {}
    }
}

#[test]
fn modes_and_digests_have_one_spelling() {
    let plan = plan_json(PROFILES[0], "arm64");
    assert_eq!(plan["schema_version"], 1);
    let mut modes = Vec::new();
    all_of(&plan, "mode", &mut modes);
    assert!(modes.len() > 20, "{}", modes.len());
    for m in &modes {
        let m = m
            .as_str()
            .unwrap_or_else(|| panic!("mode {m} is not a string"));
        assert!(m.len() == 4 && m.starts_with('0'), "{m}");
    }
    assert!(modes.contains(&&Value::from("0755")) && modes.contains(&&Value::from("0600")));
    let mut digests = Vec::new();
    all_of(&plan, "digest", &mut digests);
    assert!(digests.len() >= 8);
    for d in digests {
        let d = d.as_str().unwrap();
        assert!(d.starts_with("sha256:") || d.starts_with("sha512:"), "{d}");
    }
}

#[test]
fn the_text_uses_the_profiles_words() {
    let text = |profile: &str| {
        Test::new()
            .args(["plan", "--arch", "amd64", "--profile"])
            .arg(root().join(profile))
            .run()
            .success()
            .stdout()
            .to_string()
    };
    let default = text(PROFILES[0]);
    assert!(
        default.contains("(dhcp, domain kubenet), CNI bridge"),
        "{default}"
    );
    let cilium = text(PROFILES[1]);
    assert!(cilium.contains("CNI cilium"), "{cilium}");
    let stat = text(PROFILES[2]);
    assert!(stat.contains("(static, domain"), "{stat}");
    for t in [&default, &cilium, &stat] {
        for debug in [
            "Dhcp", "Static", "Bridge", "Cilium", "Gateway", "Control", "Worker", "NoBlock",
        ] {
            assert!(!t.contains(debug), "Rust's `{debug}` in:\n{t}");
        }
        for role in ["role gateway", "role control", "role worker"] {
            assert!(t.contains(role), "{t}");
        }
    }
}

#[test]
fn a_closed_pipe_ends_plan_json_with_success() {
    // `imagegen plan --json | head -1`: the reader has what it wanted.
    let out = Test::new()
        .wrap(["bash", "-c", "set -o pipefail; \"$0\" \"$@\" | head -1"])
        .args(["plan", "--json"])
        .run()
        .success();
    assert_eq!(out.stdout(), "{\n");
    assert_eq!(out.stderr(), "");
}
