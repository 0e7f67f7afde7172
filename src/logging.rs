//! Log output: text or JSON lines on stdout, at a level a config reload can change. Nothing logs
//! a token, an `Authorization` or a `Cookie` value: the proxy logs ids, hints and paths, never
//! headers.

use std::sync::OnceLock;

use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Registry, reload};

use crate::config::{LogConfig, LogFormat};

/// The level filter of the subscriber that [`init`] installed. The subscriber is process-wide by
/// nature (tracing has one global dispatcher), so the handle to its level is too; it is set once
/// and only the reload task changes the level through it.
static LEVEL: OnceLock<reload::Handle<LevelFilter, Registry>> = OnceLock::new();

pub fn init(config: &LogConfig) {
    let (level, handle) = reload::Layer::new(LevelFilter::from_level(config.level));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stdout)
        .with_ansi(false);
    let registry = tracing_subscriber::registry().with(level);
    // `try_init` fails only when a subscriber is already set (a second server in one process);
    // the first one keeps logging, at its own level.
    let installed = match config.format {
        LogFormat::Text => registry.with(output).try_init(),
        LogFormat::Json => registry
            .with(output.json().flatten_event(true).with_current_span(false))
            .try_init(),
    };
    if installed.is_ok() {
        // `init` installs at most one subscriber, so this is the first and only set.
        let _ = LEVEL.set(handle);
    }
}

/// The command line working on a store file directly: the registry's warnings (a running server
/// that has not applied the change in time, say) go to stderr as plain lines, beside the
/// command's own output and its one-line error.
pub fn init_for_command_line() {
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_filter(
            Targets::new()
                .with_target("tollgate::registry", LevelFilter::WARN)
                .with_target("tollgate::store", LevelFilter::WARN),
        );
    let _ = tracing_subscriber::registry().with(output).try_init();
}

/// Changes the level of the log that [`init`] installed, from the next event on. False when
/// this process has no such log (a server started without `init`, as in benchmarks).
pub fn set_level(level: tracing::Level) -> bool {
    LEVEL
        .get()
        .is_some_and(|handle| handle.reload(LevelFilter::from_level(level)).is_ok())
}
