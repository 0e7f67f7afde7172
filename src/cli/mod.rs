//! The command line: `serve`, `check-config`, the `token` and `audit` commands, which are
//! clients of the admin API (or, given `--store`, work on a store file directly), and `store`
//! (backup and check). Arguments are parsed by clap into raw form, then checked here.

mod client;
mod local;
mod output;
mod store;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::{Value, json};

use crate::admin::read_token_file;
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::server::{self, ServerError};
pub use client::{AdminClient, ClientError};

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "An authenticating sidecar for Telegraf Controller"
)]
pub struct Cli {
    /// The config file [default: config/tollgate.toml]
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and the admin API
    Serve,
    /// Validate the config and print it with every default filled in
    CheckConfig,
    /// Manage tokens through the admin API, or on a store file with --store
    Token {
        #[command(flatten)]
        admin: AdminArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Show recent audit events
    Audit {
        #[command(flatten)]
        admin: AdminArgs,
        /// How many events, newest first
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Back up or check a store file
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The admin API [default: from $TOLLGATE_ADMIN_URL, else the config's admin.bind]
    // $TOLLGATE_ADMIN_URL is read where the client is made, not by clap: a variable set in the
    // environment must not make `--store` a usage error, as the flag itself does.
    #[arg(long, global = true, value_name = "URL")]
    pub admin_url: Option<String>,
    /// Work on this store file directly, with no server; a server running on it applies the
    /// change from its change log
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "admin_url")]
    pub store: Option<PathBuf>,
    /// For an https:// admin URL: the CA certificate(s) to trust, PEM [default: from
    /// $TOLLGATE_ADMIN_CA, else the config's admin.tls_cert, else the system's roots]
    #[arg(long, global = true, env = "TOLLGATE_ADMIN_CA", value_name = "PATH")]
    pub admin_ca: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is shown this once
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A permission preset [default: telegraf-agent]
        #[arg(long, conflicts_with = "permission", value_parser = ["telegraf-agent"])]
        preset: Option<String>,
        /// RESOURCE:ACTION, repeatable
        #[arg(long, value_name = "RESOURCE:ACTION")]
        permission: Vec<String>,
        /// Such as 30d or 12h
        #[arg(long, conflicts_with = "expires_at", value_name = "DURATION")]
        expires_in: Option<String>,
        /// RFC 3339, such as 2027-01-31T00:00:00Z
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List tokens, newest first
    List {
        #[arg(long, value_parser = ["active", "revoked", "expired"])]
        status: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one token
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke tokens (permanent; the records stay for auditing)
    Revoke {
        #[arg(required = true)]
        ids: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        /// Print the API's answer: {"revoked", "already_revoked", "not_found"}
        #[arg(long)]
        json: bool,
    },
    /// Import tokens that already exist (in the Controller), by plaintext or SHA-256 digest
    Import {
        /// A JSON file shaped like the import API's body ({"tokens": [...]}), or - for stdin
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the API's answer: {"imported", "skipped"}
        #[arg(long)]
        json: bool,
    },
    /// Delete tokens (their records are gone)
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
        /// Print the API's answer: {"deleted", "not_found"}
        #[arg(long)]
        json: bool,
    },
}

/// A command's failure: one line for stderr, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Maintenance(#[from] crate::store::maintenance::MaintenanceError),
    #[error("{0}")]
    Failed(String),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let config_path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    // Before anything may build a TLS config: one crypto provider for the whole process.
    crate::tls::install_provider();
    match cli.command {
        Command::Serve => serve(&config_path),
        Command::CheckConfig => {
            let config = Config::load(&config_path)?;
            print!("{}", config.to_toml());
            eprintln!("{}: valid", config_path.display());
            Ok(())
        }
        Command::Token { admin, command } => {
            // Only commands that add tokens may start a new store file.
            let adds = matches!(
                command,
                TokenCommand::Create { .. } | TokenCommand::Import { .. }
            );
            let backend = Backend::find(&config_path, &admin, adds)?;
            runtime()?.block_on(token_command(&backend, command))
        }
        Command::Audit { admin, limit, json } => {
            let backend = Backend::find(&config_path, &admin, false)?;
            runtime()?.block_on(audit(&backend, limit, json))
        }
        Command::Store { command } => store::run(&config_path, command),
    }
}

/// Where the `token` and `audit` commands send their calls: the admin API of a running server,
/// or the same API served in this process over a store file (`--store`).
enum Backend {
    Remote(Box<AdminClient>),
    Local(local::LocalApi),
}

