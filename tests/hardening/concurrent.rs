//! Two processes at once: builds into one `--out` take turns (`out/.lock`, saying whom they
//! wait for) and leave one consistent output with one CA, and so do `imagegen pki` runs beside
//! a build; fetches into one cache fetch each artifact once (a lock per artifact). And what a
//! run sweeps is only ever what a dead process left: a staging directory whose process is
//! alive stays.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::fs::list_dir;
use crate::common::http::{Behaviour, TestServer};
use crate::common::*;

/// Waits until `cond` holds.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(started.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_builds_into_one_out_take_turns_and_share_one_ca() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let server = TestServer::start();
    m.serve_as_upstream(&server);
    // kubelet's archive comes on the second try, after a pause: the first build holds the lock
    // a while.
    let node = m
        .files
        .iter()
        .find(|(p, _)| p.contains("kubernetes-node"))
        .unwrap();
    server.add_with(
        &format!("/{}", node.0),
        node.1.clone(),
        Behaviour {
            fail_500: 1,
            ..Behaviour::default()
        },
    );
    let out = t.temp().join("out");
    // No --pki: both builds would make a CA in out/pki.
    let build = |cache: &str| {
        t.clone()
            .args([
                "build",
                "--arch",
                "amd64",
                "--quiet",
                "--no-iso",
                "--profile",
            ])
            .arg(&m.profile)
            .arg("--out")
            .arg(&out)
            .arg("--ssh-key")
            .arg(ssh_key_fixture())
            .env("IMAGEGEN_CACHE", t.temp().join(cache))
    };
    let first = build("cache-1").spawn();
    let lock = out.join(".lock");
    let first_pid = first.pid();
    wait_for("the first build holds out/.lock", || {
        fs_err::read_to_string(&lock).is_ok_and(|s| s.trim() == first_pid.to_string())
    });
    let second = build("cache-2").spawn();
    let (first, second) = (first.wait().success(), second.wait().success());
    assert!(
        second.stderr().contains(&format!(
            "waiting for another imagegen (pid {first_pid}) holding {}",
            lock.display()
        )),
        "{}",
        second.stderr()
    );
    assert!(!first.stderr().contains("waiting"), "{}", first.stderr());
    assert_eq!(list_dir(&out), [".lock", "amd64", "pki"]);
    // One CA: its key is the one of ca.pem, and every node certificate verifies against it.
    let pki = out.join("pki");
    assert_eq!(
        openssl(&["x509", "-in", "ca.pem", "-noout", "-pubkey"], &pki),
        openssl(&["pkey", "-in", "ca-key.pem", "-pubout"], &pki)
    );
    for node in ["control0", "worker0", "worker2", "kube-proxy"] {
        let cert = format!("{node}.pem");
        openssl(&["verify", "-CAfile", "ca.pem", &cert], &pki);
    }
}

#[test]
fn two_fetches_into_one_cache_fetch_each_artifact_once() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let server = TestServer::start();
    m.serve_as_upstream(&server);
    // Every file comes on the second try, after a pause: both runs want the same files at the
    // same time.
    for (path, data) in &m.files {
        server.add_with(
            &format!("/{path}"),
            data.clone(),
            Behaviour {
                fail_500: 1,
                ..Behaviour::default()
            },
        );
    }
    let fetch = || {
        t.clone()
            .args(["fetch", "--arch", "amd64", "--quiet", "--profile"])
            .arg(&m.profile)
            .spawn()
    };
    let (a, b) = (fetch(), fetch());
    let (a, b) = (a.wait().success(), b.wait().success());
    for (path, _) in &m.files {
        // One failed attempt (500) and one download, by one of the two runs.
        assert_eq!(
            server.statuses(&format!("/{path}")),
            [500, 200],
            "{path}: {:?}",
            server.log()
        );
    }
    let waited = format!("{}{}", a.stderr(), b.stderr());
    assert!(
        waited.contains("waiting for another imagegen (pid "),
        "{waited}"
    );
    let tmp = t.cache().join("tmp");
    assert!(list_dir(&tmp).is_empty(), "{:?}", list_dir(&tmp));
}

