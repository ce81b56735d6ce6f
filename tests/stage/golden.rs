//! Golden overlays of each role, and what GNU cpio and bsdtar read back from them (the
//! readers themselves are in main.rs, shared with the streaming test).

use super::*;

#[test]
fn worker_overlay_golden() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    assert!(!overlay.reused);
    assert_eq!(overlay.archive, inp.archive("worker"));
    insta::assert_snapshot!(listing(&overlay), @r#"
    0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
    0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
    0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
    0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
    0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
    0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
    0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
    0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
    0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
    0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
    0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
    0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
    "#);
    insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:d345db859ab125ca53eecea509be54cdb5221c4001959b2e695a44db25a31817"#);
    check_tree(&inp.overlay_root("worker"), &overlay);
    check_readers(&overlay);
}

#[test]
fn control_overlay_golden() {
    let inp = upstream();
    let overlay = inp.stage("control", &control_rules(), MTIME).unwrap();
    insta::assert_snapshot!(listing(&overlay), @r#"
    0755  5021 5a7768949dbdd4d4da08e410752a71d20735d945106cc423cf068249ae4e35f8 /bin/containerd
    0755  3015 e8f5eb84a645fd157fb22cd63c8f44cbf4892dd707897830fefb34b37042c6c7 /bin/containerd-shim-runc-v2
    0755  2017 e3007ebe1f2f98de1834d9c7dd2dc35a916a495bc9400faffdc9ed68f0a4584b /bin/containerd-stress
    0755  4014 ba9a5675d21262c839733d471d2835e7b7686ac5dac10c8f68e554e88a407c8b /bin/ctr
    0755  1517 122535f654237545eb2f490c82bc78e07d12ba5e8378b8c68f5e30aaa00874b5 /opt/cni/bin/bridge
    0755  1221 704abfcba74f107d0a52f075238ad5d7a1fedd0f724136a1ee0e9f42fcac1d17 /opt/cni/bin/host-local
    0755   919 987f81ec9c29ac83ff0cf6f006d46c814c65230dfefd58969372406017aae210 /opt/cni/bin/loopback
    0755  1118 389925af3145c28b4ecdbf22c2c9af9d3ac14ebe819d31523666074f1ff09656 /opt/cni/bin/portmap
    0755  3517 543b030924b30ed0658948ab993e3c1185d5dea1f8085eab93c536e6f3102ecd /usr/local/bin/crictl
    0755  5515 c37f7adcf0ef5c0229ecf51b3969fad8e62c7e47e94d0680e9fef148e7c097d0 /usr/local/bin/etcd
    0755  3318 c9701df9a8c47808e47eff2918d05f1859e6aee4e21fa00212c6373d84e7eb7e /usr/local/bin/etcdctl
    0755  4521 5573700c42de13d8ab3c2a2482570d2135956cb539e4919ad066153e5441a74a /usr/local/bin/kube-proxy
    0755  6018 e41056932e0d4f311e07565dc158ab972b72d6018c24161b3c4b9c0752092e18 /usr/local/bin/kubelet
    0755  2815 a1d5150a647c2855ccaf04505dcb9daf796e0ad12b8bb65fb5826ae6f98a777e /usr/local/bin/runc
    "#);
    insta::assert_snapshot!(overlay.archive_sha256.to_string(), @r#"sha256:ed63e6a3469369b262c53476d2d3a3feba253f46f09cf8412265193066293e6c"#);
    check_tree(&inp.overlay_root("control"), &overlay);
    check_readers(&overlay);
}

#[test]
fn gnu_cpio_keeps_merged_usr_symlinks() {
    let inp = upstream();
    let overlay = inp.stage("worker", &worker_rules(), MTIME).unwrap();
    let node = TempDir::new().unwrap();
    let root = node.path();
    fs_err::create_dir_all(root.join("usr/bin")).unwrap();
    fs_err::write(root.join("usr/bin/sh"), "#!shell").unwrap();
    fs_err::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    run(
        "gzip -dc \"$1\" | cpio -idmu --quiet",
        &overlay.archive,
        root,
    );

    assert!(fs_err::symlink_metadata(root.join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(root.join("usr/bin/sh").is_file());
    let containerd = fs_err::symlink_metadata(root.join("usr/bin/containerd")).unwrap();
    assert!(containerd.is_file());
    assert_eq!(containerd.mode() & 0o7777, 0o755);
    assert_eq!(containerd.mtime() as u64, MTIME);
    assert_eq!((containerd.uid(), containerd.gid()), (0, 0));
    for path in [
        "usr/local/bin/kubelet",
        "opt/cni/bin/bridge",
        "usr/local/bin/runc",
    ] {
        assert!(root.join(path).is_file(), "{path}");
    }

    // The premise, shown with GNU cpio's own writer: a `bin` directory entry does replace the
    // symlink, so the check above would catch an archive with directory entries.
    let other = TempDir::new().unwrap();
    fs_err::create_dir_all(other.path().join("usr/bin")).unwrap();
    fs_err::os::unix::fs::symlink("usr/bin", other.path().join("bin")).unwrap();
    let with_dirs = node.path().join("with-dirs.cpio");
    let out = Command::new("sh")
        .args([
            "-ec",
            "cd \"$1\" && printf 'bin\\nbin/containerd\\n' | cpio -o -H newc --quiet > \"$2\"",
        ])
        .arg("sh")
        .arg(inp.overlay_root("worker"))
        .arg(&with_dirs)
        .status()
        .unwrap();
    assert!(out.success());
    run("cpio -idmu --quiet < \"$1\"", &with_dirs, other.path());
    assert!(!fs_err::symlink_metadata(other.path().join("bin"))
        .unwrap()
        .file_type()
        .is_symlink());
}
