//! tollgate: an authenticating reverse-proxy sidecar for Telegraf Controller and services like it.
//!
//! A tour of the layout, following a request and a revocation:
//!
//! - [`config`]: the TOML file → a validated [`config::Config`]; every default in one place.
//! - [`token`]: the pure token model: secrets, digests, ids, permissions, the record's states.
//! - [`store`]: the redb file, the only module that names redb: records, indexes, the event log
//!   that is both audit trail and change log.
//! - [`cache`]: the in-memory index keyed by digest and [`cache::TokenCache::decide`], the whole
//!   hot check from `Authorization` header to verdict.
//! - [`registry`]: write-through changes: commit to the store, then update the cache, then reply.
//! - [`follower`]: applies to this process's cache the changes other processes commit to the
//!   store (a server sharing the file, the command line working on it directly), woken by the
//!   store's commit bell (`store::bell`).
//! - [`proxy`]: the data path: listeners, routes, authentication, header hygiene, forwarding.
//! - [`upstream`]: the HTTP/1.1 client that forwards, on the request's own task, over pooled
//!   connections; the command line's client of the admin API too.
//! - [`admin`]: the admin listener: JSON API, the web page, health, readiness, metrics.
//! - [`server`]: start-up in a fixed order and shutdown in one path; [`limits`] raises the
//!   open-file limit first, and the admin API's threads' priority.
//! - [`cli`]: the command line; `token` and `audit` are clients of the admin API.
//! - [`watch`]: wake-ups for state kept in files (config, certificates), through inotify; [`reload`]
//!   applies a changed config file (or SIGHUP) to the running listeners.
//! - [`tls`]: rustls for listeners, the admin port and `https://` upstreams; certificates
//!   reloaded when their files change.

#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod follower;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod registry;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod time;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod watch;
pub mod workers;

/// Displays an error with its chain of sources, for log lines and the command line.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}
