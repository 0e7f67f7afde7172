//! Log output: text or JSON lines on stdout. Nothing logs a token, an `Authorization` or a
//! `Cookie` value: the proxy logs ids, hints and paths, never headers.

use crate::config::{LogConfig, LogFormat};

pub fn init(config: &LogConfig) {
    let builder = tracing_subscriber::fmt()
        .with_max_level(config.level)
        .with_writer(std::io::stdout)
        .with_ansi(false);
    // `try_init` fails only when a subscriber is already set (a second server in one process);
    // the first one keeps logging.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
}
