//! The client a listener forwards with (and the command line's client of the admin API):
//! HTTP/1.1 to one upstream, plain or TLS, over pooled keep-alive connections.
//!
//! Why not hyper's client: it drives each connection from a task of its own and hands it every
//! request through a channel, so a forwarded request crosses tasks (and often threads) twice.
//! Here the request's own task writes the request, reads the answer's head and, as the client
//! side asks for it, the body; the connection goes back to the pool when the body's last byte
//! is read. The upstream is the operator's own service, but its answers are still parsed
//! strictly: framing by RFC 9112 §6, and a connection whose framing is in doubt is never reused.

mod body;
mod conn;
mod pool;
pub(crate) mod wire;

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body::Body;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::config::Upstream;
pub use body::UpstreamBody;
use conn::{Connection, Io};
use pool::Pool;
pub(crate) use wire::RequestFraming;
pub use wire::ResponseFields;
use wire::{Parsed, ResponseHead};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream's response: its status, its fields as received, and its body, which `B` (the
/// request's body) may still be going out with.
pub struct UpstreamResponse<B> {
    pub status: StatusCode,
    pub fields: ResponseFields,
    pub body: UpstreamBody<B>,
}

/// Why a request got no response from the upstream. Never carries request data.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve the upstream's host")]
    Resolve(#[source] io::Error),
    #[error("resolving the upstream's host timed out")]
    ResolveTimeout,
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TLS handshake failed")]
    Tls(#[source] io::Error),
    #[error("the connection closed before a response")]
    Closed,
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    #[error("the request body failed")]
    Body(#[source] BoxError),
}

/// A listener's client to its upstream. Clones share the pool.
#[derive(Clone)]
pub struct UpstreamClient {
    target: Arc<Target>,
    pool: Arc<Pool>,
}

struct Target {
    /// The host as resolved (no brackets around an IPv6 address), and the port.
    host: String,
    port: u16,
    /// `Host` for a request that came without one: the upstream's authority.
    authority: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

/// The upstream's host is not a name a TLS certificate can be checked against.
#[derive(Debug, thiserror::Error)]
#[error("upstream host {0:?} is not a valid TLS server name")]
pub struct InvalidServerName(String);

impl UpstreamClient {
    /// A client for `upstream`; with `tls` for an `https://` one. Idle connections close after
    /// `idle_timeout`. Used by `workers` worker threads (`crate::workers`), whose idle
    /// connections are kept apart; 0 when no worker uses it.
    pub fn new(
        upstream: &Upstream,
        tls: Option<ClientConfig>,
        connect_timeout: Duration,
        idle_timeout: Duration,
        workers: usize,
    ) -> Result<UpstreamClient, InvalidServerName> {
        let authority = &upstream.authority;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| InvalidServerName(host.clone()))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(UpstreamClient {
            target: Arc::new(Target {
                host,
                port,
                authority: HeaderValue::from_str(authority.as_str())
                    .expect("an authority is a valid header value"),
                tls,
                connect_timeout,
            }),
            pool: Pool::new(idle_timeout, workers),
        })
    }

    /// Sends `request` (its URI's path and query; the target is the client's) and returns the
    /// response once its head is in. The body is read as the returned body is polled.
    pub async fn send<B>(&self, request: Request<B>) -> Result<UpstreamResponse<B>, UpstreamError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let framing = RequestFraming::of(
            &parts.method,
            parts.headers.contains_key(http::header::CONTENT_LENGTH),
            body.size_hint().exact(),
            body.is_end_stream(),
        );
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let write_head = |head: &mut Vec<u8>| {
            wire::encode_request_head(
                &parts.method,
                path,
                &parts.headers,
                &self.target.authority,
                framing,
                head,
            );
        };
        self.send_head(&parts.method, framing, write_head, body)
            .await
    }

    /// Sends a request whose head `write_head` writes, whole and framed by `framing`, followed by
    /// `body`; as [`UpstreamClient::send`] otherwise. `write_head` may be called more than once.
    pub(crate) async fn send_head<B>(
        &self,
        method: &Method,
        framing: RequestFraming,
        write_head: impl Fn(&mut Vec<u8>),
        mut body: B,
    ) -> Result<UpstreamResponse<B>, UpstreamError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let encode_head = || {
            let mut head = Vec::with_capacity(512);
            write_head(&mut head);
            head
        };
        // An idle connection the upstream has just closed is found only by using it. If the
        // upstream sent nothing back, an idempotent request without a body (RFC 9110 §9.2.2)
        // goes again on a new connection. Anything else fails, as it would through any proxy:
        // the upstream may have acted on it. Closing idle connections before the upstream does
        // (the idle timeout) keeps that rare.
        let replayable = method.is_idempotent()
            && matches!(framing, RequestFraming::None | RequestFraming::Length(0));
        let mut pooled = self.pool.take();
        loop {
            let reused = pooled.is_some();
            let mut conn = match pooled.take() {
                Some(conn) => conn,
                // Boxed: a TLS handshake's state is large, and inline it would grow every
                // request's future (held for the life of each client connection) for the sake
                // of the few requests that open a connection.
                None => Box::pin(self.connect()).await?,
            };
            match exchange(&mut conn, encode_head(), &mut body, framing, method).await {
                Ok((head, upload)) => {
                    let (keep_alive, upload) = match upload {
                        Upload::Sent => (head.keep_alive, None),
                        // The upstream stopped reading the request; its answer stands, and the
                        // connection is not used again.
                        Upload::Failed => (false, None),
                        // The answer came first: the rest of the request goes on being sent
                        // as the answer's body is read, as an upstream that answers early and
                        // then reads on expects.
                        Upload::Unfinished(sender) => (head.keep_alive, Some((sender, body))),
                    };
                    let body = UpstreamBody::new(
                        head.framing,
                        conn,
                        keep_alive,
                        upload,
                        self.pool.clone(),
                    );
                    return Ok(UpstreamResponse {
                        status: head.status,
                        fields: head.fields,
                        body,
                    });
                }
                Err(failed) if reused && replayable && !failed.answered => continue,
                Err(failed) => return Err(failed.error),
            }
        }
    }

    async fn connect(&self) -> Result<Connection, UpstreamError> {
        let target = &self.target;
        let tcp = connect_tcp(&target.host, target.port, target.connect_timeout).await?;
        // Best effort: a socket that refuses it still works, only slower.
        let _ = tcp.set_nodelay(true);
        let io = match &target.tls {
            None => Io::Plain(tcp),
            Some((connector, name)) => Io::Tls(Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(UpstreamError::Tls)?,
            )),
        };
        Ok(Connection::new(io))
    }
}

