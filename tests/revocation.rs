//! The revocation promise, black-box: revoked, deleted and expired tokens are refused on the next
//! request, on keep-alive connections under load, and across restarts; no secret at rest or in logs.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn revoked_token_is_refused_on_the_next_request() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent").await;
    let other = tg.create_token("other").await;
    assert_eq!(
        tg.proxy("api", "/before", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        tg.revoke(&tok.id, Some("test")).await.status,
        StatusCode::OK
    );
    for scheme in ["Bearer", "Token"] {
        let resp = tg
            .proxy("api", "/after", Some(&format!("{scheme} {}", tok.secret)))
            .await;
        assert_unauthorized(&resp, "Invalid token", Some(true));
    }
    assert!(up.requests_to("/after").is_empty());
    assert_eq!(
        tg.proxy("api", "/after", Some(&other.bearer()))
            .await
            .status,
        StatusCode::OK,
        "only the revoked token is refused"
    );
    tg.assert_logs_free_of(&[&tok.secret, tok.hex_part(), tg.admin_token()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_token_is_refused_on_the_next_request() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent").await;
    assert_eq!(
        tg.proxy("api", "/before", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(tg.delete(&tok.id).await.status, StatusCode::NO_CONTENT);
    let resp = tg.proxy("api", "/after", Some(&tok.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    assert!(up.requests_to("/after").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_revoked_tokens_are_refused_on_the_next_request() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let toks = [
        tg.create_token("a").await,
        tg.create_token("b").await,
        tg.create_token("c").await,
    ];
    for t in &toks {
        assert_eq!(
            tg.proxy("api", "/x", Some(&t.bearer())).await.status,
            StatusCode::OK
        );
    }
    let resp = tg
        .admin(
            Method::POST,
            "/api/v1/tokens/revoke",
            Some(json!({"ids": [toks[0].id, toks[1].id]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    for t in &toks[..2] {
        let resp = tg.proxy("api", "/y", Some(&t.bearer())).await;
        assert_unauthorized(&resp, "Invalid token", Some(true));
    }
    assert_eq!(
        tg.proxy("api", "/y", Some(&toks[2].bearer())).await.status,
        StatusCode::OK
    );

    let resp = tg
        .admin(
            Method::POST,
            "/api/v1/tokens/delete",
            Some(json!({"ids": [toks[2].id]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let resp = tg.proxy("api", "/z", Some(&toks[2].bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_refused() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let expires_at = rfc3339(SystemTime::now() + Duration::from_secs(2));
    let tok = tg
        .create_token_with(json!({"name": "short", "expires_at": expires_at}))
        .await;
    assert_eq!(tok.record["expires_at"], expires_at.as_str());
    let forever = tg.create_token("forever").await;

    // Whether the first requests pass depends on the clock; wait until the refusal, then check it.
    let refused = wait_until(DEADLINE, "the token to expire", || async {
        let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
        match resp.status {
            StatusCode::OK => None,
            _ => Some(resp),
        }
    })
    .await;
    assert_unauthorized(&refused, "Token expired", Some(true));
    // And it stays refused.
    let resp = tg
        .proxy("api", "/x", Some(&format!("Token {}", tok.secret)))
        .await;
    assert_unauthorized(&resp, "Token expired", Some(true));

    assert_eq!(tg.record(&tok.id).await["status"], "expired");
    assert_eq!(tg.list_ids("?status=expired").await, vec![tok.id.clone()]);
    assert_eq!(
        tg.list_ids("?status=active").await,
        vec![forever.id.clone()]
    );
    assert_eq!(
        tg.proxy("api", "/x", Some(&forever.bearer())).await.status,
        StatusCode::OK
    );
}

/// One request of the load test: when it began, and its outcome.
struct Sample {
    started: Instant,
    status: Option<StatusCode>,
    body: Bytes,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoke_is_write_through_under_concurrent_keep_alive_load() {
    const TASKS: usize = 32;
    const AFTER_PER_TASK: usize = 5;

    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("busy").await;
    let addr = tg.proxy_addr("api");
    let auth = tok.bearer();

    let revoked_at: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let accepted = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + DEADLINE + DEADLINE;

    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let revoked_at = revoked_at.clone();
        let accepted = accepted.clone();
        let samples = samples.clone();
        let auth = auth.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr).await;
            let mut after = 0;
            let mut local = Vec::new();
            while after < AFTER_PER_TASK {
                assert!(Instant::now() < deadline, "load task did not finish");
                let req = Request::builder()
                    .method(Method::GET)
                    .uri("/load")
                    .header("host", addr.to_string())
                    .header("authorization", &auth)
                    .body(Full::new(Bytes::new()))
                    .expect("valid request");
                if sender.ready().await.is_err() {
                    sender = connect(addr).await;
                    continue;
                }
                let started = Instant::now();
                let outcome = match sender.send_request(req).await {
                    Ok(resp) => read_response(resp).await.ok(),
                    Err(_) => None,
                };
                let sample = match outcome {
                    Some(r) => Sample {
                        started,
                        status: Some(r.status),
                        body: r.body,
                    },
                    None => {
                        // The connection failed: go on with a new one; the sample is no acceptance.
                        sender = connect(addr).await;
                        Sample {
                            started,
                            status: None,
                            body: Bytes::new(),
                        }
                    }
                };
                if sample.status == Some(StatusCode::OK) {
                    accepted.fetch_add(1, Ordering::SeqCst);
                }
                if revoked_at.get().is_some_and(|t| started > *t) {
                    after += 1;
                }
                local.push(sample);
            }
            samples.lock().unwrap().extend(local);
        }));
    }

    // Let the load run until plenty of requests have passed, then revoke.
    wait_until(DEADLINE, "requests to be accepted under load", || {
        let n = accepted.load(Ordering::SeqCst);
        async move { (n >= TASKS * 5).then_some(()) }
    })
    .await;
    let resp = tg.revoke(&tok.id, Some("load test")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let reply_at = Instant::now();
    revoked_at.set(reply_at).expect("set once");

    for t in tasks {
        t.await.expect("load task");
    }
    let samples = samples.lock().unwrap();
    let before: Vec<&Sample> = samples.iter().filter(|s| s.started <= reply_at).collect();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started > reply_at).collect();
    let accepted_before = before
        .iter()
        .filter(|s| s.status == Some(StatusCode::OK))
        .count();
    assert!(
        accepted_before >= TASKS * 5,
        "the test is only meaningful if requests passed before the revoke ({accepted_before})"
    );
    assert!(after.len() >= TASKS * AFTER_PER_TASK);
    let accepted_after: Vec<&&Sample> = after
        .iter()
        .filter(|s| s.status == Some(StatusCode::OK))
        .collect();
    assert!(
        accepted_after.is_empty(),
        "{} of {} requests that began after the revoke reply were accepted",
        accepted_after.len(),
        after.len()
    );
    for s in &after {
        if let Some(status) = s.status {
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            let v: serde_json::Value = serde_json::from_slice(&s.body).expect("a JSON error body");
            assert_eq!(v, json!({"error": "Invalid token"}));
        }
    }
    let answered_after = after.iter().filter(|s| s.status.is_some()).count();
    assert!(
        answered_after >= TASKS,
        "requests after the revoke were answered ({answered_after})"
    );
    // Before the reply, nothing but 200 or (racing the revoke) 401.
    for s in &before {
        if let Some(status) = s.status {
            assert!(
                status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
                "unexpected status under load: {status}"
            );
        }
    }
}

/// A new HTTP/1.1 keep-alive connection to `addr`, driven on its own task.
async fn connect(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the proxy");
    stream.set_nodelay(true).expect("set nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_survives_a_restart_and_no_secret_is_at_rest() {
    let up = Upstream::start();
    let mut tg = Tollgate::start(Config::single(&up));
    let revoked = tg.create_token("revoked").await;
    let kept = tg.create_token("kept").await;
    let deleted = tg.create_token("deleted").await;
    let first = tg.revoke(&revoked.id, Some("before restart")).await.json();
    assert_eq!(tg.delete(&deleted.id).await.status, StatusCode::NO_CONTENT);

    let status = tg.stop();
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let bytes = std::fs::read(tg.store_path()).expect("the store file exists");
    assert!(!bytes.is_empty());
    for t in [&revoked, &kept, &deleted] {
        for needle in [t.secret.as_str(), t.hex_part()] {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "the store file holds a secret of {}",
                t.name
            );
        }
    }
    assert!(!contains(&bytes, tg.admin_token().as_bytes()));

    tg.restart();
    let resp = tg.proxy("api", "/x", Some(&revoked.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    let resp = tg.proxy("api", "/x", Some(&deleted.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    assert_eq!(
        tg.proxy("api", "/x", Some(&kept.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(tg.record(&revoked.id).await, first, "the record survives");
    assert_eq!(tg.show(&deleted.id).await.status, StatusCode::NOT_FOUND);

    let mut secrets: Vec<&str> = vec![tg.admin_token()];
    for t in [&revoked, &kept, &deleted] {
        secrets.push(&t.secret);
        secrets.push(t.hex_part());
    }
    tg.assert_logs_free_of(&secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acknowledged_revoke_survives_kill_9() {
    let up = Upstream::start();
    let mut tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent").await;
    let kept = tg.create_token("kept").await;
    assert_eq!(tg.revoke(&tok.id, None).await.status, StatusCode::OK);
    tg.kill9();
    tg.restart();
    let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    assert_eq!(tg.record(&tok.id).await["status"], "revoked");
    assert_eq!(
        tg.proxy("api", "/x", Some(&kept.bearer())).await.status,
        StatusCode::OK
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
