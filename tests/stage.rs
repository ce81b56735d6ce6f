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

mod common;
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

#[test]
fn worker_overlay_golden() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    assert!(!overlay.reused);
    assert_eq!(overlay.archive, inp.archive("worker"));
    insta::assert_snapshot!(listing(&overlay), @r#"
    0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
    0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
    0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
    0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
    0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
    0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
    0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
    0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
    0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
    0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
    0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
    0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
    "#);
    insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:d345db859ab125ca53eecea509be54cdb5221c4001959b2e695a44db25a31817"#);
    check_tree(&inp.overlay_root("worker"), &overlay);
    check_readers(&overlay);
}

#[test]
fn control_overlay_golden() {
    let inp = upstream();
    let overlay = inp.stage("control", &control_rules(), MTIME).unwrap();
    insta::assert_snapshot!(listing(&overlay), @r#"
    0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
    0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
    0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
    0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
    0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
    0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
    0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
    0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
    0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
    0755  5515 c37f7adcf0ef5c0229ecf51b3969fad8e62c7e47e94d0680e9fef148e7c097d0 /usr/local/bin/etcd
    0755  3318 c9701df9a8c47808e47eff2918d05f1859e6aee4e21fa00212c6373d84e7eb7e /usr/local/bin/etcdctl
    0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
    0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
    0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
    "#);
    insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:ed63e6a3469369b262c53476d2d3a3feba253f46f09cf8412265193066293e6c"#);
    check_tree(&inp.overlay_root("control"), &overlay);
    check_readers(&overlay);
}

#[test]
fn gnu_cpio_keeps_merged_usr_symlinks() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    let node = TempDir::new().unwrap();
    let root = node.path();
    fs_err::create_dir_all(root.join("usr/bin")).unwrap();
    fs_err::write(root.join("usr/bin/sh"), "#!shell").unwrap();
    fs_err::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    run(
        "gzip -dc \"$1\" | cpio -idmu --quiet",
        &overlay.archive,
        root,
    );

    assert!(fs_err::symlink_metadata(root.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(root.join("usr/bin/sh").is_file());
    let containerd = fs_err::symlink_metadata(root.join("usr/bin/containerd")).unwrap();
    assert!(containerd.is_file());
    assert_eq!(containerd.mode() & 0o7777, 0o755);
    assert_eq!(containerd.mtime() as u64, MTIME);
    assert_eq!((containerd.uid(), containerd.gid()), (0, 0));
    for path in [
        "usr/local/bin/kubelet",
        "opt/cni/bin/bridge",
        "usr/local/bin/runc",
    ] {
        assert!(root.join(path).is_file(), "{path}");
    }

    // The premise, shown with GNU cpio's own writer: a `bin` directory entry does replace the
    // symlink, so the check above would catch an archive with directory entries.
    let other = TempDir::new().unwrap();
    fs_err::create_dir_all(other.path().join("usr/bin")).unwrap();
    fs_err::os::unix::fs::symlink("usr/bin", other.path().join("bin")).unwrap();
    let with_dirs = node.path().join("with-dirs.cpio");
    let out = Command::new("sh")
        .args([
            "-ec",
            "cd \"$1\" && printf 'bin\\nbin/containerd\\n' | cpio -o -H newc --quiet > \"$2\"",
        ])
        .arg("sh")
        .arg(inp.overlay_root("worker"))
        .arg(&with_dirs)
        .status()
        .unwrap();
    assert!(out.success());
    run("cpio -idmu --quiet < \"$1\"", &with_dirs, other.path());
    assert!(!fs_err::symlink_metadata(other.path().join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn packing_is_deterministic_and_mtime_matters() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    let root = inp.overlay_root("worker");
    let out = TempDir::new().unwrap();
    let again = out.path().join("again.cpio.gz");
    let (sha, size) = pack_cpio_gz(&root, &overlay.entries, &again, MTIME).unwrap();
    assert_eq!(
        (sha, size),
        (overlay.archive_sha256.clone(), overlay.archive_size)
    );
    assert_eq!(
        fs_err::read(&again).unwrap(),
        fs_err::read(&overlay.archive).unwrap()
    );

    // Entry order given does not matter: the archive is sorted by path.
    let mut reversed = overlay.entries.clone();
    reversed.reverse();
    let shuffled = out.path().join("reversed.cpio.gz");
    let (sha, _) = pack_cpio_gz(&root, &reversed, &shuffled, MTIME).unwrap();
    assert_eq!(sha, overlay.archive_sha256);

    let later = out.path().join("later.cpio.gz");
    let (sha, _) = pack_cpio_gz(&root, &overlay.entries, &later, MTIME + 1).unwrap();
    assert_ne!(sha, overlay.archive_sha256);

    // A second, independent run in another directory gives the same bytes.
    let other = upstream();
    let second = other.stage("worker", &worker_rules(), MTIME).unwrap();
    assert_eq!(second.archive_sha256, overlay.archive_sha256);
    assert_eq!(second.entries, overlay.entries);
}

fn identity(path: &Path) -> (u64, i64, i64) {
    let m = fs_err::symlink_metadata(path).unwrap();
    (m.ino(), m.mtime(), m.mtime_nsec())
}

#[test]
fn unchanged_inputs_reuse_the_packed_overlay() {
    let mut inp = upstream();
    let rules = worker_rules();
    let first = inp.stage("worker", &rules, MTIME).unwrap();
    assert!(!first.reused);
    let watched = [
        inp.archive("worker"),
        fsutil::stamp_path(&inp.archive("worker")),
        inp.overlay_root("worker"),
        inp.overlay_root("worker").join("usr/local/bin/kubelet"),
    ];
    let before: Vec<_> = watched.iter().map(|p| identity(p)).collect();

    let second = inp.stage("worker", &rules, MTIME).unwrap();
    assert!(second.reused);
    assert_eq!(
        Overlay {
            reused: false,
            ..second
        },
        first
    );
    let after: Vec<_> = watched.iter().map(|p| identity(p)).collect();
    assert_eq!(after, before);

    // Any input change rebuilds: mtime, a rule's mode, an artifact's digest.
    let other_mtime = inp.stage("worker", &rules, MTIME + 60).unwrap();
    assert!(!other_mtime.reused);
    assert_ne!(other_mtime.archive_sha256, first.archive_sha256);
    let mut changed = rules.clone();
    changed[0].mode = 0o750;
    assert!(!inp.stage("worker", &changed, MTIME).unwrap().reused);
    let real = inp.digests["runc"].clone();
    inp.digests
        .insert("runc".into(), sha256_bytes(b"another runc"));
    assert!(!inp.stage("worker", &rules, MTIME).unwrap().reused);
    inp.digests.insert("runc".into(), real);

    // An archive that is not the one the stamp describes is rebuilt, not trusted.
    assert!(!inp.stage("worker", &rules, MTIME).unwrap().reused);
    assert!(inp.stage("worker", &rules, MTIME).unwrap().reused);
    fs_err::write(inp.archive("worker"), b"truncated").unwrap();
    let repaired = inp.stage("worker", &rules, MTIME).unwrap();
    assert!(!repaired.reused);
    assert_eq!(repaired.archive_sha256, first.archive_sha256);
    check_tree(&inp.overlay_root("worker"), &repaired);
}

#[test]
fn failed_rebuild_keeps_the_previous_result() {
    let inp = upstream();
    let first = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    let before = fs_err::read(inp.archive("worker")).unwrap();
    let mut rules = worker_rules();
    rules.push(rule("crictl", member("critest"), "/usr/local/bin/critest"));
    inp.stage("worker", &rules, MTIME).unwrap_err();
    assert_eq!(fs_err::read(inp.archive("worker")).unwrap(), before);
    check_tree(&inp.overlay_root("worker"), &first);
    assert!(inp.stage("worker", &worker_rules(), MTIME).unwrap().reused);
    let names: Vec<_> = fs_err::read_dir(inp.dir.path().join("out/arm64"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        names,
        [
            ".overlay-worker.cpio.gz.stamp",
            "overlay",
            "overlay-worker.cpio.gz"
        ]
    );
}

#[test]
fn refuses_dotdot_entry() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "containerd",
        "containerd.tar.gz",
        &[
            ("bin/containerd", file("c", 10)),
            ("../evil", file("evil", 10)),
        ],
    );
    let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin"), "/bin")]);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `containerd`) has an entry `../evil` that has a \
             `..` component; refusing to extract from it",
            p.display()
        )
    );
}

#[test]
fn refuses_absolute_entry() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "crictl",
        "crictl.tar.gz",
        &[
            ("crictl", file("crictl", 10)),
            ("/etc/passwd", file("pw", 10)),
        ],
    );
    let msg = inp.fails_clean(
        "worker",
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
    );
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `crictl`) has an entry `/etc/passwd` that is \
             absolute; refusing to extract from it",
            p.display()
        )
    );
}

