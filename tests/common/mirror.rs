//! A local mirror in the upstream host/path layout, built from real (small) archives, and a
//! profile whose digests pin them. What `--mirror file://...` or an HTTP server on loopback serves.
//! A test may swap one file for another (correctly pinned), or make a loopback server the
//! upstream of every file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha512};

use super::archive::TarGz;

pub struct Mirror {
    /// Root of the mirror: `<root>/github.com/...`, `<root>/dl.k8s.io/...`.
    pub root: PathBuf,
    /// Profile pinning the mirror's files for `arch`.
    pub profile: PathBuf,
    /// Upstream URL path (host/path) -> bytes, for serving over HTTP.
    pub files: Vec<(String, Vec<u8>)>,
    /// The architecture the profile pins.
    pub arch: String,
}

fn exe(name: &str) -> Vec<u8> {
    // A real script, so a test that installs it can also run it.
    format!("#!/bin/sh\necho \"{name} stand-in $*\"\n").into_bytes()
}

/// Builds the mirror for `arch` under `dir` and a profile (`profile_base` with that arch's
/// digests replaced). Any other text replacement can be applied to the profile with `edit`.
pub fn build(dir: &Path, arch: &str, edit: &dyn Fn(String) -> String) -> Mirror {
    let containerd = TarGz::new()
        .dir("bin/")
        .file("bin/containerd", exe("containerd"))
        .file(
            "bin/containerd-shim-runc-v2",
            exe("containerd-shim-runc-v2"),
        )
        .file("bin/ctr", exe("ctr"))
        .finish();
    let crictl = TarGz::new().file("crictl", exe("crictl")).finish();
    // Like the real CNI tarball: entries under `./`.
    let cni = TarGz::new()
        .dir("./")
        .file("./bridge", exe("bridge"))
        .file("./host-local", exe("host-local"))
        .file("./loopback", exe("loopback"))
        .finish();
    let node = TarGz::new()
        .file("kubernetes/node/bin/kubelet", exe("kubelet"))
        .file("kubernetes/node/bin/kube-proxy", exe("kube-proxy"))
        .file("kubernetes/node/bin/kubeadm", exe("kubeadm"))
        .finish();
    let server = TarGz::new()
        .file(
            "kubernetes/server/bin/kube-apiserver",
            exe("kube-apiserver"),
        )
        .file(
            "kubernetes/server/bin/kube-controller-manager",
            exe("kube-controller-manager"),
        )
        .file(
            "kubernetes/server/bin/kube-scheduler",
            exe("kube-scheduler"),
        )
        .file("kubernetes/server/bin/kubectl", exe("kubectl"))
        .file("kubernetes/server/bin/kubeadm", exe("kubeadm"))
        .finish();
    // Like the real archive: the binaries and their READMEs under one directory.
    let etcd_dir = format!("etcd-v3.5.15-linux-{arch}");
    let etcd = TarGz::new()
        .file(&format!("{etcd_dir}/etcd"), exe("etcd"))
        .file(&format!("{etcd_dir}/etcdctl"), exe("etcdctl"))
        .file(&format!("{etcd_dir}/etcdutl"), exe("etcdutl"))
        .file(&format!("{etcd_dir}/README.md"), b"etcd\n")
        .finish();
    let runc = exe("runc");
    let files: Vec<(String, Vec<u8>, &str, bool)> = vec![
        (format!("github.com/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-{arch}.tar.gz"), containerd, "containerd", false),
        (format!("github.com/opencontainers/runc/releases/download/v1.1.13/runc.{arch}"), runc, "runc", false),
        (format!("github.com/kubernetes-sigs/cri-tools/releases/download/v1.31.1/crictl-v1.31.1-linux-{arch}.tar.gz"), crictl, "crictl", false),
        (format!("github.com/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-{arch}-v1.5.1.tgz"), cni, "cni-plugins", false),
        (format!("dl.k8s.io/v1.31.0/kubernetes-node-linux-{arch}.tar.gz"), node, "kubernetes-node", true),
        (format!("dl.k8s.io/v1.31.0/kubernetes-server-linux-{arch}.tar.gz"), server, "kubernetes-server", true),
        (format!("github.com/etcd-io/etcd/releases/download/v3.5.15/etcd-v3.5.15-linux-{arch}.tar.gz"), etcd, "etcd", false),
        // Only `fetch` and `launch` read it; no test boots it.
        (format!("cloud-images.ubuntu.com/releases/jammy/release-20250305/ubuntu-22.04-server-cloudimg-{arch}.img"), format!("stand-in for the {arch} cloud image\n").into_bytes(), "base-image", false),
    ];
    let root = dir.join("mirror");
    let base = fs_err::read_to_string(super::root().join("profiles/kthw-1.31.yaml")).unwrap();
    let mut profile = String::new();
    let mut component = String::new();
    let digests: std::collections::HashMap<&str, String> = files
        .iter()
        .map(|(_, data, comp, sha512)| {
            let d = if *sha512 {
                format!("sha512:{}", hex::encode(Sha512::digest(data)))
            } else {
                format!("sha256:{}", hex::encode(Sha256::digest(data)))
            };
            (*comp, d)
        })
        .collect();
    for line in base.lines() {
        let t = line.trim_start();
        let bare = line.split('#').next().unwrap_or("").trim_end();
        if line.starts_with("  ") && !line.starts_with("   ") && bare.ends_with(':') {
            component = bare.trim().trim_end_matches(':').to_string();
        }
        if t.starts_with(&format!("{arch}: sha")) {
            let indent = &line[..line.len() - t.len()];
            profile.push_str(&format!(
                "{indent}{arch}: {}\n",
                digests[component.as_str()]
            ));
        } else {
            profile.push_str(line);
            profile.push('\n');
        }
    }
    for (path, data, _, _) in &files {
        let p = root.join(path);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(&p, data).unwrap();
    }
    let profile_path = dir.join("profile.yaml");
    fs_err::write(&profile_path, edit(profile)).unwrap();
    Mirror {
        root,
        profile: profile_path,
        files: files.into_iter().map(|(p, d, _, _)| (p, d)).collect(),
        arch: arch.to_string(),
    }
}

