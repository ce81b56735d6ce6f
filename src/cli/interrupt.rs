//! Ctrl-C and SIGTERM during a build: the build's staging directory is deleted (it registered
//! itself with `fsutil::RemoveOnInterrupt`), then the process exits with 128 + the signal
//! number (130, 143), as a shell reports a process killed by it. Without this, an interrupted
//! build would leave its staging directory for the next run to sweep.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::fsutil;

/// Starts the thread that waits for SIGINT/SIGTERM. If no thread can be started, the signals
/// keep their default action (the process ends at once; the next run sweeps what it left).
pub(super) fn install() {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            // Registered from this thread, so a signal is only caught once someone waits for it.
            let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
                return;
            };
            if let Some(sig) = signals.forever().next() {
                fsutil::cleanup_on_interrupt();
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("error: interrupted by {name}");
                std::process::exit(128 + sig);
            }
        });
    drop(spawned);
}
