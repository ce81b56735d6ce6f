//! Stage, through its public API: golden overlays (manifest and archive digest), what GNU cpio
//! and bsdtar read back, reuse by stamp, clean failures (nothing left behind) with the exact
//! error for each kind of bad archive or rule, and streaming of a large member.
//! The writers' own unit tests (newc layout, gzip members, path rules) sit beside them in
//! src/stage/.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use imagegen::digest::{hash_reader, sha256_bytes, Algo, Digest};
use imagegen::fsutil;
use imagegen::plan::{InstallRule, Source};
use imagegen::stage::{pack_cpio_gz, stage_role, Overlay, StageRequest};
use tempfile::TempDir;

#[path = "../common/mod.rs"]
mod common;
mod golden;
mod refusals;
mod reuse;
mod streaming;

use common::archive::TarGz;
use common::fs::files_under;

const MTIME: u64 = 1_700_000_000;

enum Node {
    Dir,
    File(Vec<u8>),
    Symlink(&'static str),
    Hardlink(&'static str),
}

/// Deterministic content that differs per label and length.
fn content(label: &str, len: usize) -> Vec<u8> {
    let mut data = format!("\x7fELF fake {label}\n").into_bytes();
    let seed = label
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
    data.extend(
        (0..len as u32).map(|i| (seed.wrapping_add(i.wrapping_mul(2_654_435_761)) >> 13) as u8),
    );
    data
}

/// Writes a .tar.gz with exactly these raw entry names, through the tests' one builder.
fn targz(path: &Path, entries: &[(&str, Node)]) {
    let mut archive = TarGz::create(path);
    for (name, node) in entries {
        archive = match node {
            Node::Dir => archive.dir(name),
            Node::File(data) => archive.file(name, data),
            Node::Symlink(target) => archive.symlink(name, target),
            Node::Hardlink(target) => archive.hardlink(name, target),
        };
    }
    archive.finish();
}

fn file(label: &str, len: usize) -> Node {
    Node::File(content(label, len))
}

struct Inputs {
    dir: TempDir,
    artifacts: BTreeMap<String, PathBuf>,
    digests: BTreeMap<String, Digest>,
}

impl Inputs {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        fs_err::create_dir(dir.path().join("cache")).unwrap();
        Inputs {
            dir,
            artifacts: BTreeMap::new(),
            digests: BTreeMap::new(),
        }
    }

    fn cache(&self, name: &str) -> PathBuf {
        self.dir.path().join("cache").join(name)
    }

    fn add(&mut self, component: &str, path: PathBuf) {
        let digest = hash_reader(Algo::Sha256, fs_err::File::open(&path).unwrap()).unwrap();
        self.artifacts.insert(component.to_string(), path);
        self.digests.insert(component.to_string(), digest);
    }

    fn add_targz(&mut self, component: &str, name: &str, entries: &[(&str, Node)]) -> PathBuf {
        let path = self.cache(name);
        targz(&path, entries);
        self.add(component, path.clone());
        path
    }

    fn overlay_root(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("out/arm64/overlay/{role}"))
    }

    fn archive(&self, role: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("out/arm64/overlay-{role}.cpio.gz"))
    }

    fn stage(&self, role: &str, rules: &[InstallRule], mtime: u64) -> Result<Overlay> {
        let overlay_root = self.overlay_root(role);
        let archive_path = self.archive(role);
        stage_role(&StageRequest {
            role,
            rules,
            artifacts: &self.artifacts,
            artifact_digests: &self.digests,
            artifact_names: &BTreeMap::new(),
            overlay_root: &overlay_root,
            archive_path: &archive_path,
            mtime,
        })
    }

    /// The error as printed, and proof that the failed run left nothing behind.
    fn fails_clean(&self, role: &str, rules: &[InstallRule]) -> String {
        let err = self.stage(role, rules, MTIME).unwrap_err();
        assert!(!self.overlay_root(role).exists());
        assert!(!self.archive(role).exists());
        assert!(!fsutil::stamp_path(&self.archive(role)).exists());
        // Parent directories may have been created, but nothing is left inside them.
        let out = self.dir.path().join("out/arm64");
        if out.exists() {
            let left: Vec<_> = fs_err::read_dir(&out)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(left, ["overlay"]);
            let left = fs_err::read_dir(out.join("overlay")).unwrap().count();
            assert_eq!(left, 0, "left behind in out/arm64/overlay");
        }
        format!("{err:#}")
    }
}

fn rule(component: &str, source: Source, dest: &str) -> InstallRule {
    InstallRule {
        component: component.to_string(),
        source,
        dest: dest.to_string(),
        mode: 0o755,
    }
}

fn member(path: &str) -> Source {
    Source::Member {
        path: path.to_string(),
    }
}

fn dir(path: &str) -> Source {
    Source::Dir {
        path: path.to_string(),
        required: Vec::new(),
    }
}

