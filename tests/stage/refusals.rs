//! Archives and rules that must fail, each with the exact error and nothing left behind.

use super::*;

/// Staging worker with `rules` from this one archive fails, leaves nothing, and says that the
/// archive of `component` has an entry `why`.
fn refused(
    component: &str,
    archive: &str,
    entries: &[(&str, Node)],
    rules: &[InstallRule],
    why: &str,
) {
    let mut inp = Inputs::new();
    let p = inp.add_targz(component, archive, entries);
    let msg = inp.fails_clean("worker", rules);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `{component}`) has an entry {why}",
            p.display()
        )
    );
}

#[test]
fn refuses_dotdot_entry() {
    refused(
        "containerd",
        "containerd.tar.gz",
        &[
            ("bin/containerd", file("c", 10)),
            ("../evil", file("evil", 10)),
        ],
        &[rule("containerd", dir("bin"), "/bin")],
        "`../evil` that has a `..` component; refusing to extract from it",
    );
}

#[test]
fn refuses_absolute_entry() {
    refused(
        "crictl",
        "crictl.tar.gz",
        &[
            ("crictl", file("crictl", 10)),
            ("/etc/passwd", file("pw", 10)),
        ],
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
        "`/etc/passwd` that is absolute; refusing to extract from it",
    );
}

#[test]
fn refuses_selected_symlink() {
    refused(
        "crictl",
        "crictl.tar.gz",
        &[
            ("crictl-real", file("crictl", 10)),
            ("crictl", Node::Symlink("crictl-real")),
        ],
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
        "`crictl` that is a symlink to `crictl-real`; only regular files are installed",
    );
}

#[test]
fn refuses_escaping_symlink_in_selected_dir() {
    refused(
        "containerd",
        "containerd.tar.gz",
        &[
            ("bin/", Node::Dir),
            ("bin/containerd", file("c", 10)),
            ("bin/ctr", Node::Symlink("../../etc/shadow")),
        ],
        &[rule("containerd", dir("bin"), "/bin")],
        "`bin/ctr` that is a symlink to `../../etc/shadow`, outside the archive; refusing to extract from it",
    );
}

#[test]
fn refuses_hardlink_to_outside() {
    refused(
        "cni-plugins",
        "cni.tgz",
        &[
            ("./", Node::Dir),
            ("./bridge", file("bridge", 10)),
            ("./loopback", Node::Hardlink("/etc/shadow")),
        ],
        &[rule("cni-plugins", dir(""), "/opt/cni/bin")],
        "`./loopback` that is a hard link to `/etc/shadow`, outside the archive; refusing to extract from it",
    );
}

#[test]
fn unselected_links_are_ignored() {
    let mut inp = Inputs::new();
    inp.add_targz(
        "kubernetes-node",
        "k.tar.gz",
        &[
            ("kubernetes/node/bin/kubelet", file("kubelet", 10)),
            ("kubernetes/addons/link", Node::Symlink("/etc/shadow")),
        ],
    );
    let rules = [rule(
        "kubernetes-node",
        member("kubernetes/node/bin/kubelet"),
        "/usr/local/bin/kubelet",
    )];
    let overlay = inp.stage("worker", &rules, MTIME).unwrap();
    assert_eq!(overlay.entries.len(), 1);
}

#[test]
fn missing_member_names_archive_member_and_what_exists() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "kubernetes-node",
        "kubernetes-node-linux-arm64.tar.gz",
        &[
            ("kubernetes/", Node::Dir),
            ("kubernetes/node/bin/kube-proxy", file("kube-proxy", 10)),
            ("kubernetes/node/bin/kubeadm", file("kubeadm", 10)),
        ],
    );
    let rules = [
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kube-proxy"),
            "/usr/local/bin/kube-proxy",
        ),
        rule(
            "kubernetes-node",
            member("kubernetes/node/bin/kubelet"),
            "/usr/local/bin/kubelet",
        ),
    ];
    let msg = inp.fails_clean("worker", &rules);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `kubernetes-node`) has \
             no member `kubernetes/node/bin/kubelet` (for `/usr/local/bin/kubelet`); it \
             has e.g. kubernetes/node/bin/kube-proxy, kubernetes/node/bin/kubeadm",
            p.display()
        )
    );
}

#[test]
fn dir_rule_matching_nothing_fails() {
    let mut inp = Inputs::new();
    let p = inp.add_targz(
        "containerd",
        "containerd.tar.gz",
        &[("./", Node::Dir), ("./containerd", file("c", 10))],
    );
    let msg = inp.fails_clean("worker", &[rule("containerd", dir("bin/"), "/bin")]);
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `containerd`) has no \
             file directly in directory `bin` (for `/bin`); it has e.g. containerd",
            p.display()
        )
    );
}

#[test]
fn archive_rule_on_non_gzip_file_fails() {
    let mut inp = Inputs::new();
    let p = inp.cache("crictl");
    fs_err::write(&p, content("crictl", 100)).unwrap();
    inp.add("crictl", p.clone());
    let msg = inp.fails_clean(
        "worker",
        &[rule("crictl", member("crictl"), "/usr/local/bin/crictl")],
    );
    assert_eq!(
        msg,
        format!(
            "staging the overlay of role `worker`: `{}` (component `crictl`) is not \
             gzip-compressed (it starts with 0x7f454c46), but its install rules take files \
             out of it, which needs a .tar.gz",
            p.display()
        )
    );
}

#[test]
fn refuses_bad_rules_and_double_installs() {
    let inp = upstream();
    let msg = inp.fails_clean(
        "worker",
        &[rule("runc", Source::Whole, "usr/local/bin/runc")],
    );
    assert_eq!(
        msg,
        "staging the overlay of role `worker`: install rule for component `runc` -> \
         `usr/local/bin/runc`: node path `usr/local/bin/runc` must be absolute"
    );
    let msg = inp.fails_clean("worker", &[rule("runc", Source::Whole, "/usr/../etc/runc")]);
    assert!(msg.ends_with("no empty, `.` or `..` components)"), "{msg}");
    let msg = inp.fails_clean("worker", &[rule("crictl", member("../crictl"), "/x")]);
    assert!(
        msg.ends_with("member path `../crictl` has a `..` component"),
        "{msg}"
    );
    let msg = inp.fails_clean("worker", &[rule("cri-o", Source::Whole, "/x")]);
    assert!(
        msg.ends_with("no resolved artifact for component `cri-o`"),
        "{msg}"
    );
    let msg = inp.fails_clean("work/er", &[]);
    assert!(msg.contains("role name `work/er`"), "{msg}");
    let msg = inp.fails_clean(
        "worker",
        &[
            rule("runc", Source::Whole, "/bin/ctr"),
            rule("containerd", dir("bin"), "/bin"),
        ],
    );
    assert!(
        msg.ends_with(&format!(
            "`/bin/ctr` is installed twice: from member `bin/ctr` of `{}` (component \
             `containerd`) and from `{}` (component `runc`)",
            inp.artifacts["containerd"].display(),
            inp.artifacts["runc"].display()
        )),
        "{msg}"
    );
}
