//! The `first_boot` section: how hard a `--payload fetch` node tries its downloads, within
//! bounds that neither give up at once nor keep a broken node retrying for days.

use super::Checker;
use crate::profile::file::FirstBootFile;
use crate::profile::FirstBoot;

pub(super) fn check(c: &mut Checker, raw: &FirstBootFile) -> FirstBoot {
    let mut fb = FirstBoot::DEFAULT;
    if let Some(n) = &raw.fetch_attempts {
        if (1..=FirstBoot::MAX_ATTEMPTS).contains(&n.value) {
            fb.fetch_attempts = n.value;
        } else {
            c.at(
                n,
                "first_boot.fetch_attempts",
                format!(
                    "expected 1 to {} attempts per download, got {}",
                    FirstBoot::MAX_ATTEMPTS,
                    n.value
                ),
            );
        }
    }
    if let Some(s) = &raw.fetch_backoff_seconds {
        if s.value <= FirstBoot::MAX_BACKOFF_SECONDS {
            fb.fetch_backoff_seconds = s.value;
        } else {
            c.at(
                s,
                "first_boot.fetch_backoff_seconds",
                format!(
                    "expected 0 to {} seconds before the first retry, got {}",
                    FirstBoot::MAX_BACKOFF_SECONDS,
                    s.value
                ),
            );
        }
    }
    fb
}
