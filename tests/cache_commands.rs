//! `imagegen cache list` and `imagegen cache prune` over a real cache: entries named by what a
//! profile pins them as, partial downloads, files of older versions, the total; pruning what no
//! given profile pins, and never what a running imagegen holds (its per-artifact lock).

mod common;

use std::path::Path;

use common::{mirror, Test};
use sha2::{Digest as _, Sha256};

/// Puts `data` into the cache as the entry of its sha256; returns the hex.
fn add_entry(cache: &Path, data: &[u8]) -> String {
    let hex = hex::encode(Sha256::digest(data));
    fs_err::create_dir_all(cache.join("sha256")).unwrap();
    fs_err::write(cache.join("sha256").join(&hex), data).unwrap();
    hex
}

#[test]
fn list_and_prune() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let cache = t.cache();
    let fetch = t
        .clone()
        .args(["fetch", "-q", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .args(["--mirror", &m.file_url()])
        .run()
        .success();
    assert!(
        fetch.stdout().starts_with("8 artifacts for amd64"),
        "{}",
        fetch.stdout()
    );
    // Beside the fetched entries: one no profile pins, one a running imagegen holds, a partial
    // download of a run that is gone, and files of older versions.
    let unpinned = add_entry(&cache, b"a file nobody pins\n");
    let held = add_entry(&cache, b"a file a running imagegen works on\n");
    let lock = fs_err::File::create(cache.join(format!("tmp/sha256-{held}.lock"))).unwrap();
    lock.file().lock().unwrap();
    let containerd = hex::encode(Sha256::digest(&m.files[0].1));
    fs_err::write(
        cache.join(format!("tmp/sha256-{containerd}.part")),
        &m.files[0].1[..100],
    )
    .unwrap();
    fs_err::write(cache.join(format!("sha256/{unpinned}.verified")), "ok\n").unwrap();
    fs_err::write(
        cache.join(format!("sha256/.{}.stamp", "ab".repeat(32))),
        "{}\n",
    )
    .unwrap();

    let list = |t: &Test| {
        t.clone()
            .args(["cache", "list", "--profile"])
            .arg(&m.profile)
            .run()
            .success()
    };
    let before = list(&t);
    insta::assert_snapshot!("list", before.normalize(before.stdout()));

    // A dry run says what would go and removes nothing.
    let dry = t
        .clone()
        .args(["cache", "prune", "--dry-run", "--profile"])
        .arg(&m.profile)
        .run()
        .success();
    insta::assert_snapshot!("prune-dry-run", dry.normalize(dry.stdout()));
    assert_eq!(list(&t).stdout(), before.stdout());

    let pruned = t
        .clone()
        .args(["cache", "prune", "--profile"])
        .arg(&m.profile)
        .run()
        .success();
    insta::assert_snapshot!("prune", pruned.normalize(pruned.stdout()));
    assert!(!cache.join("sha256").join(&unpinned).exists());
    assert!(cache.join("sha256").join(&held).exists(), "held: kept");
    let after = list(&t);
    insta::assert_snapshot!("list-after-prune", after.normalize(after.stdout()));

    // Everything the profile pinned is still there: an offline build needs nothing else.
    t.clone()
        .args(["fetch", "-q", "--offline", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .run()
        .success();

    // --all removes the pinned entries too, but still not the held one; once it is let go,
    // that goes as well.
    let all = t.clone().args(["cache", "prune", "--all"]).run().success();
    assert!(
        all.stdout().contains("removed 8 entries"),
        "{}",
        all.stdout()
    );
    assert!(cache.join("sha256").join(&held).exists());
    drop(lock);
    let all = t.clone().args(["cache", "prune", "--all"]).run().success();
    assert!(all.stdout().contains("removed 1 entry"), "{}", all.stdout());
    let empty = t.clone().args(["cache", "list"]).run().success();
    assert_eq!(empty.normalize(empty.stdout()), "[CACHE]: empty\n");
}

#[test]
fn a_cache_that_does_not_exist_is_listed_empty_and_left_alone() {
    let t = Test::new();
    let out = t.clone().args(["cache", "list"]).run().success();
    assert_eq!(out.normalize(out.stdout()), "[CACHE]: empty\n");
    let out = t.clone().args(["cache", "prune"]).run().success();
    assert!(
        out.stdout().contains("removed 0 entries"),
        "{}",
        out.stdout()
    );
    assert!(!t.cache().exists());
}