#[test]
fn refuses_selected_symlink() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "crictl",
        "crictl.tar.gz",
        &[
            ("crictl-real", file("crictl", 10)),
            ("crictl", Node::Symlink("crictl-real")),
        ],
    );
    let msg = inp.fails_clean(
        "worker",
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
    );
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `crictl`) has an entry `crictl` that is a \
             symlink to `crictl-real`; only regular files are installed",
            p.display()
        )
    );
}

#[test]
fn refuses_escaping_symlink_in_selected_dir() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "containerd",
        "containerd.tar.gz",
        &[
            ("bin/", Node::Dir),
            ("bin/containerd", file("c", 10)),
            ("bin/ctr", Node::Symlink("../../etc/shadow")),
        ],
    );
    let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin"), "/bin")]);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `containerd`) has an entry `bin/ctr` that is a \
             symlink to `../../etc/shadow`, outside the archive; refusing to extract from it",
            p.display()
        )
    );
}

#[test]
fn refuses_hardlink_to_outside() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "cni-plugins",
        "cni.tgz",
        &[
            ("./", Node::Dir),
            ("./bridge", file("bridge", 10)),
            ("./loopback", Node::Hardlink("/etc/shadow")),
        ],
    );
    let msg = inp.fails_clean("worker", &[rule("cni-plugins", dir(""), "/opt/cni/bin")]);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `cni-plugins`) has an entry `./loopback` that is a \
             hard link to `/etc/shadow`, outside the archive; refusing to extract from it",
            p.display()
        )
    );
}

