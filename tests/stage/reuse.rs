//! Packing: the same inputs give the same bytes, a stamp reuses the packed overlay, a failed
//! rebuild keeps the previous one, and files that changed while packing are refused.

use super::*;

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

    // The same size, other bytes, written after the stamp (a run killed between the archive's
    // rename and its stamp's): newer than the stamp, so hashed, and rebuilt.
    let archive = inp.archive("worker");
    let mut bytes = fs_err::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs_err::write(&archive, &bytes).unwrap();
    let again = inp.stage("worker", &rules, MTIME).unwrap();
    assert!(
        !again.reused,
        "a newer archive of the same size was trusted"
    );
    assert_eq!(again.archive_sha256, first.archive_sha256);
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
