//! The data path: listeners that authenticate every request against the cache and forward what
//! passes to their upstream.
//!
//! A request's life: route (`route.rs`) → authenticate where the route asks for it (the cache's
//! verdict, then the route's permission; both in `judge`) → refuse, or forward (header hygiene,
//! the listener's upstream credential, the upstream client (`crate::upstream`), streamed bodies)
//! → count and log (`account`). HTTP/1.1's common requests live it in `h1`, tollgate's own server
//! side; the others (HTTP/2, and HTTP/1 connections `h1` hands over) in `handle`, under hyper.
//! No disk, no lock across an `.await`, nothing a client sends can panic it. A connection's
//! protocol is told by ALPN, or in cleartext by a peek for HTTP/2's preface; a listener with TLS
//! does the handshake in the connection's own task before serving it (`crate::tls`).

mod h1;
mod headers;
mod respond;
pub mod route;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{AUTHORIZATION, COOKIE, HOST, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Version};
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::cache::{Identity, TokenCache, Verdict, presented_hint};
use crate::config::{ListenerConfig, Upstream, UpstreamAuthorization};
use crate::metrics::{ListenerMetrics, Outcome};
use crate::time;
use crate::tls::TlsError;
use crate::tls::client::upstream_client;
use crate::token::Permission;
use crate::upstream::{UpstreamClient, UpstreamError, UpstreamResponse};

pub use respond::ProxyBody;
use route::{Access, BadPath, RouteTable};

/// How long a client may take to send a request head (the first one included) before its
/// connection is closed; and, in `h1`, the small body of a request it forwards, from the head's
/// end.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings find dead peers on connections that carry no traffic.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
const H2_MAX_STREAMS: u32 = 256;
/// How long a stopping listener keeps idle HTTP/1 connections open, so that clients sending on
/// them get an answer (with `Connection: close`) rather than a closed connection.
const HANDOVER: Duration = Duration::from_secs(5);
/// The largest request head accepted, per connection buffer.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most headers `forward` adds to a request that lacks them: `Host`, the three
/// `X-Forwarded-*` and the two identity headers.
const ADDED_HEADERS: usize = 6;

/// Everything one listener's requests need, shared by its connections: what is fixed for the
/// process's life, and the settings a config reload may replace.
pub struct ListenerState {
    name: Arc<str>,
    max_connections: usize,
    /// One permit per open connection, up to `max_connections`, over all the workers.
    slots: Arc<Semaphore>,
    cache: Arc<TokenCache>,
    metrics: ListenerMetrics,
    /// Swapped whole by a reload. A request loads it once and keeps that snapshot to the end,
    /// so that it sees the old settings or the new ones, never a mix of both.
    settings: ArcSwap<ListenerSettings>,
    /// Set when the listener stops: HTTP/1 answers then ask the client to reconnect.
    draining: std::sync::atomic::AtomicBool,
    /// The listener serves TLS (fixed at start): the upstream hears `X-Forwarded-Proto: https`.
    secure: bool,
}

impl ListenerState {
    /// The scheme the client reached this listener by, for `X-Forwarded-Proto`.
    fn forwarded_proto(&self) -> &'static str {
        if self.secure { "https" } else { "http" }
    }
}

/// The part of a listener that the config decides and a reload may change, immutable once built.
pub struct ListenerSettings {
    upstream: Upstream,
    upstream_timeout: Duration,
    client: UpstreamClient,
    access_log: bool,
    routes: RouteTable,
    authorization: UpstreamAuthorization,
    pass_session_cookies: bool,
}

/// The listener keys, as the config file names them, that `tls::client::upstream_client` reads.
/// A reload that changes one of them builds a new client; any other reload keeps the client and
/// its warm connections.
pub const CLIENT_KEYS: &[&str] = &[
    "upstream",
    "connect_timeout",
    "upstream_idle_timeout",
    "upstream_ca",
    "upstream_client_cert",
    "upstream_client_key",
];

/// The listener keys that [`ListenerSettings`] reads besides the client's: with
/// [`CLIENT_KEYS`], what a reload applies to a running listener. A key in neither list is fixed
/// at start and needs a restart.
pub const SETTINGS_KEYS: &[&str] = &[
    "upstream",
    "upstream_timeout",
    "profile",
    "default",
    "route",
    "authorization",
    "authorization_env",
    "pass_session_cookies",
];

