//! Bounded work: no download may grow past its pinned size (`sizes` in the profile) or, without
//! one, `--max-download-size`; no archive may inflate without bound or hold endless entries.
//! Each limit fails clearly, naming the artifact, and leaves nothing half-written behind.

use std::io::Read as _;
use std::time::Duration;

use crate::common::archive::TarGz;
use crate::common::fs::files_under;
use crate::common::http::{Behaviour, Body, TestServer};
use crate::common::*;

const RUNC: &str = "github.com/opencontainers/runc/releases/download/v1.1.13/runc.amd64";

fn t() -> Test {
    Test::new().timeout(Duration::from_secs(120))
}

fn fetch(t: &Test, m: &mirror::Mirror) -> Test {
    t.clone()
        .args(["fetch", "--arch", "amd64", "--quiet", "--profile"])
        .arg(&m.profile)
}

/// Nothing but verified entries (and their stamps) in the cache: no partial download left.
#[track_caller]
fn only_entries_in(cache: &std::path::Path) {
    let odd: Vec<_> = files_under(cache)
        .into_iter()
        .filter(|p| !(p.starts_with("sha256") || p.starts_with("sha512")))
        .collect();
    assert!(odd.is_empty(), "left in the cache: {odd:?}");
}

/// Pins `size` for runc on amd64.
fn pin_runc_size(m: &mirror::Mirror, size: u64) {
    m.edit_profile(|p| {
        p.replacen(
            "  runc:\n",
            &format!("  runc:\n    sizes: {{amd64: {size}}}\n"),
            1,
        )
    });
}

#[test]
fn a_body_that_never_ends_stops_at_the_limit() {
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let server = TestServer::start();
    m.serve_as_upstream(&server);
    // runc's URL now streams forever, with no length announced.
    server.add_body(
        &format!("/{RUNC}"),
        Body::Generated {
            len: 1 << 40,
            seed: 7,
        },
        Behaviour {
            no_length: true,
            ..Behaviour::default()
        },
    );
    let out = fetch(&t, &m)
        .args(["--max-download-size", "8MiB"])
        .run()
        .code(1);
    let err = out.stderr();
    assert!(
        err.contains("  - runc 1.1.13: sent more than --max-download-size (8388608 bytes)"),
        "{err}"
    );
    only_entries_in(&t.cache());

    // A length announced past the limit fails before any byte is taken.
    server.add_body(
        &format!("/{RUNC}"),
        Body::Generated {
            len: 1 << 40,
            seed: 7,
        },
        Behaviour::default(),
    );
    let out = fetch(&t, &m)
        .args(["--max-download-size", "8M"])
        .run()
        .code(1);
    assert!(
        out.stderr().contains(&format!(
            "has {} bytes, more than --max-download-size (8388608 bytes)",
            1u64 << 40
        )),
        "{}",
        out.stderr()
    );
    only_entries_in(&t.cache());
}

#[test]
fn a_pinned_size_is_exact() {
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let server = TestServer::start();
    m.serve_as_upstream(&server);
    let runc = m.files.iter().find(|(p, _)| p == RUNC).unwrap().1.clone();
    let len = runc.len() as u64;

    // Longer than pinned, announced: refused at the headers.
    pin_runc_size(&m, len - 1);
    let out = fetch(&t, &m).run().code(1);
    assert!(
        out.stderr().contains(&format!(
            "has {len} bytes, but the profile pins {} (`sizes`)",
            len - 1
        )),
        "{}",
        out.stderr()
    );
    only_entries_in(&t.cache());

    // Longer than pinned, unannounced: stopped right after the pinned size.
    server.add_with(
        &format!("/{RUNC}"),
        runc.clone(),
        Behaviour {
            no_length: true,
            ..Behaviour::default()
        },
    );
    let out = fetch(&t, &m).run().code(1);
    assert!(
        out.stderr().contains(&format!(
            "sent more than the {} bytes the profile pins (`sizes`)",
            len - 1
        )),
        "{}",
        out.stderr()
    );
    only_entries_in(&t.cache());

    // The right size is simply fetched.
    m.edit_profile(|p| p.replace(&format!("amd64: {}}}", len - 1), &format!("amd64: {len}}}")));
    fetch(&t, &m).run().success();
}

#[test]
fn sizes_are_checked_with_the_profile() {
    let t = t();
    let m = mirror::build(t.temp(), "amd64", &|p| {
        p.replacen(
            "  runc:\n",
            "  runc:\n    sizes: {amd64: 0, riscv64: 12}\n",
            1,
        )
    });
    let out = t
        .clone()
        .args(["profile", "check"])
        .arg(&m.profile)
        .run()
        .code(1);
    let err = out.stderr();
    assert!(
        err.contains("components.runc.sizes.amd64: expected the size of the file in bytes, got 0"),
        "{err}"
    );
    assert!(
        err.contains("components.runc.sizes.riscv64: unknown architecture `riscv64`"),
        "{err}"
    );
}

/// A tar.gz with `name` holding `len` zero bytes (compresses a thousandfold), after the usual
/// containerd files.
fn bomb(name: &str, len: u64) -> Vec<u8> {
    TarGz::new()
        .file("bin/containerd", b"#!/bin/sh\n")
        .file("bin/containerd-shim-runc-v2", b"#!/bin/sh\n")
        .file_from(name, len, std::io::repeat(0).take(len))
        .finish()
}

fn build_offline(t: &Test, m: &mirror::Mirror) -> Test {
    build_fixed(t, &m.profile, "amd64", &t.temp().join("out")).args([
        "--quiet",
        "--offline",
        "--no-iso",
        "--mirror",
        &m.file_url(),
    ])
}

#[test]
fn a_gzip_bomb_is_refused_naming_the_artifact() {
    let t = t();
    let mut m = mirror::build(t.temp(), "amd64", &|p| p);
    // Both a member that is installed and one that is only read past are bounded.
    for name in ["bin/ctr", "docs/zeros"] {
        m.replace(
            "containerd-1.7.20-linux-amd64.tar.gz",
            bomb(name, 300 << 20),
        );
        let out = build_offline(&t, &m).run().code(1);
        let err = out.stderr();
        assert!(
            err.contains(&format!(
                "containerd 1.7.20 for amd64 ({}/containerd/containerd/releases/download/v1.7.20/\
                 containerd-1.7.20-linux-amd64.tar.gz) inflates to more than 268435456 bytes",
                "https://github.com"
            )),
            "{err}"
        );
        assert!(err.contains("likely gzip bomb"), "{err}");
        assert!(!t.temp().join("out/amd64").exists());
    }
}

#[test]
fn an_archive_with_endless_entries_is_refused() {
    let t = t();
    let mut m = mirror::build(t.temp(), "amd64", &|p| p);
    let mut tgz = TarGz::new()
        .file("bin/containerd", b"#!/bin/sh\n")
        .file("bin/containerd-shim-runc-v2", b"#!/bin/sh\n");
    for i in 0..10_000 {
        tgz = tgz.file(&format!("man/{i}"), b"");
    }
    m.replace("containerd-1.7.20-linux-amd64.tar.gz", tgz.finish());
    let out = build_offline(&t, &m).run().code(1);
    assert!(
        out.stderr()
            .contains("containerd 1.7.20 for amd64 (https://github.com/containerd/"),
        "{}",
        out.stderr()
    );
    assert!(
        out.stderr().contains("has more than 10000 entries"),
        "{}",
        out.stderr()
    );
}
