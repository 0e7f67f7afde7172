//! The token store: a redb file, the only module that names redb.
//!
//! Tables:
//! - `meta`: the schema version.
//! - `tokens`: id → record (`record_codec`; holds the digest, never a secret).
//! - `revocations`: id → when and why the token was revoked (schema 3). Kept apart from the
//!   records so that a revoke writes a row of a few bytes rather than rewriting the token's
//!   record: a bulk revoke of 10,000 tokens among a million then dirties a few dozen pages, not
//!   one page of the records' B-tree per token.
//! - `digests`: SHA-256 digest → id, the index the cache is rebuilt from and imports check.
//! - `names`: name → id, so that names stay unique without a scan.
//! - `created`: the sequence number of a token's `created` event → id: creation order, for
//!   listing newest first and for paging with a cursor that survives deletions.
//! - `events`: sequence → event. One entry per change to a token, in commit order. It is at once
//!   the audit trail (who did what, when, why) and the change log that other processes sharing
//!   the file will tail: each event carries the token's digest, which is all a cache needs to
//!   drop a deleted token.
//!
//! - `peers`: the processes serving from this file and how far each has applied `events`
//!   (`shared.rs`).
//!
//! Every mutation is one write transaction with immediate durability (redb's default): when a
//! method returns `Ok`, the change is on disk. Every method blocks; async callers run them on the
//! blocking pool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{
    ConcurrencyMode, Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::time::UnixSeconds;

pub mod bell;
pub mod maintenance;
mod record_codec;
mod shared;
use crate::token::{TokenDigest, TokenId, TokenRecord, TokenStatus};
pub use record_codec::TokenView;
pub use shared::{Change, Peer};

/// The layout written by this version. A file with another version is refused rather than guessed at.
/// 1: JSON records; 2: binary records (`record_codec`); 3: revocations in a table of their own.
/// A file of schema 1 is migrated on open; one of schema 2 too, when no other process has it
/// open (`Store::open`).
pub const SCHEMA_VERSION: u64 = 3;

/// The schema whose records hold their revocation. Releases before 0.4 read revocations there
/// only, both at start and when they follow the change log.
pub const REVOKED_IN_RECORDS: u64 = 2;

/// redb's own page cache. The data path never reads the store (the token cache does), so this
/// serves only admin calls and commits; redb's default (1 GiB) would hold a copy of every record
/// read at start-up for no use.
const STORE_CACHE_BYTES: usize = 8 * 1024 * 1024;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const DIGESTS: TableDefinition<&[u8; 32], &str> = TableDefinition::new("digests");
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");
const CREATED: TableDefinition<u64, &str> = TableDefinition::new("created");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const REVOCATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("revocations");
/// Digests of deleted tokens → the sequence number of their deletion, so that an import cannot
/// bring back a token that was deleted here (say, because it leaked).
const RETIRED: TableDefinition<&[u8; 32], u64> = TableDefinition::new("retired");

const SCHEMA_KEY: &str = "schema_version";

/// How long an open waits while another process holds the file alone: a schema upgrade
/// (`Store::open`) or a page check (`store check`) takes it for moments, and a server starting
/// meanwhile should wait rather than fail.
const ALONE_HOLD_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store's directory {path}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}")]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    #[error(
        "the store {path} has schema version {found}, but this tollgate reads version {expected}; \
         use the tollgate release that wrote it"
    )]
    UnknownSchema {
        path: PathBuf,
        found: u64,
        expected: u64,
    },
    #[error("the store {path} is not a tollgate store (it has tables but no schema version)")]
    NotTollgate { path: PathBuf },
    #[error("the store failed")]
    Redb(#[from] redb::Error),
    #[error("store: a record is corrupt: {0}")]
    Corrupt(String),
    #[error("a token named {0:?} already exists")]
    NameTaken(String),
    #[error("this token is already in the store")]
    DigestTaken,
}

macro_rules! from_redb {
    ($($t:ty),+) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(e.into())
            }
        }
    )+};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// What happened to a token, as the audit trail and the change log record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    Created,
    /// Created from a token that existed elsewhere (by its plaintext or its digest).
    Imported,
    Revoked,
    Deleted,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Created => "created",
            EventAction::Imported => "imported",
            EventAction::Revoked => "revoked",
            EventAction::Deleted => "deleted",
        }
    }
}

/// One committed change. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub at: UnixSeconds,
    pub action: EventAction,
    pub token_id: TokenId,
    pub token_name: String,
    pub digest: TokenDigest,
    pub actor: String,
    pub reason: Option<String>,
}

/// The outcome of a bulk revoke, in the order the ids were given (duplicates once).
#[derive(Debug, Default)]
pub struct RevokeOutcome {
    pub revoked: Vec<TokenRecord>,
    pub already_revoked: Vec<TokenRecord>,
    pub not_found: Vec<TokenId>,
    pub events: Vec<Event>,
}

#[derive(Debug, Default)]
pub struct DeleteOutcome {
    pub deleted: Vec<TokenRecord>,
    pub not_found: Vec<TokenId>,
    pub events: Vec<Event>,
}

/// Why an imported token was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Another token (stored, or earlier in the same import) has the name.
    NameTaken,
    /// The same token (stored, or earlier in the same import) is present already.
    DigestTaken,
    /// The token was deleted here; deleting is for good.
    Deleted,
    /// Its expiry has passed.
    Expired,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NameTaken => "name already used by another token",
            SkipReason::DigestTaken => "token already present",
            SkipReason::Deleted => "token was deleted here; a deleted token cannot come back",
            SkipReason::Expired => "token expired",
        }
    }
}

/// The outcome of an import, in the order the tokens were given.
#[derive(Debug, Default)]
pub struct ImportOutcome {
    pub imported: Vec<TokenRecord>,
    /// Names and reasons.
    pub skipped: Vec<(String, SkipReason)>,
    pub events: Vec<Event>,
}

/// One page of a listing, newest first.
#[derive(Debug)]
pub struct Page {
    pub tokens: Vec<TokenRecord>,
    /// The cursor to pass as `after` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

pub struct Store {
    db: Database,
    path: PathBuf,
    layout: Layout,
    /// The commit bell failed once already (and said so); later failures stay quiet.
    bell_failed: std::sync::atomic::AtomicBool,
}

/// Where a file keeps its revocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Schema 2, open in another process that may be an older release: revocations go on being
    /// written into the records, where that release reads them.
    RevokedInRecords,
    /// Schema 3: in the `revocations` table.
    RevocationTable,
}