impl ListenerSettings {
    pub fn new(config: &ListenerConfig, access_log: bool) -> Result<Self, TlsError> {
        Ok(ListenerSettings::with_client(
            config,
            access_log,
            upstream_client(config)?,
        ))
    }

    fn with_client(config: &ListenerConfig, access_log: bool, client: UpstreamClient) -> Self {
        ListenerSettings {
            upstream: config.upstream.clone(),
            upstream_timeout: config.upstream_timeout,
            client,
            access_log,
            routes: config.routes.clone(),
            authorization: config.authorization.clone(),
            pass_session_cookies: config.pass_session_cookies,
        }
    }
}

impl ListenerState {
    pub fn new(
        config: &ListenerConfig,
        cache: Arc<TokenCache>,
        metrics: ListenerMetrics,
        access_log: bool,
    ) -> Result<Self, TlsError> {
        Ok(ListenerState {
            name: Arc::from(config.name.as_str()),
            max_connections: config.max_connections,
            slots: Arc::new(Semaphore::new(config.max_connections)),
            cache,
            metrics,
            settings: ArcSwap::from_pointee(ListenerSettings::new(config, access_log)?),
            draining: std::sync::atomic::AtomicBool::new(false),
            secure: config.tls.is_some(),
        })
    }

    /// The settings a reloaded listener config decides, built but not yet in use (see
    /// `install`). `new_client` says whether the upstream client's inputs changed; otherwise
    /// the pooled client (and its open connections) is kept. A client that cannot be built (an
    /// unreadable CA or client certificate) is an error, and nothing changes. What is fixed at
    /// start (the name, bind address, connection limit, TLS) is not read.
    pub fn prepare(
        &self,
        config: &ListenerConfig,
        access_log: bool,
        new_client: bool,
    ) -> Result<Arc<ListenerSettings>, TlsError> {
        let client = if new_client {
            upstream_client(config)?
        } else {
            // A clone shares the pool.
            self.settings.load().client.clone()
        };
        Ok(Arc::new(ListenerSettings::with_client(
            config, access_log, client,
        )))
    }

    /// Puts prepared settings in use from the next request on. Requests already under way
    /// finish with the settings they started with.
    pub fn install(&self, settings: Arc<ListenerSettings>) {
        self.settings.store(settings);
    }
}

/// Serves the connections of one listener that this worker accepts, until `shutdown` turns
/// true, then drains (see `drain`). Every worker runs one `serve` per listener, on a socket of
/// its own bound to the listener's address. With `tls`, every connection is a TLS connection.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ListenerState>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_concurrent_streams(H2_MAX_STREAMS)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let connections = Connections {
        // Shared with the connections' tasks, which pick the protocol once they know it.
        builders: Arc::new(Builders { http1, http2 }),
        tls,
        graceful: GracefulShutdown::new(),
        closing: watch::Sender::new(false),
        state,
    };

    loop {
        let (stream, remote) = tokio::select! {
            accepted = accept(&listener, &connections.state.name) => accepted,
            _ = shutdown.changed() => break,
        };
        // Accepted first, then a slot waited for: a worker that waited for a slot before
        // accepting would hold one while nothing came to its socket, and with the slots shared,
        // idle workers could hold them all while connections queue at another worker's socket.
        // Past the limit, each worker holds one accepted connection and the rest queue in the
        // kernel.
        let slots = connections.state.slots.clone();
        tokio::select! {
            permit = slots.acquire_owned() => {
                let permit = permit.expect("the connection semaphore is never closed");
                connections.serve(Some(permit), stream, remote);
            }
            _ = shutdown.changed() => {
                // Served like those the drain finds queued beyond the limit.
                connections.serve(None, stream, remote);
                break;
            }
        }
    }
    connections.drain(listener, grace).await;
}

/// One worker's share of a listener's open connections: how they are served, counted and drained.
struct Connections {
    builders: Arc<Builders>,
    tls: Option<TlsAcceptor>,
    graceful: GracefulShutdown,
    /// Turns true when `graceful` shuts down, for the HTTP/1 connections (HTTP/2's are told by
    /// `graceful`): those waiting for a request close then, and those hyper serves once their
    /// request under way is answered.
    closing: watch::Sender<bool>,
    /// Its connection slots (`state.slots`) are shared with the other workers.
    state: Arc<ListenerState>,
}

