//! `imagegen host-setup`: the guide's `setuphost.sh`, generated from the profile.
//!
//! A recipe per host kind lists what the host gets: files imagegen owns outright, lines between
//! markers in files others own, and on Linux the network itself (IP forwarding, and the bridge
//! and NAT made by the script the recipe installs). `--print` shows the recipe; applying it does
//! each step only when the host differs, so a second run changes nothing and says so; every
//! change is recorded in a state file, and `--undo` reverses exactly what was recorded.
//!
//! Testable without touching the machine: every file path is taken under `root` (`--root DIR`),
//! the network steps act on the current network namespace (IP forwarding, links and iptables are
//! per namespace), and services (systemd, Homebrew) are only touched when `root` is `/`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};
use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use super::render::{self, KUBENET_SCRIPT, KUBENET_UNIT_NAME};
use super::{block, HostKind, HostNet, BRIDGE};
use crate::fsutil;

/// What `host-setup` is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetupAction {
    Print,
    Apply,
    Undo,
}

pub struct SetupOptions {
    pub action: SetupAction,
    /// Prefix of every file path; `/` is the machine itself, and only then are services touched.
    pub root: Utf8PathBuf,
}

const HOSTS: &str = "/etc/hosts";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";
const LINUX_DNSMASQ_DROPIN: &str = "/etc/dnsmasq.d/imagegen-kubenet.conf";
const LINUX_SYSCTL: &str = "/etc/sysctl.d/50-imagegen-kubenet.conf";
const LINUX_UNIT: &str = "/etc/systemd/system/imagegen-kubenet.service";
const LINUX_STATE: &str = "/var/lib/imagegen/host-setup.json";
const MACOS_DNSMASQ_CONF: &str = "/opt/homebrew/etc/dnsmasq.conf";
const MACOS_BREW: &str = "/opt/homebrew/bin/brew";
const MACOS_STATE: &str = "/var/db/imagegen/host-setup.json";
const DNSMASQ_UNIT: &str = "dnsmasq.service";

/// A file imagegen owns outright.
struct OwnedFile {
    path: &'static str,
    content: String,
    mode: u32,
    why: &'static str,
}

/// Lines between markers in a file others own too.
struct Block {
    path: &'static str,
    text: String,
    why: &'static str,
}

/// Everything host-setup does on one kind of host.
struct Recipe {
    files: Vec<OwnedFile>,
    blocks: Vec<Block>,
    /// Linux: IP forwarding and the kubenet script's `up` in the current network namespace.
    network: bool,
    state: &'static str,
}

fn recipe(net: &HostNet) -> Recipe {
    let hosts = Block {
        path: HOSTS,
        text: render::hosts_block(net),
        why: "names of the host, every node and the API VIP",
    };
    match net.kind {
        HostKind::Linux => Recipe {
            files: vec![
                OwnedFile {
                    path: LINUX_SYSCTL,
                    content: render::sysctl_conf(net),
                    mode: 0o644,
                    why: "IP forwarding at boot",
                },
                OwnedFile {
                    path: KUBENET_SCRIPT,
                    content: render::kubenet_script(net),
                    mode: 0o755,
                    why: "makes (and removes) the bridge and the NAT rule",
                },
                OwnedFile {
                    path: LINUX_UNIT,
                    content: render::kubenet_unit(net),
                    mode: 0o644,
                    why: "runs that script at boot, before dnsmasq",
                },
                OwnedFile {
                    path: LINUX_DNSMASQ_DROPIN,
                    content: render::dnsmasq_block(net),
                    mode: 0o644,
                    why: "DHCP and DNS on the bridge (read by Debian's and Fedora's dnsmasq)",
                },
            ],
            blocks: vec![hosts],
            network: true,
            state: LINUX_STATE,
        },
        HostKind::MacOs => Recipe {
            files: Vec::new(),
            blocks: vec![
                Block {
                    path: MACOS_DNSMASQ_CONF,
                    text: render::dnsmasq_block(net),
                    why: "DHCP and DNS for the vmnet network (Homebrew's dnsmasq)",
                },
                hosts,
            ],
            network: false,
            state: MACOS_STATE,
        },
    }
}

