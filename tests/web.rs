//! The admin web page: its security headers over plain HTTP, and an operator's whole journey in a
//! real headless Chromium (over WebDriver) against a real tollgate in front of a real upstream.
//! Screenshots of each main screen land in `target/screenshots/` (see `screenshot_dir`).

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use http::{Method, StatusCode};
use serde_json::json;
use support::*;
use webdriver::{Driver, Session, screenshot_dir};

const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread")]
async fn the_page_needs_no_admin_token_and_carries_strict_security_headers() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let http = HttpClient::http1();
    let base = tg.admin_url();

    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/api.js", "text/javascript; charset=utf-8"),
        ("/ui/dom.js", "text/javascript; charset=utf-8"),
        ("/ui/tokens.js", "text/javascript; charset=utf-8"),
        ("/ui/create.js", "text/javascript; charset=utf-8"),
        ("/ui/detail.js", "text/javascript; charset=utf-8"),
        ("/ui/audit.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let resp = http.get(&format!("{base}{path}"), &[]).await;
        assert_eq!(resp.status, StatusCode::OK, "{path} without an admin token");
        assert_eq!(resp.header("content-type"), Some(content_type), "{path}");
        let csp = resp
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path} has no Content-Security-Policy"));
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "require-trusted-types-for 'script'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: CSP lacks {directive}: {csp}"
            );
        }
        assert!(
            !csp.contains("unsafe"),
            "{path}: CSP allows something unsafe: {csp}"
        );
        assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            resp.header("referrer-policy"),
            Some("no-referrer"),
            "{path}"
        );
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(resp.header("cache-control"), Some("no-store"), "{path}");
    }

    // The page's HTML runs no inline script and loads nothing from elsewhere.
    let html = http.get(&format!("{base}/"), &[]).await.text();
    assert!(html.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external URL"
    );

    let missing = http.get(&format!("{base}/ui/nope.js"), &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    // The API behind it still demands the admin token.
    let api = http.get(&format!("{base}/api/v1/tokens"), &[]).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let api = tg.admin_as(Method::GET, "/api/v1/tokens", None, None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
}

/// The numbered screenshots of one journey.
struct Shots {
    dir: std::path::PathBuf,
}

impl Shots {
    fn new() -> Shots {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("create the screenshot directory");
        Shots { dir }
    }

    async fn take(&self, session: &Session<'_>, name: &str) {
        session
            .screenshot(&self.dir.join(format!("{name}.png")))
            .await;
    }
}

/// Asserts that the browser reported no error or warning but the admin API's refusals that the
/// test provoked on purpose (which Chromium logs as failed loads): no CSP or Trusted Types
/// violation, no uncaught exception.
fn assert_console_clean(console: &[(String, String)]) {
    for (level, message) in console {
        if level == "SEVERE" || level == "WARNING" {
            assert!(
                message.contains("Failed to load resource: the server responded with a status of"),
                "browser console {level}: {message}"
            );
        }
    }
}

/// The status shown in the list row of token `id`.
async fn row_status(session: &Session<'_>, id: &str) -> String {
    session
        .wait_text(&format!("tr[data-id='{id}'] .badge"), "")
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_signs_in_creates_revokes_bulk_revokes_deletes_and_audits_in_a_browser() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let driver = Driver::start().await;
    let b = driver.session().await;
    let shots = Shots::new();
    let page = format!("{}/", tg.admin_url());

    // Tokens made beforehand through the API, for the bulk bar and the delete.
    let mut bulk = Vec::new();
    for name in ["bulk-1", "bulk-2", "bulk-3"] {
        bulk.push(tg.create_token(name).await);
    }
    let doomed = tg.create_token("to-delete").await;
    let hostile = tg.create_token(HOSTILE_NAME).await;

    // ---- sign in: a wrong token is said plainly, the right one is kept for this tab only ----
    b.goto(&page).await;
    b.wait("#admin-token").await;
    shots.take(&b, "01-sign-in").await;
    b.fill("#admin-token", "not-the-admin-token").await;
    b.click_css("#signin-submit").await;
    let said = b.wait_text("#signin-error", "wrong").await;
    assert!(said.contains("admin token"), "{said}");
    b.fill("#admin-token", tg.admin_token()).await;
    b.click_css("#signin-submit").await;
    b.wait_text("#view h1", "API Tokens").await;
    let storage = b
        .execute(
            "return {session: Object.entries(sessionStorage), local: localStorage.length}",
            json!([]),
        )
        .await;
    assert_eq!(
        storage,
        json!({"session": [["tollgate.admin-token", tg.admin_token()]], "local": 0}),
        "the admin token is in sessionStorage and nowhere else"
    );

    // ---- the list: newest first, statuses, and a hostile name shown as text ----
    b.wait(&format!("tr[data-id='{}']", hostile.id)).await;
    let names = b
        .execute(
            "return [...document.querySelectorAll('#token-rows .token-name')].map(a => a.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        names,
        json!([HOSTILE_NAME, "to-delete", "bulk-3", "bulk-2", "bulk-1"]),
        "newest first, names as plain text"
    );
    assert_eq!(
        b.execute("return document.querySelectorAll('img').length", json!([]))
            .await,
        json!(0),
        "the hostile name made no element"
    );
    assert_eq!(
        b.alert_text().await,
        None,
        "no script ran from a token name"
    );
    // The console so far: readable (the wrong sign-in's 401 is there) and free of violations.
    let console = b.console().await;
    assert!(
        console.iter().any(|(_, m)| m.contains("401")),
        "the console log is readable: {console:?}"
    );
    assert_console_clean(&console);
    // And the browser itself refuses HTML from a string: the CSP requires Trusted Types.
    let sink = b
        .execute(
            "try { document.createElement('div').innerHTML = '<b>x</b>'; return 'assigned'; } \
             catch (e) { return e.name; }",
            json!([]),
        )
        .await;
    assert_eq!(
        sink,
        json!("TypeError"),
        "innerHTML with a string is refused"
    );
    let probe = b.console().await;
    assert!(
        probe.iter().any(|(_, m)| m.contains("TrustedHTML")),
        "a violation shows in the console, so a clean console means something: {probe:?}"
    );

    // ---- create a token in the dialog; the secret is shown once, masked, then gone ----
    b.click_css("#create-token").await;
    b.fill("#create-name", "agent-east-1").await;
    b.fill("#create-description", "east rack, row 4").await;
    b.click_css("input[name=perm-mode][value=custom]").await;
    for perm in ["configs:read", "heartbeat:write", "agents:all"] {
        b.click_css(&format!("#perm-grid input[value='{perm}']"))
            .await;
    }
    b.click_css("#create-expiry option[value='30d']").await;
    shots.take(&b, "03-create-dialog").await;
    // A refusal from the API is said inline, in the dialog, which stays open to fix it.
    b.fill("#create-name", "bulk-1").await;
    b.click_css("#create-submit").await;
    let refused = b.wait_text("#create-error", "already exists").await;
    assert!(refused.contains("409"), "{refused}");
    b.fill("#create-name", "agent-east-1").await;
    b.click_css("#create-submit").await;
    let secret_field = b.wait("#new-secret").await;
    let secret = b
        .property(&secret_field, "value")
        .await
        .as_str()
        .expect("the secret field holds text")
        .to_string();
    assert!(
        secret.starts_with(TOKEN_PREFIX) && secret.len() == TOKEN_PREFIX.len() + 64,
        "a token secret: {secret:?}"
    );
    assert_eq!(
        b.attribute(&secret_field, "class").await.as_deref(),
        Some("masked"),
        "the secret is masked until the operator asks to see it"
    );
    let warning = b.wait_text("#secret-warning", "only time").await;
    assert!(warning.contains("not even you"), "{warning}");
    shots.take(&b, "04-create-secret-masked").await;
    let leaks = b
        .execute(
            "const s = arguments[0]; return {url: location.href.includes(s), \
             session: JSON.stringify(Object.entries(sessionStorage)).includes(s), \
             local: JSON.stringify(Object.entries(localStorage)).includes(s), \
             html: document.documentElement.outerHTML.includes(s), \
             state: JSON.stringify(history.state ?? null).includes(s)}",
            json!([secret]),
        )
        .await;
    assert_eq!(
        leaks,
        json!({"url": false, "session": false, "local": false, "html": false, "state": false}),
        "while shown, the secret is only in the field's value"
    );
    b.click_css("#secret-done").await;
    b.wait_gone("#create-dialog").await;
    let after = b
        .execute(
            "const s = arguments[0]; return document.getElementById('new-secret').value === '' && \
             !document.documentElement.outerHTML.includes(s) && !document.body.innerText.includes(s)",
            json!([secret]),
        )
        .await;
    assert_eq!(
        after,
        json!(true),
        "closing the dialog removed the secret from the page"
    );
    // Escape closes the dialog as well, and takes the secret with it just the same.
    b.click_css("#create-token").await;
    b.fill("#create-name", "closed-with-escape").await;
    b.click_css("#create-submit").await;
    let field = b.wait("#new-secret").await;
    let second = b
        .property(&field, "value")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(second.starts_with(TOKEN_PREFIX));
    b.press("\u{E00C}").await; // Escape
    b.wait_gone("#create-dialog").await;
    let gone = b
        .execute(
            "return document.getElementById('new-secret').value === '' && \
             !document.documentElement.outerHTML.includes(arguments[0])",
            json!([second]),
        )
        .await;
    assert_eq!(gone, json!(true), "Escape removed the secret from the page");

    let created_id = tg.list_ids("?name=agent-east-1").await[0].clone();
    let record = tg.record(&created_id).await;
    assert_eq!(record["description"], "east rack, row 4");
    let mut perms: Vec<String> = serde_json::from_value(record["permissions"].clone()).unwrap();
    perms.sort();
    assert_eq!(perms, ["agents:all", "configs:read", "heartbeat:write"]);
    assert!(record["expires_at"].is_string(), "30 days: {record}");

    // ---- the secret works through the proxy ----
    let resp = tg.proxy("api", "/through", Some(&bearer(&secret))).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());

    b.wait(&format!("tr[data-id='{created_id}']")).await;
    shots.take(&b, "02-token-list").await;

    // ---- search by name goes to the server and keeps the list short; "/" jumps to it ----
    b.click_css("#view h1").await;
    b.press("/").await;
    assert_eq!(b.focused_id().await, "search", "/ focuses the search box");
    b.press("EAST").await;
    b.wait_script(
        "the search to leave one row",
        "return document.querySelectorAll('#token-rows tr[data-id]').length === 1",
        json!([]),
    )
    .await;
    b.fill("#search", "").await;
    b.wait(&format!("tr[data-id='{}']", bulk[0].id)).await;
    // A pasted secret is not searched for: not sent, not put in the address bar.
    let pasted = random_secret();
    b.fill("#search", &pasted).await;
    b.wait_text("#list-error", "looks like a token secret")
        .await;
    assert!(!b.url().await.contains(&pasted[TOKEN_PREFIX.len()..]));
    let search = b.find("#search").await;
    assert_eq!(b.property(&search, "value").await, json!(""));

    // ---- detail: Overview, then Manage → Revoke with a reason ----
    b.click_css(&format!("tr[data-id='{created_id}'] a.token-name"))
        .await;
    b.wait_text("#detail-title", "agent-east-1").await;
    let fields = b.wait_text("#fields", "Active").await;
    for part in [
        created_id.as_str(),
        "east rack, row 4",
        "agents: all",
        "in 29 days",
        "ago",
        "Not revoked",
    ] {
        assert!(fields.contains(part), "overview lacks {part:?}: {fields}");
    }
    b.wait_text("#panel-overview table", "Created").await;
    shots.take(&b, "05-detail-overview").await;
    // The tabs follow the keyboard pattern people know: arrows move between them.
    b.click_css("#tab-overview").await;
    b.press("\u{E014}").await; // ArrowRight
    assert_eq!(b.focused_id().await, "tab-manage");
    b.wait("#panel-manage").await;
    assert_eq!(
        b.attribute(&b.find("#tab-manage").await, "aria-selected")
            .await
            .as_deref(),
        Some("true")
    );
    b.click_css("#revoke-button").await;
    let title = b.wait_text("#confirm-title", "agent-east-1").await;
    assert!(title.starts_with("Revoke"), "{title}");
    let body = b.wait_text("#confirm-body", "very next request").await;
    assert!(body.contains("cannot be reactivated"), "{body}");
    b.fill("#confirm-reason", "laptop lost").await;
    shots.take(&b, "06-detail-manage-confirm").await;
    b.click_css("#confirm-ok").await;
    let revoked = b.wait_text("#revoked-box", "laptop lost").await;
    assert!(revoked.contains("cannot be reactivated"), "{revoked}");
    assert!(
        b.try_find("#revoke-button").await.is_none(),
        "a revoked token offers no way back"
    );

    // The very next proxy request is refused.
    let resp = tg.proxy("api", "/through", Some(&bearer(&secret))).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));

    // The list shows it Revoked.
    b.click_css("#nav-tokens").await;
    b.wait(&format!("tr[data-id='{created_id}']")).await;
    assert_eq!(row_status(&b, &created_id).await, "Revoked");

    // ---- bulk: select three, the bar counts them, the confirmation and result say how many ----
    for t in &bulk {
        b.click_css(&format!("tr[data-id='{}'] input.row-check", t.id))
            .await;
    }
    b.wait_text("#bulk-bar", "3 tokens selected").await;
    shots.take(&b, "07-bulk-bar").await;
    b.click_css("#bulk-revoke").await;
    b.wait_text("#confirm-title", "Revoke 3 tokens?").await;
    let body = b.wait_text("#confirm-body", "bulk-1").await;
    assert!(body.contains("bulk-2") && body.contains("bulk-3"), "{body}");
    b.click_css("#confirm-ok").await;
    let result = b.wait_text("#bulk-result", "Revoked 3 tokens").await;
    assert!(result.contains("0 already revoked"), "{result}");
    assert!(result.contains("None missing"), "{result}");
    b.wait_gone("#bulk-bar").await;
    for t in &bulk {
        b.wait_text(&format!("tr[data-id='{}'] .badge", t.id), "Revoked")
            .await;
        assert_eq!(tg.record(&t.id).await["status"], "revoked");
        let resp = tg.proxy("api", "/through", Some(&t.bearer())).await;
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    }

    // A second bulk revoke, with one already revoked and one deleted behind the page's back.
    for id in [&created_id, &bulk[0].id, &hostile.id] {
        b.click_css(&format!("tr[data-id='{id}'] input.row-check"))
            .await;
    }
    b.wait_text("#bulk-bar", "3 tokens selected").await;
    assert_eq!(tg.delete(&hostile.id).await.status, StatusCode::NO_CONTENT);
    b.click_css("#bulk-revoke").await;
    b.wait_text("#confirm-body", "already revoked").await;
    b.click_css("#confirm-ok").await;
    let result = b.wait_text("#bulk-result", "Revoked 0 tokens").await;
    assert!(result.contains("2 already revoked"), "{result}");
    assert!(
        result.contains(&format!("Not found (deleted meanwhile?): {HOSTILE_NAME}")),
        "{result}"
    );
    assert_eq!(b.alert_text().await, None);

    // ---- delete one from its Manage tab ----
    b.goto(&format!("{page}#/tokens/{}", doomed.id)).await;
    b.wait_text("#detail-title", "to-delete").await;
    b.click_css("#tab-manage").await;
    b.click_css("#delete-button").await;
    b.wait_text("#confirm-title", "Delete “to-delete”?").await;
    let body = b.wait_text("#confirm-body", "removed for good").await;
    assert!(body.contains("very next request"), "{body}");
    b.click_css("#confirm-ok").await;
    b.wait_text("#notice", "Deleted “to-delete”").await;
    b.wait_text("#view h1", "API Tokens").await;
    assert_eq!(tg.show(&doomed.id).await.status, StatusCode::NOT_FOUND);
    let resp = tg.proxy("api", "/through", Some(&doomed.bearer())).await;
    assert_unauthorized(&resp, "Invalid token", Some(true));

    // A deleted token's page says so and still shows its history.
    b.goto(&format!("{page}#/tokens/{}", doomed.id)).await;
    b.wait_text("#view h1", "Token not found").await;
    b.wait_text("#view", "was deleted").await;

    // ---- the audit page has all of it ----
    b.click_css("#nav-audit").await;
    b.wait_text("#view h1", "Audit").await;
    b.wait("#audit-rows tr[data-action]").await;
    let events = b
        .execute(
            "return [...document.querySelectorAll('#audit-rows tr[data-action]')].map(tr => \
             [tr.dataset.action, tr.querySelector('td[data-label=Token]').textContent, \
              tr.querySelector('td[data-label=Reason]').textContent])",
            json!([]),
        )
        .await;
    let events: Vec<(String, String, String)> = serde_json::from_value(events).unwrap();
    let has = |action: &str, name: &str| events.iter().any(|(a, n, _)| a == action && n == name);
    assert!(has("created", "agent-east-1"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|(a, n, r)| a == "revoked" && n == "agent-east-1" && r == "laptop lost"),
        "{events:?}"
    );
    for name in ["bulk-1", "bulk-2", "bulk-3"] {
        assert!(has("revoked", name), "{name}: {events:?}");
    }
    assert!(has("deleted", "to-delete"), "{events:?}");
    assert!(has("deleted", HOSTILE_NAME), "{events:?}");
    shots.take(&b, "08-audit").await;

    // ---- paging: 50 to a page, Next and Previous with the API's cursor ----
    for i in 0..50 {
        tg.create_token(&format!("page-{i:02}")).await;
    }
    b.click_css("#nav-tokens").await;
    b.wait_text("#token-rows", "page-49").await;
    let page_one = b.find_all("#token-rows tr[data-id]").await.len();
    assert_eq!(page_one, 50);
    b.wait_text("#page-label", "Page 1").await;
    b.click_css("#page-next").await;
    b.wait_text("#page-label", "Page 2").await;
    let second = b.wait_text("#token-rows", "agent-east-1").await;
    assert!(
        second.contains("bulk-1") && !second.contains("page-49"),
        "{second}"
    );
    let next = b.find("#page-next").await;
    assert_eq!(
        b.property(&next, "disabled").await,
        json!(true),
        "the last page"
    );
    b.click_css("#page-prev").await;
    b.wait_text("#page-label", "Page 1").await;
    b.wait_text("#token-rows", "page-49").await;

    // Select all on the page, and bulk-delete: the result counts them.
    b.click_css("#select-all").await;
    b.wait_text("#bulk-bar", "50 tokens selected").await;
    b.click_css("#bulk-delete").await;
    b.wait_text("#confirm-title", "Delete 50 tokens?").await;
    b.wait_text("#confirm-body", "and 42 more").await;
    b.click_css("#confirm-ok").await;
    let result = b.wait_text("#bulk-result", "Deleted 50 tokens").await;
    assert!(result.contains("None missing"), "{result}");
    b.wait_text("#token-rows", "agent-east-1").await;
    assert!(tg.list_ids("?name=page-").await.is_empty());

    // ---- phone width: the list reads without sideways scrolling ----
    b.set_window_size(390, 844).await;
    b.wait_text("#token-rows", "agent-east-1").await;
    let fits = b
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!(true), "the list fits a phone's width");
    shots.take(&b, "09-phone-list").await;
    b.set_window_size(1280, 900).await;

    // ---- no policy violation all along, and signing out forgets the token ----
    assert_console_clean(&b.console().await);
    b.click_css("#signout").await;
    b.wait("#admin-token").await;
    let left = b.execute("return sessionStorage.length", json!([])).await;
    assert_eq!(left, json!(0), "signing out clears the admin token");
    b.goto(&format!("{page}#/audit")).await;
    b.wait("#admin-token").await;

    tg.assert_logs_free_of(&[&secret, &second]);
    b.quit().await;
}