impl Connections {
    /// Serves one connection; `permit` is its slot (none only for the connections accepted
    /// while draining beyond the limit).
    fn serve(
        &self,
        permit: Option<OwnedSemaphorePermit>,
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
    ) {
        // Best effort: a socket that refuses it still works, only slower.
        let _ = stream.set_nodelay(true);
        let client = Client {
            state: self.state.clone(),
            remote: Arc::new(Remote::new(remote)),
            permit,
        };
        let builders = self.builders.clone();
        let tls = self.tls.clone();
        // Taken now: a connection whose protocol is known only after shutdown began is closed
        // at once, and the drain waits for it.
        let watcher = self.graceful.watcher();
        let closing = self.closing.subscribe();
        tokio::spawn(async move {
            match tls {
                None => {
                    // The client's first bytes tell HTTP/2 with prior knowledge from HTTP/1.
                    // Read without waiting forever: the first request's own deadline applies.
                    let sniffed =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, sniff_protocol(&stream)).await;
                    match sniffed {
                        Ok(Ok(Protocol::Http1)) => {
                            h1::serve(stream, client, builders, watcher, closing).await;
                        }
                        Ok(Ok(Protocol::Http2)) => {
                            let io = TokioIo::new(stream);
                            let protocol = Protocol::Http2;
                            builders.serve(protocol, io, client, watcher, closing).await;
                        }
                        _ => {}
                    }
                }
                // Boxed, so that a cleartext connection's task does not carry the room of a TLS
                // handshake and session.
                Some(acceptor) => {
                    Box::pin(async move {
                        let Some(stream) =
                            crate::tls::server::handshake(&acceptor, stream, HEADER_READ_TIMEOUT)
                                .await
                        else {
                            return;
                        };
                        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                            let io = TokioIo::new(stream);
                            let protocol = Protocol::Http2;
                            builders.serve(protocol, io, client, watcher, closing).await;
                        } else {
                            h1::serve(stream, client, builders, watcher, closing).await;
                        }
                    })
                    .await
                }
            }
        });
    }

    /// Stops serving without failing a request, also when a successor process already serves
    /// the same port (SO_REUSEPORT):
    ///
    /// 1. Connections the kernel has completed but this process has not accepted yet are
    ///    accepted and served: closing the socket would reset them.
    /// 2. This worker's socket is closed, so new connections go to the other sockets on the
    ///    port: a successor process's, or this process's other workers' until they close theirs.
    /// 3. For `HANDOVER` (at most half of `grace`), HTTP/1 connections stay open and each
    ///    one's next response carries `Connection: close`: a client learns to reconnect from an
    ///    answer, never from a connection closed under a request it was sending. This phase
    ///    ends as soon as every connection is closed.
    /// 4. Then the remaining connections are shut down gracefully (HTTP/2 gets GOAWAY; HTTP/1
    ///    connections idle for that whole phase are closed), and the rest of `grace` is what
    ///    in-flight requests have left.
    async fn drain(self, listener: TcpListener, grace: Duration) {
        let started = Instant::now();
        self.state
            .draining
            .store(true, std::sync::atomic::Ordering::Release);
        // Asked of the socket itself (the reactor may not have seen the newest ones yet), until
        // the queue is empty. Over the connection limit too: refusing them now would reset them.
        if let Ok(listener) = listener.into_std() {
            while let Ok((stream, remote)) = listener.accept() {
                let Ok(stream) = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream))
                else {
                    continue;
                };
                let permit = self.state.slots.clone().try_acquire_owned().ok();
                self.serve(permit, stream, remote);
            }
        }

        let all_closed = || self.state.slots.available_permits() == self.state.max_connections;
        let handover = (grace / 2).min(HANDOVER);
        while !all_closed() && started.elapsed() < handover {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = grace.saturating_sub(started.elapsed());
        self.closing.send_replace(true);
        if tokio::time::timeout(left, self.graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = %self.state.name,
                "grace period over; connections still open are closed at exit"
            );
        }
    }
}

/// The protocol a client connection speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// One accepted client connection, before its protocol is known.
struct Client {
    state: Arc<ListenerState>,
    remote: Arc<Remote>,
    /// Its connection slot (none only for the connections accepted while draining beyond the
    /// limit).
    permit: Option<OwnedSemaphorePermit>,
}

