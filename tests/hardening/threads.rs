//! Threads are bounded by the work, and a thread that cannot be started is never a panic:
//! `--jobs 250000` starts one download thread per pinned file, and a build under a `ulimit -u`
//! that allows no thread at all still succeeds (from a `file://` mirror) or fails with an
//! error (exit 1, over HTTP, whose client needs a thread), never exit 101.

use std::path::Path;

use crate::common::fs::assert_same_tree;
use crate::common::http::TestServer;
use crate::common::*;

/// A uid no one else on the machine runs as, so its process count is only ours.
const UID: u32 = 64_999;

/// Runs `t` with at most `nproc` processes and threads for its user (including the binary
/// itself). RLIMIT_NPROC does not bind root, so as root the binary runs as [`UID`].
fn limited(t: Test, nproc: u32) -> Test {
    let mut wrap = vec![
        "prlimit".to_string(),
        format!("--nproc={nproc}:{nproc}"),
        "--".to_string(),
    ];
    if is_root() {
        wrap.extend(
            [
                "setpriv",
                &format!("--reuid={UID}"),
                &format!("--regid={UID}"),
                "--clear-groups",
                "--",
            ]
            .map(String::from),
        );
    }
    t.wrap(wrap)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A directory the limited user may write.
fn writable(dir: &Path) -> &Path {
    fs_err::create_dir_all(dir).unwrap();
    if is_root() {
        std::os::unix::fs::chown(dir, Some(UID), Some(UID)).unwrap();
    }
    dir
}

fn build(t: &Test, m: &mirror::Mirror, out: &Path, cache: &Path) -> Test {
    build_fixed(t, &m.profile, "amd64", out)
        .args(["--quiet", "--jobs", "250000", "--mirror", &m.file_url()])
        .env("IMAGEGEN_CACHE", cache)
}

#[test]
fn download_threads_are_bounded_by_the_files() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let trace = t.temp().join("clones.txt");
    m.fetch_offline(&t)
        .args(["--jobs", "250000"])
        .wrap([
            "strace",
            "-f",
            "--seccomp-bpf",
            "-e",
            "trace=clone,clone3",
            "-o",
            trace.to_str().unwrap(),
        ])
        .run()
        .success();
    let clones = fs_err::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("clone") && !l.contains("resumed"))
        .count();
    // One thread per pinned file, not 250000.
    let files = m.files.len();
    assert!(clones <= files, "{clones} threads for {files} files");
}

#[test]
fn no_thread_to_spare_is_not_a_panic() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    // Everything the limited user reads must be readable by it.
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    fs_err::set_permissions(t.temp(), mode).unwrap();
    let reference = t.temp().join("reference");
    build(&t, &m, &reference, &t.temp().join("cache-ref"))
        .run()
        .success();

    // No thread at all beyond the main one, then a few: the same output.
    for nproc in [1, 3] {
        let out = writable(&t.temp().join(format!("out-{nproc}"))).to_path_buf();
        let cache = writable(&t.temp().join(format!("cache-{nproc}"))).to_path_buf();
        let run = limited(build(&t, &m, &out, &cache), nproc).run();
        assert_ne!(run.status().code(), Some(101), "{}", run.stderr());
        let run = run.success();
        assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
        assert_same_tree(&reference.join("amd64"), &out.join("amd64"));
    }

    // Over HTTP the client needs a thread of its own: an error, not a panic.
    let server = TestServer::start();
    for (path, data) in &m.files {
        server.add(&format!("/mirror/{path}"), data.clone());
    }
    let out = writable(&t.temp().join("out-http")).to_path_buf();
    let cache = writable(&t.temp().join("cache-http")).to_path_buf();
    let run = limited(
        build_fixed(&t, &m.profile, "amd64", &out)
            .args(["--quiet", "--jobs", "250000", "--mirror"])
            .arg(format!("{}/mirror", server.base()))
            .env("IMAGEGEN_CACHE", &cache),
        1,
    )
    .run();
    assert_eq!(run.status().code(), Some(1), "{}", run.stderr());
    assert!(!run.stderr().contains("panicked"), "{}", run.stderr());
    assert!(
        run.stderr().contains("Resource temporarily unavailable"),
        "{}",
        run.stderr()
    );
}
