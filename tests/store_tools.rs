//! Working on the store file directly, black-box: the `token` and `audit` commands with
//! `--store` (no server, or beside a running one), and `store backup` / `store check`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// Runs `tollgate ARGS... --store STORE` in `dir`, with no server involved.
fn offline(dir: &Path, store: &Path, args: &[&str]) -> CliOutput {
    let store = store.to_str().expect("a UTF-8 path");
    let mut all = args.to_vec();
    all.extend(["--store", store]);
    run_binary(dir, &all, &[("USER", "ops-alice")])
}

/// Like `offline`, with `stdin` as the command's input.
fn offline_with_stdin(dir: &Path, store: &Path, args: &[&str], stdin: &[u8]) -> CliOutput {
    let store = store.to_str().expect("a UTF-8 path");
    let mut all = args.to_vec();
    all.extend(["--store", store]);
    run_binary_with_stdin(dir, &all, &[("USER", "ops-alice")], stdin)
}

/// `token create --name NAME --json` on the store file; the answer (record and secret).
fn create_offline(dir: &Path, store: &Path, name: &str) -> Value {
    offline(dir, store, &["token", "create", "--name", name, "--json"])
        .ok()
        .json()
}

/// `tollgate store ARGS...` in `dir`.
fn store_cmd(dir: &Path, args: &[&str]) -> CliOutput {
    let mut all = vec!["store"];
    all.extend_from_slice(args);
    run_binary(dir, &all, &[])
}