/// How a client connection is served, per protocol.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Builders {
    /// Serves one connection in `protocol` to its end. Each protocol gets its own connection
    /// type rather than one that could be either: an HTTP/1 connection then carries no HTTP/2
    /// state for its whole life. HTTP/1 connections come here from `h1`, with a request begun
    /// (see `serve_http1`).
    async fn serve<I>(
        &self,
        protocol: Protocol,
        io: I,
        client: Client,
        watcher: Watcher,
        closing: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let Client {
            state,
            remote,
            permit,
        } = client;
        let first_request = Arc::new(Notify::new());
        let service = {
            let first_request = first_request.clone();
            service_fn(move |request| {
                first_request.notify_one();
                // Boxed: hyper keeps the slot for a request's future for the connection's whole
                // life, so an unboxed one (about 2 KiB) would stay with every idle connection.
                // A box lives as long as its request.
                Box::pin(handle(state.clone(), remote.clone(), request))
            })
        };
        match protocol {
            Protocol::Http1 => {
                let connection = self.http1.serve_connection(io, service);
                serve_http1(connection, first_request, closing).await;
                // Held to here: the listener's drain waits for the connection to end.
                drop((watcher, permit));
            }
            Protocol::Http2 => {
                let connection = self.http2.serve_connection(io, service);
                Box::pin(run_connection(
                    watcher.watch(connection),
                    first_request,
                    permit,
                ))
                .await;
            }
        }
    }
}

/// Drives an HTTP/1 connection that `h1` handed to hyper with a request begun, which tollgate
/// has read and so must answer. hyper, told to shut down before it has begun a request, closes
/// the connection without reading it; so the listener's closing reaches the connection only
/// once that request is under way. It is then answered, with `Connection: close`.
async fn serve_http1<I, S>(
    connection: http1::Connection<I, S>,
    first_request: Arc<Notify>,
    mut closing: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: http_body::Body + 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(connection);
    tokio::select! {
        ended = connection.as_mut() => return log_connection_end(ended),
        _ = first_request.notified() => {}
    }
    tokio::select! {
        ended = connection.as_mut() => return log_connection_end(ended),
        // Or the listener is gone.
        _ = closing.wait_for(|closing| *closing) => connection.as_mut().graceful_shutdown(),
    }
    log_connection_end(connection.await);
}

