//! Config hot reload, black-box: a config changed on disk (by rename, by a ConfigMap's symlink
//! swap, or followed by SIGHUP) changes what the running process does, without a restart; an
//! invalid config is refused and the old behaviour stays; what needs a restart is named and
//! left; every request sees one config whole.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::StatusCode;
use support::reload::{ConfigMap, replace_by_rename};
use support::*;

/// The route under test: `/open/**` with the given access (`public = true`, `token = true`).
fn open_route(access: &str) -> String {
    format!("[[listener.route]]\npath = \"/open/**\"\n{access}\n")
}

/// One listener `api` in front of `upstream`, with `/open/**` given `access`.
fn config(upstream: &Upstream, access: &str) -> Config {
    Config::new().listener_with("api", &upstream.url(), &open_route(access))
}

/// The status of an unauthenticated `GET path` through `api`.
async fn status(tg: &Tollgate, path: &str) -> StatusCode {
    tg.proxy("api", path, None).await.status
}

/// Waits until an unauthenticated request to `/open/x` gets `wanted`.
async fn wait_for_status(tg: &Tollgate, wanted: StatusCode) {
    wait_until(
        DEADLINE,
        &format!("GET /open/x to answer {wanted}"),
        || async move { (status(tg, "/open/x").await == wanted).then_some(()) },
    )
    .await
}

