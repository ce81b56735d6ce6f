//! Large files: streamed in bounded memory, and fetched over several ranged connections when
//! the server allows it (resumed, refused, failing and verified like any other download).

use std::collections::BTreeSet;
use std::time::Duration;

use imagegen::digest::{hash_reader, Algo};
use imagegen::plan::Artifact;
use imagegen::resolve::{resolve, Origin};

use crate::common::http::{Behaviour, Body, GeneratedReader, Ranges, TestServer};
use crate::fixtures::*;

#[cfg(target_os = "linux")]
fn status_kib(field: &str) -> u64 {
    let s = fs_err::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn a_large_download_is_streamed_in_bounded_memory() {
    // RSS is the whole test process's: nothing else heavy may run meanwhile.
    let _load = alone();
    const LEN: u64 = 200 * 1024 * 1024;
    let srv = TestServer::start();
    let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
    srv.add_body(
        path,
        Body::Generated { len: LEN, seed: 42 },
        Behaviour::default(),
    );
    let digest = hash_reader(
        Algo::Sha256,
        GeneratedReader {
            seed: 42,
            pos: 0,
            len: LEN,
        },
    )
    .unwrap();
    let art = Artifact {
        component: "kubernetes-node".into(),
        version: "1.30.0".into(),
        url: srv.url(path),
        file_name: "kubernetes-node-linux-arm64.tar.gz".into(),
        digest,
        size: None,
    };
    let cache = tempfile::tempdir().unwrap();
    // "5" resets VmHWM to the current RSS, so the peak below is this download's.
    let reset = fs_err::write("/proc/self/clear_refs", "5").is_ok();
    let base = if reset {
        status_kib("VmRSS:")
    } else {
        status_kib("VmHWM:")
    };
    let got = resolve(&[art], &opts(cache.path())).unwrap();
    let peak = status_kib("VmHWM:");
    assert_eq!(fs_err::metadata(&got[0].path).unwrap().len(), LEN);
    let grew_mib = peak.saturating_sub(base) / 1024;
    eprintln!("peak RSS grew by {grew_mib} MiB during a 200 MiB download");
    assert!(
        grew_mib < 64,
        "peak RSS grew by {grew_mib} MiB for a 200 MiB download"
    );
}

#[test]
fn a_large_file_is_fetched_over_several_ranged_connections_from_one_mirror() {
    let _load = heavy();
    let upstream = TestServer::start();
    let mirror = TestServer::start();
    let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
    let art = big_file(&upstream, path, 7, BIG, paced());
    let on_mirror = format!("/m/{}{path}", upstream.authority());
    big_file(&mirror, &on_mirror, 7, BIG, paced());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.mirrors = vec![mirror.url("/m")];

    let got = resolve(std::slice::from_ref(&art), &o).unwrap();
    assert_eq!(
        got[0].origin,
        Origin::Mirror {
            url: mirror.url(&on_mirror)
        }
    );
    assert_len(&got[0].path, BIG);
    assert_eq!(files_in(cache.path()), entries(&[&art]));
    assert_eq!(
        upstream.total_hits(),
        0,
        "every piece comes from the mirror"
    );

    let reqs = requests(&mirror, &on_mirror);
    assert_eq!(reqs[0], (None, 200), "{reqs:?}");
    let ranges = ranges_served(&mirror, &on_mirror);
    assert_eq!(ranges.len(), reqs.len() - 1, "{reqs:?}");
    assert!(!ranges.is_empty(), "never split: {reqs:?}");
    let distinct: BTreeSet<_> = ranges.iter().collect();
    assert_eq!(distinct.len(), ranges.len(), "{reqs:?}");
    for &(a, b) in &ranges {
        assert!(a > 0 && a <= b && b < BIG, "{a}-{b}");
    }
    let max = mirror.max_concurrent_on(&on_mirror);
    assert!(
        max <= o.jobs,
        "{max} connections at once with jobs = {}",
        o.jobs
    );
    // The first stream holds its response open until the first ranged request answered.
    assert!(max >= 2, "pieces did not overlap: {reqs:?}");
}

#[test]
fn a_dropped_piece_and_a_dropped_first_stream_are_resumed() {
    let _load = heavy();
    let srv = TestServer::start();
    let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-amd64.tar.gz";
    let art = big_file(
        &srv,
        path,
        8,
        BIG,
        Behaviour {
            drop_after: Some(1_000_000),
            drop_partial_after: Some(3_000_000),
            ..paced()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_len(&got[0].path, BIG);
    assert_eq!(files_in(cache.path()), entries(&[&art]));

    let reqs = requests(&srv, path);
    assert_eq!(reqs[0], (None, 200), "{reqs:?}");
    // The first stream went on from where it stopped (its end may be lowered by then).
    assert!(
        reqs.iter().any(|(r, s)| *s == 206
            && r.as_deref()
                .is_some_and(|r| r.starts_with("bytes=1000000-"))),
        "{reqs:?}"
    );
    // One answer with 206 (a piece, or the first stream's resume) was cut after 3 MB and
    // asked for again from there.
    let ranges = ranges_served(&srv, path);
    assert!(
        ranges
            .iter()
            .any(|(a, _)| ranges.iter().any(|(b, _)| *b == a + 3_000_000)),
        "no range was resumed: {reqs:?}"
    );
    assert!(
        ranges
            .iter()
            .any(|(a, _)| *a != 1_000_000 && *a != 4_000_000),
        "never split: {reqs:?}"
    );
}

#[test]
fn a_server_that_ignores_ranges_gets_one_stream_per_file() {
    let _load = heavy();
    let srv = TestServer::start();
    let ignores = "/kubernetes/release/v1.30.0/kubernetes-server-linux-arm64.tar.gz";
    let silent = "/kubernetes/release/v1.30.0/kubernetes-client-linux-arm64.tar.gz";
    let len = 20 * 1024 * 1024;
    let a = big_file(
        &srv,
        ignores,
        9,
        len,
        Behaviour {
            ranges: Ranges::Ignore,
            // The first stream reaches the start of the range it gave away (~10 MiB, 0.3 s)
            // before the ranged request is answered: it must wait there, then go on.
            range_delay: Some(Duration::from_millis(1500)),
            ..paced()
        },
    );
    let b = big_file(
        &srv,
        silent,
        10,
        len,
        Behaviour {
            ranges: Ranges::NotAdvertised,
            ..paced()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(&[a.clone(), b.clone()], &opts(cache.path())).unwrap();
    assert_len(&got[0].path, len);
    assert_len(&got[1].path, len);
    assert_eq!(files_in(cache.path()), entries(&[&a, &b]));

    // One ranged request (answered with the whole file) showed ranges don't work; the first
    // stream then went on alone.
    let reqs = requests(&srv, ignores);
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0], (None, 200));
    assert_eq!(reqs[1].1, 200);
    assert!(reqs[1]
        .0
        .as_deref()
        .is_some_and(|r| r.starts_with("bytes=")));
    // Without Accept-Ranges nothing is even asked.
    assert_eq!(requests(&srv, silent), [(None, 200)]);
}

#[test]
fn digest_mismatch_on_a_split_download_keeps_nothing() {
    let _load = heavy();
    let srv = TestServer::start();
    let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
    let mut art = big_file(&srv, path, 11, BIG, paced());
    let actual = art.digest.clone();
    art.digest = hash_reader(Algo::Sha256, &b"something else"[..]).unwrap();
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
    assert!(!ranges_served(&srv, path).is_empty(), "{:?}", srv.log());
    assert!(
        files_in(cache.path()).is_empty(),
        "{:?}",
        files_in(cache.path())
    );
}

#[test]
fn a_failing_piece_fails_the_source_and_the_next_one_is_tried() {
    let _load = heavy();
    let upstream = TestServer::start();
    let mirror = TestServer::start();
    let path = "/kubernetes/release/v1.30.0/kubernetes-node-linux-arm64.tar.gz";
    let art = big_file(&upstream, path, 12, BIG, paced());
    // The mirror confirms ranges, then cuts that first piece off at once; without retries
    // this source fails as a whole and upstream serves the file.
    let on_mirror = format!("/m/{}{path}", upstream.authority());
    big_file(
        &mirror,
        &on_mirror,
        12,
        BIG,
        Behaviour {
            drop_partial_after: Some(0),
            ..paced()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.mirrors = vec![mirror.url("/m")];
    o.retries = 0;
    let got = resolve(std::slice::from_ref(&art), &o).unwrap();
    assert_eq!(
        got[0].origin,
        Origin::Upstream {
            url: art.url.clone()
        }
    );
    assert_len(&got[0].path, BIG);
    assert_eq!(files_in(cache.path()), entries(&[&art]));
    assert!(
        requests(&mirror, &on_mirror).contains(&(None, 200)),
        "{:?}",
        mirror.log()
    );
    assert!(
        !ranges_served(&mirror, &on_mirror).is_empty(),
        "{:?}",
        mirror.log()
    );
}

#[test]
fn several_large_files_share_the_jobs_budget() {
    let _load = heavy();
    let srv = TestServer::start();
    let len = 32 * 1024 * 1024;
    let arts: Vec<Artifact> = (0..3u64)
        .map(|i| {
            let path = format!("/kubernetes/release/v1.30.{i}/kubernetes-node.tar.gz");
            let mut a = big_file(&srv, &path, 20 + i, len, paced());
            a.component = format!("kubernetes-node-{i}");
            a
        })
        .collect();
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.jobs = 4;
    let got = resolve(&arts, &o).unwrap();
    for g in &got {
        assert_len(&g.path, len);
    }
    let ranged = srv.log().iter().filter(|h| h.range.is_some()).count();
    assert!(ranged >= 1, "no file was split: {:?}", srv.log());
    let max = srv.max_concurrent();
    assert!(max <= 4, "{max} connections at once with jobs = 4");
    assert!(max >= 2, "downloads did not overlap (max {max})");
}
