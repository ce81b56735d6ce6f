//! No profile value can change the structure of what a build writes (issue "Hardening",
//! injection). Arbitrary strings (line breaks, quotes, `$()`, backquotes, `#`, `: `, NUL,
//! non-ASCII, `%`, `\`, `{{`, `;`, spaces) go into the profile's string fields, one at a time
//! and several at once; every profile the validation accepts is rendered in-process (seeds,
//! cluster files, host files and `host-setup`'s for both hosts, launchers) and each output is
//! read the way its consumer reads it:
//! - user-data, meta-data, network-config, kubeconfigs and YAML configs by PyYAML (cloud-init's
//!   parser): the same keys at every level;
//! - every shell script (first boot, RBAC bootstrap, routes, the host's network script, the
//!   launchers) by `sh -n`, then split into the shell's words;
//! - systemd units by systemd's rules (sections, keys, `\` continuations, the words of each
//!   command line after unquoting);
//! - JSON, AppleScript tokens, and lines of words (dnsmasq, hosts, sysctl, ldirectord).
//!
//! A field that reaches the outputs as written must give exactly the outputs of a marker value
//! with the marker replaced by it; a parsed field (addresses, ranges, MACs, sizes, digests) the
//! same structure as the unmodified profile. A refused profile's report keeps each problem on
//! its own line.

#[path = "../common/mod.rs"]
mod common;

mod applescript;
mod decode;
mod judge;
mod profiles;
mod render;
mod sh;
mod unit;

use std::cell::RefCell;
use std::collections::HashMap;

use camino::Utf8Path;
use imagegen::payload::PayloadKind;
use imagegen::profile::Arch;
use proptest::prelude::*;

use decode::{decode, difference, same_shape, substitute, Doc};
use profiles::{exact_field, parsed_field, Case, Field};
use render::{render, Options};

thread_local! {
    /// Decoded outputs of the unmodified and the marker profiles, by profile text and options.
    static RENDERED: RefCell<HashMap<String, Vec<Doc>>> = RefCell::new(HashMap::new());
    /// The PKI of every render on this thread: made once, completed with each new node name.
    static PKI: tempfile::TempDir = tempfile::tempdir().unwrap();
}

fn pki_dir() -> camino::Utf8PathBuf {
    PKI.with(|d| Utf8Path::from_path(d.path()).unwrap().join("pki"))
}

fn options(case: &Case) -> Options {
    Options {
        arch: case.arch,
        // The fetch payload puts the most profile values into the first-boot script.
        payload: [
            PayloadKind::Fetch,
            PayloadKind::Fetch,
            PayloadKind::Embed,
            PayloadKind::Shared,
        ][case.payload as usize],
        node_mirror: None,
    }
}

/// The decoded outputs of a profile the validation must accept.
fn reference(text: &str, o: Options, scratch: &Utf8Path) -> Vec<Doc> {
    let key = format!("{:?}/{:?}\n{text}", o.arch, o.payload);
    if let Some(d) = RENDERED.with(|r| r.borrow().get(&key).cloned()) {
        return d;
    }
    let outs = render(text, o, &pki_dir())
        .unwrap_or_else(|e| panic!("a reference profile is refused: {e}\n{text}"));
    let docs = decode(outs, scratch.as_std_path(), false)
        .unwrap_or_else(|e| panic!("a reference profile's output does not parse: {e}"));
    RENDERED.with(|r| r.borrow_mut().insert(key, docs.clone()));
    docs
}