/// The metrics text of the admin port.
async fn metrics(tg: &Tollgate) -> String {
    let resp = tg.admin(http::Method::GET, "/metrics", None).await;
    assert_eq!(resp.status, StatusCode::OK);
    resp.text()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_changed_by_rename_takes_effect_without_restart() {
    let up = Upstream::start();
    let tg = Tollgate::start(config(&up, "public = true"));
    let pid = tg.pid();
    assert_eq!(status(&tg, "/open/x").await, StatusCode::OK);

    let mark = tg.log_mark();
    replace_by_rename(tg.config_path(), &tg.render(&config(&up, "token = true")));
    wait_for_status(&tg, StatusCode::UNAUTHORIZED).await;
    let resp = tg.proxy("api", "/open/x", None).await;
    assert_unauthorized(
        &resp,
        "Missing or invalid Authorization header",
        Some(false),
    );

    let line = tg.wait_for_message(mark, "config reloaded");
    assert_eq!(line["changed"], "listener.api.route", "{line}");
    assert_eq!(line["level"], "INFO");
    assert_eq!(tg.pid(), pid, "the same process");
    let text = metrics(&tg).await;
    assert!(
        has_line(
            &text,
            r#"tollgate_config_reloads_total{result="applied"} 1"#
        ),
        "{text}"
    );
    assert!(
        has_line(&text, "tollgate_config_last_reload_successful 1"),
        "{text}"
    );
    // Readiness is not touched by a reload.
    let ready = HttpClient::http1()
        .get(&format!("{}/readyz", tg.admin_url()), &[])
        .await;
    assert_eq!(ready.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configmap_symlink_swap_is_seen_and_applied() {
    let up = Upstream::start();
    let tg = Tollgate::start_configmap(config(&up, "public = true"));
    let map_dir = tg
        .config_path()
        .parent()
        .expect("in a directory")
        .to_owned();
    assert!(
        std::fs::symlink_metadata(tg.config_path())
            .unwrap()
            .file_type()
            .is_symlink(),
        "the config path is the ConfigMap's symlink"
    );
    assert_eq!(status(&tg, "/open/x").await, StatusCode::OK);

    let map = ConfigMap::at(&map_dir);
    map.update(&tg.render(&config(&up, "token = true")));
    wait_for_status(&tg, StatusCode::UNAUTHORIZED).await;

    // And back again: the new `..data` is followed, not the directory first seen.
    map.update(&tg.render(&config(&up, "public = true")));
    wait_for_status(&tg, StatusCode::OK).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_config_is_refused_and_the_old_behaviour_stays() {
    let up = Upstream::start();
    let tg = Tollgate::start(config(&up, "public = true"));
    let closed = tg.render(&config(&up, "token = true"));

    // Bad TOML, in a file that would otherwise close the route.
    let mark = tg.log_mark();
    replace_by_rename(tg.config_path(), &format!("{closed}\nthis is [not toml\n"));
    let refusal = tg.wait_for_message(mark, "config reload refused; the running config stays");
    assert_eq!(refusal["level"], "ERROR", "{refusal}");
    let error = refusal["error"].as_str().expect("an error field");
    assert!(
        error.contains(&tg.config_path().display().to_string()) && error.contains("line"),
        "the refusal names the file and the line: {error}"
    );
    assert_eq!(
        status(&tg, "/open/x").await,
        StatusCode::OK,
        "the old route"
    );

    // Valid TOML, an unknown permission: refused whole, the route change included.
    let mark = tg.log_mark();
    let unknown =
        format!("{closed}[[listener.route]]\npath = \"/other\"\nrequire = \"cheese:read\"\n");
    replace_by_rename(tg.config_path(), &unknown);
    let refusal = tg.wait_for_message(mark, "config reload refused; the running config stays");
    let error = refusal["error"].as_str().expect("an error field");
    assert!(
        error.contains("listener[0].route[1].require"),
        "the refusal names the field: {error}"
    );
    assert_eq!(
        status(&tg, "/open/x").await,
        StatusCode::OK,
        "the old route"
    );
    assert_eq!(
        tg.count_messages(mark, "config reloaded"),
        0,
        "nothing applied"
    );
    let text = metrics(&tg).await;
    assert!(
        has_line(
            &text,
            r#"tollgate_config_reloads_total{result="refused"} 2"#
        ),
        "{text}"
    );
    assert!(
        has_line(&text, "tollgate_config_last_reload_successful 0"),
        "{text}"
    );

    // A later valid change is applied.
    replace_by_rename(tg.config_path(), &closed);
    wait_for_status(&tg, StatusCode::UNAUTHORIZED).await;
    let text = metrics(&tg).await;
    assert!(
        has_line(&text, "tollgate_config_last_reload_successful 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_when_the_watch_is_off() {
    let up = Upstream::start();
    let tg = Tollgate::start(config(&up, "public = true").server("watch_config = false"));
    let closed = config(&up, "token = true").server("watch_config = false");
    replace_by_rename(tg.config_path(), &tg.render(&closed));
    // With the watch off, nothing but a signal applies the file.
    assert_eq!(status(&tg, "/open/x").await, StatusCode::OK);

    let mark = tg.log_mark();
    tg.sighup();
    wait_for_status(&tg, StatusCode::UNAUTHORIZED).await;
    assert_eq!(
        tg.wait_for_message(mark, "config reloaded")["changed"],
        "listener.api.route"
    );

    // A second SIGHUP with nothing new says so, and the process lives on.
    let mark = tg.log_mark();
    tg.sighup();
    tg.wait_for_message(mark, "config reload: valid, nothing to apply");
    assert_eq!(status(&tg, "/open/x").await, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_bind_address_is_named_as_needing_a_restart_while_the_rest_applies() {
    let up = Upstream::start();
    let tg = Tollgate::start(config(&up, "public = true"));
    let addr = tg.proxy_addr("api");

    let mark = tg.log_mark();
    let text = tg.render(&config(&up, "token = true").server("shutdown_grace = \"10s\""));
    let moved = text.replace(
        "bind = \"127.0.0.1:0\"\nupstream",
        "bind = \"127.0.0.2:0\"\nupstream",
    );
    assert_ne!(moved, text, "the listener's bind is in the text");
    replace_by_rename(tg.config_path(), &moved);

    wait_for_status(&tg, StatusCode::UNAUTHORIZED).await;
    let restart = tg.wait_for_message(mark, "config changes that need a restart were not applied");
    assert_eq!(restart["level"], "WARN");
    assert_eq!(
        restart["keys"], "listener.api.bind, server.shutdown_grace",
        "{restart}"
    );
    assert_eq!(
        tg.wait_for_message(mark, "config reloaded")["changed"],
        "listener.api.route"
    );
    assert_eq!(tg.proxy_addr("api"), addr, "still serving where it started");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_change_moves_traffic_to_the_new_upstream() {
    let a = Upstream::start();
    let b = Upstream::start();
    let tg = Tollgate::start(config(&a, "public = true"));
    assert_eq!(status(&tg, "/open/before").await, StatusCode::OK);
    assert_eq!(a.requests_to("/open/before").len(), 1);

    replace_by_rename(tg.config_path(), &tg.render(&config(&b, "public = true")));
    let mut n = 0;
    wait_until(DEADLINE, "a request to reach the new upstream", || {
        n += 1;
        let path = format!("/open/probe-{n}");
        let (tg, b) = (&tg, &b);
        async move {
            assert_eq!(status(tg, &path).await, StatusCode::OK);
            (!b.requests_to(&path).is_empty()).then_some(())
        }
    })
    .await;
    for i in 0..5 {
        let path = format!("/open/after-{i}");
        assert_eq!(status(&tg, &path).await, StatusCode::OK);
        assert_eq!(
            b.requests_to(&path).len(),
            1,
            "{path} reaches the new upstream"
        );
        assert!(a.requests_to(&path).is_empty(), "{path} leaves the old one");
    }
}

/// What one request of the atomicity test saw.
struct Seen {
    path: String,
    status: StatusCode,
    /// For token requests: whether the upstream received an `Authorization` header.
    authorization_forwarded: Option<bool>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_sees_one_config_whole_across_many_reloads() {
    // Config A: upstream A, `/open/**` public, the client's token forwarded.
    // Config B: upstream B, `/open/**` needs a token, the token stripped.
    // A request handled with a mix would show itself: an unauthenticated 200 that reached B,
    // or a token request that reached A without its token or B with it.
    let a = Upstream::start();
    let b = Upstream::start();
    let config_a = config(&a, "public = true");
    let config_b = Config::new().listener_with(
        "api",
        &b.url(),
        &format!("authorization = \"strip\"\n{}", open_route("token = true")),
    );
    let tg = Tollgate::start(config_a.clone());
    let token = tg.create_token("agent").await;
    let texts = [tg.render(&config_a), tg.render(&config_b)];

    let done = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let done = done.clone();
        let open_url = tg.proxy_url("api", "/open");
        let other_url = tg.proxy_url("api", "/other");
        let auth = token.bearer();
        workers.push(tokio::spawn(async move {
            let http = HttpClient::http1();
            let mut seen = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::Relaxed) {
                i += 1;
                let path = format!("/open/w{worker}-{i}");
                let resp = http.get(&open_url.replace("/open", &path), &[]).await;
                seen.push(Seen {
                    path,
                    status: resp.status,
                    authorization_forwarded: None,
                });
                let path = format!("/other/w{worker}-{i}");
                let resp = http
                    .get(
                        &other_url.replace("/other", &path),
                        &[("authorization", &auth)],
                    )
                    .await;
                let forwarded = (resp.status == StatusCode::OK)
                    .then(|| !resp.echo().header("authorization").is_empty());
                seen.push(Seen {
                    path,
                    status: resp.status,
                    authorization_forwarded: forwarded,
                });
            }
            seen
        }));
    }

    let mark = tg.log_mark();
    for round in 1..=12 {
        replace_by_rename(tg.config_path(), &texts[round % 2]);
        // Each swap is applied before the next: the requests see both configs, many times.
        wait_for(DEADLINE, "the reload to be applied", || {
            tg.count_messages(mark, "config reloaded") >= round
        });
    }
    done.store(true, Ordering::Relaxed);
    let mut seen = Vec::new();
    for worker in workers {
        seen.extend(worker.await.expect("a request worker"));
    }

    let at_a: HashSet<String> = a.requests().into_iter().map(|r| r.path).collect();
    let at_b: HashSet<String> = b.requests().into_iter().map(|r| r.path).collect();
    let (mut as_a, mut as_b) = (0, 0);
    for s in &seen {
        let (reached_a, reached_b) = (at_a.contains(&s.path), at_b.contains(&s.path));
        let config_a = match (s.path.starts_with("/open/"), s.status) {
            (true, StatusCode::OK) => {
                assert!(
                    reached_a && !reached_b,
                    "{}: public (A) must reach A",
                    s.path
                );
                true
            }
            (true, StatusCode::UNAUTHORIZED) => {
                assert!(!reached_a && !reached_b, "{}: refused, reached", s.path);
                false
            }
            (false, StatusCode::OK) => {
                let forwarded = s.authorization_forwarded.expect("set for a 200");
                assert!(
                    reached_a != reached_b,
                    "{}: reached exactly one upstream",
                    s.path
                );
                assert_eq!(
                    forwarded, reached_a,
                    "{}: A forwards the token, B strips it; reached A: {reached_a}",
                    s.path
                );
                reached_a
            }
            (_, status) => panic!("{}: unexpected {status}", s.path),
        };
        if config_a {
            as_a += 1;
        } else {
            as_b += 1;
        }
    }
    assert!(
        as_a > 0 && as_b > 0,
        "requests saw both configs: {as_a} as A, {as_b} as B"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_level_change_applies_live() {
    let up = Upstream::start();
    let open = config(&up, "public = true");
    let tg = Tollgate::start(open.clone());
    let with_level = |level: &str| {
        tg.render(&open)
            .replace("level = \"info\"", &format!("level = \"{level}\""))
    };
    let access_for = |mark: usize, path: &str| {
        tg.records_since(mark)
            .iter()
            .filter(|r| r["message"] == "access" && r["path"] == path)
            .count()
    };

    let mark = tg.log_mark();
    replace_by_rename(tg.config_path(), &with_level("warn"));
    // Written before the level rises, so that the change shows.
    assert_eq!(
        tg.wait_for_message(mark, "config reloaded")["changed"],
        "log.level"
    );
    assert_eq!(status(&tg, "/open/quiet").await, StatusCode::OK);
    // An error line after the request: everything the request logged is printed before it.
    replace_by_rename(tg.config_path(), "not [toml");
    tg.wait_for_message(mark, "config reload refused; the running config stays");
    assert_eq!(access_for(mark, "/open/quiet"), 0, "no access line at warn");

    let mark = tg.log_mark();
    replace_by_rename(tg.config_path(), &with_level("info"));
    tg.wait_for_message(mark, "config reloaded");
    assert_eq!(status(&tg, "/open/loud").await, StatusCode::OK);
    wait_for(DEADLINE, "the access line at info", || {
        access_for(mark, "/open/loud") == 1
    });
}
