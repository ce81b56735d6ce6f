//! Flaky servers: 5xx retried within the budget, dropped connections resumed with `Range` (or
//! restarted when ranges do not work), stalls timed out.

use std::time::Duration;

use imagegen::resolve::resolve;

use crate::common::http::{Behaviour, Ranges, TestServer};
use crate::fixtures::*;

#[test]
fn server_errors_are_retried_then_succeed() {
    let srv = TestServer::start();
    let c = containerd();
    srv.add_with(
        &c.path,
        c.bytes.clone(),
        Behaviour {
            fail_500: 2,
            ..Behaviour::default()
        },
    );
    let art = pin(&c, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(&[art], &opts(cache.path())).unwrap();
    assert_eq!(srv.statuses(&c.path), [500, 500, 200]);
    assert_eq!(fs_err::read(&got[0].path).unwrap(), c.bytes);
}

#[test]
fn server_errors_beyond_the_retry_budget_fail() {
    let srv = TestServer::start();
    let c = containerd();
    srv.add_with(
        &c.path,
        c.bytes.clone(),
        Behaviour {
            fail_500: 100,
            ..Behaviour::default()
        },
    );
    let art = pin(&c, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap_err()
    );
    assert!(
        err.contains(&format!(
            "containerd 1.7.20: gave up after 3 attempts: server answered HTTP 500 Internal Server Error for {}",
            art.url
        )),
        "{err}"
    );
    assert_eq!(srv.hits(&c.path), 3);
    assert!(files_in(cache.path()).is_empty());
}

#[test]
fn dropped_connection_resumes_with_a_range_request() {
    let srv = TestServer::start();
    let c = containerd();
    srv.add_with(
        &c.path,
        c.bytes.clone(),
        Behaviour {
            drop_after: Some(100_000),
            ..Behaviour::default()
        },
    );
    let art = pin(&c, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_eq!(
        requests(&srv, &c.path),
        [(None, 200), (Some("bytes=100000-".to_string()), 206)]
    );
    assert_eq!(fs_err::read(&got[0].path).unwrap(), c.bytes);
    assert_eq!(files_in(cache.path()), entries(&[&art]));
}

#[test]
fn dropped_connection_restarts_cleanly_without_working_ranges() {
    let srv = TestServer::start();
    let (c, r) = (containerd(), runc());
    // Advertises ranges but answers 200 with the whole file: the client must start over.
    srv.add_with(
        &c.path,
        c.bytes.clone(),
        Behaviour {
            drop_after: Some(100_000),
            ranges: Ranges::Ignore,
            ..Behaviour::default()
        },
    );
    // No Accept-Ranges: the client must not even ask for a range.
    srv.add_with(
        &r.path,
        r.bytes.clone(),
        Behaviour {
            drop_after: Some(50_000),
            ranges: Ranges::NotAdvertised,
            ..Behaviour::default()
        },
    );
    let arts = [pin(&c, &srv.base()), pin(&r, &srv.base())];
    let cache = tempfile::tempdir().unwrap();
    let got = resolve(&arts, &opts(cache.path())).unwrap();
    assert_eq!(
        requests(&srv, &c.path),
        [(None, 200), (Some("bytes=100000-".to_string()), 200)]
    );
    assert_eq!(requests(&srv, &r.path), [(None, 200), (None, 200)]);
    assert_eq!(fs_err::read(&got[0].path).unwrap(), c.bytes);
    assert_eq!(fs_err::read(&got[1].path).unwrap(), r.bytes);
    assert_eq!(files_in(cache.path()), entries(&[&arts[0], &arts[1]]));
}

#[test]
fn stalled_server_times_out_and_fails_after_retries() {
    let _load = alone();
    let srv = TestServer::start();
    let r = runc();
    srv.add_with(
        &r.path,
        r.bytes.clone(),
        Behaviour {
            stall: Some(Duration::from_secs(3)),
            ..Behaviour::default()
        },
    );
    let art = pin(&r, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.read_timeout = Duration::from_millis(300);
    o.retries = 1;
    let err = format!("{:#}", resolve(std::slice::from_ref(&art), &o).unwrap_err());
    assert!(
        err.contains("runc 1.1.13: gave up after 2 attempts: connection lost after 0 bytes"),
        "{err}"
    );
    assert!(err.contains("timed out"), "{err}");
    assert!(err.contains(&format!(" for {}", art.url)), "{err}");
    assert_eq!(srv.hits(&r.path), 2);
    assert!(files_in(cache.path()).is_empty());
}
