//! The admin API, black-box: records, errors, bulk calls, listing and paging, audit, health and
//! metrics, and admin authentication.

mod support;

use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

fn started() -> (Upstream, Tollgate) {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    (up, tg)
}

/// Asserts a record has exactly the contract's fields (plus `token` when `with_secret`).
fn assert_record_shape(record: &Value, with_secret: bool) {
    let obj = record
        .as_object()
        .unwrap_or_else(|| panic!("a record is an object: {record}"));
    for key in [
        "id",
        "name",
        "description",
        "hint",
        "permissions",
        "status",
        "created_at",
        "expires_at",
        "revoked_at",
        "revoke_reason",
        "last_used_at",
    ] {
        assert!(obj.contains_key(key), "record lacks {key:?}: {record}");
    }
    assert_eq!(
        obj.contains_key("token"),
        with_secret,
        "the secret is shown at creation only: {record}"
    );
    assert!(
        !obj.contains_key("digest"),
        "records do not expose the digest"
    );
    assert_time(&record["created_at"], "created_at");
}

#[tokio::test(flavor = "multi_thread")]
async fn create_returns_the_record_and_the_secret_once() {
    let (_up, tg) = started();
    let created = tg
        .create_token_with(json!({"name": "agent-east-1", "description": "east rack"}))
        .await;
    let r = &created.record;
    assert_record_shape(r, true);
    assert_eq!(r["name"], "agent-east-1");
    assert_eq!(r["description"], "east rack");
    assert_eq!(r["status"], "active");
    assert_eq!(
        r["permissions"],
        json!(["configs:read", "heartbeat:write"]),
        "the default is the telegraf-agent preset"
    );
    assert_eq!(r["expires_at"], Value::Null);
    assert_eq!(r["revoked_at"], Value::Null);
    assert_eq!(r["revoke_reason"], Value::Null);
    assert_eq!(r["last_used_at"], Value::Null);

    // The secret: tc-apiv1_ and 64 lowercase hex.
    let hex = created.hex_part();
    assert_eq!(hex.len(), 64, "secret: {}", created.secret);
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "secret is lowercase hex: {}",
        created.secret
    );
    // The hint: the prefix and the last four characters, never the secret.
    let hint = r["hint"].as_str().expect("hint is a string");
    assert!(hint.starts_with(TOKEN_PREFIX), "hint: {hint}");
    assert!(
        hint.ends_with(&hex[60..]),
        "hint ends with the last 4: {hint}"
    );
    assert!(!hint.contains(&hex[..16]), "hint leaks the secret: {hint}");

    // show gives the same record without the secret.
    let shown = tg.record(&created.id).await;
    assert_record_shape(&shown, false);
    let mut expected = created.record.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(shown, expected);

    // list neither.
    let list = tg.list("").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1);
    assert_record_shape(&list["tokens"][0], false);
    assert!(!list.to_string().contains(hex));

    // The secret works on the proxy.
    let resp = tg.proxy("api", "/x", Some(&created.bearer())).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn create_with_preset_permissions_and_expiry() {
    let (_up, tg) = started();
    let a = tg
        .create_token_with(json!({"name": "a", "preset": "telegraf-agent"}))
        .await;
    assert_eq!(
        a.record["permissions"],
        json!(["configs:read", "heartbeat:write"])
    );
    let b = tg
        .create_token_with(json!({"name": "b", "permissions": ["configs:read", "agents:all"]}))
        .await;
    let mut perms: Vec<String> = b.record["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    perms.sort();
    assert_eq!(perms, vec!["agents:all", "configs:read"]);

    let c = tg
        .create_token_with(json!({"name": "c", "expires_in": "30d"}))
        .await;
    assert_time(&c.record["expires_at"], "expires_at");
    let created = parse_rfc3339(c.record["created_at"].as_str().unwrap()).unwrap();
    let expires = parse_rfc3339(c.record["expires_at"].as_str().unwrap()).unwrap();
    let delta = expires - created - 30 * 86_400;
    assert!(
        (0..=1).contains(&delta),
        "expires_in 30d: created {}, expires {}",
        c.record["created_at"],
        c.record["expires_at"]
    );

    let d = tg
        .create_token_with(json!({"name": "d", "expires_at": "2099-01-31T00:00:00Z"}))
        .await;
    assert_eq!(d.record["expires_at"], "2099-01-31T00:00:00Z");
    assert_eq!(d.record["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn name_clash_is_409_and_changes_nothing() {
    let (_up, tg) = started();
    let first = tg.create_token("dup").await;
    let resp = tg
        .admin(Method::POST, "/api/v1/tokens", Some(json!({"name": "dup"})))
        .await;
    assert_eq!(resp.status, StatusCode::CONFLICT, "{}", resp.text());
    assert!(!resp.error().is_empty());
    assert_eq!(tg.list_ids("").await, vec![first.id]);
}

/// Asserts a 400 for `what`, and gives its error message.
fn refused(resp: &Resp, what: &str) -> String {
    assert_eq!(
        resp.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        resp.text()
    );
    resp.error()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_400_naming_the_field_and_changes_nothing() {
    let (_up, tg) = started();
    let existing = tg.create_token("existing").await;
    let before = tg.list("").await;

    let cases: Vec<(Value, &[&str])> = vec![
        (
            json!({"name": "x", "permissions": ["configs:fly"]}),
            &["permission"],
        ),
        (
            json!({"name": "x", "permissions": ["nothing:read"]}),
            &["permission"],
        ),
        (json!({"name": "x", "colour": "red"}), &["colour"]),
        (json!({"name": "x", "expires_in": "soon"}), &["expires_in"]),
        (
            json!({"name": "x", "expires_at": "next tuesday"}),
            &["expires_at"],
        ),
        (
            json!({"name": "x", "expires_in": "1d", "expires_at": "2099-01-01T00:00:00Z"}),
            &["expires_in", "expires_at"],
        ),
        (
            json!({"name": "x", "preset": "telegraf-agent", "permissions": ["configs:read"]}),
            &["preset", "permissions"],
        ),
        (json!({"name": "x", "preset": "superuser"}), &["preset"]),
        (json!({"description": "no name"}), &["name"]),
    ];
    for (body, fields) in cases {
        let resp = tg
            .admin(Method::POST, "/api/v1/tokens", Some(body.clone()))
            .await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body} should be refused: {}",
            resp.text()
        );
        let msg = resp.error();
        assert!(
            fields.iter().any(|f| msg.contains(f)),
            "the message for {body} should name one of {fields:?}: {msg:?}"
        );
    }

    // Not JSON at all.
    let resp = tg
        .admin_raw(Method::POST, "/api/v1/tokens", "{\"name\": ")
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
    assert!(!resp.error().is_empty());

    // An object followed by more, or a body that is not an object: each would otherwise be
    // carried out as far as it fits.
    let id = &existing.id;
    for (path, body) in [
        (
            "/api/v1/tokens",
            r#"{"name": "trailing"} garbage"#.to_owned(),
        ),
        (
            "/api/v1/tokens",
            r#"{"name": "first"}{"name": "second"}"#.to_owned(),
        ),
        ("/api/v1/tokens", r#"["by-position"]"#.to_owned()),
        (
            "/api/v1/tokens/revoke",
            format!(r#"{{"ids": ["{id}"]}} {{"ids": []}}"#),
        ),
        (
            "/api/v1/tokens/revoke",
            format!(r#"[["{id}"], "an array"]"#),
        ),
        ("/api/v1/tokens/delete", format!(r#"{{"ids": ["{id}"]}},"#)),
        (
            &format!("/api/v1/tokens/{id}/revoke"),
            r#"{} {}"#.to_owned(),
        ),
        (
            "/api/v1/tokens/import",
            r#"{"tokens": []} not json"#.to_owned(),
        ),
    ] {
        let resp = tg.admin_raw(Method::POST, path, &body).await;
        let error = refused(&resp, &format!("{path} {body}"));
        assert!(error.contains("JSON body"), "{path} {body}: {error}");
    }

    // A revoke's reason that holds a token: it would be stored and kept in the audit trail.
    let reason = format!("pasted in a chat: {}", random_secret());
    for (path, body) in [
        (
            format!("/api/v1/tokens/{id}/revoke"),
            json!({"reason": reason}),
        ),
        (
            "/api/v1/tokens/revoke".to_owned(),
            json!({"ids": [id], "reason": reason}),
        ),
    ] {
        let resp = tg.admin(Method::POST, &path, Some(body)).await;
        let msg = refused(&resp, &path);
        assert!(
            msg.contains("reason") && !msg.contains(&reason[18..]),
            "{path}: {msg:?}"
        );
    }

    // A secret pasted where it does not belong is refused without being sent back: as a value
    // the checks quote, as a value serde quotes, or as a field's name.
    let secret = random_secret();
    let hex = &secret["tc-apiv1_".len()..];
    for (path, body) in [
        ("/api/v1/tokens", json!({"name": "x", "expires_at": secret})),
        ("/api/v1/tokens", json!({"name": "x", "expires_in": secret})),
        ("/api/v1/tokens", json!({"name": "x", "preset": secret})),
        (
            "/api/v1/tokens",
            json!({"name": "x", "permissions": [secret]}),
        ),
        (
            "/api/v1/tokens",
            json!({"name": "x", "permissions": secret}),
        ),
        (
            "/api/v1/tokens/revoke",
            json!({"ids": [id], secret.clone(): 1}),
        ),
    ] {
        let resp = tg.admin(Method::POST, path, Some(body.clone())).await;
        let error = refused(&resp, &format!("{path} {body}"));
        assert!(
            !resp.text().contains(hex),
            "{path}: the secret came back: {error}"
        );
    }

    // Bulk calls with an unknown field.
    for path in ["/api/v1/tokens/revoke", "/api/v1/tokens/delete"] {
        let body = json!({"idz": [existing.id]});
        let resp = tg.admin(Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            resp.text()
        );
        let msg = resp.error();
        assert!(
            msg.contains("idz"),
            "{path}: message should name the field: {msg:?}"
        );
    }

    // Bad list parameters.
    for (query, field) in [
        ("?status=bogus", "status"),
        ("?limit=abc", "limit"),
        ("?limit=0", "limit"),
    ] {
        let resp = tg
            .admin(Method::GET, &format!("/api/v1/tokens{query}"), None)
            .await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            resp.text()
        );
        assert!(
            resp.error().contains(field),
            "{query}: message should name {field:?}: {:?}",
            resp.error()
        );
    }

    assert_eq!(tg.list("").await, before, "bad input changed nothing");
    assert_eq!(tg.record(&existing.id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrongly_typed_field_is_400_naming_the_field() {
    let (_up, tg) = started();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": 42}), "name"),
        (
            json!({"name": "x", "permissions": "configs:read"}),
            "permissions",
        ),
        (json!({"name": "x", "description": ["a"]}), "description"),
    ];
    let bulk: Vec<(&str, Value)> = vec![
        ("/api/v1/tokens/revoke", json!({"ids": "not-a-list"})),
        ("/api/v1/tokens/delete", json!({"ids": "not-a-list"})),
    ];
    let cases = cases
        .into_iter()
        .map(|(body, field)| ("/api/v1/tokens", body, field))
        .chain(bulk.into_iter().map(|(path, body)| (path, body, "ids")));
    for (path, body, field) in cases {
        let resp = tg.admin(Method::POST, path, Some(body.clone())).await;
        assert_eq!(
            resp.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            resp.text()
        );
        let msg = resp.error();
        assert!(
            msg.contains(field),
            "the message for {body} should name {field:?}: {msg:?}"
        );
    }
    assert!(tg.list_ids("").await.is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_id_is_404_on_show_revoke_and_delete() {
    let (_up, tg) = started();
    // A real id that no longer exists.
    let gone = tg.create_token("gone").await;
    assert_eq!(tg.delete(&gone.id).await.status, StatusCode::NO_CONTENT);
    let keep = tg.create_token("keep").await;

    let resp = tg.show(&gone.id).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    assert!(!resp.error().is_empty());
    let resp = tg.revoke(&gone.id, None).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    assert!(!resp.error().is_empty());
    let resp = tg.delete(&gone.id).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.text());
    assert!(!resp.error().is_empty());

    assert_eq!(tg.list_ids("").await, vec![keep.id.clone()]);
    assert_eq!(tg.record(&keep.id).await["status"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_sets_status_time_and_reason_and_is_idempotent() {
    let (_up, tg) = started();
    let tok = tg.create_token("agent").await;
    let resp = tg.revoke(&tok.id, Some("laptop stolen")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let first = resp.json();
    assert_record_shape(&first, false);
    assert_eq!(first["id"], tok.id.as_str());
    assert_eq!(first["status"], "revoked");
    assert_eq!(first["revoke_reason"], "laptop stolen");
    assert_time(&first["revoked_at"], "revoked_at");

    let resp = tg.revoke(&tok.id, Some("second reason")).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let second = resp.json();
    assert_eq!(second["status"], "revoked");
    assert_eq!(
        second["revoked_at"], first["revoked_at"],
        "the first revoke time stands"
    );
    assert_eq!(
        second["revoke_reason"], "laptop stolen",
        "revoking again changes nothing"
    );
    assert_eq!(tg.record(&tok.id).await, first);
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_revoke_reports_each_list() {
    let (_up, tg) = started();
    let a = tg.create_token("a").await;
    let b = tg.create_token("b").await;
    let c = tg.create_token("c").await;
    let untouched = tg.create_token("untouched").await;
    let gone = tg.create_token("gone").await;
    assert_eq!(tg.delete(&gone.id).await.status, StatusCode::NO_CONTENT);
    let first = tg.revoke(&c.id, Some("earlier")).await.json();

    let resp = tg
        .admin(
            Method::POST,
            "/api/v1/tokens/revoke",
            Some(json!({"ids": [a.id, c.id, gone.id, b.id], "reason": "rotation"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(sorted_strings(&v["revoked"]), sorted(&[&a.id, &b.id]));
    assert_eq!(sorted_strings(&v["already_revoked"]), sorted(&[&c.id]));
    assert_eq!(sorted_strings(&v["not_found"]), sorted(&[&gone.id]));

    for t in [&a, &b] {
        let r = tg.record(&t.id).await;
        assert_eq!(r["status"], "revoked");
        assert_eq!(r["revoke_reason"], "rotation");
        let resp = tg.proxy("api", "/x", Some(&t.bearer())).await;
        assert_unauthorized(&resp, "Invalid token", Some(true));
    }
    assert_eq!(tg.record(&c.id).await, first, "already revoked: unchanged");
    assert_eq!(tg.record(&untouched.id).await["status"], "active");
    let resp = tg.proxy("api", "/x", Some(&untouched.bearer())).await;
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_and_bulk_delete() {
    let (_up, tg) = started();
    let a = tg.create_token("a").await;
    let b = tg.create_token("b").await;
    let c = tg.create_token("c").await;
    let d = tg.create_token("d").await;
    let gone = tg.create_token("gone").await;

    let resp = tg.delete(&gone.id).await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert!(resp.body.is_empty(), "204 has no body: {:?}", resp.text());
    assert_eq!(tg.show(&gone.id).await.status, StatusCode::NOT_FOUND);

    assert_eq!(tg.revoke(&b.id, None).await.status, StatusCode::OK);
    let resp = tg
        .admin(
            Method::POST,
            "/api/v1/tokens/delete",
            Some(json!({"ids": [a.id, b.id, gone.id]})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(sorted_strings(&v["deleted"]), sorted(&[&a.id, &b.id]));
    assert_eq!(sorted_strings(&v["not_found"]), sorted(&[&gone.id]));

    for t in [&a, &b, &gone] {
        assert_eq!(tg.show(&t.id).await.status, StatusCode::NOT_FOUND);
        let resp = tg.proxy("api", "/x", Some(&t.bearer())).await;
        assert_unauthorized(&resp, "Invalid token", Some(true));
    }
    let mut left = tg.list_ids("").await;
    left.sort();
    assert_eq!(left, sorted(&[&c.id, &d.id]), "only c and d are left");
    // A deleted name is free again.
    let again = tg.create_token("a").await;
    assert_ne!(again.id, a.id);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_is_newest_first() {
    let (_up, tg) = started();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(tg.create_token(&format!("t{i}")).await);
    }
    // Created one after another (several within one second): the later, the newer.
    let newest_first: Vec<String> = created.iter().rev().map(|c| c.id.clone()).collect();
    let all = tg.list("").await;
    assert_eq!(ids_of(&all["tokens"]), newest_first, "newest first");
    assert_eq!(all["next"], Value::Null, "one page holds everything");
}

/// Walks `GET /api/v1/tokens` page by page (`filter` is `""` or `status=...&`).
async fn walk(tg: &Tollgate, filter: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut query = format!("?{filter}limit={limit}");
    for _ in 0..50 {
        let page = tg.list(&query).await;
        let ids = ids_of(&page["tokens"]);
        assert!(
            ids.len() <= limit,
            "limit {limit} gave {} records",
            ids.len()
        );
        seen.extend(ids);
        match &page["next"] {
            Value::Null => return seen,
            Value::String(cursor) => query = format!("?{filter}limit={limit}&after={cursor}"),
            other => panic!("next is a cursor string or null, got {other}"),
        }
    }
    panic!("paging does not end (limit {limit}, {filter:?}): {seen:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_status_and_pages_through_every_token_once() {
    let (_up, tg) = started();
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(tg.create_token(&format!("t{i}")).await);
    }
    tg.revoke(&created[1].id, None).await;
    tg.revoke(&created[4].id, None).await;
    let revoked = [created[1].id.clone(), created[4].id.clone()];

    // The unfiltered order is the reference here; its direction is list_is_newest_first's business.
    let all = tg.list_ids("").await;
    let mut all_sorted = all.clone();
    all_sorted.sort();
    let mut created_sorted: Vec<String> = created.iter().map(|c| c.id.clone()).collect();
    created_sorted.sort();
    assert_eq!(all_sorted, created_sorted, "every token listed once");

    // Status filter: the same order, restricted.
    let want_revoked: Vec<String> = all
        .iter()
        .filter(|id| revoked.contains(id))
        .cloned()
        .collect();
    let want_active: Vec<String> = all
        .iter()
        .filter(|id| !revoked.contains(id))
        .cloned()
        .collect();
    assert_eq!(tg.list_ids("?status=revoked").await, want_revoked);
    assert_eq!(tg.list_ids("?status=active").await, want_active);
    assert!(tg.list_ids("?status=expired").await.is_empty());
    for r in tg.list("?status=revoked").await["tokens"]
        .as_array()
        .unwrap()
    {
        assert_eq!(r["status"], "revoked");
    }

    // limit + after walks every token exactly once, in the list's order.
    for limit in [1, 2, 3, 7, 50] {
        assert_eq!(walk(&tg, "", limit).await, all, "limit {limit}");
    }
    // Paging composes with the status filter.
    assert_eq!(walk(&tg, "status=active&", 2).await, want_active);
    assert_eq!(walk(&tg, "status=revoked&", 1).await, want_revoked);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_created_revoked_deleted_without_secrets() {
    let (_up, tg) = started();
    let a = tg.create_token("audited-a").await;
    let b = tg.create_token("audited-b").await;
    tg.revoke(&a.id, Some("compromised")).await;
    assert_eq!(tg.delete(&b.id).await.status, StatusCode::NO_CONTENT);
    let resp = tg
        .admin(
            Method::POST,
            "/api/v1/tokens/revoke",
            Some(json!({"ids": [a.id], "reason": "again"})),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);

    let events = tg.audit("").await;
    let find = |action: &str, id: &str| -> Value {
        events
            .iter()
            .find(|e| e["action"] == action && e["token_id"] == id)
            .unwrap_or_else(|| panic!("no {action:?} event for {id}: {events:#?}"))
            .clone()
    };
    for e in &events {
        for key in [
            "seq",
            "at",
            "action",
            "token_id",
            "token_name",
            "actor",
            "reason",
        ] {
            assert!(e.get(key).is_some(), "event lacks {key:?}: {e}");
        }
        assert_time(&e["at"], "event at");
        assert!(
            e["actor"].as_str().is_some_and(|s| !s.is_empty()),
            "actor: {e}"
        );
    }
    let created_a = find("created", &a.id);
    assert_eq!(created_a["token_name"], "audited-a");
    let created_b = find("created", &b.id);
    assert_eq!(created_b["token_name"], "audited-b");
    let revoked_a = find("revoked", &a.id);
    assert_eq!(revoked_a["token_name"], "audited-a");
    assert_eq!(revoked_a["reason"], "compromised");
    let deleted_b = find("deleted", &b.id);
    assert_eq!(deleted_b["token_name"], "audited-b");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["action"] == "revoked" && e["token_id"] == a.id.as_str())
            .count(),
        1,
        "revoking a revoked token changes nothing, so no second event"
    );

    // Newest first by seq; limit and before page backwards.
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "events newest first: {seqs:?}"
    );
    assert_eq!(seqs.len(), 4, "created a, created b, revoked a, deleted b");
    let first_two = tg.audit("?limit=2").await;
    assert_eq!(first_two, events[..2].to_vec());
    let rest = tg.audit(&format!("?before={}", seqs[1])).await;
    assert_eq!(rest, events[2..].to_vec());

    let text = serde_json::to_string(&events).unwrap();
    for secret in [&a.secret, &b.secret] {
        assert!(!text.contains(secret.as_str()), "audit holds a secret");
        assert!(!text.contains(&secret[TOKEN_PREFIX.len()..]));
    }
    assert!(!text.contains(tg.admin_token()));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_api_route_refuses_a_missing_or_wrong_admin_token() {
    let (_up, tg) = started();
    let tok = tg.create_token("target").await;
    let id = tok.id.as_str();
    let before = tg.list("").await;
    let wrong_bearer = format!("Bearer {}", hex(&random_bytes(24)));
    let as_basic = format!("Basic {}", tg.admin_token());
    let as_token = tok.bearer(); // a proxy token is not an admin token
    let auths: [Option<&str>; 4] = [
        None,
        Some(wrong_bearer.as_str()),
        Some(as_basic.as_str()),
        Some(as_token.as_str()),
    ];
    let import_body = json!({"tokens": [{"name": "imported", "token": random_secret()}]});
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "sneaky"})),
        ),
        (Method::GET, "/api/v1/tokens".into(), None),
        (Method::GET, format!("/api/v1/tokens/{id}"), None),
        (
            Method::POST,
            format!("/api/v1/tokens/{id}/revoke"),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/tokens/revoke".into(),
            Some(json!({"ids": [id]})),
        ),
        (
            Method::POST,
            "/api/v1/tokens/import".into(),
            Some(import_body),
        ),
        (Method::DELETE, format!("/api/v1/tokens/{id}"), None),
        (
            Method::POST,
            "/api/v1/tokens/delete".into(),
            Some(json!({"ids": [id]})),
        ),
        (Method::GET, "/api/v1/audit".into(), None),
    ];
    for (method, path, body) in &routes {
        for auth in auths {
            let resp = tg.admin_as(method.clone(), path, auth, body.clone()).await;
            assert_eq!(
                resp.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}: {}",
                resp.text()
            );
            assert!(!resp.error().is_empty(), "{method} {path}: error body");
        }
    }
    assert_eq!(tg.list("").await, before, "nothing changed");
    let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::OK);
    tg.assert_logs_free_of(&[tg.admin_token(), &tok.secret, tok.hex_part()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics() {
    let (_up, tg) = started();
    let tok = tg.create_token("m").await;
    assert_eq!(
        tg.proxy("api", "/x", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    assert_eq!(
        tg.proxy("api", "/x", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    let http = HttpClient::http1();
    let base = tg.admin_url();
    assert_eq!(
        http.get(&format!("{base}/healthz"), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        http.get(&format!("{base}/readyz"), &[]).await.status,
        StatusCode::OK
    );
    let metrics = http.get(&format!("{base}/metrics"), &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let ct = metrics.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "content-type: {ct:?}");
    let text = metrics.text();
    assert!(
        text.lines().any(|l| l.starts_with("# TYPE tollgate_")),
        "Prometheus text with tollgate_ metrics:\n{text}"
    );
    for sample in [
        r#"tollgate_requests_total{listener="api",outcome="forwarded"} 1"#,
        r#"tollgate_requests_total{listener="api",outcome="missing"} 1"#,
        r#"tollgate_requests_total{listener="api",outcome="revoked"} 0"#,
        r#"tollgate_tokens{status="active"} 1"#,
        r#"tollgate_tokens{status="revoked"} 0"#,
        "tollgate_revocations_total 0",
    ] {
        assert!(text.lines().any(|l| l == sample), "{sample} in:\n{text}");
    }
    assert!(
        text.contains(r#"tollgate_upstream_duration_seconds_count{listener="api"} 1"#),
        "one upstream latency sample:\n{text}"
    );
    for secret in [tok.secret.as_str(), tok.hex_part(), tg.admin_token()] {
        assert!(!text.contains(secret), "metrics hold a secret");
    }

    // A revoke and a refused request show up on the next scrape.
    assert_eq!(tg.revoke(&tok.id, None).await.status, StatusCode::OK);
    tg.proxy("api", "/x", Some(&tok.bearer())).await;
    let text = http.get(&format!("{base}/metrics"), &[]).await.text();
    for sample in [
        r#"tollgate_requests_total{listener="api",outcome="revoked"} 1"#,
        r#"tollgate_tokens{status="active"} 0"#,
        r#"tollgate_tokens{status="revoked"} 1"#,
        "tollgate_revocations_total 1",
    ] {
        assert!(text.lines().any(|l| l == sample), "{sample} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn last_used_at_is_recorded_after_use() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up).server("last_used_flush = \"1s\""));
    let tok = tg.create_token("used").await;
    assert_eq!(tg.record(&tok.id).await["last_used_at"], Value::Null);
    let before = SystemTime::now() - Duration::from_secs(1);
    let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
    assert_eq!(resp.status, StatusCode::OK);
    let used = wait_until(DEADLINE, "last_used_at to be flushed", || async {
        let r = tg.record(&tok.id).await;
        (!r["last_used_at"].is_null()).then_some(r)
    })
    .await;
    assert_time(&used["last_used_at"], "last_used_at");
    let at = parse_rfc3339(used["last_used_at"].as_str().unwrap()).unwrap();
    assert!(
        at >= parse_rfc3339(&rfc3339(before)).unwrap(),
        "last_used_at is the use time: {}",
        used["last_used_at"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_searches_names_and_audit_shows_one_tokens_events() {
    let (_up, tg) = started();
    let mut east = Vec::new();
    for name in ["east-1", "West-1", "EAST-2", "north", "east-3", "Beast"] {
        let t = tg.create_token(name).await;
        if name.to_lowercase().contains("east") {
            east.push(t.id);
        }
    }
    east.reverse(); // newest first

    // `name`: a case-insensitive substring, newest first, paging with `next` as ever.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = tg.list(&format!("?name=EaSt&limit=2{after}")).await;
        assert!(page["tokens"].as_array().unwrap().len() <= 2);
        seen.extend(ids_of(&page["tokens"]));
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, east);
    tg.revoke(&east[1], Some("gone")).await;
    assert_eq!(
        tg.list_ids("?name=east&status=revoked").await,
        vec![east[1].clone()]
    );
    assert!(tg.list_ids("?name=south").await.is_empty());
    assert_eq!(
        tg.list_ids("?name=").await.len(),
        6,
        "an empty search is none"
    );
    let encoded = tg.list_ids("?name=%20west").await;
    assert!(encoded.is_empty(), "the search is not trimmed: {encoded:?}");

    for (query, field) in [
        (format!("?name={}", "x".repeat(129)), "name"),
        ("?name=a%0Ab".to_string(), "name"),
    ] {
        let resp = tg
            .admin(Method::GET, &format!("/api/v1/tokens{query}"), None)
            .await;
        assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            resp.error().starts_with(&format!("{field}:")),
            "{}",
            resp.error()
        );
    }

    // `token_id`: that token's events only, newest first; a deleted token's history stays.
    let target = east[1].clone();
    assert_eq!(tg.delete(&target).await.status, StatusCode::NO_CONTENT);
    let events = tg.audit(&format!("?token_id={target}")).await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["deleted", "revoked", "created"]);
    assert!(events.iter().all(|e| e["token_id"] == target.as_str()));
    assert_eq!(events[1]["reason"], "gone");
    let one = tg.audit(&format!("?token_id={target}&limit=1")).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["action"], "deleted");
    let unknown = tg.audit("?token_id=0000000000000000").await;
    assert!(unknown.is_empty());

    let resp = tg
        .admin(Method::GET, "/api/v1/audit?token_id=not-an-id", None)
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert!(resp.error().starts_with("token_id:"), "{}", resp.error());
}