/// What host-setup changed, for `--undo`. Paths are the host's (without `--root`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    profile: String,
    /// Owned files and what was there before (content and mode), `None` when nothing was.
    files: BTreeMap<String, Option<(String, u32)>>,
    /// Files holding the block, and whether host-setup created the file.
    blocks: BTreeMap<String, bool>,
    /// Directories host-setup created (removed again once empty).
    dirs: BTreeSet<String>,
    /// `net.ipv4.ip_forward` before host-setup turned it on.
    ip_forward_before: Option<String>,
    /// What the kubenet script did: `bridge`, `address`, `link` (set up), `nat`.
    network: BTreeSet<String>,
    /// Whether host-setup enabled the unit.
    unit_enabled: bool,
}

/// Runs `opts.action` for `net`; returns the text to print.
pub fn setup(net: &HostNet, opts: &SetupOptions) -> anyhow::Result<String> {
    let r = recipe(net);
    match opts.action {
        SetupAction::Print => Ok(print(net, &r)),
        SetupAction::Apply | SetupAction::Undo => {
            let host = Host::new(&opts.root, &r)?;
            let (changes, notes) = if opts.action == SetupAction::Apply {
                apply(net, &r, &host)?
            } else {
                undo(net, &r, &host)?
            };
            Ok(report(net, opts.action, &changes, &notes))
        }
    }
}

