//! YAML 1.1 traps: cloud-init reads user-data with PyYAML, which turns `on`/`no` into booleans,
//! `0600` into an octal int, `1e3` into a float and `12:30` into a sexagesimal int unless they
//! are quoted. imagegen writes YAML with serde-saphyr; these tests read it back with PyYAML.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{root, ssh_key_fixture, Test};
use proptest::prelude::*;

/// Parses YAML with PyYAML's safe_load and returns it as JSON text.
fn pyyaml_to_json(yaml: &str) -> serde_json::Value {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin.read()), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed (with PyYAML: pip install pyyaml)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const TRAPS: &[&str] = &[
    "on",
    "off",
    "yes",
    "no",
    "y",
    "n",
    "true",
    "False",
    "~",
    "null",
    "0600",
    "0o600",
    "1e3",
    "1_000",
    "12:30",
    "0x1F",
    ".inf",
    "-.nan",
    "2001-12-14",
    "=",
    "<<",
    "- item",
    "a: b",
    "#comment",
    "'quoted'",
    "\"dq\"",
    "trailing ",
    " leading",
    "multi\nline\n",
    "tab\there",
    "",
];

#[test]
fn trap_values_survive_pyyaml() {
    let long_key = format!("ssh-ed25519 {} user@host", "A".repeat(600));
    let mut values: Vec<String> = TRAPS.iter().map(|s| s.to_string()).collect();
    values.push(long_key);
    let yaml = serde_saphyr::to_string(&values).unwrap();
    let back = pyyaml_to_json(&yaml);
    assert_eq!(back, serde_json::json!(values), "YAML was:\n{yaml}");
}

#[test]
fn trap_host_names_survive_in_real_user_data() {
    // Valid host names that PyYAML would read as booleans or numbers if left plain.
    let profile = fs_err::read_to_string(root().join("profiles/kthw-1.31.yaml"))
        .unwrap()
        .replace("name: worker0, ", "name: on,      ")
        .replace("name: worker1, ", "name: no,      ")
        .replace("name: worker2, ", "name: 1e3,     ")
        .replace("name: control2,", "name: 0600,    ");
    let t = Test::new();
    fs_err::write(t.temp().join("traps.yaml"), profile).unwrap();
    t.clone()
        .args(["build", "--arch", "arm64", "--payload", "fetch"])
        .args(["--profile", "traps.yaml", "--out", "out", "--ssh-key"])
        .arg(ssh_key_fixture())
        .run()
        .success();
    let out = t.temp().join("out");
    let key = fs_err::read_to_string(ssh_key_fixture()).unwrap();
    for name in ["on", "no", "1e3", "0600"] {
        let ud = fs_err::read_to_string(out.join("arm64").join(name).join("user-data")).unwrap();
        let v = pyyaml_to_json(&ud);
        assert_eq!(
            v["hostname"],
            serde_json::json!(name),
            "user-data of {name}"
        );
        let md = fs_err::read_to_string(out.join("arm64").join(name).join("meta-data")).unwrap();
        assert_eq!(
            pyyaml_to_json(&md)["local-hostname"],
            serde_json::json!(name)
        );
        for f in v["write_files"].as_array().unwrap() {
            assert!(f["permissions"].is_string(), "{f}");
        }
        assert_eq!(v["ssh_authorized_keys"][0], serde_json::json!(key.trim()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]
    // Each case is a batch of 64 strings so PyYAML starts once per case.
    #[test]
    fn random_strings_survive_pyyaml(values in proptest::collection::vec("[a-zA-Z0-9 :#'\"\\-_.~<>=,\\[\\]{}!&*|%@`\n\t]{0,12}", 64)) {
        let yaml = serde_saphyr::to_string(&values).unwrap();
        let back = pyyaml_to_json(&yaml);
        prop_assert_eq!(back, serde_json::json!(values), "YAML was:\n{}", yaml);
    }
}