/// Asserts a failed operation: exit 1, one line on stderr.
fn assert_op_failure(out: &CliOutput) {
    assert_eq!(out.code(), Some(1), "exit 1: {out:#?}");
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "one line on stderr: {out:#?}"
    );
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// The records of `token list --json`, by id.
fn by_id(list: &Value) -> HashMap<String, Value> {
    list["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("no tokens list: {list}"))
        .iter()
        .map(|r| (r["id"].as_str().unwrap().to_owned(), r.clone()))
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn token_commands_work_on_a_store_file_with_no_server() {
    let dir = tempfile::tempdir().unwrap();
    // Bootstrap: the file and its directory are created by the first `create`.
    let store = dir.path().join("data/new/tollgate.redb");
    let first = create_offline(dir.path(), &store, "first");
    assert!(store.exists());
    assert_eq!(first["status"], "active");
    let secret = first["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(TOKEN_PREFIX));
    let id = first["id"].as_str().unwrap().to_owned();

    let out = offline(
        dir.path(),
        &store,
        &[
            "token",
            "create",
            "--name",
            "reader",
            "--permission",
            "configs:read",
            "--expires-in",
            "30d",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(TOKEN_PREFIX),
        "human output shows the secret: {out:#?}"
    );
    assert!(out.stderr.contains("only time"), "{out:#?}");

    // The same validation as the API: a clash and a bad field fail with the API's message.
    let out = offline(dir.path(), &store, &["token", "create", "--name", "first"]);
    assert_op_failure(&out);
    assert!(out.stderr.contains("already exists"), "{out:#?}");
    let out = offline(
        dir.path(),
        &store,
        &[
            "token",
            "create",
            "--name",
            "x",
            "--permission",
            "cheese:read",
        ],
    );
    assert_op_failure(&out);
    assert!(
        out.stderr
            .contains("permissions: unknown resource \"cheese\""),
        "{out:#?}"
    );

    let list = offline(dir.path(), &store, &["token", "list", "--json"])
        .ok()
        .json();
    let names: Vec<&str> = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reader", "first"], "newest first");
    let out = offline(dir.path(), &store, &["token", "list"]).ok();
    assert!(out.stdout.starts_with("ID "), "{out:#?}");

    let shown = offline(dir.path(), &store, &["token", "show", &id, "--json"])
        .ok()
        .json();
    let mut expected = first.clone();
    expected.as_object_mut().unwrap().remove("token");
    assert_eq!(shown, expected, "show prints the record without its secret");

    // Revoke asks for confirmation like the remote command.
    let out = offline(dir.path(), &store, &["token", "revoke", &id]);
    assert_op_failure(&out);
    assert!(out.stderr.contains("--yes"), "{out:#?}");
    let out = offline(
        dir.path(),
        &store,
        &[
            "token",
            "revoke",
            &id,
            "0000000000000000",
            "--reason",
            "leaked",
            "--yes",
            "--json",
        ],
    );
    assert_eq!(
        out.code(),
        Some(1),
        "an unknown id fails after the rest: {out:#?}"
    );
    assert_eq!(
        out.json(),
        json!({"revoked": [id], "already_revoked": [], "not_found": ["0000000000000000"]})
    );
    let shown = offline(dir.path(), &store, &["token", "show", &id, "--json"])
        .ok()
        .json();
    assert_eq!(shown["status"], "revoked");
    assert_eq!(shown["revoke_reason"], "leaked");
    let listed = offline(
        dir.path(),
        &store,
        &["token", "list", "--status", "revoked", "--json"],
    )
    .ok()
    .json();
    assert_eq!(ids_of(&listed["tokens"]), std::slice::from_ref(&id));

    // Import, from stdin.
    let imported_secret = random_secret();
    let body = json!({"tokens": [
        {"name": "moved", "token": imported_secret},
        {"name": "first", "digest": sha256_hex(b"other")},
    ]});
    let out = offline_with_stdin(
        dir.path(),
        &store,
        &["token", "import", "-", "--json"],
        body.to_string().as_bytes(),
    )
    .ok();
    let outcome = out.json();
    assert_eq!(outcome["imported"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        outcome["skipped"],
        json!([{"name": "first", "reason": "name already used by another token"}])
    );
    assert!(!out.stdout.contains(&imported_secret[9..]));

    // Delete, then show fails with the remote command's message.
    let out = offline(dir.path(), &store, &["token", "delete", &id, "--yes"]).ok();
    assert!(out.stdout.contains(&id), "{out:#?}");
    let out = offline(dir.path(), &store, &["token", "show", &id]);
    assert_op_failure(&out);
    assert!(
        out.stderr.contains(&format!("token {id} not found")),
        "{out:#?}"
    );

    // The audit trail says who worked on the file directly.
    let audit = offline(dir.path(), &store, &["audit", "--json"])
        .ok()
        .json();
    let events = audit["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["deleted", "imported", "revoked", "created", "created"]
    );
    assert!(
        events.iter().all(|e| e["actor"] == "offline:ops-alice"),
        "{audit}"
    );
    let out = offline(dir.path(), &store, &["audit", "--limit", "1"]).ok();
    assert!(out.stdout.contains("offline:ops-alice"), "{out:#?}");
    assert!(!out.stdout.contains(&secret[9..]));

    // What was written is a sound store.
    store_cmd(dir.path(), &["check", path_str(&store)]).ok();
}

#[test]
fn commands_that_add_no_token_refuse_a_missing_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("nowhere/tollgate.redb");
    for args in [
        vec!["token", "list"],
        vec!["token", "show", "0000000000000000"],
        vec!["token", "revoke", "0000000000000000", "--yes"],
        vec!["token", "delete", "0000000000000000", "--yes"],
        vec!["audit"],
    ] {
        let out = offline(dir.path(), &store, &args);
        assert_op_failure(&out);
        assert!(out.stderr.contains("no store at"), "{args:?}: {out:#?}");
    }
    assert!(!dir.path().join("nowhere").exists(), "nothing was created");
}

#[test]
fn store_and_admin_url_together_are_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tollgate.redb");
    let out = run_binary(
        dir.path(),
        &[
            "token",
            "list",
            "--store",
            path_str(&store),
            "--admin-url",
            "http://127.0.0.1:1",
        ],
        &[],
    );
    assert_eq!(out.code(), Some(2), "{out:#?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("--store") && first.contains("--admin-url"),
        "one line names both: {out:#?}"
    );
    assert!(!store.exists());

    // $TOLLGATE_ADMIN_URL in the environment is not a flag: --store wins over it.
    create_offline(dir.path(), &store, "a");
    let out = run_binary(
        dir.path(),
        &["token", "list", "--json", "--store", path_str(&store)],
        &[("TOLLGATE_ADMIN_URL", "http://127.0.0.1:1")],
    )
    .ok();
    assert_eq!(out.json()["tokens"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_answers_are_the_apis_answers() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let store = tg.store_path();
    let a = tg.create_token("alpha").await;
    let b = tg
        .create_token_with(json!({"name": "bravo", "permissions": ["agents:read"],
                                  "expires_in": "7d", "description": "two"}))
        .await;
    tg.revoke(&b.id, Some("because")).await;

    // Reads: the same JSON, byte for byte, from the file and from the server.
    for args in [
        vec!["token", "list", "--json"],
        vec!["token", "list", "--status", "revoked", "--json"],
        vec!["token", "show", a.id.as_str(), "--json"],
        vec!["audit", "--json"],
    ] {
        let here = offline(tg.dir(), &store, &args).ok();
        let there = tg.cli(&args).ok();
        assert_eq!(here.json(), there.json(), "{args:?}");
    }
    assert_eq!(
        offline(tg.dir(), &store, &["token", "show", &b.id, "--json"])
            .ok()
            .json(),
        tg.record(&b.id).await
    );

    // Writes: the same shapes.
    let here = create_offline(tg.dir(), &store, "c");
    let there = tg
        .cli(&["token", "create", "--name", "d", "--json"])
        .ok()
        .json();
    assert_eq!(keys(&here), keys(&there));
    let c = here["id"].as_str().unwrap().to_owned();
    let d = there["id"].as_str().unwrap().to_owned();
    let here = offline(
        tg.dir(),
        &store,
        &["token", "revoke", &c, &b.id, "--yes", "--json"],
    )
    .ok()
    .json();
    assert_eq!(
        here,
        json!({"revoked": [c], "already_revoked": [b.id], "not_found": []})
    );
    let there = tg
        .cli(&["token", "revoke", &d, "--yes", "--json"])
        .ok()
        .json();
    assert_eq!(keys(&here), keys(&there));

    // Refusals carry the API's message.
    let over_api = tg
        .admin(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "e", "expires_at": "yesterday"})),
        )
        .await;
    assert_eq!(over_api.status, StatusCode::BAD_REQUEST);
    let out = offline(
        tg.dir(),
        &store,
        &[
            "token",
            "create",
            "--name",
            "e",
            "--expires-at",
            "yesterday",
        ],
    );
    assert_op_failure(&out);
    assert!(
        out.stderr.contains(&over_api.error()),
        "{:?} in {out:#?}",
        over_api.error()
    );

    // The server sees offline changes in its store (its answers read the file).
    assert_eq!(tg.record(&c).await["status"], "revoked");
    let actors: Vec<String> = tg
        .audit("?limit=2")
        .await
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(actors, ["admin@127.0.0.1", "offline:ops-alice"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_created_offline_before_the_first_start_is_accepted() {
    let up = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let text = Config::single(&up).render(dir.path());
    // The store the config names does not exist yet: the first token creates it.
    let store = dir.path().join("tollgate.redb");
    let created = create_offline(dir.path(), &store, "first-agent");
    let secret = created["token"].as_str().unwrap().to_owned();
    let tg = Tollgate::try_start_in(dir, &text, Some(format!("adm-{}", hex(&random_bytes(24)))))
        .unwrap_or_else(|f| panic!("start: {f:#?}"));
    assert_eq!(
        tg.proxy("api", "/x", Some(&bearer(&secret))).await.status,
        StatusCode::OK
    );
    tg.assert_logs_free_of(&[&secret]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offline_revoke_on_a_running_servers_file_is_kept_and_holds_after_a_restart() {
    let up = Upstream::start();
    let mut tg = Tollgate::start(Config::single(&up));
    let (tok, other) = two_agents(&tg).await;
    offline(
        tg.dir(),
        &tg.store_path(),
        &["token", "revoke", &tok.id, "--reason", "emergency", "--yes"],
    )
    .ok();
    let shown = offline(
        tg.dir(),
        &tg.store_path(),
        &["token", "show", &tok.id, "--json"],
    )
    .ok()
    .json();
    assert_eq!(shown["status"], "revoked");
    assert_eq!(tg.record(&tok.id).await["revoke_reason"], "emergency");

    // The server keeps working on the file: its own changes interleave with the offline one.
    tg.revoke(&other.id, None).await;
    let events = tg.audit("?limit=3").await;
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [4, 3, 2], "one change log across both processes");

    tg.restart();
    assert_unauthorized(
        &tg.proxy("api", "/x", Some(&tok.bearer())).await,
        "Invalid token",
        Some(true),
    );
}

/// Two tokens created through the server; the first one passes the proxy.
async fn two_agents(tg: &Tollgate) -> (Created, Created) {
    let tok = tg.create_token("agent").await;
    let other = tg.create_token("other").await;
    assert_eq!(
        tg.proxy("api", "/x", Some(&tok.bearer())).await.status,
        StatusCode::OK
    );
    (tok, other)
}

/// A running server follows the store's change log, so it applies a change made on the file by
/// the command line within milliseconds (the command even waits for it to before it exits);
/// polled with a deadline, never slept.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_refuses_a_token_revoked_offline() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let (tok, other) = two_agents(&tg).await;
    offline(
        tg.dir(),
        &tg.store_path(),
        &["token", "revoke", &tok.id, "--yes"],
    )
    .ok();
    let refused = wait_until(
        DEADLINE,
        "the server to refuse the revoked token",
        || async {
            let resp = tg.proxy("api", "/x", Some(&tok.bearer())).await;
            (resp.status == StatusCode::UNAUTHORIZED).then_some(resp)
        },
    )
    .await;
    assert_unauthorized(&refused, "Invalid token", Some(true));
    assert_eq!(
        tg.proxy("api", "/x", Some(&other.bearer())).await.status,
        StatusCode::OK
    );

    // A token created offline is accepted, and one deleted offline refused, the same way.
    let created = create_offline(tg.dir(), &tg.store_path(), "late");
    let late = bearer(created["token"].as_str().unwrap());
    wait_until(
        DEADLINE,
        "the server to accept a token created offline",
        || async {
            (tg.proxy("api", "/x", Some(&late)).await.status == StatusCode::OK).then_some(())
        },
    )
    .await;
    offline(
        tg.dir(),
        &tg.store_path(),
        &["token", "delete", &other.id, "--yes"],
    )
    .ok();
    wait_until(
        DEADLINE,
        "the server to refuse a token deleted offline",
        || async {
            let status = tg.proxy("api", "/x", Some(&other.bearer())).await.status;
            (status == StatusCode::UNAUTHORIZED).then_some(())
        },
    )
    .await;
}

/// One change the admin API acknowledged.
#[derive(Clone, Debug)]
enum Change {
    Created(String),
    Revoked(String),
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_under_write_load_holds_every_change_acknowledged_before_it_began() {
    let up = Upstream::start();
    let tg = Tollgate::start(Config::single(&up));
    let backup = tg.dir().join("backups/tollgate-backup.redb");
    let acknowledged: Mutex<Vec<Change>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);

    let writer = async {
        let mut n = 0;
        while !stop.load(Ordering::Acquire) {
            let created = tg.create_token(&format!("load-{n}")).await;
            acknowledged
                .lock()
                .unwrap()
                .push(Change::Created(created.id.clone()));
            if n % 3 == 0 {
                let resp = tg.revoke(&created.id, Some("load")).await;
                assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
                acknowledged
                    .lock()
                    .unwrap()
                    .push(Change::Revoked(created.id));
            }
            n += 1;
        }
    };
    let backup_run = async {
        wait_until(DEADLINE, "some acknowledged changes", || async {
            (acknowledged.lock().unwrap().len() >= 30).then_some(())
        })
        .await;
        // Everything acknowledged so far was acknowledged before the backup began.
        let before = acknowledged.lock().unwrap().clone();
        let (dir, config, target) = (
            tg.dir().to_owned(),
            tg.config_path().to_owned(),
            backup.clone(),
        );
        let out = tokio::task::spawn_blocking(move || {
            run_binary(
                &dir,
                &[
                    "store",
                    "backup",
                    path_str(&target),
                    "--config",
                    path_str(&config),
                ],
                &[],
            )
        })
        .await
        .unwrap();
        // Keep writing a little after the backup, so that the load surrounds it.
        let after = acknowledged.lock().unwrap().len();
        wait_until(DEADLINE, "writes after the backup", || async {
            (acknowledged.lock().unwrap().len() > after).then_some(())
        })
        .await;
        stop.store(true, Ordering::Release);
        (before, out)
    };
    let ((before, out), ()) = tokio::join!(backup_run, writer);
    let out = out.ok();
    assert!(out.stdout.contains("wrote "), "{out:#?}");

    let check = store_cmd(tg.dir(), &["check", path_str(&backup), "--json"]).ok();
    let report = check.json();
    assert_eq!(report["sound"], true, "{report}");
    assert_eq!(report["in_use"], false, "{report}");

    let listed = by_id(
        &offline(tg.dir(), &backup, &["token", "list", "--json"])
            .ok()
            .json(),
    );
    for change in &before {
        match change {
            Change::Created(id) => assert!(listed.contains_key(id), "{id} is in the backup"),
            Change::Revoked(id) => assert_eq!(
                listed.get(id).map(|r| r["status"].clone()),
                Some(json!("revoked")),
                "{id} is revoked in the backup"
            ),
        }
    }
    // The server's store passes a check while it runs, and is left working.
    let live = store_cmd(tg.dir(), &["check", path_str(&tg.store_path()), "--json"]).ok();
    assert_eq!(live.json()["in_use"], true);
    assert_eq!(live.json()["sound"], true);
    tg.create_token("after-the-check").await;
}

#[test]
fn a_backup_refuses_to_replace_a_file_and_restores_as_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tollgate.redb");
    let id = create_offline(dir.path(), &store, "a")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = dir.path().join("copy.redb");
    std::fs::write(&target, b"an older file").unwrap();
    let source = ["--store", path_str(&store)];
    let out = store_cmd(
        dir.path(),
        &[&["backup", path_str(&target)], &source[..]].concat(),
    );
    assert_op_failure(&out);
    assert!(out.stderr.contains("--force"), "{out:#?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"an older file");

    let out = store_cmd(
        dir.path(),
        &[
            &["backup", path_str(&target), "--force", "--json"],
            &source[..],
        ]
        .concat(),
    )
    .ok();
    let written = out.json();
    assert_eq!(written["tokens"], 1);
    assert_eq!(written["last_event"], 1);

    // Not onto the store itself, even with --force.
    let out = store_cmd(
        dir.path(),
        &[&["backup", path_str(&store), "--force"], &source[..]].concat(),
    );
    assert_op_failure(&out);

    // Restore: the copy is a store the commands (and a server) open.
    let restored = dir.path().join("restored.redb");
    std::fs::copy(&target, &restored).unwrap();
    let shown = offline(dir.path(), &restored, &["token", "show", &id, "--json"])
        .ok()
        .json();
    assert_eq!(shown["name"], "a");
}

/// Fills the store file `store` with `n` tokens, imported offline by digest.
fn import_tokens(dir: &Path, store: &Path, n: usize) {
    let tokens: Vec<Value> = (0..n)
        .map(|i| json!({"name": format!("t{i}"), "digest": sha256_hex(format!("t{i}").as_bytes())}))
        .collect();
    offline_with_stdin(
        dir,
        store,
        &["token", "import", "-"],
        json!({ "tokens": tokens }).to_string().as_bytes(),
    )
    .ok();
}

#[test]
fn an_interrupted_backup_leaves_no_target_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tollgate.redb");
    // Enough tokens that the copy takes a moment.
    import_tokens(dir.path(), &store, 10_000);
    let target = dir.path().join("out/backup.redb");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "store",
            "backup",
            path_str(&target),
            "--store",
            path_str(&store),
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out_dir = dir.path().join("out");
    let partial = |d: &Path| -> Option<PathBuf> {
        std::fs::read_dir(d)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".partial"))
    };
    wait_for(DEADLINE, "the backup to start writing or to end", || {
        partial(&out_dir).is_some() || child.try_wait().unwrap().is_some()
    });
    let _ = child.kill();
    child.wait().unwrap();
    // Either the kill came in time and there is no target, or the backup had finished and the
    // target is whole: never a part of one.
    if target.exists() {
        store_cmd(dir.path(), &["check", path_str(&target)]).ok();
    }
}

#[test]
fn check_reports_files_that_are_not_sound() {
    let dir = tempfile::tempdir().unwrap();

    let out = store_cmd(dir.path(), &["check", "missing.redb"]);
    assert_op_failure(&out);
    assert!(out.stderr.contains("no store file"), "{out:#?}");

    let noise = dir.path().join("noise.redb");
    std::fs::write(&noise, random_bytes(64 * 1024)).unwrap();
    let out = store_cmd(dir.path(), &["check", path_str(&noise)]);
    assert_op_failure(&out);
    assert!(out.stderr.contains("noise.redb"), "{out:#?}");

    // A store cut short, as a copy interrupted by hand would be.
    let whole = dir.path().join("whole.redb");
    import_tokens(dir.path(), &whole, 2_000);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = dir.path().join("cut.redb");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = store_cmd(dir.path(), &["check", path_str(&cut)]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("cut.redb"), "{out:#?}");

    // A store of a schema this build does not know.
    let future = dir.path().join("future.redb");
    create_offline(dir.path(), &future, "a");
    {
        let db = redb::Database::create(&future).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("schema_version", 7)
            .unwrap();
        txn.commit().unwrap();
    }
    let out = store_cmd(dir.path(), &["check", path_str(&future)]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stdout.contains("schema version 7"), "{out:#?}");
    assert!(out.stderr.contains("not sound"), "{out:#?}");
    let report = store_cmd(dir.path(), &["check", path_str(&future), "--json"]).json();
    assert_eq!(report["sound"], false);
    assert_eq!(report["schema_version"], 7);
    // Nor is it backed up as if it were readable.
    let out = store_cmd(
        dir.path(),
        &["backup", "copy.redb", "--store", path_str(&future)],
    );
    assert_op_failure(&out);
    assert!(!dir.path().join("copy.redb").exists());
}

#[test]
fn a_damaged_record_is_reported_in_full_offline_and_found_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("tollgate.redb");
    let id = create_offline(dir.path(), &store, "a")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    {
        let db = redb::Database::create(&store).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("tokens"))
            .unwrap()
            .insert(id.as_str(), b"\x02garbage".as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    // There is no server log to point to: the command says what failed.
    let out = offline(dir.path(), &store, &["token", "show", &id]);
    assert_op_failure(&out);
    assert!(out.stderr.contains("corrupt"), "{out:#?}");
    assert!(!out.stderr.contains("server log"), "{out:#?}");

    let out = store_cmd(dir.path(), &["check", path_str(&store)]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(
        out.stdout
            .contains(&format!("problem:  token {id}: the record does not decode")),
        "{out:#?}"
    );
}
