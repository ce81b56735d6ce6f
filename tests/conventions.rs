//! The conventions of a command-line tool people already know how to use, over the real
//! binary: `--arch` by any of its names and the host's by default, shell completions and man
//! pages, `-v`/`-q` on every command, flags from the environment (`IMAGEGEN_*`), colour only on
//! a terminal and never with `NO_COLOR`, and the documented exit codes.

mod common;

use common::{mirror, root, Test};

/// Every command and subcommand, as `imagegen --help` and `imagegen cache --help` list them.
fn commands() -> Vec<Vec<&'static str>> {
    let mut all: Vec<Vec<&str>> = [
        "build",
        "plan",
        "fetch",
        "seed-iso",
        "host-setup",
        "launch",
        "pki",
        "pin",
        "completions",
        "man",
    ]
    .iter()
    .map(|c| vec![*c])
    .collect();
    for sub in ["import", "dir", "list", "prune"] {
        all.push(vec!["cache", sub]);
    }
    for sub in ["check", "show"] {
        all.push(vec!["profile", sub]);
    }
    all.push(vec!["pki", "check"]);
    all
}

/// The names in the `Commands:` section of a help text.
fn listed_commands(help: &str) -> Vec<String> {
    help.split("Commands:")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A command's line; a wrapped description is indented further.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn the_command_list_here_is_the_binarys() {
    let top = Test::new().arg("--help").run().success();
    let mut here: Vec<String> = commands()
        .iter()
        .map(|c| c[0].to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut listed = listed_commands(top.stdout());
    here.sort();
    listed.sort();
    assert_eq!(here, listed);
    for group in ["cache", "profile"] {
        let help = Test::new().args([group, "--help"]).run().success();
        let mut listed = listed_commands(help.stdout());
        let mut here: Vec<String> = commands()
            .iter()
            .filter(|c| c[0] == group)
            .map(|c| c[1].to_string())
            .collect();
        listed.sort();
        here.sort();
        assert_eq!(here, listed, "{group}");
    }
}

// --arch

/// The first line of `plan`: profile and arch.
fn planned_arch(t: Test) -> String {
    let out = t.run().success();
    out.stdout().lines().next().unwrap().to_string()
}

#[test]
fn arch_takes_the_names_uname_prints_in_any_case() {
    for (given, arch) in [
        ("arm64", "arm64"),
        ("ARM64", "arm64"),
        ("aarch64", "arm64"),
        ("AArch64", "arm64"),
        ("amd64", "amd64"),
        ("x86_64", "amd64"),
        ("X86_64", "amd64"),
        ("x64", "amd64"),
    ] {
        let line = planned_arch(Test::new().args(["plan", "--arch", given]));
        assert!(line.ends_with(&format!("arch {arch}")), "{given}: {line}");
    }
    let line = planned_arch(Test::new().arg("plan").env("IMAGEGEN_ARCH", "aarch64"));
    assert!(line.ends_with("arch arm64"), "{line}");
}

#[test]
fn arch_defaults_to_this_machines() {
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no VMs for a {other} test machine"),
    };
    let line = planned_arch(Test::new().arg("plan"));
    assert!(line.ends_with(&format!("arch {host}")), "{line}");
    // The same default for every command that has --arch.
    let t = Test::new();
    let out = t
        .clone()
        .args([
            "build",
            "--payload",
            "fetch",
            "--no-iso",
            "-q",
            "--out",
            "o",
        ])
        .run()
        .success();
    assert!(t.temp().join("o").join(host).is_dir(), "{}", out.stdout());
    let out = t.clone().args(["fetch", "--offline", "-q"]).run().code(1);
    assert!(
        out.stderr().contains(&format!("--arch {host}")),
        "{}",
        out.stderr()
    );
    let out = t
        .clone()
        .args(["launch", "all", "--status", "--out", "nowhere"])
        .run()
        .code(1);
    assert!(
        out.stderr().contains(&format!("nowhere/{host}/launch")),
        "{}",
        out.stderr()
    );
}