#[test]
fn unselected_links_are_ignored() {
    let mut inp = Inputs::new();
    inp.add_targz(
        "kubernetes-node",
        "k.tar.gz",
        &[
            ("kubernetes/node/bin/kubelet", file("kubelet", 10)),
            ("kubernetes/addons/link", Node::Symlink("/etc/shadow")),
        ],
    );
    let rules = [rule(
        "kubernetes-node",
        member("kubernetes/node/bin/kubelet"),
        "/usr/local/bin/kubelet",
    )];
    let overlay = inp.stage("worker", &rules, MTIME).unwrap();
    assert_eq!(overlay.entries.len(), 1);
}

#[test]
fn missing_member_names_archive_member_and_what_exists() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "kubernetes-node",
        "kubernetes-node-linux-arm64.tar.gz",
        &[
            ("kubernetes/", Node::Dir),
            ("kubernetes/node/bin/kube-proxy", file("kube-proxy", 10)),
            ("kubernetes/node/bin/kubeadm", file("kubeadm", 10)),
        ],
    );
    let rules = [
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kube-proxy"),
            "/usr/local/bin/kube-proxy",
        ),
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        ),
    ];
    let msg = inp.fails_clean("worker", &rules);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `kubernetes-node`) has \
             no member `kubernetes/node/bin/kubelet` (for `/usr/local/bin/kubelet`); it \
             has e.g. kubernetes/node/bin/kube-proxy, kubernetes/node/bin/kubeadm",
            p.display()
        )
    );
}

#[test]
fn dir_rule_matching_nothing_fails() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "containerd",
        "containerd.tar.gz",
        &[("./", Node::Dir), ("./containerd", file("c", 10))],
    );
    let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin/"), "/bin")]);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `containerd`) has no \
             file directly in directory `bin` (for `/bin`); it has e.g. containerd",
            p.display()
        )
    );
}

#[test]
fn archive_rule_on_non_gzip_file_fails() {
    let mut inp = Inputs::new();
    let p = inp.cache("crictl");
    fs_err::write(&p, content("crictl", 100)).unwrap();
    inp.add("crictl", p.clone());
    let msg = inp.fails_clean(
        "worker",
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
    );
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `crictl`) is not \
             gzip-compressed (it starts with 0x7f454c46), but its install rules take files \
             out of it, which needs a .tar.gz",
            p.display()
        )
    );
}

