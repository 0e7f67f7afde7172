//! Config hot reload: a changed config file, or SIGHUP, is read, validated whole and applied
//! while serving, with no restart and no connection dropped.
//!
//! The watch is on the file's directory ([`crate::watch`]): editors replace a file by renaming
//! another over it, and Kubernetes swaps a `..data` symlink so that no event ever names the file.
//! Wake-ups are only hints; the file's content ([`Fingerprint`]) decides whether there is
//! anything to look at, so polls and unrelated events cost a read and a hash, never a log line.
//!
//! A new config is validated whole before anything is applied: an invalid one is refused with
//! one log line and the running config stays. The new config is compared key by key with the
//! running one. What may change live (see `is_live`) is applied by swapping each listener's
//! settings ([`ListenerState::prepare`], then [`ListenerState::install`]): a request sees the old settings or the new ones,
//! never a mix. What is fixed at start (bind addresses, the store, the admin port, ...) is named
//! in one log line as needing a restart, and left as it is.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use toml::{Table, Value};

use crate::config::{Config, ConfigError};
use crate::metrics::{Metrics, ReloadResult};
use crate::proxy::{self, ListenerState};
use crate::tls::TlsError;
use crate::watch::{Fingerprint, Wakeups, dir_of};

/// After an event in the config's directory, the wait for the rest of a burst (an editor's
/// write-then-rename, a ConfigMap's symlink swap) before the file is read once.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the file is read regardless of events, for what a watch misses (network
/// filesystems, a symlink to a file in another directory, a full event queue).
const POLL: Duration = Duration::from_secs(5);

/// What woke the reloader; it decides what an unchanged file is worth saying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The first look, before ready: catches a change made while the server was starting.
    Start,
    /// An event in the directory, or the periodic poll.
    Change,
    /// SIGHUP: an operator asked, so even "nothing changed" gets an answer in the log.
    Signal,
}

/// What the file held when last looked at, so that the same content is judged once.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Content(Fingerprint),
    /// The read failed with this error (a refusal already logged).
    Unreadable(String),
}

/// Watches the config file and applies its changes to the running listeners.
pub struct Reloader {
    path: PathBuf,
    /// The config in effect, in its comparable form ([`comparable`]): the start's, with every
    /// change applied since. Keys that need a restart keep their start values, so that they are
    /// named again as long as the file differs from what runs.
    running: Table,
    seen: Option<Seen>,
    /// Whether the last config looked at was refused: its valid successor then gets a line
    /// even when it changes nothing, so that the operator sees the refusal is over.
    refused: bool,
    /// The log level in effect.
    level: tracing::Level,
    listeners: HashMap<String, Arc<ListenerState>>,
    metrics: Arc<Metrics>,
    /// `None` when `server.watch_config` is off: then only SIGHUP reloads.
    wakeups: Option<Wakeups>,
    hangups: Option<Signal>,
}

