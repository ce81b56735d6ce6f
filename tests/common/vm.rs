//! Helpers shared by the first-boot tests (tests/vm_boot*.rs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

pub fn vm_dir() -> PathBuf {
    super::root().join("tests/vm")
}

/// Runs a helper script; its stderr (progress) goes to the test's stderr, its stdout is returned.
pub fn script(cmd: &mut Command) -> String {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({})", out.status);
    String::from_utf8(out.stdout).unwrap()
}

pub fn text<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn node_path(file: &Value) -> String {
    let p = file["path"].as_str().unwrap();
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// Builds (or takes from the cache) the guest for `arch` and returns its directory.
pub fn build_guest(arch: &str) -> PathBuf {
    let out = script(Command::new(vm_dir().join("build-guest.sh")).arg(arch));
    PathBuf::from(out.lines().last().expect("build-guest.sh printed no path"))
}
