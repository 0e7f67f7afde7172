//! The upstream side of the data path, against an upstream that answers from a script, byte for
//! byte: connection reuse, every body framing, interim answers, answers that are malformed or
//! cut short, connections the upstream drops, and the idle timeout.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use support::controller::raw_exchange;
use support::tls::{TestCa, plain_acceptor};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the scripted upstream saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    closed: AtomicUsize,
    /// In arrival order.
    requests: Mutex<Vec<Answered>>,
}

/// A request the upstream answered.
#[derive(Clone, Debug)]
struct Answered {
    /// Which connection it came on, counted from 0.
    connection: usize,
    method: String,
    path: String,
    body: Vec<u8>,
}

impl Seen {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<Answered> {
        self.requests.lock().unwrap().clone()
    }
}

/// The answer to each path, exactly as it goes on the wire.
fn script(path: &str) -> &'static [u8] {
    match path {
        "/chunked" => {
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trailer: t\r\n\r\n"
        }
        "/until-close" => b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nread to the end",
        "/continue" => {
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nfinal ok"
        }
        "/garbage" => b"SPEAKING SOMETHING ELSE\r\n\r\n",
        "/truncated" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b",
        "/both" => {
            b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n\
              3\r\nabc\r\n0\r\n\r\n"
        }
        "/hop" => {
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTrailer: x-t\r\n\
              Upgrade: h2c\r\nTE: trailers\r\nProxy-Authenticate: Basic\r\nSet-Cookie: a=1\r\n\
              Set-Cookie: b=2\r\nX-Custom: Kept As Sent\r\n\
              Date: Thu, 03 Dec 2026 12:00:00 GMT\r\ncontent-length: 2\r\n\r\nok"
        }
        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    }
}

/// Paths after whose answer the upstream closes the connection.
const CLOSE_AFTER: [&str; 2] = ["/until-close", "/truncated"];
/// After answering this path, the upstream takes the connection's next request and closes it
/// unanswered, as a server whose keep-alive timer fired just as the request came.
const DROP_NEXT: &str = "/arm-drop";

fn scripted_upstream() -> (ServerThread, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    let server = ServerThread::start("scripted-upstream", move |stream| {
        serve_script(stream, shared.clone())
    });
    (server, seen)
}

async fn serve_script(mut stream: TcpStream, seen: Arc<Seen>) {
    let connection = seen.connections.fetch_add(1, Ordering::SeqCst);
    let mut buf = Vec::new();
    let mut drop_next = false;
    while let Some((method, path, body)) = read_request(&mut stream, &mut buf).await {
        if drop_next {
            break;
        }
        seen.requests.lock().unwrap().push(Answered {
            connection,
            method,
            path: path.clone(),
            body,
        });
        if stream.write_all(script(&path)).await.is_err() || CLOSE_AFTER.contains(&path.as_str()) {
            break;
        }
        drop_next = path == DROP_NEXT;
    }
    seen.closed.fetch_add(1, Ordering::SeqCst);
}

/// A request head as the scripted upstreams need it.
struct RequestHead {
    method: String,
    path: String,
    content_length: Option<usize>,
    chunked: bool,
}

/// The next request head off the connection, its bytes taken out of `buf`; `None` once the
/// connection is closed.
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<RequestHead> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut words = head.split_whitespace();
    let method = words.next()?.to_string();
    let path = words.next()?.to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
    };
    Some(RequestHead {
        method,
        path,
        content_length: header("content-length").and_then(|v| v.parse().ok()),
        chunked: header("transfer-encoding").as_deref() == Some("chunked"),
    })
}

/// One request (method, path, body) off the connection; `None` once it is closed. Bodies come
/// with a `Content-Length` or chunked.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, String, Vec<u8>)> {
    let head = read_head(stream, buf).await?;
    let mut body = Vec::new();
    if let Some(length) = head.content_length {
        while buf.len() < length {
            fill(stream, buf).await?;
        }
        body = buf.drain(..length).collect();
    } else if head.chunked {
        loop {
            let line_end = loop {
                if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                    break at;
                }
                fill(stream, buf).await?;
            };
            let size =
                usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).ok()?, 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                fill(stream, buf).await?;
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                break;
            }
        }
    }
    Some((head.method, head.path, body))
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}

