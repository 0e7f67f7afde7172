//! Configuration: the raw TOML form (serde, unknown keys refused) and the validated `Config` the
//! program runs on. Every default is written once, here, and documented in `config/tollgate.toml`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::time::parse_duration;

/// The defaults, in one place.
mod defaults {
    pub const CONFIG_PATH: &str = "config/tollgate.toml";
    pub const STORE_PATH: &str = "data/tollgate.redb";
    pub const ADMIN_BIND: &str = "127.0.0.1:9191";
    pub const ADMIN_TOKEN_FILE: &str = "data/admin.token";
    pub const LOG_FORMAT: &str = "text";
    pub const LOG_LEVEL: &str = "info";
    pub const ACCESS_LOG: bool = true;
    pub const SHUTDOWN_GRACE: &str = "30s";
    pub const LAST_USED_FLUSH: &str = "5s";
    pub const UPSTREAM_TIMEOUT: &str = "30s";
    pub const CONNECT_TIMEOUT: &str = "5s";
    /// Below the shortest keep-alive timeout in common servers (Node.js: 5 s), so that tollgate
    /// closes an idle upstream connection before the upstream does and never reuses a dying one.
    pub const UPSTREAM_IDLE_TIMEOUT: &str = "4s";
    /// Open client connections per listener; past it, new connections wait in the kernel's
    /// backlog. Keep the process's file limit (`ulimit -n`) above the sum over listeners.
    pub const MAX_CONNECTIONS: usize = 16_384;
}

pub use defaults::CONFIG_PATH as DEFAULT_CONFIG_PATH;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: PathBuf,
        field: String,
        message: String,
    },
}

// ---- the raw form: what the file says, with defaults filled in ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default = "d_store_path")]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "d_admin_bind")]
    pub bind: String,
    #[serde(default = "d_admin_token_file")]
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default = "d_log_format")]
    pub format: String,
    #[serde(default = "d_log_level")]
    pub level: String,
    #[serde(default = "d_access_log")]
    pub access: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "d_shutdown_grace")]
    pub shutdown_grace: String,
    #[serde(default = "d_last_used_flush")]
    pub last_used_flush: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub bind: String,
    pub upstream: String,
    #[serde(default = "d_upstream_timeout")]
    pub upstream_timeout: String,
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout: String,
    #[serde(default = "d_upstream_idle_timeout")]
    pub upstream_idle_timeout: String,
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
}

fn d_store_path() -> PathBuf {
    defaults::STORE_PATH.into()
}
fn d_admin_bind() -> String {
    defaults::ADMIN_BIND.into()
}
fn d_admin_token_file() -> PathBuf {
    defaults::ADMIN_TOKEN_FILE.into()
}
fn d_log_format() -> String {
    defaults::LOG_FORMAT.into()
}
fn d_log_level() -> String {
    defaults::LOG_LEVEL.into()
}
fn d_access_log() -> bool {
    defaults::ACCESS_LOG
}
fn d_shutdown_grace() -> String {
    defaults::SHUTDOWN_GRACE.into()
}
fn d_last_used_flush() -> String {
    defaults::LAST_USED_FLUSH.into()
}
fn d_upstream_timeout() -> String {
    defaults::UPSTREAM_TIMEOUT.into()
}
fn d_connect_timeout() -> String {
    defaults::CONNECT_TIMEOUT.into()
}
fn d_upstream_idle_timeout() -> String {
    defaults::UPSTREAM_IDLE_TIMEOUT.into()
}
fn d_max_connections() -> usize {
    defaults::MAX_CONNECTIONS
}

macro_rules! section_default {
    ($t:ty { $($field:ident: $f:ident),+ }) => {
        impl Default for $t {
            fn default() -> Self {
                Self { $($field: $f()),+ }
            }
        }
    };
}
section_default!(RawStore { path: d_store_path });
section_default!(RawAdmin {
    bind: d_admin_bind,
    token_file: d_admin_token_file
});
section_default!(RawLog {
    format: d_log_format,
    level: d_log_level,
    access: d_access_log
});
section_default!(RawServer {
    shutdown_grace: d_shutdown_grace,
    last_used_flush: d_last_used_flush
});

// ---- the validated form ----

#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from, for messages.
    pub source: PathBuf,
    pub store_path: PathBuf,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub shutdown_grace: Duration,
    pub last_used_flush: Duration,
    pub listeners: Vec<ListenerConfig>,
    /// The effective raw form, defaults filled in, for `check-config`.
    pub effective: RawConfig,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    pub token_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: tracing::Level,
    pub access: bool,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub upstream: Upstream,
    pub upstream_timeout: Duration,
    pub connect_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub max_connections: usize,
}

/// Where a listener forwards to: `http://host:port`, with no path.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned() + &location(text, e.span()),
        })?;
        raw.validate(path)
    }

    /// The effective config as TOML, every default written out. Holds no secret: the config
    /// names files and variables that hold secrets, never their contents.
    pub fn to_toml(&self) -> String {
        // Serialising plain strings, numbers and tables cannot fail.
        toml::to_string(&self.effective).expect("the effective config serialises")
    }
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

