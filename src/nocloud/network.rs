//! network-config: YAML that cloud-init hands to its network renderers, in version 1 (its own
//! format) or 2 (netplan's), bare or under a top-level `network:` key; or `config: disabled`,
//! which turns cloud-init's networking off. Anything else makes cloud-init fall back to DHCP on
//! the first NIC, which looks like success until the address is wrong.

use serde_json::Value;

use super::{schema::kind_of, utf8, yaml, Problem};

pub(super) fn check(data: &[u8]) -> Vec<Problem> {
    let text = match utf8(data) {
        Ok(t) => t,
        Err(p) => return vec![p],
    };
    let doc = match yaml::parse(text) {
        Ok(d) => d,
        Err(p) => return vec![p],
    };
    let Value::Object(top) = &doc.value else {
        let (line, column) = doc.value_at("");
        return vec![Problem::error(
            line,
            column,
            format!(
                "network-config must be a mapping with `version: 1` or `version: 2`, got {}",
                kind_of(&doc.value)
            ),
        )];
    };
    let (net, pointer) = match top.get("network") {
        Some(Value::Object(n)) => (n, "/network"),
        Some(other) => {
            let (line, column) = doc.value_at("/network");
            return vec![Problem::error(
                line,
                column,
                format!("`network` must be a mapping, got {}", kind_of(other)),
            )];
        }
        None => (top, ""),
    };
    if net.get("config").and_then(Value::as_str) == Some("disabled") {
        return Vec::new();
    }
    match net.get("version") {
        Some(v) if v.as_u64() == Some(1) || v.as_u64() == Some(2) => Vec::new(),
        Some(other) => {
            let (line, column) = doc.value_at(&format!("{pointer}/version"));
            vec![Problem::error(
                line,
                column,
                format!("`version` must be 1 or 2, got {}", kind_of(other)),
            )]
        }
        None => {
            let (line, column) = doc.value_at(pointer);
            vec![Problem::error(
                line,
                column,
                "no `version`: network-config needs `version: 1` or `version: 2` (netplan)",
            )]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(t: &str) -> Vec<String> {
        check(t.as_bytes())
            .into_iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect()
    }

    #[test]
    fn versions_one_and_two_bare_or_wrapped() {
        for ok in [
            "version: 2\nethernets: {}\n",
            "network: {version: 2, ethernets: {}}\n",
            "version: 1\nconfig:\n  - type: physical\n    name: eth0\n",
            "network:\n  version: 1\n  config: []\n",
            "config: disabled\n",
            "network: {config: disabled}\n",
        ] {
            assert_eq!(m(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn other_versions_and_shapes_are_located() {
        assert_eq!(
            m("version: 3\n"),
            ["1:10: `version` must be 1 or 2, got a whole number (3)"]
        );
        assert_eq!(
            m("network:\n  version: '2'\n"),
            ["2:12: `version` must be 1 or 2, got text (\"2\")"]
        );
        assert!(m("ethernets: {}\n")[0].starts_with("1:1: no `version`"));
        assert!(m("- a\n")[0].starts_with("1:1: network-config must be a mapping"));
        assert!(m("network: 2\n")[0].starts_with("1:10: `network` must be a mapping"));
        assert!(m("version: [\n")[0].contains("invalid YAML"));
    }
}
