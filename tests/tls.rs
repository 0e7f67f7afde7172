//! TLS, black-box: HTTPS end to end (HTTP/1.1 and HTTP/2 by ALPN) to an HTTPS upstream that
//! demands a client certificate; the listener's certificate replaced on disk mid-traffic (by
//! rename and by a Kubernetes Secret's `..data` swap) without a failed request; bad new pairs
//! refused; the admin port over TLS for the command line; a bad pair at start.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::{StatusCode, Version};
use serde_json::Value;
use support::tls::*;
use support::*;
use tempfile::TempDir;

/// A test CA, an HTTPS upstream that demands a client certificate from it, and the files a
/// tollgate needs, written in its directory: `ca.pem`, `client.crt`/`client.key`.
struct Pki {
    ca: TestCa,
    client: Leaf,
    upstream: TlsUpstream,
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let ca = TestCa::new("tollgate test CA");
        let upstream = TlsUpstream::start(&ca, &ca.localhost("upstream"));
        let client = ca.issue("tollgate-api", &["tollgate-api"], Usage::Client);
        let dir = tempfile::tempdir().expect("create a temp dir");
        ca.write(&dir.path().join("ca.pem"));
        client.write(
            &dir.path().join("client.crt"),
            &dir.path().join("client.key"),
        );
        Pki {
            ca,
            client,
            upstream,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The keys of a TLS listener serving `cert`/`key`, forwarding to the upstream with mutual TLS.
    fn listener_keys(&self, cert: &Path, key: &Path) -> String {
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\nupstream_ca = {:?}\nupstream_client_cert = {:?}\n\
             upstream_client_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string(),
            self.path("ca.pem").display().to_string(),
            self.path("client.crt").display().to_string(),
            self.path("client.key").display().to_string(),
        )
    }

    /// Starts tollgate with one TLS listener, `api`, serving the pair in `cert`/`key` and
    /// forwarding to the upstream with mutual TLS.
    fn start_serving(self, cert: &Path, key: &Path) -> (Setup, Tollgate) {
        let config = support::Config::new().listener_with(
            "api",
            &self.upstream.url(),
            &self.listener_keys(cert, key),
        );
        self.start(config, None)
    }

    /// Starts tollgate in this directory with `config`; `admin_tls` adds keys to `[admin]`.
    fn start(
        self,
        config: support::Config,
        admin_tls: Option<(&Path, &Path)>,
    ) -> (Setup, Tollgate) {
        let text = render(&config, self.dir.path(), admin_tls);
        let token = format!("adm-{}", hex(&random_bytes(24)));
        let Pki {
            ca,
            client,
            upstream,
            dir,
        } = self;
        let tg = match Tollgate::try_start_in(dir, &text, Some(token)) {
            Ok(tg) => tg,
            Err(f) => panic!("tollgate did not become ready: {f:#?}\nconfig:\n{text}"),
        };
        (
            Setup {
                ca,
                client,
                _upstream: upstream,
            },
            tg,
        )
    }
}

/// What a test keeps once tollgate runs (the directory moved into the `Tollgate`).
struct Setup {
    ca: TestCa,
    client: Leaf,
    _upstream: TlsUpstream,
}

fn render(config: &support::Config, dir: &Path, admin_tls: Option<(&Path, &Path)>) -> String {
    let text = config.render(dir);
    match admin_tls {
        None => text,
        Some((cert, key)) => text.replacen(
            "[admin]\n",
            &format!(
                "[admin]\ntls_cert = {:?}\ntls_key = {:?}\n",
                cert.display().to_string(),
                key.display().to_string()
            ),
            1,
        ),
    }
}

/// The JSON log records whose message begins with `message`.
/// A config fetch with `authorization`, over a new TLS connection to `addr`.
async fn fetch_config(ca: &TestCa, alpn: Alpn, addr: std::net::SocketAddr, auth: &str) -> Resp {
    let mut conn = TlsClient::new(ca, alpn).connect(addr).await.unwrap();
    conn.get("/api/configs/1/toml", &[("authorization", auth)])
        .await
        .unwrap()
}

