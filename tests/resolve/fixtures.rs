//! What every resolve test builds on: real-looking upstream files and their pins, quiet options
//! with short timeouts, a view of exactly what the cache holds, and the load lock that keeps the
//! timing- and memory-sensitive tests away from the heavy ones.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime};

use imagegen::digest::{hash_reader, Algo};
use imagegen::plan::Artifact;
use imagegen::resolve::{Progress, ResolveOptions};

use crate::common::http::{generated_bytes, Behaviour, Body, GeneratedReader, TestServer};

/// A real upstream file: its path on the (github-like) server and its bytes.
pub struct Fx {
    pub component: &'static str,
    pub version: &'static str,
    pub path: String,
    pub bytes: Vec<u8>,
    pub algo: Algo,
}

pub fn targz(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut b = tar::Builder::new(&mut gz);
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    gz.finish().unwrap()
}

pub fn containerd() -> Fx {
    Fx {
        component: "containerd",
        version: "1.7.20",
        path:
            "/containerd/containerd/releases/download/v1.7.20/containerd-1.7.20-linux-arm64.tar.gz"
                .into(),
        bytes: targz(&[
            ("bin/containerd", generated_bytes(1, 300_000)),
            ("bin/containerd-shim-runc-v2", generated_bytes(2, 120_000)),
            ("bin/ctr", generated_bytes(3, 90_000)),
        ]),
        algo: Algo::Sha256,
    }
}

pub fn runc() -> Fx {
    Fx {
        component: "runc",
        version: "1.1.13",
        path: "/opencontainers/runc/releases/download/v1.1.13/runc.arm64".into(),
        bytes: generated_bytes(4, 200_000),
        algo: Algo::Sha512,
    }
}

pub fn cni() -> Fx {
    Fx {
        component: "cni-plugins",
        version: "1.5.1",
        path: "/containernetworking/plugins/releases/download/v1.5.1/cni-plugins-linux-arm64-v1.5.1.tgz".into(),
        bytes: targz(&[
            ("./bridge", generated_bytes(5, 100_000)),
            ("./host-local", generated_bytes(6, 80_000)),
            ("./loopback", generated_bytes(7, 60_000)),
        ]),
        algo: Algo::Sha256,
    }
}

pub fn pin(fx: &Fx, base: &str) -> Artifact {
    Artifact {
        component: fx.component.into(),
        version: fx.version.into(),
        url: format!("{base}{}", fx.path),
        file_name: fx.path.rsplit('/').next().unwrap().into(),
        digest: hash_reader(fx.algo, &fx.bytes[..]).unwrap(),
        size: None,
    }
}

pub fn opts(cache: &Path) -> ResolveOptions {
    let mut o = ResolveOptions::new(cache.to_path_buf());
    o.progress = Progress::Quiet;
    o.connect_timeout = Duration::from_secs(2);
    o.read_timeout = Duration::from_secs(5);
    o.retries = 2;
    o.retry_backoff = Duration::from_millis(20);
    o
}

/// Every regular file under `dir`, relative, so tests can say exactly what the cache holds.
pub fn files_in(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs_err::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// What [`files_in`] shows for a cache holding exactly `arts`: each entry and its stamp.
pub fn entries(arts: &[&Artifact]) -> BTreeSet<String> {
    arts.iter()
        .flat_map(|a| {
            let (algo, hex) = (a.digest.algo().name(), a.digest.hex());
            [format!("{algo}/{hex}"), format!("{algo}/.{hex}.stamp")]
        })
        .collect()
}

/// Sets the mtime of `path` to `secs` after the epoch, as touching or restoring a file does.
pub fn set_mtime(path: &Path, secs: u64) {
    let f = fs_err::OpenOptions::new().write(true).open(path).unwrap();
    f.file()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

pub fn requests(srv: &TestServer, path: &str) -> Vec<(Option<String>, u16)> {
    srv.log()
        .into_iter()
        .filter(|h| h.path == path)
        .map(|h| (h.range, h.status))
        .collect()
}

pub const BIG: u64 = 40 * 1024 * 1024;

/// Serves a generated `len`-byte file at `path` and pins it (sha256).
pub fn big_file(srv: &TestServer, path: &str, seed: u64, len: u64, b: Behaviour) -> Artifact {
    srv.add_body(path, Body::Generated { len, seed }, b);
    Artifact {
        component: "kubernetes-node".into(),
        version: "1.30.0".into(),
        url: srv.url(path),
        file_name: path.rsplit('/').next().unwrap().into(),
        digest: hash_reader(Algo::Sha256, GeneratedReader { seed, pos: 0, len }).unwrap(),
        size: None,
    }
}

/// Keeps every request in flight long enough for the other connections to join in.
pub fn paced() -> Behaviour {
    Behaviour {
        pace: Some(Duration::from_millis(2)),
        ..Behaviour::default()
    }
}

/// `(first, last)` of every `bytes=first-last` request on `path` answered with 206.
pub fn ranges_served(srv: &TestServer, path: &str) -> Vec<(u64, u64)> {
    requests(srv, path)
        .into_iter()
        .filter(|(_, status)| *status == 206)
        .map(|(range, _)| {
            let spec = range.unwrap();
            let (a, b) = spec
                .strip_prefix("bytes=")
                .unwrap()
                .split_once('-')
                .unwrap();
            (a.parse().unwrap(), b.parse().expect("a closed range"))
        })
        .collect()
}

/// Resolving verified the sha256 of the generated stream; this only rules out trailing bytes.
pub fn assert_len(path: &Path, len: u64) {
    assert_eq!(fs_err::metadata(path).unwrap().len(), len);
}

/// Tests that move many MiB through debug-built code load both cores; the tests that rely on a
/// short timeout or measure the process's RSS do not run next to them.
pub static LOAD: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn heavy() -> std::sync::RwLockReadGuard<'static, ()> {
    LOAD.read().unwrap_or_else(PoisonError::into_inner)
}

pub fn alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    LOAD.write().unwrap_or_else(PoisonError::into_inner)
}
