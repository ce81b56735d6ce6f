//! The second parsing pass: the meaning of a well-formed profile file. Each section (cluster,
//! nodes, components, resources, first_boot) is checked in its own file, what spans sections
//! (names on the host network, the DHCP range) in `across`, the grammar of each free-form string
//! in `grammar`; every problem is recorded, with the location of its value, and reported
//! together, so one run of `profile check` shows them all.

mod across;
mod cluster;
mod components;
mod first_boot;
mod grammar;
mod nodes;
mod resources;

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_saphyr::Spanned;

use super::error::{Problem, ProfileError};
use super::file::{ProfileFile, S};
use super::{Profile, Role};
pub(super) use grammar::shown;

/// Collects problems; the section checks add to it and carry on.
#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    /// A problem at the value `span`. The message is kept on one line whatever value it quotes
    /// (`shown`), so a problem can neither split the report nor hide in it.
    fn at<T>(&mut self, span: &Spanned<T>, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line: span.referenced.line(),
            column: span.referenced.column(),
            key: shown(&key.into()),
            message: shown(&message.into()),
        });
    }

    /// A problem with no single place in the file (e.g. a count, a missing section).
    fn unplaced(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            line: 0,
            column: 0,
            key: shown(&key.into()),
            message: shown(&message.into()),
        });
    }

    fn ip(&mut self, v: &S<String>, key: &str) -> Option<Ipv4Addr> {
        match v.value.parse::<Ipv4Addr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.at(
                    v,
                    key,
                    format!(
                        "expected an IPv4 address like 192.168.1.10, got `{}`",
                        shown(&v.value)
                    ),
                );
                None
            }
        }
    }

    fn net(&mut self, v: &S<String>, key: &str) -> Option<Ipv4Net> {
        match v.value.parse::<Ipv4Net>() {
            Ok(n) if n.network() == n.addr() => Some(n),
            Ok(n) => {
                self.at(
                    v,
                    key,
                    format!(
                        "`{}` has host bits set; the network is {}",
                        shown(&v.value),
                        n.trunc()
                    ),
                );
                None
            }
            Err(_) => {
                self.at(
                    v,
                    key,
                    format!(
                        "expected an IPv4 CIDR like 10.0.0.0/12, got `{}`",
                        shown(&v.value)
                    ),
                );
                None
            }
        }
    }
}

/// Checks every section of `raw` and builds the model, or returns every problem found, sorted
/// by position (problems without one last).
pub(super) fn validate(raw: ProfileFile, file: &str) -> Result<Profile, ProfileError> {
    let mut c = Checker::default();
    if !grammar::is_profile_name(&raw.name.value) {
        c.at(
            &raw.name,
            "name",
            format!(
                "expected a profile name of 1 to {} ASCII letters, digits, '.', '_' and '-', starting with a letter or digit, like kthw-1.31, got `{}`",
                grammar::MAX_PROFILE_NAME,
                shown(&raw.name.value)
            ),
        );
    }
    let ranges = cluster::check(&mut c, &raw.cluster);
    let nodes = nodes::check(&mut c, &raw.nodes, &ranges);
    across::check(&mut c, &raw, &ranges);
    let has_control = raw.nodes.iter().any(|n| n.role == Role::Control);
    let components = components::check(&mut c, &raw.components, raw.cluster.cni, has_control);
    let resources = resources::check(&mut c, &raw.resources);
    let first_boot = first_boot::check(&mut c, &raw.first_boot);

    let cluster = ranges.into_cluster(&raw.cluster, components.cni_spec_version);
    match cluster {
        Some(cluster) if c.problems.is_empty() => Ok(Profile {
            name: raw.name.value,
            source: file.to_string(),
            cluster,
            nodes,
            components: components.list,
            resources,
            first_boot,
        }),
        _ => {
            // Every range is known when no problem was recorded; this is a safety net.
            if c.problems.is_empty() {
                c.unplaced("", "internal error: a validated value is missing");
            }
            c.problems.sort_by_key(|p| (p.line == 0, p.line, p.column));
            Err(ProfileError::new(file, c.problems))
        }
    }
}
