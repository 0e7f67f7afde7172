//! The process's life, black-box: startup lines and readiness, the admin token file, fail-closed
//! starts, graceful shutdown on SIGTERM, restarts.

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn startup_prints_listening_lines_then_ready() {
    let a = Upstream::start();
    let b = Upstream::start();
    let tg = Tollgate::start(
        Config::new()
            .listener("api", &a.url())
            .listener("heartbeat", &b.url()),
    );
    let records = tg.log_records();
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| records.iter().position(pred);
    let ready = pos(&|r| r["message"] == "ready").expect("a ready line");
    for name in ["api", "heartbeat", "admin"] {
        let i = pos(&|r| r["message"] == "listening" && r["listener"] == name)
            .unwrap_or_else(|| panic!("no listening line for {name}: {records:#?}"));
        assert!(i < ready, "{name} is listening before ready");
        let addr: SocketAddr = records[i]["addr"]
            .as_str()
            .expect("addr is a string")
            .parse()
            .expect("addr is a socket address");
        assert_ne!(addr.port(), 0, "the bound port, not the configured 0");
    }
    for r in &records {
        assert!(r.get("timestamp").is_some(), "timestamp field: {r}");
        assert!(r.get("level").is_some(), "level field: {r}");
    }
    // Every stdout line is JSON in json mode.
    for line in tg.logs() {
        assert!(log_json(&line).is_some(), "not a JSON log line: {line}");
    }
    let http = HttpClient::http1();
    let base = tg.admin_url();
    assert_eq!(
        http.get(&format!("{base}/readyz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.get(&format!("{base}/healthz"), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_admin_token_file_is_generated_with_mode_0600() {
    let up = Upstream::start();
    let tg = Tollgate::start_with(Config::single(&up), None);
    let path = tg.admin_token_path();
    assert_eq!(file_mode(&path), 0o600, "admin token file mode");
    let token = tg.admin_token().to_string();
    assert!(token.len() >= 16, "a generated admin token is long enough");
    // It is the admin token.
    let created = tg.create_token("with-generated-admin-token").await;
    assert_eq!(
        tg.proxy("api", "/x", Some(&created.bearer())).await.status,
        StatusCode::OK
    );
    tg.assert_logs_free_of(&[&token]);
}

#[test]
fn a_short_admin_token_stops_the_start() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let text = Config::single(&up).render(dir.path());
    let failure = match Tollgate::try_start_in(dir, &text, Some("short".into())) {
        Ok(_) => panic!("started with a 5-character admin token"),
        Err(f) => f,
    };
    let status = failure.status.expect("the process exits by itself");
    assert!(!status.success(), "{failure:#?}");
}

#[test]
fn a_store_that_cannot_be_opened_stops_the_start() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    // The store's parent is a regular file: nothing can be created under it.
    std::fs::write(dir.path().join("not-a-dir"), b"x").unwrap();
    let text = Config::single(&up).render(dir.path()).replace(
        &dir.path().join("tollgate.redb").display().to_string(),
        &dir.path()
            .join("not-a-dir")
            .join("tollgate.redb")
            .display()
            .to_string(),
    );
    let failure =
        match Tollgate::try_start_in(dir, &text, Some(format!("adm-{}", hex(&random_bytes(16))))) {
            Ok(_) => panic!("started on a store that cannot be opened"),
            Err(f) => f,
        };
    let status = failure.status.expect("the process exits by itself");
    assert!(!status.success(), "{failure:#?}");
    assert!(
        !failure
            .stdout
            .iter()
            .any(|l| log_json(l).is_some_and(|r| r["message"] == "ready")),
        "never ready: {failure:#?}"
    );
    let all = failure.output();
    assert!(!all.trim().is_empty(), "a clear error is printed");
}

#[test]
fn an_unknown_config_key_stops_the_start() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let text = Config::single(&up)
        .render(dir.path())
        .replace("[admin]\n", "[admin]\nbindd = \"127.0.0.1:0\"\n");
    let failure =
        match Tollgate::try_start_in(dir, &text, Some(format!("adm-{}", hex(&random_bytes(16))))) {
            Ok(_) => panic!("started with an unknown config key"),
            Err(f) => f,
        };
    let status = failure.status.expect("the process exits by itself");
    assert!(!status.success());
    let all = failure.output();
    assert!(all.contains("bindd"), "the error names the key: {all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    let up = Upstream::start();
    let mut tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent").await;
    let addr = tg.proxy_addr("api");
    let url = tg.proxy_url("api", "/slow/1500");
    let auth = tok.bearer();

    let client = HttpClient::http1();
    let in_flight =
        tokio::spawn(async move { client.get(&url, &[("authorization", &auth)]).await });
    up.wait_for_path("/slow/1500").await;
    tg.sigterm();

    // New connections are refused once it stops accepting (at the latest, when it exits).
    wait_until(DEADLINE, "the proxy port to refuse connections", || async {
        tokio::net::TcpStream::connect(addr).await.err().map(|_| ())
    })
    .await;

    let resp = in_flight.await.expect("the in-flight request task");
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.echo().path, "/slow/1500");

    let status = tg.wait_exit();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after the exit"
    );
    tg.assert_logs_free_of(&[&tok.secret, tok.hex_part(), tg.admin_token()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_an_idle_server_exits_0_and_restart_serves_again() {
    let up = Upstream::start();
    let mut tg = Tollgate::start(Config::single(&up));
    let tok = tg.create_token("agent").await;
    let old_admin = tg.admin_addr();
    let status = tg.stop();
    assert!(status.success(), "exit status: {status}");
    assert!(tokio::net::TcpStream::connect(old_admin).await.is_err());

    tg.restart();
    assert_eq!(
        tg.proxy("api", "/again", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(tg.record(&tok.id).await["status"], "active");
    let ready_lines = tg
        .log_records()
        .iter()
        .filter(|r| r["message"] == "ready")
        .count();
    assert_eq!(ready_lines, 2, "one ready line per run");
}
