//! The client side: the pooled upstream client of a listener (plain `http://` or `https://`,
//! with the system's roots or a given CA, and a client certificate for mutual TLS), and the TLS
//! settings of the command line's admin client.

use std::path::Path;

use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use super::{LiveCert, TlsError, UPSTREAM_CLIENT_KEYS, provider, read_roots, system_roots};
use crate::config::{ListenerConfig, UpstreamTls};

/// A listener's pooled client to its upstream. Plain `http://` upstreams go through the same type
/// without TLS: the connector picks by the request's scheme, once per new connection.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// The client a listener forwards with. Reads the CA and the client certificate named in the
/// config (the certificate is then followed on disk, see [`LiveCert`]); the error names the
/// key and the file. Must run within a tokio runtime when a client certificate is configured.
pub fn upstream_client(config: &ListenerConfig) -> Result<UpstreamClient, TlsError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    // The HTTPS connector wraps this one and needs it to pass `https://` URIs through.
    http.enforce_http(false);
    let tls = if config.upstream.scheme == http::uri::Scheme::HTTPS {
        upstream_tls_config(&config.name, &config.upstream_tls)?
    } else {
        // Never used: a plain upstream never starts a handshake.
        plain_only_config()?
    };
    // HTTP/1.1 only: requests are sent upstream as HTTP/1.1 whatever the client spoke.
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        // Without a timer the idle timeout is silently ignored.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.upstream_idle_timeout)
        .build(connector))
}

fn upstream_tls_config(listener: &str, tls: &UpstreamTls) -> Result<ClientConfig, TlsError> {
    let roots = match &tls.ca {
        Some(path) => read_roots("upstream_ca", path)?,
        None => system_roots("upstream_ca")?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots);
    Ok(match &tls.client {
        Some(files) => {
            let cert = LiveCert::load(listener, "upstream client", files, UPSTREAM_CLIENT_KEYS)?;
            // Outside a runtime (a unit test building a client) the certificate is only read
            // once; `serve` always builds clients within one.
            if tokio::runtime::Handle::try_current().is_ok() {
                cert.watch();
            }
            let mut config = builder.with_client_cert_resolver(cert);
            // A resumed session keeps the identity of the handshake that made it, so after a
            // renewal the upstream would go on seeing the old certificate. Every new upstream
            // connection makes a full handshake instead; connections are pooled, so this costs
            // once per connection, not per request.
            config.resumption = rustls::client::Resumption::disabled();
            config
        }
        None => builder.with_no_client_auth(),
    })
}

/// A client config that trusts nothing, for connectors that only ever make plain connections.
pub fn plain_only_config() -> Result<ClientConfig, TlsError> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// The TLS settings of the command line's admin client: trust the CA certificates in `ca`
/// (a PEM bundle, or the admin port's own certificate), else the system's roots.
pub fn admin_client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(path) => read_roots("admin CA", path)?,
        None => system_roots("--admin-ca")?,
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
