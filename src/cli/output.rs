//! How the CLI prints. The result goes to stdout; a reader that goes away early
//! (`imagegen plan --json | head -1`) closes the pipe, which is the reader's choice, not a
//! failure of the command, so it is reported as [`StdoutClosed`] and `main` exits 0 without a
//! message. Everything else goes to stderr, by [`Level`] (`-q`: errors only, `-v`: details too),
//! with `error:` and `warning:` styled as clap styles them: `anstream` drops the colour when
//! stderr is no terminal or `NO_COLOR` is set.

use std::fmt;
use std::io::{self, Write as _};
use std::sync::OnceLock;

use anstyle::{AnsiColor, Style};
use anyhow::Context as _;

use crate::profile::ProfileError;
use crate::resolve::Progress;

/// How much a command says on stderr besides errors and its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    /// `-q`: errors and the result only.
    Quiet,
    Normal,
    /// `-v`: where each artifact comes from, the steps of a build.
    Verbose,
}

impl Level {
    /// The download progress of this level.
    pub(super) fn progress(self) -> Progress {
        match self {
            Level::Quiet => Progress::Quiet,
            Level::Normal | Level::Verbose => Progress::Auto,
        }
    }
}

static LEVEL: OnceLock<Level> = OnceLock::new();

/// Sets the level of this run, once, from `-q`/`-v`.
pub(super) fn set_level(level: Level) {
    let _ = LEVEL.set(level);
}

pub(super) fn level() -> Level {
    LEVEL.get().copied().unwrap_or(Level::Normal)
}

const ERROR: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Red)));
const WARNING: Style = Style::new()
    .bold()
    .fg_color(Some(anstyle::Color::Ansi(AnsiColor::Yellow)));

/// Prints `e` as `error: ...` with its context chain; a profile's problems as their report.
pub(super) fn error(e: &anyhow::Error) {
    let mut err = anstream::stderr().lock();
    let _ = match e.downcast_ref::<ProfileError>() {
        Some(problems) => write!(err, "{}", problems.render(true)),
        None => writeln!(err, "{ERROR}error{ERROR:#}: {e:#}"),
    };
}

/// `warning: ...` on stderr, unless `-q`.
pub(super) fn warn(text: &str) {
    if level() > Level::Quiet {
        let _ = writeln!(anstream::stderr(), "{WARNING}warning{WARNING:#}: {text}");
    }
}

/// `note: ...` on stderr, unless `-q`.
pub(super) fn note(text: &str) {
    if level() > Level::Quiet {
        eprintln!("note: {text}");
    }
}

/// A line on stderr with `-v` only.
pub(super) fn detail(text: &str) {
    if level() == Level::Verbose {
        eprintln!("{text}");
    }
}

/// Stdout was closed by its reader (a broken pipe).
#[derive(Debug)]
pub(super) struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for StdoutClosed {}

/// Whether `e` (or an error it wraps) is [`StdoutClosed`].
pub(super) fn is_stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<StdoutClosed>())
}

/// Writes `text` to stdout as is, in one piece.
pub(super) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        r => r.context("writing to stdout"),
    }
}

/// Writes `line` and a newline to stdout.
pub(super) fn println(line: &str) -> anyhow::Result<()> {
    print(&format!("{line}\n"))
}
