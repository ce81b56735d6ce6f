//! Progress on stderr: bars when it is a terminal (one per transfer and a total), else one line
//! per finished download, or nothing. Warnings (retries, discarded cache entries) go through here
//! too, so they never tear a bar.

use std::io::{self, IsTerminal, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::fetch::Outcome;
use super::{Origin, Progress};

pub(super) enum Reporter {
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        done: AtomicUsize,
        total: usize,
        started: Instant,
    },
    Plain {
        started: Instant,
    },
    Quiet,
}

/// Counts bytes on one transfer's bar and on the overall bar; cloned into every connection that
/// fetches part of the same file.
#[derive(Clone)]
pub(super) struct Meter {
    bar: ProgressBar,
    overall: Option<ProgressBar>,
}

impl Meter {
    /// Counts without showing anything.
    pub(super) fn hidden() -> Meter {
        Meter {
            bar: ProgressBar::hidden(),
            overall: None,
        }
    }

    pub(super) fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(o) = &self.overall {
            o.inc(n);
        }
    }
}

/// One transfer's bar (hidden unless bars are shown; it still counts the bytes). Dropping it
/// before [`Bar::done`] takes its bytes back out of the overall bar.
pub(super) struct Bar {
    meter: Meter,
    finished: bool,
}

impl Bar {
    /// A handle on this bar's counters for another connection of the same file.
    pub(super) fn meter(&self) -> Meter {
        self.meter.clone()
    }

    pub(super) fn set_length(&self, len: u64) {
        let old = self.meter.bar.length().unwrap_or(0);
        self.meter.bar.set_length(len);
        if let Some(o) = &self.meter.overall {
            if len >= old {
                o.inc_length(len - old);
            } else {
                o.dec_length(old - len);
            }
        }
    }

    pub(super) fn inc(&self, n: u64) {
        self.meter.inc(n);
    }

    /// Takes back `n` bytes that are being fetched again.
    pub(super) fn rewind(&self, n: u64) {
        self.meter.bar.dec(n);
        if let Some(o) = &self.meter.overall {
            o.dec(n);
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.meter.bar.position()
    }

    pub(super) fn done(mut self) {
        self.finished = true;
        self.meter.bar.finish_and_clear();
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let bar = &self.meter.bar;
        if let Some(o) = &self.meter.overall {
            o.dec(bar.position());
            o.dec_length(bar.length().unwrap_or(0));
        }
        bar.finish_and_clear();
    }
}

impl Reporter {
    pub(super) fn new(mode: Progress, total: usize) -> Reporter {
        let mode = match mode {
            Progress::Auto if !io::stderr().is_terminal() => Progress::Plain,
            m => m,
        };
        match mode {
            Progress::Auto => {
                let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
                let overall = multi.add(ProgressBar::new(0));
                overall.set_style(style(
                    "{prefix:>24.bold} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4} {msg}",
                ));
                overall.set_prefix("total");
                overall.set_message(format!("0/{total} artifacts"));
                Reporter::Bars {
                    multi,
                    overall,
                    done: AtomicUsize::new(0),
                    total,
                    started: Instant::now(),
                }
            }
            Progress::Plain => Reporter::Plain {
                started: Instant::now(),
            },
            Progress::Quiet => Reporter::Quiet,
        }
    }

    pub(super) fn start(&self, name: &str) -> Bar {
        let meter = match self {
            Reporter::Bars { multi, overall, .. } => {
                let bar = multi.insert_before(overall, ProgressBar::new(0));
                bar.set_style(style(
                    "{prefix:>24.cyan} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta:>4}",
                ));
                bar.set_prefix(short(name, 24));
                Meter {
                    bar,
                    overall: Some(overall.clone()),
                }
            }
            _ => Meter::hidden(),
        };
        Bar {
            meter,
            finished: false,
        }
    }

    /// A line about waiting for another process: shown even when quiet, since a run that
    /// waits without a word looks hung.
    pub(super) fn waiting(&self, msg: &str) {
        match self {
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(msg);
            }
            Reporter::Plain { .. } | Reporter::Quiet => eprintln!("{msg}"),
        }
    }

    pub(super) fn note(&self, msg: &str) {
        match self {
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(format!("warning: {msg}"));
            }
            Reporter::Plain { .. } => eprintln!("warning: {msg}"),
            Reporter::Quiet => {}
        }
    }

    /// One more artifact is ready (from the cache or fetched).
    pub(super) fn ready(&self) {
        if let Reporter::Bars {
            overall,
            done,
            total,
            ..
        } = self
        {
            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
            overall.set_message(format!("{n}/{total} artifacts"));
        }
    }

    pub(super) fn downloaded(&self, name: &str, size: u64, url: &str, took: Duration) {
        self.ready();
        let rate = size as f64 / took.as_secs_f64().max(1e-3);
        let line = format!(
            "fetched {name} ({}, {:.1?}, {}/s) from {url}",
            HumanBytes(size),
            took,
            HumanBytes(rate as u64)
        );
        match self {
            Reporter::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Reporter::Plain { .. } => eprintln!("{line}"),
            Reporter::Quiet => {}
        }
    }

    pub(super) fn finish(&self, outcomes: &[Outcome]) {
        let ready = |cached: bool| {
            outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Ready { origin, .. } if (*origin == Origin::Cache) == cached))
                .count()
        };
        let (cached, fetched) = (ready(true), ready(false));
        let started = match self {
            Reporter::Bars {
                overall, started, ..
            } => {
                overall.finish_and_clear();
                started
            }
            Reporter::Plain { started } => started,
            Reporter::Quiet => return,
        };
        if fetched > 0 {
            eprintln!(
                "resolved {} artifact(s): {cached} from the cache, {fetched} fetched, in {:.1?}",
                cached + fetched,
                started.elapsed()
            );
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// Keeps the end of a long file name (the part that differs: version, arch).
fn short(name: &str, max: usize) -> String {
    let n = name.chars().count();
    if n <= max {
        return name.to_string();
    }
    let tail: String = name.chars().skip(n + 1 - max).collect();
    format!("…{tail}")
}

/// A reader that counts every byte read through it on a transfer's bar.
pub(super) struct Metered<'a, R> {
    inner: R,
    bar: &'a Bar,
}

impl<'a, R: Read> Metered<'a, R> {
    pub(super) fn new(inner: R, bar: &'a Bar) -> Self {
        Metered { inner, bar }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