/// HTTP/2 with prior knowledge starts with this preface (RFC 9113 §3.4); no HTTP/1 request can.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells the protocol from the connection's first bytes, without taking them from the socket.
async fn sniff_protocol(stream: &tokio::net::TcpStream) -> std::io::Result<Protocol> {
    let mut first = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 || !H2_PREFACE.starts_with(&first[..n]) {
            // A closed connection is HTTP/1's to end.
            return Ok(Protocol::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // A start of the preface only: the rest is on its way (peeking again at once would
        // find the same bytes).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Drives one HTTP/2 client connection to its end, holding its slot.
async fn run_connection<E: std::fmt::Display>(
    connection: impl Future<Output = Result<(), E>>,
    first_request: Arc<Notify>,
    _permit: Option<OwnedSemaphorePermit>,
) {
    tokio::pin!(connection);
    // HTTP/2 has no deadline for a request head of its own: a client that opens a connection and
    // never sends a request on it is closed here.
    tokio::select! {
        ended = &mut connection => return log_connection_end(ended),
        _ = first_request.notified() => {}
        _ = tokio::time::sleep(HEADER_READ_TIMEOUT) => return,
    }
    log_connection_end(connection.await);
}

/// Waits for a connection.
async fn accept(listener: &TcpListener, name: &str) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                // Typically out of file descriptors: back off a little instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn log_connection_end<E: std::fmt::Display>(ended: Result<(), E>) {
    // Client resets and timeouts end connections all the time; nothing to act on.
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The client at the other end of a connection, as its requests need it.
struct Remote {
    addr: SocketAddr,
    /// The address as an `X-Forwarded-For` value, made once per connection rather than per
    /// request.
    forwarded_for: HeaderValue,
}

impl Remote {
    fn new(addr: SocketAddr) -> Remote {
        Remote {
            addr,
            forwarded_for: HeaderValue::from_str(&addr.ip().to_string())
                .expect("an IP address is a valid header value"),
        }
    }
}

/// One request's life: route, authenticate where the route asks for it, then refuse or forward;
/// count and log either way. The requests that `h1` does not take itself come here.
async fn handle(
    state: Arc<ListenerState>,
    remote: Arc<Remote>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    // One load per request: every step below reads this snapshot, whatever a reload does
    // meanwhile.
    let settings = state.settings.load_full();
    let http1 = request.version() < Version::HTTP_2;
    let authorization = || {
        request
            .headers()
            .get_all(AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes)
    };
    let logged = AccessFields::taken(
        &settings,
        request.method(),
        request.uri().path_and_query(),
        authorization(),
    );
    let Judgement {
        route,
        required,
        verdict,
    } = judge(
        &state,
        &settings,
        request.method(),
        request.uri().path(),
        authorization(),
        request.headers().contains_key(COOKIE) && !request.headers().contains_key(AUTHORIZATION),
    );
    let handled = match verdict {
        // Checked in `judge` and forwarded from here, rather than in a function that does both:
        // one future less to build and move on every request.
        Ok((identity, outcome)) => {
            forward(&state, &settings, &remote, identity, request, outcome).await
        }
        Err(refused) => *refused,
    };
    account(&state, &remote, logged, route, required, &handled);
    let mut response = handled.answer.into_response();
    if http1 && state.draining.load(std::sync::atomic::Ordering::Acquire) {
        // hyper closes the connection after this answer; the client reconnects, to the
        // process that serves the port from now on.
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(response)
}

/// What the route and the token say of a request, before anything goes upstream.
struct Judgement<'s, B> {
    /// The route's name, `-` for a path refused before routing.
    route: &'s str,
    /// The permission the route requires, when it names one.
    required: Option<Permission>,
    /// Forward (with the checked token's identity, if any, and what a delivered answer counts
    /// as), or the refusal.
    verdict: Result<(Option<Identity>, Outcome), Box<Handled<B>>>,
}

/// The answer to a request: the upstream's, or one of tollgate's own. `B` is the request's body,
/// which the upstream's answer may still be sending.
enum Answer<B> {
    Upstream(UpstreamResponse<B>),
    Own(respond::Own),
}

impl<B> Answer<B> {
    fn status(&self) -> StatusCode {
        match self {
            Answer::Upstream(response) => response.status,
            Answer::Own(response) => response.status(),
        }
    }

    /// As hyper serves it: the upstream's fields as a header map, without the hop-by-hop ones.
    fn into_response(self) -> Response<ProxyBody<B>> {
        match self {
            Answer::Upstream(upstream) => {
                let mut response = Response::new(Either::Left(upstream.body));
                *response.status_mut() = upstream.status;
                let fields = &upstream.fields;
                *response.headers_mut() =
                    fields.header_map(|name| headers::response_field_forwarded(fields, name));
                response
            }
            Answer::Own(response) => response.map(Either::Right),
        }
    }
}

/// Routes a request and, where the route asks for it, checks its token: `authorization` is the
/// value of each of its `Authorization` fields; `cookie_only` says it has a `Cookie` and none.
fn judge<'s, 'r, B>(
    state: &ListenerState,
    settings: &'s ListenerSettings,
    method: &http::Method,
    path: &str,
    authorization: impl IntoIterator<Item = &'r [u8]>,
    cookie_only: bool,
) -> Judgement<'s, B> {
    let decision = match settings.routes.decide(method, path) {
        Ok(decision) => decision,
        Err(BadPath) => {
            return Judgement {
                route: "-",
                required: None,
                verdict: Err(Handled::refused(
                    respond::bad_path(),
                    Outcome::BadPath,
                    None,
                )),
            };
        }
    };
    let mut required = None;
    let verdict = match decision.access {
        Access::Deny => Err(Handled::refused(
            respond::forbidden(),
            Outcome::RouteDenied,
            None,
        )),
        Access::Public => Ok((None, Outcome::Public)),
        // A browser on the upstream's own session: a cookie and no token. Passed through
        // unchecked when the listener allows it; the upstream's login decides.
        Access::Token | Access::Require(_)
            if decision.sessions && settings.pass_session_cookies && cookie_only =>
        {
            Ok((None, Outcome::Session))
        }
        Access::Token | Access::Require(_) => {
            if let Access::Require(permission) = decision.access {
                required = Some(permission);
            }
            authenticate(state, authorization, required)
                .map(|identity| (Some(identity), Outcome::Forwarded))
        }
    };
    Judgement {
        route: decision.route,
        required,
        verdict,
    }
}

/// Counts a request and writes its access line.
fn account<B>(
    state: &ListenerState,
    remote: &Remote,
    logged: Option<AccessFields>,
    route: &str,
    required: Option<Permission>,
    handled: &Handled<B>,
) {
    if let Some(elapsed) = handled.upstream_time {
        state.metrics.upstream_latency(elapsed);
    }
    state.metrics.record(handled.outcome);
    let Some(fields) = logged else {
        return;
    };
    let identity = handled.identity.as_ref();
    // The path only: query strings may carry parameters that are nobody's business in a log.
    tracing::info!(
        target: "tollgate::access",
        listener = %state.name,
        remote = %remote.addr.ip(),
        method = %fields.method,
        path = fields.path.as_ref().map_or("/", |p| p.path()),
        status = handled.answer.status().as_u16(),
        outcome = handled.outcome.as_str(),
        route,
        required = required.map(tracing::field::display),
        token_id = identity.map_or("-", |i| i.id.as_str()),
        token_name = identity.map(|i| i.name.as_str()),
        hint = fields.hint,
        upstream_ms = handled.upstream_time.map(|t| t.as_secs_f64() * 1000.0),
        "access"
    );
}

/// How a request ended, for the metrics and the access line; `B` is the request's body, which
/// an upstream answer may still be sending.
struct Handled<B = Incoming> {
    answer: Answer<B>,
    outcome: Outcome,
    /// The token's owner, when a known token was presented (allowed or not).
    identity: Option<Identity>,
    /// Time to the upstream's response head, when the request went upstream.
    upstream_time: Option<Duration>,
}

impl<B> Handled<B> {
    /// A refusal, boxed: it is the rarer way out, and the common one then stays small.
    fn refused(response: respond::Own, outcome: Outcome, identity: Option<Identity>) -> Box<Self> {
        Box::new(Handled {
            answer: Answer::Own(response),
            outcome,
            identity,
            upstream_time: None,
        })
    }
}

/// The identity of the token a request presents (`authorization`, the value of each of its
/// `Authorization` fields), for a route that needs a valid token, and that token's permission
/// `required` when the route names one; or the refusal. The token is judged first (401s), then
/// the permission (403).
fn authenticate<'r, B>(
    state: &ListenerState,
    authorization: impl IntoIterator<Item = &'r [u8]>,
    required: Option<Permission>,
) -> Result<Identity, Box<Handled<B>>> {
    let identity = match state.cache.decide_values(authorization, time::now()) {
        Verdict::Deny(denial, identity) => {
            return Err(Handled::refused(
                respond::denied(denial),
                Outcome::Denied(denial),
                identity,
            ));
        }
        Verdict::Allow(identity) => identity,
    };
    if let Some(permission) = required.filter(|p| !identity.permissions.allows(*p)) {
        state.metrics.permission_denied(permission);
        return Err(Handled::refused(
            respond::insufficient_scope(permission),
            Outcome::Permission,
            Some(identity),
        ));
    }
    Ok(identity)
}

/// What an access line says about the request, taken before the request moves upstream.
struct AccessFields {
    method: http::Method,
    path: Option<PathAndQuery>,
    /// The presented token's prefix and last four characters, when it is well formed.
    hint: Option<String>,
}

impl AccessFields {
    /// Taken only when there is an access line to write.
    fn taken<'r>(
        settings: &ListenerSettings,
        method: &http::Method,
        path: Option<&PathAndQuery>,
        authorization: impl IntoIterator<Item = &'r [u8]>,
    ) -> Option<AccessFields> {
        settings.access_log.then(|| AccessFields {
            method: method.clone(),
            path: path.cloned(),
            hint: presented_hint(authorization),
        })
    }
}