fn records_with(tg: &Tollgate, message: &str) -> Vec<Value> {
    tg.log_records()
        .into_iter()
        .filter(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(message))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn https_end_to_end_over_http1_and_http2_to_a_mutual_tls_upstream() {
    let pki = Pki::new();
    let serving = pki.ca.localhost("tollgate");
    serving.write(&pki.path("tls.crt"), &pki.path("tls.key"));
    let keys = pki.listener_keys(&pki.path("tls.crt"), &pki.path("tls.key"));
    // A second listener to the same upstream without a client certificate: refused there.
    let no_client_cert = format!(
        "tls_cert = {:?}\ntls_key = {:?}\nupstream_ca = {:?}\n",
        pki.path("tls.crt").display().to_string(),
        pki.path("tls.key").display().to_string(),
        pki.path("ca.pem").display().to_string(),
    );
    let config = support::Config::new()
        .listener_with("api", &pki.upstream.url(), &keys)
        .listener_with("anonymous", &pki.upstream.url(), &no_client_cert);
    let (setup, tg) = pki.start(config, None);
    let tok = tg.create_token("agent-1").await;
    let auth = tok.bearer();
    let addr = tg.proxy_addr("api");

    for (alpn, protocol, version) in [
        (Alpn::Http1, b"http/1.1".as_slice(), Version::HTTP_11),
        (Alpn::H2, b"h2".as_slice(), Version::HTTP_2),
    ] {
        let mut conn = TlsClient::new(&setup.ca, alpn)
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{alpn:?}: {e}"));
        assert_eq!(
            conn.peer_cert, serving.der,
            "{alpn:?}: the listener's certificate"
        );
        assert_eq!(conn.alpn.as_deref(), Some(protocol), "{alpn:?}: ALPN");
        let resp = conn
            .get("/api/configs/1/toml", &[("authorization", &auth)])
            .await
            .unwrap_or_else(|e| panic!("{alpn:?}: {e}"));
        assert_eq!(resp.version, version, "{alpn:?}: the protocol spoken");
        let echo = TlsEcho::of(&resp);
        assert_eq!(
            echo.client_cert_sha256(),
            Some(setup.client.sha256().as_str()),
            "{alpn:?}: the upstream saw tollgate's client certificate"
        );
        assert_eq!(
            echo.version(),
            "HTTP/1.1",
            "{alpn:?}: upstream requests are HTTP/1.1"
        );
        assert_eq!(echo.header("x-forwarded-proto"), vec!["https"], "{alpn:?}");
        assert_eq!(echo.header("x-tollgate-token-id"), vec![tok.id.clone()]);

        // Refusals are answered over TLS too, and never reach the upstream.
        let resp = conn.get("/api/configs/1/toml", &[]).await.unwrap();
        assert_unauthorized(
            &resp,
            "Missing or invalid Authorization header",
            Some(false),
        );
    }

    // Without a client certificate, the upstream refuses the handshake: 502, as for any
    // upstream that cannot be reached.
    let resp = fetch_config(&setup.ca, Alpn::Http1, tg.proxy_addr("anonymous"), &auth).await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY, "{}", resp.text());
    assert_eq!(resp.error(), "Upstream unavailable");

    // A client that does not speak TLS gets no answer, and the listener goes on serving.
    let plain = HttpClient::http1()
        .try_send(http::Method::GET, &format!("http://{addr}/"), &[])
        .await;
    assert!(plain.is_err(), "plain HTTP on a TLS port: {plain:?}");
    let resp = fetch_config(&setup.ca, Alpn::H2, addr, &auth).await;
    assert_eq!(resp.status, StatusCode::OK);
    tg.assert_logs_free_of(&[&tok.secret, &serving.key_pem, &setup.client.key_pem]);
}

// ---------------------------------------------------------------------------------------------
// Reload under traffic
// ---------------------------------------------------------------------------------------------