/// The first address of `host` that accepts a connection within `timeout`. Each address gets an
/// equal share of the time left, so that one that drops packets (an unreachable IPv6 address
/// listed first) cannot use it all up.
async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, UpstreamError> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| UpstreamError::ResolveTimeout)?
            .map_err(UpstreamError::Resolve)?
            .collect();
    let mut last = None;
    for (tried, &addr) in addrs.iter().enumerate() {
        let share =
            deadline.saturating_duration_since(Instant::now()) / (addrs.len() - tried) as u32;
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(source)) => last = Some(UpstreamError::Connect { addr, source }),
            Err(_) => last = Some(UpstreamError::ConnectTimeout(addr)),
        }
    }
    Err(last.unwrap_or_else(|| {
        UpstreamError::Resolve(io::Error::new(io::ErrorKind::NotFound, "no address"))
    }))
}

/// An exchange that got no final response.
struct Failed {
    error: UpstreamError,
    /// Whether the upstream sent anything at all: if not, the request may never have reached it.
    answered: bool,
}

/// How much of the request had gone out when the answer's head came.
enum Upload {
    Sent,
    /// Sending failed (the upstream closed its side), but it had answered.
    Failed,
    /// Still under way.
    Unfinished(Sender),
}

/// Writes the request and its body while reading the answer, and returns the final response
/// head and how far the request got. A failure to send does not hide an answer already on its
/// way (an upstream refusing an upload answers, then closes): reading goes on, and the send
/// error is the result only if no answer comes.
async fn exchange<B>(
    conn: &mut Connection,
    head: Vec<u8>,
    body: &mut B,
    framing: RequestFraming,
    method: &Method,
) -> Result<(ResponseHead, Upload), Failed>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut sender = Some(Sender::new(head, framing));
    let mut send_failed: Option<UpstreamError> = None;
    let mut answered = false;
    // How far the buffer is known to hold no complete head, so that a head arriving in many
    // small reads is not parsed again from its start each time.
    let mut searched = 0;
    poll_fn(|cx| {
        if let Some(sending) = sender.as_mut() {
            match sending.poll_send(cx, conn, body) {
                Poll::Ready(Ok(())) => sender = None,
                Poll::Ready(Err(error @ UpstreamError::Body(_))) => {
                    // The client's side failed: nothing more to forward.
                    return Poll::Ready(Err(Failed { error, answered }));
                }
                Poll::Ready(Err(error)) => {
                    sender = None;
                    send_failed = Some(error);
                }
                Poll::Pending => {}
            }
        }
        loop {
            if wire::may_hold_head(&conn.buf, &mut searched) {
                match wire::take_response_head(&mut conn.buf, method) {
                    // The empty line found is not the head's end (the upstream sent empty
                    // lines before its status line): no need to look at these bytes again.
                    Ok(Parsed::Partial) => searched = conn.buf.len(),
                    Ok(Parsed::Interim) => {
                        searched = 0;
                        continue;
                    }
                    Ok(Parsed::Final(head)) => {
                        let upload = match (sender.take(), send_failed.is_some()) {
                            (_, true) => Upload::Failed,
                            (None, false) => Upload::Sent,
                            (Some(sending), false) => Upload::Unfinished(sending),
                        };
                        return Poll::Ready(Ok((head, upload)));
                    }
                    Err(error) => return Poll::Ready(Err(Failed { error, answered })),
                }
            } else if conn.buf.len() >= wire::MAX_RESPONSE_HEAD {
                let error = UpstreamError::Invalid("response head too large");
                return Poll::Ready(Err(Failed { error, answered }));
            }
            let error = match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => UpstreamError::Closed,
                Poll::Ready(Ok(_)) => {
                    answered = true;
                    continue;
                }
                Poll::Ready(Err(e)) => UpstreamError::Io(e),
                Poll::Pending => return Poll::Pending,
            };
            let error = send_failed.take().unwrap_or(error);
            return Poll::Ready(Err(Failed { error, answered }));
        }
    })
    .await
}