/// Sends a request upstream and streams the answer back. `identity` is the token tollgate
/// checked, handed back with the answer for the metrics and the access line; without one
/// (public routes, sessions) the request keeps the client's credentials as sent and gets no
/// identity headers. `outcome` is what a delivered answer counts as.
async fn forward(
    state: &ListenerState,
    settings: &ListenerSettings,
    remote: &Remote,
    identity: Option<Identity>,
    request: Request<Incoming>,
    outcome: Outcome,
) -> Handled {
    let (mut parts, body) = request.into_parts();
    let arrived_over_h2 = parts.version == Version::HTTP_2;

    // The authority of the request target wins over `Host` (RFC 9112 §3.2.2; HTTP/2 carries it
    // as `:authority`); origin-form HTTP/1.1 requests have only `Host`.
    let host = parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(HOST).cloned());
    // The request's URI stays as the client sent it: the upstream client writes its path and
    // query (`/` when it has none) in origin form, as HTTP/1.1, whatever the client spoke.

    let headers = &mut parts.headers;
    headers::scrub_request(headers, identity.is_some());
    // Room for the headers added below, made at once: growing the map one insert at a time
    // rehashes it each time it fills.
    headers.reserve(ADDED_HEADERS);
    if arrived_over_h2 {
        join_cookies(headers);
    }
    if let Some(host) = host {
        headers.insert(HOST, host.clone());
        headers.insert(headers::X_FORWARDED_HOST, host);
    }
    headers::append_forwarded_for(headers, &remote.forwarded_for);
    headers.insert(
        headers::X_FORWARDED_PROTO,
        HeaderValue::from_static(state.forwarded_proto()),
    );
    if let Some(identity) = &identity {
        headers.insert(
            headers::TOKEN_ID,
            HeaderValue::from_bytes(identity.id.as_bytes()).expect("token ids are header-safe"),
        );
        // Names are kept header-safe (visible ASCII and spaces), so this only copies.
        if let Ok(name) = HeaderValue::from_bytes(identity.name.as_bytes()) {
            headers.insert(headers::TOKEN_NAME, name);
        }
        match &settings.authorization {
            UpstreamAuthorization::Forward => {}
            UpstreamAuthorization::Strip => {
                headers.remove(AUTHORIZATION);
            }
            UpstreamAuthorization::Replace(credential) => {
                headers.insert(AUTHORIZATION, credential.clone());
            }
        }
    }

    // Not boxed on its own: this whole request's future is (see `Builders::serve`).
    let sent = settings.client.send(Request::from_parts(parts, body));
    let handled = exchange_upstream(state, settings, outcome, sent).await;
    Handled {
        identity,
        ..handled
    }
}

