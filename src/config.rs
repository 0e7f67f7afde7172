//! Configuration: the raw TOML form (serde, unknown keys refused) and the validated `Config` the
//! program runs on. Every default is written once, here, and documented in `config/tollgate.toml`.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use crate::proxy::route::{Access, MethodSet, Pattern, Profile, Route, RouteTable};
use crate::time::parse_duration;
use crate::token::Permission;

/// More data-path threads than this is a typing error, not a machine.
const MAX_WORKERS: usize = 1024;

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
    /// Changes to the config file are applied as they are saved; SIGHUP reloads either way.
    pub const WATCH_CONFIG: bool = true;
    /// One worker per core.
    pub const WORKERS: usize = 0;
    pub const UPSTREAM_TIMEOUT: &str = "30s";
    pub const CONNECT_TIMEOUT: &str = "5s";
    /// Below the shortest keep-alive timeout in common servers (Node.js: 5 s), so that tollgate
    /// closes an idle upstream connection before the upstream does and never reuses a dying one.
    pub const UPSTREAM_IDLE_TIMEOUT: &str = "4s";
    /// Open client connections per listener; past it, new connections wait in the kernel's
    /// backlog. Keep the process's file limit (`ulimit -n`) above the sum over listeners.
    pub const MAX_CONNECTIONS: usize = 16_384;
    /// What no route matches needs a valid token.
    pub const DEFAULT_ACCESS: &str = "token";
    /// The client's own `Authorization` goes upstream with the requests tollgate passed.
    pub const AUTHORIZATION: &str = "forward";
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
    /// Serve the admin port over TLS with this certificate chain (PEM), with `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
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
    #[serde(default = "d_watch_config")]
    pub watch_config: bool,
    #[serde(default = "d_workers")]
    pub workers: usize,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default = "d_default_access")]
    pub default: String,
    #[serde(default = "d_authorization")]
    pub authorization: String,
    /// The name of the variable holding the credential for `authorization = "replace"`; the
    /// value itself is never part of the config, so `check-config` cannot print it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_env: Option<String>,
    #[serde(default)]
    pub pass_session_cookies: bool,
    /// Serve the listener over TLS with this certificate chain (PEM), with `tls_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// The CA certificates (PEM) an `https://` upstream is checked against, instead of the
    /// system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ca: Option<PathBuf>,
    /// A client certificate (PEM) for an upstream that asks for one (mutual TLS), with
    /// `upstream_client_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_client_key: Option<PathBuf>,
    #[serde(default, rename = "route", skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<bool>,
    /// With the listener's `pass_session_cookies`: a browser session may pass here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<bool>,
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
fn d_watch_config() -> bool {
    defaults::WATCH_CONFIG
}
fn d_workers() -> usize {
    defaults::WORKERS
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
fn d_default_access() -> String {
    defaults::DEFAULT_ACCESS.into()
}
fn d_authorization() -> String {
    defaults::AUTHORIZATION.into()
}
/// No TLS unless a file is named.
fn d_none<T>() -> Option<T> {
    None
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
    token_file: d_admin_token_file,
    tls_cert: d_none,
    tls_key: d_none
});
section_default!(RawLog {
    format: d_log_format,
    level: d_log_level,
    access: d_access_log
});
section_default!(RawServer {
    shutdown_grace: d_shutdown_grace,
    last_used_flush: d_last_used_flush,
    watch_config: d_watch_config,
    workers: d_workers
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
    /// Reload the config when its file changes (SIGHUP reloads either way).
    pub watch_config: bool,
    /// The data path's threads (`crate::workers`), resolved: at least one.
    pub workers: usize,
    pub listeners: Vec<ListenerConfig>,
    /// The effective raw form, defaults filled in, for `check-config`.
    pub effective: RawConfig,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub bind: SocketAddr,
    pub token_file: PathBuf,
    /// Served over TLS when set.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, both PEM files, read at start and again whenever
/// they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How a listener checks an `https://` upstream and proves itself to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// The CA certificates to trust; the system's roots when absent.
    pub ca: Option<PathBuf>,
    /// The client certificate for mutual TLS.
    pub client: Option<TlsFiles>,
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
    /// The threads that serve it: the process's `server.workers`, resolved. Its upstream pool
    /// keeps a shelf for each.
    pub workers: usize,
    /// The listener's own routes, then its profile's, then its default.
    pub routes: RouteTable,
    pub authorization: UpstreamAuthorization,
    /// Requests with a `Cookie` and no `Authorization` go to the upstream's own session login
    /// instead of being refused for want of a token.
    pub pass_session_cookies: bool,
    /// Served over TLS when set.
    pub tls: Option<TlsFiles>,
    /// For an `https://` upstream.
    pub upstream_tls: UpstreamTls,
}

/// What a listener sends upstream as `Authorization` with the requests tollgate authenticated.
/// Public requests always carry the client's own headers.
#[derive(Clone)]
pub enum UpstreamAuthorization {
    /// The client's token, for an upstream that knows the same tokens.
    Forward,
    /// None, for an upstream that no longer checks tokens on the proxied routes.
    Strip,
    /// A credential of tollgate's own (marked sensitive), for an upstream that knows only it.
    Replace(HeaderValue),
}

impl fmt::Debug for UpstreamAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpstreamAuthorization::Forward => "Forward",
            UpstreamAuthorization::Strip => "Strip",
            UpstreamAuthorization::Replace(_) => "Replace(<redacted>)",
        })
    }
}