#[test]
fn refuses_bad_rules_and_double_installs() {
    let inp = upstream();
    let msg = inp.fails_clean(
        "worker",
        &[rule("runc", Source::Whole, "usr/local/bin/runc")],
    );
    assert_eq!(
        msg,
        "staging the overlay of role `worker`: install rule for component `runc` -> \
         `usr/local/bin/runc`: node path `usr/local/bin/runc` must be absolute"
    );
    let msg = inp.fails_clean("worker", &[rule("runc", Source::Whole, "/usr/../etc/runc")]);
    assert!(msg.ends_with("no empty, `.` or `..` components)"), "{msg}");
    let msg = inp.fails_clean("worker", &[rule("crictl", member("../crictl"), "/x")]);
    assert!(
        msg.ends_with("member path `../crictl` has a `..` component"),
        "{msg}"
    );
    let msg = inp.fails_clean("worker", &[rule("cri-o", Source::Whole, "/x")]);
    assert!(
        msg.ends_with("no resolved artifact for component `cri-o`"),
        "{msg}"
    );
    let msg = inp.fails_clean("work/er", &[]);
    assert!(msg.contains("role name `work/er`"), "{msg}");
    let msg = inp.fails_clean(
        "worker",
        &[
            rule("runc", Source::Whole, "/bin/ctr"),
            rule("containerd", dir("bin"), "/bin"),
        ],
    );
    assert!(
        msg.ends_with(&format!(
            "`/bin/ctr` is installed twice: from member `bin/ctr` of `{}` (component \
             `containerd`) and from `{}` (component `runc`)",
            inp.artifacts["containerd"].display(),
            inp.artifacts["runc"].display()
        )),
        "{msg}"
    );
}

#[test]
fn packing_refuses_files_that_changed() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    let root = inp.overlay_root("worker");
    let kubelet = root.join("usr/local/bin/kubelet");
    let original = fs_err::read(&kubelet).unwrap();
    let out = TempDir::new().unwrap();
    let dest = out.path().join("o.cpio.gz");

    let mut grown = original.clone();
    grown.push(0);
    fs_err::write(&kubelet, &grown).unwrap();
    let msg = format!(
        "{:#}",
        pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
    );
    assert!(
        msg.ends_with(&format!(
            "`{}` changed while being packed: the manifest says 6018 bytes, the file has more",
            kubelet.display()
        )),
        "{msg}"
    );

    fs_err::write(&kubelet, &original[..100]).unwrap();
    let msg = format!(
        "{:#}",
        pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
    );
    assert!(
        msg.ends_with("the manifest says 6018 bytes, the file has 100"),
        "{msg}"
    );

    let mut flipped = original.clone();
    flipped[3000] ^= 1;
    fs_err::write(&kubelet, &flipped).unwrap();
    let msg = format!(
        "{:#}",
        pack_cpio_gz(&root, &overlay.entries, &dest, MTIME).unwrap_err()
    );
    assert!(
        msg.contains("changed after staging: its sha256 is"),
        "{msg}"
    );

    let msg = format!(
        "{:#}",
        pack_cpio_gz(&root, &overlay.entries, &dest, 1 << 32).unwrap_err()
    );
    assert!(msg.contains("does not fit the 32-bit cpio header"), "{msg}");
    assert_eq!(
        fs_err::read_dir(out.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

fn vm_hwm_kib() -> u64 {
    let status = fs_err::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Yields `len` bytes of a repeated 16 KiB pseudo-random block (compressible like a binary).
struct Pattern {
    block: Vec<u8>,
    at: usize,
    left: u64,
}

impl Pattern {
    fn new(len: u64) -> Self {
        let mut x = 0x9e37_79b9_u32;
        let block = (0..16 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        Pattern {
            block,
            at: 0,
            left: len,
        }
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.at)
            .min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at = (self.at + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn large_member_is_streamed() {
    const SIZE: u64 = 300 << 20;
    let mut inp = Inputs::new();
    let path = inp.cache("kubernetes-node-linux-arm64.tar.gz");
    {
        TarGz::create(&path)
            .file_from("kubernetes/node/bin/kubelet", SIZE, Pattern::new(SIZE))
            .finish();
    }
    inp.add("kubernetes-node", path);
    let expected = hash_reader(Algo::Sha256, Pattern::new(SIZE)).unwrap();

    let before = vm_hwm_kib();
    let rules = [rule(
        "kubernetes-node",
        member("kubernetes/node/bin/kubelet"),
        "/usr/local/bin/kubelet",
    )];
    let overlay = inp.stage("worker", &rules, MTIME).unwrap();
    let grown = vm_hwm_kib().saturating_sub(before);
    eprintln!("VmHWM before {before} KiB, grew by {grown} KiB staging a {SIZE}-byte member");
    assert_eq!(overlay.entries[0].size, SIZE);
    assert_eq!(overlay.entries[0].sha256, expected);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
    let listed = run(
        "gzip -dc \"$1\" | cpio -itv --numeric-uid-gid --quiet",
        &overlay.archive,
        Path::new("/"),
    );
    assert_eq!(parse_ls(&listed)[0].3, SIZE);
}