/// Renders `case` and checks it; whether its profile was accepted.
fn check(case: &Case) -> Result<bool, TestCaseError> {
    let o = options(case);
    let text = profiles::profile(case, &case.fields);
    let outs = match render(&text, o, &pki_dir()) {
        Err(e) => {
            // One `error:` line per problem and the count: no value split a message.
            let report = e.to_string();
            let errors = report.lines().filter(|l| l.starts_with("error: ")).count();
            prop_assert_eq!(errors, e.problems.len() + 1, "{}", report);
            for p in &e.problems {
                prop_assert!(
                    !p.key.contains('\n') && !p.message.contains('\n'),
                    "{}",
                    report
                );
            }
            return Ok(false);
        }
        Ok(outs) => outs,
    };
    let tmp = tempfile::tempdir().unwrap();
    let scratch = Utf8Path::from_path(tmp.path()).unwrap();
    let docs = decode(outs, tmp.path(), true)
        .map_err(|e| TestCaseError::fail(format!("{e}\n{case:?}")))?;
    // Every field that reaches the outputs as written holds its marker in the reference; a
    // parsed field keeps the built-in value there, and then only the structure is compared.
    let mut marked = Vec::new();
    let mut subs = Vec::new();
    for (f, v) in case.fields.iter().filter(|(f, _)| f.is_exact()) {
        let (m, s) = profiles::marker(case, *f, v);
        marked.push((*f, m));
        subs.extend(s);
    }
    let expected = reference(&profiles::profile(case, &marked), o, scratch);
    prop_assert_eq!(docs.len(), expected.len(), "{:?}", case);
    let exact = case.fields.iter().all(|(f, _)| f.is_exact());
    for (d, e) in docs.iter().zip(&expected) {
        let e = substitute(e, &subs);
        if exact {
            prop_assert_eq!(&d.name, &e.name, "{:?}", case);
            if let Some(diff) = difference(&d.decoded, &e.decoded) {
                return Err(TestCaseError::fail(format!(
                    "{} differs from the marker's output with the value put in: {diff}\n{case:?}",
                    d.name
                )));
            }
        } else if let Err(why) = same_shape(&d.decoded, &e.decoded) {
            return Err(TestCaseError::fail(format!("{}: {why}\n{case:?}", d.name)));
        }
    }
    Ok(true)
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn one_field_reaching_the_outputs_as_written(case in profiles::case(exact_field(), 1..=1)) {
        check(&case)?;
    }

    #[test]
    fn several_fields_reaching_the_outputs_as_written(case in profiles::case(exact_field(), 2..=4)) {
        check(&case)?;
    }

    #[test]
    fn one_parsed_field(case in profiles::case(parsed_field(), 1..=1)) {
        check(&case)?;
    }

    #[test]
    fn several_fields_of_any_kind(
        case in profiles::case(prop_oneof![exact_field(), parsed_field()].boxed(), 2..=4)
    ) {
        check(&case)?;
    }
}

/// The unmodified profile and each marker profile are accepted and their outputs parse; the
/// markers show up where their fields go (else the exact comparison would compare nothing).
#[test]
fn the_markers_reach_the_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = Utf8Path::from_path(tmp.path()).unwrap();
    let case = Case {
        fields: Vec::new(),
        arch: Arch::Amd64,
        static_addressing: true,
        cilium: false,
        payload: 0,
    };
    let fields = [
        Field::Name,
        Field::NodeName(4),
        Field::ClusterDomain,
        Field::HostDomain,
        Field::ApiEndpoint,
        Field::Version(4),
        Field::KubernetesVersion,
        Field::Url(0),
        Field::Url(7),
        Field::SpecVersion,
    ];
    for f in fields {
        let value = match f {
            Field::ApiEndpoint => "https://api.example:6443",
            Field::Url(_) => "https://h.example/{version}/x-{arch}",
            _ => "1.2.3",
        };
        let (m, subs) = profiles::marker(&case, f, value);
        let docs = reference(
            &profiles::profile(&case, &[(f, m)]),
            options(&case),
            scratch,
        );
        let text = format!("{docs:?}");
        for (marker, _) in subs {
            assert!(text.contains(&marker), "{f:?}: {marker} is in no output");
        }
    }
}

/// Each piece that breaks things (`profiles::PIECES`) put at the start, in the middle and at
/// the end of every field's value in the built-in profile: refused, or as harmless as above.
/// Deterministic, so a grammar that lets one of them through is caught on every run. (A piece a
/// field accepts is rendered and checked at its first place only.)
#[test]
fn every_piece_in_every_field() {
    let mut checked = 0;
    for (n, field) in profiles::every_field().into_iter().enumerate() {
        let base = Case {
            fields: Vec::new(),
            arch: if n % 2 == 0 { Arch::Amd64 } else { Arch::Arm64 },
            static_addressing: n % 3 == 0,
            cilium: false,
            payload: 0,
        };
        let orig = profiles::original(&base, field);
        let chars = orig.chars().count();
        for piece in profiles::PIECES {
            for at in [0, chars / 2, chars] {
                let cut = orig.char_indices().nth(at).map_or(orig.len(), |(i, _)| i);
                let value = format!("{}{piece}{}", &orig[..cut], &orig[cut..]);
                let case = Case {
                    fields: vec![(field, value)],
                    ..base.clone()
                };
                match check(&case) {
                    Err(e) => panic!("{e}"),
                    Ok(true) => {
                        checked += 1;
                        break;
                    }
                    Ok(false) => {}
                }
            }
        }
    }
    eprintln!("every_piece_in_every_field: {checked} accepted and checked");
}
