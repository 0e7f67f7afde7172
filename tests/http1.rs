//! HTTP/1.1 on the wire, byte for byte: pipelined requests, a connection moving from tollgate's
//! own server side to the general one mid-way, framing that must never be split two ways, and
//! the connection's close.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::controller::raw_exchange;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upstream, a tollgate with one listener `api` in front of it, and one active token.
async fn setup() -> (Upstream, Tollgate, Created) {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent-1").await;
    (up, tg, tok)
}

/// One response as read off a connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Lowercase names, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn echo(&self) -> Value {
        serde_json::from_slice(&self.body).expect("an echo answer")
    }
}

/// A client connection that reads answers one at a time, strictly: a `Content-Length` body or a
/// chunked one, nothing in between.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    async fn connect(tg: &Tollgate) -> Wire {
        let stream = TcpStream::connect(tg.proxy_addr("api")).await.unwrap();
        Wire {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8(self.buf[..at].to_vec()).unwrap();
                self.buf.drain(..at + 2);
                return line;
            }
            assert!(self.fill().await > 0, "the connection closed mid-answer");
        }
    }

    async fn exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await > 0, "the connection closed mid-body");
        }
        self.buf.drain(..n).collect()
    }

    /// The next answer, to a request whose method was not HEAD.
    async fn answer(&mut self) -> Answer {
        let status_line = self.line().await;
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let line = self.line().await;
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header field");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        if answer.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line().await, 16).expect("a chunk size");
                let chunk = self.exact(size).await;
                assert_eq!(self.line().await, "", "a chunk ends with CRLF");
                if size == 0 {
                    break;
                }
                answer.body.extend(chunk);
            }
        } else {
            let length = answer
                .header("content-length")
                .expect("a length or chunks")
                .parse()
                .unwrap();
            answer.body = self.exact(length).await;
        }
        answer
    }

    /// Whether the server closed the connection (with nothing more to read).
    async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }
}

fn get(path: &str, authorization: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: controller\r\nAuthorization: {authorization}\r\n\r\n")
}

