//! A stand-in for Telegraf Controller: one real HTTP/1.1 server on two loopback ports, the "ui"
//! port (web UI and `/api/*`) and the "heartbeat" port, recording every request in full and
//! answering the few routes that agents, browsers and probes use, deterministically.
//!
//! | port | request | answer |
//! |---|---|---|
//! | ui | `GET`/`HEAD /api/configs/{id}/toml` | 200 `application/toml`, `Last-Modified`, [`config_body`] |
//! | ui | `POST /api/auth/login` | 200 JSON with a session `Set-Cookie` |
//! | ui | anything else under `/api/` | 200 JSON echo (the shape of [`super::Echo`]) |
//! | ui | `/health/live`, `/health/ready`, `/health/leader` | 200 JSON |
//! | ui | `GET`/`HEAD /`, `/assets/app.js` | the web UI's page and script |
//! | heartbeat | `POST /agents/heartbeat` | 200 JSON |
//! | heartbeat | `/health` | 200 JSON |
//! | either | anything else | 404 JSON |
//!
//! Every answer carries `X-Controller-Port: ui` or `heartbeat`, so a test can tell a forwarded
//! answer from one that tollgate made itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{DEADLINE, UpBody, full, header_values, sha256_hex, wait_until};

/// The `Last-Modified` of every config the stand-in serves.
pub const CONTROLLER_LAST_MODIFIED: &str = "Tue, 24 Nov 2026 09:15:00 GMT";

/// The session cookie that `POST /api/auth/login` sets.
pub const SESSION_SET_COOKIE: &str = "tc_session=s3ss10n-0001; Path=/; HttpOnly; SameSite=Lax";

/// The web UI's page, as `GET /` answers it.
pub const UI_PAGE: &str =
    "<!doctype html><title>Telegraf Controller</title><script src=\"/assets/app.js\"></script>\n";

/// The web UI's script, as `GET /assets/app.js` answers it.
pub const UI_SCRIPT: &str = "console.log(\"telegraf controller\");\n";

/// The TOML the stand-in serves for config `id`.
pub fn config_body(id: &str) -> String {
    format!("# config {id}\n[agent]\n  interval = \"10s\"\n\n[[outputs.discard]]\n")
}

/// Which of the Controller's two ports a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    Ui,
    Heartbeat,
}

impl Port {
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Ui => "ui",
            Port::Heartbeat => "heartbeat",
        }
    }
}

/// A request as the Controller received it, body included.
#[derive(Clone, Debug)]
pub struct Received {
    pub port: Port,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header in arrival order, names lowercase; repeated headers kept.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Received {
    /// Every value of the header `name`, in order.
    pub fn header(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }

    /// Whether the header `name` arrived at all.
    pub fn has(&self, name: &str) -> bool {
        !self.header(name).is_empty()
    }
}

/// The stand-in, on its own thread and runtime so that it serves whatever the test is doing.
pub struct Controller {
    ui: SocketAddr,
    heartbeat: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Controller {
    pub fn start() -> Controller {
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a Controller port");
            l.set_nonblocking(true)
                .expect("a tokio listener needs a non-blocking socket");
            l
        };
        let (ui, heartbeat) = (bind(), bind());
        let ui_addr = ui.local_addr().expect("bound socket has an address");
        let heartbeat_addr = heartbeat.local_addr().expect("bound socket has an address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rec = received.clone();
        let thread = std::thread::Builder::new()
            .name("controller".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("build the Controller runtime");
                rt.block_on(async move {
                    let ui = tokio::spawn(serve(ui, Port::Ui, rec.clone()));
                    let heartbeat = tokio::spawn(serve(heartbeat, Port::Heartbeat, rec));
                    let _ = stop_rx.await;
                    ui.abort();
                    heartbeat.abort();
                });
            })
            .expect("spawn the Controller thread");
        Controller {
            ui: ui_addr,
            heartbeat: heartbeat_addr,
            received,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` of the ui port, for a listener's `upstream`.
    pub fn ui_url(&self) -> String {
        format!("http://{}", self.ui)
    }

    /// `http://127.0.0.1:PORT` of the heartbeat port, for a listener's `upstream`.
    pub fn heartbeat_url(&self) -> String {
        format!("http://{}", self.heartbeat)
    }

    /// Every request received so far on either port, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .expect("controller record lock")
            .clone()
    }

    /// How many requests have arrived on either port.
    pub fn count(&self) -> usize {
        self.received.lock().expect("controller record lock").len()
    }

    /// The requests received on `port`, in arrival order.
    pub fn received_on(&self, port: Port) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.port == port)
            .collect()
    }

