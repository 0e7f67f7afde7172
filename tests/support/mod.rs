//! Shared fixtures for the black-box tests: a real upstream HTTP server, the real `tollgate` binary
//! in a temporary directory, an HTTP client (HTTP/1.1 and HTTP/2 with prior knowledge), and
//! poll-with-a-deadline helpers. Every test binary uses a subset, hence the `allow`.
#![allow(dead_code)]

pub mod controller;
pub mod reload;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long any test waits for a condition before it fails. Generous: a loaded CI machine is slow,
/// and a deadline is a bound on failure, never an assertion about speed.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The interval between two checks of a polled condition.
const POLL: Duration = Duration::from_millis(10);

/// The prefix of every tollgate token.
pub const TOKEN_PREFIX: &str = "tc-apiv1_";

/// The exact `Last-Modified` the upstream gives `/config`.
pub const CONFIG_LAST_MODIFIED: &str = "Wed, 21 Oct 2026 07:28:00 GMT";

/// The body the upstream gives `GET /config`.
pub const CONFIG_BODY: &str = "[agent]\n  interval = \"10s\"\n";

// ---------------------------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------------------------

/// Polls `cond` until it holds; panics naming `what` when `deadline` passes first.
pub fn wait_for(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Polls the async `probe` until it yields `Some`, and returns that value; panics naming `what` when
/// `deadline` passes first.
pub async fn wait_until<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Lowercase hex of the SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(out, "{b:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// `n` random bytes from the OS.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    buf
}

/// A well-formed token secret that no store has ever seen.
pub fn random_secret() -> String {
    format!("{TOKEN_PREFIX}{}", hex(&random_bytes(32)))
}

/// The deterministic byte pattern used for large bodies: byte `i` is `i % 251`.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `Bearer <secret>`.
pub fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

/// The URL of a loopback port that nothing listens on: bind port 0, note it, close it.
pub fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener
        .local_addr()
        .expect("bound socket has an address")
        .port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// Formats a time as RFC 3339 UTC with second precision, e.g. `2026-11-27T21:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (the contract's exact shape) into seconds since 1970; `None` when
/// the text has any other shape.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of `days_from_civil`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Asserts that `s` is an RFC 3339 UTC time with second precision.
pub fn assert_time(s: &Value, what: &str) {
    let text = s
        .as_str()
        .unwrap_or_else(|| panic!("{what} should be a time string, got {s}"));
    assert!(
        parse_rfc3339(text).is_some(),
        "{what} should be RFC 3339 UTC with second precision (2026-11-27T21:00:00Z), got {text:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The upstream
// ---------------------------------------------------------------------------------------------

/// The head of a request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub version: Version,
    /// Every header in arrival order, names lowercase; repeated headers kept.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// Every value of the header `name`, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }
}

/// What the upstream's echo answer says it received.
#[derive(Clone, Debug, Deserialize)]
pub struct Echo {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha256: String,
}

impl Echo {
    /// Every value of the header `name`, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }

    /// Every header name received (lowercase).
    pub fn names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }
}

fn header_values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

type UpBody = BoxBody<Bytes, Infallible>;

/// A server on a loopback port, run on its own thread and runtime so that it serves whatever the
/// test's own runtime is doing; each accepted connection goes to `on_connection` in a task of
/// its own. Stopped and joined when dropped.
pub struct ServerThread {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    pub fn start<F, Fut>(name: &str, on_connection: F) -> ServerThread
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the server");
        listener
            .set_nonblocking(true)
            .expect("a tokio listener needs a non-blocking socket");
        let addr = listener.local_addr().expect("bound socket has an address");
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build the server's runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the server's listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                tokio::spawn(on_connection(stream));
                            }
                        }
                    }
                });
            })
            .expect("spawn the server's thread");
        ServerThread {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A real HTTP/1.1 server on a loopback port that records every request head and echoes it.
pub struct Upstream {
    server: ServerThread,
    recorded: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let rec = recorded.clone();
        let server = ServerThread::start("upstream", move |stream| {
            let _ = stream.set_nodelay(true);
            let rec = rec.clone();
            async move {
                let service =
                    hyper::service::service_fn(move |req| upstream_handle(rec.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        });
        Upstream { server, recorded }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, for a listener's `upstream`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Every request head received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("upstream record lock").clone()
    }

    /// The received request heads whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until a request for `path` has reached the upstream and returns its head.
    pub async fn wait_for_path(&self, path: &str) -> Recorded {
        wait_until(DEADLINE, &format!("the upstream to receive {path}"), || {
            let found = self.requests_to(path).into_iter().next();
            async move { found }
        })
        .await
    }
}

async fn upstream_handle(
    rec: Arc<Mutex<Vec<Recorded>>>,
    req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let head = Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        version: req.version(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    rec.lock().expect("upstream record lock").push(head.clone());

    let path = head.path.clone();
    if path == "/cookies" {
        return Ok(Response::builder()
            .status(200)
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("content-type", "text/plain")
            .body(full("cookies"))
            .expect("valid response"));
    }
    if let Some(n) = path.strip_prefix("/download/") {
        let total: u64 = n.parse().unwrap_or(0);
        return Ok(Response::builder()
            .status(200)
            .header("content-type", "application/octet-stream")
            .header("content-length", total.to_string())
            .body(PatternBody { sent: 0, total }.boxed())
            .expect("valid response"));
    }
    if path == "/config" {
        let builder = Response::builder()
            .status(200)
            .header("content-type", "application/toml")
            .header("last-modified", CONFIG_LAST_MODIFIED)
            .header("content-length", CONFIG_BODY.len().to_string());
        let body = if head.method == "HEAD" {
            full("")
        } else {
            full(CONFIG_BODY)
        };
        return Ok(builder.body(body).expect("valid response"));
    }

    // Everything else: read the whole body, then (for /slow/{ms}) wait, then echo.
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let echo = serde_json::json!({
        "method": head.method,
        "path": head.path,
        "query": head.query,
        "headers": head.headers,
        "body_len": body.len(),
        "body_sha256": sha256_hex(&body),
    });
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(full(echo.to_string()))
        .expect("valid response"))
}

fn full(data: impl Into<Bytes>) -> UpBody {
    Full::new(data.into()).boxed()
}

/// A body that streams `total` bytes of `pattern` in 64 KiB frames, with an exact size.
struct PatternBody {
    sent: u64,
    total: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent >= this.total {
            return Poll::Ready(None);
        }
        let n = (this.total - this.sent).min(64 * 1024);
        let chunk: Vec<u8> = (this.sent..this.sent + n)
            .map(|i| (i % 251) as u8)
            .collect();
        this.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.sent)
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP client
// ---------------------------------------------------------------------------------------------

/// A response read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the raw body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}); status {}, body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The upstream's echo of the request, when the request reached it.
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected the upstream's echo, got {} {:?}",
            self.status,
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not an upstream echo ({e}): {:?}", self.text()))
    }

    /// The single value of header `name` as text; `None` when absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("header {name} is not visible ASCII"))
        })
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The `error` string of a `{"error": ...}` body.
    pub fn error(&self) -> String {
        let v = self.json();
        v.get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("expected {{\"error\": ...}}, got {v}"))
            .to_string()
    }
}

