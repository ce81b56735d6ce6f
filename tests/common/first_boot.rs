//! The first-boot script of a seed, and the parts of it a test can run on the host: the fetch
//! payload's download (and install) block with every node path moved under a temporary root.
#![allow(dead_code)]

use std::path::Path;

/// Where the seed writes the first-boot script.
pub const SCRIPT: &str = "/usr/local/sbin/imagegen-first-boot";

/// The first-boot script in a user-data, as cloud-init writes it.
pub fn script(user_data: &str) -> String {
    #[derive(serde::Deserialize)]
    struct UserData {
        write_files: Vec<WriteFile>,
    }
    #[derive(serde::Deserialize)]
    struct WriteFile {
        path: String,
        content: String,
    }
    let ud: UserData = serde_saphyr::from_str(user_data).unwrap();
    ud.write_files
        .into_iter()
        .find(|f| f.path == SCRIPT)
        .expect("user-data writes the first-boot script")
        .content
}

/// The fetch payload of `script`, runnable on the host: its prologue (`set -eu`, the step
/// reporter) and the block from `# Payload: downloaded` up to `until` (exclusive: e.g.
/// `say "installing binaries"` to download only), with `/var/tmp` and `/var/lib/cloud` moved
/// under `root`, and `step="done"` at the end. With `installs`, every `install` destination
/// goes under `$ROOT` too (the caller sets it). Nothing else of the script (modules, sysctl,
/// swap, services) runs.
pub fn fetch_part(script: &str, root: &Path, until: &str, installs: bool) -> String {
    let prologue_end = script.find("\nsay() {").unwrap();
    let prologue_end = prologue_end + script[prologue_end + 1..].find('\n').unwrap() + 2;
    let start = script
        .find("# Payload: downloaded")
        .expect("a fetch payload");
    let end = start + script[start..].find(until).expect("the end of the part");
    let wrapper = if installs {
        "install() { command install \"$1\" \"$2\" \"$3\" \"$4\" \"$ROOT$5\"; }\n"
    } else {
        ""
    };
    let root = root.display();
    format!(
        "{}{wrapper}{}\nstep=\"done\"\n",
        &script[..prologue_end],
        &script[start..end]
    )
    .replace("/var/tmp/", &format!("{root}/var/tmp/"))
    .replace("/var/lib/cloud/", &format!("{root}/var/lib/cloud/"))
}
