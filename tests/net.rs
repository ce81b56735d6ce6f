//! The first run without network, and mirrors: what `imagegen build` and `fetch` say when the
//! upstream hosts cannot be reached (a name that does not resolve, a closed port, a 404), that
//! such errors are not retried while a 5xx is (and the retry says when), what to do next, and
//! what `--mirror`, `--node-mirror` and `--offline` accept.

mod common;

use std::net::TcpListener;

use common::http::{Behaviour, TestServer};
use common::*;

/// A loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_build_without_network_fails_at_once_with_one_line_per_artifact_and_what_to_do() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let srv = TestServer::start();
    let closed = closed_port();
    // Three ways of not getting a file: a closed port (containerd, runc, crictl, CNI), a name
    // that does not resolve (the Kubernetes tarballs), a server that answers 404 (etcd).
    m.edit_profile(|p| {
        p.replace(
            "https://github.com/etcd-io/",
            &format!("{}/github.com/etcd-io/", srv.base()),
        )
        .replace(
            "https://github.com/",
            &format!("http://127.0.0.1:{closed}/github.com/"),
        )
        .replace("https://dl.k8s.io/", "http://x.invalid/dl.k8s.io/")
    });
    let o = build_fixed(&t, &m.profile, "amd64", &t.temp().join("out"))
        .run()
        .code(1);
    let text = o
        .snapshot()
        .replace(&format!("127.0.0.1:{closed}"), "127.0.0.1:[CLOSED]")
        .replace(&srv.authority(), "127.0.0.1:[PORT]");
    insta::assert_snapshot!("no-network-build", text);
    assert!(
        !o.stderr().contains("retry"),
        "nothing here is worth a retry:\n{}",
        o.stderr()
    );
    assert_eq!(
        srv.statuses(
            "/github.com/etcd-io/etcd/releases/download/v3.5.15/etcd-v3.5.15-linux-amd64.tar.gz"
        ),
        [404],
        "a 404 is asked once"
    );
}

#[test]
fn a_server_error_is_retried_and_the_retry_says_when() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let srv = TestServer::start();
    m.serve_as_upstream(&srv);
    let runc = "/github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64";
    let body = m
        .files
        .iter()
        .find(|(p, _)| format!("/{p}") == runc)
        .unwrap()
        .1
        .clone();
    srv.add_with(
        runc,
        body,
        Behaviour {
            fail_500: 2,
            ..Behaviour::default()
        },
    );
    let o = t
        .clone()
        .args(["fetch", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .run()
        .success();
    assert_eq!(srv.statuses(runc), [500, 500, 200]);
    // The other downloads' lines come in any order; the retries are runc's alone.
    let warnings: Vec<&str> = o
        .stderr()
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    let text = format!("{}\n{}", o.stdout(), warnings.join("\n"))
        .replace(&srv.authority(), "127.0.0.1:[PORT]");
    insta::assert_snapshot!("server-error-retried", o.normalize(&text));
}

#[test]
fn mirror_values_are_checked_when_arguments_are_parsed() {
    let t = Test::new();
    let mut out = String::new();
    for args in [
        &[
            "fetch",
            "--arch",
            "amd64",
            "--mirror",
            "ftp://mirror.lan/k8s",
        ][..],
        &["fetch", "--arch", "amd64", "--mirror", "no-such-dir"],
        &["fetch", "--arch", "amd64", "--mirror", "http://"],
        &["launch", "all", "--arch", "amd64", "--mirror", "gopher://x"],
        &[
            "build",
            "--arch",
            "amd64",
            "--payload",
            "fetch",
            "--node-mirror",
            "file:///srv/m",
        ],
        &[
            "build",
            "--arch",
            "amd64",
            "--payload",
            "fetch",
            "--node-mirror",
            "http://m/$(reboot)",
        ],
        &[
            "build",
            "--arch",
            "amd64",
            "--payload",
            "fetch",
            "--node-mirror",
            "http://m/a b",
        ],
    ] {
        let o = t.clone().args(args).run().code(2);
        out.push_str(&format!("$ imagegen {}\n{}\n", args.join(" "), o.stderr()));
    }
    insta::assert_snapshot!("mirror-argument-errors", out);
}

#[test]
fn a_directory_is_a_mirror_and_offline_refuses_an_http_one() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    // The mirror as a plain relative path, offline.
    let o = t
        .clone()
        .args([
            "fetch",
            "--arch",
            "amd64",
            "--quiet",
            "--offline",
            "--mirror",
            "mirror",
            "--profile",
        ])
        .arg(&m.profile)
        .run()
        .success();
    assert!(
        o.stdout().contains("8 artifacts for amd64 verified"),
        "{}",
        o.stdout()
    );
    let mut out = String::new();
    for args in [
        &[
            "fetch",
            "--arch",
            "amd64",
            "--offline",
            "--mirror",
            "http://192.168.1.1:8080/k8s",
        ][..],
        &[
            "build",
            "--arch",
            "amd64",
            "--offline",
            "--mirror",
            "mirror",
            "--mirror",
            "https://mirror.lan",
        ],
        &[
            "launch",
            "all",
            "--arch",
            "amd64",
            "--offline",
            "--mirror",
            "http://192.168.1.1:8080/k8s",
        ],
    ] {
        let o = t.clone().args(args).run().code(1);
        out.push_str(&format!("$ imagegen {}\n{}\n", args.join(" "), o.stderr()));
    }
    insta::assert_snapshot!("offline-with-an-http-mirror", out);
}

#[test]
fn each_mirror_flag_only_where_it_is_used() {
    let t = Test::new();
    fs_err::create_dir(t.temp().join("m")).unwrap();
    let mut out = String::new();
    for args in [
        &[
            "build",
            "--arch",
            "amd64",
            "--payload",
            "fetch",
            "--mirror",
            "m",
        ][..],
        &[
            "build",
            "--arch",
            "amd64",
            "--node-mirror",
            "http://192.168.1.1:8080",
        ],
    ] {
        let o = t.clone().args(args).run().code(1);
        out.push_str(&format!(
            "$ imagegen {}\n{}\n",
            args.join(" "),
            o.normalize(o.stderr())
        ));
    }
    insta::assert_snapshot!("mirror-flags-where-used", out);
}
