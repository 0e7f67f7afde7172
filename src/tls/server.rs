//! The serving side: a TLS acceptor over a [`LiveCert`], the handshake with a deadline, and a
//! listener for the admin port's axum server that hands out streams whose handshake is done.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{LiveCert, TlsError, provider};

/// What the data-path listeners offer by ALPN: HTTP/2 first, so that clients that can, choose it.
pub const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
/// What the admin port offers: its API and page are small, HTTP/1.1 serves them.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// An acceptor that presents `cert`'s current pair on every new handshake.
pub fn acceptor(cert: Arc<LiveCert>, alpn: &[&[u8]]) -> Result<TlsAcceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS handshake on an accepted connection, given `timeout` to finish. `None` when it failed
/// or took too long: the client is gone or was not speaking TLS, nothing to act on.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

/// A listener for axum whose streams have finished their TLS handshake. Handshakes run in tasks
/// of their own, so that a slow or silent client never holds up the next accept.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`, on the current runtime.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        // A few finished handshakes may wait for axum's next accept.
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, remote) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Typically out of file descriptors: back off instead of spinning.
                        tracing::warn!(listener = "admin", error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(stream) = handshake(&acceptor, stream, timeout).await {
                        // Closed when the server stopped; the connection is dropped with it.
                        let _ = tx.send((stream, remote)).await;
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // The server stopped accepting: close the port too.
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task holds a sender for as long as this listener lives; it ends
            // only by `abort` in `drop`, so the channel cannot close while we wait here.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