#[test]
fn an_unknown_arch_names_the_accepted_values() {
    let out = Test::new()
        .args(["plan", "--arch", "sparc64"])
        .run()
        .code(2);
    insta::assert_snapshot!("unknown-arch", out.snapshot());
    let out = Test::new()
        .arg("plan")
        .env("IMAGEGEN_ARCH", "riscv")
        .run()
        .code(2);
    assert!(
        out.stderr().contains("arm64, aarch64, amd64, x86_64, x64"),
        "{}",
        out.stderr()
    );
}

#[test]
fn every_arch_flag_says_its_names_and_default() {
    for cmd in [&["build"][..], &["plan"], &["fetch"], &["pki"], &["launch"]] {
        let out = Test::new().args(cmd).arg("--help").run().success();
        let help = out
            .stdout()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for word in [
            "aarch64",
            "x86_64",
            "x64",
            "any case",
            "default: this machine's",
            "IMAGEGEN_ARCH",
        ] {
            assert!(help.contains(word), "{cmd:?} --help lacks {word}: {help}");
        }
    }
}

// Completions and man pages

#[test]
fn completions_for_every_shell_name_every_command() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Test::new().args(["completions", shell]).run().success();
        let script = out.stdout();
        assert!(script.len() > 1000, "{shell}: {script}");
        for cmd in commands() {
            for word in cmd {
                assert!(script.contains(word), "{shell} completions lack `{word}`");
            }
        }
        for flag in ["--arch", "--profile", "--verbose", "--quiet", "aarch64"] {
            // Aliases are completed where the shell lists values; names always.
            if flag == "aarch64" && shell != "fish" {
                continue;
            }
            assert!(
                script.contains(flag.trim_start_matches('-')),
                "{shell}: {flag}"
            );
        }
    }
    let out = Test::new().args(["completions", "tcsh"]).run().code(2);
    assert!(
        out.stderr().contains("bash, elvish, fish, powershell, zsh"),
        "{}",
        out.stderr()
    );
}

