//! The data path, black-box: authentication answers, forwarding and header hygiene, bodies in both
//! directions, HTTP/2, and upstream failures.

mod support;

use http::{Method, StatusCode, Version};
use serde_json::json;
use support::*;

/// An upstream, a tollgate with one listener `api` in front of it, and one active token.
async fn setup() -> (Upstream, Tollgate, Created) {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent-1").await;
    (up, tg, tok)
}

#[tokio::test(flavor = "multi_thread")]
async fn both_schemes_pass_case_insensitively() {
    let (up, tg, tok) = setup().await;
    for scheme in [
        "Bearer", "bearer", "BEARER", "BeArEr", "Token", "token", "TOKEN", "tOkEn",
    ] {
        let auth = format!("{scheme} {}", tok.secret);
        let resp = tg.proxy("api", "/api/configs/1/toml", Some(&auth)).await;
        assert_eq!(
            resp.status,
            StatusCode::OK,
            "scheme {scheme:?} should pass: {}",
            resp.text()
        );
        let echo = resp.echo();
        assert_eq!(echo.path, "/api/configs/1/toml");
        assert_eq!(
            echo.header("authorization"),
            vec![auth.as_str()],
            "Authorization reaches the upstream unchanged"
        );
    }
    assert_eq!(up.requests_to("/api/configs/1/toml").len(), 8);
    tg.assert_logs_free_of(&[&tok.secret, tok.hex_part(), tg.admin_token()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_several_or_foreign_authorization_is_refused() {
    let (up, tg, tok) = setup().await;
    let url = tg.proxy_url("api", "/private");
    let http = HttpClient::http1();

    // No Authorization at all: no token was given, so the challenge has no error.
    let resp = tg.proxy("api", "/private", None).await;
    assert_unauthorized(
        &resp,
        "Missing or invalid Authorization header",
        Some(false),
    );

    // Two Authorization headers, even both valid.
    let auth = tok.bearer();
    let resp = http
        .get(&url, &[("authorization", &auth), ("authorization", &auth)])
        .await;
    assert_unauthorized(&resp, "Missing or invalid Authorization header", None);

    // Other schemes, even carrying a valid secret.
    for value in [
        "Basic dXNlcjpwYXNz".to_string(),
        format!("Basic {}", tok.secret),
        format!("Digest {}", tok.secret),
        format!("Bearer{}", tok.secret),
        tok.secret.clone(),
    ] {
        let resp = tg.proxy("api", "/private", Some(&value)).await;
        assert_unauthorized(&resp, "Missing or invalid Authorization header", None);
    }

    assert!(
        up.requests_to("/private").is_empty(),
        "a refused request must never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_tokens_are_refused_with_invalid_format() {
    let (up, tg, tok) = setup().await;
    let hex = tok.hex_part().to_string();
    let cases = [
        "abc".to_string(),
        format!("tc-apiv1_{}", &hex[..63]),
        format!("tc-apiv1_{hex}0"),
        format!("tc-apiv1_{}", hex.to_uppercase()),
        format!("tc-apiv2_{hex}"),
        format!("TC-APIV1_{hex}"),
        format!("tc-apiv1_{}g", &hex[..63]),
        hex.clone(),
    ];
    for token in &cases {
        for scheme in ["Bearer", "Token"] {
            let resp = tg
                .proxy("api", "/private", Some(&format!("{scheme} {token}")))
                .await;
            assert_unauthorized(&resp, "Invalid token format", Some(true));
        }
    }
    assert!(up.requests_to("/private").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_token_is_refused_and_never_logged() {
    let (up, tg, _tok) = setup().await;
    let unknown = random_secret();
    let resp = tg.proxy("api", "/private", Some(&bearer(&unknown))).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    let resp = tg
        .proxy("api", "/private", Some(&format!("Token {unknown}")))
        .await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    assert!(up.requests_to("/private").is_empty());
    // The access line for it is written; still no secret in it.
    wait_for(DEADLINE, "the access lines of the refused requests", || {
        tg.log_records()
            .iter()
            .filter(|r| r["message"] == "access" && r["path"] == "/private")
            .count()
            >= 2
    });
    tg.assert_logs_free_of(&[&unknown, &unknown[TOKEN_PREFIX.len()..]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_request_carries_identity_and_forwarding_headers() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let host = "agents.example:8080";
    let resp = tg
        .proxy_send(
            "api",
            Method::GET,
            "/api/configs/7/toml?param=a&other=b%20c",
            &[
                ("host", host),
                ("authorization", &auth),
                ("accept", "application/toml"),
                ("x-multi", "one"),
                ("x-multi", "two"),
            ],
            "",
        )
        .await;
    let echo = resp.echo();
    assert_eq!(echo.method, "GET");
    assert_eq!(echo.path, "/api/configs/7/toml");
    assert_eq!(echo.query.as_deref(), Some("param=a&other=b%20c"));
    assert_eq!(echo.header("x-tollgate-token-id"), vec![tok.id.as_str()]);
    assert_eq!(echo.header("x-tollgate-token-name"), vec!["agent-1"]);
    assert_eq!(echo.header("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(echo.header("x-forwarded-proto"), vec!["http"]);
    assert_eq!(echo.header("x-forwarded-host"), vec![host]);
    assert_eq!(echo.header("authorization"), vec![auth.as_str()]);
    assert_eq!(echo.header("accept"), vec!["application/toml"]);
    assert_eq!(
        echo.header("x-multi"),
        vec!["one", "two"],
        "repeated request headers are kept, in order"
    );
    // The recorded head agrees with the echo, and the upstream was spoken to in HTTP/1.1.
    let head = up.wait_for_path("/api/configs/7/toml").await;
    assert_eq!(head.version, Version::HTTP_11);
    assert_eq!(head.header("x-tollgate-token-id"), vec![tok.id.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn methods_and_request_bodies_pass() {
    let (_up, tg, tok) = setup().await;
    let auth = tok.bearer();
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let body = format!("{{\"method\":\"{method}\"}}");
        let resp = tg
            .proxy_send(
                "api",
                method.clone(),
                "/agents/heartbeat",
                &[
                    ("authorization", &auth),
                    ("content-type", "application/json"),
                ],
                body.clone(),
            )
            .await;
        let echo = resp.echo();
        assert_eq!(echo.method, method.as_str());
        assert_eq!(echo.body_len, body.len() as u64);
        assert_eq!(echo.body_sha256, sha256_hex(body.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_and_spoofed_identity_headers_never_reach_the_upstream() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let resp = tg
        .proxy_send(
            "api",
            Method::GET,
            "/hop",
            &[
                ("authorization", &auth),
                ("connection", "close, X-Custom-Hop"),
                ("x-custom-hop", "must-go"),
                ("keep-alive", "timeout=5, max=100"),
                ("proxy-authorization", "Basic c3Bvb2Y6c3Bvb2Y="),
                ("proxy-connection", "keep-alive"),
                ("te", "trailers"),
                ("x-tollgate-token-id", "spoofed-id"),
                ("x-tollgate-token-name", "spoofed-name"),
                ("X-Tollgate-Token-Id", "spoofed-id-2"),
                ("x-tollgate-anything", "spoofed-other"),
                // The same names as CGI-style servers hear them (`_` for `-`).
                ("X_Tollgate_Token_Id", "spoofed-underscore-id"),
                ("x_tollgate_token_name", "spoofed-underscore-name"),
                ("X_Forwarded_For", "spoofed-address"),
                ("X_Forwarded_Proto", "spoofed-scheme"),
                // Paths some servers serve instead of the request's own.
                ("X-Original-URL", "/spoofed/admin"),
                ("x-rewrite-url", "/spoofed/admin"),
                ("x-custom-end", "kept"),
            ],
            "",
        )
        .await;
    let echo = resp.echo();
    for name in [
        "x-custom-hop",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "x-tollgate-anything",
    ] {
        assert!(
            echo.header(name).is_empty(),
            "{name} must not reach the upstream; it got {:?}",
            echo.headers
        );
    }
    for value in echo.header("connection") {
        let v = value.to_ascii_lowercase();
        assert!(
            !v.contains("x-custom-hop") && !v.contains("close"),
            "the client's Connection header must not be forwarded, upstream got {value:?}"
        );
    }
    for (name, value) in &echo.headers {
        assert!(
            !value.contains("spoof"),
            "a spoofed header reached the upstream: {name}: {value}"
        );
    }
    assert_eq!(echo.header("x-tollgate-token-id"), vec![tok.id.as_str()]);
    assert_eq!(echo.header("x-tollgate-token-name"), vec!["agent-1"]);
    assert_eq!(echo.header("x-custom-end"), vec!["kept"]);
    assert_eq!(echo.header("authorization"), vec![auth.as_str()]);
    assert_eq!(up.requests_to("/hop").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_header_without_an_upgrade_is_stripped() {
    let (_up, tg, tok) = setup().await;
    let auth = tok.bearer();
    let resp = tg
        .proxy_send(
            "api",
            Method::GET,
            "/no-upgrade",
            &[("authorization", &auth), ("upgrade", "websocket")],
            "",
        )
        .await;
    let echo = resp.echo();
    assert!(
        echo.header("upgrade").is_empty(),
        "Upgrade is hop-by-hop; the upstream got {:?}",
        echo.headers
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_set_cookie_headers_reach_the_client() {
    let (_up, tg, tok) = setup().await;
    let resp = tg.proxy("api", "/cookies", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header_all("set-cookie"), vec!["a=1", "b=2"]);
    assert_eq!(resp.text(), "cookies");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_upload_passes_intact() {
    let (_up, tg, tok) = setup().await;
    let body = pattern(8 * 1024 * 1024);
    let digest = sha256_hex(&body);
    let auth = tok.bearer();
    let resp = tg
        .proxy_send(
            "api",
            Method::POST,
            "/upload",
            &[
                ("authorization", &auth),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
        .await;
    let echo = resp.echo();
    assert_eq!(echo.body_len, 8 * 1024 * 1024);
    assert_eq!(echo.body_sha256, digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_download_passes_intact() {
    let (_up, tg, tok) = setup().await;
    let n = 8 * 1024 * 1024;
    let resp = tg
        .proxy("api", &format!("/download/{n}"), Some(&tok.bearer()))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body.len(), n);
    assert_eq!(sha256_hex(&resp.body), sha256_hex(&pattern(n)));
    if let Some(len) = resp.header("content-length") {
        assert_eq!(len, n.to_string());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_and_last_modified_pass_through() {
    let (up, tg, tok) = setup().await;
    let auth = tok.bearer();

    let get = tg.proxy("api", "/config", Some(&auth)).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.header("last-modified"), Some(CONFIG_LAST_MODIFIED));
    assert_eq!(get.text(), CONFIG_BODY);

    let head = tg
        .proxy_send(
            "api",
            Method::HEAD,
            "/config",
            &[("authorization", &auth)],
            "",
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("last-modified"), Some(CONFIG_LAST_MODIFIED));
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.text());
    let methods: Vec<String> = up
        .requests_to("/config")
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(
        methods,
        vec!["GET", "HEAD"],
        "HEAD reaches the upstream as HEAD"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_reaches_an_http1_upstream() {
    let (up, tg, tok) = setup().await;
    let h2 = HttpClient::http2();
    let auth = tok.bearer();
    let resp = h2
        .get(
            &tg.proxy_url("api", "/over-h2?x=1"),
            &[("authorization", &auth)],
        )
        .await;
    assert_eq!(resp.version, Version::HTTP_2, "the client spoke HTTP/2");
    let echo = resp.echo();
    assert_eq!(echo.path, "/over-h2");
    assert_eq!(echo.query.as_deref(), Some("x=1"));
    assert_eq!(echo.header("x-tollgate-token-id"), vec![tok.id.as_str()]);
    assert_eq!(echo.header("x-forwarded-proto"), vec!["http"]);
    let head = up.wait_for_path("/over-h2").await;
    assert_eq!(head.version, Version::HTTP_11);

    // The 401 answers are the same over HTTP/2.
    let resp = h2.get(&tg.proxy_url("api", "/over-h2"), &[]).await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_unauthorized(
        &resp,
        "Missing or invalid Authorization header",
        Some(false),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_protocol_is_told_from_first_bytes_that_arrive_in_pieces() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, tg, tok) = setup().await;
    let pause = std::time::Duration::from_millis(50);

    // "P" alone could begin the HTTP/2 preface or a POST: tollgate waits for more.
    let mut stream = tokio::net::TcpStream::connect(tg.proxy_addr("api"))
        .await
        .unwrap();
    stream.write_all(b"P").await.unwrap();
    tokio::time::sleep(pause).await;
    let rest = format!(
        "OST /split HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 2\r\n\
         Connection: close\r\n\r\nhi",
        tok.bearer()
    );
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert_eq!(up.wait_for_path("/split").await.method, "POST");

    // The HTTP/2 preface in two pieces: the server answers with its own SETTINGS frame.
    let mut stream = tokio::net::TcpStream::connect(tg.proxy_addr("api"))
        .await
        .unwrap();
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    tokio::time::sleep(pause).await;
    stream.write_all(b"\r\nSM\r\n\r\n").await.unwrap();
    // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    stream
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    let mut frame_head = [0u8; 9];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut frame_head))
        .await
        .expect("a first frame")
        .unwrap();
    assert_eq!(
        frame_head[3], 4,
        "a SETTINGS frame, not an HTTP/1 answer: {frame_head:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_gives_502() {
    let tg = Tollgate::start(Config::new().listener("dead", &closed_port_url()));
    let tok = tg.create_token("agent-1").await;
    let resp = tg.proxy("dead", "/anything", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
    assert_eq!(resp.json(), json!({"error": "Upstream unavailable"}));
    // Authentication still comes first.
    let resp = tg.proxy("dead", "/anything", None).await;
    assert_unauthorized(
        &resp,
        "Missing or invalid Authorization header",
        Some(false),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_upstream_gives_504() {
    let up = Upstream::start();
    let tg =
        Tollgate::start(Config::new().listener_with("api", &up.url(), "upstream_timeout = \"1s\""));
    let tok = tg.create_token("agent-1").await;
    let resp = tg.proxy("api", "/slow/5000", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::GATEWAY_TIMEOUT, "{}", resp.text());
    assert_eq!(resp.json(), json!({"error": "Upstream timed out"}));
    assert_eq!(up.requests_to("/slow/5000").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn several_listeners_each_forward_to_their_own_upstream() {
    let a = Upstream::start();
    let b = Upstream::start();
    let tg = Tollgate::start(
        Config::new()
            .listener("api", &a.url())
            .listener("heartbeat", &b.url()),
    );
    let tok = tg.create_token("agent-1").await;
    assert_ne!(tg.proxy_addr("api"), tg.proxy_addr("heartbeat"));
    let r = tg.proxy("api", "/to-a", Some(&tok.bearer())).await;
    assert_eq!(r.echo().path, "/to-a");
    let r = tg.proxy("heartbeat", "/to-b", Some(&tok.bearer())).await;
    assert_eq!(r.echo().path, "/to-b");
    assert_eq!(a.requests_to("/to-a").len(), 1);
    assert!(a.requests_to("/to-b").is_empty());
    assert_eq!(b.requests_to("/to-b").len(), 1);
    assert!(b.requests_to("/to-a").is_empty());
}

/// The listeners are served by `server.workers` threads, each with a socket of its own on every
/// listener's address: with three, many keep-alive connections to two listeners at once are all
/// answered, every request reaching the upstream once.
#[tokio::test(flavor = "multi_thread")]
async fn the_configured_workers_serve_every_listener() {
    let up = Upstream::start();
    let tg = Tollgate::start(
        Config::new()
            .server("workers = 3")
            .listener("api", &up.url())
            .listener("heartbeat", &up.url()),
    );
    let mut workers: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", tg.pid()))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("worker-"))
        .collect();
    workers.sort();
    assert_eq!(workers, ["worker-1", "worker-2", "worker-3"]);
    assert!(
        tg.logs()
            .iter()
            .any(|line| line.contains("\"listening\"") && line.contains("\"workers\":3")),
        "{:?}",
        tg.logs()
    );

    for listener in ["api", "heartbeat"] {
        assert_eq!(
            listening_sockets(tg.proxy_addr(listener).port()),
            3,
            "one socket per worker on {listener}'s port"
        );
    }

    let bearer = tg.create_token("agent-1").await.bearer();
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..24 {
        let listener = if client % 2 == 0 { "api" } else { "heartbeat" };
        let url = tg.proxy_url(listener, &format!("/client-{client}"));
        let bearer = bearer.clone();
        clients.spawn(async move {
            // One client, one keep-alive connection for its five requests.
            let http = HttpClient::http1();
            for _ in 0..5 {
                let resp = http
                    .send(Method::GET, &url, &[("authorization", &bearer)], "")
                    .await;
                assert_eq!(resp.status, StatusCode::OK, "{url}");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }
    for client in 0..24 {
        assert_eq!(up.requests_to(&format!("/client-{client}")).len(), 5);
    }
}

/// The connection limit counts a listener's connections over all its workers, and a worker with
/// nothing to accept holds no slot: with one slot and three workers, connection after
/// connection (each from a new port, so to any worker's socket) is served in turn, and one
/// sent while another holds the slot is answered once that one closes.
#[tokio::test(flavor = "multi_thread")]
async fn more_workers_than_connection_slots_still_serve_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start();
    let tg = Tollgate::start(Config::new().server("workers = 3").listener_with(
        "api",
        &up.url(),
        "max_connections = 1",
    ));
    let bearer = tg.create_token("agent-1").await.bearer();
    let request = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let answer_to = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
            .await
            .expect("an answer")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let connect = || tokio::net::TcpStream::connect(tg.proxy_addr("api"));

    for i in 0..12 {
        let mut stream = connect().await.unwrap();
        stream
            .write_all(request(&format!("/turn-{i}")).as_bytes())
            .await
            .unwrap();
        let answer = answer_to(stream).await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "turn {i}: {answer}");
    }

    // One connection holds the slot (an idle keep-alive connection); the next one's request
    // is answered once the first closes.
    let mut holder = connect().await.unwrap();
    holder
        .write_all(
            format!("GET /holder HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    up.wait_for_path("/holder").await;
    let mut waiting = connect().await.unwrap();
    waiting
        .write_all(request("/waiting").as_bytes())
        .await
        .unwrap();
    drop(holder);
    let answer = answer_to(waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

/// The sockets listening on `port` on this machine, from the kernel's table of IPv4 TCP sockets
/// (local address and port in hex; state 0A is LISTEN).
fn listening_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields[1].ends_with(&local) && fields[3] == "0A"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn access_log_has_one_line_per_request_without_secrets() {
    let (_up, tg, tok) = setup().await;
    let r = tg.proxy("api", "/logged", Some(&tok.bearer())).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = tg.proxy("api", "/logged-401", None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    wait_for(DEADLINE, "access lines for both requests", || {
        let recs = tg.log_records();
        recs.iter()
            .any(|r| r["message"] == "access" && r["path"] == "/logged")
            && recs
                .iter()
                .any(|r| r["message"] == "access" && r["path"] == "/logged-401")
    });
    let recs = tg.log_records();
    let ok: Vec<_> = recs
        .iter()
        .filter(|r| r["message"] == "access" && r["path"] == "/logged")
        .collect();
    assert_eq!(ok.len(), 1, "one access line per request: {ok:?}");
    let line = ok[0];
    assert_eq!(line["listener"], "api");
    assert_eq!(line["method"], "GET");
    assert!(
        line["status"] == 200 || line["status"] == "200",
        "status field: {line}"
    );
    assert_eq!(line["token_id"], tok.id.as_str());
    assert!(line.get("outcome").is_some(), "outcome field: {line}");
    let refused = recs
        .iter()
        .find(|r| r["message"] == "access" && r["path"] == "/logged-401")
        .expect("seen above");
    assert!(
        refused["status"] == 401 || refused["status"] == "401",
        "status field: {refused}"
    );
    assert_ne!(
        refused["outcome"], line["outcome"],
        "the outcome tells a refusal from a forward"
    );
    tg.assert_logs_free_of(&[&tok.secret, tok.hex_part(), tg.admin_token()]);
}

/// Runs /usr/bin/curl with `args`; returns (exit code, stdout).
fn curl(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new("/usr/bin/curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run curl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_shaped_requests() {
    let (_up, tg, tok) = setup().await;
    let auth = format!("Authorization: Token {}", tok.secret);

    // What an older Telegraf's config fetch looks like.
    let url = tg.proxy_url("api", "/api/configs/9/toml?param=x");
    let (code, body) = curl(&["-H", &auth, "-H", "Accept: application/toml", &url]);
    assert_eq!(code, Some(0), "{body}");
    let echo: Echo = serde_json::from_str(&body).expect("the upstream's echo");
    assert_eq!(echo.path, "/api/configs/9/toml");
    assert_eq!(echo.query.as_deref(), Some("param=x"));
    assert_eq!(echo.header("x-tollgate-token-id"), vec![tok.id.as_str()]);

    // The config watcher's HEAD.
    let url = tg.proxy_url("api", "/config");
    let (code, head) = curl(&["--head", "-H", &auth, &url]);
    assert_eq!(code, Some(0), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{head}");
    let want = format!("last-modified: {CONFIG_LAST_MODIFIED}").to_ascii_lowercase();
    assert!(lower.contains(&want), "{head}");

    // A large upload as curl sends it: chunked, with `Expect: 100-continue`.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let body = pattern(8 * 1024 * 1024);
    std::fs::write(file.path(), &body).expect("write the upload");
    let data = format!("@{}", file.path().display());
    let url = tg.proxy_url("api", "/upload");
    let (code, out) = curl(&[
        "-H",
        &auth,
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        &data,
        &url,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let echo: Echo = serde_json::from_str(&out).expect("the upstream's echo");
    assert_eq!(echo.body_len, body.len() as u64);
    assert_eq!(echo.body_sha256, sha256_hex(&body));

    // HTTP/2 with prior knowledge, and the status and body of a refusal.
    let url = tg.proxy_url("api", "/private");
    let (code, out) = curl(&[
        "--http2-prior-knowledge",
        "--write-out",
        "\n%{http_version} %{http_code}",
        &url,
    ]);
    assert_eq!(code, Some(0), "{out}");
    let (body, status) = out.rsplit_once('\n').expect("write-out line");
    assert_eq!(status, "2 401");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).expect("JSON error"),
        json!({"error": "Missing or invalid Authorization header"})
    );
}
