//! Several processes on one store file, black-box: a change made through one process's admin port
//! holds on the other's requests by the time the reply comes, and a successor process takes over
//! the ports of a running one (SO_REUSEPORT, then a drain) without a failed request and without
//! accepting a token revoked during the switch.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

/// A second `tollgate serve` on `first`'s store file, with its own ports (unless `config` binds
/// them) and the same admin token.
fn start_sharing(first: &Tollgate, config: Config) -> Tollgate {
    Tollgate::start_with(
        config.store(first.store_path()),
        Some(first.admin_token().to_string()),
    )
}

/// The value of an unlabelled metric on a process's admin port.
async fn metric(tg: &Tollgate, name: &str) -> f64 {
    let text = HttpClient::http1()
        .get(&format!("{}/metrics", tg.admin_url()), &[])
        .await
        .text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in the metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_through_one_process_holds_on_the_other_when_the_reply_comes() {
    let up = Upstream::start();
    let a = Tollgate::start(Config::single(&up));
    let b = start_sharing(&a, Config::single(&up));

    // Created through A: accepted by B on the very next request too (the reply waits for B
    // to apply it, as it does for a revoke).
    let tok = a.create_token("shared-agent").await;
    assert_eq!(
        b.proxy("api", "/warm", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );

    // Revoked through A: refused by B on the very next request, no polling.
    assert_eq!(
        a.revoke(&tok.id, Some("leaked")).await.status,
        StatusCode::OK
    );
    let resp = b.proxy("api", "/after-revoke", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());
    assert!(up.requests_to("/after-revoke").is_empty());

    // And the other way round, for a delete.
    let other = b.create_token("other-agent").await;
    assert_eq!(
        a.proxy("api", "/warm", Some(&other.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(b.delete(&other.id).await.status, StatusCode::NO_CONTENT);
    let resp = a.proxy("api", "/after-delete", Some(&other.bearer())).await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{}", resp.text());

    // Each process says how far it has applied the store's log, and that it is caught up.
    let head = a.audit("?limit=1").await[0]["seq"]
        .as_u64()
        .expect("an event sequence");
    for tg in [&a, &b] {
        wait_until(
            Duration::from_secs(10),
            "the applied sequence reaches the head",
            || async {
                (metric(tg, "tollgate_store_applied_sequence").await >= head as f64).then_some(())
            },
        )
        .await;
        assert_eq!(metric(tg, "tollgate_store_lag").await, 0.0);
    }
    a.assert_logs_free_of(&[&tok.secret, &other.secret]);
    b.assert_logs_free_of(&[&tok.secret, &other.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_started_on_a_store_in_use_sees_every_earlier_change() {
    let up = Upstream::start();
    let a = Tollgate::start(Config::single(&up));
    let revoked = a.create_token("revoked-before").await;
    let kept = a.create_token("kept").await;
    assert_eq!(a.revoke(&revoked.id, None).await.status, StatusCode::OK);

    let b = start_sharing(&a, Config::single(&up));
    assert_eq!(
        b.proxy("api", "/x", Some(&kept.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        b.proxy("api", "/x", Some(&revoked.bearer())).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// What one load client saw.
#[derive(Default)]
struct Seen {
    ok: usize,
    /// Answers other than the expected, and transport errors: each one a failed request.
    failures: Vec<String>,
    /// For the token revoked mid-run: the start of every request that was let through.
    accepted_at: Vec<Instant>,
    refused: usize,
}

/// Sends requests with `authorization` one after another over one client (keep-alive, as
/// agents do) until `stop`.
fn load_client(
    client: HttpClient,
    url: String,
    authorization: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    revocable: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let result = client
                .try_send(
                    http::Method::GET,
                    &url,
                    &[("authorization", &authorization)],
                )
                .await;
            let mut seen = seen.lock().unwrap();
            match result {
                Ok(resp) if resp.status == StatusCode::OK => {
                    seen.ok += 1;
                    if revocable {
                        seen.accepted_at.push(started);
                    }
                }
                Ok(resp) if revocable && resp.status == StatusCode::UNAUTHORIZED => {
                    seen.refused += 1;
                }
                Ok(resp) => seen
                    .failures
                    .push(format!("{}: {}", resp.status, resp.text())),
                Err(e) => seen.failures.push(e),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_successor_takes_over_the_ports_without_a_failed_request() {
    let up = Upstream::start();
    let config = || Config::single(&up).server("shutdown_grace = \"10s\"");
    let mut old = Tollgate::start(config());
    let steady = old.create_token("steady-agent").await;
    let doomed = old.create_token("doomed-agent").await;
    let url = old.proxy_url("api", "/load");

    let stop = Arc::new(AtomicBool::new(false));
    let steady_seen = Arc::new(Mutex::new(Seen::default()));
    let doomed_seen = Arc::new(Mutex::new(Seen::default()));
    let mut clients = Vec::new();
    for i in 0..6 {
        // Mostly HTTP/1.1 keep-alive, as agents send; one HTTP/2 connection too.
        let client = if i == 0 {
            HttpClient::http2()
        } else {
            HttpClient::http1()
        };
        clients.push(load_client(
            client,
            url.clone(),
            steady.bearer(),
            stop.clone(),
            steady_seen.clone(),
            false,
        ));
    }
    for _ in 0..2 {
        clients.push(load_client(
            HttpClient::http1(),
            url.clone(),
            doomed.bearer(),
            stop.clone(),
            doomed_seen.clone(),
            true,
        ));
    }
    wait_until(Duration::from_secs(10), "load is flowing", || async {
        (steady_seen.lock().unwrap().ok > 100).then_some(())
    })
    .await;

    // The successor binds the same ports while the old process serves them.
    let successor = start_sharing(
        &old,
        config()
            .bind("api", old.proxy_addr("api"))
            .bind("admin", old.admin_addr()),
    );
    assert_eq!(successor.proxy_addr("api"), old.proxy_addr("api"));

    // Revoked during the switch, through the shared admin port (either process answers).
    let revoke = old
        .revoke(&doomed.id, Some("rotated during the upgrade"))
        .await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.text());
    let revoked_at = Instant::now();

    old.sigterm();
    let (status, old) = tokio::task::spawn_blocking(move || (old.wait_exit(), old))
        .await
        .unwrap();
    assert!(
        status.success(),
        "the old process exits 0 after draining: {status:?}"
    );

    // The successor carries on alone.
    let served_before = steady_seen.lock().unwrap().ok;
    wait_until(
        Duration::from_secs(10),
        "the successor serves the load",
        || async { (steady_seen.lock().unwrap().ok > served_before + 100).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let steady_seen = steady_seen.lock().unwrap();
    assert!(
        steady_seen.failures.is_empty(),
        "{} of {} requests failed, first: {:?}",
        steady_seen.failures.len(),
        steady_seen.ok + steady_seen.failures.len(),
        steady_seen.failures.first()
    );
    let doomed_seen = doomed_seen.lock().unwrap();
    assert!(
        doomed_seen.failures.is_empty(),
        "failed: {:?}",
        doomed_seen.failures.first()
    );
    let accepted_after = doomed_seen
        .accepted_at
        .iter()
        .filter(|&&at| at >= revoked_at)
        .count();
    assert_eq!(
        accepted_after, 0,
        "requests accepted after the revoke reply"
    );
    assert!(
        doomed_seen.refused > 0,
        "the revoked token was still being sent"
    );
    old.assert_logs_free_of(&[&steady.secret, &doomed.secret]);
    successor.assert_logs_free_of(&[&steady.secret, &doomed.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn systemd_hears_ready_once_serving_and_stopping_at_sigterm() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let text = Config::single(&up).render(dir.path());
    let mut tg = Tollgate::try_start_in_with_env(
        dir,
        &text,
        Some("adm-notify-test-token".to_string()),
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    )
    .unwrap_or_else(|f| panic!("tollgate did not start: {f:#?}"));
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving: the listener answers at once.
    assert_eq!(
        tg.proxy("api", "/health", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    tg.sigterm();
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(tg.wait_exit().success());
}