fn post(path: &str, authorization: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: controller\r\nAuthorization: {authorization}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let mut wire = Wire::connect(&tg).await;
    let unknown = bearer(&random_secret());
    let requests = [
        get("/api/first", &auth),
        post("/agents/heartbeat", &auth, r#"{"id":"a1"}"#),
        get("/api/refused", &unknown),
        get("/api/last?x=1", &auth),
    ]
    .concat();
    // All at once, in one write: each request must be told from the next by its framing alone.
    wire.send(requests.as_bytes()).await;

    let first = wire.answer().await;
    assert_eq!(first.status, 200);
    assert_eq!(first.echo()["path"], "/api/first");
    let heartbeat = wire.answer().await;
    assert_eq!(heartbeat.status, 200);
    assert_eq!(heartbeat.echo()["method"], "POST");
    assert_eq!(heartbeat.echo()["body_len"], 11);
    assert_eq!(
        heartbeat.echo()["body_sha256"],
        sha256_hex(br#"{"id":"a1"}"#)
    );
    let refused = wire.answer().await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert!(refused.header("date").is_some(), "every answer is dated");
    let last = wire.answer().await;
    assert_eq!(last.status, 200);
    assert_eq!(last.echo()["query"], "x=1");

    assert_eq!(
        up.requests().len(),
        3,
        "the refused request never went upstream"
    );
    assert!(up.requests_to("/api/refused").is_empty());
    tg.assert_logs_free_of(&[&tok.secret, &unknown]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_keeps_its_order_when_an_unusual_request_moves_it_to_the_general_server() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let mut wire = Wire::connect(&tg).await;
    // A common request, a chunked upload (not one tollgate's own side takes), then a common one
    // again, all in one write: the bytes already read must reach the general server in order.
    let chunked = format!(
        "POST /upload HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let requests = [get("/one", &auth), chunked, get("/three", &auth)].concat();
    wire.send(requests.as_bytes()).await;
    let one = wire.answer().await;
    assert_eq!(
        (one.status, one.echo()["path"].as_str()),
        (200, Some("/one"))
    );
    let two = wire.answer().await;
    assert_eq!(two.status, 200);
    assert_eq!(two.echo()["body_len"], 11);
    assert_eq!(two.echo()["body_sha256"], sha256_hex(b"hello world"));
    let three = wire.answer().await;
    assert_eq!(three.echo()["path"], "/three");
    // And the connection goes on serving.
    wire.send(get("/four", &auth).as_bytes()).await;
    assert_eq!(wire.answer().await.echo()["path"], "/four");
    let paths: Vec<String> = up.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/one", "/upload", "/three", "/four"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_framed_two_ways_never_carries_a_second_request_upstream() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let unknown = bearer(&random_secret());
    // Both framings: read by Content-Length, the body would hold a request of its own; read as
    // chunked, it ends at `0`. Whatever tollgate answers, no request to /smuggled may reach the
    // upstream: it carries no valid token.
    let hidden = get("/smuggled", &unknown);
    let body = format!("0\r\n\r\n{hidden}");
    let request = format!(
        "POST /upload HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n\
         Content-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
        body.len()
    );
    let mut wire = Wire::connect(&tg).await;
    wire.send(request.as_bytes()).await;
    let first = wire.answer().await;
    // Read as chunked (the body is empty), and the connection closed after the answer: what
    // follows is never read, as a request or otherwise.
    assert_eq!(first.status, 200);
    assert_eq!(first.echo()["body_len"], 0);
    assert_eq!(first.header("connection"), Some("close"));
    assert!(wire.closed().await);
    assert!(
        up.requests_to("/smuggled").is_empty(),
        "a request hidden in a body reached the upstream"
    );

    // Two lengths that disagree: refused outright, and nothing goes upstream.
    let before = up.requests().len();
    let request = format!(
        "POST /twice HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n\
         Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    );
    let (status, _) = raw_exchange(tg.proxy_addr("api"), request.as_bytes()).await;
    assert_eq!(status, 400);
    assert_eq!(up.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_breaks_its_framing_is_the_clients_failure_not_the_upstreams() {
    let (_up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let bodies = [
        "5\nhello\n0\n\n",
        "5\r\nhelloX\r\n0\r\n\r\n",
        "zz\r\nhello\r\n0\r\n\r\n",
    ];
    for body in bodies {
        let request = format!(
            "POST /upload HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
        );
        let (status, answer) = raw_exchange(tg.proxy_addr("api"), request.as_bytes()).await;
        assert_eq!(status, 400, "{body:?}: {answer}");
        assert!(
            answer.contains("Invalid request body"),
            "{body:?}: {answer}"
        );
    }
    // Counted as the client's failure: an alert on the upstream's failures stays quiet.
    let metrics = HttpClient::http1()
        .get(&format!("{}/metrics", tg.admin_url()), &[])
        .await
        .text();
    let count = |outcome: &str| {
        let sample = format!(r#"tollgate_requests_total{{listener="api",outcome="{outcome}"}} "#);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&sample))
            .unwrap_or_else(|| panic!("no {outcome} sample in\n{metrics}"))
            .to_owned()
    };
    assert_eq!(count("bad_body"), bodies.len().to_string());
    assert_eq!(count("upstream_unavailable"), "0");
    assert!(
        !tg.logs()
            .iter()
            .chain(tg.stderr().iter())
            .any(|line| line.contains("upstream request failed")),
        "a client's broken body was logged as the upstream's failure"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_asks_to_close_gets_its_answer_then_the_close() {
    let (_up, tg, tok) = setup().await;
    let mut wire = Wire::connect(&tg).await;
    let request = format!(
        "GET /bye HTTP/1.1\r\nHost: controller\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        tok.bearer()
    );
    wire.send(request.as_bytes()).await;
    let answer = wire.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection"), Some("close"));
    let echo = answer.echo();
    let names: Vec<&str> = echo["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"connection"),
        "the client's Connection is its own: {names:?}"
    );
    assert!(
        wire.closed().await,
        "the connection closes after the answer"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_that_arrives_a_few_bytes_at_a_time_is_read_whole() {
    let (up, tg, tok) = setup().await;
    let mut wire = Wire::connect(&tg).await;
    let request = post("/agents/heartbeat", &tok.bearer(), r#"{"id":"slow"}"#);
    for piece in request.as_bytes().chunks(7) {
        wire.send(piece).await;
        wire.stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = wire.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.echo()["body_sha256"],
        sha256_hex(br#"{"id":"slow"}"#)
    );
    assert_eq!(up.requests_to("/agents/heartbeat").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn heads_beyond_what_tollgate_takes_itself_are_served_or_refused_as_before() {
    let (_up, tg, tok) = setup().await;
    let auth = tok.bearer();

    // More fields than tollgate's own side reads: served by the general server.
    let many: String = (0..80).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let mut wire = Wire::connect(&tg).await;
    let request =
        format!("GET /many HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n{many}\r\n");
    wire.send(request.as_bytes()).await;
    let answer = wire.answer().await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.echo()["path"], "/many");

    // A head larger than any accepted: refused, and the connection closed.
    let huge = "a".repeat(70 * 1024);
    let request = format!(
        "GET /huge HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\nX-Huge: {huge}\r\n\r\n"
    );
    let (status, _) = raw_exchange(tg.proxy_addr("api"), request.as_bytes()).await;
    assert_eq!(status, 431);

    // HTTP/1.0 is the general server's too, and still answered.
    let request = format!("GET /old HTTP/1.0\r\nHost: controller\r\nAuthorization: {auth}\r\n\r\n");
    let (status, text) = raw_exchange(tg.proxy_addr("api"), request.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("/old"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_request_gets_the_upstreams_length_and_no_body() {
    let (_up, tg, tok) = setup().await;
    let mut wire = Wire::connect(&tg).await;
    let auth = tok.bearer();
    let head =
        format!("HEAD /config HTTP/1.1\r\nHost: controller\r\nAuthorization: {auth}\r\n\r\n");
    // The HEAD's answer, then a GET's on the same connection: the first must end at its head.
    wire.send(format!("{head}{}", get("/config", &auth)).as_bytes())
        .await;
    let status_line = wire.line().await;
    assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line}");
    let mut length = None;
    loop {
        let line = wire.line().await;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().to_owned());
        }
    }
    let config = wire.answer().await;
    assert_eq!(config.status, 200);
    assert_eq!(length, Some(config.body.len().to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_is_answered_without_waiting_for_its_body() {
    let (up, tg, tok) = setup().await;
    let unknown = bearer(&random_secret());

    // The whole body came with the head: passed over, and the connection carries on.
    let mut wire = Wire::connect(&tg).await;
    let requests = [
        post("/agents/heartbeat", &unknown, r#"{"id":"x"}"#),
        get("/after", &tok.bearer()),
    ]
    .concat();
    wire.send(requests.as_bytes()).await;
    let refused = wire.answer().await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("connection"), None);
    assert_eq!(wire.answer().await.echo()["path"], "/after");

    // A body still on its way is not waited for: the answer comes at once and says the
    // connection closes, as it then does.
    let mut wire = Wire::connect(&tg).await;
    let head = format!(
        "POST /agents/heartbeat HTTP/1.1\r\nHost: controller\r\nAuthorization: {unknown}\r\n\
         Content-Length: 1000\r\n\r\n{{\"id\":"
    );
    wire.send(head.as_bytes()).await;
    let refused = wire.answer().await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.header("connection"), Some("close"));
    assert!(wire.closed().await);
    assert!(up.requests_to("/agents/heartbeat").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_listener_answers_a_kept_connection_then_closes_it() {
    let (_up, mut tg, tok) = setup().await;
    let auth = tok.bearer();
    let mut wire = Wire::connect(&tg).await;
    wire.send(get("/before", &auth).as_bytes()).await;
    let before = wire.answer().await;
    assert_eq!(before.header("connection"), None);

    tg.sigterm();
    // Once the listener stops accepting, the open connection's next request is still answered,
    // and told to go elsewhere for the one after.
    let addr = tg.proxy_addr("api");
    wait_until(DEADLINE, "the proxy port to refuse connections", || async {
        TcpStream::connect(addr).await.err().map(|_| ())
    })
    .await;
    wire.send(get("/during", &auth).as_bytes()).await;
    let during = wire.answer().await;
    assert_eq!(during.status, 200);
    assert_eq!(during.echo()["path"], "/during");
    assert_eq!(during.header("connection"), Some("close"));
    assert!(wire.closed().await);
    assert!(tg.wait_exit().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn both_server_sides_hand_the_upstream_the_same_fields() {
    let (_up, tg, tok) = setup().await;
    let auth = tok.bearer();
    // Everything the hygiene acts on, in mixed case. Framed by a length, the request is served
    // by tollgate's own side; chunked, by hyper's, through the general path.
    let fields = format!(
        "Host: controller:8888\r\nAuthorization: {auth}\r\nConnection: keep-alive, X-Custom-Hop\r\n\
         X-Custom-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
         Proxy-Authorization: Basic c3Bvb2Y=\r\nTE: trailers\r\nX-Tollgate-Token-Id: spoofed\r\n\
         x-tollgate-anything: spoofed\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: gopher\r\n\
         Forwarded: for=evil\r\nX-Real-IP: 10.6.6.6\r\nX-HTTP-Method-Override: DELETE\r\n\
         X-Forwarded-For: 192.0.2.1\r\nCookie: a=1\r\nAccept: a\r\nAccept: b\r\nUser-Agent: t\r\n"
    );
    let by_length = format!("POST /same HTTP/1.1\r\n{fields}Content-Length: 1\r\n\r\nx");
    let chunked = format!(
        "POST /same HTTP/1.1\r\n{fields}Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    );

    let mut received = Vec::new();
    for request in [by_length, chunked] {
        let mut wire = Wire::connect(&tg).await;
        wire.send(request.as_bytes()).await;
        let answer = wire.answer().await;
        assert_eq!(answer.status, 200);
        let echo = answer.echo();
        assert_eq!(echo["body_sha256"], sha256_hex(b"x"));
        let mut fields: Vec<(String, String)> = echo["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                (
                    pair[0].as_str().unwrap().to_owned(),
                    pair[1].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(name, _)| name != "content-length" && name != "transfer-encoding")
            .collect();
        fields.sort();
        received.push(fields);
    }
    assert_eq!(received[0], received[1], "the two sides differ");
    let names: Vec<&str> = received[0].iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "accept",
            "accept",
            "authorization",
            "cookie",
            "host",
            "user-agent",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-tollgate-token-id",
            "x-tollgate-token-name",
        ]
    );
}