/// Artifacts laid out as upstream publishes them (names and entry spellings), small content.
fn upstream() -> Inputs {
    let mut inp = Inputs::new();
    inp.add_targz(
        "containerd",
        "containerd-1.7.20-linux-arm64.tar.gz",
        &[
            ("bin/", Node::Dir),
            ("bin/containerd-shim-runc-v2", file("shim", 3000)),
            ("bin/containerd", file("containerd", 5000)),
            ("bin/containerd-stress", file("stress", 2000)),
            ("bin/ctr", file("ctr", 4000)),
        ],
    );
    inp.add_targz(
        "crictl",
        "crictl-v1.31.1-linux-arm64.tar.gz",
        &[("crictl", file("crictl", 3500))],
    );
    inp.add_targz(
        "cni-plugins",
        "cni-plugins-linux-arm64-v1.5.1.tgz",
        &[
            ("./", Node::Dir),
            ("./bridge", file("bridge", 1500)),
            ("./host-local", file("host-local", 1200)),
            ("./loopback", file("loopback", 900)),
            ("./portmap", file("portmap", 1100)),
        ],
    );
    inp.add_targz(
        "kubernetes-node",
        "kubernetes-node-linux-arm64.tar.gz",
        &[
            ("kubernetes/", Node::Dir),
            ("kubernetes/node/", Node::Dir),
            ("kubernetes/node/bin/", Node::Dir),
            ("kubernetes/node/bin/kubeadm", file("kubeadm", 2500)),
            ("kubernetes/node/bin/kubelet", file("kubelet", 6000)),
            ("kubernetes/node/bin/kube-proxy", file("kube-proxy", 4500)),
        ],
    );
    inp.add_targz(
        "etcd",
        "etcd-v3.5.15-linux-arm64.tar.gz",
        &[
            ("etcd-v3.5.15-linux-arm64/", Node::Dir),
            ("etcd-v3.5.15-linux-arm64/README.md", file("readme", 300)),
            ("etcd-v3.5.15-linux-arm64/etcd", file("etcd", 5500)),
            ("etcd-v3.5.15-linux-arm64/etcdctl", file("etcdctl", 3300)),
            ("etcd-v3.5.15-linux-arm64/etcdutl", file("etcdutl", 3100)),
        ],
    );
    let runc = inp.cache("runc.arm64");
    fs_err::write(&runc, content("runc", 2800)).unwrap();
    inp.add("runc", runc);
    inp
}

fn worker_rules() -> Vec<InstallRule> {
    vec![
        rule("containerd", dir("bin"), "/bin"),
        rule("crictl", member("crictl"), "/usr/local/bin/crictl"),
        rule("cni-plugins", dir(""), "/opt/cni/bin"),
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        ),
        rule(
            "kubernetes-node",
            member("./kubernetes/node/bin/kube-proxy"),
            "/usr/local/bin/kube-proxy",
        ),
        rule("runc", Source::Whole, "/usr/local/bin/runc"),
    ]
}

fn control_rules() -> Vec<InstallRule> {
    let mut rules = worker_rules();
    for tool in ["etcd", "etcdctl"] {
        rules.push(rule(
            "etcd",
            member(&format!("etcd-v3.5.15-linux-arm64/{tool}")),
            &format!("/usr/local/bin/{tool}"),
        ));
    }
    rules
}

fn listing(overlay: &Overlay) -> String {
    overlay
        .entries
        .iter()
        .map(|e| {
            format!(
                "{:04o} {:>5} {} {}\n",
                e.mode,
                e.size,
                e.sha256.hex(),
                e.path
            )
        })
        .collect()
}

fn mode_string(mode: u32) -> String {
    let mut s = String::from("-");
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// The tree holds exactly the manifest's files, with its modes, sizes and digests.
fn check_tree(root: &Path, overlay: &Overlay) {
    let mut found: Vec<String> = files_under(root)
        .iter()
        .map(|p| format!("/{}", p.display()))
        .collect();
    found.sort();
    let listed: Vec<_> = overlay.entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(found, listed);
    for e in &overlay.entries {
        let p = root.join(&e.path[1..]);
        let meta = fs_err::metadata(&p).unwrap();
        assert_eq!(meta.mode() & 0o7777, e.mode, "{}", e.path);
        assert_eq!(meta.len(), e.size, "{}", e.path);
        let d = hash_reader(Algo::Sha256, fs_err::File::open(&p).unwrap()).unwrap();
        assert_eq!(d, e.sha256, "{}", e.path);
    }
}

fn run(script: &str, arg: &Path, cwd: &Path) -> String {
    let out = Command::new("sh")
        .args(["-ec", script, "sh"])
        .arg(arg)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `ls -l`-style listings by GNU cpio and bsdtar: (mode, owner, group, size, name).
fn parse_ls(text: &str) -> Vec<(String, String, String, u64, String)> {
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 9, "{l}");
            (
                f[0].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].parse().unwrap(),
                f[8].to_string(),
            )
        })
        .collect()
}

/// GNU cpio and bsdtar read the archive back as exactly the manifest: regular files only,
/// owned by 0:0 (root), in path order; and the gzip header carries neither a name nor a time.
fn check_readers(overlay: &Overlay) {
    let expected: Vec<_> = overlay
        .entries
        .iter()
        .map(|e| {
            (
                mode_string(e.mode),
                "0".to_string(),
                "0".to_string(),
                e.size,
                e.path[1..].to_string(),
            )
        })
        .collect();
    let here = Path::new("/");
    let cpio = run(
        "gzip -dc \"$1\" | cpio -itv --numeric-uid-gid --quiet",
        &overlay.archive,
        here,
    );
    assert_eq!(parse_ls(&cpio), expected);
    let bsdtar = run(
        "bsdtar -tv --numeric-owner -f \"$1\"",
        &overlay.archive,
        here,
    );
    assert_eq!(parse_ls(&bsdtar), expected);

    let bytes = fs_err::read(&overlay.archive).unwrap();
    let mode = fs_err::metadata(&overlay.archive).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o644);
    assert_eq!(bytes.len() as u64, overlay.archive_size);
    assert_eq!(sha256_bytes(&bytes), overlay.archive_sha256);
    assert_eq!(
        &bytes[..4],
        &[0x1f, 0x8b, 8, 0],
        "gzip header with no FNAME"
    );
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime 0");
}
