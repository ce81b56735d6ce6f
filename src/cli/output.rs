//! Printing to stdout. A reader that goes away early (`imagegen plan --json | head -1`) closes
//! the pipe; that is the reader's choice, not a failure of the command, so it is reported as
//! [`StdoutClosed`] and `main` exits 0 without a message.

use std::fmt;
use std::io::{self, Write as _};

use anyhow::Context as _;

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
