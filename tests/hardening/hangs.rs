//! Nothing hangs on a file that is not a regular file: a FIFO (which a plain open would wait on
//! forever), a device or a directory wherever the user names a file or imagegen reads one back.
//! Every run has a short timeout; each must end with an error naming the file and what it is,
//! or (for the cache's own entries) recover.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::fs::mkfifo;
use crate::common::*;

const FIFO: &str = "is a named pipe (FIFO), not a regular file";

fn t() -> Test {
    Test::new().timeout(Duration::from_secs(30))
}

/// A fetch-payload build without ISOs: it reads the profile, keys and templates and writes
/// seeds, but downloads nothing.
fn quick_build(t: &Test) -> Test {
    t.clone()
        .fetch_build()
        .args(["--no-iso", "--pki"])
        .arg(pki_fixture())
}

#[track_caller]
fn fails_naming(out: Output, path: &Path, what: &str) {
    let out = out.code(1);
    let err = out.stderr();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains(what), "{err}");
}

#[test]
fn a_fifo_device_or_directory_as_the_profile() {
    let t = t();
    let fifo = t.temp().join("profile.yaml");
    mkfifo(&fifo);
    for cmd in [
        &["profile", "check"][..],
        &["plan", "--arch", "arm64", "--profile"],
    ] {
        fails_naming(t.clone().args(cmd).arg(&fifo).run(), &fifo, FIFO);
    }
    let out = quick_build(&t).arg("--profile").arg(&fifo).run();
    fails_naming(out, &fifo, FIFO);
    let zero = Path::new("/dev/zero");
    let out = t.clone().args(["profile", "check"]).arg(zero).run();
    fails_naming(out, zero, "is a character device, not a regular file");
    let out = t.clone().args(["profile", "check"]).arg(t.temp()).run();
    fails_naming(out, t.temp(), "is a directory, not a regular file");
}

#[test]
fn a_fifo_as_the_ssh_key_or_a_template() {
    let t = t();
    let key = t.temp().join("id.pub");
    mkfifo(&key);
    let out = quick_build(&t).arg("--ssh-key").arg(&key).run();
    fails_naming(out, &key, FIFO);

    // ~/.ssh/id_*.pub is read when no --ssh-key is given.
    let default_key = t.home().join(".ssh/id_ed25519.pub");
    mkfifo(&default_key);
    fails_naming(quick_build(&t).run(), &default_key, FIFO);

    let templates = t.temp().join("templates");
    let tpl = templates.join("kubelet.service.j2");
    mkfifo(&tpl);
    let out = quick_build(&t)
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
        .arg("--templates")
        .arg(&templates)
        .run();
    fails_naming(out, &tpl, FIFO);
}

#[test]
fn a_fifo_in_the_given_pki() {
    let t = t();
    let pki = t.temp().join("pki");
    for e in fs_err::read_dir(pki_fixture()).unwrap() {
        let e = e.unwrap();
        fs_err::copy(e.path(), pki.join(e.file_name())).unwrap_or_else(|_| {
            fs_err::create_dir_all(&pki).unwrap();
            fs_err::copy(e.path(), pki.join(e.file_name())).unwrap()
        });
    }
    let ca = pki.join("ca.pem");
    fs_err::remove_file(&ca).unwrap();
    mkfifo(&ca);
    let out = t
        .clone()
        .fetch_build()
        .args(["--no-iso"])
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
        .arg("--pki")
        .arg(&pki)
        .run();
    fails_naming(out, &ca, FIFO);
}

#[test]
fn a_fifo_given_to_seed_iso() {
    let t = t();
    let fifo = t.temp().join("user-data");
    mkfifo(&fifo);
    let iso = t.temp().join("seed.iso");
    let named = t
        .clone()
        .args(["seed-iso", "-o"])
        .arg(&iso)
        .arg("--user-data")
        .arg(&fifo)
        .run();
    fails_naming(named, &fifo, "regular file");
    let positional = t
        .clone()
        .args(["seed-iso", "-o"])
        .arg(&iso)
        .arg(&fifo)
        .run();
    fails_naming(positional, &fifo, "regular file");
    assert!(!iso.exists());
}

#[test]
fn a_fifo_given_to_cache_import() {
    let t = t();
    let fifo = t.temp().join("containerd.tar.gz");
    mkfifo(&fifo);
    let out = t.clone().args(["cache", "import"]).arg(&fifo).run();
    fails_naming(out, &fifo, FIFO);
}

/// The mirror file of runc, `file://` layout.
fn runc_in(m: &mirror::Mirror) -> PathBuf {
    m.root
        .join("github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64")
}

#[test]
fn a_fifo_or_directory_in_a_file_mirror() {
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let runc = runc_in(&m);
    fs_err::remove_file(&runc).unwrap();
    mkfifo(&runc);
    let fetch = |t: &Test| m.fetch_offline(t).run();
    fails_naming(fetch(&t), &runc, FIFO);
    fs_err::remove_file(&runc).unwrap();
    fs_err::create_dir(&runc).unwrap();
    fails_naming(fetch(&t), &runc, "is a directory, not a regular file");
}

#[test]
fn a_fifo_where_the_cache_keeps_an_entry_is_replaced() {
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let fetch = || m.fetch_offline(&t).run();
    fetch().success();
    // Every entry becomes a FIFO; the next run must not wait on any of them.
    let entries: Vec<PathBuf> = fs::files_under(&t.cache())
        .into_iter()
        .filter(|p| p.starts_with("sha256") || p.starts_with("sha512"))
        .filter(|p| !p.to_string_lossy().contains(".stamp"))
        .map(|p| t.cache().join(p))
        .collect();
    assert!(entries.len() >= 5, "{entries:?}");
    for e in &entries {
        fs_err::remove_file(e).unwrap();
        mkfifo(e);
    }
    let out = fetch().success();
    assert!(out.stdout().contains("downloaded"), "{}", out.stdout());
    for e in &entries {
        assert!(fs_err::metadata(e).unwrap().is_file(), "{}", e.display());
    }
}

#[test]
fn a_fifo_where_the_output_lock_goes() {
    let t = t();
    let out_dir = t.temp().join("out");
    let lock = out_dir.join(".lock");
    mkfifo(&lock);
    let out = quick_build(&t)
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
        .arg("--out")
        .arg(&out_dir)
        .run();
    fails_naming(out, &lock, "not a regular file");
}

#[test]
fn fifos_where_the_cache_keeps_its_work_are_replaced() {
    use sha2::Digest as _;
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let server = crate::common::http::TestServer::start();
    m.serve_as_upstream(&server);
    // For every file: a FIFO where its partial download, the partial's record and the entry's
    // stamp go.
    for (path, data) in &m.files {
        let (algo, hex) = if path.contains("dl.k8s.io/") {
            ("sha512", hex::encode(sha2::Sha512::digest(data)))
        } else {
            ("sha256", hex::encode(sha2::Sha256::digest(data)))
        };
        mkfifo(&t.cache().join(format!("tmp/{algo}-{hex}.part")));
        mkfifo(&t.cache().join(format!("tmp/{algo}-{hex}.part.prefix")));
        mkfifo(&t.cache().join(format!("{algo}/.{hex}.stamp")));
    }
    t.clone()
        .args(["fetch", "--arch", "amd64", "--quiet", "--profile"])
        .arg(&m.profile)
        .run()
        .success();
    let tmp = fs::list_dir(&t.cache().join("tmp"));
    assert!(tmp.is_empty(), "{tmp:?}");
}
