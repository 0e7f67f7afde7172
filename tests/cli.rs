//! The command line, black-box: the built binary as a client of a running server's admin API, exit
//! statuses, and `check-config`.

mod support;

use http::StatusCode;
use serde_json::{Value, json};
use support::*;

fn started() -> (Upstream, Tollgate) {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    (up, tg)
}

/// Asserts a failed operation: exit 1, one line on stderr, nothing on stdout.
fn assert_op_failure(out: &CliOutput) {
    assert_eq!(
        out.code(),
        Some(1),
        "exit 1 for a failed operation: {out:#?}"
    );
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {out:#?}"
    );
    assert!(!out.stderr.trim().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn create_json_prints_the_record_and_the_secret() {
    let (_up, tg) = started();
    let out = tg.cli(&["token", "create", "--name", "x", "--json"]).ok();
    let v = out.json();
    assert!(v.is_object(), "one JSON object: {}", out.stdout);
    assert_eq!(v["name"], "x");
    assert_eq!(v["status"], "active");
    assert_eq!(
        v["permissions"],
        serde_json::json!(["configs:read", "heartbeat:write"])
    );
    let secret = v["token"].as_str().expect("the secret").to_string();
    assert!(secret.starts_with(TOKEN_PREFIX) && secret.len() == TOKEN_PREFIX.len() + 64);
    let id = v["id"].as_str().expect("an id").to_string();

    // The API agrees, and the secret works.
    let record = tg.record(&id).await;
    assert_eq!(record["name"], "x");
    assert_eq!(
        tg.proxy("api", "/x", Some(&bearer(&secret))).await.status,
        StatusCode::OK
    );
    assert!(!out.stdout.contains(tg.admin_token()));
    assert!(!out.stderr.contains(tg.admin_token()));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_options() {
    let (_up, tg) = started();
    let out = tg
        .cli(&[
            "token",
            "create",
            "--name",
            "reader",
            "--description",
            "reads configs",
            "--permission",
            "configs:read",
            "--permission",
            "agents:read",
            "--expires-at",
            "2099-01-31T00:00:00Z",
            "--json",
        ])
        .ok();
    let v = out.json();
    let mut perms: Vec<&str> = v["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    perms.sort();
    assert_eq!(perms, vec!["agents:read", "configs:read"]);
    assert_eq!(v["description"], "reads configs");
    assert_eq!(v["expires_at"], "2099-01-31T00:00:00Z");

    let out = tg
        .cli(&[
            "token",
            "create",
            "--name",
            "month",
            "--preset",
            "telegraf-agent",
            "--expires-in",
            "30d",
            "--json",
        ])
        .ok();
    let v = out.json();
    assert_time(&v["expires_at"], "expires_at");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_human_output_shows_the_secret() {
    let (_up, tg) = started();
    let out = tg.cli(&["token", "create", "--name", "human"]).ok();
    assert!(
        out.stdout.contains(TOKEN_PREFIX),
        "the secret is shown once: {out:#?}"
    );
    let list = tg.list("").await;
    assert_eq!(list["tokens"][0]["name"], "human");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_show() {
    let (_up, tg) = started();
    let a = tg.create_token("alpha-agent").await;
    let b = tg.create_token("bravo-agent").await;
    tg.revoke(&b.id, None).await;

    let out = tg.cli(&["token", "list"]).ok();
    assert!(out.stdout.contains("alpha-agent"), "{out:#?}");
    assert!(out.stdout.contains("bravo-agent"), "{out:#?}");
    assert!(!out.stdout.contains(a.hex_part()));

    let out = tg.cli(&["token", "list", "--json"]).ok();
    let v = out.json();
    let mut ids = ids_of(&v["tokens"]);
    ids.sort();
    assert_eq!(ids, sorted(&[&a.id, &b.id]));

    let out = tg
        .cli(&["token", "list", "--status", "revoked", "--json"])
        .ok();
    assert_eq!(ids_of(&out.json()["tokens"]), vec![b.id.clone()]);

    let out = tg.cli(&["token", "show", &a.id, "--json"]).ok();
    let shown = out.json();
    assert_eq!(shown, tg.record(&a.id).await);
    assert!(shown.get("token").is_none(), "show never prints the secret");

    let out = tg.cli(&["token", "show", &a.id]).ok();
    assert!(out.stdout.contains("alpha-agent"), "{out:#?}");
    assert!(!out.stdout.contains(a.hex_part()));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_with_yes_then_the_proxy_refuses() {
    let (_up, tg) = started();
    let tok = tg.create_token("agent").await;
    assert_eq!(
        tg.proxy("api", "/x", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    tg.cli(&["token", "revoke", &tok.id, "--reason", "cli test", "--yes"])
        .ok();
    let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    let r = tg.record(&tok.id).await;
    assert_eq!(r["status"], "revoked");
    assert_eq!(r["revoke_reason"], "cli test");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_several_ids_at_once() {
    let (_up, tg) = started();
    let a = tg.create_token("a").await;
    let b = tg.create_token("b").await;
    let c = tg.create_token("c").await;
    tg.cli(&["token", "revoke", &a.id, &b.id, "--yes"]).ok();
    for t in [&a, &b] {
        assert_eq!(tg.record(&t.id).await["status"], "revoked");
        let resp = tg.proxy("api", "/x", Some(&t.bearer())).await;
        assert_unauthorized(&resp, "Invalid token", Some(true));
    }
    assert_eq!(tg.record(&c.id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_json_output_and_unknown_ids_exit_1_after_doing_the_rest() {
    let (_up, tg) = started();
    let a = tg.create_token("a").await;
    let b = tg.create_token("b").await;
    tg.cli(&["token", "revoke", &b.id, "--yes"]).ok();
    let missing = "0000000000000000";
    let out = tg.cli(&["token", "revoke", &a.id, &b.id, missing, "--yes", "--json"]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(
        out.json(),
        json!({"revoked": [a.id], "already_revoked": [b.id], "not_found": [missing]})
    );
    assert!(out.stderr.contains(missing), "{out:#?}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out:#?}");
    assert_eq!(tg.record(&a.id).await["status"], "revoked");

    let out = tg.cli(&["token", "delete", &a.id, missing, "--yes", "--json"]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert_eq!(
        out.json(),
        json!({"deleted": [a.id], "not_found": [missing]})
    );
    let out = tg.cli(&["token", "delete", &b.id, "--yes", "--json"]).ok();
    assert_eq!(out.json(), json!({"deleted": [b.id], "not_found": []}));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_and_delete_without_yes_and_without_a_terminal_refuse() {
    let (_up, tg) = started();
    let tok = tg.create_token("agent").await;
    let before = tg.list("").await;
    for args in [
        vec!["token", "revoke", tok.id.as_str()],
        vec!["token", "delete", tok.id.as_str()],
    ] {
        let out = tg.cli(&args);
        assert_eq!(out.code(), Some(1), "{args:?}: {out:#?}");
        assert!(
            !out.stderr.trim().is_empty(),
            "{args:?}: a message says why"
        );
        let msg = out.stderr.to_lowercase();
        assert!(
            msg.contains("--yes") || msg.contains("terminal"),
            "{args:?}: the message says how to confirm: {:?}",
            out.stderr
        );
    }
    assert_eq!(tg.list("").await, before, "nothing changed");
    assert_eq!(
        tg.proxy("api", "/x", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_with_yes() {
    let (_up, tg) = started();
    let tok = tg.create_token("agent").await;
    let other = tg.create_token("other").await;
    tg.cli(&["token", "delete", &tok.id, "--yes"]).ok();
    assert_eq!(tg.show(&tok.id).await.status, StatusCode::NOT_FOUND);
    let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));
    assert_eq!(tg.list_ids("").await, vec![other.id.clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_usage_exits_2() {
    let (_up, tg) = started();
    for args in [
        vec!["token", "create"],
        vec!["token", "frobnicate"],
        vec!["token", "revoke"],
        vec!["token", "list", "--status", "bogus"],
        vec!["token", "create", "--name", "x", "--no-such-flag"],
        vec!["no-such-command"],
    ] {
        let out = tg.cli(&args);
        assert_eq!(out.code(), Some(2), "{args:?}: {out:#?}");
        assert!(!out.stderr.trim().is_empty(), "{args:?}: usage on stderr");
    }
    assert!(tg.list_ids("").await.is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operation_failure_exits_1_with_one_line() {
    let (_up, tg) = started();
    let gone = tg.create_token("gone").await;
    assert_eq!(tg.delete(&gone.id).await.status, StatusCode::NO_CONTENT);

    assert_op_failure(&tg.cli(&["token", "show", &gone.id]));
    assert_op_failure(&tg.cli(&["token", "show", &gone.id, "--json"]));
    assert_op_failure(&tg.cli(&["token", "revoke", &gone.id, "--yes"]));
    assert_op_failure(&tg.cli(&["token", "delete", &gone.id, "--yes"]));

    // A name clash is an operation failure too.
    tg.create_token("taken").await;
    assert_op_failure(&tg.cli(&["token", "create", "--name", "taken"]));

    // A wrong admin token.
    let url = tg.admin_url();
    let out = tg.cli_raw(
        &["token", "list", "--admin-url", &url],
        &[("TOLLGATE_ADMIN_TOKEN", "wrong-wrong-wrong-wrong")],
    );
    assert_op_failure(&out);

    // $TOLLGATE_ADMIN_URL is honoured like --admin-url.
    let out = tg.cli_raw(
        &["token", "list", "--json"],
        &[
            ("TOLLGATE_ADMIN_URL", &url),
            ("TOLLGATE_ADMIN_TOKEN", tg.admin_token()),
        ],
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert_eq!(out.json()["tokens"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_command_lists_events() {
    let (_up, tg) = started();
    let tok = tg.create_token("audited").await;
    tg.revoke(&tok.id, Some("why not")).await;
    let out = tg.cli(&["audit", "--json"]).ok();
    let v: Value = out.json();
    let text = v.to_string();
    assert!(text.contains(&tok.id), "{text}");
    assert!(!text.contains(tok.hex_part()));
    let out = tg.cli(&["audit", "--limit", "1", "--json"]).ok();
    let events = out.json();
    let events = events
        .get("events")
        .and_then(Value::as_array)
        .or_else(|| events.as_array())
        .cloned()
        .unwrap_or_else(|| panic!("audit --json: {}", out.stdout));
    assert_eq!(events.len(), 1);
}

#[test]
fn check_config_accepts_a_good_config_and_names_an_unknown_key() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, Config::single(&up).render(dir.path())).unwrap();
    let out = run_binary(
        dir.path(),
        &["check-config", "--config", good.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
    assert!(
        out.stdout.contains(&up.url()),
        "prints the effective config: {out:#?}"
    );

    let bad = dir.path().join("bad.toml");
    let text = Config::single(&up)
        .render(dir.path())
        .replace("[log]\n", "[log]\nformatt = \"json\"\n");
    std::fs::write(&bad, text).unwrap();
    let out = run_binary(
        dir.path(),
        &["check-config", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_ne!(out.code(), Some(0), "{out:#?}");
    assert!(out.stderr.contains("formatt"), "names the key: {out:#?}");

    // $TOLLGATE_CONFIG names the config like --config.
    let out = run_binary(
        dir.path(),
        &["check-config"],
        &[("TOLLGATE_CONFIG", good.to_str().unwrap())],
    );
    assert_eq!(out.code(), Some(0), "{out:#?}");
}
