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
    #[error("the admin API sent a body that is not JSON")]
    NotJson,
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
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
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
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
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson)?
        };
        if status.is_success() {
            Ok(json)
        } else {
            let message = json["error"].as_str().unwrap_or("no message").to_owned();
            Err(ClientError::Refused { status, message })
        }
    }
}