fn report(net: &HostNet, action: SetupAction, changes: &[String], notes: &[String]) -> String {
    let what = if action == SetupAction::Undo {
        "host-setup --undo"
    } else {
        "host-setup"
    };
    let mut s = format!("{what} for {} on {}: ", net.profile, net.kind);
    if changes.is_empty() {
        s.push_str(if action == SetupAction::Undo {
            "nothing to undo\n"
        } else {
            "nothing to change, the host is set up already\n"
        });
    } else {
        s.push_str(&format!("{} change(s)\n", changes.len()));
        for c in changes {
            s.push_str(&format!("  {c}\n"));
        }
    }
    for n in notes {
        s.push_str(&format!("note: {n}\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// --print

fn print(net: &HostNet, r: &Recipe) -> String {
    let mut s = format!(
        "# What `sudo imagegen host-setup` does for the {} cluster on a {} host, each step only\n\
         # when the host differs; `imagegen host-setup --undo` reverses what it did.\n",
        net.profile, net.kind
    );
    for f in &r.files {
        s.push_str(&format!(
            "\n## file {} (mode {:04o}): {}\n{}",
            f.path, f.mode, f.why, f.content
        ));
    }
    for b in &r.blocks {
        s.push_str(&format!(
            "\n## lines between the markers in {} (the rest of the file is left alone): {}\n{}",
            b.path, b.why, b.text
        ));
    }
    if r.network {
        s.push_str(&format!(
            "\n## in the current network namespace\necho 1 > {IP_FORWARD}\n{KUBENET_SCRIPT} up\n"
        ));
    }
    s.push_str("\n## services\n");
    match net.kind {
        HostKind::Linux => s.push_str(&format!(
            "systemctl daemon-reload\nsystemctl enable {KUBENET_UNIT_NAME}\nsystemctl restart {DNSMASQ_UNIT}\n"
        )),
        HostKind::MacOs => s.push_str(&format!(
            "{MACOS_BREW} services restart dnsmasq\n# {}\n",
            MACOS_DNSMASQ_NOTE
        )),
    }
    s
}

const MACOS_DNSMASQ_NOTE: &str = "macOS makes the vmnet bridge only while a VM runs and dnsmasq binds to it only if it exists when dnsmasq starts: restart dnsmasq (sudo brew services restart dnsmasq) once the first VM is up, as the guide's restartdnsmasq.sh does";

// ---------------------------------------------------------------------------------------------
// The machine (or `--root`).

struct Host {
    root: Utf8PathBuf,
    /// The host path of the record.
    state: &'static str,
    /// Services are the machine's: touched only when `root` is `/`.
    services: bool,
}

impl Host {
    fn new(root: &Utf8Path, r: &Recipe) -> anyhow::Result<Host> {
        let services = root.as_str() == "/";
        // Files under another root need no privilege; the network and services do.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if (services || r.network) && unsafe { libc::geteuid() } != 0 {
            bail!(
                "host-setup changes the host's network and files under /etc: run it as root (sudo imagegen host-setup), or see what it does with --print"
            );
        }
        Ok(Host {
            root: root.to_path_buf(),
            state: r.state,
            services,
        })
    }

    /// The host path `p` under the root.
    fn at(&self, p: &str) -> Utf8PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Content and mode of the file at host path `p`, `None` when there is none.
    fn read(&self, p: &str) -> anyhow::Result<Option<(String, u32)>> {
        let path = self.at(p);
        match fsutil::read_to_string(path.as_std_path()) {
            Ok(text) => {
                let mode = fs_err::metadata(path.as_std_path())?.permissions().mode() & 0o7777;
                Ok(Some((text, mode)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the directories that writing host path `p` will create.
    fn record_dirs(&self, state: &mut State, p: &str) {
        for d in Path::new(p).ancestors().skip(1) {
            if d == Path::new("/") || d.as_os_str().is_empty() {
                break;
            }
            let d = d.to_string_lossy();
            if !self.at(&d).exists() {
                state.dirs.insert(d.into_owned());
            }
        }
    }

    /// Writes the file at host path `p` (mode before data, temp beside, rename).
    fn write(&self, state: &mut State, p: &str, text: &str, mode: u32) -> anyhow::Result<()> {
        self.record_dirs(state, p);
        fsutil::write_if_changed(&self.at(p), text, mode)?;
        Ok(())
    }

    fn remove(&self, p: &str) -> anyhow::Result<()> {
        match fs_err::remove_file(self.at(p).as_std_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn read_state(&self) -> anyhow::Result<Option<State>> {
        let path = self.at(self.state);
        match fsutil::read(path.as_std_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| {
                format!("{path}: not a host-setup record; move it away to start over")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn save_state(&self, state: &mut State) -> anyhow::Result<()> {
        self.record_dirs(state, self.state);
        let json = format!("{}\n", serde_json::to_string_pretty(state)?);
        fsutil::write_if_changed(&self.at(self.state), &json, 0o644)?;
        Ok(())
    }

    /// Removes the directories host-setup created, deepest first, where they are empty.
    fn remove_dirs(&self, dirs: &BTreeSet<String>) -> anyhow::Result<()> {
        let mut dirs: Vec<&String> = dirs.iter().collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
        for d in dirs {
            let path = self.at(d);
            let empty = match fs_err::read_dir(path.as_std_path()) {
                Ok(mut entries) => entries.next().is_none(),
                Err(_) => false,
            };
            if empty {
                fs_err::remove_dir(path.as_std_path())?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Apply

/// The changes made (one line each) and notes for the user.
type Outcome = (Vec<String>, Vec<String>);

fn apply(net: &HostNet, r: &Recipe, host: &Host) -> anyhow::Result<Outcome> {
    let mut state = host.read_state()?.unwrap_or_default();
    state.profile = net.profile.clone();
    let mut changes = Vec::new();
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    for f in &r.files {
        let before = host.read(f.path)?;
        if before
            .as_ref()
            .is_some_and(|(t, m)| *t == f.content && *m == f.mode)
        {
            continue;
        }
        state
            .files
            .entry(f.path.to_string())
            .or_insert(before.clone());
        host.write(&mut state, f.path, &f.content, f.mode)?;
        let verb = if before.is_some() {
            "updated"
        } else {
            "created"
        };
        changes.push(format!("{verb} {}", f.path));
        changed.insert(f.path);
    }
    for b in &r.blocks {
        let before = host.read(b.path)?;
        let text = before.as_ref().map_or("", |(t, _)| t.as_str());
        let after =
            block::put(text, &b.text).map_err(|e| anyhow::anyhow!("{}: {e}", host.at(b.path)))?;
        if before.is_some() && text == after {
            continue;
        }
        state
            .blocks
            .entry(b.path.to_string())
            .or_insert(before.is_none());
        let mode = before.as_ref().map_or(0o644, |(_, m)| *m);
        host.write(&mut state, b.path, &after, mode)?;
        let had = matches!(block::remove(text), Ok(Some(_)));
        changes.push(if had {
            format!("updated the imagegen lines in {}", b.path)
        } else {
            format!("added the imagegen lines to {}", b.path)
        });
        changed.insert(b.path);
    }
    // Recorded before the network and services: whatever fails there, --undo knows the files.
    host.save_state(&mut state)?;
    if r.network {
        let result = network_up(host, &mut state, &mut changes);
        host.save_state(&mut state)?;
        result?;
    }
    let mut notes = Vec::new();
    if host.services {
        let result = match net.kind {
            HostKind::Linux => linux_services_up(&mut state, &changed, &mut changes, &mut notes),
            HostKind::MacOs => macos_services(!changed.is_empty(), &mut changes, &mut notes),
        };
        host.save_state(&mut state)?;
        result?;
    } else {
        notes.push(format!(
            "services are left alone under --root {}",
            host.root
        ));
    }
    Ok((changes, notes))
}

/// IP forwarding and the kubenet script's `up`, in the current network namespace.
fn network_up(host: &Host, state: &mut State, changes: &mut Vec<String>) -> anyhow::Result<()> {
    let now = fsutil::read_to_string(std::path::Path::new(IP_FORWARD))?
        .trim()
        .to_string();
    if now != "1" {
        fs_err::write(IP_FORWARD, "1\n")?;
        state.ip_forward_before.get_or_insert(now);
        changes.push("turned on IP forwarding (net.ipv4.ip_forward = 1)".into());
    }
    for line in kubenet(host, &["up"])?.lines() {
        if let Some((part @ ("bridge" | "address" | "link" | "nat"), _)) = line.split_once(": ") {
            state.network.insert(part.to_string());
        }
        changes.push(line.to_string());
    }
    Ok(())
}

/// Runs the installed kubenet script (under the root) with `args`; returns what it printed.
fn kubenet(host: &Host, args: &[&str]) -> anyhow::Result<String> {
    let script = host.at(KUBENET_SCRIPT);
    let out = Command::new("sh")
        .arg(script.as_std_path())
        .args(args)
        .output()
        .with_context(|| format!("running sh {script}"))?;
    if !out.status.success() {
        bail!(
            "{script} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `systemctl ARGS` quietly; `Ok(false)` when it says no (exit status not 0).
fn systemctl(args: &[&str]) -> anyhow::Result<bool> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    Ok(out.status.success())
}

/// `systemctl ARGS`, which must succeed.
fn systemctl_must(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .with_context(|| format!("running systemctl {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "systemctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn systemd_runs() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit at boot, and dnsmasq restarted when its lines (or the names it serves) changed.
fn linux_services_up(
    state: &mut State,
    changed: &BTreeSet<&str>,
    changes: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    if !systemd_runs() {
        notes.push(format!(
            "systemd does not run here: run `{KUBENET_SCRIPT} up` at boot and restart dnsmasq yourself"
        ));
        return Ok(());
    }
    if changed.contains(LINUX_UNIT) {
        systemctl_must(&["daemon-reload"])?;
    }
    if !systemctl(&["is-enabled", "--quiet", KUBENET_UNIT_NAME])? {
        systemctl_must(&["enable", KUBENET_UNIT_NAME])?;
        state.unit_enabled = true;
        changes.push(format!(
            "enabled {KUBENET_UNIT_NAME} (makes the bridge and NAT at boot)"
        ));
    }
    if !systemctl(&["cat", DNSMASQ_UNIT])? {
        notes.push(
            "dnsmasq is not installed (apt-get install dnsmasq): the VMs get neither DHCP nor DNS until it is; run host-setup again then"
                .into(),
        );
    } else if changed.contains(LINUX_DNSMASQ_DROPIN)
        || changed.contains(HOSTS)
        || !systemctl(&["is-active", "--quiet", DNSMASQ_UNIT])?
    {
        systemctl_must(&["restart", DNSMASQ_UNIT])?;
        changes.push(format!(
            "restarted {DNSMASQ_UNIT} (serves DHCP and DNS on {BRIDGE})"
        ));
    }
    Ok(())
}

/// Homebrew's dnsmasq restarted when its lines (or the names it serves) changed.
fn macos_services(
    changed: bool,
    changes: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> anyhow::Result<()> {
    if !changed {
        return Ok(());
    }
    if !Path::new(MACOS_BREW).exists() {
        notes.push(format!(
            "Homebrew not found at {MACOS_BREW}: install and start dnsmasq (brew install dnsmasq; sudo brew services start dnsmasq)"
        ));
        return Ok(());
    }
    let out = Command::new(MACOS_BREW)
        .args(["services", "restart", "dnsmasq"])
        .output()
        .with_context(|| format!("running {MACOS_BREW} services restart dnsmasq"))?;
    if out.status.success() {
        changes.push("restarted Homebrew's dnsmasq".into());
    } else {
        notes.push(format!(
            "{MACOS_BREW} services restart dnsmasq failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    notes.push(MACOS_DNSMASQ_NOTE.into());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Undo

fn undo(net: &HostNet, r: &Recipe, host: &Host) -> anyhow::Result<Outcome> {
    let Some(state) = host.read_state()? else {
        let note = format!("no record of a host-setup in {}", host.at(r.state));
        return Ok((Vec::new(), vec![note]));
    };
    let mut changes = Vec::new();
    let mut notes = Vec::new();
    let linux_systemd = host.services && net.kind == HostKind::Linux && systemd_runs();
    if linux_systemd && state.unit_enabled {
        systemctl_must(&["disable", KUBENET_UNIT_NAME])?;
        changes.push(format!("disabled {KUBENET_UNIT_NAME}"));
    }
    // The script goes with the files below: the network first.
    let parts: Vec<&str> = ["nat", "address", "link", "bridge"]
        .into_iter()
        .filter(|p| state.network.contains(*p))
        .collect();
    if !parts.is_empty() {
        let mut args = vec!["down"];
        args.extend(&parts);
        changes.extend(kubenet(host, &args)?.lines().map(str::to_string));
    }
    if let Some(before) = &state.ip_forward_before {
        fs_err::write(IP_FORWARD, format!("{before}\n"))?;
        changes.push(format!("set net.ipv4.ip_forward back to {before}"));
    }
    for (path, created) in &state.blocks {
        let Some((text, mode)) = host.read(path)? else {
            continue;
        };
        let rest = block::remove(&text).map_err(|e| anyhow::anyhow!("{}: {e}", host.at(path)))?;
        let Some(rest) = rest else { continue };
        if *created && rest.trim().is_empty() {
            host.remove(path)?;
            changes.push(format!("removed {path} (host-setup had created it)"));
        } else {
            fsutil::write_if_changed(&host.at(path), &rest, mode)?;
            changes.push(format!("removed the imagegen lines from {path}"));
        }
    }
    for (path, before) in &state.files {
        let changed = match before {
            None if host.read(path)?.is_some() => {
                host.remove(path)?;
                true
            }
            None => false,
            Some((text, mode)) => fsutil::write_if_changed(&host.at(path), text, *mode)?,
        };
        if changed {
            changes.push(match before {
                None => format!("removed {path}"),
                Some(_) => format!("restored the previous {path}"),
            });
        }
    }
    if linux_systemd {
        systemctl_must(&["daemon-reload"])?;
        if systemctl(&["try-restart", DNSMASQ_UNIT])? {
            changes.push(format!("restarted {DNSMASQ_UNIT} (if it was running)"));
        }
    } else if host.services && net.kind == HostKind::MacOs {
        macos_services(true, &mut changes, &mut notes)?;
    }
    host.remove(r.state)?;
    host.remove_dirs(&state.dirs)?;
    Ok((changes, notes))
}
