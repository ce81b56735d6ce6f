//! `--payload fetch`: the node downloads and installs its binaries at first boot, keyed by
//! component. Two components whose URLs end in the same file name stay two downloads: the
//! generated first-boot script passes `sh -n`, and its download-and-install part, run against a
//! loopback server into a temporary root, installs each component's own files.

mod common;

use std::path::Path;
use std::process::Command;

use common::first_boot;
use common::http::TestServer;
use common::{build_fixed, mirror, Test};

/// The fetch payload of a user-data's first-boot script, downloads and installs, with every
/// node path under `root`.
fn payload_part(user_data: &str, root: &Path) -> String {
    first_boot::fetch_part(
        &first_boot::script(user_data),
        root,
        "\nrm -rf \"$work\"\n",
        true,
    )
}

/// Runs the payload part with `$ROOT` set to `root`.
fn run_payload(part: &str, root: &Path) -> std::process::Output {
    fs_err::create_dir_all(root.join("var/tmp")).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(part)
        .env("ROOT", root)
        .output()
        .unwrap()
}

#[test]
fn two_components_with_one_file_name_install_their_own_files() {
    let t = Test::new();
    let server = TestServer::start();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    m.serve_as_upstream(&server);
    // containerd and crictl are both published as `release.tar.gz`, in their own directories.
    m.edit_profile(|p| {
        p.replace(
            "download/v{version}/containerd-{version}-linux-{arch}.tar.gz",
            "download/v{version}/release.tar.gz",
        )
        .replace(
            "download/v{version}/crictl-v{version}-linux-{arch}.tar.gz",
            "download/v{version}/release.tar.gz",
        )
    });
    for (path, data) in &m.files {
        for name in [
            "containerd-1.7.20-linux-amd64.tar.gz",
            "crictl-v1.31.1-linux-amd64.tar.gz",
        ] {
            if let Some(dir) = path.strip_suffix(name) {
                server.add(&format!("/{dir}release.tar.gz"), data.clone());
            }
        }
    }
    let out = t.temp().join("out");
    build_fixed(&t, &m.profile, "amd64", &out)
        .args(["--payload", "fetch", "--no-iso", "--quiet"])
        .run()
        .success();

    let ud = fs_err::read_to_string(out.join("amd64/worker0/user-data")).unwrap();
    let script = first_boot::script(&ud);
    let check = Command::new("sh")
        .args(["-n", "-c", &script])
        .output()
        .unwrap();
    assert!(check.status.success(), "sh -n: {check:?}\n{script}");
    let root = t.temp().join("root");
    let part = payload_part(&ud, &root);
    assert_eq!(
        part.matches(&format!("fetch '{}/", server.base())).count(),
        5,
        "containerd, runc, crictl, the node binaries, the CNI plugins:\n{part}"
    );
    for component in ["containerd", "crictl"] {
        assert!(
            part.contains(&format!("unpack '{component}'")),
            "{component} is unpacked into its own directory:\n{part}"
        );
    }

    let run = run_payload(&part, &root);
    assert!(
        run.status.success(),
        "the payload part failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let said = String::from_utf8_lossy(&run.stdout);
    for component in ["containerd", "crictl"] {
        assert!(
            said.contains(&format!("imagegen: verifying {component}\n")),
            "{said}"
        );
    }
    for (file, from) in [
        ("usr/local/bin/crictl", "crictl"),
        ("bin/containerd", "containerd"),
        ("bin/containerd-shim-runc-v2", "containerd-shim-runc-v2"),
        ("usr/local/bin/runc", "runc"),
        ("usr/local/bin/kubelet", "kubelet"),
    ] {
        let got = fs_err::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            got,
            format!("#!/bin/sh\necho \"{from} stand-in $*\"\n"),
            "{file}"
        );
    }
    assert_eq!(
        server
            .hits("/github.com/kubernetes-sigs/cri-tools/releases/download/v1.31.1/release.tar.gz"),
        1
    );
    assert_eq!(
        server.hits("/github.com/containerd/containerd/releases/download/v1.7.20/release.tar.gz"),
        1
    );
}

#[test]
fn a_download_that_does_not_match_its_pin_is_named_by_component_and_installs_nothing() {
    let t = Test::new();
    let server = TestServer::start();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    m.serve_as_upstream(&server);
    // crictl's pin no longer matches what the server sends.
    let crictl = &m
        .files
        .iter()
        .find(|(p, _)| p.contains("crictl"))
        .unwrap()
        .1;
    let pinned = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(crictl));
    m.edit_profile(|p| p.replace(&pinned, &"0".repeat(64)));
    let out = t.temp().join("out");
    build_fixed(&t, &m.profile, "amd64", &out)
        .args(["--payload", "fetch", "--no-iso", "--quiet"])
        .run()
        .success();
    let ud = fs_err::read_to_string(out.join("amd64/worker0/user-data")).unwrap();
    let root = t.temp().join("root");
    let run = run_payload(&payload_part(&ud, &root), &root);
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains(&format!(
            "imagegen: DIGEST MISMATCH for crictl from {}/github.com/kubernetes-sigs/",
            server.base()
        )),
        "{err}"
    );
    assert!(!root.join("usr/local/bin/crictl").exists());
}
