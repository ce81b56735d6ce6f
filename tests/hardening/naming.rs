//! Errors name what the user pinned, not where the cache keeps it: a refused archive entry, a
//! missing member or a member held as a directory are reported with the component, version,
//! arch and URL. And every planned install produces its file or fails the build: nothing is
//! silently skipped for the node to miss at first boot.

use crate::common::archive::TarGz;
use crate::common::*;

const CONTAINERD_URL: &str = "https://github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-amd64.tar.gz";
const NODE_URL: &str = "https://dl.k8s.io/v1.31.0/kubernetes-node-linux-amd64.tar.gz";
const CNI_URL: &str = "https://github.com/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-amd64-v1.5.1.tgz";

fn exe() -> &'static [u8] {
    b"#!/bin/sh\n"
}

/// Builds from the mirror after replacing the archive at `path_end` by `archive`; returns
/// stderr of the failed build, after checking that it does not name the cache.
fn fails(path_end: &str, archive: Vec<u8>) -> String {
    let t = Test::new();
    let mut m = mirror::build(t.temp(), "amd64", &|p| p);
    m.replace(path_end, archive);
    let out = build_fixed(&t, &m.profile, "amd64", &t.temp().join("out"))
        .args([
            "--quiet",
            "--offline",
            "--no-iso",
            "--mirror",
            &m.file_url(),
        ])
        .run()
        .code(1);
    let err = out.stderr().to_string();
    assert!(
        !err.contains(&t.cache().display().to_string()),
        "the error names the cache: {err}"
    );
    assert!(!t.temp().join("out/amd64").exists());
    err
}

#[test]
fn a_refused_entry_names_component_version_arch_and_url() {
    let err = fails(
        "containerd-1.7.20-linux-amd64.tar.gz",
        TarGz::new()
            .file("bin/containerd", exe())
            .file("../../etc/cron.d/evil", exe())
            .finish(),
    );
    assert!(
        err.contains(&format!(
            "containerd 1.7.20 for amd64 ({CONTAINERD_URL}) has an entry `../../etc/cron.d/evil` \
             that has a `..` component; refusing to extract from it"
        )),
        "{err}"
    );
    let err = fails(
        "containerd-1.7.20-linux-amd64.tar.gz",
        TarGz::new()
            .file("bin/containerd", exe())
            .symlink("bin/ctr", "/etc/shadow")
            .finish(),
    );
    assert!(
        err.contains(&format!(
            "containerd 1.7.20 for amd64 ({CONTAINERD_URL}) has an entry `bin/ctr` that is a \
             symlink to `/etc/shadow`, outside the archive"
        )),
        "{err}"
    );
}

#[test]
fn a_planned_member_held_as_a_directory_fails_the_build() {
    let err = fails(
        "kubernetes-node-linux-amd64.tar.gz",
        TarGz::new()
            .dir("kubernetes/node/bin/kubelet/")
            .file("kubernetes/node/bin/kubelet/README", b"not a binary")
            .file("kubernetes/node/bin/kube-proxy", exe())
            .finish(),
    );
    assert!(
        err.contains(&format!(
            "kubernetes-node 1.31.0 for amd64 ({NODE_URL}) holds `kubernetes/node/bin/kubelet` \
             as a directory, not a file, so `/usr/local/bin/kubelet` cannot be installed"
        )),
        "{err}"
    );
}

#[test]
fn a_binary_the_node_runs_must_be_in_a_directory_rule() {
    // containerd.service runs /bin/containerd: the archive holds it as a directory.
    let err = fails(
        "containerd-1.7.20-linux-amd64.tar.gz",
        TarGz::new()
            .dir("bin/")
            .dir("bin/containerd/")
            .file("bin/containerd/x", exe())
            .file("bin/containerd-shim-runc-v2", exe())
            .file("bin/ctr", exe())
            .finish(),
    );
    assert!(
        err.contains(&format!(
            "containerd 1.7.20 for amd64 ({CONTAINERD_URL}) holds `bin/containerd` as a \
             directory, not a file, so `/bin/containerd` cannot be installed"
        )),
        "{err}"
    );
    // The bridge CNI config names the loopback plugin: the archive lacks it.
    let err = fails(
        "cni-plugins-linux-amd64-v1.5.1.tgz",
        TarGz::new()
            .file("./bridge", exe())
            .file("./host-local", exe())
            .finish(),
    );
    assert!(
        err.contains(&format!(
            "cni-plugins 1.5.1 for amd64 ({CNI_URL}) has no member `loopback` (for \
             `/opt/cni/bin/loopback`); it has e.g. bridge, host-local"
        )),
        "{err}"
    );
}