impl Store {
    /// Opens the store, creating the file and its directory on first start, and checks the
    /// schema, migrating an older one.
    ///
    /// A schema-2 file moves to schema 3 only while no other process has it open. A process of
    /// an older release serving from it (the old half of a blue/green restart) would read a
    /// revocation made in the new table as no revocation at all, and go on accepting the token.
    /// So while the file is shared, this process keeps schema 2 and writes revocations into the
    /// records as the older releases do; the first start with the file to itself moves it on.
    /// An older release refuses a schema-3 file at open, so none can join once it has moved.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let store = Store::open_shared(path)?;
        if store.layout == Layout::RevocationTable {
            return Ok(store);
        }
        drop(store);
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        // Without multi-writer mode, redb refuses a file that another process has open. (It
        // also makes processes opening the file meanwhile wait: `open_waiting`.)
        match Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .open(path)
        {
            Ok(alone) => {
                prepare(&alone, path, true)?;
                drop(alone);
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {}
            Err(e) => return Err(open_error(e)),
        }
        Store::open_shared(path)
    }

    /// Opens the file as every process sharing it does, creating it when absent, and checks the
    /// schema without moving a schema-2 file on.
    fn open_shared(path: &Path) -> Result<Store, StoreError> {
        let db = open_waiting(path, || {
            Database::builder()
                .set_cache_size(STORE_CACHE_BYTES)
                // Several processes share the file: a server and its successor during a
                // restart, the command line working on the file directly, a backup. One write
                // transaction at a time across all of them; readers follow every process's
                // commits.
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .create(path)
        })
        .map_err(|source| StoreError::Open {
            path: path.to_owned(),
            source,
        })?;
        let layout = prepare(&db, path, false)?;
        Ok(Store {
            db,
            path: path.to_owned(),
            layout,
            bell_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The schema version of the file as this process writes it.
    pub fn schema_version(&self) -> u64 {
        match self.layout {
            Layout::RevokedInRecords => REVOKED_IN_RECORDS,
            Layout::RevocationTable => SCHEMA_VERSION,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every write is durable when its commit returns: a change acknowledged to a client survives
    /// `kill -9` and power loss. (redb's default, stated here so that it never changes by accident.)
    fn begin_write(&self) -> Result<redb::WriteTransaction, StoreError> {
        begin_write(&self.db)
    }

    /// The revocations table of a schema-3 file, in a write transaction; `None` where the
    /// records hold revocations.
    fn revocations_mut<'txn>(
        &self,
        txn: &'txn WriteTransaction,
    ) -> Result<Option<redb::Table<'txn, &'static str, &'static [u8]>>, StoreError> {
        Ok(match self.layout {
            Layout::RevocationTable => Some(txn.open_table(REVOCATIONS)?),
            Layout::RevokedInRecords => None,
        })
    }

    /// The revocations table of a schema-3 file, in a read transaction.
    fn revocations(
        &self,
        txn: &ReadTransaction,
    ) -> Result<Option<redb::ReadOnlyTable<&'static str, &'static [u8]>>, StoreError> {
        Ok(match self.layout {
            Layout::RevocationTable => Some(txn.open_table(REVOCATIONS)?),
            Layout::RevokedInRecords => None,
        })
    }

    /// Tells the processes following this file that a commit changed its tokens (`bell`). The
    /// commit stands either way: followers also read the store every second on their own.
    fn ring(&self) {
        if let Err(e) = bell::ring(&self.path)
            && !self
                .bell_failed
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                store = %self.path.display(),
                error = %e,
                "cannot ring the store's commit bell; other processes on this file see its \
                 changes only at their next periodic read (within a second)"
            );
        }
    }

    /// How many tokens the store holds.
    pub fn token_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(TOKENS)?.len()?)
    }

    /// Calls `each` with what the cache needs of every token, borrowed from the stored bytes,
    /// and returns the last event's sequence number: the point from which this reader is up to
    /// date. The records are read by one thread per available core, each over its own range of
    /// ids (ids are uniformly random), all in one read transaction.
    pub fn load_all(&self, each: impl Fn(TokenView<'_>) + Sync) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let tokens = txn.open_table(TOKENS)?;
        // Far fewer than the tokens, as a rule: a set of their ids costs less than a lookup in
        // the table per token.
        let mut revoked = std::collections::HashSet::new();
        if let Some(revocations) = self.revocations(&txn)? {
            for entry in revocations.iter()? {
                let (id, _) = entry?;
                let id = id.value();
                revoked.insert(
                    TokenId::parse(id)
                        .ok_or_else(|| StoreError::Corrupt(format!("revoked id {id:?}")))?,
                );
            }
        }
        let parts = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        let bounds = TokenId::range_bounds(parts);
        let load = |lo: Option<&str>, hi: Option<&str>| -> Result<(), StoreError> {
            let range = match (lo, hi) {
                (None, None) => tokens.iter()?,
                (None, Some(hi)) => tokens.range(..hi)?,
                (Some(lo), None) => tokens.range(lo..)?,
                (Some(lo), Some(hi)) => tokens.range(lo..hi)?,
            };
            for entry in range {
                let (_, value) = entry?;
                let mut view =
                    record_codec::decode_view(value.value()).map_err(StoreError::Corrupt)?;
                view.revoked |= !revoked.is_empty() && revoked.contains(&view.id);
                each(view);
            }
            Ok(())
        };
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..parts)
                .map(|i| {
                    let lo = i.checked_sub(1).map(|j| bounds[j].as_str());
                    let hi = bounds.get(i).map(String::as_str);
                    scope.spawn(move || load(lo, hi))
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
        })?;
        let events = txn.open_table(EVENTS)?;
        Ok(events.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Adds a new token. Refuses a name or digest that is already present.
    pub fn create(&self, record: &TokenRecord, actor: &str) -> Result<Event, StoreError> {
        let txn = self.begin_write()?;
        let event = {
            let mut tables = NewTokenTables::open(&txn, self.revocations_mut(&txn)?)?;
            if let Some(reason) = tables.conflict(record)? {
                return Err(match reason {
                    SkipReason::NameTaken => StoreError::NameTaken(record.name.clone()),
                    SkipReason::DigestTaken | SkipReason::Deleted | SkipReason::Expired => {
                        StoreError::DigestTaken
                    }
                });
            }
            tables.insert(record, EventAction::Created, actor)?
        };
        txn.commit()?;
        self.ring();
        Ok(event)
    }

    /// Adds tokens that exist elsewhere already, in one transaction. A token whose name or
    /// digest is present (in the store or earlier in `records`) is skipped, not an error.
    pub fn import(
        &self,
        records: &[TokenRecord],
        actor: &str,
    ) -> Result<ImportOutcome, StoreError> {
        let txn = self.begin_write()?;
        let mut outcome = ImportOutcome::default();
        {
            let mut tables = NewTokenTables::open(&txn, self.revocations_mut(&txn)?)?;
            for record in records {
                match tables.conflict(record)? {
                    Some(reason) => outcome.skipped.push((record.name.clone(), reason)),
                    None => {
                        let event = tables.insert(record, EventAction::Imported, actor)?;
                        outcome.events.push(event);
                        outcome.imported.push(record.clone());
                    }
                }
            }
        }
        txn.commit()?;
        if !outcome.events.is_empty() {
            self.ring();
        }
        Ok(outcome)
    }

    /// Revokes every listed token that is not revoked yet, in one transaction.
    pub fn revoke(
        &self,
        ids: &[TokenId],
        reason: Option<&str>,
        actor: &str,
        now: UnixSeconds,
    ) -> Result<RevokeOutcome, StoreError> {
        let mut outcome = RevokeOutcome::default();
        let (mut revoked, mut already, mut missing) = (Vec::new(), Vec::new(), Vec::new());
        let txn = self.begin_write()?;
        {
            let mut tokens = txn.open_table(TOKENS)?;
            let mut revocations = self.revocations_mut(&txn)?;
            let mut events = txn.open_table(EVENTS)?;
            for (position, id) in in_key_order(ids) {
                let Some((mut record, created_seq)) = get_stored(&tokens, &id)? else {
                    missing.push((position, id));
                    continue;
                };
                if let Some(revocations) = &revocations {
                    add_revocation(revocations, &mut record)?;
                }
                if !record.revoke(now, reason) {
                    already.push((position, record));
                    continue;
                }
                match &mut revocations {
                    Some(revocations) => revocations.insert(
                        id.as_str(),
                        record_codec::encode_revocation(now, reason).as_slice(),
                    )?,
                    None => tokens
                        .insert(id.as_str(), encode_record(&record, created_seq).as_slice())?,
                };
                outcome.events.push(append_event(
                    &mut events,
                    &record,
                    EventAction::Revoked,
                    now,
                    actor,
                    reason,
                )?);
                revoked.push((position, record));
            }
        }
        outcome.revoked = in_given_order(revoked);
        outcome.already_revoked = in_given_order(already);
        outcome.not_found = in_given_order(missing);
        if outcome.events.is_empty() {
            // Nothing changed; nothing to make durable.
            txn.abort()?;
        } else {
            txn.commit()?;
            self.ring();
        }
        Ok(outcome)
    }

    /// Deletes every listed token: its record, digest, name and place in the listing go, in one
    /// transaction. The audit trail keeps a `deleted` event.
    pub fn delete(
        &self,
        ids: &[TokenId],
        actor: &str,
        now: UnixSeconds,
    ) -> Result<DeleteOutcome, StoreError> {
        let mut outcome = DeleteOutcome::default();
        let txn = self.begin_write()?;
        {
            let mut tokens = txn.open_table(TOKENS)?;
            let mut digests = txn.open_table(DIGESTS)?;
            let mut names = txn.open_table(NAMES)?;
            let mut created = txn.open_table(CREATED)?;
            let mut events = txn.open_table(EVENTS)?;
            let mut retired = txn.open_table(RETIRED)?;
            let mut revocations = self.revocations_mut(&txn)?;
            let (mut deleted, mut missing) = (Vec::new(), Vec::new());
            for (position, id) in in_key_order(ids) {
                let Some((mut record, created_seq)) = get_stored(&tokens, &id)? else {
                    missing.push((position, id));
                    continue;
                };
                if let Some(revocations) = &mut revocations {
                    add_revocation(revocations, &mut record)?;
                    revocations.remove(id.as_str())?;
                }
                tokens.remove(id.as_str())?;
                digests.remove(record.digest.as_bytes())?;
                names.remove(record.name.as_str())?;
                created.remove(created_seq)?;
                let event =
                    append_event(&mut events, &record, EventAction::Deleted, now, actor, None)?;
                retired.insert(record.digest.as_bytes(), event.seq)?;
                outcome.events.push(event);
                deleted.push((position, record));
            }
            outcome.deleted = in_given_order(deleted);
            outcome.not_found = in_given_order(missing);
        }
        if outcome.events.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
            self.ring();
        }
        Ok(outcome)
    }

    /// Writes last-used times gathered in memory, in one transaction. A token deleted meanwhile is
    /// skipped; a time never moves backwards.
    pub fn record_last_used(&self, uses: &[(TokenId, UnixSeconds)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let txn = self.begin_write()?;
        {
            let mut tokens = txn.open_table(TOKENS)?;
            for (id, at) in uses {
                let Some((mut record, created_seq)) = get_stored(&tokens, id)? else {
                    continue;
                };
                if record.last_used_at.is_some_and(|t| t >= *at) {
                    continue;
                }
                record.last_used_at = Some(*at);
                tokens.insert(id.as_str(), encode_record(&record, created_seq).as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    pub fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let tokens = txn.open_table(TOKENS)?;
        get_record(&tokens, self.revocations(&txn)?.as_ref(), id)
    }

    /// Tokens newest first, optionally of one status and with `name` in their name (ignoring
    /// case), continuing after the cursor `after` (the `next` of the previous page). The cursor is
    /// a creation sequence number, so paging stays exact when tokens are created or deleted
    /// between pages, and a filtered page's cursor is the last token it kept.
    pub fn list(
        &self,
        status: Option<TokenStatus>,
        name: Option<&str>,
        limit: usize,
        after: Option<u64>,
        now: UnixSeconds,
    ) -> Result<Page, StoreError> {
        let txn = self.db.begin_read()?;
        let tokens = txn.open_table(TOKENS)?;
        let revocations = self.revocations(&txn)?;
        let created = txn.open_table(CREATED)?;
        // A substring search cannot seek in the name index, but scanning it compares short
        // strings where the walk below would decode every record: find the matching ids first.
        let matching = match name {
            None => None,
            Some(name) => {
                let needle = name.to_lowercase();
                let names = txn.open_table(NAMES)?;
                let mut ids = std::collections::HashSet::new();
                for entry in names.iter()? {
                    let (name, id) = entry?;
                    if name.value().to_lowercase().contains(&needle) {
                        ids.insert(id.value().to_owned());
                    }
                }
                Some(ids)
            }
        };
        let mut page = Vec::new();
        let mut last_seq = 0;
        let mut has_more = false;
        let mut iter = created.range(..after.unwrap_or(u64::MAX))?;
        while let Some(entry) = iter.next_back() {
            let (seq, id) = entry?;
            let id = id.value();
            if matching.as_ref().is_some_and(|ids| !ids.contains(id)) {
                continue;
            }
            let id = TokenId::parse(id).ok_or_else(|| StoreError::Corrupt(format!("id {id:?}")))?;
            let Some(record) = get_record(&tokens, revocations.as_ref(), &id)? else {
                return Err(StoreError::Corrupt(format!("listed id {id} has no record")));
            };
            if status.is_some_and(|s| record.status(now) != s) {
                continue;
            }
            if page.len() == limit {
                has_more = true;
                break;
            }
            last_seq = seq.value();
            page.push(record);
        }
        Ok(Page {
            tokens: page,
            next: has_more.then_some(last_seq),
        })
    }

    /// Events newest first, those before the sequence number `before` when given, and only those
    /// of the token `token` when given. A token's events are found by walking the log back (there
    /// is no per-token index): a token has few events, and the walk stops once `limit` are found.
    pub fn events(
        &self,
        limit: usize,
        before: Option<u64>,
        token: Option<&TokenId>,
    ) -> Result<Vec<Event>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let mut iter = events.range(..before.unwrap_or(u64::MAX))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(entry) = iter.next_back() else { break };
            let (seq, value) = entry?;
            let event = decode_event(seq.value(), value.value())?;
            if token.is_some_and(|t| event.token_id != *t) {
                continue;
            }
            out.push(event);
        }
        Ok(out)
    }
}

/// The ids once each, in key order, so that a bulk change visits each page of the records' B-tree
/// once; each with the position of its first occurrence, to report results in the order given.
fn in_key_order(ids: &[TokenId]) -> Vec<(usize, TokenId)> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut ordered: Vec<(usize, TokenId)> = ids
        .iter()
        .enumerate()
        .filter(|(_, id)| seen.insert(**id))
        .map(|(position, id)| (position, *id))
        .collect();
    // Ids sort as their key strings do.
    ordered.sort_unstable_by_key(|(_, id)| *id);
    ordered
}

fn in_given_order<T>(mut items: Vec<(usize, T)>) -> Vec<T> {
    items.sort_unstable_by_key(|(position, _)| *position);
    items.into_iter().map(|(_, item)| item).collect()
}

/// A token's record, with its revocation when `revocations` (a schema-3 file's) holds one.
fn get_record<R: ReadableTable<&'static str, &'static [u8]>>(
    tokens: &impl ReadableTable<&'static str, &'static [u8]>,
    revocations: Option<&R>,
    id: &TokenId,
) -> Result<Option<TokenRecord>, StoreError> {
    let Some((mut record, _)) = get_stored(tokens, id)? else {
        return Ok(None);
    };
    if let Some(revocations) = revocations {
        add_revocation(revocations, &mut record)?;
    }
    Ok(Some(record))
}

/// Sets the record's revocation from its row in `revocations`, if it has one. A row that does
/// not decode still revokes (revoked at 0, the epoch): failing here instead would stop every
/// process following the change log at this token, the revocations after it included.
/// `store check` names the row.
fn add_revocation(
    revocations: &impl ReadableTable<&'static str, &'static [u8]>,
    record: &mut TokenRecord,
) -> Result<(), StoreError> {
    if let Some(row) = revocations.get(record.id.as_str())? {
        let (at, reason) = record_codec::decode_revocation(row.value()).unwrap_or_else(|e| {
            tracing::error!(
                token_id = %record.id,
                error = %e,
                "the stored revocation of this token is damaged; it stays revoked"
            );
            (0, None)
        });
        record.revoked_at = Some(at);
        record.revoke_reason = reason;
    }
    Ok(())
}

/// A record as stored, and the sequence number of its creation (its key in `created`). In a
/// schema-3 file, its revocation is not part of it (`get_record`).
fn get_stored(
    tokens: &impl ReadableTable<&'static str, &'static [u8]>,
    id: &TokenId,
) -> Result<Option<(TokenRecord, u64)>, StoreError> {
    tokens
        .get(id.as_str())?
        .map(|v| decode_record(v.value()))
        .transpose()
}

/// The tables a new token is written to, open in one write transaction.
struct NewTokenTables<'txn> {
    tokens: redb::Table<'txn, &'static str, &'static [u8]>,
    digests: redb::Table<'txn, &'static [u8; 32], &'static str>,
    names: redb::Table<'txn, &'static str, &'static str>,
    created: redb::Table<'txn, u64, &'static str>,
    events: redb::Table<'txn, u64, &'static [u8]>,
    retired: redb::Table<'txn, &'static [u8; 32], u64>,
    revocations: Option<redb::Table<'txn, &'static str, &'static [u8]>>,
}