/// A tollgate with one listener `api` in front of `upstream`, and a token for it.
async fn tollgate_before(upstream: &ServerThread, extra: &str) -> (Tollgate, String) {
    let url = format!("http://{}", upstream.addr());
    // One worker: these tests count the connections of the upstream pool, which keeps a shelf
    // per worker; with two, a request accepted by the other worker would open one of its own.
    let tg = Tollgate::start(
        Config::new()
            .server("workers = 1")
            .listener_with("api", &url, extra),
    );
    let token = tg.create_token("agent-1").await.bearer();
    (tg, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pooled_connection_carries_consecutive_requests() {
    let (upstream, seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;
    for _ in 0..5 {
        let resp = tg.proxy("api", "/ok", Some(&token)).await;
        assert_eq!((resp.status, resp.text().as_str()), (StatusCode::OK, "ok"));
    }
    let resp = tg
        .proxy_send(
            "api",
            Method::POST,
            "/ok",
            &[("authorization", &token)],
            "posted",
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        seen.connections(),
        1,
        "every request went over one connection"
    );
    let requests = seen.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(
        (requests[5].method.as_str(), requests[5].body.as_slice()),
        ("POST", b"posted".as_slice())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_server_sides_give_the_client_the_same_fields_of_an_answer() {
    let (upstream, _seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;
    // Framed by a length, the request is served by tollgate's own side; chunked, by hyper's,
    // through the general path.
    let head =
        format!("POST /hop HTTP/1.1\r\nHost: c\r\nAuthorization: {token}\r\nConnection: close\r\n");
    let by_length = format!("{head}Content-Length: 1\r\n\r\nx");
    let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n");
    let mut received = Vec::new();
    for request in [by_length, chunked] {
        // `Connection: close`: the answer ends with the connection.
        let (status, answer) = raw_exchange(tg.proxy_addr("api"), request.as_bytes()).await;
        assert_eq!(status, 200, "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "ok");
        let mut fields: Vec<String> = head
            .lines()
            .skip(1)
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                format!("{}: {}", name.to_ascii_lowercase(), value.trim())
            })
            .collect();
        fields.sort();
        received.push(fields);
    }
    assert_eq!(received[0], received[1], "the two sides differ");
    assert_eq!(
        received[0],
        [
            "connection: close",
            "content-length: 2",
            "date: Thu, 03 Dec 2026 12:00:00 GMT",
            "set-cookie: a=1",
            "set-cookie: b=2",
            "x-custom: Kept As Sent",
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_and_close_delimited_answers_reach_the_client_whole() {
    let (upstream, seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;

    let chunked = tg.proxy("api", "/chunked", Some(&token)).await;
    assert_eq!(
        (chunked.status, chunked.text().as_str()),
        (StatusCode::OK, "hello world")
    );
    assert_eq!(chunked.header("transfer-encoding"), Some("chunked"));

    let until_close = tg.proxy("api", "/until-close", Some(&token)).await;
    assert_eq!(until_close.text(), "read to the end");
    assert_eq!(until_close.header("content-type"), Some("text/plain"));

    // The chunked answer left its connection reusable; the one read to its close did not.
    let after = tg.proxy("api", "/ok", Some(&token)).await;
    assert_eq!(after.text(), "ok");
    let connections: Vec<usize> = seen.requests().iter().map(|r| r.connection).collect();
    assert_eq!(connections, vec![0, 0, 1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_with_two_framings_is_read_as_chunked_and_its_connection_dropped() {
    let (upstream, seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;
    let both = tg.proxy("api", "/both", Some(&token)).await;
    assert_eq!((both.status, both.text().as_str()), (StatusCode::OK, "abc"));
    assert_eq!(tg.proxy("api", "/ok", Some(&token)).await.text(), "ok");
    assert_eq!(seen.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn interim_answers_are_skipped() {
    let (upstream, _seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;
    let resp = tg.proxy("api", "/continue", Some(&token)).await;
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (StatusCode::OK, "final ok")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_answer_is_a_bad_gateway_and_a_cut_one_fails_the_client() {
    let (upstream, _seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;

    let garbage = tg.proxy("api", "/garbage", Some(&token)).await;
    assert_eq!(garbage.status, StatusCode::BAD_GATEWAY);
    assert_eq!(garbage.json()["error"], "Upstream unavailable");

    // The head was good and has gone to the client; the cut body must not pass for a whole one.
    let url = tg.proxy_url("api", "/truncated");
    let cut = HttpClient::http1()
        .try_send(Method::GET, &url, &[("authorization", &token)])
        .await;
    assert!(
        cut.is_err(),
        "a body cut short reached the client as complete: {cut:?}"
    );

    assert_eq!(tg.proxy("api", "/ok", Some(&token)).await.text(), "ok");
    let logs = tg.logs().join("\n");
    assert!(logs.contains("malformed response head"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_pooled_connection_is_replaced_only_for_a_request_without_a_body() {
    let (upstream, seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "").await;
    let auth = [("authorization", token.as_str())];

    assert_eq!(tg.proxy("api", DROP_NEXT, Some(&token)).await.text(), "ok");
    // Sent on the pooled connection, which the upstream closes unanswered: sent again on a new
    // one, so the client never sees the drop.
    let resp = tg.proxy("api", "/ok", Some(&token)).await;
    assert_eq!((resp.status, resp.text().as_str()), (StatusCode::OK, "ok"));
    assert_eq!(seen.connections(), 2);

    // A body is never sent twice: the upstream may have acted on it.
    assert_eq!(tg.proxy("api", DROP_NEXT, Some(&token)).await.text(), "ok");
    let resp = tg
        .proxy_send("api", Method::POST, "/once", &auth, "not twice")
        .await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    // Nor is a POST without one: it is not idempotent.
    assert_eq!(tg.proxy("api", DROP_NEXT, Some(&token)).await.text(), "ok");
    let resp = tg.proxy_send("api", Method::POST, "/once", &auth, "").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert!(
        seen.requests().iter().all(|r| r.path != "/once"),
        "the upstream answered no /once, so recorded none"
    );
    // Connections: the first, the replacement for the GET, and one for the second `DROP_NEXT`
    // after the first POST's was dropped; none for sending a POST again.
    assert_eq!(seen.connections(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_upstream_connections_close_after_the_idle_timeout() {
    let (upstream, seen) = scripted_upstream();
    let (tg, token) = tollgate_before(&upstream, "upstream_idle_timeout = \"300ms\"").await;
    assert_eq!(tg.proxy("api", "/ok", Some(&token)).await.text(), "ok");
    wait_until(
        DEADLINE,
        "the idle upstream connection to be closed",
        || async { (seen.closed.load(Ordering::SeqCst) == 1).then_some(()) },
    )
    .await;
    // The next request opens a new one.
    assert_eq!(tg.proxy("api", "/ok", Some(&token)).await.text(), "ok");
    assert_eq!(seen.connections(), 2);
}

/// An upstream that answers as soon as it has a request's head, then reads the body, then ends
/// its answer with how many body bytes it read: as a streaming ingest endpoint does.
async fn answer_then_read(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let Some(head) = read_head(&mut stream, &mut buf).await else {
        return;
    };
    let length = head.content_length.unwrap_or(0);
    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
    if stream.write_all(answer).await.is_err() {
        return;
    }
    let mut received = buf.len();
    let mut chunk = vec![0u8; 64 * 1024];
    while received < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => received += n,
        }
    }
    let text = format!("read {received}");
    let end = format!("{:x}\r\n{text}\r\n0\r\n\r\n", text.len());
    let _ = stream.write_all(end.as_bytes()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_goes_on_after_an_early_answer() {
    let upstream = ServerThread::start("answer-then-read", answer_then_read);
    let (tg, token) = tollgate_before(&upstream, "").await;
    // Large enough that the answer's head comes while tollgate is still sending.
    let body = pattern(8 * 1024 * 1024);
    let auth = [("authorization", token.as_str())];
    let sent = tg.proxy_send("api", Method::POST, "/ingest", &auth, body);
    let resp = tokio::time::timeout(DEADLINE, sent)
        .await
        .expect("the upload stalled: the rest of the body never reached the upstream");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), format!("read {}", 8 * 1024 * 1024));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_upstream_closing_idle_connections_costs_no_request() {
    // An HTTPS upstream that answers one request per connection, then closes it as TLS asks
    // (close_notify, then FIN), as servers with a short keep-alive do.
    let ca = TestCa::new("upstream-ca");
    let acceptor = plain_acceptor(&ca.localhost("upstream"));
    let upstream = ServerThread::start("closing-tls-upstream", move |stream| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut stream) = acceptor.accept(stream).await else {
                return;
            };
            let mut buf = Vec::new();
            if read_request(&mut stream, &mut buf).await.is_some() {
                let _ = stream.write_all(script("/ok")).await;
                let _ = stream.shutdown().await;
            }
        }
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let url = format!("https://localhost:{}", upstream.addr().port());
    // One worker, so that the second request finds the connection the first one left.
    let tg = Tollgate::start(Config::new().server("workers = 1").listener_with(
        "api",
        &url,
        &format!("upstream_ca = {:?}\n", ca_file.display().to_string()),
    ));
    let token = tg.create_token("agent-1").await.bearer();
    let auth = [("authorization", token.as_str())];

    assert_eq!(tg.proxy("api", "/first", Some(&token)).await.text(), "ok");
    // The close has reached tollgate: the pooled connection must not be taken for open, or the
    // POST below, which is never sent twice, would fail.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let resp = tg
        .proxy_send("api", Method::POST, "/second", &auth, "once")
        .await;
    assert_eq!((resp.status, resp.text().as_str()), (StatusCode::OK, "ok"));
}