/// The request going out: its head, then its body as the client sends it.
pub(super) struct Sender {
    /// Bytes to write, from `written` on.
    pending: Vec<u8>,
    written: usize,
    framing: RequestFraming,
    state: Sending,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sending {
    Body,
    Ended,
}

/// Body data gathered before a write, at most.
const GATHER: usize = 16 * 1024;

impl Sender {
    fn new(head: Vec<u8>, framing: RequestFraming) -> Sender {
        Sender {
            pending: head,
            written: 0,
            framing,
            state: if framing == RequestFraming::None {
                Sending::Ended
            } else {
                Sending::Body
            },
        }
    }

    /// Writes what can be written; ready once the whole request is written and flushed.
    pub(super) fn poll_send<B>(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Connection,
        body: &mut B,
    ) -> Poll<Result<(), UpstreamError>>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        loop {
            // Whatever body is ready goes out with what is already pending, in one write.
            if self.state == Sending::Body && self.pending.len() - self.written < GATHER {
                match std::pin::Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            self.encode(&data)?;
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        return Poll::Ready(Err(UpstreamError::Body(e.into())));
                    }
                    Poll::Ready(None) => {
                        self.end()?;
                        continue;
                    }
                    Poll::Pending => {}
                }
            }
            if self.written < self.pending.len() {
                match conn.poll_write(cx, &self.pending[self.written..]) {
                    Poll::Ready(Ok(0)) => {
                        let closed = io::Error::from(io::ErrorKind::WriteZero);
                        return Poll::Ready(Err(UpstreamError::Io(closed)));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.written += n;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(UpstreamError::Io(e))),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.pending.clear();
            self.written = 0;
            if self.state == Sending::Body {
                // Waiting for the client's next piece of body. TLS may still hold records of
                // the last one: they go out meanwhile.
                if let Poll::Ready(Err(e)) = conn.poll_flush(cx) {
                    return Poll::Ready(Err(UpstreamError::Io(e)));
                }
                return Poll::Pending;
            }
            return conn.poll_flush(cx).map_err(UpstreamError::Io);
        }
    }

    fn encode(&mut self, data: &Bytes) -> Result<(), UpstreamError> {
        if data.is_empty() {
            return Ok(());
        }
        match &mut self.framing {
            RequestFraming::Length(left) => {
                *left = left
                    .checked_sub(data.len() as u64)
                    .ok_or(UpstreamError::Body("body longer than its length".into()))?;
                self.pending.extend_from_slice(data);
            }
            RequestFraming::Chunked => {
                self.pending
                    .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                self.pending.extend_from_slice(data);
                self.pending.extend_from_slice(b"\r\n");
            }
            RequestFraming::None => {
                return Err(UpstreamError::Body(
                    "a body where none was announced".into(),
                ));
            }
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), UpstreamError> {
        self.state = Sending::Ended;
        match self.framing {
            RequestFraming::Length(0) | RequestFraming::None => Ok(()),
            RequestFraming::Length(_) => {
                Err(UpstreamError::Body("body shorter than its length".into()))
            }
            RequestFraming::Chunked => {
                self.pending.extend_from_slice(b"0\r\n\r\n");
                Ok(())
            }
        }
    }
}