/// Requests through a TLS listener from several clients until stopped: keep-alive connections
/// opened before anything changes (HTTP/1.1 and HTTP/2), and clients that open a new connection
/// for every request. Every failure is kept, with what it was.
struct Traffic {
    stop: Arc<AtomicBool>,
    /// Per client: its name, its count of answered requests, its task.
    workers: Vec<(String, Arc<AtomicU64>, tokio::task::JoinHandle<Vec<String>>)>,
}

impl Traffic {
    /// Starts the clients and returns once each has had a few answers.
    async fn start(client_ca: &TestCa, addr: std::net::SocketAddr, auth: &str) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for alpn in [Alpn::Http1, Alpn::H2] {
            let client = TlsClient::new(client_ca, alpn);
            // Opened now, before the certificate changes, and used to the end.
            let kept = client
                .connect(addr)
                .await
                .expect("open a keep-alive connection");
            for keep_alive in [Some(kept), None] {
                let name = format!(
                    "{alpn:?} {}",
                    if keep_alive.is_some() {
                        "keep-alive"
                    } else {
                        "new connections"
                    }
                );
                let answered = Arc::new(AtomicU64::new(0));
                let handle = tokio::spawn(worker(
                    client.clone(),
                    addr,
                    keep_alive,
                    auth.to_string(),
                    stop.clone(),
                    answered.clone(),
                ));
                workers.push((name, answered, handle));
            }
        }
        let traffic = Traffic { stop, workers };
        traffic.answers(3, "before the change").await;
        traffic
    }

    /// Waits until every client has had `n` more answers.
    async fn answers(&self, n: u64, when: &str) {
        for (name, answered, handle) in &self.workers {
            let target = answered.load(Ordering::SeqCst) + n;
            wait_until(DEADLINE, &format!("{name}: answers {when}"), || {
                // A client that gave up has failures to report: `finish` shows them.
                let done = answered.load(Ordering::SeqCst) >= target || handle.is_finished();
                async move { done.then_some(()) }
            })
            .await;
        }
    }

    /// Lets every client (the keep-alive connections opened before the change included) have a
    /// few more answers, then stops them all and asserts that not one request failed.
    async fn finish(self) {
        self.answers(3, "after the change").await;
        self.stop.store(true, Ordering::SeqCst);
        let mut failures = Vec::new();
        for (name, _, handle) in self.workers {
            for f in handle.await.expect("a traffic worker panicked") {
                failures.push(format!("{name}: {f}"));
            }
        }
        assert!(failures.is_empty(), "failed requests: {failures:#?}");
    }
}

