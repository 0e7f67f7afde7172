//! A small client of the admin API for the command line, over HTTP or HTTPS.

use std::path::Path;

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0:?} is not an admin URL such as http://127.0.0.1:9191")]
    BadUrl(String),
    #[error("cannot set up TLS for the admin API")]
    Tls(#[from] crate::tls::TlsError),
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
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        if uri.authority().is_none() {
            return Err(ClientError::BadUrl(base));
        }
        let tls = if https {
            crate::tls::client::admin_client_config(ca)?
        } else {
            // Never used for a plain URL; no roots to read.
            crate::tls::client::plain_only_config()?
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(AdminClient {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
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
            .request(request)
            .await
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: crate::ErrorChain(&e).to_string(),
            })?;
        let status = response.status();
        let bytes = response
            .into_body()
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
