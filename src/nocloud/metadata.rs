//! meta-data: the file that tells cloud-init which instance this is. cloud-init reads a seed only
//! when it has both user-data and meta-data, and runs its once-per-instance steps again only
//! when `instance-id` changes: so a meta-data that is missing is written here with an id taken
//! from the seed's content (a new seed is a new instance; the same seed is the same one).

use serde::Serialize;
use serde_json::Value;
use serde_saphyr::LitString;

use super::{utf8, valid_hostname, yaml, Problem};
use crate::digest::sha256_bytes;

/// What goes into a meta-data written for the user (cloud-localds' `-H`, `-m`, `-i`).
#[derive(Debug, Default, Clone)]
pub struct MetaDataFields {
    /// `local-hostname`.
    pub hostname: Option<String>,
    /// `dsmode` (`local` or `net`).
    pub dsmode: Option<String>,
    /// `network-interfaces`: an ifupdown (ENI) text, which cloud-init turns into its network
    /// config when there is no network-config file.
    pub interfaces: Option<String>,
}

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: &'a str,
    #[serde(rename = "local-hostname", skip_serializing_if = "Option::is_none")]
    local_hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dsmode: Option<&'a str>,
    #[serde(rename = "network-interfaces", skip_serializing_if = "Option::is_none")]
    network_interfaces: Option<LitString>,
}

/// A meta-data text for `fields`, and its instance-id. The id is `iid-` and 16 hex digits of a
/// hash of `fields` and of `content` (the seed's other files as (name, sha256) pairs, in any
/// order): equal inputs give equal ids.
pub fn generate_meta_data(
    fields: &MetaDataFields,
    content: &[(String, String)],
) -> anyhow::Result<(String, String)> {
    let mut content = content.to_vec();
    content.sort();
    let mut framed = String::from("imagegen meta-data v1\n");
    for (name, digest) in &content {
        framed.push_str(&format!("file {name:?} {digest}\n"));
    }
    for (key, value) in [
        ("local-hostname", &fields.hostname),
        ("dsmode", &fields.dsmode),
        ("network-interfaces", &fields.interfaces),
    ] {
        if let Some(v) = value {
            framed.push_str(&format!("{key} {v:?}\n"));
        }
    }
    let hash = sha256_bytes(framed.as_bytes());
    let instance_id = format!("iid-{}", &hash.hex()[..16]);
    let text = serde_saphyr::to_string(&MetaData {
        instance_id: &instance_id,
        local_hostname: fields.hostname.as_deref(),
        dsmode: fields.dsmode.as_deref(),
        network_interfaces: fields.interfaces.clone().map(LitString),
    })?;
    Ok((text, instance_id))
}

/// meta-data as given: a YAML mapping whose `instance-id` is text and whose `local-hostname`
/// is a host name.
pub(super) fn check(data: &[u8]) -> Vec<Problem> {
    let text = match utf8(data) {
        Ok(t) => t,
        Err(p) => return vec![p],
    };
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(p) => return vec![p],
    };
    let no_id = "no `instance-id`: cloud-init uses `nocloud`, the same for every seed, so a \
                 changed seed is not applied to a VM that has booted before";
    let map = match &doc.value {
        Value::Null => return vec![Problem::warning(0, 0, no_id)],
        Value::Object(m) => m,
        other => {
            return vec![Problem::error(
                1,
                1,
                format!(
                    "meta-data must be a mapping such as `instance-id: ...`, got {}",
                    super::schema::kind_of(other)
                ),
            )]
        }
    };
    let mut problems = Vec::new();
    match map.get("instance-id") {
        None => problems.push(Problem::warning(0, 0, no_id)),
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(other) => {
            let (line, column) = doc.value_at("/instance-id");
            problems.push(Problem::error(
                line,
                column,
                format!(
                    "`instance-id` must be non-empty text, got {}",
                    super::schema::kind_of(other)
                ),
            ));
        }
    }
    if let Some(host) = map.get("local-hostname") {
        if !host.as_str().is_some_and(valid_hostname) {
            let (line, column) = doc.value_at("/local-hostname");
            problems.push(Problem::error(
                line,
                column,
                format!(
                    "`local-hostname` must be a host name (letters, digits, inner '-', dot-separated), got {}",
                    super::schema::kind_of(host)
                ),
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_depend_on_content_only() {
        let f = MetaDataFields::default();
        let a = [("user-data".to_string(), "sha256:aa".to_string())];
        let (text, id) = generate_meta_data(&f, &a).unwrap();
        assert_eq!(text, format!("instance-id: {id}\n"));
        assert!(id.starts_with("iid-") && id.len() == 20, "{id}");
        assert_eq!(generate_meta_data(&f, &a).unwrap().1, id);
        let b = [("user-data".to_string(), "sha256:ab".to_string())];
        assert_ne!(generate_meta_data(&f, &b).unwrap().1, id);
        let h = MetaDataFields {
            hostname: Some("node1".into()),
            ..Default::default()
        };
        assert_ne!(generate_meta_data(&h, &a).unwrap().1, id);
        // Order of the files does not matter.
        let two = [
            ("user-data".to_string(), "sha256:aa".to_string()),
            ("network-config".to_string(), "sha256:bb".to_string()),
        ];
        let mut rev = two.clone();
        rev.reverse();
        assert_eq!(
            generate_meta_data(&f, &two).unwrap().1,
            generate_meta_data(&f, &rev).unwrap().1
        );
    }

    #[test]
    fn generated_meta_data_carries_every_field_and_reads_back() {
        let f = MetaDataFields {
            hostname: Some("node1".into()),
            dsmode: Some("local".into()),
            interfaces: Some("auto eth0\niface eth0 inet dhcp\n".into()),
        };
        let (text, id) = generate_meta_data(&f, &[]).unwrap();
        assert_eq!(
            text,
            format!("instance-id: {id}\nlocal-hostname: node1\ndsmode: local\nnetwork-interfaces: |\n  auto eth0\n  iface eth0 inet dhcp\n")
        );
        assert!(check(text.as_bytes()).is_empty());
        let doc = yaml::parse(&text).unwrap();
        assert_eq!(
            doc.value["network-interfaces"],
            "auto eth0\niface eth0 inet dhcp\n"
        );
    }

    #[test]
    fn given_meta_data_is_checked() {
        let m = |t: &str| {
            check(t.as_bytes())
                .into_iter()
                .map(|p| format!("{:?} {}:{}: {}", p.severity, p.line, p.column, p.message))
                .collect::<Vec<_>>()
        };
        assert!(m("instance-id: a\nlocal-hostname: node-1\n").is_empty());
        assert!(m("")
            .first()
            .unwrap()
            .starts_with("Warning 0:0: no `instance-id`"));
        assert!(m("local-hostname: x\n")[0].starts_with("Warning"));
        assert!(m("instance-id: 5\n")[0]
            .starts_with("Error 1:14: `instance-id` must be non-empty text, got a whole number"));
        assert!(m("instance-id: a\nlocal-hostname: no_underscores\n")[0]
            .starts_with("Error 2:17: `local-hostname` must be a host name"));
        assert!(m("- a\n")[0].starts_with("Error 1:1: meta-data must be a mapping"));
        assert!(m("a: [\n")[0].contains("invalid YAML"));
    }
}
