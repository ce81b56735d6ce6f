//! `imagegen host-setup` on Linux for real: applied and undone inside a network namespace the
//! test creates (links, addresses, IP forwarding and iptables belong to a namespace, so the
//! machine's own network is never touched), with every file under a temp `--root`. Needs root
//! and iptables; `#[ignore]`d like the VM tests (`.ci/run` runs it), and fast.
//!
//!     cargo test --test host_setup_netns -- --include-ignored

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::fs::read_tree;
use common::{build_fixed, Test};

/// A network namespace of this test, deleted (with what is in it) when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("igl-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        Netns(name)
    }

    /// `ip netns exec NS program args...`.
    fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).arg(program);
        c
    }

    /// What `program args` prints in the namespace (which must succeed).
    fn out(&self, program: &str, args: &[&str]) -> String {
        run_ok(self.cmd(program).args(args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `imagegen host-setup --root ROOT ARGS` inside the namespace.
fn host_setup(ns: &Netns, root: &Path, args: &[&str]) -> String {
    run_ok(
        ns.cmd(env!("CARGO_BIN_EXE_imagegen"))
            .args(["host-setup", "--host", "linux", "--root"])
            .arg(root)
            .args(args),
    )
}

fn needs_root_and_iptables() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test makes a network namespace: run it as root"
    );
    assert!(
        Command::new("iptables").arg("--version").output().is_ok(),
        "iptables is not installed (apt-get install iptables)"
    );
}

/// A root with an `/etc/hosts` and someone else's dnsmasq drop-in, as a host has them.
fn host_root(t: &Test) -> std::path::PathBuf {
    let root = t.temp().join("root");
    fs_err::create_dir_all(root.join("etc/dnsmasq.d")).unwrap();
    fs_err::write(
        root.join("etc/hosts"),
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    )
    .unwrap();
    fs_err::write(root.join("etc/dnsmasq.d/other.conf"), "# not ours\n").unwrap();
    root
}

#[test]
#[ignore = "needs root (a network namespace); run by .ci/run with --include-ignored"]
fn linux_host_setup_applies_once_in_a_namespace_and_undoes_exactly() {
    needs_root_and_iptables();
    let t = Test::new();
    let out = t.temp().join("out");
    build_fixed(&t, "profiles/kthw-1.31.yaml", "amd64", &out)
        .args(["--payload", "fetch", "--no-iso"])
        .run()
        .success();
    let root = host_root(&t);
    let before = read_tree(&root);
    let ns = Netns::new("hs");

    let first = host_setup(&ns, &root, &[]);
    for line in [
        "created /etc/dnsmasq.d/imagegen-kubenet.conf",
        "added the imagegen lines to /etc/hosts",
        "turned on IP forwarding",
        "bridge: created kubr0",
        "address: added 192.168.1.1/24 to kubr0",
        "nat: masquerading 192.168.1.0/24 except to kubr0",
        "services are left alone under --root",
    ] {
        assert!(first.contains(line), "{line:?} not in:\n{first}");
    }
    // The network, in the namespace.
    let addr = ns.out("ip", &["-o", "-4", "addr", "show", "dev", "kubr0"]);
    assert!(addr.contains("inet 192.168.1.1/24 "), "{addr}");
    let link = ns.out("ip", &["-o", "link", "show", "dev", "kubr0"]);
    assert!(link.contains(",UP") || link.contains("<UP"), "{link}");
    let details = ns.out("ip", &["-d", "-o", "link", "show", "dev", "kubr0"]);
    assert!(
        details.contains(" bridge "),
        "kubr0 is no bridge: {details}"
    );
    assert_eq!(
        ns.out("cat", &["/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );
    let nat = ns.out("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(nat.contains("-A POSTROUTING -j IMAGEGEN-KUBENET"), "{nat}");
    assert!(
        nat.contains("-A IMAGEGEN-KUBENET -s 192.168.1.0/24 ! -o kubr0 -j MASQUERADE"),
        "{nat}"
    );
    // The files: what the build wrote to out/amd64/host, where dnsmasq and /etc/hosts take them.
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap();
    assert_eq!(
        read("etc/dnsmasq.d/imagegen-kubenet.conf"),
        fs_err::read_to_string(out.join("amd64/host/dnsmasq.conf")).unwrap()
    );
    assert_eq!(
        read("etc/hosts"),
        format!(
            "{}{}",
            String::from_utf8_lossy(&before[Path::new("etc/hosts")]),
            fs_err::read_to_string(out.join("amd64/host/hosts")).unwrap()
        )
    );
    assert!(read("etc/systemd/system/imagegen-kubenet.service")
        .contains("ExecStart=/usr/local/sbin/imagegen-kubenet up"));
    assert_eq!(
        read("etc/sysctl.d/50-imagegen-kubenet.conf").lines().last(),
        Some("net.ipv4.ip_forward = 1")
    );
    let applied = read_tree(&root);

    // A second run changes nothing, and says so.
    let second = host_setup(&ns, &root, &[]);
    assert!(second.contains("nothing to change"), "{second}");
    assert_eq!(read_tree(&root), applied);
    assert_eq!(
        ns.out("iptables", &["-w", "-t", "nat", "-S"]),
        nat,
        "no rule twice"
    );

    // --undo: the files as before, no bridge, no NAT chain, forwarding off again.
    let undone = host_setup(&ns, &root, &["--undo"]);
    for line in [
        "nat: removed chain IMAGEGEN-KUBENET",
        "bridge: deleted kubr0",
        "set net.ipv4.ip_forward back to 0",
        "removed the imagegen lines from /etc/hosts",
        "removed /usr/local/sbin/imagegen-kubenet",
    ] {
        assert!(undone.contains(line), "{line:?} not in:\n{undone}");
    }
    assert_eq!(read_tree(&root), before, "undo left the files as they were");
    assert!(!root.join("usr").exists() && !root.join("var").exists());
    let links = ns.out("ip", &["-o", "link"]);
    assert!(!links.contains("kubr0"), "{links}");
    let nat = ns.out("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(!nat.contains("IMAGEGEN"), "{nat}");
    assert_eq!(
        ns.out("cat", &["/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
    let again = host_setup(&ns, &root, &["--undo"]);
    assert!(again.contains("nothing to undo"), "{again}");
}

/// A bridge the host had before is the host's: host-setup adds its address and NAT, and --undo
/// takes back only those.
#[test]
#[ignore = "needs root (a network namespace); run by .ci/run with --include-ignored"]
fn undo_leaves_a_bridge_that_was_there_before() {
    needs_root_and_iptables();
    let t = Test::new();
    let root = host_root(&t);
    let ns = Netns::new("hsb");
    ns.out("ip", &["link", "add", "name", "kubr0", "type", "bridge"]);
    let first = host_setup(&ns, &root, &[]);
    assert!(!first.contains("bridge: created"), "{first}");
    assert!(
        first.contains("address: added 192.168.1.1/24 to kubr0"),
        "{first}"
    );
    let undone = host_setup(&ns, &root, &["--undo"]);
    assert!(undone.contains("address: removed"), "{undone}");
    assert!(undone.contains("link: set kubr0 down"), "{undone}");
    assert!(!undone.contains("bridge: deleted"), "{undone}");
    let link = ns.out("ip", &["-o", "link", "show", "dev", "kubr0"]);
    assert!(link.contains("kubr0"), "the host's own bridge stays");
}