/// An HTTP client: HTTP/1.1 by default, or HTTP/2 with prior knowledge (h2c).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl HttpClient {
    pub fn http1() -> HttpClient {
        HttpClient {
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn http2() -> HttpClient {
        HttpClient {
            inner: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(body.into()))
            .expect("a valid test request");
        self.send_request(req).await
    }

    pub async fn send_request(&self, req: Request<Full<Bytes>>) -> Resp {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = self
            .inner
            .request(req)
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        read_response(resp)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"))
    }

    /// Like `send`, but returns the transport error instead of panicking.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let request = || {
            let mut builder = Request::builder().method(method.clone()).uri(url);
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder
                .body(Full::new(Bytes::new()))
                .expect("a valid test request")
        };
        let resp = match self.inner.request(request()).await {
            // What every HTTP/2 client does (RFC 9113 §6.8): a request refused by the server's
            // graceful GOAWAY was not processed, and goes again on a new connection.
            Err(e) if refused_by_graceful_goaway(&e) => self.inner.request(request()).await,
            sent => sent,
        }
        .map_err(|e| format!("{e:?}"))?;
        read_response(resp).await.map_err(|e| format!("{e:?}"))
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(Method::GET, url, headers, Bytes::new()).await
    }
}

/// Whether an HTTP/2 request failed only because the server had said, with a graceful GOAWAY,
/// that it takes no new streams: such a request was never processed.
fn refused_by_graceful_goaway(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        cause = e.source();
    }
    false
}

