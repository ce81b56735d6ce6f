//! `imagegen pin`: a fake newer release on the loopback server (release files and the checksum
//! files their projects publish beside them, in the upstream layout behind `--mirror`) is
//! pinned, the profile changes in exactly its version, digest and size values, and a build
//! then uses the new files; a checksum file that disagrees with its file is refused and changes
//! nothing; `--check` lists newer releases from the release feeds, and says when it cannot
//! reach them.
//!
//! Every run has its proxies pointed at a closed port (the loopback server exempt), so a test
//! that went past the mirror fails fast instead of reaching the real upstream.

mod common;

use std::net::TcpListener;

use sha2::{Digest as _, Sha256, Sha512};

use common::archive::TarGz;
use common::http::TestServer;
use common::*;

/// The proxy of every run: a loopback port nothing listens on.
fn proxy() -> &'static str {
    static PROXY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROXY.get_or_init(|| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    })
}

/// `t` with every proxy the closed [`proxy`], except for the loopback server.
fn sealed(t: &Test) -> Test {
    let mut t = t.clone();
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        t = t.env(var, proxy());
    }
    t.env("NO_PROXY", "127.0.0.1").env("no_proxy", "127.0.0.1")
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn sha512(data: &[u8]) -> String {
    hex::encode(Sha512::digest(data))
}

/// A stand-in executable of a release.
fn exe(name: &str, version: &str, arch: &str) -> Vec<u8> {
    format!("#!/bin/sh\necho \"{name} {version} {arch} stand-in $*\"\n").into_bytes()
}

/// The mirror of the test (served at `/` in the upstream layout) and a fake containerd 1.7.99
/// and Kubernetes 1.31.99 for both architectures, each with the checksum files its project
/// publishes: containerd `<file>.sha256sum` lines, dl.k8s.io a bare `<file>.sha512`.
/// Returns the new files, by upstream path.
fn serve_release(srv: &TestServer, m: &mirror::Mirror) -> Vec<(String, Vec<u8>)> {
    for (path, data) in &m.files {
        srv.add(&format!("/{path}"), data.clone());
    }
    let mut new = Vec::new();
    for arch in ["arm64", "amd64"] {
        let name = format!("containerd-1.7.99-linux-{arch}.tar.gz");
        let data = TarGz::new()
            .dir("bin/")
            .file("bin/containerd", exe("containerd", "1.7.99", arch))
            .file("bin/containerd-shim-runc-v2", exe("shim", "1.7.99", arch))
            .file("bin/ctr", exe("ctr", "1.7.99", arch))
            .finish();
        let path = format!("github.com/containerd/containerd/releases/download/v1.7.99/{name}");
        srv.add(
            &format!("/{path}.sha256sum"),
            format!("{}  {name}\n", sha256(&data)).into_bytes(),
        );
        new.push((path, data));
        for (part, bins) in [
            ("node", &["kubelet", "kube-proxy", "kubeadm"][..]),
            (
                "server",
                &[
                    "kube-apiserver",
                    "kube-controller-manager",
                    "kube-scheduler",
                    "kubectl",
                    "kubeadm",
                ],
            ),
        ] {
            let mut tar = TarGz::new();
            for b in bins {
                tar = tar.file(
                    &format!("kubernetes/{part}/bin/{b}"),
                    exe(b, "1.31.99", arch),
                );
            }
            let data = tar.finish();
            let path = format!("dl.k8s.io/v1.31.99/kubernetes-{part}-linux-{arch}.tar.gz");
            srv.add(
                &format!("/{path}.sha512"),
                format!("{}\n", sha512(&data)).into_bytes(),
            );
            new.push((path, data));
        }
    }
    for (path, data) in &new {
        srv.add(&format!("/{path}"), data.clone());
    }
    new
}

/// The digest pinned for the file at the end of `path` among `files`, as the profile writes it.
fn digest_of(files: &[(String, Vec<u8>)], path_end: &str) -> String {
    let data = &files.iter().find(|(p, _)| p.ends_with(path_end)).unwrap().1;
    if path_end.contains("kubernetes") {
        format!("sha512:{}", sha512(data))
    } else {
        format!("sha256:{}", sha256(data))
    }
}

/// The profile's digest line for `component` and `arch` (the mirror's profile pins the real
/// upstream arm64 digests and the mirror's amd64 ones).
fn pinned(profile: &str, component: &str, arch: &str) -> String {
    let mut in_component = false;
    for line in profile.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            in_component = line.trim_start().starts_with(&format!("{component}:"));
        }
        if in_component {
            if let Some(d) = line.trim().strip_prefix(&format!("{arch}: ")) {
                return d.to_string();
            }
        }
    }
    panic!("no {component} {arch} digest in the profile")
}

fn normalize(text: &str, srv: &TestServer) -> String {
    text.replace(&srv.authority(), "127.0.0.1:[PORT]")
        .replace(proxy(), "http://127.0.0.1:[PROXY]")
}