impl Mirror {
    pub fn file_url(&self) -> String {
        format!("file://{}", self.root.display())
    }

    /// `imagegen fetch` of the profile from this mirror as a `file://` mirror, offline and quiet.
    pub fn fetch_offline(&self, t: &super::Test) -> super::Test {
        t.clone()
            .args([
                "fetch",
                "--arch",
                &self.arch,
                "--offline",
                "--quiet",
                "--profile",
            ])
            .arg(&self.profile)
            .args(["--mirror", &self.file_url()])
    }
}

impl Mirror {
    /// Replaces the file whose mirror path ends with `path_end` by `data`, on disk and in
    /// [`Mirror::files`], and pins its digest in the profile instead of the old one (same
    /// algorithm): an upstream that publishes a different file, correctly pinned.
    pub fn replace(&mut self, path_end: &str, data: Vec<u8>) {
        let i = self
            .files
            .iter()
            .position(|(p, _)| p.ends_with(path_end))
            .unwrap_or_else(|| panic!("no mirror file ends with {path_end}"));
        let old = std::mem::replace(&mut self.files[i].1, data.clone());
        fs_err::write(self.root.join(&self.files[i].0), &data).unwrap();
        let mut profile = fs_err::read_to_string(&self.profile).unwrap();
        let (old256, old512) = (
            hex::encode(Sha256::digest(&old)),
            hex::encode(Sha512::digest(&old)),
        );
        if profile.contains(&old256) {
            profile = profile.replace(&old256, &hex::encode(Sha256::digest(&data)));
        } else {
            assert!(
                profile.contains(&old512),
                "the profile does not pin {path_end}"
            );
            profile = profile.replace(&old512, &hex::encode(Sha512::digest(&data)));
        }
        fs_err::write(&self.profile, profile).unwrap();
    }

    /// Edits the profile text.
    pub fn edit_profile(&self, edit: impl FnOnce(String) -> String) {
        let profile = fs_err::read_to_string(&self.profile).unwrap();
        fs_err::write(&self.profile, edit(profile)).unwrap();
    }

    /// Makes `server` the upstream of every file: serves each at its upstream path and points
    /// the profile's URLs at the server (no other source is needed, or tried).
    pub fn serve_as_upstream(&self, server: &super::http::TestServer) {
        for (path, data) in &self.files {
            server.add(&format!("/{path}"), data.clone());
        }
        let base = format!("{}/", server.base());
        self.edit_profile(|p| {
            p.replace("https://github.com/", &format!("{base}github.com/"))
                .replace("https://dl.k8s.io/", &format!("{base}dl.k8s.io/"))
                .replace(
                    "https://cloud-images.ubuntu.com/",
                    &format!("{base}cloud-images.ubuntu.com/"),
                )
        });
    }
}