#[test]
fn the_man_page_names_every_command_and_one_page_per_command_goes_to_a_dir() {
    let out = Test::new().arg("man").run().success();
    let roff = out.stdout();
    assert!(roff.contains(".TH imagegen 1"), "{roff}");
    for cmd in commands() {
        let name = cmd.join("\\-");
        let top = cmd[0].replace('-', "\\-");
        assert!(roff.contains(&top), "the page lacks {name}");
    }
    assert!(roff.contains("Exit status"), "{roff}");

    let t = Test::new();
    let out = t.clone().args(["man", "--dir", "man1"]).run().success();
    let dir = t.temp().join("man1");
    let mut pages = common::fs::list_dir(&dir);
    pages.sort();
    let mut expected: Vec<String> = commands()
        .iter()
        .map(|c| format!("imagegen-{}.1", c.join("-")))
        .chain(
            ["imagegen.1", "imagegen-cache.1", "imagegen-profile.1"]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    expected.sort();
    assert_eq!(pages, expected, "{}", out.stdout());
    let prune = fs_err::read_to_string(dir.join("imagegen-cache-prune.1")).unwrap();
    assert!(prune.contains(".TH imagegen-cache-prune 1"), "{prune}");
    assert!(prune.contains("\\-\\-dry\\-run"), "{prune}");
}

// -v and -q

#[test]
fn every_command_takes_v_and_q() {
    for cmd in commands() {
        let out = Test::new().args(&cmd).arg("--help").run().success();
        for flag in ["-v, --verbose", "-q, --quiet"] {
            assert!(out.stdout().contains(flag), "{cmd:?} --help lacks {flag}");
        }
    }
    // Before or after the command, one meaning; both at once is a usage error.
    for args in [
        &["-q", "plan"][..],
        &["plan", "-q"],
        &["plan", "--verbose"],
        &["-v", "profile", "show"],
    ] {
        Test::new().args(args).run().success();
    }
    let out = Test::new().args(["plan", "-v", "-q"]).run().code(2);
    assert!(
        out.stderr().contains("cannot be used with"),
        "{}",
        out.stderr()
    );
}

#[test]
fn quiet_prints_the_result_only_and_verbose_says_where_each_artifact_came_from() {
    let t = Test::new();
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let build = |flag: &str, out: &str| {
        t.clone()
            .args(["build", "--arch", "amd64", flag, "--no-iso", "--profile"])
            .arg(&m.profile)
            .args(["--mirror", &m.file_url(), "--out", out])
            .arg("--pki")
            .arg(common::pki_fixture())
            .run()
            .success()
    };
    // No SSH key: the warning shows, but not with -q.
    let normal = build("--jobs=2", "o1");
    assert!(
        normal.stderr().contains("warning: no SSH public key"),
        "{}",
        normal.stderr()
    );
    let quiet = build("-q", "o2");
    assert_eq!(quiet.stderr(), "");
    assert!(
        quiet.stdout().starts_with("wrote 7 seeds"),
        "{}",
        quiet.stdout()
    );
    // -v: each step, and each artifact's source (here the cache the builds above filled).
    let verbose = build("-v", "o3");
    let err = verbose.normalize(verbose.stderr());
    for line in [
        "plan: profile kthw-1.31 ([TEMP]/profile.yaml) for amd64: 7 VMs",
        "  containerd 1.7.20: from the cache -> [CACHE]/sha256/",
        "overlay of worker: packed",
        "seeds: 7 VMs (embed payload)",
        "replacing o3/amd64",
    ] {
        assert!(err.contains(line), "-v lacks `{line}`:\n{err}");
    }
    // fetch -v from an empty cache: the mirror.
    let fetch = t
        .clone()
        .args(["fetch", "-v", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .args(["--mirror", &m.file_url()])
        .env("IMAGEGEN_CACHE", t.temp().join("fresh-cache"))
        .run()
        .success();
    assert!(
        fetch.stderr().contains("runc 1.1.13: from mirror file://"),
        "{}",
        fetch.stderr()
    );

    // seed-iso's notes are gone with -q too.
    fs_err::write(t.temp().join("user-data"), "#cloud-config\n{}\n").unwrap();
    let noted = t
        .clone()
        .args(["seed-iso", "s1.iso", "user-data"])
        .run()
        .success();
    assert!(
        noted.stderr().contains("note: no meta-data given"),
        "{}",
        noted.stderr()
    );
    let quiet = t
        .clone()
        .args(["seed-iso", "-q", "s2.iso", "user-data"])
        .run()
        .success();
    assert_eq!(quiet.stderr(), "");
}

// The environment

#[test]
fn flags_come_from_the_environment_and_the_help_says_which() {
    let help = Test::new().args(["build", "--help"]).run().success();
    for var in [
        "IMAGEGEN_ARCH",
        "IMAGEGEN_PROFILE",
        "IMAGEGEN_OUT",
        "IMAGEGEN_CACHE",
        "IMAGEGEN_MIRROR",
        "IMAGEGEN_JOBS",
        "IMAGEGEN_OFFLINE",
    ] {
        assert!(
            help.stdout().contains(&format!("[env: {var}=")),
            "build --help lacks {var}"
        );
    }
    let top = Test::new().arg("--help").run().success();
    for word in ["SOURCE_DATE_EPOCH", "NO_COLOR"] {
        assert!(top.stdout().contains(word), "--help lacks {word}");
    }

    // IMAGEGEN_PROFILE and IMAGEGEN_OUT: `pki` writes the profile's PKI where OUT says.
    let t = Test::new();
    let out = t
        .clone()
        .arg("pki")
        .env(
            "IMAGEGEN_PROFILE",
            root().join("tests/profiles/good/twelve-workers.yaml"),
        )
        .env("IMAGEGEN_OUT", "elsewhere")
        .run()
        .success();
    assert!(
        out.stdout().starts_with("elsewhere/pki: created"),
        "{}",
        out.stdout()
    );
    assert!(t.temp().join("elsewhere/pki/worker11.pem").is_file());

    // IMAGEGEN_OFFLINE=1 with IMAGEGEN_MIRROR of two mirrors, comma-separated: the first does
    // not exist, the second has every file.
    let m = mirror::build(t.temp(), "amd64", &|p| p);
    let out = t
        .clone()
        .args(["fetch", "-v", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .env("IMAGEGEN_OFFLINE", "1")
        .env(
            "IMAGEGEN_MIRROR",
            format!("file:///nonexistent-mirror,{}", m.file_url()),
        )
        .env("IMAGEGEN_JOBS", "2")
        .run()
        .success();
    assert!(
        out.stderr().contains("from mirror file://"),
        "{}",
        out.stderr()
    );
    // Commas separate them too; an empty cache and no usable mirror, offline: nothing fetched.
    let out = t
        .clone()
        .args(["fetch", "--arch", "amd64", "--profile"])
        .arg(&m.profile)
        .env("IMAGEGEN_CACHE", t.temp().join("empty-cache"))
        .env("IMAGEGEN_OFFLINE", "true")
        .env(
            "IMAGEGEN_MIRROR",
            "file:///nonexistent-a,file:///nonexistent-b",
        )
        .run()
        .code(1);
    assert!(
        out.stderr().contains("not in the cache"),
        "{}",
        out.stderr()
    );
    // A bad value from the environment is a usage error naming the variable's flag.
    let out = Test::new()
        .arg("fetch")
        .env("IMAGEGEN_JOBS", "many")
        .run()
        .code(2);
    assert!(out.stderr().contains("--jobs"), "{}", out.stderr());
}

// Colour and exit codes

#[test]
fn errors_are_coloured_only_where_colour_belongs() {
    let bad = root().join("tests/profiles/bad/duplicate-node-name.yaml");
    let red_error = "\u{1b}[1m\u{1b}[31merror";
    // stderr is a pipe here: no colour.
    let plain = Test::new()
        .args(["profile", "check"])
        .arg(&bad)
        .run()
        .code(1);
    assert!(!plain.stderr().contains('\u{1b}'), "{}", plain.stderr());
    // As on a terminal (CLICOLOR_FORCE stands in for one): clap's colours.
    let forced = Test::new()
        .args(["profile", "check"])
        .arg(&bad)
        .env("CLICOLOR_FORCE", "1")
        .run()
        .code(1);
    assert!(forced.stderr().contains(red_error), "{:?}", forced.stderr());
    let other = Test::new()
        .args(["plan", "--profile", "missing.yaml"])
        .env("CLICOLOR_FORCE", "1")
        .run()
        .code(1);
    assert!(
        other.stderr().starts_with(red_error),
        "{:?}",
        other.stderr()
    );
    // NO_COLOR wins, for our errors and clap's.
    for args in [
        &["profile", "check", bad.to_str().unwrap()][..],
        &["plan", "--arch", "vax"],
    ] {
        let out = Test::new()
            .args(args)
            .env("CLICOLOR_FORCE", "1")
            .env("NO_COLOR", "1")
            .run()
            .failure();
        assert!(
            !out.stderr().contains('\u{1b}'),
            "{args:?}: {:?}",
            out.stderr()
        );
    }
}

#[test]
fn a_real_terminal_gets_colour_unless_no_color() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` to run the binary on a terminal");
        return;
    }
    let bad = root().join("tests/profiles/bad/duplicate-node-name.yaml");
    let run = |no_color: bool| {
        let mut t = Test::new().env("TERM", "xterm");
        if no_color {
            t = t.env("NO_COLOR", "1");
        }
        // `script` gives the binary a terminal (stdout and stderr both), and ends as it does.
        let out = t
            .wrap(["sh", "-c", "script -qec \"$0 $* 2>&1\" /dev/null"])
            .args(["profile", "check"])
            .arg(&bad)
            .run()
            .code(1);
        out.stdout().to_string()
    };
    let coloured = run(false);
    assert!(
        coloured.contains("\u{1b}["),
        "no colour on a terminal: {coloured:?}"
    );
    assert!(!run(true).contains("\u{1b}["), "colour despite NO_COLOR");
}

#[test]
fn exit_codes_are_the_documented_ones() {
    let help = Test::new().arg("--help").run().success();
    let text = help
        .stdout()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("Exit status: 0 success, 1 an input or runtime error")
            && text.contains("2 a usage error")
            && text.contains("130/143 interrupted"),
        "{text}"
    );
    Test::new().args(["profile", "show"]).run().code(0);
    Test::new()
        .args(["plan", "--profile", "no-such.yaml"])
        .run()
        .code(1);
    Test::new()
        .args(["profile", "check"])
        .arg(root().join("tests/profiles/bad/bad-mac.yaml"))
        .run()
        .code(1);
    Test::new().args(["plan", "--no-such-flag"]).run().code(2);
    Test::new().args(["no-such-command"]).run().code(2);
    Test::new().args(["completions"]).run().code(2);
}
