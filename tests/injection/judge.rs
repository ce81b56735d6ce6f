//! The outside judges: PyYAML (what cloud-init reads user-data with), one long-lived python3
//! per test thread fed a batch of documents per request, and `sh -n` over a batch of scripts in
//! one `sh`. A text judged once is not judged again (most outputs repeat from case to case).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

// cloud-init reads user-data, meta-data and network-config with a subclass of PyYAML's
// SafeLoader (pure Python); the other YAML files are read by Go programs, and libyaml's loader
// (CSafeLoader, when PyYAML has it) reads them the same, twenty times faster.
const PY: &str = r#"
import sys, json, yaml
fast = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
for line in sys.stdin:
    out = []
    for (doc, cloud_init) in json.loads(line):
        try:
            docs = list(yaml.load_all(doc, Loader=yaml.SafeLoader if cloud_init else fast))
            out.append({"ok": docs[0] if len(docs) == 1 else {"<documents>": docs}})
        except Exception as e:
            out.append({"err": str(e).replace("\n", " ")})
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
"#;

struct PyYaml {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Drop for PyYaml {
    /// python3 ends when its input does; waited for, so nothing outlives the test thread.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

type Parsed = Result<serde_json::Value, String>;

thread_local! {
    static PYYAML: RefCell<Option<PyYaml>> = const { RefCell::new(None) };
    static YAML_SEEN: RefCell<HashMap<Vec<u8>, Parsed>> = RefCell::new(HashMap::new());
    static SH_PASSED: RefCell<HashSet<Vec<u8>>> = RefCell::new(HashSet::new());
}

fn key(text: &str, flag: bool) -> Vec<u8> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update([u8::from(flag)]);
    h.update(text.as_bytes());
    h.finalize().to_vec()
}

/// Each text as PyYAML reads it (with cloud-init's loader when its flag says so), as JSON (a
/// text of several documents as `{"<documents>": [...]}`), or PyYAML's error.
pub fn pyyaml(docs: &[(&str, bool)]) -> Vec<Parsed> {
    let keys: Vec<Vec<u8>> = docs.iter().map(|(t, f)| key(t, *f)).collect();
    let mut known: Vec<Option<Parsed>> =
        YAML_SEEN.with(|s| keys.iter().map(|k| s.borrow().get(k).cloned()).collect());
    let todo: Vec<(&str, bool)> = docs
        .iter()
        .zip(&known)
        .filter(|(_, k)| k.is_none())
        .map(|(d, _)| *d)
        .collect();
    let mut fresh = parse_now(&todo).into_iter();
    YAML_SEEN.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() > 4000 {
            s.clear();
        }
        for (k, slot) in keys.into_iter().zip(known.iter_mut()) {
            if slot.is_none() {
                let p = fresh.next().unwrap();
                s.insert(k, p.clone());
                *slot = Some(p);
            }
        }
    });
    known.into_iter().map(Option::unwrap).collect()
}

fn parse_now(docs: &[(&str, bool)]) -> Vec<Parsed> {
    if docs.is_empty() {
        return Vec::new();
    }
    PYYAML.with(|cell| {
        let mut cell = cell.borrow_mut();
        let py = cell.get_or_insert_with(|| {
            let mut child = Command::new("python3")
                .args(["-c", PY])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("python3 is needed (with PyYAML: pip install pyyaml)");
            PyYaml {
                stdin: child.stdin.take(),
                stdout: BufReader::new(child.stdout.take().unwrap()),
                child,
            }
        });
        let mut line = serde_json::to_string(docs).unwrap();
        line.push('\n');
        let stdin = py.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        py.stdout.read_line(&mut reply).unwrap();
        let parsed: Vec<serde_json::Value> = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("python3 replied {reply:?}: {e}"));
        assert_eq!(parsed.len(), docs.len());
        parsed
            .into_iter()
            .map(|mut r| match r.get_mut("ok") {
                Some(v) => Ok(v.take()),
                None => Err(r["err"].as_str().unwrap_or("?").to_string()),
            })
            .collect()
    })
}

/// `sh -n` of each script: the names of those it refuses, with its complaint.
pub fn sh_n(dir: &Path, scripts: &[(String, &str)]) -> Vec<String> {
    let todo: Vec<&(String, &str)> = SH_PASSED.with(|s| {
        let s = s.borrow();
        scripts
            .iter()
            .filter(|(_, t)| !s.contains(&key(t, false)))
            .collect()
    });
    let refused = sh_n_now(dir, &todo);
    SH_PASSED.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() > 4000 {
            s.clear();
        }
        for (name, text) in &todo {
            if !refused.iter().any(|r| r.starts_with(&format!("{name}: "))) {
                s.insert(key(text, false));
            }
        }
    });
    refused
}

fn sh_n_now(dir: &Path, scripts: &[&(String, &str)]) -> Vec<String> {
    if scripts.is_empty() {
        return Vec::new();
    }
    let mut paths = Vec::new();
    for (i, (_, text)) in scripts.iter().enumerate() {
        let p = dir.join(format!("script-{i}.sh"));
        fs_err::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            r#"for f do if ! err=$(sh -n "$f" 2>&1); then printf 'FAILED %s %s\n' "$f" "$(printf %s "$err" | tr '\n' ' ')"; fi; done"#,
        )
        .arg("sh")
        .args(&paths)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("FAILED ")?;
            let i = paths
                .iter()
                .position(|p| p.to_str().is_some_and(|p| rest.starts_with(p)))?;
            Some(format!("{}: {rest}", scripts[i].0))
        })
        .collect()
}