/// Where a listener forwards to: `http://host:port` or `https://host:port`, with no path.
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

    /// Parses and validates, reading variables (`authorization_env`) from the environment.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(path, text, &|name| std::env::var(name).ok())
    }

    /// Parses and validates, reading variables through `env`.
    pub fn parse_with_env(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.message().to_owned() + &location(text, e.span()),
        })?;
        raw.validate(path, env)
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
    fn validate(
        self,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
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
            tls: tls_files(
                ("tls_cert", &self.admin.tls_cert),
                ("tls_key", &self.admin.tls_key),
            )
            .map_err(|(key, message)| invalid(&format!("admin.{key}"), message))?,
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
        let workers = match self.server.workers {
            0 => crate::workers::default_count(),
            n if n > MAX_WORKERS => {
                return Err(invalid(
                    "server.workers",
                    format!("{n} is more than {MAX_WORKERS}"),
                ));
            }
            n => n,
        };

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
            let authorization = upstream_authorization(raw, env)
                .map_err(|(key, message)| invalid(&field(key), message))?;
            if bind.port() != 0 && (!binds.insert(bind) || bind == admin.bind) {
                return Err(invalid(&field("bind"), format!("{bind} is used twice")));
            }
            let upstream = parse_upstream(&raw.upstream)
                .map_err(|message| invalid(&field("upstream"), message))?;
            let tls = tls_files(("tls_cert", &raw.tls_cert), ("tls_key", &raw.tls_key))
                .map_err(|(key, message)| invalid(&field(key), message))?;
            let upstream_tls = upstream_tls(raw, &upstream)
                .map_err(|(key, message)| invalid(&field(key), message))?;
            listeners.push(ListenerConfig {
                name: raw.name.clone(),
                bind,
                upstream,
                upstream_timeout: duration(&field("upstream_timeout"), &raw.upstream_timeout)?,
                connect_timeout: duration(&field("connect_timeout"), &raw.connect_timeout)?,
                upstream_idle_timeout: duration(
                    &field("upstream_idle_timeout"),
                    &raw.upstream_idle_timeout,
                )?,
                workers,
                max_connections: match raw.max_connections {
                    0 => {
                        return Err(invalid(
                            &field("max_connections"),
                            "must be above zero".into(),
                        ));
                    }
                    n => n,
                },
                routes: listener_routes(
                    raw,
                    matches!(authorization, UpstreamAuthorization::Forward),
                )
                .map_err(|(key, message)| invalid(&field(&key), message))?,
                authorization,
                pass_session_cookies: raw.pass_session_cookies,
                tls,
                upstream_tls,
            });
        }

        Ok(Config {
            source: path.to_owned(),
            store_path: self.store.path.clone(),
            admin,
            log,
            shutdown_grace,
            last_used_flush,
            watch_config: self.server.watch_config,
            workers,
            listeners,
            effective: self,
        })
    }
}