impl<'txn> NewTokenTables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        revocations: Option<redb::Table<'txn, &'static str, &'static [u8]>>,
    ) -> Result<Self, StoreError> {
        Ok(NewTokenTables {
            revocations,
            tokens: txn.open_table(TOKENS)?,
            digests: txn.open_table(DIGESTS)?,
            names: txn.open_table(NAMES)?,
            created: txn.open_table(CREATED)?,
            events: txn.open_table(EVENTS)?,
            retired: txn.open_table(RETIRED)?,
        })
    }

    /// Why `record` cannot be added, if it cannot: its digest is taken or was deleted, or its
    /// name is taken.
    fn conflict(&self, record: &TokenRecord) -> Result<Option<SkipReason>, StoreError> {
        if self.digests.get(record.digest.as_bytes())?.is_some() {
            return Ok(Some(SkipReason::DigestTaken));
        }
        if self.retired.get(record.digest.as_bytes())?.is_some() {
            return Ok(Some(SkipReason::Deleted));
        }
        if self.names.get(record.name.as_str())?.is_some() {
            return Ok(Some(SkipReason::NameTaken));
        }
        Ok(None)
    }

    /// Writes a record checked by `conflict`, with its event.
    fn insert(
        &mut self,
        record: &TokenRecord,
        action: EventAction,
        actor: &str,
    ) -> Result<Event, StoreError> {
        let id = record.id.as_str();
        if self.tokens.get(id)?.is_some() {
            // 80 random bits make this practically impossible; refuse rather than overwrite.
            return Err(StoreError::Corrupt(format!(
                "id {} already exists",
                record.id
            )));
        }
        let event = append_event(
            &mut self.events,
            record,
            action,
            record.created_at,
            actor,
            None,
        )?;
        let stored = match &mut self.revocations {
            Some(revocations) => {
                // Imported revoked (it was revoked where it comes from): the revocation is a row.
                let (stored, row) = encode_apart(record, event.seq);
                if let Some(row) = row {
                    revocations.insert(id, row.as_slice())?;
                }
                stored
            }
            None => encode_record(record, event.seq),
        };
        self.tokens.insert(id, stored.as_slice())?;
        self.digests.insert(record.digest.as_bytes(), id)?;
        self.names.insert(record.name.as_str(), id)?;
        self.created.insert(event.seq, id)?;
        Ok(event)
    }
}

