//! In front of a Telegraf Controller, black-box: a stand-in Controller on its two ports, tollgate's
//! `ui` and `heartbeat` listeners with the `telegraf-controller` profile in front of them, and the
//! traffic of Telegraf agents, browsers and probes through real sockets. Routes and permissions,
//! path normalisation, upstream credentials, session cookies, token import, metrics and the
//! access log.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::controller::*;
use support::*;

/// Every resource of the Controller's permission model.
const RESOURCES: [&str; 13] = [
    "configs",
    "agents",
    "reporting-rules",
    "labels",
    "heartbeat",
    "tokens",
    "analytics",
    "users",
    "invites",
    "password-resets",
    "settings",
    "license",
    "entitlements",
];

/// Every outcome label of `tollgate_requests_total`.
const OUTCOMES: [&str; 15] = [
    "forwarded",
    "public",
    "session",
    "missing",
    "format",
    "unknown",
    "revoked",
    "deleted",
    "expired",
    "permission",
    "denied",
    "bad_path",
    "bad_body",
    "upstream_unavailable",
    "upstream_timeout",
];

const INVALID_PATH: &str = "Invalid request path";

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// Listeners `ui` and `heartbeat` in front of the stand-in's two ports, both with the profile;
/// `ui_extra` and `heartbeat_extra` follow the profile line (keys first, then route tables).
fn controller_config(ctl: &Controller, ui_extra: &str, heartbeat_extra: &str) -> Config {
    Config::new()
        .listener_with(
            "ui",
            &ctl.ui_url(),
            &format!("profile = \"telegraf-controller\"\n{ui_extra}"),
        )
        .listener_with(
            "heartbeat",
            &ctl.heartbeat_url(),
            &format!("profile = \"telegraf-controller\"\n{heartbeat_extra}"),
        )
}

/// The stand-in and a tollgate in front of it.
fn start(ui_extra: &str, heartbeat_extra: &str) -> (Controller, Tollgate) {
    let ctl = Controller::start();
    let tg = Tollgate::start(controller_config(&ctl, ui_extra, heartbeat_extra));
    (ctl, tg)
}

/// A token holding exactly `permissions`.
async fn token(tg: &Tollgate, name: &str, permissions: &[&str]) -> Created {
    tg.create_token_with(json!({ "name": name, "permissions": permissions }))
        .await
}

/// `RESOURCE:action` for every resource.
fn on_every_resource(action: &str) -> Vec<String> {
    RESOURCES.iter().map(|r| format!("{r}:{action}")).collect()
}

/// A request through `listener` with the given `Authorization` (or none) and no body.
async fn send(
    tg: &Tollgate,
    listener: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
) -> Resp {
    let mut headers = Vec::new();
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    tg.proxy_send(listener, method, path, &headers, "").await
}

/// The Controller port behind a listener of `controller_config`.
fn port_of(listener: &str) -> Port {
    match listener {
        "heartbeat" => Port::Heartbeat,
        _ => Port::Ui,
    }
}

/// A name for a random environment variable, so that tests never share one.
fn fresh_var(stem: &str) -> String {
    format!(
        "TOLLGATE_TEST_{stem}_{}",
        hex(&random_bytes(6)).to_uppercase()
    )
}

// ---------------------------------------------------------------------------------------------
// Expectations
// ---------------------------------------------------------------------------------------------

/// What tollgate should do with one request.
#[derive(Clone, Debug)]
enum Want {
    /// Forwarded on a public route, no token looked at.
    Public,
    /// Forwarded after a token check.
    Forwarded,
    /// Forwarded on a session cookie.
    Session,
    Missing,
    Format,
    Unknown,
    Revoked,
    /// 403 naming the permission.
    Permission(String),
    /// 403 `Forbidden` from a `deny` default.
    Denied,
    BadPath,
}

impl Want {
    fn outcome(&self) -> &'static str {
        match self {
            Want::Public => "public",
            Want::Forwarded => "forwarded",
            Want::Session => "session",
            Want::Missing => "missing",
            Want::Format => "format",
            Want::Unknown => "unknown",
            Want::Revoked => "revoked",
            Want::Permission(_) => "permission",
            Want::Denied => "denied",
            Want::BadPath => "bad_path",
        }
    }
}

/// Counts what the metrics should show: requests per listener and outcome, and permission
/// denials per listener and permission.
#[derive(Default)]
struct Tally {
    requests: BTreeMap<(String, String), u64>,
    denials: BTreeMap<(String, String), u64>,
}

impl Tally {
    fn add(&mut self, listener: &str, want: &Want) {
        *self
            .requests
            .entry((listener.to_string(), want.outcome().to_string()))
            .or_default() += 1;
        if let Want::Permission(p) = want {
            *self
                .denials
                .entry((listener.to_string(), p.clone()))
                .or_default() += 1;
        }
    }

    /// Asserts every counted sample on the metrics page, exactly.
    async fn assert_metrics(&self, tg: &Tollgate) {
        let text = metrics(tg).await;
        for ((listener, outcome), n) in &self.requests {
            assert_sample(
                &text,
                &format!(
                    "tollgate_requests_total{{listener=\"{listener}\",outcome=\"{outcome}\"}} {n}"
                ),
            );
        }
        for ((listener, permission), n) in &self.denials {
            assert_sample(
                &text,
                &format!(
                    "tollgate_permission_denials_total{{listener=\"{listener}\",permission=\"{permission}\"}} {n}"
                ),
            );
        }
    }
}

/// Sends one request and checks tollgate's answer against `want`; the stand-in must have received
/// it exactly when it was to be forwarded. Returns what the stand-in received, if anything.
async fn expect(
    ctl: &Controller,
    tg: &Tollgate,
    listener: &str,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    want: &Want,
) -> Option<Received> {
    let before = ctl.count();
    let what = format!(
        "{method} {path} on {listener} ({})",
        match authorization {
            None => "no Authorization".to_string(),
            Some(a) if a.len() > 20 => format!("Authorization {}…", &a[..20]),
            Some(a) => format!("Authorization {a:?}"),
        }
    );
    let head = method == Method::HEAD;
    let resp = send(tg, listener, method, path, authorization).await;
    if head {
        check_head(ctl, before, &resp, listener, want, &what)
    } else {
        check(ctl, before, &resp, listener, want, &what)
    }
}

/// `check` for a `HEAD`, whose answers have no body to compare: the status, the challenge, and
/// whether the Controller saw it.
fn check_head(
    ctl: &Controller,
    before: usize,
    resp: &Resp,
    listener: &str,
    want: &Want,
    what: &str,
) -> Option<Received> {
    assert!(resp.body.is_empty(), "{what}: a HEAD answer has no body");
    let status = match want {
        Want::Public | Want::Forwarded | Want::Session => {
            assert_eq!(
                resp.header("x-controller-port"),
                Some(port_of(listener).as_str()),
                "{what}: should be forwarded ({want:?}), got {}",
                resp.status
            );
            assert_eq!(
                ctl.count(),
                before + 1,
                "{what}: one request reaches the Controller"
            );
            return ctl.last();
        }
        Want::Missing | Want::Format | Want::Unknown | Want::Revoked => StatusCode::UNAUTHORIZED,
        Want::Permission(_) | Want::Denied => StatusCode::FORBIDDEN,
        Want::BadPath => StatusCode::BAD_REQUEST,
    };
    assert_eq!(resp.status, status, "{what}: expected {status} ({want:?})");
    if let Want::Permission(_) = want {
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{what}: 403 challenge {challenge:?}"
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"tollgate\""),
            "{what}: 401 challenge {challenge:?}"
        );
    }
    assert!(
        resp.header("x-controller-port").is_none(),
        "{what}: tollgate's own answer"
    );
    assert_eq!(
        ctl.count(),
        before,
        "{what}: a refused request must never reach the Controller"
    );
    None
}

/// Checks an answer against `want` (see `expect`).
fn check(
    ctl: &Controller,
    before: usize,
    resp: &Resp,
    listener: &str,
    want: &Want,
    what: &str,
) -> Option<Received> {
    match want {
        Want::Public | Want::Forwarded | Want::Session => {
            assert_eq!(
                resp.header("x-controller-port"),
                Some(port_of(listener).as_str()),
                "{what}: should be forwarded ({want:?}), got {} {:?}",
                resp.status,
                resp.text()
            );
            assert_eq!(
                ctl.count(),
                before + 1,
                "{what}: exactly one request reaches the Controller"
            );
            return ctl.last();
        }
        Want::Missing => assert_unauthorized_for(
            resp,
            "Missing or invalid Authorization header",
            Some(false),
            what,
        ),
        Want::Format => assert_unauthorized_for(resp, "Invalid token format", Some(true), what),
        Want::Unknown | Want::Revoked => {
            assert_unauthorized_for(resp, "Invalid token", Some(true), what)
        }
        Want::Permission(p) => assert_insufficient(resp, p, what),
        Want::Denied => {
            assert_eq!(
                resp.status,
                StatusCode::FORBIDDEN,
                "{what}: expected 403 Forbidden, got {} {:?}",
                resp.status,
                resp.text()
            );
            assert_eq!(resp.json(), json!({"error": "Forbidden"}), "{what}");
        }
        Want::BadPath => assert_bad_path(resp, what),
    }
    assert!(
        resp.header("x-controller-port").is_none(),
        "{what}: the answer must be tollgate's own"
    );
    assert_eq!(
        ctl.count(),
        before,
        "{what}: a refused request must never reach the Controller"
    );
    None
}

fn assert_unauthorized_for(resp: &Resp, message: &str, token_given: Option<bool>, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::UNAUTHORIZED,
        "{what}: expected 401 {message:?}, got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_unauthorized(resp, message, token_given);
}

/// Asserts the 403 of a token that lacks `permission`.
fn assert_insufficient(resp: &Resp, permission: &str, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::FORBIDDEN,
        "{what}: expected 403 for {permission}, got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_eq!(
        resp.json(),
        json!({ "error": format!("Insufficient permissions: {permission} required") }),
        "{what}: exact 403 body"
    );
    let challenge = resp
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: a 403 without WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer realm=\"tollgate\"")
            && challenge.contains("error=\"insufficient_scope\""),
        "{what}: 403 challenge {challenge:?}"
    );
}