impl Reloader {
    /// Sets up the watch and the SIGHUP handler for the file `config` came from, then looks at
    /// the file once, for a change made while the server was starting. Call it before the
    /// server reports ready: from then on SIGHUP reloads instead of ending the process (its
    /// default), and every later change is seen.
    pub async fn start(
        config: &Config,
        listeners: impl IntoIterator<Item = (String, Arc<ListenerState>)>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let wakeups = config
            .watch_config
            .then(|| Wakeups::new([dir_of(&config.source)], POLL));
        let hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; it will not reload the config");
                None
            }
        };
        let mut reloader = Reloader {
            path: config.source.clone(),
            running: comparable(config),
            seen: None,
            refused: false,
            level: config.log.level,
            listeners: listeners.into_iter().collect(),
            metrics,
            wakeups,
            hangups,
        };
        reloader.check(Trigger::Start).await;
        reloader
    }

    /// Looks at the config on every wake-up and SIGHUP until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let trigger = tokio::select! {
                _ = wakeup(&mut self.wakeups) => Trigger::Change,
                _ = hangup(&mut self.hangups) => Trigger::Signal,
                _ = stop.changed() => return,
            };
            self.check(trigger).await;
        }
    }

    /// Reads the file and, when its content is new (or on request), judges and applies it.
    async fn check(&mut self, trigger: Trigger) {
        let path = self.path.clone();
        // A small file, but a read may block (network filesystems): keep it off the workers.
        let Ok(read) = tokio::task::spawn_blocking(move || std::fs::read(path)).await else {
            // The runtime is shutting down.
            return;
        };
        let seen = match &read {
            Ok(bytes) => Seen::Content(Fingerprint::of([bytes.as_slice()])),
            Err(e) => Seen::Unreadable(e.to_string()),
        };
        if trigger == Trigger::Change && self.seen.as_ref() == Some(&seen) {
            return;
        }
        self.seen = Some(seen);

        let parsed = read
            .map_err(|source| ConfigError::Read {
                path: self.path.clone(),
                source,
            })
            .and_then(|bytes| self.parse(bytes));
        let config = match parsed {
            Ok(config) => config,
            Err(e) => return self.refuse(&e),
        };

        let was_refused = std::mem::replace(&mut self.refused, false);
        let target = comparable(&config);
        let (live, fixed): (Vec<Change>, Vec<Change>) = differences(&self.running, &target)
            .into_iter()
            .partition(|change| is_live(&change.path));
        if !fixed.is_empty() {
            tracing::warn!(
                keys = %List(&fixed),
                "config changes that need a restart were not applied"
            );
        }
        if live.is_empty() {
            if trigger != Trigger::Start {
                self.metrics
                    .config_reload(ReloadResult::Unchanged, crate::time::now());
            }
            if trigger == Trigger::Signal || was_refused {
                tracing::info!("config reload: valid, nothing to apply");
            }
            return;
        }
        if let Err(e) = self.apply(&config, &live, &target) {
            // A file the config names (a CA, a client certificate) may come after it, as a
            // Secret after a ConfigMap: look again at the next wake-up, not only on an edit.
            self.seen = None;
            return self.refuse(&e);
        }
        // The line is written at the more verbose of the two levels, so that it shows whichever
        // way the level moves.
        let level = config.log.level;
        let louder = level > self.level;
        if louder {
            self.set_level(level);
        }
        tracing::info!(changed = %List(&live), "config reloaded");
        if !louder {
            self.set_level(level);
        }
        self.metrics
            .config_reload(ReloadResult::Applied, crate::time::now());
    }

    /// A new config that cannot be applied: one line, and the running config stays.
    fn refuse(&mut self, e: &(dyn std::error::Error + 'static)) {
        tracing::error!(
            error = %crate::ErrorChain(e),
            "config reload refused; the running config stays"
        );
        self.metrics
            .config_reload(ReloadResult::Refused, crate::time::now());
        self.refused = true;
    }

    fn parse(&self, bytes: Vec<u8>) -> Result<Config, ConfigError> {
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Read {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        })?;
        Config::parse(&self.path, &text)
    }

    fn set_level(&mut self, level: tracing::Level) {
        if level != self.level {
            // False only for a server started without the log of `logging::init` (benchmarks).
            let _ = crate::logging::set_level(level);
            self.level = level;
        }
    }

    /// Applies the `live` changes of `config`, whose comparable form is `target`, to the
    /// listeners (the log level is left to the caller). Every listener's new settings are
    /// built first: one that cannot be built refuses the whole reload, and nothing changes.
    fn apply(&mut self, config: &Config, live: &[Change], target: &Table) -> Result<(), TlsError> {
        // The access flag is part of every listener's settings.
        let access_changed = live.iter().any(|c| c.path == ["log", "access"]);
        let mut prepared = Vec::new();
        for listener in &config.listeners {
            // A listener added to the file is not started: that needs a restart, named above.
            let Some(state) = self.listeners.get(&listener.name) else {
                continue;
            };
            let keys: Vec<&str> = live
                .iter()
                .filter_map(|c| match c.path.as_slice() {
                    [section, name, key] if section == "listener" && *name == listener.name => {
                        Some(key.as_str())
                    }
                    _ => None,
                })
                .collect();
            if keys.is_empty() && !access_changed {
                continue;
            }
            let new_client = keys.iter().any(|key| proxy::CLIENT_KEYS.contains(key));
            let settings = state.prepare(listener, config.log.access, new_client)?;
            prepared.push((state, settings));
        }
        for (state, settings) in prepared {
            state.install(settings);
        }
        for change in live {
            set(
                &mut self.running,
                &change.path,
                lookup(target, &change.path),
            );
        }
        Ok(())
    }
}

