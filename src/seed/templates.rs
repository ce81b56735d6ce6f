//! The config templates: `user-data/*.j2`, compiled in, each overridable with
//! `--templates DIR/<name>.j2`; minijinja, strict about undefined values, with an `sh` filter
//! that single-quotes a value for POSIX sh.

use anyhow::{bail, Context as _};
use camino::Utf8Path;
use minijinja::{Environment, UndefinedBehavior};

/// The compiled-in templates, by name (file name without `.j2`).
const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "10-bridge.conf",
        include_str!("../../user-data/10-bridge.conf.j2"),
    ),
    (
        "99-loopback.conf",
        include_str!("../../user-data/99-loopback.conf.j2"),
    ),
    (
        "bootstrap-cluster.sh",
        include_str!("../../user-data/bootstrap-cluster.sh.j2"),
    ),
    (
        "containerd-config.toml",
        include_str!("../../user-data/containerd-config.toml.j2"),
    ),
    (
        "containerd.service",
        include_str!("../../user-data/containerd.service.j2"),
    ),
    (
        "etcd.service",
        include_str!("../../user-data/etcd.service.j2"),
    ),
    (
        "first-boot.sh",
        include_str!("../../user-data/first-boot.sh.j2"),
    ),
    (
        "imagegen-bootstrap-cluster.service",
        include_str!("../../user-data/imagegen-bootstrap-cluster.service.j2"),
    ),
    ("ipvs.conf", include_str!("../../user-data/ipvs.conf.j2")),
    (
        "kube-apiserver.service",
        include_str!("../../user-data/kube-apiserver.service.j2"),
    ),
    (
        "kube-controller-manager.service",
        include_str!("../../user-data/kube-controller-manager.service.j2"),
    ),
    (
        "kube-proxy-config.yaml",
        include_str!("../../user-data/kube-proxy-config.yaml.j2"),
    ),
    (
        "kube-proxy.service",
        include_str!("../../user-data/kube-proxy.service.j2"),
    ),
    (
        "kube-scheduler.service",
        include_str!("../../user-data/kube-scheduler.service.j2"),
    ),
    (
        "kube-scheduler.yaml",
        include_str!("../../user-data/kube-scheduler.yaml.j2"),
    ),
    (
        "kubelet-access-rbac.yaml",
        include_str!("../../user-data/kubelet-access-rbac.yaml.j2"),
    ),
    (
        "kubelet-config.yaml",
        include_str!("../../user-data/kubelet-config.yaml.j2"),
    ),
    (
        "kubelet.service",
        include_str!("../../user-data/kubelet.service.j2"),
    ),
    (
        "ldirectord.cf",
        include_str!("../../user-data/ldirectord.cf.j2"),
    ),
    (
        "modules-load.conf",
        include_str!("../../user-data/modules-load.conf.j2"),
    ),
    (
        "sysctl.conf",
        include_str!("../../user-data/sysctl.conf.j2"),
    ),
    (
        "vip-arp.conf",
        include_str!("../../user-data/vip-arp.conf.j2"),
    ),
];

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The built-in templates, each replaced by `DIR/<name>.j2` when that file exists.
    pub fn load(override_dir: Option<&Utf8Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        env.add_filter("sh", shell_quote);
        if let Some(dir) = override_dir {
            let entries = fs_err::read_dir(dir.as_std_path())
                .with_context(|| format!("--templates {dir}: cannot list the directory"))?;
            for e in entries {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".j2") {
                    if !BUILTIN_TEMPLATES.iter().any(|(n, _)| *n == stem) {
                        bail!(
                            "--templates {dir}: unknown template {name} (known: {})",
                            BUILTIN_TEMPLATES
                                .iter()
                                .map(|(n, _)| format!("{n}.j2"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        );
                    }
                }
            }
        }
        for (name, builtin) in BUILTIN_TEMPLATES {
            let source = match override_dir.map(|d| d.join(format!("{name}.j2"))) {
                Some(p) if p.exists() => crate::fsutil::read_to_string(p.as_std_path())?,
                _ => builtin.to_string(),
            };
            env.add_template_owned(name.to_string(), source)
                .with_context(|| format!("template {name}.j2 does not parse"))?;
        }
        Ok(Templates { env })
    }

    pub(crate) fn render(&self, name: &str, ctx: &minijinja::Value) -> anyhow::Result<String> {
        let t = self
            .env
            .get_template(name)
            .with_context(|| format!("no template {name}.j2"))?;
        t.render(ctx)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .with_context(|| format!("rendering template {name}.j2"))
    }
}

/// Single-quotes a value for POSIX sh.
fn shell_quote(v: String) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes() {
        assert_eq!(shell_quote("a'b".into()), r"'a'\''b'");
    }

    #[test]
    fn unknown_override_template_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join("kublet.service.j2"), "x").unwrap();
        let dir = Utf8Path::from_path(tmp.path()).unwrap();
        let err = Templates::load(Some(dir)).err().unwrap().to_string();
        assert!(err.contains("unknown template kublet.service.j2"), "{err}");
    }

    #[test]
    fn strict_undefined() {
        let tmp = tempfile::tempdir().unwrap();
        fs_err::write(tmp.path().join("sysctl.conf.j2"), "{{ nope }}").unwrap();
        let t = Templates::load(Some(Utf8Path::from_path(tmp.path()).unwrap())).unwrap();
        let err = t
            .render("sysctl.conf", &minijinja::context! {})
            .unwrap_err();
        assert!(format!("{err:#}").contains("undefined"), "{err:#}");
    }
}