impl Backend {
    /// `may_create`: whether a missing store file may be created (`--store` only).
    fn find(config_path: &Path, args: &AdminArgs, may_create: bool) -> Result<Backend, CliError> {
        match &args.store {
            Some(path) => Ok(Backend::Local(local::LocalApi::open(path, may_create)?)),
            None => Ok(Backend::Remote(Box::new(admin_client(config_path, args)?))),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        match self {
            Backend::Remote(client) => client.call(method, path, body).await,
            Backend::Local(api) => api.call(method, path, body).await,
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))
}

fn serve(config_path: &Path) -> Result<(), CliError> {
    let config = Config::load(config_path)?;
    crate::logging::init(&config.log);
    tracing::info!(config = %config_path.display(), version = env!("CARGO_PKG_VERSION"), "starting");
    runtime()?.block_on(async {
        let running = server::start(&config).await?;
        running
            .run_until(async {
                let first = crate::shutdown::wait_for_stop_signal().await;
                // A second signal while draining means "now".
                tokio::spawn(async {
                    let second = crate::shutdown::wait_for_stop_signal().await;
                    tracing::warn!(signal = second, "second signal: exiting without draining");
                    std::process::exit(1);
                });
                first
            })
            .await;
        Ok(())
    })
}

/// Finds the admin API, its credential and, for https, the CA to trust: flags and environment
/// first, then the config.
fn admin_client(config_path: &Path, admin: &AdminArgs) -> Result<AdminClient, CliError> {
    // Read here rather than by clap, which would take the variable for the flag and refuse it
    // beside `--store`.
    let env_url = std::env::var("TOLLGATE_ADMIN_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    let url = admin.admin_url.as_deref().or(env_url.as_deref());
    let env_token = std::env::var("TOLLGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let config = if url.is_none() || env_token.is_none() {
        Some(Config::load(config_path)?)
    } else {
        None
    };
    let url = match (url, &config) {
        (Some(url), _) => url.to_owned(),
        (None, Some(config)) => {
            let mut addr = config.admin.bind;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if config.admin.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{addr}")
        }
        (None, None) => unreachable!("the config is loaded whenever the URL is missing"),
    };
    let token = match (env_token, &config) {
        (Some(token), _) => token.trim().to_owned(),
        (None, Some(config)) => read_token_file(&config.admin.token_file)
            .map_err(|e| CliError::Failed(format!("{e} (or set TOLLGATE_ADMIN_TOKEN)")))?,
        (None, None) => unreachable!("the config is loaded whenever the token is missing"),
    };
    // The admin port's own certificate file works as the trust root of a self-signed
    // certificate, or when the file carries its CA after the leaf; a config that is not needed
    // otherwise and cannot be read leaves the system's roots.
    let https = url
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("https:"));
    let ca = match (&admin.admin_ca, config) {
        _ if !https => None,
        (Some(ca), _) => Some(ca.clone()),
        (None, Some(config)) => config.admin.tls.map(|files| files.cert),
        (None, None) => Config::load(config_path)
            .ok()
            .and_then(|config| config.admin.tls.map(|files| files.cert)),
    };
    Ok(AdminClient::new(&url, token, ca.as_deref())?)
}

async fn token_command(client: &Backend, command: TokenCommand) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            name,
            description,
            preset,
            permission,
            expires_in,
            expires_at,
            json,
        } => {
            let mut body = json!({ "name": name });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if let Some(p) = preset {
                body["preset"] = json!(p);
            }
            if !permission.is_empty() {
                body["permissions"] = json!(permission);
            }
            if let Some(e) = expires_in {
                body["expires_in"] = json!(e);
            }
            if let Some(e) = expires_at {
                body["expires_at"] = json!(e);
            }
            let created = client
                .call(Method::POST, "/api/v1/tokens", Some(&body))
                .await?;
            if json {
                println!("{created}");
            } else {
                print!("{}", output::record(&created));
                println!();
                println!("token: {}", output::cell(&created["token"]));
                eprintln!("This is the only time the token is shown. Store it now.");
            }
            Ok(())
        }
        TokenCommand::List { status, json } => {
            let tokens = list_all(client, status.as_deref()).await?;
            if json {
                println!("{}", json!({ "tokens": tokens }));
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        [
                            "id",
                            "name",
                            "status",
                            "permissions",
                            "created_at",
                            "expires_at",
                            "last_used_at",
                        ]
                        .iter()
                        .map(|f| output::cell(&t[*f]))
                        .collect()
                    })
                    .collect();
                print!(
                    "{}",
                    output::table(
                        &[
                            "ID",
                            "NAME",
                            "STATUS",
                            "PERMISSIONS",
                            "CREATED",
                            "EXPIRES",
                            "LAST USED"
                        ],
                        &rows
                    )
                );
            }
            Ok(())
        }
        TokenCommand::Show { id, json } => {
            let record = client
                .call(
                    Method::GET,
                    &format!("/api/v1/tokens/{}", path_segment(&id)),
                    None,
                )
                .await
                .map_err(|e| not_found_as(&id, e))?;
            if json {
                println!("{record}");
            } else {
                print!("{}", output::record(&record));
            }
            Ok(())
        }
        TokenCommand::Revoke {
            ids,
            reason,
            yes,
            json,
        } => {
            confirm(
                &format!(
                    "Revoke {}? Revocation is permanent: the token is refused from the next request on.",
                    describe(&ids)
                ),
                yes,
            )?;
            let body = match reason {
                Some(r) => json!({ "ids": ids, "reason": r }),
                None => json!({ "ids": ids }),
            };
            let outcome = client
                .call(Method::POST, "/api/v1/tokens/revoke", Some(&body))
                .await?;
            report(
                &outcome,
                &[
                    ("revoked", "revoked"),
                    ("already_revoked", "already revoked"),
                ],
                json,
            )
        }
        TokenCommand::Import { file, json } => {
            let body = read_import_file(&file)?;
            let outcome = client
                .call(Method::POST, "/api/v1/tokens/import", Some(&body))
                .await?;
            if json {
                println!("{outcome}");
                return Ok(());
            }
            let imported = outcome["imported"].as_array().cloned().unwrap_or_default();
            let skipped = outcome["skipped"].as_array().cloned().unwrap_or_default();
            println!(
                "imported {} token(s), skipped {}",
                imported.len(),
                skipped.len()
            );
            for id in &imported {
                println!("imported: {}", output::cell(id));
            }
            for s in &skipped {
                println!(
                    "skipped: {} ({})",
                    output::cell(&s["name"]),
                    output::cell(&s["reason"])
                );
            }
            Ok(())
        }
        TokenCommand::Delete { ids, yes, json } => {
            confirm(
                &format!(
                    "Delete {}? The record is removed for good and the token is refused from the next request on.",
                    describe(&ids)
                ),
                yes,
            )?;
            let outcome = client
                .call(
                    Method::POST,
                    "/api/v1/tokens/delete",
                    Some(&json!({ "ids": ids })),
                )
                .await?;
            report(&outcome, &[("deleted", "deleted")], json)
        }
    }
}