async fn wakeup(wakeups: &mut Option<Wakeups>) {
    match wakeups {
        Some(wakeups) => wakeups.next(SETTLE).await,
        None => std::future::pending().await,
    }
}

async fn hangup(hangups: &mut Option<Signal>) {
    if let Some(signals) = hangups {
        if signals.recv().await.is_some() {
            return;
        }
        // `None` from `recv`: no signal can come any more.
        *hangups = None;
    }
    std::future::pending().await
}

/// Whether a key (its path in the comparable form) is applied by a reload. Everything else is
/// fixed at start, keys added to the config later included, until they are listed here.
fn is_live(path: &[String]) -> bool {
    match path {
        [section, key] if section == "log" => key == "level" || key == "access",
        [section, _listener, key] if section == "listener" => {
            proxy::CLIENT_KEYS.contains(&key.as_str())
                || proxy::SETTINGS_KEYS.contains(&key.as_str())
        }
        _ => false,
    }
}

/// A config's effective raw form (defaults filled in) as a TOML table, with the listeners in a
/// table keyed by name instead of an array, so that keys are compared listener by listener
/// whatever their order in the file.
fn comparable(config: &Config) -> Table {
    // Plain strings, numbers, booleans and tables always serialise.
    let mut table = Table::try_from(&config.effective).expect("the effective config serialises");
    if let Some(Value::Array(listeners)) = table.remove("listener") {
        let by_name = listeners
            .into_iter()
            .filter_map(|listener| {
                let name = listener.get("name")?.as_str()?.to_owned();
                Some((name, listener))
            })
            .collect();
        table.insert("listener".into(), Value::Table(by_name));
    }
    table
}

/// One key whose value differs between two configs.
#[derive(Debug, PartialEq, Eq)]
struct Change {
    /// The key's path: `["log", "level"]`, `["listener", "api", "route"]`.
    path: Vec<String>,
    kind: ChangeKind,
}

#[derive(Debug, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Removed,
    Modified,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path.join("."))?;
        match self.kind {
            ChangeKind::Added => f.write_str(" (added)"),
            ChangeKind::Removed => f.write_str(" (removed)"),
            ChangeKind::Modified => Ok(()),
        }
    }
}

/// Changes, for a log field: `listener.api.route, log.level`.
struct List<'a>(&'a [Change]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, change) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{change}")?;
        }
        Ok(())
    }
}

