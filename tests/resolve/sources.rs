//! Where files come from: upstream, mirrors in order, `file://` mirrors offline, each digest
//! fetched once, several at a time within `jobs`, and every failure reported.

use std::time::Duration;

use imagegen::digest::{hash_reader, Algo};
use imagegen::plan::Artifact;
use imagegen::resolve::{mirror_url, resolve, Origin};
use reqwest::Url;

use crate::common::http::{generated_bytes, Behaviour, TestServer};
use crate::fixtures::*;

#[test]
fn downloads_verifies_and_then_serves_from_cache_without_requests() {
    let srv = TestServer::start();
    let (c, r) = (containerd(), runc());
    srv.add(&c.path, c.bytes.clone());
    srv.add(&r.path, r.bytes.clone());
    let arts = [pin(&c, &srv.base()), pin(&r, &srv.base())];
    let cache = tempfile::tempdir().unwrap();

    let got = resolve(&arts, &opts(cache.path())).unwrap();
    assert_eq!(got.len(), 2);
    for (res, (art, fx)) in got.iter().zip(arts.iter().zip([&c, &r])) {
        assert_eq!(&res.artifact, art);
        assert_eq!(
            res.origin,
            Origin::Upstream {
                url: art.url.clone()
            }
        );
        assert_eq!(
            res.path,
            cache
                .path()
                .join(art.digest.algo().name())
                .join(art.digest.hex())
        );
        assert_eq!(fs_err::read(&res.path).unwrap(), fx.bytes);
    }
    assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
    assert_eq!(srv.total_hits(), 2);

    let again = resolve(&arts, &opts(cache.path())).unwrap();
    assert!(again.iter().all(|r| r.origin == Origin::Cache));
    assert_eq!(again[0].path, got[0].path);
    assert_eq!(
        srv.total_hits(),
        2,
        "a cache hit must not touch the network"
    );
}

#[test]
fn digest_mismatch_names_url_and_both_digests_and_keeps_nothing() {
    let srv = TestServer::start();
    let c = containerd();
    let mut tampered = c.bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    srv.add(&c.path, tampered.clone());
    let art = pin(&c, &srv.base());
    let actual = hash_reader(Algo::Sha256, &tampered[..]).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let err = format!(
        "{:#}",
        resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "digest mismatch: expected {}, got {actual}; the download was discarded for {}",
            art.digest, art.url
        )),
        "{err}"
    );
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );
}

#[test]
fn not_found_on_a_mirror_tries_the_next_mirror() {
    let upstream = TestServer::start();
    let mirror = TestServer::start();
    let c = containerd();
    let art = pin(&c, &upstream.base());
    let good = format!("/m2/{}{}", upstream.authority(), c.path);
    mirror.add(&good, c.bytes.clone());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.mirrors = vec![mirror.url("/m1"), mirror.url("/m2/")];

    let got = resolve(&[art], &o).unwrap();
    assert_eq!(
        got[0].origin,
        Origin::Mirror {
            url: mirror.url(&good)
        }
    );
    assert_eq!(
        mirror.hits(&format!("/m1/{}{}", upstream.authority(), c.path)),
        1
    );
    assert_eq!(mirror.hits(&good), 1);
    assert_eq!(upstream.total_hits(), 0);
}

#[test]
fn not_found_on_the_mirror_falls_through_to_upstream() {
    let upstream = TestServer::start();
    let mirror = TestServer::start();
    let r = runc();
    upstream.add(&r.path, r.bytes.clone());
    let art = pin(&r, &upstream.base());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.mirrors = vec![mirror.url("/files")];

    let got = resolve(std::slice::from_ref(&art), &o).unwrap();
    assert_eq!(
        got[0].origin,
        Origin::Upstream {
            url: art.url.clone()
        }
    );
    assert_eq!(mirror.total_hits(), 1);
    assert_eq!(fs_err::read(&got[0].path).unwrap(), r.bytes);
}

#[test]
fn not_found_everywhere_names_every_url() {
    let upstream = TestServer::start();
    let mirror = TestServer::start();
    let r = runc();
    let art = pin(&r, &upstream.base());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.mirrors = vec![mirror.url("/files")];

    let err = format!("{:#}", resolve(std::slice::from_ref(&art), &o).unwrap_err());
    let mirrored = mirror_url(&o.mirrors[0], &art.url).unwrap();
    // One line: each source, in order, with its reason.
    assert!(
        err.contains(&format!(
            "  - runc 1.1.13: not found (HTTP 404 Not Found) for {mirrored}; not found (HTTP 404 Not Found) for {}\n",
            art.url
        )),
        "{err}"
    );
    assert!(err.contains("runc.arm64"), "{err}");
    assert!(files_in(cache.path()).is_empty());
}

