//! Signals: SIGTERM and SIGINT both mean "stop accepting, let in-flight requests finish within
//! the grace period, exit 0".

use tokio::signal::unix::{SignalKind, signal};

/// Waits for SIGTERM or SIGINT and says which came.
pub async fn wait_for_stop_signal() -> &'static str {
    // Registering a handler fails only when the runtime has no signal driver, which `main`'s
    // runtime always has.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
