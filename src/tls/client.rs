//! The client side: the TLS settings of a listener's upstream client (plain `http://` or `https://`,
//! with the system's roots or a given CA, and a client certificate for mutual TLS), and the TLS
//! settings of the command line's admin client.

use std::path::Path;

use rustls::ClientConfig;

use super::{LiveCert, TlsError, UPSTREAM_CLIENT_KEYS, provider, read_roots, system_roots};
use crate::config::{ListenerConfig, UpstreamTls};
use crate::upstream::UpstreamClient;

/// The client a listener forwards with. Reads the CA and the client certificate named in the
/// config (the certificate is then followed on disk, see [`LiveCert`]); the error names the
/// key and the file. Must run within a tokio runtime when a client certificate is configured.
pub fn upstream_client(config: &ListenerConfig) -> Result<UpstreamClient, TlsError> {
    let tls = if config.upstream.scheme == http::uri::Scheme::HTTPS {
        let mut tls = upstream_tls_config(&config.name, &config.upstream_tls)?;
        // Requests go upstream as HTTP/1.1 whatever the client spoke.
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some(tls)
    } else {
        None
    };
    UpstreamClient::new(
        &config.upstream,
        tls,
        config.connect_timeout,
        config.upstream_idle_timeout,
        config.workers,
    )
    .map_err(|e| TlsError::ServerName(e.to_string()))
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