#[test]
fn only_what_dead_processes_left_is_swept() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t.temp().join("out");
    let mut alive = Command::new("sleep").arg("60").spawn().unwrap();
    // A pid no process can have (beyond the kernel's pid_max, at most 2^22).
    let dead = 1u32 << 30;
    let live = alive.id();
    let staging_live = out.join(format!(".amd64.build-{live}.aaaaaa.tmp"));
    let staging_dead = out.join(format!(".amd64.build-{dead}.bbbbbb.tmp"));
    let pki_temp = out.join(format!("pki/.ca.pem.{dead}.cccccc.tmp"));
    let cache_temp = t.cache().join(format!("tmp/.download.{dead}.dddddd.tmp"));
    let cache_lock = t.cache().join("tmp/sha256-0000.lock");
    let cache_part = t.cache().join("tmp/sha256-0000.part");
    for dir in [&staging_live, &staging_dead] {
        fs_err::create_dir_all(dir.join("overlay")).unwrap();
        fs_err::write(dir.join("overlay/x"), "x").unwrap();
    }
    for f in [&pki_temp, &cache_temp, &cache_lock, &cache_part] {
        fs_err::create_dir_all(f.parent().unwrap()).unwrap();
        fs_err::write(f, "x").unwrap();
    }
    build_fixed(&t, &m.profile, "amd64", &out)
        .args(["--quiet", "--offline", "--mirror", &m.file_url()])
        .run()
        .success();
    assert!(staging_live.join("overlay/x").exists(), "a live owner's");
    assert!(
        cache_part.exists(),
        "a partial download is kept, to be continued"
    );
    for gone in [&staging_dead, &pki_temp, &cache_temp, &cache_lock] {
        assert!(!gone.exists(), "{} was not swept", gone.display());
    }
    alive.kill().unwrap();
    alive.wait().unwrap();
}

#[test]
fn a_read_only_cache_is_used_without_locks() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a read-only bind mount");
        return;
    }
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    m.fetch_offline(&t).run().success();
    // The cache, mounted read-only (in a mount namespace of the run's own).
    let cache = t.cache().display().to_string();
    let script = format!(
        "mount --bind '{cache}' '{cache}' && mount -o remount,bind,ro '{cache}' && exec \"$0\" \"$@\""
    );
    build_fixed(&t, &m.profile, "amd64", &t.temp().join("out"))
        .args(["--quiet", "--offline"])
        .wrap(["unshare", "-m", "sh", "-c", &script])
        .run()
        .success();
    assert!(t.temp().join("out/amd64/worker0/seed.iso").is_file());
}

#[test]
fn two_pki_runs_and_a_build_make_one_ca() {
    let t = Test::new();
    let out = t.temp().join("out");
    let pki = || t.clone().args(["pki", "--out"]).arg(&out);
    // The first run is held up at its swap (strace delays each rename by 2 s) while it holds
    // out/.lock; the others start meanwhile and must wait for it.
    let renames = "trace=rename,renameat,renameat2";
    let first = pki()
        .wrap([
            "strace",
            "-f",
            "-o",
            "/dev/null",
            "-e",
            renames,
            "-e",
            "inject=rename,renameat,renameat2:delay_enter=2000000",
        ])
        .spawn();
    let lock = out.join(".lock");
    wait_for("the first run holds out/.lock", || {
        fs_err::read_to_string(&lock).is_ok_and(|s| !s.trim().is_empty())
    });
    let holder = fs_err::read_to_string(&lock).unwrap().trim().to_string();
    let second = pki().spawn();
    let build = t
        .clone()
        .fetch_build()
        .args(["--no-iso", "--out"])
        .arg(&out)
        .arg("--ssh-key")
        .arg(ssh_key_fixture())
        .spawn();
    let (first, second, build) = (
        first.wait().success(),
        second.wait().success(),
        build.wait().success(),
    );
    let waiting = format!(
        "waiting for another imagegen (pid {holder}) holding {}",
        lock.display()
    );
    for (who, run) in [("the second pki", &second), ("the build", &build)] {
        assert!(run.stderr().contains(&waiting), "{who}: {}", run.stderr());
    }
    // The first made the PKI; the others found it whole and made nothing.
    assert!(
        first.stdout().contains("created 37 files"),
        "{}",
        first.stdout()
    );
    assert!(
        second.stdout().contains("complete, nothing created"),
        "{}",
        second.stdout()
    );
    assert!(!build.stdout().contains("PKI files"), "{}", build.stdout());
    assert_eq!(list_dir(&out), [".lock", "amd64", "pki"]);
    let pki_dir = out.join("pki");
    crate::common::openssl::assert_whole_pki(&pki_dir);
    // The seeds carry that one CA.
    let ca = fs_err::read_to_string(pki_dir.join("ca.pem")).unwrap();
    let user_data = fs_err::read_to_string(out.join("amd64/control0/user-data")).unwrap();
    assert!(
        ca.lines().all(|l| user_data.contains(l)),
        "control0 has another CA"
    );
}