/// Reads a hyper response in full.
pub async fn read_response(resp: Response<Incoming>) -> Result<Resp, hyper::Error> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------
// The tollgate process
// ---------------------------------------------------------------------------------------------

/// One `[[listener]]` of a test config.
#[derive(Clone, Debug)]
pub struct ListenerSpec {
    pub name: String,
    pub upstream: String,
    /// Raw TOML appended after the listener's keys: more keys (`upstream_timeout = "1s"`), then
    /// `[[listener.route]]` tables.
    pub extra: String,
}

/// A test config: the fixture fills in the store, the admin token file and JSON logs.
#[derive(Clone, Debug, Default)]
pub struct Config {
    pub listeners: Vec<ListenerSpec>,
    /// Raw TOML for a `[server]` table's body, when not empty.
    pub server: String,
    /// Another process's store file, to share it; by default the process's own.
    pub store: Option<PathBuf>,
    /// Where each listener (by name) and the admin port bind; by default a free port.
    pub binds: HashMap<String, SocketAddr>,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    /// One listener named `api` in front of `upstream`.
    pub fn single(upstream: &Upstream) -> Config {
        Config::new().listener("api", &upstream.url())
    }

    pub fn listener(self, name: &str, upstream: &str) -> Config {
        self.listener_with(name, upstream, "")
    }

    pub fn listener_with(mut self, name: &str, upstream: &str, extra: &str) -> Config {
        self.listeners.push(ListenerSpec {
            name: name.to_string(),
            upstream: upstream.to_string(),
            extra: extra.to_string(),
        });
        self
    }

    pub fn server(mut self, body: &str) -> Config {
        self.server = body.to_string();
        self
    }

    /// Shares the store file of another process.
    pub fn store(mut self, path: PathBuf) -> Config {
        self.store = Some(path);
        self
    }

    /// Binds the listener `name` (or the admin port, as `"admin"`) to `addr`.
    pub fn bind(mut self, name: &str, addr: SocketAddr) -> Config {
        self.binds.insert(name.to_string(), addr);
        self
    }

    /// The bind address of `name`, as a TOML string.
    fn bind_of(&self, name: &str) -> String {
        self.binds
            .get(name)
            .map_or_else(|| "127.0.0.1:0".to_string(), SocketAddr::to_string)
    }

    /// The TOML text for a process whose files live in `dir`.
    pub fn render(&self, dir: &Path) -> String {
        let mut out = String::new();
        writeln!(
            out,
            "[store]\npath = {:?}\n",
            self.store
                .clone()
                .unwrap_or_else(|| dir.join("tollgate.redb"))
                .display()
                .to_string()
        )
        .unwrap();
        writeln!(
            out,
            "[admin]\nbind = {:?}\ntoken_file = {:?}\n",
            self.bind_of("admin"),
            dir.join("admin.token").display().to_string()
        )
        .unwrap();
        writeln!(
            out,
            "[log]\nformat = \"json\"\nlevel = \"info\"\naccess = true\n"
        )
        .unwrap();
        if !self.server.is_empty() {
            writeln!(out, "[server]\n{}\n", self.server).unwrap();
        }
        for l in &self.listeners {
            writeln!(
                out,
                "[[listener]]\nname = {:?}\nbind = {:?}\nupstream = {:?}\n{}\n",
                l.name,
                self.bind_of(&l.name),
                l.upstream,
                l.extra
            )
            .unwrap();
        }
        out
    }
}

/// What a process printed, shared with the threads that read its pipes.
type Lines = Arc<Mutex<Vec<String>>>;

/// The output of one CLI run.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout as JSON; panics with everything printed when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {self:#?}"))
    }

    /// Asserts success (exit 0).
    pub fn ok(self) -> CliOutput {
        assert_eq!(self.code(), Some(0), "expected exit 0: {self:#?}");
        self
    }
}

/// A created token: its record (as the API answered) and its secret.
#[derive(Clone, Debug)]
pub struct Created {
    pub id: String,
    pub name: String,
    pub secret: String,
    pub record: Value,
}

impl Created {
    /// The 64-hex part of the secret.
    pub fn hex_part(&self) -> &str {
        self.secret
            .strip_prefix(TOKEN_PREFIX)
            .expect("secrets start with the prefix")
    }

    pub fn bearer(&self) -> String {
        bearer(&self.secret)
    }
}