/// A listener's route table: its own routes, its profile's, its default. Errors carry the key
/// under the listener (`route[2].require`) and a message.
fn listener_routes(
    raw: &RawListener,
    upstream_checks_tokens: bool,
) -> Result<RouteTable, (String, String)> {
    let mut routes = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.iter().enumerate() {
        let key = |k: &str| format!("route[{i}].{k}");
        let pattern = Pattern::parse(&r.path).map_err(|m| (key("path"), m))?;
        let methods = match &r.methods {
            None => MethodSet::ANY,
            Some(names) if names.is_empty() => {
                return Err((key("methods"), "leave it out to match every method".into()));
            }
            Some(names) => MethodSet::parse(names)
                .map_err(|name| (key("methods"), format!("unknown method {name:?}")))?,
        };
        let mut chosen = Vec::new();
        if let Some(text) = &r.require {
            let permission =
                Permission::parse(text).map_err(|e| (key("require"), e.to_string()))?;
            chosen.push(Access::Require(permission));
        }
        for (flag, access) in [
            (r.token, Access::Token),
            (r.public, Access::Public),
            (r.deny, Access::Deny),
        ] {
            if flag == Some(true) {
                chosen.push(access);
            }
        }
        let [access] = chosen[..] else {
            return Err((
                format!("route[{i}]"),
                "give exactly one of require = \"resource:action\", token = true, public = true \
                 or deny = true"
                    .into(),
            ));
        };
        let sessions = r.session == Some(true);
        if sessions && !matches!(access, Access::Token | Access::Require(_)) {
            return Err((
                key("session"),
                "only a route that needs a token can let a session pass instead".into(),
            ));
        }
        routes.push(Route {
            pattern,
            methods,
            access,
            sessions,
        });
    }
    if let Some(name) = &raw.profile {
        let profile = Profile::parse(name).ok_or_else(|| {
            (
                "profile".to_string(),
                format!("{name:?} is not a known profile ({})", Profile::NAMES),
            )
        })?;
        routes.extend(profile.routes(upstream_checks_tokens));
    }
    let default = match raw.default.as_str() {
        "token" => Access::Token,
        "deny" => Access::Deny,
        "public" => Access::Public,
        other => {
            return Err((
                "default".into(),
                format!("{other:?} is not \"token\", \"deny\" or \"public\""),
            ));
        }
    };
    Ok(RouteTable::new(routes, default))
}

/// The listener's `authorization` mode; for `replace`, the credential read from the variable
/// that `authorization_env` names. Messages name the variable, never its value.
fn upstream_authorization(
    raw: &RawListener,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<UpstreamAuthorization, (&'static str, String)> {
    let mode = match raw.authorization.as_str() {
        "forward" => UpstreamAuthorization::Forward,
        "strip" => UpstreamAuthorization::Strip,
        "replace" => {
            let Some(var) = &raw.authorization_env else {
                return Err((
                    "authorization_env",
                    "authorization = \"replace\" needs the name of the variable holding the \
                     credential"
                        .into(),
                ));
            };
            let value = env(var).unwrap_or_default();
            let value = value.trim();
            if value.is_empty() {
                return Err((
                    "authorization_env",
                    format!("the environment variable {var} is not set or empty"),
                ));
            }
            // A bare token is sent the way agents send theirs.
            let value = if value.contains(' ') {
                value.to_owned()
            } else {
                format!("Bearer {value}")
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                (
                    "authorization_env",
                    format!("the value of {var} is not a valid header value"),
                )
            })?;
            value.set_sensitive(true);
            UpstreamAuthorization::Replace(value)
        }
        other => {
            return Err((
                "authorization",
                format!("{other:?} is not \"forward\", \"strip\" or \"replace\""),
            ));
        }
    };
    if raw.authorization_env.is_some() && !matches!(mode, UpstreamAuthorization::Replace(_)) {
        return Err((
            "authorization_env",
            "is used only with authorization = \"replace\"".into(),
        ));
    }
    // A stripped upstream checks nothing on the proxied routes, so a request let through for
    // its session cookie would reach them unchecked.
    if raw.pass_session_cookies && matches!(mode, UpstreamAuthorization::Strip) {
        return Err((
            "pass_session_cookies",
            "cannot be combined with authorization = \"strip\": the upstream would check \
             nothing"
                .into(),
        ));
    }
    Ok(mode)
}

