//! A small client of the admin API for the command line, over HTTP or HTTPS.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::config::Upstream;
use crate::upstream::UpstreamClient;

/// How long the command line waits for the admin port to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not an admin URL such as http://127.0.0.1:9191")]
    BadUrl(String),
    #[error("cannot set up TLS for the admin API")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot set up TLS for the admin API: {0}")]
    ServerName(#[from] crate::upstream::InvalidServerName),
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the admin API answered {status}: {message}")]
    Refused { status: StatusCode, message: String },
    /// The same refusal from the API served in this process (`--store`): its message alone.
    #[error("{message}")]
    RefusedHere { status: StatusCode, message: String },
    #[error("the admin API sent a body that is not JSON")]
    NotJson,
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } | ClientError::RefusedHere { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }
}

pub struct AdminClient {
    base: String,
    token: String,
    http: UpstreamClient,
}

impl AdminClient {
    /// A client of the admin API at `base`; for `https://`, trusting the CA certificates in the
    /// PEM file `ca`, else the system's roots.
    pub fn new(base: &str, token: String, ca: Option<&Path>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(base.clone()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(ClientError::BadUrl(base)),
        };
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ClientError::BadUrl(base));
        };
        let admin = Upstream {
            scheme: scheme.clone(),
            authority: authority.clone(),
        };
        let tls = if https {
            Some(crate::tls::client::admin_client_config(ca)?)
        } else {
            None
        };
        // One call per command: no connection is kept for long.
        let http = UpstreamClient::new(&admin, tls, CONNECT_TIMEOUT, Duration::from_secs(1), 0)?;
        Ok(AdminClient { base, token, http })
    }

    /// Sends one call; a 2xx answer gives its JSON body (`Null` when empty), anything else an
    /// error carrying the API's message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let request: Request<Full<Bytes>> =
            json_request(method, &url, body, Some(format!("Bearer {}", self.token)))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: crate::ErrorChain(&e).to_string(),
            })?;
        let status = response.status;
        let bytes = response
            .body
            .collect()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        answer(status, &bytes)
    }
}

/// A call to the admin API with a JSON body (none when `body` is `None`), to send over the
/// network or to serve in this process.
pub(super) fn json_request<B: From<String> + Default>(
    method: Method,
    uri: &str,
    body: Option<&Value>,
    authorization: Option<String>,
) -> Result<Request<B>, ClientError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json");
    if let Some(authorization) = authorization {
        builder = builder.header(header::AUTHORIZATION, authorization);
    }
    builder
        .body(body.map_or_else(B::default, |b| B::from(b.to_string())))
        .map_err(|_| ClientError::BadUrl(uri.to_owned()))
}

/// An answer of the admin API: a 2xx answer gives its JSON body (`Null` when empty), anything
/// else an error carrying the API's message.
pub(super) fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value, ClientError> {
    let json: Value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).map_err(|_| ClientError::NotJson)?
    };
    if status.is_success() {
        Ok(json)
    } else {
        let message = json["error"].as_str().unwrap_or("no message").to_owned();
        Err(ClientError::Refused { status, message })
    }
}