#[test]
fn offline_with_an_empty_cache_lists_every_missing_artifact_and_the_fetch_command() {
    let srv = TestServer::start();
    let fxs = [containerd(), runc(), cni()];
    for fx in &fxs {
        srv.add(&fx.path, fx.bytes.clone());
    }
    let arts: Vec<Artifact> = fxs.iter().map(|f| pin(f, &srv.base())).collect();
    let cache = tempfile::tempdir().unwrap();
    let empty_mirror = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.offline = true;
    o.mirrors = vec![Url::from_directory_path(empty_mirror.path())
        .unwrap()
        .to_string()];
    o.fetch_hint = "--arch arm64 --profile p.yaml".into();

    let err = format!("{:#}", resolve(&arts, &o).unwrap_err());
    assert!(
        err.contains("offline: 3 of 3 artifacts not in the cache"),
        "{err}"
    );
    for a in &arts {
        let line = format!(
            "\n  - {} {}: not found for {}\n",
            a.component,
            a.version,
            mirror_url(&o.mirrors[0], &a.url).unwrap()
        );
        assert!(err.contains(&line), "missing `{line}` in:\n{err}");
    }
    assert!(
        err.contains("fill the cache on a machine with network access: imagegen fetch --arch arm64 --profile p.yaml\n"),
        "{err}"
    );
    assert!(err.contains("imagegen cache import FILE..."), "{err}");
    assert!(!err.contains("--payload fetch"), "not a build: {err}");
    assert_eq!(srv.total_hits(), 0, "offline must not touch the network");
    assert!(files_in(&cache.path().join("sha256")).is_empty());
}

#[test]
fn offline_with_an_http_mirror_is_an_error_that_says_why() {
    let srv = TestServer::start();
    let c = containerd();
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.offline = true;
    o.mirrors = vec![srv.url("/mirror")];
    let err = format!("{:#}", resolve(&[pin(&c, &srv.base())], &o).unwrap_err());
    assert!(err.contains("--offline never uses the network"), "{err}");
    assert!(
        err.contains(&format!("--mirror {}", srv.url("/mirror"))),
        "{err}"
    );
    assert_eq!(srv.total_hits(), 0);
}

#[test]
fn offline_reads_a_file_mirror() {
    let (c, r) = (containerd(), runc());
    let arts = [pin(&c, "https://github.com"), pin(&r, "https://github.com")];
    let mirror = tempfile::tempdir().unwrap();
    for fx in [&c, &r] {
        let p = mirror.path().join(format!("github.com{}", fx.path));
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, &fx.bytes).unwrap();
    }
    let file_mirror = Url::from_directory_path(mirror.path()).unwrap().to_string();
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.offline = true;
    o.mirrors = vec![file_mirror.clone()];

    let got = resolve(&arts, &o).unwrap();
    for (res, a) in got.iter().zip(&arts) {
        assert_eq!(
            res.origin,
            Origin::Mirror {
                url: mirror_url(&file_mirror, &a.url).unwrap()
            }
        );
    }
    assert_eq!(fs_err::read(&got[1].path).unwrap(), r.bytes);
    assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
}

