//! A crash at the worst moment: strace kills the build with SIGKILL at its N-th rename, for
//! every N a build (and a rebuild) makes. After each kill `out/<arch>` must be the complete
//! previous output or the complete new one (compared with two reference builds), never absent
//! or mixed; and the next build must succeed and leave nothing behind. Killed downloads are
//! continued (HTTP `Range`) by the next run and still checked whole against the pin.
//!
//! The same for `imagegen pki`, which writes `out/pki` as a set: killed at every rename and
//! every write of a first run and of a run that completes a half-made PKI, it leaves no PKI,
//! the old one or the whole new one (checked with openssl), and the next run completes it.
//!
//! The kills run on a few threads at once; the test prints how long they took.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::fs::{list_dir, read_tree};
use crate::common::http::{Behaviour, TestServer};
use crate::common::openssl::check_whole_pki;
use crate::common::*;

const RENAMES: &[&str] = &["rename", "renameat", "renameat2"];
/// Two builds that differ in every ISO, archive and manifest.
const EPOCH_A: &str = "1704067200";
const EPOCH_B: &str = "1800000000";

/// What every run of one scenario shares: the mirror, the warm cache, the reference outputs.
struct Setup {
    dir: tempfile::TempDir,
    profile: PathBuf,
    mirror: String,
    cache: PathBuf,
    /// `out/amd64` of a build with [`EPOCH_A`] / [`EPOCH_B`], by relative path.
    a: BTreeMap<PathBuf, Vec<u8>>,
    b: BTreeMap<PathBuf, Vec<u8>>,
    a_dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let m = mirror::build(dir.path(), "amd64", &|p| p);
        let mut s = Setup {
            profile: m.profile.clone(),
            mirror: m.file_url(),
            cache: dir.path().join("cache"),
            a: BTreeMap::new(),
            b: BTreeMap::new(),
            a_dir: dir.path().join("ref-a"),
            dir,
        };
        // The first build also fills the cache: later runs rename nothing there.
        s.build(&Test::new(), &s.a_dir, EPOCH_A).run().success();
        let b_dir = s.dir.path().join("ref-b");
        s.build(&Test::new(), &b_dir, EPOCH_B).run().success();
        s.a = read_tree(&s.a_dir.join("amd64"));
        s.b = read_tree(&b_dir.join("amd64"));
        assert_ne!(s.a, s.b);
        s
    }

    fn build(&self, t: &Test, out: &Path, epoch: &str) -> Test {
        build_fixed(t, &self.profile, "amd64", out)
            .args(["--quiet", "--offline", "--mirror", &self.mirror])
            .env("IMAGEGEN_CACHE", &self.cache)
            .env("SOURCE_DATE_EPOCH", epoch)
    }

    /// A fresh `out` holding `out/amd64` as build A left it (or nothing).
    fn out_with_a(&self, t: &Test, with_a: bool) -> PathBuf {
        let out = t.temp().join("out");
        fs_err::create_dir_all(&out).unwrap();
        if with_a {
            copy_tree(&self.a_dir.join("amd64"), &out.join("amd64"));
        }
        out
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for f in fs::files_under(from) {
        let dest = to.join(&f);
        fs_err::create_dir_all(dest.parent().unwrap()).unwrap();
        fs_err::copy(from.join(&f), dest).unwrap();
    }
}

/// The renames the build makes, as kill points: strace counts each syscall on its own, so the
/// k-th call of `rename`, `renameat` and `renameat2` each (all in one thread).
fn renames(setup: &Setup, with_a: bool, epoch: &str) -> Vec<(&'static str, usize)> {
    let t = Test::new();
    let out = setup.out_with_a(&t, with_a);
    kill_points(&t, setup.build(&t, &out, epoch), RENAMES)
}

/// Runs `cmd` (of `t`) to success under strace and returns its calls of `syscalls` as kill
/// points: the k-th call of each.
fn kill_points(t: &Test, cmd: Test, syscalls: &[&'static str]) -> Vec<(&'static str, usize)> {
    let log = t.temp().join("calls.txt");
    let trace = format!("trace={}", syscalls.join(","));
    cmd.wrap([
        "strace",
        "-f",
        "--seccomp-bpf",
        "-e",
        &trace,
        "-o",
        log.to_str().unwrap(),
    ])
    .run()
    .success();
    let log = fs_err::read_to_string(&log).unwrap();
    let mut points = Vec::new();
    for &sys in syscalls {
        let calls = log
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|c| c.starts_with(&format!("{sys}(")))
            })
            .count();
        points.extend((1..=calls).map(|k| (sys, k)));
    }
    points
}

