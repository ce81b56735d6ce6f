//! The cache: entries are trusted by their stamp, re-hashed when touched, replaced when wrong,
//! and filled by `cache import` from files downloaded by hand.

use imagegen::digest::{hash_reader, Algo};
use imagegen::fsutil::stamp_path;
use imagegen::resolve::{import_files, resolve, Origin};

use crate::common::http::{generated_bytes, TestServer};
use crate::fixtures::*;

#[test]
fn corrupted_cache_entry_is_discarded_and_fetched_again() {
    let srv = TestServer::start();
    let c = containerd();
    srv.add(&c.path, c.bytes.clone());
    let art = pin(&c, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let first = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();

    let path = &first[0].path;
    let mut bytes = fs_err::read(path).unwrap();
    bytes[1000] ^= 0xff;
    fs_err::write(path, &bytes).unwrap();
    set_mtime(path, 1_000_000_000);

    let second = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_eq!(
        second[0].origin,
        Origin::Upstream {
            url: art.url.clone()
        }
    );
    assert_eq!(srv.hits(&c.path), 2);
    assert_eq!(fs_err::read(path).unwrap(), c.bytes);
    assert_eq!(files_in(cache.path()), entries(&[&art]));
}

#[test]
fn touched_but_intact_entry_is_rehashed_not_fetched() {
    let srv = TestServer::start();
    let r = runc();
    srv.add(&r.path, r.bytes.clone());
    let art = pin(&r, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let first = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    let stamp = stamp_path(&first[0].path);
    assert_eq!(
        stamp,
        cache
            .path()
            .join(format!("sha512/.{}.stamp", art.digest.hex()))
    );
    let before = fs_err::read_to_string(&stamp).unwrap();
    set_mtime(&first[0].path, 1_000_000_000);

    let second = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_eq!(second[0].origin, Origin::Cache);
    assert_eq!(srv.hits(&r.path), 1);
    let after = fs_err::read_to_string(&stamp).unwrap();
    assert_ne!(before, after);
    let recorded: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(recorded["mtime_secs"], 1_000_000_000, "{after}");
}

#[test]
fn an_entry_without_a_stamp_is_rehashed_once_and_an_old_verified_file_is_ignored() {
    let srv = TestServer::start();
    let r = runc();
    srv.add(&r.path, r.bytes.clone());
    let art = pin(&r, &srv.base());
    let cache = tempfile::tempdir().unwrap();
    let first = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    // As an older imagegen left it: the entry with a `<hex>.verified` beside it, and no stamp.
    let stamp = stamp_path(&first[0].path);
    fs_err::remove_file(&stamp).unwrap();
    let old = cache
        .path()
        .join(format!("sha512/{}.verified", art.digest.hex()));
    fs_err::write(&old, r#"{"size":1,"mtime_secs":0,"mtime_nanos":0}"#).unwrap();

    let second = resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_eq!(second[0].origin, Origin::Cache);
    assert_eq!(srv.hits(&r.path), 1);
    let written = fs_err::metadata(&stamp).unwrap().modified().unwrap();
    // Re-hashed once: the stamp is trusted from now on and not written again.
    resolve(std::slice::from_ref(&art), &opts(cache.path())).unwrap();
    assert_eq!(
        fs_err::metadata(&stamp).unwrap().modified().unwrap(),
        written
    );
    assert!(old.is_file(), "left alone");
}

#[test]
fn import_matches_sha256_and_sha512_pins_and_rejects_strangers() {
    let (c, r) = (containerd(), runc());
    let mut r256 = pin(&r, "https://github.com");
    r256.component = "runc-sha256".into();
    r256.digest = hash_reader(Algo::Sha256, &r.bytes[..]).unwrap();
    let pins = [
        pin(&c, "https://github.com"),
        pin(&r, "https://github.com"),
        r256,
    ];
    let downloads = tempfile::tempdir().unwrap();
    let cfile = downloads
        .path()
        .join("containerd-1.7.20-linux-arm64.tar.gz");
    let rfile = downloads.path().join("runc.arm64");
    let stranger = downloads.path().join("runc.amd64");
    fs_err::write(&cfile, &c.bytes).unwrap();
    fs_err::write(&rfile, &r.bytes).unwrap();
    fs_err::write(&stranger, generated_bytes(99, 1000)).unwrap();
    let cache = tempfile::tempdir().unwrap();

    let got = import_files(cache.path(), &[cfile.clone(), rfile.clone()], &pins).unwrap();
    // runc matches both its sha512 pin and the sha256 one: stored under both digests.
    assert_eq!(
        got,
        [
            (cfile.clone(), pins[0].clone()),
            (rfile.clone(), pins[1].clone()),
            (rfile.clone(), pins[2].clone())
        ]
    );
    let all = entries(&[&pins[0], &pins[1], &pins[2]]);
    assert_eq!(files_in(cache.path()), all);

    let mut o = opts(cache.path());
    o.offline = true;
    let res = resolve(&pins, &o).unwrap();
    assert!(res.iter().all(|r| r.origin == Origin::Cache));

    let err = format!(
        "{:#}",
        import_files(cache.path(), &[stranger.clone(), cfile.clone()], &pins).unwrap_err()
    );
    assert!(
        err.contains("1 of 2 file(s) match no pinned artifact"),
        "{err}"
    );
    assert!(err.contains(&stranger.display().to_string()), "{err}");
    assert!(!err.contains(&format!("- {} (", cfile.display())), "{err}");
    assert_eq!(files_in(cache.path()), all);
}
