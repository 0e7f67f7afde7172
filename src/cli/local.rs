//! `--store PATH`: the `token` and `audit` commands on a store file directly, with no server (to
//! create the first tokens before the first start, or in an emergency).
//!
//! The admin API's own router is served in this process over the file, with no socket and no
//! credential (whoever can write the file can change it anyway), so the validation, the JSON, the
//! statuses and the messages are the API's by construction. The file is opened in redb's
//! multi-writer mode like a server's: a server running on it keeps running, and applies the
//! change from the change log.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Method, Request};
use serde_json::Value;
use tower::ServiceExt;

use super::CliError;
use super::client::{ClientError, answer, json_request};
use crate::admin::{InternalDetail, in_process_api};
use crate::registry::Registry;
use crate::store::Store;

pub struct LocalApi {
    router: Router,
}

impl LocalApi {
    /// Opens the store at `path`. `may_create`: whether a missing file is created (with its
    /// directory, as `serve` would), which only commands that add tokens ask for; any other
    /// command on a missing file is refused rather than leave an empty store behind.
    pub fn open(path: &Path, may_create: bool) -> Result<LocalApi, CliError> {
        let exists = path.try_exists().map_err(|e| {
            CliError::Failed(format!("cannot look for the store {}: {e}", path.display()))
        })?;
        if !exists && !may_create {
            return Err(CliError::Failed(format!(
                "no store at {}; `token create --store` or `tollgate serve` starts one",
                path.display()
            )));
        }
        crate::logging::init_for_command_line();
        // Only what this process changes is held in memory: a store may hold a million tokens.
        let registry = Registry::unloaded(Store::open(path)?);
        Ok(LocalApi {
            router: in_process_api(Arc::new(registry), offline_actor()),
        })
    }

    /// One API call, answered as the network API would answer it.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        // No credential: the in-process API has no credential check.
        let request: Request<Body> = json_request(method, path, body, None)?;
        let response = match self.router.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status();
        // A 500 says "see the server log"; here there is none, so show what went wrong.
        let detail = response.extensions().get::<InternalDetail>().cloned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map_err(|_| ClientError::NotJson)?;
        answer(status, &bytes).map_err(|e| match e {
            ClientError::Refused { status, message } => ClientError::RefusedHere {
                status,
                message: detail.map_or(message, |d| d.0),
            },
            other => other,
        })
    }
}

/// The audit trail's actor for a change made on the file directly: `offline:` and the user who
/// ran the command (from `$USER` or `$LOGNAME` when it is a plain name, else the numeric uid).
fn offline_actor() -> String {
    let plain = |name: &String| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    match ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(plain)
    {
        Some(user) => format!("offline:{user}"),
        None => format!("offline:uid-{}", rustix::process::getuid().as_raw()),
    }
}