#[test]
fn pin_rewrites_only_versions_and_digests_and_the_build_uses_the_new_release() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| {
        // A comment, and an exact size that must follow the new file.
        p.replace(
            "  containerd:\n",
            "  containerd:   # the runtime; pinned by imagegen pin\n",
        )
        .replace(
            "containerd-{version}-linux-{arch}.tar.gz\n",
            "containerd-{version}-linux-{arch}.tar.gz\n    sizes: { amd64: 1 }   # bytes\n",
        )
    });
    let srv = TestServer::start();
    let new = serve_release(&srv, &m);
    let before = fs_err::read_to_string(&m.profile).unwrap();
    let pin = |args: &[&str]| {
        sealed(&t)
            .args(["pin"])
            .args(args)
            .arg("--profile")
            .arg(&m.profile)
            .args(["--mirror", &srv.base(), "--quiet"])
            .run()
            .success()
    };

    let o = pin(&["containerd", "v1.7.99"]);
    insta::assert_snapshot!("pin-containerd", normalize(&o.normalize(o.stdout()), &srv));
    let o = pin(&["kubernetes", "1.31.99", "--dry-run"]);
    assert!(
        o.normalize(o.stdout())
            .ends_with("dry run: [TEMP]/profile.yaml not changed\n"),
        "{}",
        o.stdout()
    );
    let o = pin(&["kubernetes", "1.31.99"]);
    assert!(
        o.stdout().contains("kubernetes-node 1.31.0 -> 1.31.99"),
        "{}",
        o.stdout()
    );
    assert!(
        o.stdout().contains("kubernetes-server 1.31.0 -> 1.31.99"),
        "{}",
        o.stdout()
    );

    // Byte for byte the old profile, but for the version and digest values.
    let mut want = before
        .replace("    version: 1.7.20\n", "    version: 1.7.99\n")
        .replace("    version: 1.31.0\n", "    version: 1.31.99\n");
    for (component, file) in [
        ("containerd", "containerd-1.7.99-linux-{arch}.tar.gz"),
        ("kubernetes-node", "kubernetes-node-linux-{arch}.tar.gz"),
        ("kubernetes-server", "kubernetes-server-linux-{arch}.tar.gz"),
    ] {
        for arch in ["arm64", "amd64"] {
            let old = pinned(&before, component, arch);
            let path = file.replace("{arch}", arch);
            want = want.replace(&old, &digest_of(&new, &path));
        }
    }
    let size = new
        .iter()
        .find(|(p, _)| p.ends_with("containerd-1.7.99-linux-amd64.tar.gz"))
        .unwrap()
        .1
        .len();
    let want = want.replace(
        "sizes: { amd64: 1 }",
        &format!("sizes: {{ amd64: {size} }}"),
    );
    assert!(want.contains(&format!("sizes: {{ amd64: {size} }}   # bytes")));
    assert_eq!(fs_err::read_to_string(&m.profile).unwrap(), want);

    // The build takes the new files from the cache the pin filled.
    let hits = srv.total_hits();
    let out = t.temp().join("out");
    build_fixed(&sealed(&t), &m.profile, "amd64", &out)
        .args(["--mirror", &srv.base(), "--quiet", "--no-iso"])
        .run()
        .success();
    let installed = |p: &str| fs_err::read_to_string(out.join("amd64/overlay").join(p)).unwrap();
    assert!(installed("worker/bin/containerd").contains("containerd 1.7.99 amd64"));
    assert!(installed("worker/usr/local/bin/kubelet").contains("kubelet 1.31.99 amd64"));
    assert!(
        installed("control/usr/local/bin/kube-apiserver").contains("kube-apiserver 1.31.99 amd64")
    );
    assert_eq!(
        srv.total_hits() - hits,
        4,
        "the build fetched only what the pin did not (runc, crictl, CNI, etcd): {:?}",
        &srv.log()[hits..]
    );
}