fn append_event(
    events: &mut redb::Table<u64, &[u8]>,
    record: &TokenRecord,
    action: EventAction,
    at: UnixSeconds,
    actor: &str,
    reason: Option<&str>,
) -> Result<Event, StoreError> {
    let seq = events.last()?.map_or(0, |(k, _)| k.value()) + 1;
    let event = Event {
        seq,
        at,
        action,
        token_id: record.id,
        token_name: record.name.clone(),
        digest: record.digest,
        actor: actor.to_owned(),
        reason: reason.map(str::to_owned),
    };
    events.insert(seq, encode_event(&event).as_slice())?;
    Ok(event)
}

/// Opens with `open`, waiting (up to `ALONE_HOLD_WAIT`) while another process holds the file
/// alone.
pub(crate) fn open_waiting(
    path: &Path,
    open: impl Fn() -> Result<Database, redb::DatabaseError>,
) -> Result<Database, redb::DatabaseError> {
    let started = Instant::now();
    let mut said = false;
    loop {
        match open() {
            Err(redb::DatabaseError::DatabaseAlreadyOpen)
                if started.elapsed() < ALONE_HOLD_WAIT =>
            {
                if !said {
                    tracing::info!(
                        store = %path.display(),
                        "another process holds the store alone (a schema upgrade or a check); \
                         waiting for it"
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            opened => return opened,
        }
    }
}

/// Every write is durable when its commit returns: a change acknowledged to a client survives
/// `kill -9` and power loss. (redb's default, stated here so that it never changes by accident.)
fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Redb(e.into()))?;
    Ok(txn)
}

/// Checks the schema of the file open in `db`, migrates an older one, creates any missing table
/// and says where revocations are kept. `alone`: no other process has the file open, so a
/// schema-2 file may move to schema 3 (see `Store::open`).
fn prepare(db: &Database, path: &Path, alone: bool) -> Result<Layout, StoreError> {
    let txn = begin_write(db)?;
    let layout = {
        let mut meta = txn.open_table(META)?;
        let mut found = meta.get(SCHEMA_KEY)?.map(|v| v.value());
        if found == Some(1) {
            migrate_records_from_json(&txn)?;
            meta.insert(SCHEMA_KEY, REVOKED_IN_RECORDS)?;
            found = Some(REVOKED_IN_RECORDS);
        }
        let layout = match found {
            Some(SCHEMA_VERSION) => Layout::RevocationTable,
            Some(REVOKED_IN_RECORDS) if alone => {
                let moved = move_revocations_to_their_table(&txn)?;
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                tracing::warn!(
                    store = %path.display(),
                    revocations = moved,
                    "moved the store from schema {REVOKED_IN_RECORDS} to {SCHEMA_VERSION} \
                     (revocations in a table of their own); tollgate releases before 0.4 refuse \
                     it from now on"
                );
                Layout::RevocationTable
            }
            Some(REVOKED_IN_RECORDS) => Layout::RevokedInRecords,
            Some(found) => {
                return Err(StoreError::UnknownSchema {
                    path: path.to_owned(),
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            None => {
                // A fresh file: nothing but the meta table we just opened may exist.
                if txn.list_tables()?.any(|t| t.name() != "meta")
                    || txn.list_multimap_tables()?.next().is_some()
                {
                    return Err(StoreError::NotTollgate {
                        path: path.to_owned(),
                    });
                }
                meta.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
                Layout::RevocationTable
            }
        };
        // Create every table now so that readers never meet a missing one.
        txn.open_table(TOKENS)?;
        txn.open_table(DIGESTS)?;
        txn.open_table(NAMES)?;
        txn.open_table(CREATED)?;
        txn.open_table(EVENTS)?;
        txn.open_table(RETIRED)?;
        txn.open_table(shared::PEERS)?;
        if layout == Layout::RevocationTable {
            txn.open_table(REVOCATIONS)?;
        }
        layout
    };
    txn.commit()?;
    Ok(layout)
}

/// Schema 2 → 3: each revoked token's revocation leaves its record for a row of the
/// `revocations` table, inside the opening transaction: all or nothing. Returns how many moved.
fn move_revocations_to_their_table(txn: &WriteTransaction) -> Result<usize, StoreError> {
    let mut tokens = txn.open_table(TOKENS)?;
    let mut revocations = txn.open_table(REVOCATIONS)?;
    let mut moved = Vec::new();
    for entry in tokens.iter()? {
        let (id, value) = entry?;
        let corrupt = |e: String| {
            StoreError::Corrupt(format!(
                "token {}, while moving schema {REVOKED_IN_RECORDS} to {SCHEMA_VERSION}: {e}",
                id.value()
            ))
        };
        // Most tokens are not revoked: the view tells without decoding the whole record.
        let view = record_codec::decode_view(value.value()).map_err(corrupt)?;
        if !view.revoked {
            continue;
        }
        let (record, created_seq) = record_codec::decode(value.value()).map_err(corrupt)?;
        let (stored, row) = encode_apart(&record, created_seq);
        moved.push((
            id.value().to_owned(),
            stored,
            row.expect("the view said revoked"),
        ));
    }
    for (id, record, revocation) in &moved {
        tokens.insert(id.as_str(), record.as_slice())?;
        revocations.insert(id.as_str(), revocation.as_slice())?;
    }
    Ok(moved.len())
}

// ---- the stored forms: records and revocations in `record_codec`, events in JSON ----

fn encode_record(r: &TokenRecord, created_seq: u64) -> Vec<u8> {
    record_codec::encode(r, created_seq)
}

/// A record as schema 3 stores it: its bytes without the revocation, and the revocation's row
/// when it is revoked.
fn encode_apart(record: &TokenRecord, created_seq: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let Some(revoked_at) = record.revoked_at else {
        return (encode_record(record, created_seq), None);
    };
    let row = record_codec::encode_revocation(revoked_at, record.revoke_reason.as_deref());
    let mut unrevoked = record.clone();
    unrevoked.revoked_at = None;
    unrevoked.revoke_reason = None;
    (encode_record(&unrevoked, created_seq), Some(row))
}

/// Rewrites every record of a schema-1 file (JSON) in the binary form, inside the opening
/// transaction: all or nothing.
fn migrate_records_from_json(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut tokens = txn.open_table(TOKENS)?;
    let mut rewritten = Vec::new();
    for entry in tokens.iter()? {
        let (id, value) = entry?;
        let (record, created_seq) =
            record_codec::legacy::decode(value.value()).map_err(StoreError::Corrupt)?;
        rewritten.push((id.value().to_owned(), encode_record(&record, created_seq)));
    }
    for (id, bytes) in rewritten {
        tokens.insert(id.as_str(), bytes.as_slice())?;
    }
    Ok(())
}

fn decode_record(bytes: &[u8]) -> Result<(TokenRecord, u64), StoreError> {
    record_codec::decode(bytes).map_err(StoreError::Corrupt)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredEvent {
    at: i64,
    action: EventAction,
    token_id: String,
    token_name: String,
    digest: String,
    actor: String,
    reason: Option<String>,
}

fn encode_event(e: &Event) -> Vec<u8> {
    let stored = StoredEvent {
        at: e.at,
        action: e.action,
        token_id: e.token_id.to_string(),
        token_name: e.token_name.clone(),
        digest: e.digest.to_hex(),
        actor: e.actor.clone(),
        reason: e.reason.clone(),
    };
    serde_json::to_vec(&stored).expect("an event serialises")
}

fn decode_event(seq: u64, bytes: &[u8]) -> Result<Event, StoreError> {
    let s: StoredEvent =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("event {seq}: bad {what}"));
    Ok(Event {
        seq,
        at: s.at,
        action: s.action,
        token_id: TokenId::parse(&s.token_id).ok_or_else(|| corrupt("token id"))?,
        digest: TokenDigest::from_hex(&s.digest).ok_or_else(|| corrupt("digest"))?,
        token_name: s.token_name,
        actor: s.actor,
        reason: s.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenSecret, TokenSpec};

    fn record(name: &str, created_at: i64) -> TokenRecord {
        let secret = TokenSecret::generate();
        TokenRecord::issue(
            TokenId::generate(),
            TokenSpec::agent(name),
            &secret,
            created_at,
        )
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("nested/dir/tollgate.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn an_unknown_schema_version_is_refused_with_a_message() {
        let (dir, store) = open();
        let path = store.path().to_owned();
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        drop(store);
        let err = Store::open(&path).err().unwrap();
        assert!(matches!(err, StoreError::UnknownSchema { found: 99, .. }));
        assert!(err.to_string().contains("schema version 99"), "{err}");
        drop(dir);
    }

    #[test]
    fn loading_in_parallel_sees_every_token_once() {
        let (_dir, store) = open();
        let records: Vec<TokenRecord> = (0..500).map(|i| record(&format!("t{i}"), i)).collect();
        store.import(&records, "test").unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        store
            .load_all(|view| seen.lock().unwrap().push(view.id))
            .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        let mut want: Vec<TokenId> = records.iter().map(|r| r.id).collect();
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(TokenId::range_bounds(1), Vec::<String>::new());
        assert_eq!(TokenId::range_bounds(2), ["g"]);
    }

    #[test]
    fn a_schema_1_file_is_migrated_on_open() {
        let (dir, store) = open();
        let path = store.path().to_owned();
        let r = record("from-json", 5);
        store.create(&r, "test").unwrap();
        // Turn the file back into what schema 1 wrote: JSON records.
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(SCHEMA_KEY, 1).unwrap();
            txn.open_table(TOKENS)
                .unwrap()
                .insert(
                    r.id.as_str(),
                    record_codec::legacy::encode(&r, 1).as_slice(),
                )
                .unwrap();
            txn.commit().unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.get(&r.id).unwrap(), Some(r.clone()));
        let names = std::sync::Mutex::new(Vec::new());
        store
            .load_all(|view| names.lock().unwrap().push(view.name.to_owned()))
            .unwrap();
        assert_eq!(names.into_inner().unwrap(), ["from-json"]);
        let txn = store.db.begin_read().unwrap();
        let version = txn.open_table(META).unwrap().get(SCHEMA_KEY).unwrap();
        assert_eq!(version.map(|v| v.value()), Some(SCHEMA_VERSION));
        drop(dir);
    }

    /// Where the file keeps the revocation of `id`: (in its record, in the revocations table).
    fn stored_revocation(store: &Store, id: &TokenId) -> (Option<i64>, Option<i64>) {
        let txn = store.db.begin_read().unwrap();
        let tokens = txn.open_table(TOKENS).unwrap();
        let in_record = get_stored(&tokens, id)
            .unwrap()
            .and_then(|(r, _)| r.revoked_at);
        let in_table = match txn.open_table(REVOCATIONS) {
            Ok(table) => table
                .get(id.as_str())
                .unwrap()
                .map(|row| record_codec::decode_revocation(row.value()).unwrap().0),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => panic!("{e}"),
        };
        (in_record, in_table)
    }

    /// The ids a start loads as revoked, in order.
    fn revoked_at_load(store: &Store) -> Vec<TokenId> {
        let revoked = std::sync::Mutex::new(Vec::new());
        store
            .load_all(|view| {
                if view.revoked {
                    revoked.lock().unwrap().push(view.id);
                }
            })
            .unwrap();
        let mut revoked = revoked.into_inner().unwrap();
        revoked.sort();
        revoked
    }

    /// Turns a schema-3 file back into what schema 2 wrote: revocations in the records.
    fn back_to_schema_2(store: Store) -> PathBuf {
        let path = store.path().to_owned();
        let txn = store.db.begin_write().unwrap();
        {
            let mut tokens = txn.open_table(TOKENS).unwrap();
            let revocations = txn.open_table(REVOCATIONS).unwrap();
            for entry in revocations.iter().unwrap() {
                let (id, row) = entry.unwrap();
                let (at, reason) = record_codec::decode_revocation(row.value()).unwrap();
                let bytes = tokens.get(id.value()).unwrap().unwrap().value().to_vec();
                let (mut record, created_seq) = decode_record(&bytes).unwrap();
                record.revoked_at = Some(at);
                record.revoke_reason = reason;
                let bytes = encode_record(&record, created_seq);
                tokens.insert(id.value(), bytes.as_slice()).unwrap();
            }
        }
        txn.delete_table(REVOCATIONS).unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(SCHEMA_KEY, REVOKED_IN_RECORDS)
            .unwrap();
        txn.commit().unwrap();
        path
    }

    #[test]
    fn a_schema_2_file_keeps_its_layout_while_shared_and_moves_on_when_opened_alone() {
        let (_dir, store) = open();
        let (old, shared, active) = (record("old", 1), record("shared", 2), record("active", 3));
        store
            .import(&[old.clone(), shared.clone(), active.clone()], "test")
            .unwrap();
        store.revoke(&[old.id], Some("leaked"), "test", 10).unwrap();
        let path = back_to_schema_2(store);

        // An older release serving from the file reads revocations in the records only: while
        // it has the file open, a revoke is written there.
        let older = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .open(&path)
            .unwrap();
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version(), REVOKED_IN_RECORDS);
        store.revoke(&[shared.id], None, "test", 20).unwrap();
        assert_eq!(stored_revocation(&store, &shared.id), (Some(20), None));
        assert_eq!(store.get(&old.id).unwrap().unwrap().revoked_at, Some(10));
        // What an older release follows: the revoke's event, with the record revoked.
        let changes = store.changes_after(0, 100).unwrap();
        let last = changes.last().unwrap();
        assert_eq!(last.action, EventAction::Revoked);
        assert_eq!(last.record.as_ref().unwrap().revoked_at, Some(20));
        // A token imported revoked, and a revoked token deleted, the way older releases do.
        let mut imported = record("imported", 4);
        imported.revoked_at = Some(15);
        let gone = record("gone", 5);
        store
            .import(&[imported.clone(), gone.clone()], "test")
            .unwrap();
        store.revoke(&[gone.id], None, "test", 25).unwrap();
        store.delete(&[gone.id], "test", 30).unwrap();
        assert_eq!(stored_revocation(&store, &imported.id), (Some(15), None));
        let mut want = vec![old.id, shared.id, imported.id];
        want.sort();
        assert_eq!(revoked_at_load(&store), want);
        drop(store);
        drop(older);

        // Alone, the file moves to schema 3: every revocation leaves its record for a row.
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version(), SCHEMA_VERSION);
        for (token, at) in [(&old, 10), (&shared, 20), (&imported, 15)] {
            assert_eq!(stored_revocation(&store, &token.id), (None, Some(at)));
            assert_eq!(store.get(&token.id).unwrap().unwrap().revoked_at, Some(at));
        }
        // Writing a last-used time rewrites the record, and leaves the revocation where it is.
        store.record_last_used(&[(old.id, 50)]).unwrap();
        let old_used = store.get(&old.id).unwrap().unwrap();
        assert_eq!(
            (old_used.last_used_at, old_used.revoked_at),
            (Some(50), Some(10))
        );
        assert_eq!(stored_revocation(&store, &old.id), (None, Some(10)));
        let old_now = store.get(&old.id).unwrap().unwrap();
        assert_eq!(old_now.revoke_reason.as_deref(), Some("leaked"));
        assert_eq!(store.get(&active.id).unwrap(), Some(active.clone()));

        assert_eq!(revoked_at_load(&store), want);
        let listed = store
            .list(Some(TokenStatus::Revoked), None, 10, None, 100)
            .unwrap();
        let mut listed: Vec<TokenId> = listed.tokens.iter().map(|r| r.id).collect();
        listed.sort();
        assert_eq!(listed, want);
        let report = maintenance::check(&path, 100).unwrap();
        assert!(report.sound, "{report:?}");
        assert_eq!(report.schema_version, Some(SCHEMA_VERSION));
        assert_eq!((report.tokens.active, report.tokens.revoked), (1, 3));
    }

    #[test]
    fn a_revoke_adds_a_row_and_leaves_the_record_as_it_was() {
        let (_dir, store) = open();
        let (a, mut b) = (record("a", 1), record("b", 2));
        b.revoked_at = Some(5);
        b.revoke_reason = Some("revoked where it comes from".into());
        store.import(&[a.clone(), b.clone()], "test").unwrap();
        assert_eq!(stored_revocation(&store, &b.id), (None, Some(5)));
        assert_eq!(store.get(&b.id).unwrap(), Some(b.clone()));

        let stored_bytes = |id: &TokenId| {
            let txn = store.db.begin_read().unwrap();
            let tokens = txn.open_table(TOKENS).unwrap();
            tokens.get(id.as_str()).unwrap().map(|v| v.value().to_vec())
        };
        let before = stored_bytes(&a.id);
        let outcome = store.revoke(&[a.id, b.id], Some("r"), "test", 10).unwrap();
        assert_eq!(outcome.revoked[0].revoked_at, Some(10));
        assert_eq!(outcome.already_revoked[0].revoked_at, Some(5));
        assert_eq!(stored_bytes(&a.id), before);
        assert_eq!(stored_revocation(&store, &a.id), (None, Some(10)));
        let changes = store.changes_after(0, 10).unwrap();
        let revoked_change = changes
            .iter()
            .find(|c| c.action == EventAction::Revoked)
            .unwrap();
        let followed = revoked_change.record.as_ref().unwrap();
        assert_eq!(followed.revoke_reason.as_deref(), Some("r"));

        let outcome = store.delete(&[a.id, b.id], "test", 20).unwrap();
        assert_eq!(outcome.deleted[1].revoked_at, Some(5));
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(REVOCATIONS).unwrap().len().unwrap(), 0);
        drop(txn);
        let report = maintenance::check(store.path(), 100).unwrap();
        assert!(report.sound, "{report:?}");
    }

    #[test]
    fn a_damaged_revocation_still_revokes_and_stops_no_follower() {
        let (_dir, store) = open();
        let (a, b) = (record("a", 1), record("b", 2));
        store.import(&[a.clone(), b.clone()], "test").unwrap();
        store.revoke(&[a.id, b.id], None, "test", 10).unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(REVOCATIONS)
                .unwrap()
                .insert(a.id.as_str(), &[7u8][..])
                .unwrap();
            txn.commit().unwrap();
        }
        assert_eq!(store.get(&a.id).unwrap().unwrap().revoked_at, Some(0));
        let changes = store.changes_after(0, 10).unwrap();
        assert_eq!(changes.len(), 4);
        assert!(
            changes
                .iter()
                .all(|c| c.record.as_ref().unwrap().revoked_at.is_some()
                    || c.action != EventAction::Revoked)
        );
        // And it can be deleted, row and all.
        store.delete(&[a.id], "test", 20).unwrap();
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(REVOCATIONS).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn an_open_waits_while_another_process_holds_the_file_alone() {
        let (_dir, store) = open();
        let path = store.path().to_owned();
        drop(store);
        let alone = Database::open(&path).unwrap();
        let (held, release) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(alone);
            held.send(()).unwrap();
        });
        let store = Store::open(&path).unwrap();
        // It opened only once the holder let go.
        release.try_recv().unwrap();
        assert_eq!(store.schema_version(), SCHEMA_VERSION);
        holder.join().unwrap();
    }

    #[test]
    fn names_and_digests_are_unique() {
        let (_dir, store) = open();
        let a = record("a", 1);
        store.create(&a, "test").unwrap();
        let mut clash = record("a", 2);
        assert!(matches!(
            store.create(&clash, "test"),
            Err(StoreError::NameTaken(_))
        ));
        clash.name = "b".into();
        clash.digest = a.digest;
        assert!(matches!(
            store.create(&clash, "test"),
            Err(StoreError::DigestTaken)
        ));
        // Deleting frees the name.
        store.delete(&[a.id], "test", 5).unwrap();
        store.create(&record("a", 6), "test").unwrap();
    }

    #[test]
    fn import_skips_what_is_present_in_the_store_or_the_batch() {
        let (_dir, store) = open();
        let stored = record("stored", 1);
        store.create(&stored, "test").unwrap();
        let fresh = record("fresh", 2);
        let same_name = record("stored", 2);
        let mut same_digest = record("other", 2);
        same_digest.digest = stored.digest;
        let mut repeated = record("fresh", 2);
        repeated.digest = fresh.digest;
        let outcome = store
            .import(&[fresh.clone(), same_name, same_digest, repeated], "ops")
            .unwrap();
        assert_eq!(outcome.imported, std::slice::from_ref(&fresh));
        assert_eq!(
            outcome.skipped,
            [
                ("stored".to_string(), SkipReason::NameTaken),
                ("other".to_string(), SkipReason::DigestTaken),
                ("fresh".to_string(), SkipReason::DigestTaken),
            ]
        );
        assert_eq!(outcome.events.len(), 1);
        assert_eq!(outcome.events[0].action, EventAction::Imported);
        assert_eq!(store.get(&fresh.id).unwrap(), Some(fresh));
        let loaded = std::sync::atomic::AtomicUsize::new(0);
        store
            .load_all(|_| {
                loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(loaded.into_inner(), 2);

        // A deleted token stays deleted.
        store.delete(&[stored.id], "ops", 3).unwrap();
        let mut again = record("again", 4);
        again.digest = stored.digest;
        let outcome = store.import(&[again], "ops").unwrap();
        assert_eq!(
            outcome.skipped,
            [("again".to_string(), SkipReason::Deleted)]
        );
    }

    #[test]
    fn bulk_revoke_reports_each_id_and_logs_events() {
        let (_dir, store) = open();
        let (a, b) = (record("a", 1), record("b", 2));
        store.create(&a, "test").unwrap();
        store.create(&b, "test").unwrap();
        store.revoke(&[b.id], Some("first"), "test", 10).unwrap();
        let unknown = TokenId::generate();
        let outcome = store
            .revoke(&[a.id, b.id, unknown, a.id], Some("second"), "ops", 20)
            .unwrap();
        assert_eq!(
            outcome.revoked.iter().map(|r| r.id).collect::<Vec<_>>(),
            [a.id]
        );
        assert_eq!(outcome.already_revoked[0].revoked_at, Some(10));
        assert_eq!(
            outcome.already_revoked[0].revoke_reason.as_deref(),
            Some("first")
        );
        assert_eq!(outcome.not_found, [unknown]);
        let events = store.events(10, None, None).unwrap();
        let actions: Vec<_> = events.iter().map(|e| (e.action, e.token_id)).collect();
        assert_eq!(
            actions,
            [
                (EventAction::Revoked, a.id),
                (EventAction::Revoked, b.id),
                (EventAction::Created, b.id),
                (EventAction::Created, a.id),
            ]
        );
        assert_eq!(events[0].actor, "ops");
        assert_eq!(events[0].reason.as_deref(), Some("second"));
    }

    #[test]
    fn delete_removes_the_record_and_its_digest() {
        let (_dir, store) = open();
        let a = record("a", 1);
        store.create(&a, "test").unwrap();
        let outcome = store.delete(&[a.id, a.id], "test", 3).unwrap();
        assert_eq!(outcome.deleted.len(), 1);
        assert_eq!(store.get(&a.id).unwrap(), None);
        let seen = std::sync::atomic::AtomicUsize::new(0);
        store
            .load_all(|_| {
                seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
            .unwrap();
        assert_eq!(seen.into_inner(), 0);
        let txn = store.db.begin_read().unwrap();
        assert!(
            txn.open_table(DIGESTS)
                .unwrap()
                .get(a.digest.as_bytes())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn listing_pages_newest_first_and_filters() {
        let (_dir, store) = open();
        let records: Vec<_> = (0..7)
            .map(|i| record(&format!("t{i}"), 100 + i / 2))
            .collect();
        for r in &records {
            store.create(r, "test").unwrap();
        }
        store.revoke(&[records[3].id], None, "test", 200).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list(None, None, 3, after, 300).unwrap();
            seen.extend(page.tokens.iter().map(|r| r.name.clone()));
            // Deleting the cursor's token between pages loses nothing after it.
            if seen.len() == 3 {
                store.delete(&[records[4].id], "test", 250).unwrap();
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]);
        let revoked = store
            .list(Some(TokenStatus::Revoked), None, 10, None, 300)
            .unwrap();
        assert_eq!(revoked.tokens.len(), 1);
        assert_eq!(revoked.tokens[0].id, records[3].id);
        assert_eq!(revoked.next, None);
    }

    #[test]
    fn listing_by_name_ignores_case_and_pages_with_the_cursor() {
        let (_dir, store) = open();
        let names = ["east-1", "West-1", "EAST-2", "north", "east-3", "Beast"];
        let records: Vec<_> = names.iter().map(|n| record(n, 100)).collect();
        for r in &records {
            store.create(r, "test").unwrap();
        }
        store.revoke(&[records[2].id], None, "test", 200).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = store.list(None, Some("EaSt"), 2, after, 300).unwrap();
            assert!(page.tokens.len() <= 2);
            seen.extend(page.tokens.iter().map(|r| r.name.clone()));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, ["Beast", "east-3", "EAST-2", "east-1"]);
        // Name and status filters combine.
        let revoked = store
            .list(Some(TokenStatus::Revoked), Some("east"), 10, None, 300)
            .unwrap();
        assert_eq!(revoked.tokens.len(), 1);
        assert_eq!(revoked.tokens[0].name, "EAST-2");
        let none = store.list(None, Some("south"), 10, None, 300).unwrap();
        assert!(none.tokens.is_empty());
        assert_eq!(none.next, None);
    }

    #[test]
    fn events_of_one_token() {
        let (_dir, store) = open();
        let (a, b) = (record("a", 1), record("b", 2));
        store.create(&a, "test").unwrap();
        store.create(&b, "test").unwrap();
        store
            .revoke(&[a.id, b.id], Some("gone"), "test", 3)
            .unwrap();
        store.delete(&[a.id], "test", 4).unwrap();
        let of_a: Vec<_> = store
            .events(10, None, Some(&a.id))
            .unwrap()
            .iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(
            of_a,
            [
                EventAction::Deleted,
                EventAction::Revoked,
                EventAction::Created
            ]
        );
        let limited = store.events(1, None, Some(&b.id)).unwrap();
        assert_eq!(limited.len(), 1);
        assert_eq!(limited[0].action, EventAction::Revoked);
        assert!(
            store
                .events(10, None, Some(&TokenId::generate()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn last_used_never_moves_back_and_skips_deleted_tokens() {
        let (_dir, store) = open();
        let (a, b) = (record("a", 1), record("b", 1));
        store.create(&a, "test").unwrap();
        store.create(&b, "test").unwrap();
        store.delete(&[b.id], "test", 2).unwrap();
        store.record_last_used(&[(a.id, 50), (b.id, 50)]).unwrap();
        store.record_last_used(&[(a.id, 40)]).unwrap();
        assert_eq!(store.get(&a.id).unwrap().unwrap().last_used_at, Some(50));
        assert_eq!(store.get(&b.id).unwrap(), None);
    }
}