async fn worker(
    client: TlsClient,
    addr: std::net::SocketAddr,
    mut keep_alive: Option<TlsConn>,
    auth: String,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) -> Vec<String> {
    let mut failures = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let result = match keep_alive.as_mut() {
            Some(conn) => conn.get("/traffic", &[("authorization", &auth)]).await,
            None => match client.connect(addr).await {
                Ok(mut conn) => conn.get("/traffic", &[("authorization", &auth)]).await,
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(resp) if resp.status == StatusCode::OK => {
                answered.fetch_add(1, Ordering::SeqCst);
            }
            Ok(resp) => failures.push(format!("{} {}", resp.status, resp.text())),
            Err(e) => {
                failures.push(e);
                // A broken keep-alive connection stays broken: nothing more to learn from it.
                if keep_alive.is_some() {
                    return failures;
                }
            }
        }
        // Pace the clients: the machine is shared, and a few hundred requests a second show it.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    failures
}

/// Waits until a new connection presents `cert`.
async fn wait_for_certificate(client: &TlsClient, addr: std::net::SocketAddr, cert: &Leaf) {
    wait_until(
        DEADLINE,
        "new connections to present the new certificate",
        || async {
            let conn = client.connect(addr).await.ok()?;
            (conn.peer_cert == cert.der).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_replaced_by_rename_is_served_to_new_connections_without_a_failed_request() {
    let pki = Pki::new();
    let (old, new) = (
        pki.ca.localhost("tollgate-1"),
        pki.ca.localhost("tollgate-2"),
    );
    let (cert, key) = (pki.path("tls.crt"), pki.path("tls.key"));
    old.write(&cert, &key);
    let (setup, tg) = pki.start_serving(&cert, &key);
    let tok = tg.create_token("agent-1").await;
    let addr = tg.proxy_addr("api");
    let client = TlsClient::new(&setup.ca, Alpn::Http1);
    assert_eq!(client.connect(addr).await.unwrap().peer_cert, old.der);

    let traffic = Traffic::start(&setup.ca, addr, &tok.bearer()).await;
    // What deployment tools do: write beside, rename over; the key first, then the certificate.
    replace_by_rename(&key, &new.key_pem);
    replace_by_rename(&cert, &new.cert_pem);
    wait_for_certificate(&client, addr, &new).await;
    traffic.finish().await;

    let reloaded = records_with(&tg, "certificate reloaded");
    assert!(
        reloaded
            .iter()
            .any(|r| r["listener"] == "api" && r["sha256"] == sha256_hex(&new.der)),
        "a log line names the listener and the new certificate: {reloaded:#?}"
    );
    tg.assert_logs_free_of(&[&old.key_pem, &new.key_pem]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_secret_update_is_served_to_new_connections_without_a_failed_request() {
    let pki = Pki::new();
    let (old, new) = (
        pki.ca.localhost("tollgate-1"),
        pki.ca.localhost("tollgate-2"),
    );
    let mut mount = SecretMount::new(&pki.path("secret"), &old);
    let (setup, tg) = pki.start_serving(&mount.cert(), &mount.key());
    let tok = tg.create_token("agent-1").await;
    let addr = tg.proxy_addr("api");
    let client = TlsClient::new(&setup.ca, Alpn::H2);
    assert_eq!(client.connect(addr).await.unwrap().peer_cert, old.der);

    let traffic = Traffic::start(&setup.ca, addr, &tok.bearer()).await;
    // No event names tls.crt: only `..data` changes, in one rename.
    mount.update(&new);
    wait_for_certificate(&client, addr, &new).await;
    traffic.finish().await;
    assert_eq!(
        records_with(&tg, "new certificate refused"),
        Vec::<Value>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_new_pair_is_refused_once_and_the_old_one_served_until_a_good_pair_comes() {
    let pki = Pki::new();
    let (old, new) = (
        pki.ca.localhost("tollgate-1"),
        pki.ca.localhost("tollgate-2"),
    );
    let stranger = pki.ca.localhost("someone-else");
    let (cert, key) = (pki.path("tls.crt"), pki.path("tls.key"));
    old.write(&cert, &key);
    let (setup, tg) = pki.start_serving(&cert, &key);
    let addr = tg.proxy_addr("api");
    let client = TlsClient::new(&setup.ca, Alpn::Http1);
    let refusals = |needle: &str| -> Vec<Value> {
        records_with(&tg, "new certificate refused")
            .into_iter()
            .filter(|r| r["error"].as_str().is_some_and(|e| e.contains(needle)))
            .collect()
    };

    // A key that belongs to another certificate.
    replace_by_rename(&key, &stranger.key_pem);
    wait_for(DEADLINE, "the mismatched key to be refused", || {
        !refusals("does not match").is_empty()
    });
    let refused = &refusals("does not match")[0];
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["listener"], "api", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("tls_key") && error.contains(&key.display().to_string()),
        "the line names the key and its file: {error}"
    );
    assert_eq!(client.connect(addr).await.unwrap().peer_cert, old.der);

    // A certificate file that holds no certificate.
    replace_by_rename(&cert, "this is not a certificate\n");
    wait_for(DEADLINE, "the garbage certificate to be refused", || {
        !refusals("holds no certificate").is_empty()
    });
    assert_eq!(client.connect(addr).await.unwrap().peer_cert, old.der);
    // Each bad state was reported once, whatever woke the reloader since.
    assert_eq!(refusals("does not match").len(), 1);
    assert_eq!(refusals("holds no certificate").len(), 1);

    // A good pair is taken.
    replace_by_rename(&key, &new.key_pem);
    replace_by_rename(&cert, &new.cert_pem);
    wait_for_certificate(&client, addr, &new).await;
    let text = tg.logs().join("\n");
    for secret in [&old.key_pem, &new.key_pem, &stranger.key_pem] {
        // Any line of a PEM key body is key material.
        let body_line = secret.lines().nth(1).unwrap();
        assert!(!text.contains(body_line), "key material in the logs");
    }
}

/// Starts tollgate in `pki`'s directory with `text`, which must fail it: exit 1, before serving.
/// `why` says what should have stopped it.
fn refused_start(pki: Pki, text: &str, why: &str) -> StartFailure {
    let Pki { dir, .. } = pki;
    let failure = match Tollgate::try_start_in(dir, text, Some("adm-x".repeat(8))) {
        Ok(_) => panic!("{why}"),
        Err(f) => f,
    };
    assert_eq!(
        failure.status.and_then(|s| s.code()),
        Some(1),
        "{failure:#?}"
    );
    failure
}

#[test]
fn a_mismatched_pair_at_start_stops_it_with_one_clear_line() {
    let pki = Pki::new();
    let (one, other) = (pki.ca.localhost("one"), pki.ca.localhost("other"));
    std::fs::write(pki.path("tls.crt"), &one.cert_pem).unwrap();
    std::fs::write(pki.path("tls.key"), &other.key_pem).unwrap();
    let config = support::Config::new().listener_with(
        "api",
        &pki.upstream.url(),
        &pki.listener_keys(&pki.path("tls.crt"), &pki.path("tls.key")),
    );
    let text = render(&config, pki.dir.path(), None);
    let key_path = pki.path("tls.key").display().to_string();
    let failure = refused_start(
        pki,
        &text,
        "tollgate started with a key that does not match its certificate",
    );
    let lines: Vec<&String> = failure
        .stderr
        .iter()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {failure:#?}");
    let line = lines[0];
    assert!(
        line.contains("listener \"api\"")
            && line.contains("tls_key")
            && line.contains(&key_path)
            && line.contains("does not match"),
        "the line names the listener, the key, its file and the reason: {line}"
    );
    assert!(
        !failure.output().contains("\"listening\""),
        "nothing was bound: {failure:#?}"
    );
}

#[test]
fn an_unreadable_upstream_ca_at_start_names_the_key_and_the_file() {
    let pki = Pki::new();
    let serving = pki.ca.localhost("tollgate");
    serving.write(&pki.path("tls.crt"), &pki.path("tls.key"));
    let keys = pki
        .listener_keys(&pki.path("tls.crt"), &pki.path("tls.key"))
        .replace("ca.pem", "missing-ca.pem");
    let config = support::Config::new().listener_with("api", &pki.upstream.url(), &keys);
    let text = render(&config, pki.dir.path(), None);
    let failure = refused_start(pki, &text, "tollgate started without its upstream CA file");
    let stderr = failure.stderr.join("\n");
    assert!(
        stderr.contains("upstream_ca") && stderr.contains("missing-ca.pem"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// The admin port
// ---------------------------------------------------------------------------------------------

#[test]
fn the_command_line_reaches_an_admin_port_over_tls() {
    let pki = Pki::new();
    let admin = pki.ca.localhost("tollgate-admin");
    // The admin's certificate file carries its CA after the leaf, as many bundles do.
    std::fs::write(
        pki.path("admin.crt"),
        format!("{}{}", admin.cert_pem, pki.ca.cert_pem),
    )
    .unwrap();
    std::fs::write(pki.path("admin.key"), &admin.key_pem).unwrap();
    let (admin_cert, admin_key) = (pki.path("admin.crt"), pki.path("admin.key"));
    let ca_path = pki.path("ca.pem").display().to_string();
    let config = support::Config::new().listener("api", &pki.upstream.url());
    let (_setup, tg) = pki.start(config, Some((&admin_cert, &admin_key)));
    let port = tg.admin_addr().port();
    let token = [("TOLLGATE_ADMIN_TOKEN", tg.admin_token())];

    // With the CA named on the command line, by IP address.
    let url = format!("https://127.0.0.1:{port}");
    let created = tg
        .cli_raw(
            &[
                "token",
                "create",
                "--name",
                "agent-1",
                "--json",
                "--admin-url",
                &url,
                "--admin-ca",
                &ca_path,
            ],
            &token,
        )
        .ok()
        .json();
    let id = created["id"].as_str().unwrap().to_string();

    // With the CA from $TOLLGATE_ADMIN_CA, by name.
    let url = format!("https://localhost:{port}");
    let listed = tg
        .cli_raw(
            &["token", "list", "--json", "--admin-url", &url],
            &[token[0], ("TOLLGATE_ADMIN_CA", &ca_path)],
        )
        .ok()
        .json();
    assert_eq!(ids_of(&listed["tokens"]), vec![id.clone()]);

    // With neither: the config's own admin certificate file (leaf and CA) is trusted.
    let config_path = tg.config_path().display().to_string();
    let shown = tg
        .cli_raw(
            &[
                "token",
                "show",
                &id,
                "--json",
                "--config",
                &config_path,
                "--admin-url",
                &url,
            ],
            &token,
        )
        .ok()
        .json();
    assert_eq!(shown["id"], id.as_str());

    // Trusting another CA only: refused, exit 1, the reason on stderr.
    let other_ca = TestCa::new("another CA");
    let other_path = tg.dir().join("other-ca.pem");
    other_ca.write(&other_path);
    let out = tg.cli_raw(
        &[
            "token",
            "list",
            "--admin-url",
            &url,
            "--admin-ca",
            &other_path.display().to_string(),
        ],
        &token,
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("certificate") && !out.stderr.contains(tg.admin_token()),
        "{out:#?}"
    );

    // Plain HTTP to the TLS admin port is not served.
    let out = tg.cli_raw(
        &[
            "token",
            "list",
            "--admin-url",
            &format!("http://127.0.0.1:{port}"),
        ],
        &token,
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_upstream_client_certificate_is_shown_on_new_upstream_connections() {
    let pki = Pki::new();
    let serving = pki.ca.localhost("tollgate");
    serving.write(&pki.path("tls.crt"), &pki.path("tls.key"));
    let renewed = pki
        .ca
        .issue("tollgate-api-2", &["tollgate-api"], Usage::Client);
    let (client_cert, client_key) = (pki.path("client.crt"), pki.path("client.key"));
    // Idle upstream connections close quickly, so that new ones are made while the test polls.
    let keys = format!(
        "{}upstream_idle_timeout = \"100ms\"\n",
        pki.listener_keys(&pki.path("tls.crt"), &pki.path("tls.key"))
    );
    let config = support::Config::new().listener_with("api", &pki.upstream.url(), &keys);
    let (setup, tg) = pki.start(config, None);
    let tok = tg.create_token("agent-1").await;
    let auth = tok.bearer();
    let client = TlsClient::new(&setup.ca, Alpn::Http1);
    let seen_by_upstream = || async {
        let mut conn = client.connect(tg.proxy_addr("api")).await.ok()?;
        let resp = conn
            .get("/whoami", &[("authorization", &auth)])
            .await
            .ok()?;
        TlsEcho::of(&resp).client_cert_sha256().map(str::to_string)
    };
    assert_eq!(seen_by_upstream().await, Some(setup.client.sha256()));

    replace_by_rename(&client_key, &renewed.key_pem);
    replace_by_rename(&client_cert, &renewed.cert_pem);
    // Pooled upstream connections keep the certificate they were opened with; each look waits
    // for the idle one to close, so that the request opens a new one.
    wait_until(
        DEADLINE,
        "the upstream to see the renewed client certificate",
        || async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            (seen_by_upstream().await == Some(renewed.sha256())).then_some(())
        },
    )
    .await;
    let reloaded = records_with(&tg, "certificate reloaded");
    assert!(
        reloaded
            .iter()
            .any(|r| r["listener"] == "api" && r["role"] == "upstream client"),
        "{reloaded:#?}"
    );
}