async fn list_all(client: &Backend, status: Option<&str>) -> Result<Vec<Value>, CliError> {
    let mut tokens = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = String::from("/api/v1/tokens?limit=1000");
        if let Some(s) = status {
            path.push_str(&format!("&status={s}"));
        }
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", path_segment(a)));
        }
        let page = client.call(Method::GET, &path, None).await?;
        if let Some(items) = page["tokens"].as_array() {
            tokens.extend(items.iter().cloned());
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(tokens),
        }
    }
}

async fn audit(client: &Backend, limit: u32, json: bool) -> Result<(), CliError> {
    let page = client
        .call(Method::GET, &format!("/api/v1/audit?limit={limit}"), None)
        .await?;
    if json {
        println!("{page}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = page["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    ["at", "action", "token_id", "token_name", "actor", "reason"]
                        .iter()
                        .map(|f| output::cell(&e[*f]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        output::table(&["AT", "ACTION", "TOKEN", "NAME", "ACTOR", "REASON"], &rows)
    );
    Ok(())
}

/// Prints what a bulk call did; fails when some ids were not found, after the rest was done.
fn report(outcome: &Value, lists: &[(&str, &str)], json: bool) -> Result<(), CliError> {
    if json {
        println!("{outcome}");
    } else {
        for (key, label) in lists {
            for id in outcome[*key].as_array().into_iter().flatten() {
                println!("{label}: {}", output::cell(id));
            }
        }
    }
    let missing: Vec<String> = outcome["not_found"]
        .as_array()
        .into_iter()
        .flatten()
        .map(output::cell)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "not found: {}",
            missing.join(", ")
        )))
    }
}

/// Reads an import body from a file or, for `-`, from stdin. Only its JSON syntax is checked
/// here; the server validates the rest. Messages never quote the contents, which hold secrets.
fn read_import_file(file: &Path) -> Result<Value, CliError> {
    let (name, bytes) = if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::Failed(format!("cannot read stdin: {e}")))?;
        ("stdin".to_owned(), bytes)
    } else {
        let bytes = std::fs::read(file)
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
        (file.display().to_string(), bytes)
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Failed(format!(
            "{name}: not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// Asks on a terminal; without one, refuses unless `--yes` was given.
fn confirm(question: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Failed(
            "refusing without confirmation: no terminal to ask on; pass --yes".into(),
        ));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "Yes") {
        Ok(())
    } else {
        Err(CliError::Failed("cancelled; nothing changed".into()))
    }
}

fn describe(ids: &[String]) -> String {
    match ids {
        [one] => format!("token {one}"),
        many => format!("{} tokens ({})", many.len(), many.join(", ")),
    }
}

/// Ids are URL-safe by construction; anything else is percent-encoded so that it reaches the API
/// as the same string (and is then simply not found).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn not_found_as(id: &str, e: ClientError) -> CliError {
    if e.status() == Some(http::StatusCode::NOT_FOUND) {
        CliError::Failed(format!("token {id} not found"))
    } else {
        e.into()
    }
}