/// Runs `cmd` under strace, which kills it with SIGKILL at the n-th call of `sys` (counting
/// only `syscalls`), and checks that it was killed.
fn run_killed_at(cmd: Test, syscalls: &[&str], (sys, n): (&str, usize)) {
    let trace = format!("trace={}", syscalls.join(","));
    let inject = format!("inject={sys}:signal=KILL:when={n}");
    // Not `--seccomp-bpf`: with it, strace 6.1 does not inject into `renameat`.
    let run = cmd
        .wrap([
            "strace",
            "-f",
            "-o",
            "/dev/null",
            "-e",
            &trace,
            "-e",
            &inject,
        ])
        .run();
    use std::os::unix::process::ExitStatusExt as _;
    let status = run.status();
    assert!(
        status.signal() == Some(9) || status.code() == Some(137),
        "not killed at {sys} #{n}: {status}\n{}",
        run.stderr()
    );
}

/// What a killed run left, by kind, for the report.
#[derive(Default)]
struct Seen {
    killed: AtomicUsize,
    left_staging: AtomicUsize,
    old_output: AtomicUsize,
    new_output: AtomicUsize,
}

/// Kills a build (with `epoch`, over build A when `with_a`) at each of its renames, checks what
/// it left and that the next build recovers.
fn kill_at_every_rename(setup: &Setup, with_a: bool, epoch: &str) -> Seen {
    let points = renames(setup, with_a, epoch);
    let total = points.len();
    // A rebuild without a change still renames a stamp per ISO and swaps the directory.
    assert!(total >= 5, "only {total} renames? {points:?}");
    let new = if epoch == EPOCH_A { &setup.a } else { &setup.b };
    let seen = Seen::default();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&(sys, n)) = points.get(i) else {
                    break;
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    kill_at(setup, with_a, epoch, new, (sys, n), &seen)
                }));
                if let Err(e) = result {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.lock().unwrap().push(format!("{sys} #{n}: {msg}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(seen.killed.load(Ordering::SeqCst), total);
    seen
}

fn kill_at(
    setup: &Setup,
    with_a: bool,
    epoch: &str,
    new: &BTreeMap<PathBuf, Vec<u8>>,
    (sys, n): (&str, usize),
    seen: &Seen,
) {
    let t = Test::new();
    let out = setup.out_with_a(&t, with_a);
    run_killed_at(setup.build(&t, &out, epoch), RENAMES, (sys, n));
    seen.killed.fetch_add(1, Ordering::SeqCst);

    // What the kill left: the previous output or the new one, whole.
    let arch = out.join("amd64");
    if arch.exists() {
        let now = read_tree(&arch);
        if now == *new {
            seen.new_output.fetch_add(1, Ordering::SeqCst);
        } else if with_a && now == setup.a {
            seen.old_output.fetch_add(1, Ordering::SeqCst);
        } else {
            panic!("out/amd64 is neither the previous nor the new output");
        }
    } else {
        assert!(!with_a, "out/amd64 is gone; it held the previous output");
    }
    if list_dir(&out)
        .iter()
        .any(|n| n.starts_with(".amd64.build-"))
    {
        seen.left_staging.fetch_add(1, Ordering::SeqCst);
    }

    // The next build recovers and sweeps.
    setup.build(&t, &out, epoch).run().success();
    assert!(read_tree(&arch) == *new, "the next build's output differs");
    assert_eq!(list_dir(&out), [".lock", "amd64"], "left in out/");
}

#[test]
fn a_kill_at_any_rename_leaves_the_old_or_the_new_output() {
    let started = Instant::now();
    let setup = Setup::new();
    let mut report = Vec::new();
    for (what, with_a, epoch) in [
        ("first build", false, EPOCH_A),
        ("rebuild with a change", true, EPOCH_B),
        ("rebuild without a change", true, EPOCH_A),
    ] {
        let seen = kill_at_every_rename(&setup, with_a, epoch);
        report.push(format!(
            "{what}: {} kills, {} left the previous output, {} the new one, {} a staging dir",
            seen.killed.load(Ordering::SeqCst),
            seen.old_output.load(Ordering::SeqCst),
            seen.new_output.load(Ordering::SeqCst),
            seen.left_staging.load(Ordering::SeqCst),
        ));
        assert!(seen.left_staging.load(Ordering::SeqCst) > 0, "{what}");
    }
    // Setup's cache holds entries and stamps only: no temp file, partial download or lock.
    let tmp = setup.cache.join("tmp");
    assert!(list_dir(&tmp).is_empty(), "{:?}", list_dir(&tmp));
    eprintln!(
        "{}\nkill-at-every-rename took {:?}",
        report.join("\n"),
        started.elapsed()
    );
}

/// What a half-made PKI of an older imagegen looks like: a whole one without `ca.pem` (killed
/// between the CA's key and certificate), worker2's files, admin's kubeconfig and the
/// encryption config. Completing it makes `ca.pem` again, issues worker2 and writes every
/// kubeconfig again.
fn half_made_pki(dir: &Path) {
    Test::new().args(["pki", "--out"]).arg(dir).run().success();
    for f in [
        "ca.pem",
        "worker2.pem",
        "worker2-key.pem",
        "worker2.kubeconfig",
        "admin.kubeconfig",
        "encryption-config.yaml",
    ] {
        fs_err::remove_file(dir.join("pki").join(f)).unwrap();
    }
}

/// `imagegen pki --out <out>`.
fn pki(t: &Test, out: &Path) -> Test {
    t.clone().args(["pki", "--out"]).arg(out)
}

/// A fresh `out` in `t`, holding a copy of `base` (or nothing).
fn out_with(t: &Test, base: Option<&Path>) -> PathBuf {
    let out = t.temp().join("out");
    fs_err::create_dir_all(&out).unwrap();
    if let Some(base) = base {
        copy_tree(&base.join("pki"), &out.join("pki"));
    }
    out
}

const PKI_KILLS: &[&str] = &["rename", "renameat", "renameat2", "write"];

/// Kills `imagegen pki` over a copy of `base` at the n-th call of `sys`; checks that `out/pki`
/// is what it was, or whole and new (keeping every key and certificate it had), and that the
/// next run completes it. Returns whether the new PKI was in place after the kill.
fn kill_pki_at(base: Option<&Path>, (sys, n): (&str, usize)) -> bool {
    let t = Test::new();
    let out = out_with(&t, base);
    let before = base.map(|b| read_tree(&b.join("pki")));
    run_killed_at(pki(&t, &out), PKI_KILLS, (sys, n));
    let dir = out.join("pki");
    // Every key and certificate the PKI had is kept (kubeconfigs may be written again).
    let kept = |now: &BTreeMap<PathBuf, Vec<u8>>| {
        before.as_ref().is_none_or(|b| {
            b.iter()
                .filter(|(f, _)| f.to_str().is_some_and(|f| f.ends_with(".pem")))
                .all(|(f, data)| now.get(f) == Some(data))
        })
    };
    let new = if !dir.exists() {
        assert!(base.is_none(), "out/pki is gone");
        false
    } else {
        let now = read_tree(&dir);
        if before.as_ref() == Some(&now) {
            false
        } else {
            match check_whole_pki(&dir) {
                Ok(()) => assert!(kept(&now), "a key or certificate changed"),
                Err(e) => panic!("out/pki is neither the old PKI nor a whole new one: {e}"),
            }
            true
        }
    };
    pki(&t, &out).run().success();
    if let Err(e) = check_whole_pki(&dir) {
        panic!("after the next run: {e}");
    }
    assert!(
        kept(&read_tree(&dir)),
        "the next run changed a key or certificate"
    );
    assert_eq!(list_dir(&out), [".lock", "pki"], "left in out/");
    new
}

/// Kills `imagegen pki` over `base` at each of its renames and writes, on three threads.
fn kill_pki_everywhere(base: Option<&Path>) -> (usize, usize) {
    let t = Test::new();
    let out = out_with(&t, base);
    let points = kill_points(&t, pki(&t, &out), PKI_KILLS);
    assert!(
        points.iter().filter(|(s, _)| *s == "write").count() >= 10,
        "{points:?}"
    );
    let next = AtomicUsize::new(0);
    let new = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&point) = points.get(i) else { break };
                match std::panic::catch_unwind(|| kill_pki_at(base, point)) {
                    Ok(true) => {
                        new.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(false) => {}
                    Err(e) => {
                        let msg = e
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} #{}: {msg}", point.0, point.1));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    (points.len(), new.load(Ordering::SeqCst))
}

#[test]
fn a_kill_at_any_rename_or_write_of_imagegen_pki_leaves_a_whole_pki_or_none() {
    let started = Instant::now();
    let base = tempfile::tempdir().unwrap();
    half_made_pki(base.path());
    let mut report = Vec::new();
    for (what, base) in [("first run", None), ("completing run", Some(base.path()))] {
        let (kills, new) = kill_pki_everywhere(base);
        report.push(format!(
            "{what}: {kills} kills, {new} left the new PKI, {} the old one",
            kills - new
        ));
        assert!(new > 0 && new < kills, "{what}: {new} of {kills}");
    }
    eprintln!(
        "{}\nimagegen pki kills took {:?}",
        report.join("\n"),
        started.elapsed()
    );
}

const NODE: &str = "dl.k8s.io/v1.31.0/kubernetes-node-linux-amd64.tar.gz";

/// A mirror whose kubernetes-node archive is `len` bytes of incompressible data (so it is as
/// large on the wire), served slowly by `server` as the upstream; returns its partial download
/// path in the test's cache and its bytes.
fn slow_node(t: &Test, server: &TestServer, len: usize) -> (mirror::Mirror, PathBuf, Vec<u8>) {
    use sha2::Digest as _;
    let mut m = mirror::build(t.temp(), "amd64", &|p| p);
    let big = archive::TarGz::new()
        .file("kubernetes/node/bin/kubelet", http::generated_bytes(3, len))
        .file("kubernetes/node/bin/kube-proxy", b"#!/bin/sh\n")
        .finish();
    m.replace("kubernetes-node-linux-amd64.tar.gz", big.clone());
    m.serve_as_upstream(server);
    server.add_with(
        &format!("/{NODE}"),
        big.clone(),
        Behaviour {
            pace: Some(Duration::from_millis(10)),
            ..Behaviour::default()
        },
    );
    let hex = hex::encode(sha2::Sha512::digest(&big));
    let part = t.cache().join(format!("tmp/sha512-{hex}.part"));
    (m, part, big)
}

fn fetch(t: &Test, m: &mirror::Mirror, jobs: &str) -> Test {
    t.clone()
        .args([
            "fetch",
            "--arch",
            "amd64",
            "--quiet",
            "--jobs",
            jobs,
            "--profile",
        ])
        .arg(&m.profile)
}

/// Waits until `ready` holds (polling), then kills the run with SIGKILL.
fn kill_when(run: Running, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(run.pid() as i32, libc::SIGKILL) };
    let out = run.wait();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(out.status().signal(), Some(9), "{}", out.stderr());
}

fn size(p: &Path) -> u64 {
    fs_err::metadata(p).map_or(0, |m| m.len())
}

/// The `Range` of each request for `path`, in order.
fn ranges(server: &TestServer, path: &str) -> Vec<Option<String>> {
    server
        .log()
        .into_iter()
        .filter(|h| h.path == path)
        .map(|h| h.range)
        .collect()
}

#[test]
fn a_killed_download_is_continued_and_checked_whole() {
    let t = Test::new();
    let server = TestServer::start();
    let (m, part, big) = slow_node(&t, &server, 6 << 20);
    let node = format!("/{NODE}");
    kill_when(fetch(&t, &m, "4").spawn(), || size(&part) >= 2 << 20);
    let have = size(&part);
    assert!(have < big.len() as u64);
    fetch(&t, &m, "4").run().success();
    assert_eq!(
        ranges(&server, &node),
        [None, Some(format!("bytes={have}-"))],
        "the second run continues where the first stopped"
    );
    assert!(!part.exists());
    let entries = fs::files_under(&t.cache());
    assert!(entries.iter().all(|e| !e.starts_with("tmp")), "{entries:?}");

    // Bytes left by a run that are not the file's: the whole file is checked, found wrong,
    // and fetched again from the start.
    fs_err::remove_dir_all(t.cache()).unwrap();
    let mut wrong = big[..1 << 20].to_vec();
    wrong[1000] ^= 0xff;
    fs_err::create_dir_all(part.parent().unwrap()).unwrap();
    fs_err::write(&part, &wrong).unwrap();
    let before = ranges(&server, &node).len();
    fetch(&t, &m, "4").run().success();
    assert_eq!(
        ranges(&server, &node)[before..],
        [Some(format!("bytes={}-", 1 << 20)), None]
    );
    let hex = part.file_name().unwrap().to_str().unwrap();
    let hex = &hex["sha512-".len()..hex.len() - ".part".len()];
    assert_eq!(
        fs_err::read(t.cache().join("sha512").join(hex)).unwrap(),
        big
    );
}

#[test]
fn a_killed_split_download_continues_from_its_recorded_start() {
    let t = Test::new();
    let server = TestServer::start();
    // Large enough for other connections to take over ranges of it.
    let (m, part, _) = slow_node(&t, &server, 24 << 20);
    let prefix = part.with_extension("part.prefix");
    let recorded = || {
        fs_err::read_to_string(&prefix)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    kill_when(fetch(&t, &m, "4").spawn(), || recorded() >= 8 << 20);
    let start = recorded();
    let node = format!("/{NODE}");
    let before = ranges(&server, &node).len();
    assert!(before > 1, "the download was not split: {:?}", server.log());
    fetch(&t, &m, "4").run().success();
    assert_eq!(
        ranges(&server, &node)[before],
        Some(format!("bytes={start}-")),
        "{:?}",
        server.log()
    );
    assert!(!part.exists() && !prefix.exists());
}