/// A certificate and key named together, or neither. Errors carry the key and a message.
fn tls_files(
    (cert_key, cert): (&'static str, &Option<PathBuf>),
    (key_key, key): (&'static str, &Option<PathBuf>),
) -> Result<Option<TlsFiles>, (&'static str, String)> {
    let named = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    match (named(cert), named(key)) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
        (None, None) if cert.is_none() && key.is_none() => Ok(None),
        (None, _) => Err((
            cert_key,
            format!("give the certificate file with {key_key}"),
        )),
        (_, None) => Err((
            key_key,
            format!("give the private key file with {cert_key}"),
        )),
    }
}

/// The upstream's trust and client certificate; they only make sense for an `https://` upstream.
fn upstream_tls(
    raw: &RawListener,
    upstream: &Upstream,
) -> Result<UpstreamTls, (&'static str, String)> {
    let client = tls_files(
        ("upstream_client_cert", &raw.upstream_client_cert),
        ("upstream_client_key", &raw.upstream_client_key),
    )?;
    let ca = match &raw.upstream_ca {
        Some(p) if p.as_os_str().is_empty() => {
            return Err(("upstream_ca", "must not be empty".into()));
        }
        ca => ca.clone(),
    };
    if upstream.scheme != http::uri::Scheme::HTTPS {
        let key = if ca.is_some() {
            Some("upstream_ca")
        } else if client.is_some() {
            Some("upstream_client_cert")
        } else {
            None
        };
        if let Some(key) = key {
            return Err((key, "is used only with an https:// upstream".into()));
        }
    }
    Ok(UpstreamTls { ca, client })
}

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    // Checked first, and the URL not quoted: its user part may hold a password, and this
    // message reaches the log when a reloaded config is refused.
    if text.contains('@') {
        return Err(
            "credentials in the URL are not supported (the URL is not repeated here)".into(),
        );
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not a URL such as \"http://127.0.0.1:8888\""))?;
    let scheme = match uri.scheme() {
        Some(s) if *s == http::uri::Scheme::HTTP || *s == http::uri::Scheme::HTTPS => s.clone(),
        _ => {
            return Err(format!(
                "{text:?}: only http:// and https:// upstreams are supported"
            ));
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(format!("{text:?}: an upstream URL has no path"));
    }
    Ok(Upstream { scheme, authority })
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
        assert_eq!(config.workers, crate::workers::default_count());
        assert!(config.to_toml().contains("workers = 0"));
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
    fn workers_are_counted_or_left_to_the_cores() {
        let config = parse(&format!("[server]\nworkers = 3\n{MINIMAL}")).unwrap();
        assert_eq!(config.workers, 3);
        let err = parse(&format!("[server]\nworkers = 5000\n{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("server.workers"), "{err}");
        let err = parse(&format!("[server]\nworkers = -1\n{MINIMAL}")).unwrap_err();
        assert!(err.to_string().contains("-1"), "{err}");
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

    #[test]
    fn routes_profile_and_default_build_the_table() {
        let config = parse(&format!(
            "{MINIMAL}profile = \"telegraf-controller\"\ndefault = \"deny\"\n\
             [[listener.route]]\npath = \"/custom/*\"\nmethods = [\"get\"]\npublic = true\n"
        ))
        .unwrap();
        let table = &config.listeners[0].routes;
        assert_eq!(table.routes()[0].pattern.as_str(), "/custom/*");
        assert!(table.routes().len() > 40, "the profile's routes follow");
        let decide = |m: http::Method, p: &str| table.decide(&m, p).unwrap().access;
        assert_eq!(decide(http::Method::GET, "/custom/x"), Access::Public);
        assert_eq!(decide(http::Method::POST, "/nowhere"), Access::Deny);
        // The effective config keeps the routes and parses back.
        let again = parse(&config.to_toml()).unwrap();
        assert_eq!(again.to_toml(), config.to_toml());
    }

    #[test]
    fn bad_routes_name_their_field() {
        for (route, field) in [
            (
                "path = \"nope\"\npublic = true",
                "listener[0].route[0].path",
            ),
            (
                "path = \"/x\"\nrequire = \"cheese:read\"",
                "listener[0].route[0].require",
            ),
            (
                "path = \"/x\"\nmethods = [\"FETCH\"]\ntoken = true",
                "listener[0].route[0].methods",
            ),
            (
                "path = \"/x\"\ntoken = true\npublic = true",
                "listener[0].route[0]",
            ),
            ("path = \"/x\"", "listener[0].route[0]"),
            ("path = \"/x\"\ntoken = true\ncolour = 1", "colour"),
        ] {
            let err = parse(&format!("{MINIMAL}[[listener.route]]\n{route}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        for (keys, field) in [
            ("profile = \"nginx\"", "listener[0].profile"),
            ("default = \"allow\"", "listener[0].default"),
            ("authorization = \"swap\"", "listener[0].authorization"),
            (
                "authorization = \"replace\"",
                "listener[0].authorization_env",
            ),
            ("authorization_env = \"X\"", "listener[0].authorization_env"),
            (
                "authorization = \"strip\"\npass_session_cookies = true",
                "listener[0].pass_session_cookies",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}{keys}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{field}:")), "{field}: {err}");
        }
    }

    #[test]
    fn tls_keys_come_in_pairs_and_show_in_the_effective_config() {
        let config = parse(&format!(
            "[admin]\ntls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n{}\
             tls_cert = \"/etc/tls/tls.crt\"\ntls_key = \"/etc/tls/tls.key\"\n\
             upstream_ca = \"ca.pem\"\nupstream_client_cert = \"c.crt\"\n\
             upstream_client_key = \"c.key\"\n",
            MINIMAL.replace("http://127.0.0.1:8888", "https://controller.internal:8443")
        ))
        .unwrap();
        let listener = &config.listeners[0];
        assert_eq!(listener.upstream.scheme, http::uri::Scheme::HTTPS);
        assert_eq!(
            listener.upstream.authority.as_str(),
            "controller.internal:8443"
        );
        assert_eq!(
            listener.tls,
            Some(TlsFiles {
                cert: "/etc/tls/tls.crt".into(),
                key: "/etc/tls/tls.key".into()
            })
        );
        assert_eq!(listener.upstream_tls.ca, Some("ca.pem".into()));
        assert_eq!(
            listener.upstream_tls.client.as_ref().map(|c| c.key.clone()),
            Some("c.key".into())
        );
        assert_eq!(
            config.admin.tls.as_ref().map(|t| t.cert.clone()),
            Some("admin.crt".into())
        );
        let shown = config.to_toml();
        for path in ["admin.crt", "/etc/tls/tls.key", "ca.pem", "c.crt"] {
            assert!(shown.contains(path), "{path}: {shown}");
        }
        let again = parse(&shown).unwrap();
        assert_eq!(again.to_toml(), shown);
        // Without TLS, no key appears.
        assert!(!parse(MINIMAL).unwrap().to_toml().contains("tls"));
    }

    #[test]
    fn half_a_tls_pair_or_upstream_tls_for_plain_http_names_the_field() {
        for (keys, field) in [
            ("tls_cert = \"a.crt\"", "listener[0].tls_key"),
            ("tls_key = \"a.key\"", "listener[0].tls_cert"),
            (
                "upstream_client_cert = \"c.crt\"",
                "listener[0].upstream_client_key",
            ),
            ("upstream_ca = \"ca.pem\"", "listener[0].upstream_ca"),
        ] {
            let err = parse(&format!("{MINIMAL}{keys}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{field}:")), "{field}: {err}");
        }
        let err = parse(&format!("[admin]\ntls_key = \"k\"\n{MINIMAL}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin.tls_cert:"), "{err}");
    }

    #[test]
    fn a_replacement_credential_is_read_from_the_environment_and_never_shown() {
        let var = "TOLLGATE_TEST_CREDENTIAL_FOR_CONFIG";
        let missing = parse(&format!(
            "{MINIMAL}authorization = \"replace\"\nauthorization_env = \"{var}_UNSET\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(missing.contains(&format!("{var}_UNSET")), "{missing}");

        let env = |name: &str| (name == var).then(|| "tc-apiv1_servicecredential".to_string());
        let config = Config::parse_with_env(
            Path::new("test.toml"),
            &format!("{MINIMAL}authorization = \"replace\"\nauthorization_env = \"{var}\"\n"),
            &env,
        )
        .unwrap();
        match &config.listeners[0].authorization {
            UpstreamAuthorization::Replace(value) => {
                assert_eq!(value.as_bytes(), b"Bearer tc-apiv1_servicecredential");
                assert!(value.is_sensitive());
            }
            other => panic!("{other:?}"),
        }
        let shown = config.to_toml() + &format!("{config:?}");
        assert!(!shown.contains("servicecredential"), "{shown}");
        assert!(shown.contains(var));
    }
}