    /// The last request received, on either port.
    pub fn last(&self) -> Option<Received> {
        self.received().pop()
    }

    /// Waits until a request for `path` has arrived on `port`, and returns the first such.
    pub async fn wait_for(&self, port: Port, path: &str) -> Received {
        wait_until(
            DEADLINE,
            &format!("the Controller's {} port to receive {path}", port.as_str()),
            || {
                let found = self.received_on(port).into_iter().find(|r| r.path == path);
                async move { found }
            },
        )
        .await
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: std::net::TcpListener, port: Port, rec: Arc<Mutex<Vec<Received>>>) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("register the Controller listener");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let rec = rec.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(port, rec.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    port: Port,
    rec: Arc<Mutex<Vec<Received>>>,
    req: Request<Incoming>,
) -> Result<Response<UpBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let got = Received {
        port,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    rec.lock()
        .expect("controller record lock")
        .push(got.clone());
    Ok(answer(&got))
}

/// The Controller's answer to `req`; a `HEAD` gets the `GET` answer's head with no body.
fn answer(req: &Received) -> Response<UpBody> {
    let head = req.method == "HEAD";
    let get = req.method == "GET" || head;
    let path = req.path.as_str();
    let segments: Vec<&str> = path.split('/').collect();
    let ok_json = |body: String| ("200", "application/json", body, None);

    let (status, content_type, body, extra): (&str, &str, String, Option<(&str, &str)>) =
        match req.port {
            Port::Ui => match segments.as_slice() {
                ["", "api", "configs", id, "toml"] if get && !id.is_empty() => (
                    "200",
                    "application/toml",
                    config_body(id),
                    Some(("last-modified", CONTROLLER_LAST_MODIFIED)),
                ),
                ["", "api", "auth", "login"] if req.method == "POST" => (
                    "200",
                    "application/json",
                    r#"{"ok":true}"#.to_string(),
                    Some(("set-cookie", SESSION_SET_COOKIE)),
                ),
                ["", "api", ..] => ok_json(echo(req)),
                ["", "health", "live" | "ready" | "leader"] => {
                    ok_json(r#"{"status":"ok"}"#.to_string())
                }
                ["", ""] if get => ("200", "text/html; charset=utf-8", UI_PAGE.to_string(), None),
                ["", "assets", "app.js"] if get => {
                    ("200", "application/javascript", UI_SCRIPT.to_string(), None)
                }
                _ => not_found(),
            },
            Port::Heartbeat => match segments.as_slice() {
                ["", "agents", "heartbeat"] if req.method == "POST" => {
                    ok_json(r#"{"status":"accepted"}"#.to_string())
                }
                ["", "health"] => ok_json(r#"{"status":"ok"}"#.to_string()),
                _ => not_found(),
            },
        };

    let mut builder = Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len().to_string())
        .header("x-controller-port", req.port.as_str());
    if let Some((name, value)) = extra {
        builder = builder.header(name, value);
    }
    let body = if head { full("") } else { full(body) };
    builder.body(body).expect("valid response")
}

fn not_found() -> (
    &'static str,
    &'static str,
    String,
    Option<(&'static str, &'static str)>,
) {
    (
        "404",
        "application/json",
        r#"{"error":"Not Found"}"#.to_string(),
        None,
    )
}

/// What the Controller received, in the shape of the generic upstream's echo.
fn echo(req: &Received) -> String {
    serde_json::json!({
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": req.headers,
        "body_len": req.body.len(),
        "body_sha256": sha256_hex(&req.body),
    })
    .to_string()
}

/// Sends `request` (raw bytes, exactly as given) to `addr` over a fresh connection and reads the
/// answer until the server closes; returns the status code (0 when the answer has no status line)
/// and the whole answer as text. For request targets that no HTTP client library would send.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect for a raw request");
    stream
        .write_all(request)
        .await
        .expect("write a raw request");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server neither answered nor closed the connection within {DEADLINE:?}"
    );
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}