/// How a start ended when it did not reach `ready`.
#[derive(Debug)]
pub struct StartFailure {
    pub status: Option<ExitStatus>,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl StartFailure {
    /// Everything the process printed, stdout then stderr.
    pub fn output(&self) -> String {
        self.stdout
            .iter()
            .chain(self.stderr.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The real `tollgate serve`, in its own temporary directory.
pub struct Tollgate {
    dir: TempDir,
    config_path: PathBuf,
    admin_token: String,
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    stdout: Lines,
    stderr: Lines,
    /// The index in `stdout` where the current run's lines begin.
    run_start: usize,
    addrs: HashMap<String, SocketAddr>,
    admin_addr: Option<SocketAddr>,
    http: HttpClient,
    /// Variables added to the process's environment, on every run.
    env: Vec<(String, String)>,
}

impl Tollgate {
    /// Starts `tollgate serve` with `config` and a fresh admin token file, and waits for `ready`.
    pub fn start(config: Config) -> Tollgate {
        let admin_token = format!("adm-{}", hex(&random_bytes(24)));
        Tollgate::start_with(config, Some(admin_token))
    }

    /// Like `start`; `admin_token: None` leaves the token file absent, for tollgate to generate.
    pub fn start_with(config: Config, admin_token: Option<String>) -> Tollgate {
        let dir = tempfile::tempdir().expect("create a temp dir");
        let text = config.render(dir.path());
        match Tollgate::try_start_in(dir, &text, admin_token) {
            Ok(tg) => tg,
            Err(f) => panic!("tollgate did not become ready: {f:#?}\nconfig:\n{text}"),
        }
    }

    /// Writes `config_text` (and the admin token file, when given) into `dir`, starts the server and
    /// waits for `ready`; on exit or deadline, returns what it printed.
    pub fn try_start_in(
        dir: TempDir,
        config_text: &str,
        admin_token: Option<String>,
    ) -> Result<Tollgate, StartFailure> {
        Tollgate::try_start_in_with_env(dir, config_text, admin_token, &[])
    }

    /// Like `try_start_in`, with `env` added to the process's environment (on restarts too).
    pub fn try_start_in_with_env(
        dir: TempDir,
        config_text: &str,
        admin_token: Option<String>,
        env: &[(&str, &str)],
    ) -> Result<Tollgate, StartFailure> {
        let config_path = dir.path().join("tollgate.toml");
        std::fs::write(&config_path, config_text).expect("write the config");
        Tollgate::try_start_at(dir, config_path, admin_token, env)
    }

    /// Like `try_start_in_with_env`, with the config already at `config_path` (a file or a
    /// symlink, in `dir` or below it).
    pub fn try_start_at(
        dir: TempDir,
        config_path: PathBuf,
        admin_token: Option<String>,
        env: &[(&str, &str)],
    ) -> Result<Tollgate, StartFailure> {
        if let Some(token) = &admin_token {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dir.path().join("admin.token"))
                .expect("write the admin token file");
            std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())
                .expect("write the admin token");
        }
        let mut tg = Tollgate {
            dir,
            config_path,
            admin_token: admin_token.unwrap_or_default(),
            child: None,
            readers: Vec::new(),
            stdout: Arc::new(Mutex::new(Vec::new())),
            stderr: Arc::new(Mutex::new(Vec::new())),
            run_start: 0,
            addrs: HashMap::new(),
            admin_addr: None,
            http: HttpClient::http1(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        tg.spawn_and_wait()?;
        if tg.admin_token.is_empty() {
            // tollgate generated the token file: read it as an operator would.
            let text = std::fs::read_to_string(tg.admin_token_path())
                .expect("tollgate creates the admin token file when it is missing");
            tg.admin_token = text.trim().to_string();
        }
        Ok(tg)
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "tollgate is already running");
        self.run_start = self.stdout.lock().unwrap().len();
        self.addrs.clear();
        self.admin_addr = None;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env_remove("TOLLGATE_CONFIG")
            .env_remove("TOLLGATE_ADMIN_URL")
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env_remove("RUST_LOG")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the tollgate binary");
        self.readers.push(pump(
            child.stdout.take().expect("stdout is piped"),
            self.stdout.clone(),
        ));
        self.readers.push(pump(
            child.stderr.take().expect("stderr is piped"),
            self.stderr.clone(),
        ));
        self.child = Some(child);

        let end = Instant::now() + DEADLINE;
        loop {
            if self.scan_startup() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .expect("child is set above")
                .try_wait()
                .expect("query the child");
            if let Some(status) = exited {
                self.child = None;
                self.join_readers();
                return Err(StartFailure {
                    status: Some(status),
                    stdout: self.current_run_stdout(),
                    stderr: self.stderr(),
                });
            }
            if Instant::now() >= end {
                self.kill();
                return Err(StartFailure {
                    status: None,
                    stdout: self.current_run_stdout(),
                    stderr: self.stderr(),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reads this run's startup lines; true once `ready` has been printed.
    fn scan_startup(&mut self) -> bool {
        let lines = self.current_run_stdout();
        let mut ready = false;
        for line in &lines {
            let Some(v) = log_json(line) else { continue };
            match field(&v, "message").and_then(Value::as_str) {
                Some("listening") => {
                    let name = field(&v, "listener").and_then(Value::as_str);
                    let addr = field(&v, "addr")
                        .and_then(Value::as_str)
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                    if let (Some(name), Some(addr)) = (name, addr) {
                        if name == "admin" {
                            self.admin_addr = Some(addr);
                        } else {
                            self.addrs.insert(name.to_string(), addr);
                        }
                    }
                }
                Some("ready") => ready = true,
                _ => {}
            }
        }
        ready
    }

    fn current_run_stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap()[self.run_start..].to_vec()
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.dir.path().join("admin.token")
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("tollgate.redb")
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("tollgate is running").id()
    }

    pub fn proxy_addr(&self, name: &str) -> SocketAddr {
        *self.addrs.get(name).unwrap_or_else(|| {
            panic!(
                "no `listening` line for listener {name:?}; logs:\n{}",
                self.logs().join("\n")
            )
        })
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr.unwrap_or_else(|| {
            panic!(
                "no `listening` line for the admin port; logs:\n{}",
                self.logs().join("\n")
            )
        })
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr())
    }

    pub fn proxy_url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{path}", self.proxy_addr(listener))
    }

    /// Every stdout line of every run so far.
    pub fn logs(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Every stderr line of every run so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// The stdout lines that parse as JSON objects.
    pub fn log_records(&self) -> Vec<Value> {
        self.logs().iter().filter_map(|l| log_json(l)).collect()
    }

    /// Asserts that no log line (stdout or stderr, every run) contains any of `secrets`.
    pub fn assert_logs_free_of(&self, secrets: &[&str]) {
        for line in self.logs().iter().chain(self.stderr().iter()) {
            for s in secrets {
                assert!(
                    !line.contains(s),
                    "a log line contains a secret ({s:?}): {line}"
                );
            }
        }
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("tollgate is running");
        let mut status = None;
        wait_for(DEADLINE + DEADLINE, "tollgate to exit", || {
            status = child.try_wait().expect("query the child");
            status.is_some()
        });
        self.child = None;
        self.join_readers();
        status.expect("set when the wait ends")
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// SIGKILL, then wait for the exit.
    pub fn kill9(&mut self) {
        self.kill();
    }

    /// Starts again on the same directory and config (stopping first if running).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "tollgate exited with {status} on SIGTERM");
        }
        if let Err(f) = self.spawn_and_wait() {
            panic!("tollgate did not become ready again: {f:#?}");
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("query the child").is_none(),
            None => false,
        }
    }

    // ---- the admin API ----

    /// A request to the admin port with the admin token.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let auth = format!("Bearer {}", self.admin_token);
        self.admin_as(method, path, Some(&auth), body).await
    }

    /// A request to the admin port with the given `Authorization` value (or none).
    pub async fn admin_as(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut headers = Vec::new();
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        let body = match body {
            Some(v) => {
                headers.push(("content-type", "application/json"));
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let url = format!("{}{path}", self.admin_url());
        self.http.send(method, &url, &headers, body).await
    }

    /// A request to the admin port with a raw body (for malformed JSON).
    pub async fn admin_raw(&self, method: Method, path: &str, body: &str) -> Resp {
        let auth = format!("Bearer {}", self.admin_token);
        let url = format!("{}{path}", self.admin_url());
        self.http
            .send(
                method,
                &url,
                &[
                    ("authorization", auth.as_str()),
                    ("content-type", "application/json"),
                ],
                Bytes::from(body.to_string()),
            )
            .await
    }

    /// `POST /api/v1/tokens` with `body`; asserts 201 and the record's shape.
    pub async fn create_token_with(&self, body: Value) -> Created {
        let resp = self.admin(Method::POST, "/api/v1/tokens", Some(body)).await;
        assert_eq!(
            resp.status,
            StatusCode::CREATED,
            "create token: {}",
            resp.text()
        );
        let record = resp.json();
        let secret = record["token"]
            .as_str()
            .unwrap_or_else(|| panic!("create answer has no \"token\": {record}"))
            .to_string();
        let id = record["id"]
            .as_str()
            .unwrap_or_else(|| panic!("create answer has no \"id\": {record}"))
            .to_string();
        let name = record["name"].as_str().unwrap_or_default().to_string();
        Created {
            id,
            name,
            secret,
            record,
        }
    }

    /// Creates a token named `name` with the default preset.
    pub async fn create_token(&self, name: &str) -> Created {
        self.create_token_with(serde_json::json!({ "name": name }))
            .await
    }

    pub async fn show(&self, id: &str) -> Resp {
        self.admin(Method::GET, &format!("/api/v1/tokens/{id}"), None)
            .await
    }

    /// `GET /api/v1/tokens/{id}`, asserting 200.
    pub async fn record(&self, id: &str) -> Value {
        let resp = self.show(id).await;
        assert_eq!(resp.status, StatusCode::OK, "show {id}: {}", resp.text());
        resp.json()
    }

    /// `POST /api/v1/tokens/{id}/revoke`.
    pub async fn revoke(&self, id: &str, reason: Option<&str>) -> Resp {
        let body = match reason {
            Some(r) => serde_json::json!({ "reason": r }),
            None => serde_json::json!({}),
        };
        self.admin(
            Method::POST,
            &format!("/api/v1/tokens/{id}/revoke"),
            Some(body),
        )
        .await
    }

    /// `DELETE /api/v1/tokens/{id}`.
    pub async fn delete(&self, id: &str) -> Resp {
        self.admin(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
            .await
    }

    /// `GET /api/v1/tokens{query}` (query includes the `?`), asserting 200.
    pub async fn list(&self, query: &str) -> Value {
        let resp = self
            .admin(Method::GET, &format!("/api/v1/tokens{query}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::OK, "list{query}: {}", resp.text());
        resp.json()
    }

    /// The ids of `GET /api/v1/tokens{query}`, in answer order.
    pub async fn list_ids(&self, query: &str) -> Vec<String> {
        ids_of(&self.list(query).await["tokens"])
    }

    /// `GET /api/v1/audit{query}`, asserting 200; the events.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let resp = self
            .admin(Method::GET, &format!("/api/v1/audit{query}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::OK, "audit{query}: {}", resp.text());
        resp.json()["events"]
            .as_array()
            .unwrap_or_else(|| panic!("audit answer has no \"events\" array: {}", resp.text()))
            .clone()
    }

    // ---- the proxy ----

    /// A request through listener `listener` with the given `Authorization` value (or none).
    pub async fn proxy(&self, listener: &str, path: &str, authorization: Option<&str>) -> Resp {
        let mut headers = Vec::new();
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        self.http
            .get(&self.proxy_url(listener, path), &headers)
            .await
    }

    /// A request through listener `listener` with arbitrary headers and body.
    pub async fn proxy_send(
        &self,
        listener: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        self.http
            .send(method, &self.proxy_url(listener, path), headers, body)
            .await
    }

    // ---- the command line ----

    /// Runs `tollgate ARGS... --admin-url http://ADMIN` with `$TOLLGATE_ADMIN_TOKEN` set, no terminal.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let url = self.admin_url();
        let mut all: Vec<&str> = args.to_vec();
        all.push("--admin-url");
        all.push(&url);
        self.cli_raw(&all, &[("TOLLGATE_ADMIN_TOKEN", &self.admin_token)])
    }

    /// Runs `tollgate ARGS...` exactly as given, with `env` added, stdin null, in the test directory.
    pub fn cli_raw(&self, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
        run_binary(self.dir.path(), args, env)
    }
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the built binary with `args` in `dir`, stdin null, the tollgate environment cleared, then
/// `env` added.
pub fn run_binary(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> CliOutput {
    let out = binary_command(dir, args, env)
        .stdin(Stdio::null())
        .output()
        .expect("run the tollgate binary");
    CliOutput::from(out)
}

/// The built binary with `args` in `dir`, the tollgate environment cleared, then `env` added.
fn binary_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_ADMIN_URL")
        .env_remove("TOLLGATE_ADMIN_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl From<std::process::Output> for CliOutput {
    fn from(out: std::process::Output) -> Self {
        CliOutput {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Reads `from` line by line into `into` until EOF.
fn pump(from: impl Read + Send + 'static, into: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf)
                        .trim_end_matches(['\n', '\r'])
                        .to_string();
                    into.lock().unwrap().push(line);
                }
            }
        }
    })
}

/// A log line as JSON, when it is a JSON object.
pub fn log_json(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// A log field: at the top level as the contract says.
pub fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name)
}

/// The `id`s of an array of records, in order.
pub fn ids_of(records: &Value) -> Vec<String> {
    records
        .as_array()
        .unwrap_or_else(|| panic!("expected an array of records, got {records}"))
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .unwrap_or_else(|| panic!("record without an id: {r}"))
                .to_string()
        })
        .collect()
}

/// The strings of a JSON array, in order.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected strings, got {s}"))
                .to_string()
        })
        .collect()
}

/// The strings of a JSON array, sorted (for set comparisons).
pub fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out = strings(v);
    out.sort();
    out
}

/// `items` as owned strings, sorted.
pub fn sorted(items: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

/// Asserts the exact 401 of the proxy: body `{"error": message}` and a `WWW-Authenticate` of the
/// bearer realm; `token_given` adds `error="invalid_token"`.
pub fn assert_unauthorized(resp: &Resp, message: &str, token_given: Option<bool>) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "expected 401 {message:?}, got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_eq!(
        resp.json(),
        serde_json::json!({ "error": message }),
        "exact 401 body"
    );
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("a 401 without WWW-Authenticate: {resp:?}"));
    assert!(
        challenge.starts_with("Bearer realm=\"tollgate\""),
        "WWW-Authenticate should be the bearer realm, got {challenge:?}"
    );
    match token_given {
        Some(true) => assert!(
            challenge.contains("error=\"invalid_token\""),
            "a token was given: WWW-Authenticate should say error=\"invalid_token\", got {challenge:?}"
        ),
        Some(false) => assert_eq!(
            challenge, "Bearer realm=\"tollgate\"",
            "no token was given: the challenge carries no error"
        ),
        None => {}
    }
}