#[test]
fn a_checksum_file_that_disagrees_with_its_file_is_refused() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let srv = TestServer::start();
    serve_release(&srv, &m);
    // The amd64 checksum file names another file's digest.
    let name = "containerd-1.7.99-linux-amd64.tar.gz";
    srv.add(
        &format!("/github.com/containerd/containerd/releases/download/v1.7.99/{name}.sha256sum"),
        format!("{}  {name}\n", sha256(b"something else")).into_bytes(),
    );
    let before = fs_err::read(&m.profile).unwrap();
    let o = sealed(&t)
        .args(["pin", "containerd", "1.7.99", "--profile"])
        .arg(&m.profile)
        .args(["--mirror", &srv.base(), "--quiet"])
        .run()
        .code(1);
    insta::assert_snapshot!("pin-checksum-disagrees", normalize(&o.snapshot(), &srv));
    assert_eq!(
        fs_err::read(&m.profile).unwrap(),
        before,
        "the profile changed"
    );
    // Nothing unverified went into the cache either.
    let cached = common::fs::files_under(&t.cache().join("sha256"));
    assert!(
        cached
            .iter()
            .all(|f| !f.to_string_lossy().contains(&sha256(b"something else"))),
        "{cached:?}"
    );

    // --trust-sums takes the file at its word and downloads nothing.
    let hits = srv.hits(&format!(
        "/github.com/containerd/containerd/releases/download/v1.7.99/{name}"
    ));
    sealed(&t)
        .args(["pin", "containerd", "1.7.99", "--trust-sums", "--profile"])
        .arg(&m.profile)
        .args(["--mirror", &srv.base(), "--quiet"])
        .run()
        .success();
    assert_eq!(
        srv.hits(&format!(
            "/github.com/containerd/containerd/releases/download/v1.7.99/{name}"
        )),
        hits
    );
    assert!(fs_err::read_to_string(&m.profile)
        .unwrap()
        .contains(&format!("amd64: sha256:{}", sha256(b"something else"))));
}

#[test]
fn pin_usage_errors_change_nothing() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let before = fs_err::read(&m.profile).unwrap();
    let profile = m.profile.to_str().unwrap();
    let mut out = String::new();
    for args in [
        &["pin", "containerd", "1.7.99"][..],
        &["pin", "kubernetes-node", "1.32.0", "--profile", profile],
        &["pin", "containred", "1.7.99", "--profile", profile],
        &["pin", "containerd", "latest", "--profile", profile],
        &[
            "pin",
            "containerd",
            "1.7.99",
            "--arch",
            "arm64",
            "--profile",
            profile,
        ],
        &[
            "pin",
            "containerd",
            "1.7.99",
            "--offline",
            "--profile",
            profile,
        ],
    ] {
        let o = sealed(&t).args(args).run().code(1);
        out.push_str(&o.normalize(&format!("$ imagegen {}\n{}\n", args.join(" "), o.stderr())));
    }
    insta::assert_snapshot!("pin-usage-errors", out);
    assert_eq!(fs_err::read(&m.profile).unwrap(), before);
}

/// A release feed's files in the upstream layout, under `root` (a directory) or on `srv`.
fn feeds() -> Vec<(&'static str, String)> {
    let gh = |tags: &[&str]| {
        let list: Vec<String> = tags
            .iter()
            .map(|t| {
                let pre = t.contains("-rc");
                format!("{{\"tag_name\":\"{t}\",\"draft\":false,\"prerelease\":{pre}}}")
            })
            .collect();
        format!("[{}]", list.join(","))
    };
    vec![
        (
            "api.github.com/repos/containerd/containerd/releases",
            gh(&["v2.1.0-rc.1", "v2.0.5", "v1.7.99", "v1.7.20"]),
        ),
        (
            "api.github.com/repos/opencontainers/runc/releases",
            gh(&["v1.1.13", "v1.1.12"]),
        ),
        (
            "api.github.com/repos/kubernetes-sigs/cri-tools/releases",
            gh(&["v1.32.0", "v1.31.1"]),
        ),
        (
            "api.github.com/repos/containernetworking/plugins/releases",
            gh(&["v1.5.1"]),
        ),
        ("dl.k8s.io/release/stable.txt", "v1.33.1\n".into()),
        ("dl.k8s.io/release/stable-1.31.txt", "v1.31.99\n".into()),
        (
            "cloud-images.ubuntu.com/releases/jammy/release/unpacked/build-info.txt",
            "build_name=server\nserial=20250601\n".into(),
        ),
    ]
}

#[test]
fn check_lists_newer_releases_and_says_what_it_cannot_reach() {
    let t = Test::new();
    let srv = TestServer::start();
    for (path, body) in feeds() {
        srv.add(&format!("/{path}"), body.into_bytes());
    }
    srv.add(
        "/api.github.com/repos/etcd-io/etcd/releases",
        b"[{\"tag_name\":\"v3.5.15\"}]".to_vec(),
    );
    let o = sealed(&t)
        .args(["pin", "--check", "--mirror", &srv.base(), "--quiet"])
        .run()
        .success();
    insta::assert_snapshot!("pin-check", o.stdout());

    // Offline, from a local mirror that lacks etcd's list, and with no mirror at all.
    let dir = t.temp().join("feeds");
    for (path, body) in feeds() {
        let p = dir.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, body).unwrap();
    }
    let o = sealed(&t)
        .args(["pin", "--check", "--offline", "--mirror", "feeds"])
        .run()
        .code(1);
    let o2 = sealed(&t)
        .args(["pin", "--check", "--offline"])
        .run()
        .code(1);
    insta::assert_snapshot!(
        "pin-check-unreachable",
        format!("{}\n{}", o.normalize(o.stdout()), o2.normalize(o2.stdout()))
    );
}