impl RawConfig {
    fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            message,
        };
        let duration = |field: &str, value: &str| match parse_duration(value) {
            Some(d) if !d.is_zero() => Ok(d),
            Some(_) => Err(invalid(field, "must be above zero".into())),
            None => Err(invalid(
                field,
                format!("{value:?} is not a duration (such as \"30s\" or \"5m\")"),
            )),
        };
        let socket = |field: &str, value: &str| {
            value.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    field,
                    format!("{value:?} is not an address such as \"127.0.0.1:8080\""),
                )
            })
        };

        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must not be empty".into()));
        }
        let admin = AdminConfig {
            bind: socket("admin.bind", &self.admin.bind)?,
            token_file: self.admin.token_file.clone(),
        };
        if admin.token_file.as_os_str().is_empty() {
            return Err(invalid("admin.token_file", "must not be empty".into()));
        }
        let log = LogConfig {
            format: match self.log.format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "log.format",
                        format!("{other:?} is not \"text\" or \"json\""),
                    ));
                }
            },
            level: self.log.level.parse().map_err(|_| {
                invalid(
                    "log.level",
                    format!(
                        "{:?} is not one of error, warn, info, debug, trace",
                        self.log.level
                    ),
                )
            })?,
            access: self.log.access,
        };
        let shutdown_grace = duration("server.shutdown_grace", &self.server.shutdown_grace)?;
        let last_used_flush = duration("server.last_used_flush", &self.server.last_used_flush)?;

        if self.listeners.is_empty() {
            return Err(invalid(
                "listener",
                "at least one [[listener]] is needed".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut binds = HashSet::new();
        let mut listeners = Vec::with_capacity(self.listeners.len());
        for (i, raw) in self.listeners.iter().enumerate() {
            let field = |key: &str| format!("listener[{i}].{key}");
            if raw.name.is_empty()
                || !raw
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    &field("name"),
                    format!("{:?} must be letters, digits, '-' or '_'", raw.name),
                ));
            }
            if !names.insert(raw.name.clone()) {
                return Err(invalid(
                    &field("name"),
                    format!("{:?} is used twice", raw.name),
                ));
            }
            let bind = socket(&field("bind"), &raw.bind)?;
            if bind.port() != 0 && (!binds.insert(bind) || bind == admin.bind) {
                return Err(invalid(&field("bind"), format!("{bind} is used twice")));
            }
            listeners.push(ListenerConfig {
                name: raw.name.clone(),
                bind,
                upstream: parse_upstream(&raw.upstream)
                    .map_err(|message| invalid(&field("upstream"), message))?,
                upstream_timeout: duration(&field("upstream_timeout"), &raw.upstream_timeout)?,
                connect_timeout: duration(&field("connect_timeout"), &raw.connect_timeout)?,
                upstream_idle_timeout: duration(
                    &field("upstream_idle_timeout"),
                    &raw.upstream_idle_timeout,
                )?,
                max_connections: match raw.max_connections {
                    0 => {
                        return Err(invalid(
                            &field("max_connections"),
                            "must be above zero".into(),
                        ));
                    }
                    n => n,
                },
            });
        }

        Ok(Config {
            source: path.to_owned(),
            store_path: self.store.path.clone(),
            admin,
            log,
            shutdown_grace,
            last_used_flush,
            listeners,
            effective: self,
        })
    }
}

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not a URL such as \"http://127.0.0.1:8888\""))?;
    let scheme = uri.scheme().cloned();
    if scheme.as_ref() != Some(&http::uri::Scheme::HTTP) {
        return Err(format!("{text:?}: only http:// upstreams are supported"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "{text:?}: credentials in the URL are not supported"
        ));
    }
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("{text:?}: an upstream URL has no path"));
    }
    Ok(Upstream {
        scheme: http::uri::Scheme::HTTP,
        authority,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    const MINIMAL: &str = r#"
        [[listener]]
        name = "api"
        bind = "127.0.0.1:8080"
        upstream = "http://127.0.0.1:8888"
    "#;

    #[test]
    fn defaults_fill_a_minimal_config() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.store_path, PathBuf::from("data/tollgate.redb"));
        assert_eq!(config.admin.bind, "127.0.0.1:9191".parse().unwrap());
        assert_eq!(config.shutdown_grace, Duration::from_secs(30));
        assert_eq!(
            config.listeners[0].upstream.authority.as_str(),
            "127.0.0.1:8888"
        );
        assert_eq!(
            config.listeners[0].upstream_idle_timeout,
            Duration::from_secs(4)
        );
        // The effective config parses back to the same thing.
        let again = parse(&config.to_toml()).unwrap();
        assert_eq!(again.to_toml(), config.to_toml());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse(&format!("{MINIMAL}\ncolour = \"red\"")).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        let err = parse("[store]\npth = \"x\"").unwrap_err();
        assert!(err.to_string().contains("pth"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            (MINIMAL.replace("http://", "ftp://"), "listener[0].upstream"),
            (
                MINIMAL.replace("8888\"", "8888/api\""),
                "listener[0].upstream",
            ),
            (
                MINIMAL.replace("127.0.0.1:8080", "nowhere"),
                "listener[0].bind",
            ),
            (
                format!("[server]\nshutdown_grace = \"soon\"\n{MINIMAL}"),
                "server.shutdown_grace",
            ),
            (format!("[log]\nformat = \"xml\"\n{MINIMAL}"), "log.format"),
            (format!("{MINIMAL}{MINIMAL}"), "listener[1].name"),
            (String::new(), "listener"),
        ] {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(&format!("{field}:")), "{field}: {err}");
        }
    }
}