/// Makes a file's mode visible to tests.
pub fn file_mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("stat the file")
        .permissions()
        .mode()
        & 0o777
}

// ---------------------------------------------------------------------------------------------
// Environment and standard input
// ---------------------------------------------------------------------------------------------

impl Tollgate {
    /// Like `start`, with `env` added to the server's environment (for credentials that a config
    /// names by variable).
    pub fn start_with_env(config: Config, env: &[(&str, &str)]) -> Tollgate {
        let admin_token = format!("adm-{}", hex(&random_bytes(24)));
        let dir = tempfile::tempdir().expect("create a temp dir");
        let text = config.render(dir.path());
        match Tollgate::try_start_in_with_env(dir, &text, Some(admin_token), env) {
            Ok(tg) => tg,
            Err(f) => panic!("tollgate did not become ready: {f:#?}\nconfig:\n{text}"),
        }
    }

    /// Like `cli`, with `stdin` written to the command's standard input.
    pub fn cli_with_stdin(&self, args: &[&str], stdin: &[u8]) -> CliOutput {
        let url = self.admin_url();
        let mut all: Vec<&str> = args.to_vec();
        all.push("--admin-url");
        all.push(&url);
        run_binary_with_stdin(
            self.dir.path(),
            &all,
            &[("TOLLGATE_ADMIN_TOKEN", &self.admin_token)],
            stdin,
        )
    }
}

/// Like `run_binary`, with `stdin` written to the command's standard input (then closed).
pub fn run_binary_with_stdin(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &[u8],
) -> CliOutput {
    let mut child = binary_command(dir, args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the tollgate binary");
    let mut input = child.stdin.take().expect("stdin is piped");
    let data = stdin.to_vec();
    // A writer thread: a child that answers before reading all of its input must not block us.
    let writer = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut input, &data);
    });
    let out = child
        .wait_with_output()
        .expect("wait for the tollgate binary");
    let _ = writer.join();
    CliOutput::from(out)
}