fn assert_bad_path(resp: &Resp, what: &str) {
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{what}: expected 400, got {} {:?}",
        resp.status,
        resp.text()
    );
    assert_eq!(
        resp.json(),
        json!({ "error": INVALID_PATH }),
        "{what}: exact 400 body"
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics and logs
// ---------------------------------------------------------------------------------------------

async fn metrics(tg: &Tollgate) -> String {
    let resp = HttpClient::http1()
        .get(&format!("{}/metrics", tg.admin_url()), &[])
        .await;
    assert_eq!(resp.status, StatusCode::OK, "metrics: {}", resp.text());
    resp.text()
}

fn assert_sample(text: &str, sample: &str) {
    assert!(
        text.lines().any(|l| l == sample),
        "{sample} on the metrics page:\n{}",
        text.lines()
            .filter(|l| l.starts_with("tollgate_requests_total")
                || l.starts_with("tollgate_permission_denials_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every access line logged so far.
fn access_lines(tg: &Tollgate) -> Vec<Value> {
    tg.log_records()
        .into_iter()
        .filter(|r| r["message"] == "access")
        .collect()
}

/// Waits for the first access line that `pred` accepts, and returns it.
fn wait_access(tg: &Tollgate, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    wait_for(DEADLINE, what, || {
        found = access_lines(tg).into_iter().find(|r| pred(r));
        found.is_some()
    });
    found.expect("set when the wait ends")
}

/// The hint that logs and records show for a well-formed token: the prefix, an ellipsis, and the
/// last four characters.
fn hint_of(secret: &str) -> String {
    format!("{TOKEN_PREFIX}…{}", &secret[secret.len() - 4..])
}

// ---------------------------------------------------------------------------------------------
// Telegraf's own traffic
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn telegraf_fetches_its_config_with_either_scheme() {
    let (ctl, tg) = start("", "");
    let agent = tg.create_token("agent-east-1").await;
    for scheme in ["Bearer", "bearer", "BEARER", "Token", "token", "TOKEN"] {
        let auth = format!("{scheme} {}", agent.secret);
        let before = ctl.count();
        let resp = tg
            .proxy_send(
                "ui",
                Method::GET,
                "/api/configs/cfg-42/toml?param=x",
                &[
                    ("authorization", &auth),
                    ("accept", "application/toml"),
                    ("user-agent", "Telegraf/1.36.1"),
                ],
                "",
            )
            .await;
        let what = format!("config fetch with scheme {scheme:?}");
        assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
        assert_eq!(resp.header("content-type"), Some("application/toml"));
        assert_eq!(
            resp.header("last-modified"),
            Some(CONTROLLER_LAST_MODIFIED),
            "{what}: Last-Modified passes through"
        );
        assert_eq!(resp.text(), config_body("cfg-42"), "{what}: body");

        let got = check(&ctl, before, &resp, "ui", &Want::Forwarded, &what)
            .expect("forwarded requests are recorded");
        assert_eq!(got.port, Port::Ui);
        assert_eq!(got.method, "GET");
        assert_eq!(got.path, "/api/configs/cfg-42/toml");
        assert_eq!(got.query.as_deref(), Some("param=x"), "{what}: the query");
        assert_eq!(
            got.header("authorization"),
            vec![auth.as_str()],
            "{what}: forward mode sends the agent's Authorization unchanged"
        );
        assert_eq!(got.header("accept"), vec!["application/toml"]);
        assert_eq!(got.header("user-agent"), vec!["Telegraf/1.36.1"]);
        assert_eq!(got.header("x-tollgate-token-id"), vec![agent.id.as_str()]);
        assert_eq!(
            got.header("x-tollgate-token-name"),
            vec![agent.name.as_str()]
        );
    }
    assert_eq!(ctl.received_on(Port::Ui).len(), 6);
    assert!(ctl.received_on(Port::Heartbeat).is_empty());
    tg.assert_logs_free_of(&[&agent.secret, agent.hex_part()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_config_watchers_head_sees_last_modified_unchanged() {
    let (ctl, tg) = start("", "");
    let agent = tg.create_token("watcher").await;
    let auth = format!("Token {}", agent.secret);
    let path = "/api/configs/cfg-7/toml?param=x";

    let get = tg
        .proxy_send(
            "ui",
            Method::GET,
            path,
            &[("authorization", &auth), ("user-agent", "Telegraf/1.36.1")],
            "",
        )
        .await;
    assert_eq!(get.status, StatusCode::OK, "{}", get.text());
    assert_eq!(get.header("last-modified"), Some(CONTROLLER_LAST_MODIFIED));

    let head = tg
        .proxy_send(
            "ui",
            Method::HEAD,
            path,
            &[
                ("authorization", &auth),
                ("user-agent", "Telegraf/1.36.1"),
                ("if-modified-since", CONTROLLER_LAST_MODIFIED),
            ],
            "",
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("last-modified"),
        Some(CONTROLLER_LAST_MODIFIED),
        "the watcher compares Last-Modified: it must pass through unchanged"
    );
    assert_eq!(head.header("content-type"), Some("application/toml"));
    assert!(head.body.is_empty(), "HEAD has no body: {:?}", head.text());
    if let Some(len) = head.header("content-length") {
        assert_eq!(len, config_body("cfg-7").len().to_string());
    }

    let got = ctl.received_on(Port::Ui);
    let methods: Vec<&str> = got.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        vec!["GET", "HEAD"],
        "HEAD reaches the Controller as HEAD"
    );
    assert_eq!(got[1].path, "/api/configs/cfg-7/toml");
    assert_eq!(got[1].query.as_deref(), Some("param=x"));
    assert_eq!(
        got[1].header("if-modified-since"),
        vec![CONTROLLER_LAST_MODIFIED]
    );
    assert_eq!(got[1].header("authorization"), vec![auth.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_reach_the_heartbeat_port_byte_exact() {
    let (ctl, tg) = start("", "");
    let agent = tg.create_token("agent-west-2").await;
    let auth = agent.bearer();
    // Spacing, key order, escapes and non-ASCII as an agent might send them: nothing may change.
    let body = "{\"instance_id\":\"agent-west-2\",  \"hostname\":\"hôte-ünïcode\",\n \"statistics\":{\"metrics_gathered\":12345,\"errors\":0},\"configs\":[{\"id\":\"cfg-42\",\"name\":\"a\\\"b\"}],\"version\":\"1.36.1\"}\n";
    let resp = tg
        .proxy_send(
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
                ("user-agent", "Telegraf/1.36.1"),
            ],
            body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.header("x-controller-port"), Some("heartbeat"));
    assert_eq!(resp.json(), json!({"status": "accepted"}));

    let got = ctl.wait_for(Port::Heartbeat, "/agents/heartbeat").await;
    assert_eq!(got.method, "POST");
    assert_eq!(
        got.body.as_ref(),
        body.as_bytes(),
        "the heartbeat body arrives byte for byte"
    );
    assert_eq!(got.header("content-type"), vec!["application/json"]);
    assert_eq!(got.header("authorization"), vec![auth.as_str()]);
    assert_eq!(got.header("x-tollgate-token-id"), vec![agent.id.as_str()]);
    assert!(
        ctl.received_on(Port::Ui).is_empty(),
        "the heartbeat listener talks to the heartbeat port only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_routes_need_no_token_on_either_listener() {
    let (ctl, tg) = start("", "");
    let probes = [
        ("ui", "/health/live"),
        ("ui", "/health/ready"),
        ("ui", "/health/leader"),
        ("heartbeat", "/health"),
    ];
    for (listener, path) in probes {
        for method in [Method::GET, Method::HEAD] {
            let before = ctl.count();
            let resp = tg
                .proxy_send(
                    listener,
                    method.clone(),
                    path,
                    &[
                        ("x-tollgate-token-id", "forged"),
                        ("x-tollgate-token-name", "forged"),
                    ],
                    "",
                )
                .await;
            let what = format!("{method} {path} on {listener}");
            assert_eq!(resp.status, StatusCode::OK, "{what}: {}", resp.text());
            let got = check(&ctl, before, &resp, listener, &Want::Public, &what)
                .expect("forwarded requests are recorded");
            assert_eq!(got.path, path);
            assert_eq!(got.method, method.as_str());
            assert!(!got.has("authorization"), "{what}: no credential added");
            assert!(
                !got.has("x-tollgate-token-id") && !got.has("x-tollgate-token-name"),
                "{what}: client-sent identity headers are removed, none added: {:?}",
                got.headers
            );
        }
    }
    let line = wait_access(&tg, "the access line of a heartbeat health probe", |r| {
        r["listener"] == "heartbeat" && r["path"] == "/health"
    });
    assert_eq!(line["outcome"], "public", "{line}");
    assert_eq!(line["route"], "/health", "{line}");
    assert_eq!(line["status"], 200, "{line}");

    let mut tally = Tally::default();
    for _ in 0..6 {
        tally.add("ui", &Want::Public);
    }
    for _ in 0..2 {
        tally.add("heartbeat", &Want::Public);
    }
    tally.assert_metrics(&tg).await;
}

// ---------------------------------------------------------------------------------------------
// The profile's route table
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn every_resource_needs_its_permission_for_each_method_class() {
    let (ctl, tg) = start("", "");
    let lists: Vec<(&str, Vec<String>)> = vec![
        ("reader", on_every_resource("read")),
        ("writer", on_every_resource("write")),
        ("deleter", on_every_resource("delete")),
        ("all", on_every_resource("all")),
        ("configs-all", vec!["configs:all".to_string()]),
    ];
    let mut tokens = Vec::new();
    for (name, perms) in &lists {
        let perms: Vec<&str> = perms.iter().map(String::as_str).collect();
        tokens.push((*name, token(&tg, name, &perms).await));
    }
    let classes = [
        (Method::GET, "read"),
        (Method::HEAD, "read"),
        (Method::POST, "write"),
        (Method::PUT, "write"),
        (Method::PATCH, "write"),
        (Method::DELETE, "delete"),
    ];

    let mut tally = Tally::default();
    for r in RESOURCES {
        for path in [format!("/api/{r}"), format!("/api/{r}/item-7/detail")] {
            for (method, action) in &classes {
                let needed = format!("{r}:{action}");
                for (name, tok) in &tokens {
                    let holds = match *name {
                        "reader" => *action == "read",
                        "writer" => *action == "write",
                        "deleter" => *action == "delete",
                        "all" => true,
                        _ => r == "configs",
                    };
                    let want = if holds {
                        Want::Forwarded
                    } else {
                        Want::Permission(needed.clone())
                    };
                    let got = expect(
                        &ctl,
                        &tg,
                        "ui",
                        method.clone(),
                        &path,
                        Some(&tok.bearer()),
                        &want,
                    )
                    .await;
                    if let Some(got) = got {
                        assert_eq!(got.method, method.as_str());
                        assert_eq!(got.path, path);
                    }
                    tally.add("ui", &want);
                }
                expect(&ctl, &tg, "ui", method.clone(), &path, None, &Want::Missing).await;
                tally.add("ui", &Want::Missing);
            }
        }
    }
    tally.assert_metrics(&tg).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_profile_decides_health_auth_ui_agents_and_the_rest() {
    let (ctl, tg) = start("", "");
    let agent = tg.create_token("agent").await;
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let (a, r, unknown) = (agent.bearer(), reader.bearer(), bearer(&random_secret()));
    let (a, r, unknown) = (a.as_str(), r.as_str(), unknown.as_str());
    let perm = |p: &str| Want::Permission(p.to_string());

    let cases: Vec<(&str, Method, &str, Option<&str>, Want)> = vec![
        // Health: public on every method, both listeners.
        ("ui", Method::GET, "/health/live", None, Want::Public),
        ("ui", Method::GET, "/health/ready", None, Want::Public),
        ("ui", Method::GET, "/health/leader", None, Want::Public),
        ("ui", Method::POST, "/health/live", None, Want::Public),
        ("ui", Method::GET, "/health", None, Want::Public),
        ("heartbeat", Method::GET, "/health", None, Want::Public),
        ("heartbeat", Method::HEAD, "/health", None, Want::Public),
        ("heartbeat", Method::GET, "/health/live", None, Want::Public),
        // A token on a public route is not looked at, even a malformed one.
        (
            "ui",
            Method::GET,
            "/health/live",
            Some("Bearer not-a-token"),
            Want::Public,
        ),
        (
            "ui",
            Method::GET,
            "/health/ready",
            Some(unknown),
            Want::Public,
        ),
        // Config fetch and watch.
        (
            "ui",
            Method::GET,
            "/api/configs/42/toml",
            Some(a),
            Want::Forwarded,
        ),
        (
            "ui",
            Method::HEAD,
            "/api/configs/42/toml",
            Some(a),
            Want::Forwarded,
        ),
        (
            "ui",
            Method::GET,
            "/api/configs/42/toml",
            Some(r),
            Want::Forwarded,
        ),
        (
            "ui",
            Method::GET,
            "/api/configs/42/toml",
            None,
            Want::Missing,
        ),
        (
            "ui",
            Method::GET,
            "/api/configs/42/toml",
            Some("Bearer tc-apiv1_x"),
            Want::Format,
        ),
        (
            "ui",
            Method::GET,
            "/api/configs/42/toml",
            Some(unknown),
            Want::Unknown,
        ),
        (
            "ui",
            Method::POST,
            "/api/configs/42/toml",
            Some(a),
            perm("configs:write"),
        ),
        (
            "ui",
            Method::DELETE,
            "/api/configs/42",
            Some(a),
            perm("configs:delete"),
        ),
        // Heartbeats.
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            Some(a),
            Want::Forwarded,
        ),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            Some(r),
            perm("heartbeat:write"),
        ),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            None,
            Want::Missing,
        ),
        (
            "ui",
            Method::POST,
            "/agents/heartbeat",
            Some(r),
            perm("heartbeat:write"),
        ),
        // Any other method on /agents/**: a token, any token.
        (
            "heartbeat",
            Method::PUT,
            "/agents/heartbeat",
            Some(r),
            Want::Forwarded,
        ),
        (
            "heartbeat",
            Method::GET,
            "/agents/heartbeat",
            None,
            Want::Missing,
        ),
        ("ui", Method::GET, "/agents/list", Some(r), Want::Forwarded),
        ("ui", Method::GET, "/agents", None, Want::Missing),
        // The Controller's own login: public.
        ("ui", Method::POST, "/api/auth/login", None, Want::Public),
        ("ui", Method::GET, "/api/auth/session", None, Want::Public),
        (
            "ui",
            Method::POST,
            "/api/auth/password/reset/confirm",
            None,
            Want::Public,
        ),
        ("ui", Method::GET, "/api/auth", None, Want::Public),
        // The agent preset reaches nothing administrative.
        ("ui", Method::GET, "/api/users", Some(a), perm("users:read")),
        (
            "ui",
            Method::GET,
            "/api/users/u-1",
            Some(a),
            perm("users:read"),
        ),
        (
            "ui",
            Method::GET,
            "/api/tokens",
            Some(a),
            perm("tokens:read"),
        ),
        (
            "ui",
            Method::POST,
            "/api/invites",
            Some(a),
            perm("invites:write"),
        ),
        (
            "ui",
            Method::GET,
            "/api/settings",
            Some(r),
            perm("settings:read"),
        ),
        // The rest of /api/**: a token, any token.
        (
            "ui",
            Method::GET,
            "/api/not-a-resource/x",
            None,
            Want::Missing,
        ),
        (
            "ui",
            Method::GET,
            "/api/not-a-resource/x",
            Some(r),
            Want::Forwarded,
        ),
        (
            "ui",
            Method::OPTIONS,
            "/api/users",
            Some(r),
            Want::Forwarded,
        ),
        ("ui", Method::GET, "/api", None, Want::Missing),
        ("ui", Method::GET, "/api", Some(r), Want::Forwarded),
        // The web UI: public for GET and HEAD.
        ("ui", Method::GET, "/", None, Want::Public),
        ("ui", Method::HEAD, "/", None, Want::Public),
        ("ui", Method::GET, "/assets/app.js", None, Want::Public),
        ("ui", Method::GET, "/settings/profile", None, Want::Public),
        ("heartbeat", Method::GET, "/anything", None, Want::Public),
        // Anything else follows the default: a token.
        ("ui", Method::POST, "/settings/profile", None, Want::Missing),
        (
            "ui",
            Method::POST,
            "/settings/profile",
            Some(r),
            Want::Forwarded,
        ),
        ("ui", Method::DELETE, "/whatever", None, Want::Missing),
        ("heartbeat", Method::POST, "/heartbeat", None, Want::Missing),
        (
            "heartbeat",
            Method::POST,
            "/heartbeat",
            Some(a),
            Want::Forwarded,
        ),
    ];

    let mut tally = Tally::default();
    for (listener, method, path, auth, want) in &cases {
        expect(&ctl, &tg, listener, method.clone(), path, *auth, want).await;
        tally.add(listener, want);
    }

    // What public routes forward carries the client's own Authorization, untouched.
    let before = ctl.count();
    let resp = send(&tg, "ui", Method::GET, "/", Some("Bearer not-a-token")).await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Public,
        "GET / with a stray token",
    )
    .expect("forwarded");
    tally.add("ui", &Want::Public);
    assert_eq!(got.header("authorization"), vec!["Bearer not-a-token"]);
    assert!(!got.has("x-tollgate-token-id"));
    assert_eq!(resp.text(), UI_PAGE);

    // The login's session cookie reaches the browser.
    let resp = send(&tg, "ui", Method::POST, "/api/auth/login", None).await;
    tally.add("ui", &Want::Public);
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header_all("set-cookie"), vec![SESSION_SET_COOKIE]);

    tally.assert_metrics(&tg).await;
    tg.assert_logs_free_of(&[&agent.secret, agent.hex_part(), &reader.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_problems_are_judged_before_permissions() {
    let (ctl, tg) = start("", "");
    let agent = tg.create_token("soon-revoked").await;
    let gone = tg.create_token("soon-deleted").await;
    assert_eq!(tg.revoke(&agent.id, None).await.status, StatusCode::OK);
    assert_eq!(tg.delete(&gone.id).await.status, StatusCode::NO_CONTENT);
    // The preset lacks users:read, but the token itself is the first problem.
    for path in ["/api/users", "/api/configs/1/toml"] {
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            path,
            Some(&agent.bearer()),
            &Want::Revoked,
        )
        .await;
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            path,
            Some(&gone.bearer()),
            &Want::Unknown,
        )
        .await;
    }
    let text = metrics(&tg).await;
    assert_sample(
        &text,
        r#"tollgate_requests_total{listener="ui",outcome="revoked"} 2"#,
    );
    assert_sample(
        &text,
        r#"tollgate_requests_total{listener="ui",outcome="deleted"} 2"#,
    );
    for line in text
        .lines()
        .filter(|l| l.starts_with("tollgate_permission_denials_total{"))
    {
        assert!(
            line.ends_with(" 0"),
            "no permission denial was counted: {line}"
        );
    }
    assert!(
        !text.contains(r#"outcome="permission"} 1"#)
            && !text.contains(r#"outcome="permission"} 2"#),
        "no permission outcome was counted:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn path_tricks_are_refused_and_never_forwarded() {
    let (ctl, tg) = start("", "");
    let admin = token(
        &tg,
        "admin",
        &on_every_resource("all")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    let auth = admin.bearer();
    let tricks: Vec<(&str, &str)> = vec![
        ("ui", "/api/auth/../users"),
        ("ui", "/api/auth/%2e%2e/users"),
        ("ui", "/api/auth/%2E%2E/users"),
        ("ui", "/api/auth/.%2e/users"),
        ("ui", "/api/auth/%2e./users"),
        ("ui", "/api/auth/.."),
        ("ui", "/api/auth/./login"),
        ("ui", "/api/auth/%2e/login"),
        ("ui", "/api/auth%2Fusers"),
        ("ui", "/api/auth%2fusers"),
        ("ui", "/api/auth/x%2F..%2F..%2Fusers"),
        ("ui", "/api//users"),
        ("ui", "/api/auth//login"),
        ("ui", "/health/..%2fapi/users"),
        ("ui", "/health/live/../../api/users"),
        ("ui", "/api/auth%5C..%5Cusers"),
        ("ui", "/api/auth%5cusers"),
        ("ui", "/api/users%00"),
        ("ui", "/api/auth/%00/login"),
        ("ui", "/assets/../api/users"),
        ("ui", "/API/AUTH/../users"),
        ("heartbeat", "/health/..%2fagents/heartbeat"),
        ("heartbeat", "/health/../agents/heartbeat"),
    ];
    let mut tally = Tally::default();
    for (listener, path) in &tricks {
        for authorization in [None, Some(auth.as_str())] {
            for method in [Method::GET, Method::POST] {
                expect(
                    &ctl,
                    &tg,
                    listener,
                    method,
                    path,
                    authorization,
                    &Want::BadPath,
                )
                .await;
                tally.add(listener, &Want::BadPath);
            }
        }
    }
    assert_eq!(ctl.count(), 0, "no trick reached the Controller");

    // The query is no part of the path: dots and slashes there are fine.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/auth/login?next=/../api/users&x=%2F..%2F",
        None,
        &Want::Public,
    )
    .await;
    tally.add("ui", &Want::Public);

    // A raw backslash, which no client library sends: the same refusal.
    for target in [
        "/api/auth\\..\\users",
        "/api/auth\\users",
        "/health\\..\\api/users",
    ] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: tollgate\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = raw_exchange(tg.proxy_addr("ui"), request.as_bytes()).await;
        assert_eq!(status, 400, "{target:?}: {answer}");
        assert!(
            answer.contains(r#"{"error":"Invalid request path"}"#)
                || answer.contains(r#"{"error": "Invalid request path"}"#),
            "{target:?}: {answer}"
        );
        tally.add("ui", &Want::BadPath);
    }
    assert_eq!(ctl.count(), 1, "only the query case was forwarded");

    let line = wait_access(&tg, "the access line of a refused path", |r| {
        r["path"] == "/api//users"
    });
    assert_eq!(line["outcome"], "bad_path", "{line}");
    assert_eq!(line["status"], 400, "{line}");
    tally.assert_metrics(&tg).await;
    tg.assert_logs_free_of(&[&admin.secret, admin.hex_part()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn case_encoding_and_trailing_slashes_do_not_dodge_a_permission() {
    let (ctl, tg) = start("", "");
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let users = token(&tg, "users-reader", &["users:read"]).await;
    for path in [
        "/API/Users",
        "/Api/USERS/u-1",
        "/api/%75sers",
        "/api/%55SERS",
        "/api/us%65rs/u-1",
        "/api/users/",
        "/api/users?role=admin",
        "/api/users/?x=/health",
        // Path parameters, which Tomcat, Jetty and Spring drop before routing.
        "/api;x/users",
        "/API;jsessionid=1/users",
        "/api/users;v=2",
    ] {
        expect(&ctl, &tg, "ui", Method::GET, path, None, &Want::Missing).await;
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            path,
            Some(&reader.bearer()),
            &Want::Permission("users:read".into()),
        )
        .await;
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            path,
            Some(&users.bearer()),
            &Want::Forwarded,
        )
        .await;
    }
    // The same folding makes public routes match, too.
    for (method, path) in [
        (Method::GET, "/HEALTH/LIVE"),
        (Method::GET, "/health/live/"),
        (Method::POST, "/API/AUTH/login"),
        (Method::POST, "/api/%61uth/login"),
    ] {
        expect(&ctl, &tg, "ui", method, path, None, &Want::Public).await;
    }
    // And the config route, with a trailing slash and odd case.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/API/Configs/cfg-1/TOML/",
        Some(&reader.bearer()),
        &Want::Forwarded,
    )
    .await;
    let post_hb = "/AGENTS/Heartbeat/";
    expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::POST,
        post_hb,
        Some(&reader.bearer()),
        &Want::Permission("heartbeat:write".into()),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A listener's own routes and its default
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn routes_decide_public_token_and_permission() {
    let up = Upstream::start();
    let routes = r#"
[[listener.route]]
path = "/health"
public = true

[[listener.route]]
path = "/agents/heartbeat"
methods = ["POST"]
require = "heartbeat:write"

[[listener.route]]
path = "/api/configs/*/toml"
methods = ["GET", "HEAD"]
require = "configs:read"
"#;
    let tg = Tollgate::start(Config::new().listener_with("api", &up.url(), routes));
    let reader = tg
        .create_token_with(json!({"name": "reader", "permissions": ["configs:read"]}))
        .await;
    let agent = tg.create_token("agent").await;

    // A public route needs no token.
    let r = tg.proxy("api", "/health", None).await;
    assert_eq!(r.echo().path, "/health");

    // configs:read suffices for the config route.
    let r = tg
        .proxy("api", "/api/configs/42/toml", Some(&reader.bearer()))
        .await;
    assert_eq!(r.echo().path, "/api/configs/42/toml");

    // A known token without heartbeat:write gets 403 with the Controller's words.
    let r = tg
        .proxy_send(
            "api",
            Method::POST,
            "/agents/heartbeat",
            &[("authorization", &reader.bearer())],
            "{}",
        )
        .await;
    assert_insufficient(
        &r,
        "heartbeat:write",
        "POST /agents/heartbeat with configs:read",
    );
    assert!(up.requests_to("/agents/heartbeat").is_empty());

    // The telegraf-agent preset has it.
    let r = tg
        .proxy_send(
            "api",
            Method::POST,
            "/agents/heartbeat",
            &[("authorization", &agent.bearer())],
            "{}",
        )
        .await;
    assert_eq!(r.echo().method, "POST");

    // A method outside the route's list falls through to the default: a token, any token.
    let r = tg
        .proxy("api", "/agents/heartbeat", Some(&reader.bearer()))
        .await;
    assert_eq!(r.echo().method, "GET");

    // What no route matches takes the default: a token.
    let r = tg.proxy("api", "/elsewhere", None).await;
    assert_unauthorized(&r, "Missing or invalid Authorization header", Some(false));
    let r = tg.proxy("api", "/elsewhere", Some(&reader.bearer())).await;
    assert_eq!(r.echo().path, "/elsewhere");

    // `*` is exactly one segment.
    let r = tg
        .proxy("api", "/api/configs/42/extra/toml", Some(&reader.bearer()))
        .await;
    assert_eq!(
        r.echo().path,
        "/api/configs/42/extra/toml",
        "falls to the default"
    );
    let r = tg.proxy("api", "/api/configs/42/extra/toml", None).await;
    assert_unauthorized(&r, "Missing or invalid Authorization header", Some(false));
    let r = tg.proxy("api", "/api/configs/toml", None).await;
    assert_unauthorized(&r, "Missing or invalid Authorization header", Some(false));

    // A route without the profile has no `/health/**`: `/health/live` is not `/health`.
    let r = tg.proxy("api", "/health/live", None).await;
    assert_unauthorized(&r, "Missing or invalid Authorization header", Some(false));
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_routes_come_before_the_profile_routes() {
    let ui_routes = r#"
[[listener.route]]
path = "/health/leader"
token = true

[[listener.route]]
path = "/api/users/me"
methods = ["get", "Head"]
require = "configs:read"

[[listener.route]]
path = "/api/internal/**"
public = true

[[listener.route]]
path = "/reports/*/export"
methods = ["POST"]
require = "analytics:write"
"#;
    let (ctl, tg) = start(ui_routes, "");
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let analyst = token(&tg, "analyst", &["analytics:write"]).await;
    let (r, w) = (reader.bearer(), analyst.bearer());
    let (r, w) = (r.as_str(), w.as_str());
    let perm = |p: &str| Want::Permission(p.to_string());

    let cases: Vec<(Method, &str, Option<&str>, Want)> = vec![
        // The listener's route beats the profile's public health route.
        (Method::GET, "/health/leader", None, Want::Missing),
        (Method::GET, "/health/leader", Some(r), Want::Forwarded),
        (Method::GET, "/health/live", None, Want::Public),
        // Its permission beats the profile's users:read, for its methods only (case-insensitive).
        (Method::GET, "/api/users/me", Some(r), Want::Forwarded),
        (Method::HEAD, "/api/users/me", Some(r), Want::Forwarded),
        (Method::POST, "/api/users/me", Some(r), perm("users:write")),
        (Method::GET, "/api/users/other", Some(r), perm("users:read")),
        // Its public route beats the profile's `/api/**` token.
        (Method::GET, "/api/internal/x/y", None, Want::Public),
        (Method::DELETE, "/api/internal", None, Want::Public),
        // A one-segment star, with a method filter.
        (Method::POST, "/reports/q3/export", Some(w), Want::Forwarded),
        (
            Method::POST,
            "/reports/q3/export",
            Some(r),
            perm("analytics:write"),
        ),
        (Method::POST, "/reports/q3/export", None, Want::Missing),
        (
            Method::POST,
            "/reports/q3/sub/export",
            Some(r),
            Want::Forwarded,
        ),
        (Method::POST, "/reports/q3/sub/export", None, Want::Missing),
        (Method::GET, "/reports/q3/export", None, Want::Public),
    ];
    let mut tally = Tally::default();
    for (method, path, auth, want) in &cases {
        expect(&ctl, &tg, "ui", method.clone(), path, *auth, want).await;
        tally.add("ui", want);
    }
    // The heartbeat listener has the profile alone.
    expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::GET,
        "/health/leader",
        None,
        &Want::Public,
    )
    .await;
    tally.add("heartbeat", &Want::Public);
    tally.assert_metrics(&tg).await;

    let line = wait_access(&tg, "the access line of the listener's own route", |r| {
        r["path"] == "/reports/q3/export" && r["outcome"] == "permission"
    });
    assert_eq!(line["route"], "/reports/*/export", "{line}");
    assert_eq!(line["required"], "analytics:write", "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_default_forbids_what_no_route_matches() {
    let (ctl, tg) = start("default = \"deny\"\n", "");
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let r = reader.bearer();
    let r = r.as_str();
    let cases: Vec<(&str, Method, &str, Option<&str>, Want)> = vec![
        ("ui", Method::POST, "/settings/profile", None, Want::Denied),
        (
            "ui",
            Method::POST,
            "/settings/profile",
            Some(r),
            Want::Denied,
        ),
        ("ui", Method::DELETE, "/", Some(r), Want::Denied),
        // Routes still decide first.
        ("ui", Method::GET, "/settings/profile", None, Want::Public),
        (
            "ui",
            Method::GET,
            "/api/configs/1/toml",
            Some(r),
            Want::Forwarded,
        ),
        ("ui", Method::GET, "/api/anything", Some(r), Want::Forwarded),
        ("ui", Method::GET, "/api/anything", None, Want::Missing),
        // The other listener keeps the token default.
        (
            "heartbeat",
            Method::POST,
            "/settings/profile",
            Some(r),
            Want::Forwarded,
        ),
        (
            "heartbeat",
            Method::POST,
            "/settings/profile",
            None,
            Want::Missing,
        ),
    ];
    let mut tally = Tally::default();
    for (listener, method, path, auth, want) in &cases {
        expect(&ctl, &tg, listener, method.clone(), path, *auth, want).await;
        tally.add(listener, want);
    }
    tally.assert_metrics(&tg).await;
    let line = wait_access(&tg, "the access line of a denied request", |l| {
        l["outcome"] == "denied"
    });
    assert_eq!(line["route"], "default", "{line}");
    assert_eq!(line["status"], 403, "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_default_without_a_profile() {
    let up = Upstream::start();
    let routes = r#"default = "deny"

[[listener.route]]
path = "/open/**"
public = true

[[listener.route]]
path = "/closed/**"
token = true
"#;
    let tg = Tollgate::start(Config::new().listener_with("api", &up.url(), routes));
    let tok = tg.create_token("t").await;
    assert_eq!(tg.proxy("api", "/open", None).await.echo().path, "/open");
    assert_eq!(
        tg.proxy("api", "/closed/x", Some(&tok.bearer()))
            .await
            .echo()
            .path,
        "/closed/x"
    );
    for auth in [None, Some(tok.bearer())] {
        let r = tg.proxy("api", "/elsewhere", auth.as_deref()).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
        assert_eq!(r.json(), json!({"error": "Forbidden"}));
    }
    assert!(up.requests_to("/elsewhere").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_default_forwards_what_no_route_matches() {
    let (ctl, tg) = start("", "default = \"public\"\n");
    let agent = tg.create_token("agent").await;
    let a = agent.bearer();
    let a = a.as_str();
    let cases: Vec<(Method, &str, Option<&str>, Want)> = vec![
        (Method::POST, "/unmatched", None, Want::Public),
        (
            Method::PUT,
            "/unmatched/deeper",
            Some("Bearer not-a-token"),
            Want::Public,
        ),
        // Routes still decide first.
        (Method::POST, "/agents/heartbeat", None, Want::Missing),
        (Method::POST, "/agents/other", None, Want::Missing),
        (Method::POST, "/agents/heartbeat", Some(a), Want::Forwarded),
    ];
    let mut tally = Tally::default();
    for (method, path, auth, want) in &cases {
        let got = expect(&ctl, &tg, "heartbeat", method.clone(), path, *auth, want).await;
        tally.add("heartbeat", want);
        if let (Some(got), Some(auth), Want::Public) = (got, auth, want) {
            assert_eq!(
                got.header("authorization"),
                vec![*auth],
                "a public request keeps the client's own Authorization"
            );
            assert!(!got.has("x-tollgate-token-id"));
        }
    }
    // The ui listener keeps the token default.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::POST,
        "/unmatched",
        None,
        &Want::Missing,
    )
    .await;
    tally.add("ui", &Want::Missing);
    tally.assert_metrics(&tg).await;
    let line = wait_access(&tg, "the access line of a default-public request", |l| {
        l["path"] == "/unmatched" && l["listener"] == "heartbeat"
    });
    assert_eq!(line["outcome"], "public", "{line}");
    assert_eq!(line["route"], "default", "{line}");
}

/// Runs `check-config` on `text` (written to a file in `dir`) with `env`.
fn check_config(dir: &std::path::Path, text: &str, env: &[(&str, &str)]) -> CliOutput {
    let path = dir.join("check.toml");
    std::fs::write(&path, text).expect("write the config");
    run_binary(
        dir,
        &[
            "check-config",
            "--config",
            path.to_str().expect("UTF-8 path"),
        ],
        env,
    )
}

#[test]
fn bad_routes_and_listener_keys_are_refused_naming_the_field() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let good_route = "\n[[listener.route]]\npath = \"/ok\"\npublic = true\n";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            "\n[[listener.route]]\npath = \"api/x\"\ntoken = true\n".into(),
            vec!["listener[0].route[0].path"],
        ),
        (
            "\n[[listener.route]]\npath = \"/api/**/x\"\ntoken = true\n".into(),
            vec!["listener[0].route[0].path"],
        ),
        (
            format!("{good_route}\n[[listener.route]]\npath = \"/x\"\nrequire = \"configs\"\n"),
            vec!["listener[0].route[1].require"],
        ),
        (
            format!("{good_route}\n[[listener.route]]\npath = \"/x\"\nrequire = \"configs:fly\"\n"),
            vec!["listener[0].route[1].require"],
        ),
        (
            format!(
                "{good_route}\n[[listener.route]]\npath = \"/x\"\nrequire = \"nothing:read\"\n"
            ),
            vec!["listener[0].route[1].require"],
        ),
        (
            "\n[[listener.route]]\npath = \"/x\"\nrequire = \"configs:read\"\npublic = true\n"
                .into(),
            vec!["listener[0].route[0]"],
        ),
        (
            "\n[[listener.route]]\npath = \"/x\"\ntoken = true\npublic = true\n".into(),
            vec!["listener[0].route[0]"],
        ),
        (
            "\n[[listener.route]]\npath = \"/x\"\n".into(),
            vec!["listener[0].route[0]"],
        ),
        (
            "\n[[listener.route]]\npath = \"/x\"\nmethods = [\"GET\", \"FETCH\"]\ntoken = true\n"
                .into(),
            vec!["listener[0].route[0].methods"],
        ),
        (
            "\n[[listener.route]]\npaht = \"/x\"\ntoken = true\n".into(),
            vec!["paht"],
        ),
        (
            "default = \"sometimes\"\n".into(),
            vec!["listener[0].default"],
        ),
        (
            "authorization = \"borrow\"\n".into(),
            vec!["listener[0].authorization"],
        ),
        (
            "authorization_env = \"TOLLGATE_TEST_NEVER_USED\"\n".into(),
            vec!["listener[0].authorization_env"],
        ),
        (
            "authorization = \"forward\"\nauthorization_env = \"TOLLGATE_TEST_NEVER_USED\"\n"
                .into(),
            vec!["listener[0].authorization_env"],
        ),
        (
            "authorization = \"strip\"\nauthorization_env = \"TOLLGATE_TEST_NEVER_USED\"\n".into(),
            vec!["listener[0].authorization_env"],
        ),
        (
            "authorization = \"replace\"\n".into(),
            vec!["listener[0].authorization_env"],
        ),
        ("profile = \"nginx\"\n".into(), vec!["listener[0].profile"]),
    ];
    for (extra, fields) in &cases {
        let text = Config::new()
            .listener_with("api", &up.url(), extra)
            .render(dir.path());
        let out = check_config(dir.path(), &text, &[]);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(out.code(), Some(1), "{extra}\nexit 1: {out:#?}");
        for field in fields {
            assert!(all.contains(field), "{extra}\nnames {field}: {out:#?}");
        }
    }

    // `strip` and session cookies together are refused, naming one of the two.
    let text = Config::new()
        .listener_with(
            "api",
            &up.url(),
            "authorization = \"strip\"\npass_session_cookies = true\n",
        )
        .render(dir.path());
    let out = check_config(dir.path(), &text, &[]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("listener[0].pass_session_cookies")
            || all.contains("listener[0].authorization"),
        "names the field: {out:#?}"
    );

    // The index counts listeners: the second one's route is `listener[1]`.
    let text = Config::new()
        .listener("first", &up.url())
        .listener_with(
            "second",
            &up.url(),
            &format!("{good_route}\n[[listener.route]]\npath = \"/x\"\nrequire = \"configs\"\n"),
        )
        .render(dir.path());
    let out = check_config(dir.path(), &text, &[]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("listener[1].route[1].require"),
        "{out:#?}"
    );

    // `serve` refuses the same config the same way, before binding anything.
    let path = dir.path().join("serve.toml");
    std::fs::write(&path, &text).unwrap();
    let out = run_binary(
        dir.path(),
        &["serve", "--config", path.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains("listener[1].route[1].require"),
        "{out:#?}"
    );

    // And every key of the feature, spelled right, passes.
    let var = fresh_var("CHECK");
    let text = Config::new()
        .listener_with(
            "api",
            &up.url(),
            &format!(
                "profile = \"telegraf-controller\"\ndefault = \"deny\"\nauthorization = \"replace\"\nauthorization_env = \"{var}\"\npass_session_cookies = true\n\n[[listener.route]]\npath = \"/a/*/b/**\"\nmethods = [\"get\", \"HEAD\", \"Post\"]\nrequire = \"labels:write\"\n\n[[listener.route]]\npath = \"/t\"\ntoken = true\n\n[[listener.route]]\npath = \"/\"\npublic = true\n"
            ),
        )
        .render(dir.path());
    let out = check_config(dir.path(), &text, &[(var.as_str(), "tc-apiv1_service")]);
    assert_eq!(out.code(), Some(0), "{text}\n{out:#?}");
}

// ---------------------------------------------------------------------------------------------
// Credentials sent upstream
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn strip_removes_the_agents_credential_on_token_routes_only() {
    let (ctl, tg) = start(
        "authorization = \"strip\"\n",
        "authorization = \"forward\"\n",
    );
    let agent = tg.create_token("agent").await;

    // A token route: checked, then forwarded without it.
    let got = expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&agent.bearer()),
        &Want::Forwarded,
    )
    .await
    .expect("forwarded");
    assert!(
        !got.has("authorization"),
        "strip: no Authorization upstream: {:?}",
        got.headers
    );
    assert_eq!(got.header("x-tollgate-token-id"), vec![agent.id.as_str()]);

    // A public route: the client's own headers, exactly as sent.
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::POST,
            "/api/auth/login",
            &[
                ("authorization", "Basic dXNlcjpwYXNzd29yZA=="),
                ("cookie", "tc_session=abc; theme=dark"),
                ("x-tollgate-token-id", "forged"),
                ("content-type", "application/json"),
            ],
            r#"{"username":"admin"}"#,
        )
        .await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Public,
        "login under strip",
    )
    .expect("forwarded");
    assert_eq!(
        got.header("authorization"),
        vec!["Basic dXNlcjpwYXNzd29yZA=="]
    );
    assert_eq!(got.header("cookie"), vec!["tc_session=abc; theme=dark"]);
    assert!(!got.has("x-tollgate-token-id"));
    assert_eq!(got.body.as_ref(), br#"{"username":"admin"}"#);

    let before = ctl.count();
    let resp = send(&tg, "ui", Method::GET, "/", Some(&agent.bearer())).await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Public,
        "a UI page under strip",
    )
    .expect("forwarded");
    assert_eq!(
        got.header("authorization"),
        vec![agent.bearer().as_str()],
        "never stripped on a public route"
    );

    // The other listener forwards.
    let got = expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::POST,
        "/agents/heartbeat",
        Some(&agent.bearer()),
        &Want::Forwarded,
    )
    .await
    .expect("forwarded");
    assert_eq!(got.header("authorization"), vec![agent.bearer().as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_sends_the_service_credential_on_token_routes_only() {
    let ctl = Controller::start();
    let ui_var = fresh_var("CONTROLLER_TOKEN");
    let hb_var = fresh_var("CONTROLLER_HEARTBEAT");
    let service = random_secret();
    let service_hex = service[TOKEN_PREFIX.len()..].to_string();
    let heartbeat_value = format!("Token {}", hex(&random_bytes(20)));
    let config = controller_config(
        &ctl,
        &format!(
            "authorization = \"replace\"\nauthorization_env = \"{ui_var}\"\npass_session_cookies = true\n"
        ),
        &format!("authorization = \"replace\"\nauthorization_env = \"{hb_var}\"\n"),
    );
    let tg = Tollgate::start_with_env(
        config.clone(),
        &[
            (ui_var.as_str(), service.as_str()),
            (hb_var.as_str(), heartbeat_value.as_str()),
        ],
    );
    let agent = tg.create_token("agent").await;

    // Token routes: checked, then sent with the service credential (`Bearer ` added when the
    // value has no space; as is otherwise).
    let got = expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&format!("Token {}", agent.secret)),
        &Want::Forwarded,
    )
    .await
    .expect("forwarded");
    assert_eq!(
        got.header("authorization"),
        vec![format!("Bearer {service}").as_str()]
    );
    assert_eq!(got.header("x-tollgate-token-id"), vec![agent.id.as_str()]);
    let got = expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::POST,
        "/agents/heartbeat",
        Some(&agent.bearer()),
        &Want::Forwarded,
    )
    .await
    .expect("forwarded");
    assert_eq!(got.header("authorization"), vec![heartbeat_value.as_str()]);

    // Public routes: the client's own headers, never the service credential.
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::POST,
            "/api/auth/login",
            &[
                ("authorization", "Basic dXNlcjpwYXNzd29yZA=="),
                ("cookie", "tc_session=abc"),
            ],
            "{}",
        )
        .await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Public,
        "login under replace",
    )
    .expect("forwarded");
    assert_eq!(
        got.header("authorization"),
        vec!["Basic dXNlcjpwYXNzd29yZA=="]
    );
    assert_eq!(got.header("cookie"), vec!["tc_session=abc"]);
    for (listener, path) in [
        ("ui", "/health/live"),
        ("ui", "/"),
        ("heartbeat", "/health"),
    ] {
        let got = expect(&ctl, &tg, listener, Method::GET, path, None, &Want::Public)
            .await
            .expect("forwarded");
        assert!(
            !got.has("authorization"),
            "{path} on {listener}: a public request gets no credential: {:?}",
            got.headers
        );
    }

    // A session request is a public one: the cookie, and no service credential.
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::GET,
            "/api/configs",
            &[("cookie", "tc_session=abc")],
            "",
        )
        .await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Session,
        "a session under replace",
    )
    .expect("forwarded");
    assert_eq!(got.header("cookie"), vec!["tc_session=abc"]);
    assert!(!got.has("authorization"), "{:?}", got.headers);

    // The credential appears nowhere: not in any answer, log line, metric or check-config.
    tg.assert_logs_free_of(&[&service, &service_hex, &heartbeat_value, &agent.secret]);
    let text = metrics(&tg).await;
    assert!(!text.contains(&service_hex) && !text.contains(&heartbeat_value));

    let dir = tempfile::tempdir().unwrap();
    let out = check_config(
        dir.path(),
        &config.render(dir.path()),
        &[
            (ui_var.as_str(), service.as_str()),
            (hb_var.as_str(), heartbeat_value.as_str()),
        ],
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(
        out.stdout
            .contains(&format!("authorization_env = \"{ui_var}\"")),
        "check-config names the variable: {}",
        out.stdout
    );
    for s in [&service_hex, &heartbeat_value] {
        assert!(
            !out.stdout.contains(s.as_str()) && !out.stderr.contains(s.as_str()),
            "check-config prints the credential: {out:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replace_without_its_variable_refuses_to_start() {
    let ctl = Controller::start();
    let var = fresh_var("UNSET");
    let config = controller_config(
        &ctl,
        &format!("authorization = \"replace\"\nauthorization_env = \"{var}\"\n"),
        "",
    );

    for env in [vec![], vec![(var.as_str(), "")]] {
        let dir = tempfile::tempdir().unwrap();
        let out = check_config(dir.path(), &config.render(dir.path()), &env);
        assert_eq!(out.code(), Some(1), "{env:?}: {out:#?}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains("listener[0].authorization_env") && all.contains(&var),
            "{env:?}: names the field and the variable: {out:#?}"
        );

        let dir = tempfile::tempdir().unwrap();
        let text = config.render(dir.path());
        match Tollgate::try_start_in_with_env(
            dir,
            &text,
            Some(format!("adm-{}", hex(&random_bytes(16)))),
            &env,
        ) {
            Ok(_) => panic!("{env:?}: started without the credential's variable"),
            Err(f) => {
                assert_eq!(
                    f.status.and_then(|s| s.code()),
                    Some(1),
                    "{env:?}: exit 1: {f:#?}"
                );
                let all = f.output();
                assert!(
                    all.contains("listener[0].authorization_env") && all.contains(&var),
                    "{env:?}: names the field and the variable: {all}"
                );
            }
        }
    }
    assert_eq!(ctl.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Session cookies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn session_cookies_pass_to_the_controllers_own_login_when_enabled() {
    let (ctl, tg) = start("pass_session_cookies = true\n", "");
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let mut tally = Tally::default();

    // No Authorization, a Cookie: forwarded as is, for the Controller's session login to decide.
    for (method, path) in [
        (Method::GET, "/api/configs"),
        (Method::POST, "/api/users"),
        (Method::DELETE, "/api/tokens/t-1"),
        (Method::GET, "/api/anything"),
    ] {
        let before = ctl.count();
        let resp = tg
            .proxy_send(
                "ui",
                method.clone(),
                path,
                &[
                    ("cookie", "tc_session=s3ss10n-0001; theme=dark"),
                    ("x-tollgate-token-id", "forged"),
                ],
                "",
            )
            .await;
        let what = format!("{method} {path} with a session cookie");
        let got = check(&ctl, before, &resp, "ui", &Want::Session, &what).expect("forwarded");
        tally.add("ui", &Want::Session);
        assert_eq!(
            got.header("cookie"),
            vec!["tc_session=s3ss10n-0001; theme=dark"]
        );
        assert!(!got.has("authorization"));
        assert!(!got.has("x-tollgate-token-id"), "{what}: {:?}", got.headers);
    }

    // With an Authorization header, the token is checked as usual.
    let with_cookie = |auth: String| {
        vec![
            ("cookie".to_string(), "tc_session=x".to_string()),
            ("authorization".to_string(), auth),
        ]
    };
    for (auth, want) in [
        ("Bearer garbage".to_string(), Want::Format),
        (bearer(&random_secret()), Want::Unknown),
        (reader.bearer(), Want::Permission("users:read".into())),
    ] {
        let headers = with_cookie(auth);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let before = ctl.count();
        let resp = tg
            .proxy_send("ui", Method::GET, "/api/users", &headers, "")
            .await;
        check(&ctl, before, &resp, "ui", &want, "a cookie beside a token");
        tally.add("ui", &want);
    }
    // No cookie and no token: still missing.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs",
        None,
        &Want::Missing,
    )
    .await;
    tally.add("ui", &Want::Missing);

    // Off (the heartbeat listener's default): a cookie alone is no credential.
    for (method, path) in [
        (Method::GET, "/api/configs"),
        (Method::POST, "/agents/heartbeat"),
    ] {
        let before = ctl.count();
        let resp = tg
            .proxy_send(
                "heartbeat",
                method.clone(),
                path,
                &[("cookie", "tc_session=x")],
                "",
            )
            .await;
        check(
            &ctl,
            before,
            &resp,
            "heartbeat",
            &Want::Missing,
            "a cookie alone, sessions off",
        );
        tally.add("heartbeat", &Want::Missing);
    }
    tally.assert_metrics(&tg).await;

    let line = wait_access(&tg, "the access line of a session request", |l| {
        l["outcome"] == "session"
    });
    assert_eq!(line["listener"], "ui", "{line}");
    tg.assert_logs_free_of(&["s3ss10n-0001", &reader.secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_cookies_are_no_credential_by_default() {
    let (ctl, tg) = start("", "");
    for path in ["/api/configs", "/api/users", "/api/configs/1/toml"] {
        let before = ctl.count();
        let resp = tg
            .proxy_send("ui", Method::GET, path, &[("cookie", "tc_session=abc")], "")
            .await;
        check(&ctl, before, &resp, "ui", &Want::Missing, path);
    }
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

async fn import(tg: &Tollgate, body: Value) -> Resp {
    tg.admin(Method::POST, "/api/v1/tokens/import", Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn import_by_token_and_by_digest() {
    let (ctl, tg) = start("", "");
    let by_token = random_secret();
    let by_digest = random_secret();
    let by_upper = random_secret();
    // The digest is computed here, independently: SHA-256 of the whole token string.
    let digest = sha256_hex(by_digest.as_bytes());
    let upper = sha256_hex(by_upper.as_bytes()).to_uppercase();
    let resp = import(
        &tg,
        json!({"tokens": [
            {"name": "moved-1", "token": by_token, "description": "from the Controller"},
            {"name": "moved-2", "digest": digest, "permissions": ["configs:read"]},
            {"name": "moved-3", "digest": upper, "preset": "telegraf-agent",
             "expires_at": "2099-01-31T00:00:00Z"},
        ]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    let imported = strings(&v["imported"]);
    assert_eq!(imported.len(), 3, "{v}");
    assert_eq!(v["skipped"], json!([]));

    // The records list as usual.
    let one = tg.record(&imported[0]).await;
    assert_eq!(one["name"], "moved-1");
    assert_eq!(one["description"], "from the Controller");
    assert_eq!(one["status"], "active");
    assert_eq!(one["hint"], hint_of(&by_token).as_str());
    assert_eq!(
        sorted_strings(&one["permissions"]),
        sorted(&["configs:read", "heartbeat:write"]),
        "no permissions: the telegraf-agent preset"
    );
    let two = tg.record(&imported[1]).await;
    assert_eq!(two["name"], "moved-2");
    assert_eq!(
        two["hint"], "tc-apiv1_…",
        "a digest hides even the last characters"
    );
    assert_eq!(two["permissions"], json!(["configs:read"]));
    assert_eq!(two["status"], "active");
    let three = tg.record(&imported[2]).await;
    assert_eq!(three["expires_at"], "2099-01-31T00:00:00Z");
    assert_eq!(
        sorted_strings(&three["permissions"]),
        sorted(&["configs:read", "heartbeat:write"])
    );
    let listed = tg.list_ids("").await;
    for id in &imported {
        assert!(listed.contains(id), "{id} lists");
    }

    // Each works on the very next request, with its own permissions.
    for secret in [&by_token, &by_digest, &by_upper] {
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            "/api/configs/1/toml",
            Some(&bearer(secret)),
            &Want::Forwarded,
        )
        .await;
    }
    expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::POST,
        "/agents/heartbeat",
        Some(&bearer(&by_token)),
        &Want::Forwarded,
    )
    .await;
    expect(
        &ctl,
        &tg,
        "heartbeat",
        Method::POST,
        "/agents/heartbeat",
        Some(&bearer(&by_digest)),
        &Want::Permission("heartbeat:write".into()),
    )
    .await;

    // And is revoked like any other.
    assert_eq!(tg.revoke(&imported[1], None).await.status, StatusCode::OK);
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&bearer(&by_digest)),
        &Want::Revoked,
    )
    .await;

    // Audited as imported, by id and name, with no secret.
    let events = tg.audit("?limit=100").await;
    for (id, name) in imported.iter().zip(["moved-1", "moved-2", "moved-3"]) {
        assert!(
            events.iter().any(|e| e["action"] == "imported"
                && e["token_id"] == id.as_str()
                && e["token_name"] == name),
            "an `imported` event for {name}: {events:?}"
        );
    }
    let audit_text = Value::Array(events).to_string();
    let listing = tg.list("").await.to_string();
    for s in [&by_token, &by_digest, &by_upper] {
        let hex_part = &s[TOKEN_PREFIX.len()..];
        assert!(!audit_text.contains(hex_part), "the audit holds a secret");
        assert!(!listing.contains(hex_part), "the listing holds a secret");
    }
    assert!(!listing.contains(&digest), "the listing holds a digest");
    tg.assert_logs_free_of(&[
        &by_token[TOKEN_PREFIX.len()..],
        &by_digest[TOKEN_PREFIX.len()..],
        &by_upper[TOKEN_PREFIX.len()..],
        &by_token[..by_token.len() - 4],
    ]);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_skips_duplicates_by_name_token_and_digest() {
    let (ctl, tg) = start("", "");
    let existing = tg.create_token("existing").await;
    let new1 = random_secret();
    let new2 = random_secret();
    let new3 = random_secret();
    let new4 = random_secret();
    let resp = import(
        &tg,
        json!({"tokens": [
            {"name": "existing", "token": new1},
            {"name": "fresh-1", "token": existing.secret},
            {"name": "fresh-2", "digest": sha256_hex(existing.secret.as_bytes())},
            {"name": "fresh-3", "token": new2},
            {"name": "fresh-3", "token": new3},
            {"name": "fresh-4", "digest": sha256_hex(new2.as_bytes())},
            {"name": "fresh-5", "digest": sha256_hex(new4.as_bytes()).to_uppercase()},
            {"name": "fresh-6", "token": new4},
        ]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(strings(&v["imported"]).len(), 2, "fresh-3 and fresh-5: {v}");
    let skipped = v["skipped"].as_array().expect("skipped list");
    let names: Vec<&str> = skipped
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        names,
        vec![
            "existing", "fresh-1", "fresh-2", "fresh-3", "fresh-4", "fresh-6"
        ],
        "{v}"
    );
    for s in skipped {
        assert!(
            s["reason"].as_str().is_some_and(|r| !r.trim().is_empty()),
            "a skip says why: {s}"
        );
    }
    let text = v.to_string();
    for secret in [&new1, &new2, &new3, &new4, &existing.secret] {
        assert!(
            !text.contains(&secret[TOKEN_PREFIX.len()..]),
            "an answer echoes a secret: {text}"
        );
    }
    assert_eq!(tg.list_ids("").await.len(), 3);

    // What was skipped does not work; the one it collided with still does.
    for secret in [&new1, &new3] {
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            "/api/configs/1/toml",
            Some(&bearer(secret)),
            &Want::Unknown,
        )
        .await;
    }
    for secret in [&new2, &new4, &existing.secret] {
        expect(
            &ctl,
            &tg,
            "ui",
            Method::GET,
            "/api/configs/1/toml",
            Some(&bearer(secret)),
            &Want::Forwarded,
        )
        .await;
    }
    // The existing record is untouched.
    let record = tg.record(&existing.id).await;
    assert_eq!(record["name"], "existing");
    assert_eq!(record["hint"], existing.record["hint"]);

    // The same batch again: everything skipped.
    let resp = import(&tg, json!({"tokens": [{"name": "fresh-3", "token": new2}]})).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    assert_eq!(resp.json()["imported"], json!([]));
    assert_eq!(resp.json()["skipped"][0]["name"], "fresh-3");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_import_is_refused_whole_naming_the_entry() {
    let (ctl, tg) = start("", "");
    tg.create_token("already").await;
    let ok = random_secret();
    let near = format!("{}Z", &random_secret()[..TOKEN_PREFIX.len() + 63]);
    let shouted = format!("{TOKEN_PREFIX}{}", hex(&random_bytes(32)).to_uppercase());
    let good = json!({"name": "fine", "token": ok});
    let digest = sha256_hex(ok.as_bytes());
    let cases: Vec<(Value, &str)> = vec![
        (json!({"tokens": []}), "tokens"),
        (json!({}), "tokens"),
        (
            json!({"tokens": [good, {"name": "b", "digest": "abc"}]}),
            "tokens[1].digest",
        ),
        (
            json!({"tokens": [good, {"name": "b", "digest": format!("{}x", &digest[..63])}]}),
            "tokens[1].digest",
        ),
        (json!({"tokens": [good, {"name": "b"}]}), "tokens[1]"),
        (
            json!({"tokens": [good, {"name": "b", "token": random_secret(), "digest": digest}]}),
            "tokens[1]",
        ),
        (
            json!({"tokens": [good, {"name": "b", "token": near}]}),
            "tokens[1].token",
        ),
        (
            json!({"tokens": [good, {"name": "b", "token": shouted}]}),
            "tokens[1].token",
        ),
        (
            json!({"tokens": [good, {"name": "b", "token": random_secret(), "permissions": ["configs:fly"]}]}),
            "tokens[1].permissions",
        ),
        (
            json!({"tokens": [good, {"name": "b", "token": random_secret(), "preset": "nobody"}]}),
            "tokens[1].preset",
        ),
        (
            json!({"tokens": [good, {"name": "b", "token": random_secret(), "expires_at": "next tuesday"}]}),
            "tokens[1].expires_at",
        ),
        (
            json!({"tokens": [good, {"token": random_secret()}]}),
            "tokens[1].name",
        ),
    ];
    for (body, field) in &cases {
        let resp = import(&tg, body.clone()).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text()
        );
        let message = resp.error();
        assert!(
            message.contains(field),
            "{body}: the message names {field}: {message:?}"
        );
        for secret in [&ok, &near, &shouted] {
            assert!(
                !message.contains(&secret[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + 40]),
                "the 400 echoes a secret: {message:?}"
            );
        }
    }
    // Nothing was imported: the good entry of each batch included.
    assert_eq!(tg.list_ids("").await.len(), 1);
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&bearer(&ok)),
        &Want::Unknown,
    )
    .await;
    assert!(
        !tg.audit("?limit=100")
            .await
            .iter()
            .any(|e| e["action"] == "imported"),
        "no import was audited"
    );
    tg.assert_logs_free_of(&[&ok[TOKEN_PREFIX.len()..], &near[TOKEN_PREFIX.len()..]]);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_through_the_command_line() {
    let (ctl, tg) = start("", "");
    let from_file = random_secret();
    let from_stdin = random_secret();
    let file = tg.dir().join("import.json");
    std::fs::write(
        &file,
        json!({"tokens": [{"name": "cli-1", "digest": sha256_hex(from_file.as_bytes())}]})
            .to_string(),
    )
    .unwrap();
    let file = file.to_str().expect("UTF-8 path").to_string();

    // --json prints the API's answer.
    let out = tg.cli(&["token", "import", &file, "--json"]).ok();
    let v = out.json();
    let ids = strings(&v["imported"]);
    assert_eq!(ids.len(), 1, "{v}");
    assert_eq!(v["skipped"], json!([]));
    assert_eq!(tg.record(&ids[0]).await["name"], "cli-1");
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&bearer(&from_file)),
        &Want::Forwarded,
    )
    .await;

    // The same file again: a skip is still a success; the summary is for people.
    let out = tg.cli(&["token", "import", &file]).ok();
    assert!(!out.stdout.trim().is_empty(), "a human summary: {out:#?}");

    // From standard input.
    let body = json!({"tokens": [{"name": "cli-2", "token": from_stdin}]}).to_string();
    let out = tg.cli_with_stdin(&["token", "import", "-", "--json"], body.as_bytes());
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(strings(&out.json()["imported"]).len(), 1, "{out:#?}");
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/1/toml",
        Some(&bearer(&from_stdin)),
        &Want::Forwarded,
    )
    .await;
    for text in [&out.stdout, &out.stderr] {
        assert!(
            !text.contains(&from_stdin[TOKEN_PREFIX.len()..]),
            "the CLI prints a secret"
        );
    }

    // Failures: one line on stderr, exit 1, nothing imported.
    let assert_failure = |out: &CliOutput, what: &str| {
        assert_eq!(out.code(), Some(1), "{what}: exit 1: {out:#?}");
        assert_eq!(
            out.stderr.trim_end().lines().count(),
            1,
            "{what}: one line on stderr: {out:#?}"
        );
    };
    let broken = tg.dir().join("broken.json");
    let secret = random_secret();
    std::fs::write(
        &broken,
        format!("{{\"tokens\": [{{\"name\": \"x\", \"token\": \"{secret}\""),
    )
    .unwrap();
    let out = tg.cli(&["token", "import", broken.to_str().unwrap()]);
    assert_failure(&out, "a truncated file");
    assert!(
        !out.stderr.contains(&secret[TOKEN_PREFIX.len()..]),
        "{out:#?}"
    );
    let missing = tg.dir().join("no-such-file.json");
    assert_failure(
        &tg.cli(&["token", "import", missing.to_str().unwrap()]),
        "a missing file",
    );
    let refused = tg.dir().join("refused.json");
    std::fs::write(
        &refused,
        json!({"tokens": [{"name": "y", "digest": "abc"}]}).to_string(),
    )
    .unwrap();
    let out = tg.cli(&["token", "import", refused.to_str().unwrap()]);
    assert_failure(&out, "an entry the API refuses");
    assert!(out.stderr.contains("tokens[0].digest"), "{out:#?}");
    let out = tg.cli_with_stdin(&["token", "import", "-"], b"not json");
    assert_failure(&out, "garbage on stdin");

    // Bad usage: exit 2.
    let out = tg.cli(&["token", "import"]);
    assert_eq!(out.code(), Some(2), "{out:#?}");
    assert_eq!(tg.list_ids("").await.len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Metrics and the access log
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn denials_are_counted_by_reason_and_listener() {
    let (ctl, tg) = start("pass_session_cookies = true\n", "default = \"deny\"\n");
    let agent = tg.create_token("agent").await;
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    let to_revoke = tg.create_token("to-revoke").await;
    let to_delete = tg.create_token("to-delete").await;
    let expires_at = rfc3339(SystemTime::now() + Duration::from_secs(2));
    let short = tg
        .create_token_with(json!({"name": "short", "expires_at": expires_at}))
        .await;
    assert_eq!(tg.revoke(&to_revoke.id, None).await.status, StatusCode::OK);
    assert_eq!(
        tg.delete(&to_delete.id).await.status,
        StatusCode::NO_CONTENT
    );

    let mut tally = Tally::default();
    let config = "/api/configs/1/toml";
    let cases: Vec<(&str, Method, &str, Option<String>, Want)> = vec![
        ("ui", Method::GET, "/api/users", None, Want::Missing),
        ("ui", Method::GET, config, None, Want::Missing),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            None,
            Want::Missing,
        ),
        (
            "ui",
            Method::GET,
            config,
            Some("Bearer nope".into()),
            Want::Format,
        ),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            Some("Token tc-apiv1_XYZ".into()),
            Want::Format,
        ),
        (
            "ui",
            Method::GET,
            config,
            Some(bearer(&random_secret())),
            Want::Unknown,
        ),
        (
            "ui",
            Method::GET,
            config,
            Some(to_revoke.bearer()),
            Want::Revoked,
        ),
        (
            "ui",
            Method::GET,
            "/api/users",
            Some(to_revoke.bearer()),
            Want::Revoked,
        ),
        (
            "ui",
            Method::GET,
            config,
            Some(to_delete.bearer()),
            Want::Unknown,
        ),
        (
            "ui",
            Method::GET,
            "/api/users",
            Some(agent.bearer()),
            Want::Permission("users:read".into()),
        ),
        (
            "ui",
            Method::GET,
            "/api/users/u-1",
            Some(agent.bearer()),
            Want::Permission("users:read".into()),
        ),
        (
            "ui",
            Method::DELETE,
            "/api/configs/1",
            Some(agent.bearer()),
            Want::Permission("configs:delete".into()),
        ),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            Some(reader.bearer()),
            Want::Permission("heartbeat:write".into()),
        ),
        (
            "heartbeat",
            Method::POST,
            "/nowhere",
            Some(agent.bearer()),
            Want::Denied,
        ),
        ("heartbeat", Method::POST, "/nowhere", None, Want::Denied),
        ("ui", Method::GET, "/api//users", None, Want::BadPath),
        (
            "ui",
            Method::GET,
            config,
            Some(agent.bearer()),
            Want::Forwarded,
        ),
        (
            "heartbeat",
            Method::POST,
            "/agents/heartbeat",
            Some(agent.bearer()),
            Want::Forwarded,
        ),
        ("ui", Method::GET, "/health/live", None, Want::Public),
        ("heartbeat", Method::GET, "/health", None, Want::Public),
    ];
    for (listener, method, path, auth, want) in &cases {
        expect(
            &ctl,
            &tg,
            listener,
            method.clone(),
            path,
            auth.as_deref(),
            want,
        )
        .await;
        // A deleted token is unknown to the client and `deleted` to the metrics.
        let counted = match (want, auth) {
            (Want::Unknown, Some(a)) if *a == to_delete.bearer() => {
                *tally
                    .requests
                    .entry((listener.to_string(), "deleted".to_string()))
                    .or_default() += 1;
                continue;
            }
            _ => want,
        };
        tally.add(listener, counted);
    }
    // A session.
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::GET,
            "/api/configs",
            &[("cookie", "tc_session=x")],
            "",
        )
        .await;
    check(&ctl, before, &resp, "ui", &Want::Session, "a session");
    tally.add("ui", &Want::Session);

    // Expiry: whether the first uses pass depends on the clock; count what happened.
    let passes = std::cell::Cell::new(0);
    let refused = wait_until(DEADLINE, "the short token to expire", || async {
        let resp = tg.proxy("ui", config, Some(&short.bearer())).await;
        if resp.status == StatusCode::OK {
            passes.set(passes.get() + 1);
            None
        } else {
            Some(resp)
        }
    })
    .await;
    for _ in 0..passes.get() {
        tally.add("ui", &Want::Forwarded);
    }
    assert_unauthorized(&refused, "Token expired", Some(true));
    let again = tg.proxy("ui", "/api/users", Some(&short.bearer())).await;
    assert_unauthorized(&again, "Token expired", Some(true));
    for _ in 0..2 {
        *tally
            .requests
            .entry(("ui".to_string(), "expired".to_string()))
            .or_default() += 1;
    }

    tally.assert_metrics(&tg).await;
    let text = metrics(&tg).await;
    for listener in ["ui", "heartbeat"] {
        for outcome in OUTCOMES {
            let counted = tally
                .requests
                .get(&(listener.to_string(), outcome.to_string()))
                .copied()
                .unwrap_or(0);
            if counted == 0 {
                // Zero or absent, never more than what was sent.
                let prefix = format!(
                    "tollgate_requests_total{{listener=\"{listener}\",outcome=\"{outcome}\"}} "
                );
                if let Some(line) = text.lines().find(|l| l.starts_with(&prefix)) {
                    assert_eq!(
                        line,
                        format!("{prefix}0"),
                        "nothing was {outcome} on {listener}"
                    );
                }
            }
        }
    }
    for secret in [
        &agent.secret,
        &reader.secret,
        &to_revoke.secret,
        &short.secret,
    ] {
        assert!(
            !text.contains(&secret[TOKEN_PREFIX.len()..]),
            "metrics hold a secret"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_tokens_use_is_logged_with_id_name_hint_and_remote() {
    let (ctl, tg) = start("", "");
    let tok = tg.create_token("agent-north-3").await;
    let reader = token(&tg, "configs-reader", &["configs:read"]).await;
    assert_eq!(
        tg.revoke(&tok.id, Some("agent retired")).await.status,
        StatusCode::OK
    );

    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/9/toml?param=secret-query",
        Some(&tok.bearer()),
        &Want::Revoked,
    )
    .await;
    let line = wait_access(&tg, "the access line of the revoked token's use", |l| {
        l["outcome"] == "revoked"
    });
    assert_eq!(line["target"], "tollgate::access", "{line}");
    assert_eq!(line["listener"], "ui", "{line}");
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(
        line["path"], "/api/configs/9/toml",
        "the path, never the query: {line}"
    );
    assert_eq!(line["status"], 401, "{line}");
    assert_eq!(line["route"], "/api/configs/*/toml", "{line}");
    assert_eq!(line["required"], "configs:read", "{line}");
    assert_eq!(line["token_id"], tok.id.as_str(), "{line}");
    assert_eq!(line["token_name"], "agent-north-3", "{line}");
    assert_eq!(line["hint"], hint_of(&tok.secret).as_str(), "{line}");
    assert_eq!(
        line["hint"], tok.record["hint"],
        "the same hint as the record: {line}"
    );
    let remote = line["remote"].as_str().unwrap_or_default();
    assert!(remote.contains("127.0.0.1"), "the client's address: {line}");

    // A permission refusal names what was missing and whose token it was.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::POST,
        "/api/users",
        Some(&reader.bearer()),
        &Want::Permission("users:write".into()),
    )
    .await;
    let line = wait_access(&tg, "the access line of a permission refusal", |l| {
        l["outcome"] == "permission"
    });
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["route"], "/api/users/**", "{line}");
    assert_eq!(line["required"], "users:write", "{line}");
    assert_eq!(line["token_id"], reader.id.as_str(), "{line}");
    assert_eq!(line["token_name"], "configs-reader", "{line}");
    assert_eq!(line["hint"], hint_of(&reader.secret).as_str(), "{line}");

    // A well-formed unknown token is logged by its hint alone.
    let stranger = random_secret();
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/labels",
        Some(&format!("Token {stranger}")),
        &Want::Unknown,
    )
    .await;
    let line = wait_access(&tg, "the access line of an unknown token", |l| {
        l["outcome"] == "unknown"
    });
    assert_eq!(line["hint"], hint_of(&stranger).as_str(), "{line}");
    assert_eq!(line["route"], "/api/labels/**", "{line}");
    assert_eq!(line["required"], "labels:read", "{line}");

    // A forward: the route, its permission, the token.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/2/toml",
        Some(&reader.bearer()),
        &Want::Forwarded,
    )
    .await;
    let line = wait_access(&tg, "the access line of a forward", |l| {
        l["outcome"] == "forwarded"
    });
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["route"], "/api/configs/*/toml", "{line}");
    assert_eq!(line["token_name"], "configs-reader", "{line}");

    // The default route is named `default`.
    expect(
        &ctl,
        &tg,
        "ui",
        Method::POST,
        "/somewhere",
        None,
        &Want::Missing,
    )
    .await;
    let line = wait_access(&tg, "the access line of a default route", |l| {
        l["path"] == "/somewhere"
    });
    assert_eq!(line["route"], "default", "{line}");
    assert_eq!(line["outcome"], "missing", "{line}");

    // Nowhere more than the last four characters of any secret.
    for secret in [&tok.secret, &reader.secret, &stranger] {
        let n = secret.len();
        tg.assert_logs_free_of(&[&secret[TOKEN_PREFIX.len()..], &secret[n - 8..]]);
    }
    tg.assert_logs_free_of(&["secret-query"]);
}

// ---------------------------------------------------------------------------------------------
// Hardening: what a valid token or a cookie must not buy
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sessions_never_pass_on_the_agents_routes() {
    let (ctl, tg) = start("pass_session_cookies = true\n", "");
    for (method, path) in [
        (Method::GET, "/api/configs/c-1/toml"),
        (Method::HEAD, "/api/configs/c-1/toml"),
        (Method::POST, "/agents/heartbeat"),
        (Method::GET, "/agents/list"),
    ] {
        let before = ctl.count();
        let resp = tg
            .proxy_send(
                "ui",
                method.clone(),
                path,
                &[("cookie", "tc_session=x")],
                "",
            )
            .await;
        let what = format!("{method} {path} with only a cookie");
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(ctl.count(), before, "{what}: forwarded");
    }
    // The web UI's own API calls still go on the session.
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::GET,
            "/api/users",
            &[("cookie", "tc_session=x")],
            "",
        )
        .await;
    check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Session,
        "a UI call on its session",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_a_service_credential_unmapped_routes_are_refused() {
    let ctl = Controller::start();
    let var = fresh_var("SERVICE");
    let service = random_secret();
    let config = Config::new().listener_with(
        "ui",
        &ctl.ui_url(),
        &format!(
            "profile = \"telegraf-controller\"\ndefault = \"deny\"\nauthorization = \"replace\"\nauthorization_env = \"{var}\"\n"
        ),
    );
    let tg = Tollgate::start_with_env(config, &[(var.as_str(), service.as_str())]);
    let agent = tg.create_token("agent").await;
    // What the profile cannot tie to a permission would otherwise run with the service
    // credential's rights on any valid token.
    for (method, path) in [
        (Method::GET, "/api/me"),
        (Method::OPTIONS, "/api/users"),
        (Method::PUT, "/agents/a-1"),
        (Method::POST, "/elsewhere"),
    ] {
        let what = format!("{method} {path} with an agent token under replace");
        let before = ctl.count();
        let resp = send(&tg, "ui", method, path, Some(&agent.bearer())).await;
        check(&ctl, before, &resp, "ui", &Want::Denied, &what);
    }
    // Mapped routes still work, with the service credential upstream.
    let got = expect(
        &ctl,
        &tg,
        "ui",
        Method::GET,
        "/api/configs/c-1/toml",
        Some(&agent.bearer()),
        &Want::Forwarded,
    )
    .await
    .expect("forwarded");
    assert_eq!(got.header("authorization"), vec![bearer(&service).as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn method_overrides_are_dropped_where_the_method_chose_the_permission() {
    let (ctl, tg) = start("", "");
    let writer = token(&tg, "users-writer", &["users:write"]).await;
    let before = ctl.count();
    let resp = tg
        .proxy_send(
            "ui",
            Method::POST,
            "/api/users/7",
            &[
                ("authorization", &writer.bearer()),
                ("x-http-method-override", "DELETE"),
                ("x-http-method", "DELETE"),
                ("x-method-override", "DELETE"),
                ("X_HTTP_Method_Override", "DELETE"),
            ],
            "{}",
        )
        .await;
    let got = check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Forwarded,
        "POST with overrides",
    )
    .expect("forwarded");
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x_http_method_override",
    ] {
        assert!(!got.has(name), "{name} reached the Controller");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn import_keeps_revoked_tokens_revoked_and_deleted_ones_gone() {
    let (ctl, tg) = start("", "");
    let revoked = random_secret();
    let expired = random_secret();
    let resp = import(
        &tg,
        json!({"tokens": [
            {"name": "was-revoked", "token": revoked, "revoked_at": "2026-01-01T00:00:00Z"},
            {"name": "was-expired", "token": expired, "expires_at": "2001-01-01T00:00:00Z"},
        ]}),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["imported"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["skipped"][0]["name"], "was-expired", "{v}");
    let id = v["imported"][0].as_str().unwrap().to_string();
    let record = tg.record(&id).await;
    assert_eq!(record["status"], "revoked");
    assert_eq!(record["revoked_at"], "2026-01-01T00:00:00Z");
    let before = ctl.count();
    let resp = send(
        &tg,
        "ui",
        Method::GET,
        "/api/configs/c/toml",
        Some(&bearer(&revoked)),
    )
    .await;
    check(
        &ctl,
        before,
        &resp,
        "ui",
        &Want::Revoked,
        "an imported revoked token",
    );

    // A deleted token cannot be brought back by importing it again.
    let leaked = tg.create_token("leaked").await;
    assert_eq!(tg.delete(&leaked.id).await.status, StatusCode::NO_CONTENT);
    let resp = import(
        &tg,
        json!({"tokens": [{"name": "leaked-again", "token": leaked.secret}]}),
    )
    .await;
    let v = resp.json();
    assert_eq!(v["imported"], json!([]), "{v}");
    assert_eq!(v["skipped"][0]["name"], "leaked-again");
    let before = ctl.count();
    let resp = send(
        &tg,
        "ui",
        Method::GET,
        "/api/configs/c/toml",
        Some(&leaked.bearer()),
    )
    .await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ctl.count(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_refusals_never_quote_a_secret_in_any_field() {
    let (_ctl, tg) = start("", "");
    let secret = random_secret();
    for entry in [
        json!({"name": "a", "digest": "0".repeat(64), "preset": secret}),
        json!({"name": "a", "digest": "0".repeat(64), "permissions": [secret]}),
        json!({"name": "a", "digest": "0".repeat(64), "expires_at": secret}),
        json!({"name": secret, "digest": "0".repeat(64)}),
        json!({"name": "a", "digest": "0".repeat(64), "description": format!("was {secret}")}),
    ] {
        let resp = import(&tg, json!({"tokens": [entry]})).await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
        assert!(!resp.text().contains(&secret[9..]), "{}", resp.text());
    }
    assert!(tg.list_ids("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_import_fits_in_one_call() {
    let (_ctl, tg) = start("", "");
    // Well past the 4 MiB that other admin calls may send.
    let tokens: Vec<Value> = (0..60_000)
        .map(|i| json!({"name": format!("fleet-{i:05}"), "digest": sha256_hex(format!("t{i}").as_bytes())}))
        .collect();
    let resp = import(&tg, json!({ "tokens": tokens })).await;
    assert_eq!(
        resp.status,
        StatusCode::OK,
        "{}",
        &resp.text()[..200.min(resp.text().len())]
    );
    assert_eq!(
        resp.json()["imported"].as_array().map(Vec::len),
        Some(60_000)
    );
}
