//! Ctrl-C or SIGTERM during a build removes its staging directory and exits with 128 + the
//! signal (130, 143); the previous output stays as it was.

use std::time::{Duration, Instant};

use crate::common::fs::{list_dir, read_tree};
use crate::common::http::{Behaviour, TestServer};
use crate::common::*;

fn interrupt_mid_build(signal: i32, code: i32, with_previous: bool) {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    if with_previous {
        build_fixed(&t, &m.profile, "amd64", &out)
            .args(["--quiet", "--offline", "--mirror", &m.file_url()])
            .run()
            .success();
    }
    let before = with_previous.then(|| read_tree(&out.join("amd64")));
    let server = TestServer::start();
    m.serve_as_upstream(&server);
    // One archive that takes its time: the build is in the middle of its downloads.
    let (path, data) = m
        .files
        .iter()
        .find(|(p, _)| p.contains("kubernetes-node"))
        .unwrap();
    let path = format!("/{path}");
    server.add_with(
        &path,
        data.clone(),
        Behaviour {
            stall: Some(Duration::from_secs(30)),
            ..Behaviour::default()
        },
    );
    let run = build_fixed(&t, &m.profile, "amd64", &out)
        .env("SOURCE_DATE_EPOCH", "1800000000")
        .args(["--quiet", "--cache"])
        .arg(t.temp().join("slow-cache"))
        .spawn();
    let started = Instant::now();
    while !(server.hits(&path) > 0
        && list_dir(&out)
            .iter()
            .any(|n| n.starts_with(".amd64.build-")))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    unsafe { libc::kill(run.pid() as i32, signal) };
    let done = run.wait();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the signal was not acted on at once"
    );
    let done = done.code(code);
    assert!(
        done.stderr().contains("interrupted by SIG"),
        "{}",
        done.stderr()
    );
    let mut expected = vec![".lock".to_string()];
    if with_previous {
        expected.push("amd64".into());
    }
    assert_eq!(list_dir(&out), expected, "the staging directory is gone");
    if let Some(before) = before {
        assert!(
            read_tree(&out.join("amd64")) == before,
            "previous output changed"
        );
    }
}

#[test]
fn sigterm_mid_build_removes_the_staging_directory() {
    interrupt_mid_build(libc::SIGTERM, 143, false);
}

#[test]
fn ctrl_c_mid_rebuild_keeps_the_previous_output() {
    interrupt_mid_build(libc::SIGINT, 130, true);
}