/// Every key whose value differs from `old` to `new`, descending into tables (not arrays: a
/// route list is one value).
fn differences(old: &Table, new: &Table) -> Vec<Change> {
    let mut changes = Vec::new();
    compare(old, new, &mut Vec::new(), &mut changes);
    // In the same order whatever order the file and the maps keep.
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

fn compare(old: &Table, new: &Table, path: &mut Vec<String>, changes: &mut Vec<Change>) {
    let mut note = |path: &Vec<String>, key: &str, kind| {
        let mut path = path.clone();
        path.push(key.to_owned());
        changes.push(Change { path, kind });
    };
    let mut nested = Vec::new();
    for (key, before) in old {
        match (before, new.get(key)) {
            (_, None) => note(path, key, ChangeKind::Removed),
            (Value::Table(a), Some(Value::Table(b))) => nested.push((key, a, b)),
            (a, Some(b)) if a != b => note(path, key, ChangeKind::Modified),
            _ => {}
        }
    }
    for key in new.keys().filter(|key| !old.contains_key(*key)) {
        note(path, key, ChangeKind::Added);
    }
    for (key, a, b) in nested {
        path.push(key.clone());
        compare(a, b, path, changes);
        path.pop();
    }
}

fn lookup(table: &Table, path: &[String]) -> Option<Value> {
    let (last, parents) = path.split_last()?;
    let mut table = table;
    for key in parents {
        table = table.get(key)?.as_table()?;
    }
    table.get(last).cloned()
}

/// Sets (or with `None`, removes) the key at `path`. Its parent tables exist: only keys of
/// listeners present in both configs are ever set.
fn set(table: &mut Table, path: &[String], value: Option<Value>) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = table;
    for key in parents {
        match table.get_mut(key) {
            Some(Value::Table(inner)) => table = inner,
            _ => return,
        }
    }
    match value {
        Some(value) => {
            table.insert(last.clone(), value);
        }
        None => {
            table.remove(last);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
        [[listener]]
        name = "api"
        bind = "127.0.0.1:8080"
        upstream = "http://127.0.0.1:8888"

        [[listener]]
        name = "heartbeat"
        bind = "127.0.0.1:8000"
        upstream = "http://127.0.0.1:18000"
    "#;

    fn table(text: &str) -> Table {
        comparable(&Config::parse(Path::new("test.toml"), text).unwrap())
    }

    fn changes(old: &str, new: &str) -> Vec<(String, bool)> {
        differences(&table(old), &table(new))
            .into_iter()
            .map(|c| (c.to_string(), is_live(&c.path)))
            .collect()
    }

    #[test]
    fn the_same_config_in_other_words_changes_nothing() {
        let reordered = r#"
            # the same, listeners swapped, a default written out
            [log]
            level = "info"
            [[listener]]
            name = "heartbeat"
            upstream = "http://127.0.0.1:18000"
            bind = "127.0.0.1:8000"
            [[listener]]
            name = "api"
            bind = "127.0.0.1:8080"
            upstream = "http://127.0.0.1:8888"
            upstream_timeout = "30s"
        "#;
        assert_eq!(changes(BASE, reordered), vec![]);
    }

    #[test]
    fn routing_upstream_and_log_level_are_live_addresses_and_paths_are_not() {
        let new = format!(
            "[log]\nlevel = \"warn\"\n[store]\npath = \"elsewhere.redb\"\n{}\n\
             [[listener.route]]\npath = \"/open/**\"\npublic = true\n",
            BASE.replace("127.0.0.1:8888", "127.0.0.1:9999")
                .replace("127.0.0.1:8000", "127.0.0.1:8001")
        );
        let mut found = changes(BASE, &new);
        found.sort();
        assert_eq!(
            found,
            vec![
                ("listener.api.upstream".into(), true),
                ("listener.heartbeat.bind".into(), false),
                ("listener.heartbeat.route (added)".into(), true),
                ("log.level".into(), true),
                ("store.path".into(), false),
            ]
        );
    }

    #[test]
    fn listeners_added_or_removed_need_a_restart() {
        let one = BASE
            .split("[[listener]]")
            .take(2)
            .collect::<Vec<_>>()
            .join("[[listener]]");
        assert_eq!(
            changes(BASE, &one),
            vec![("listener.heartbeat (removed)".into(), false)]
        );
        assert_eq!(
            changes(&one, BASE),
            vec![("listener.heartbeat (added)".into(), false)]
        );
    }

    #[test]
    fn keys_not_known_to_be_live_need_a_restart() {
        assert!(!is_live(&[
            "listener".into(),
            "api".into(),
            "tls_cert".into()
        ]));
        assert!(!is_live(&["server".into(), "shutdown_grace".into()]));
        assert!(!is_live(&["log".into(), "format".into()]));
        assert!(is_live(&[
            "listener".into(),
            "api".into(),
            "authorization".into()
        ]));
        assert!(is_live(&[
            "listener".into(),
            "api".into(),
            "connect_timeout".into()
        ]));
    }

    #[test]
    fn applying_a_change_makes_the_running_form_follow_it() {
        let mut running = table(BASE);
        let new = table(&format!("{BASE}profile = \"telegraf-controller\"\n"));
        let found = differences(&running, &new);
        assert_eq!(found.len(), 1);
        set(&mut running, &found[0].path, lookup(&new, &found[0].path));
        assert_eq!(differences(&running, &new), vec![]);
        // And back: the key is removed again.
        let found = differences(&running, &table(BASE));
        set(&mut running, &found[0].path, None);
        assert_eq!(differences(&running, &table(BASE)), vec![]);
    }
}