#[test]
fn the_same_digest_twice_is_downloaded_once() {
    let srv = TestServer::start();
    let r = runc();
    srv.add(&r.path, r.bytes.clone());
    let a = pin(&r, &srv.base());
    let mut b = a.clone();
    b.component = "runc-again".into();
    let c = cni();
    srv.add(&c.path, c.bytes.clone());
    let cc = pin(&c, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(&[a.clone(), cc.clone(), b.clone()], &opts(cache.path())).unwrap();
    assert_eq!(srv.hits(&r.path), 1);
    assert_eq!(got[0].artifact, a);
    assert_eq!(got[1].artifact, cc);
    assert_eq!(got[2].artifact, b);
    assert_eq!(got[0].path, got[2].path);
}

#[test]
fn downloads_run_in_parallel_within_the_jobs_bound() {
    let srv = TestServer::start();
    let mut arts = Vec::new();
    for i in 0..8u64 {
        let bytes = generated_bytes(100 + i, 256 * 1024);
        let path = format!("/kubernetes/release/v1.30.{i}/bin/linux/arm64/kubelet");
        srv.add_with(
            &path,
            bytes.clone(),
            Behaviour {
                pace: Some(Duration::from_millis(50)),
                ..Behaviour::default()
            },
        );
        arts.push(Artifact {
            component: format!("kubelet-{i}"),
            version: format!("1.30.{i}"),
            url: srv.url(&path),
            file_name: "kubelet".into(),
            digest: hash_reader(Algo::Sha256, &bytes[..]).unwrap(),
            size: None,
        });
    }
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.jobs = 3;
    resolve(&arts, &o).unwrap();
    assert_eq!(srv.total_hits(), 8);
    let max = srv.max_concurrent();
    assert!(max <= 3, "{max} requests at once with jobs = 3");
    assert!(max >= 2, "downloads did not overlap (max {max})");
}

#[test]
fn every_failure_of_a_parallel_run_is_reported() {
    let srv = TestServer::start();
    let fxs = [containerd(), runc(), cni()];
    srv.add(&fxs[2].path, fxs[2].bytes.clone());
    let arts: Vec<Artifact> = fxs.iter().map(|f| pin(f, &srv.base())).collect();
    let cache = tempfile::tempdir().unwrap();
    let err = format!("{:#}", resolve(&arts, &opts(cache.path())).unwrap_err());
    assert!(
        err.starts_with("could not fetch 2 of 3 artifacts:"),
        "{err}"
    );
    for a in &arts[..2] {
        let line = format!(
            "\n  - {} {}: not found (HTTP 404 Not Found) for {}\n",
            a.component, a.version, a.url
        );
        assert!(err.contains(&line), "no `{line}` in:\n{err}");
    }
    // The one that worked is verified and kept.
    assert_eq!(files_in(cache.path()), entries(&[&arts[2]]));
}

#[test]
fn mirror_url_keeps_the_upstream_host_and_path() {
    let up = "https://github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz";
    assert_eq!(
        mirror_url("http://127.0.0.1:8080/m", up).unwrap(),
        "http://127.0.0.1:8080/m/github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz"
    );
    assert_eq!(
        mirror_url(
            "https://files.example/repo/",
            "https://dl.k8s.io/release/v1.30.0/bin/linux/arm64/kubelet"
        )
        .unwrap(),
        "https://files.example/repo/dl.k8s.io/release/v1.30.0/bin/linux/arm64/kubelet"
    );
    assert_eq!(
        mirror_url("file:///srv/mirror", "http://127.0.0.1:9000/a/b.tgz").unwrap(),
        "file:///srv/mirror/127.0.0.1:9000/a/b.tgz"
    );
    let e = mirror_url("ftp://m/", up).unwrap_err().to_string();
    assert!(e.contains("mirror `ftp://m/` must be"), "{e}");
    let e = mirror_url("http://m", "https://x.io/a?raw=true")
        .unwrap_err()
        .to_string();
    assert!(e.contains("query"), "{e}");
    let e = mirror_url("http://m", "not a url").unwrap_err().to_string();
    assert!(e.contains("upstream URL `not a url`"), "{e}");
}

#[test]
fn tls_refused_and_unresolvable_sources_are_not_retried() {
    let (c, r, n) = (containerd(), runc(), cni());
    // A server that does not speak TLS (it answers the handshake as plain HTTP does, with a
    // 400), a port nobody listens on, a name that does not resolve.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in plain.incoming().flatten() {
            use std::io::Write as _;
            let mut conn = conn;
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let arts = [
        pin(&c, &format!("https://{plain_addr}")),
        pin(&r, &format!("http://127.0.0.1:{closed}")),
        pin(&n, "http://x.invalid"),
    ];
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.retry_backoff = Duration::from_secs(5);
    let err = format!("{:#}", resolve(&arts, &o).unwrap_err());
    // A retried failure would end in "gave up after N attempts" (and wait 5 s per retry).
    assert!(
        !err.contains("gave up after"),
        "something was retried: {err}"
    );
    for (a, why) in arts.iter().zip([
        "TLS handshake with 127.0.0.1 failed: ",
        "connection refused by 127.0.0.1 for ",
        "DNS lookup of x.invalid failed for ",
    ]) {
        let line = format!("\n  - {} {}: {why}", a.component, a.version);
        assert!(err.contains(&line), "no `{line}` in:\n{err}");
        assert_eq!(err.matches(&a.url).count(), 1, "the URL once: {err}");
    }
}