/// Waits for the upstream's answer to a request `sent`, up to the upstream timeout, and makes
/// it the client's (see `answer`), timed; `outcome` as in `forward`. The identity is the
/// caller's to add: the request being sent may still borrow it.
async fn exchange_upstream<B>(
    state: &ListenerState,
    settings: &ListenerSettings,
    outcome: Outcome,
    sent: impl Future<Output = Result<UpstreamResponse<B>, UpstreamError>>,
) -> Handled<B> {
    let started = Instant::now();
    let sent = tokio::time::timeout(settings.upstream_timeout, sent).await;
    let (answer, outcome) = answer(state, settings, sent, outcome);
    Handled {
        answer,
        outcome,
        identity: None,
        upstream_time: Some(started.elapsed()),
    }
}

/// The client's answer to what became of a forwarded request (`sent`, within the upstream
/// timeout or not), and what it counts as: `delivered` when the upstream answered.
fn answer<B>(
    state: &ListenerState,
    settings: &ListenerSettings,
    sent: Result<Result<UpstreamResponse<B>, UpstreamError>, tokio::time::error::Elapsed>,
    delivered: Outcome,
) -> (Answer<B>, Outcome) {
    match sent {
        Ok(Ok(response)) => (Answer::Upstream(response), delivered),
        Ok(Err(e @ UpstreamError::Body(_))) => {
            // The client's doing, not the upstream's: no warning for whoever watches the upstream.
            tracing::debug!(
                listener = %state.name,
                error = %crate::ErrorChain(&e),
                "a request body failed while it was forwarded"
            );
            (Answer::Own(respond::bad_body()), Outcome::BadBody)
        }
        Ok(Err(e)) => {
            tracing::warn!(
                listener = %state.name,
                upstream = %settings.upstream.authority,
                error = %crate::ErrorChain(&e),
                "upstream request failed"
            );
            (
                Answer::Own(respond::upstream_unavailable()),
                Outcome::UpstreamUnavailable,
            )
        }
        Err(_) => {
            tracing::warn!(
                listener = %state.name,
                upstream = %settings.upstream.authority,
                timeout_ms = settings.upstream_timeout.as_millis() as u64,
                "upstream timed out"
            );
            (
                Answer::Own(respond::upstream_timed_out()),
                Outcome::UpstreamTimeout,
            )
        }
    }
}

/// HTTP/2 may split `Cookie` into several fields; an HTTP/1.1 upstream expects one
/// (RFC 9113 §8.2.3).
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, joined);
    }
}
