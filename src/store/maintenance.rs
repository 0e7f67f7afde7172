//! Store maintenance: a consistent backup taken while servers run, and a check of a store file.
//!
//! A backup is one read transaction over the source, copied table by table into a new file
//! beside the target, committed durably, then renamed into place: the target is either absent or
//! a whole store, never half a file. A check verifies redb's pages, then reads every table in one
//! read transaction: the schema version, every record and event decodes, the indexes and the
//! records agree, and it counts what is there.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, MultimapTableHandle, ReadTransaction,
    ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError, TableDefinition,
    TableError, TableHandle,
};
use serde::Serialize;

use super::shared::PEERS;
use super::{
    CREATED, DIGESTS, EVENTS, EventAction, META, NAMES, RETIRED, REVOCATIONS, REVOKED_IN_RECORDS,
    SCHEMA_KEY, SCHEMA_VERSION, STORE_CACHE_BYTES, StoreError, TOKENS, decode_event, record_codec,
};
use crate::time::UnixSeconds;
use crate::token::{TokenRecord, TokenStatus};

/// The names of every table of the layout. A file with another table was written by a release
/// that knows more than this one: copying or checking it without that table would mislead.
fn known_tables(schema: u64) -> Vec<&'static str> {
    let mut known = vec![
        PEERS.name(),
        META.name(),
        TOKENS.name(),
        DIGESTS.name(),
        NAMES.name(),
        CREATED.name(),
        EVENTS.name(),
        RETIRED.name(),
    ];
    if schema >= SCHEMA_VERSION {
        known.push(REVOCATIONS.name());
    }
    known
}

/// The most problems a check lists; it counts the rest.
const MAX_PROBLEMS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("no store file at {0}")]
    Missing(PathBuf),
    #[error("cannot open {path} as a store")]
    Open {
        path: PathBuf,
        source: DatabaseError,
    },
    #[error("{path} is damaged: redb's page check failed: {message}")]
    Damaged { path: PathBuf, message: String },
    #[error(
        "the store {path} has a table {table:?} that this tollgate does not know; use the \
         tollgate release that wrote it"
    )]
    UnknownTable { path: PathBuf, table: String },
    #[error("{0} exists; a backup replaces a file only when told to (--force)")]
    TargetExists(PathBuf),
    #[error("{0} is the store itself; a backup goes to another file")]
    TargetIsSource(PathBuf),
    #[error("cannot write the backup {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot write the backup {path}")]
    WriteStore { path: PathBuf, source: redb::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a backup wrote.
#[derive(Debug, Serialize)]
pub struct BackupReport {
    pub path: PathBuf,
    pub schema_version: u64,
    pub tokens: u64,
    pub events: u64,
    /// The sequence number of the last event copied: every change up to it is in the backup.
    pub last_event: Option<u64>,
    pub retired: u64,
    pub bytes: u64,
}

/// Writes a consistent copy of the store at `source` to `target`. Refuses an existing `target`
/// unless `replace`, and never `source` itself. Servers may keep running on `source`: the copy
/// is one read transaction, so it holds every change committed before it began and none half.
pub fn backup(
    source: &Path,
    target: &Path,
    replace: bool,
) -> Result<BackupReport, MaintenanceError> {
    let db = open_shared(source)?;
    match fs::metadata(target) {
        Ok(_) if is_same_file(source, target) => {
            return Err(MaintenanceError::TargetIsSource(target.to_owned()));
        }
        Ok(_) if !replace => return Err(MaintenanceError::TargetExists(target.to_owned())),
        _ => {}
    }
    let write_err = |source| MaintenanceError::Write {
        path: target.to_owned(),
        source,
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(write_err)?;
    let partial = Partial::create(&dir, target).map_err(write_err)?;

    let txn = db.begin_read().map_err(StoreError::from)?;
    let schema_version = copyable_schema(&txn, source)?;
    let store_err = |e: redb::Error| MaintenanceError::WriteStore {
        path: target.to_owned(),
        source: e,
    };
    let copy = Database::builder()
        .set_cache_size(STORE_CACHE_BYTES)
        .create(partial.path())
        .map_err(|e| store_err(e.into()))?;
    let mut out = copy.begin_write().map_err(|e| store_err(e.into()))?;
    out.set_durability(Durability::Immediate)
        .map_err(|e| store_err(e.into()))?;
    copy_table(&txn, &out, META).map_err(store_err)?;
    let tokens = copy_table(&txn, &out, TOKENS).map_err(store_err)?;
    copy_table(&txn, &out, DIGESTS).map_err(store_err)?;
    copy_table(&txn, &out, NAMES).map_err(store_err)?;
    copy_table(&txn, &out, CREATED).map_err(store_err)?;
    let events = copy_table(&txn, &out, EVENTS).map_err(store_err)?;
    let retired = copy_table(&txn, &out, RETIRED).map_err(store_err)?;
    // The copy has the source's layout: an older release restores an older schema's backup.
    if schema_version == SCHEMA_VERSION {
        copy_table(&txn, &out, REVOCATIONS).map_err(store_err)?;
    }
    // The serving processes are the source's, not the copy's: a restored file starts with none.
    out.open_table(PEERS).map_err(|e| store_err(e.into()))?;
    let last_event = last_event(&txn)?;
    drop(txn);
    out.commit().map_err(|e| store_err(e.into()))?;
    copy.close().map_err(|e| store_err(e.into()))?;
    drop(db);
    // The copy is as private as the store it copies (set once written: it may be read-only).
    if let Ok(meta) = fs::metadata(source) {
        fs::set_permissions(partial.path(), meta.permissions()).map_err(write_err)?;
    }
    let bytes = partial.publish(target, replace)?;
    Ok(BackupReport {
        path: target.to_owned(),
        schema_version,
        tokens,
        events,
        last_event,
        retired,
        bytes,
    })
}

/// Opens an existing store file as every tollgate process does (multi-writer mode, so that
/// servers on it keep running), without creating or migrating anything.
fn open_shared(path: &Path) -> Result<Database, MaintenanceError> {
    if !path.try_exists().unwrap_or(true) {
        return Err(MaintenanceError::Missing(path.to_owned()));
    }
    super::open_waiting(path, || {
        Database::builder()
            .set_cache_size(STORE_CACHE_BYTES)
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .open(path)
    })
    .map_err(|source| open_error(path, source))
}

fn open_error(path: &Path, source: DatabaseError) -> MaintenanceError {
    match source {
        DatabaseError::Storage(StorageError::Corrupted(message)) => MaintenanceError::Damaged {
            path: path.to_owned(),
            message,
        },
        source => MaintenanceError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

/// The schema version of a store this build can copy (its own, or one it migrates), refusing
/// anything else.
fn copyable_schema(txn: &ReadTransaction, path: &Path) -> Result<u64, MaintenanceError> {
    let version = match schema_version(txn)? {
        Some(version @ (1 | REVOKED_IN_RECORDS | SCHEMA_VERSION)) => version,
        Some(found) => {
            return Err(StoreError::UnknownSchema {
                path: path.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            }
            .into());
        }
        None => {
            return Err(StoreError::NotTollgate {
                path: path.to_owned(),
            }
            .into());
        }
    };
    let unknown = unknown_tables(txn, version).map_err(StoreError::from)?;
    if let Some(table) = unknown.into_iter().next() {
        return Err(MaintenanceError::UnknownTable {
            path: path.to_owned(),
            table,
        });
    }
    Ok(version)
}

fn schema_version(txn: &ReadTransaction) -> Result<Option<u64>, StoreError> {
    match txn.open_table(META) {
        Ok(meta) => Ok(meta.get(SCHEMA_KEY)?.map(|v| v.value())),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn last_event(txn: &ReadTransaction) -> Result<Option<u64>, StoreError> {
    match txn.open_table(EVENTS) {
        Ok(events) => Ok(events.last()?.map(|(seq, _)| seq.value())),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Tables (and multimap tables) that are not part of the layout.
fn unknown_tables(txn: &ReadTransaction, schema: u64) -> Result<Vec<String>, StorageError> {
    let known = known_tables(schema);
    Ok(txn
        .list_tables()?
        .map(|t| t.name().to_owned())
        .chain(txn.list_multimap_tables()?.map(|t| t.name().to_owned()))
        .filter(|name| !known.contains(&name.as_str()))
        .collect())
}

/// Copies one table, as stored, into the new file (creating it there even when the source has
/// none, so that a backup always has the whole layout). Returns how many entries it copied.
fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    from: &ReadTransaction,
    to: &redb::WriteTransaction,
    definition: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let mut target = to.open_table(definition)?;
    let source = match from.open_table(definition) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut copied = 0;
    // Key order: each page of the new B-tree is filled once.
    for entry in source.iter()? {
        let (key, value) = entry?;
        target.insert(key.value(), value.value())?;
        copied += 1;
    }
    Ok(copied)
}

fn is_same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// The backup while it is written: a file beside the target under a name of its own, removed
/// unless it is published.
struct Partial {
    path: PathBuf,
    dir: PathBuf,
    published: bool,
}

impl Partial {
    fn create(dir: &Path, target: &Path) -> io::Result<Partial> {
        let name = target
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?
            .to_string_lossy()
            .into_owned();
        let mut salt = [0u8; 4];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        let salt: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!(".{name}.{}-{salt}.partial", std::process::id()));
        // Reserve the name: redb initialises an empty file, but would open a stale one. Private
        // from the first byte: it holds every token's name, digest and audit trail.
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Partial {
            path,
            dir: dir.to_owned(),
            published: false,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the finished file durable and gives it the target's name in one step. Without
    /// `replace` the name is taken with a hard link, which fails rather than replace a file that
    /// appeared meanwhile. Returns the file's size.
    fn publish(mut self, target: &Path, replace: bool) -> Result<u64, MaintenanceError> {
        let write_err = |source| MaintenanceError::Write {
            path: target.to_owned(),
            source,
        };
        let file = File::open(&self.path).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        let bytes = file.metadata().map_err(write_err)?.len();
        if replace {
            fs::rename(&self.path, target).map_err(write_err)?;
        } else {
            match fs::hard_link(&self.path, target) {
                Ok(()) => fs::remove_file(&self.path).map_err(write_err)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(MaintenanceError::TargetExists(target.to_owned()));
                }
                // A filesystem without hard links: check, then rename.
                Err(_) if target.try_exists().map_err(write_err)? => {
                    return Err(MaintenanceError::TargetExists(target.to_owned()));
                }
                Err(_) => fs::rename(&self.path, target).map_err(write_err)?,
            }
        }
        self.published = true;
        // The new name is durable once the directory is.
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(write_err)?;
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.path);
        }
    }
}

// ---- check ----

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub path: PathBuf,
    /// Whether the file passed: no problem found.
    pub sound: bool,
    /// Another process (a server) had the file open during the check.
    pub in_use: bool,
    /// The schema version found, if any.
    pub schema_version: Option<u64>,
    pub tokens: TokenCounts,
    pub events: u64,
    pub last_event: Option<u64>,
    /// Digests of deleted tokens, kept so that an import cannot bring one back.
    pub retired: u64,
    /// What is worth knowing but is no fault.
    pub notes: Vec<String>,
    /// The first problems found, one line each.
    pub problems: Vec<String>,
    /// How many problems were found, listed or not.
    pub problem_count: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct TokenCounts {
    pub total: u64,
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
}

impl CheckReport {
    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

/// Checks the store file at `path`, with token statuses as of `now`. An `Err` is a file that
/// cannot be checked at all (missing, not a redb file, pages damaged); anything else is listed
/// in the report.
///
/// redb's page check needs the writer's lock. A file no process has open is opened exclusively
/// and checked on open (a server starting meanwhile is refused until the check ends). A file in
/// use is checked beside its users: their writes wait for the page check, their reads do not.
pub fn check(path: &Path, now: UnixSeconds) -> Result<CheckReport, MaintenanceError> {
    if !path.try_exists().unwrap_or(true) {
        return Err(MaintenanceError::Missing(path.to_owned()));
    }
    let mut report = CheckReport {
        path: path.to_owned(),
        ..CheckReport::default()
    };
    let exclusive = Database::builder()
        .set_cache_size(STORE_CACHE_BYTES)
        .set_check_integrity_on_open(true)
        .open(path);
    let db = match exclusive {
        Ok(db) => db,
        Err(DatabaseError::DatabaseAlreadyOpen) => {
            report.in_use = true;
            let mut db = open_shared(path)?;
            match db.check_integrity() {
                Ok(true) => {}
                // Normal beside other writers: one of them committed without recording its
                // allocations (a crash repair does), which the check records now.
                Ok(false) => report
                    .notes
                    .push("redb rebuilt its record of free pages; the data was intact".to_owned()),
                Err(e) => return Err(open_error(path, e)),
            }
            db
        }
        Err(e) => return Err(open_error(path, e)),
    };
    let txn = db.begin_read().map_err(StoreError::from)?;
    check_contents(&txn, now, &mut report)?;
    report.sound = report.problem_count == 0;
    Ok(report)
}

type Decode = fn(&[u8]) -> Result<(TokenRecord, u64), String>;

/// Opens a table of the layout, or notes the problem and gives `None`.
macro_rules! table_or_problem {
    ($txn:expr, $def:expr, $report:expr) => {
        match $txn.open_table($def) {
            Ok(table) => Some(table),
            Err(TableError::TableDoesNotExist(_)) => {
                $report.problem(format!("the {} table is missing", $def.name()));
                None
            }
            Err(e) => {
                $report.problem(format!("the {} table cannot be read: {e}", $def.name()));
                None
            }
        }
    };
}

fn check_contents(
    txn: &ReadTransaction,
    now: UnixSeconds,
    report: &mut CheckReport,
) -> Result<(), StoreError> {
    report.schema_version = schema_version(txn)?;
    let decode: Decode = match report.schema_version {
        Some(SCHEMA_VERSION) => record_codec::decode,
        Some(REVOKED_IN_RECORDS) => {
            report.notes.push(format!(
                "schema {REVOKED_IN_RECORDS} (tollgate 0.2 and 0.3): this tollgate moves it to \
                 {SCHEMA_VERSION} when it opens the file with no other process on it"
            ));
            record_codec::decode
        }
        Some(1) => {
            report.notes.push(format!(
                "schema 1 (tollgate 0.1.0): this tollgate migrates it on its first open, to \
                 {REVOKED_IN_RECORDS}, and on to {SCHEMA_VERSION} when no other process has it \
                 open"
            ));
            record_codec::legacy::decode
        }
        Some(found) => {
            report.problem(format!(
                "schema version {found}: this tollgate reads version {SCHEMA_VERSION} (and \
                 migrates 1 and {REVOKED_IN_RECORDS}); check it with the release that wrote it"
            ));
            return Ok(());
        }
        None => {
            report.problem("not a tollgate store: it has no schema version".to_owned());
            return Ok(());
        }
    };
    let schema = report.schema_version.unwrap_or(SCHEMA_VERSION);
    for table in unknown_tables(txn, schema)? {
        report.problem(format!("unknown table {table:?}"));
    }
    let tables = (
        table_or_problem!(txn, TOKENS, report),
        table_or_problem!(txn, DIGESTS, report),
        table_or_problem!(txn, NAMES, report),
        table_or_problem!(txn, CREATED, report),
        table_or_problem!(txn, EVENTS, report),
        table_or_problem!(txn, RETIRED, report),
    );
    let (Some(tokens), Some(digests), Some(names), Some(created), Some(events), Some(retired)) =
        tables
    else {
        return Ok(());
    };

    // Schema 3 keeps revocations in their own table; before, the records held them.
    let revocations = if report.schema_version == Some(SCHEMA_VERSION) {
        let Some(revocations) = table_or_problem!(txn, REVOCATIONS, report) else {
            return Ok(());
        };
        Some(revocations)
    } else {
        None
    };

    // Every record decodes, and each index leads from the record's key back to it.
    let mut revocation_rows = 0;
    let mut revoked_ids = std::collections::HashSet::new();
    for entry in tokens.iter()? {
        let (key, value) = entry?;
        let key = key.value();
        let (mut record, created_seq) = match decode(value.value()) {
            Ok(decoded) => decoded,
            Err(e) => {
                report.problem(format!("token {key}: the record does not decode: {e}"));
                continue;
            }
        };
        if record.id.as_str() != key {
            report.problem(format!("token {key}: its record says id {}", record.id));
        }
        if let Some(revocations) = &revocations {
            if record.revoked_at.is_some() {
                report.problem(format!(
                    "token {key}: its record holds a revocation, which schema \
                     {SCHEMA_VERSION} keeps in the revocations table"
                ));
            }
            if let Some(row) = revocations.get(key)? {
                revocation_rows += 1;
                match record_codec::decode_revocation(row.value()) {
                    Ok((at, reason)) => {
                        record.revoked_at = Some(at);
                        record.revoke_reason = reason;
                    }
                    Err(e) => {
                        report.problem(format!("token {key}: its revocation does not decode: {e}"));
                        // Counted as the servers treat it: revoked.
                        record.revoked_at = Some(0);
                    }
                }
            }
        }
        if record.revoked_at.is_some() {
            revoked_ids.insert(record.id);
        }
        report.tokens.total += 1;
        match record.status(now) {
            TokenStatus::Active => report.tokens.active += 1,
            TokenStatus::Revoked => report.tokens.revoked += 1,
            TokenStatus::Expired => report.tokens.expired += 1,
        }
        let indexed = |found: Option<redb::AccessGuard<'_, &str>>, index: &str| match found {
            Some(id) if id.value() == key => None,
            Some(id) => Some(format!(
                "token {key}: the {index} index leads to token {}",
                id.value()
            )),
            None => Some(format!("token {key}: missing from the {index} index")),
        };
        let found = [
            indexed(digests.get(record.digest.as_bytes())?, "digest"),
            indexed(names.get(record.name.as_str())?, "name"),
            indexed(created.get(created_seq)?, "creation"),
        ];
        for problem in found.into_iter().flatten() {
            report.problem(problem);
        }
        if let Some(event) = events.get(created_seq)? {
            let creation = decode_event(created_seq, event.value()).ok().filter(|e| {
                e.token_id == record.id
                    && matches!(e.action, EventAction::Created | EventAction::Imported)
            });
            if creation.is_none() {
                report.problem(format!(
                    "token {key}: event {created_seq} is not its creation"
                ));
            }
        }
        if retired.get(record.digest.as_bytes())?.is_some() {
            report.problem(format!("token {key}: its digest is listed as deleted"));
        }
    }

    // Each token has its own entry in each index (checked above), so an index with more entries
    // than there are tokens holds strays: find them.
    let decoded = |id: &str| -> Result<Option<TokenRecord>, StorageError> {
        Ok(tokens
            .get(id)?
            .and_then(|v| decode(v.value()).ok())
            .map(|(r, _)| r))
    };
    if digests.len()? > report.tokens.total {
        for entry in digests.iter()? {
            let (digest, id) = entry?;
            if decoded(id.value())?.is_none_or(|r| r.digest.as_bytes() != digest.value()) {
                report.problem(format!(
                    "the digest index holds an entry for token {} that is not its digest",
                    id.value()
                ));
            }
        }
    }
    if names.len()? > report.tokens.total {
        for entry in names.iter()? {
            let (name, id) = entry?;
            if decoded(id.value())?.is_none_or(|r| r.name != name.value()) {
                report.problem(format!(
                    "the name index holds {:?} for token {}, which has another name or none",
                    name.value(),
                    id.value()
                ));
            }
        }
    }
    if created.len()? > report.tokens.total {
        for entry in created.iter()? {
            let (seq, id) = entry?;
            if decoded(id.value())?.is_none() {
                report.problem(format!(
                    "the creation index holds sequence {} for token {}, which does not exist",
                    seq.value(),
                    id.value()
                ));
            }
        }
    }

    // Each revocation belongs to a token (a delete removes both). More rows than the tokens
    // found with one means strays: find them.
    if let Some(revocations) = &revocations
        && revocations.len()? > revocation_rows
    {
        for entry in revocations.iter()? {
            let (id, _) = entry?;
            if tokens.get(id.value())?.is_none() {
                report.problem(format!(
                    "the revocations table holds token {}, which does not exist",
                    id.value()
                ));
            }
        }
    }

    // The change log: every event decodes, in one unbroken sequence. Revocation is for good:
    // a token the log says was revoked is revoked still, unless deleted since.
    let mut previous: Option<u64> = None;
    for entry in events.iter()? {
        let (seq, value) = entry?;
        let seq = seq.value();
        match decode_event(seq, value.value()) {
            Err(e) => report.problem(format!("event {seq} does not decode: {e}")),
            Ok(event)
                if event.action == EventAction::Revoked
                    && !revoked_ids.contains(&event.token_id)
                    && tokens.get(event.token_id.as_str())?.is_some() =>
            {
                report.problem(format!(
                    "token {}: event {seq} revoked it, but it is not revoked",
                    event.token_id
                ));
            }
            Ok(_) => {}
        }
        if let Some(previous) = previous.filter(|p| seq != p + 1) {
            report.problem(format!(
                "the change log jumps from event {previous} to {seq}"
            ));
        }
        previous = Some(seq);
        report.events += 1;
    }
    report.last_event = previous;

    // A deleted token's digest is free of any token, and its event is its deletion.
    for entry in retired.iter()? {
        let (digest, seq) = entry?;
        let (digest, seq) = (*digest.value(), seq.value());
        report.retired += 1;
        if let Some(id) = digests.get(&digest)? {
            report.problem(format!(
                "the digest of a token deleted at event {seq} is in use again, by token {}",
                id.value()
            ));
        }
        let deletion = events
            .get(seq)?
            .and_then(|e| decode_event(seq, e.value()).ok())
            .filter(|e| e.action == EventAction::Deleted && *e.digest.as_bytes() == digest);
        if deletion.is_none() {
            report.problem(format!(
                "a deleted token's digest names event {seq}, which is not its deletion"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;
    use crate::token::{TokenId, TokenSecret, TokenSpec};

    const NOW: UnixSeconds = 2_000_000_000;

    fn record(name: &str) -> TokenRecord {
        TokenRecord::issue(
            TokenId::generate(),
            TokenSpec::agent(name),
            &TokenSecret::generate(),
            NOW - 100,
        )
    }

    /// A store with an active, a revoked, an expired and a deleted token.
    fn populated(dir: &Path) -> (Store, Vec<TokenRecord>) {
        let store = Store::open(&dir.join("tollgate.redb")).unwrap();
        let mut expired = record("expired");
        expired.expires_at = Some(NOW - 1);
        let records = vec![record("active"), record("revoked"), expired, record("gone")];
        store.import(&records, "test").unwrap();
        store.revoke(&[records[1].id], None, "test", NOW).unwrap();
        store.delete(&[records[3].id], "test", NOW).unwrap();
        (store, records)
    }

    fn listing(path: &Path) -> Vec<TokenRecord> {
        let store = Store::open(path).unwrap();
        let mut tokens = store.list(None, None, 100, None, NOW).unwrap().tokens;
        tokens.sort_by(|a, b| a.name.cmp(&b.name));
        tokens
    }

    #[test]
    fn a_backup_is_a_sound_copy_with_every_table() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = populated(dir.path());
        let target = dir.path().join("backups/today/copy.redb");
        let report = backup(store.path(), &target, false).unwrap();
        assert_eq!(
            (report.tokens, report.events, report.retired),
            (3, 6, 1),
            "{report:?}"
        );
        assert_eq!(report.last_event, Some(6));
        assert_eq!(report.schema_version, SCHEMA_VERSION);

        let checked = check(&target, NOW).unwrap();
        assert!(checked.sound, "{checked:?}");
        assert!(!checked.in_use);
        assert_eq!(
            (
                checked.tokens.active,
                checked.tokens.revoked,
                checked.tokens.expired
            ),
            (1, 1, 1)
        );
        assert_eq!((checked.events, checked.retired), (6, 1));
        assert_eq!(listing(&target), listing(store.path()));
        // The copy refuses the deleted token's digest as the original does.
        let events = Store::open(&target)
            .unwrap()
            .events(10, None, None)
            .unwrap();
        assert_eq!(events.len(), 6);
        // Nothing but the backup was left in its directory.
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["copy.redb"]);
    }

    #[test]
    fn a_backup_replaces_a_file_only_when_told_and_never_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = populated(dir.path());
        let target = dir.path().join("copy.redb");
        fs::write(&target, b"keep me").unwrap();
        let err = backup(store.path(), &target, false).unwrap_err();
        assert!(matches!(err, MaintenanceError::TargetExists(_)), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        backup(store.path(), &target, true).unwrap();
        assert!(check(&target, NOW).unwrap().sound);

        let err = backup(store.path(), store.path(), true).unwrap_err();
        assert!(matches!(err, MaintenanceError::TargetIsSource(_)), "{err}");
        let err = backup(&dir.path().join("none.redb"), &target, true).unwrap_err();
        assert!(matches!(err, MaintenanceError::Missing(_)), "{err}");
        let leftovers = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_store_of_an_unknown_schema_is_neither_copied_nor_passed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = populated(dir.path());
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(SCHEMA_KEY, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let path = store.path().to_owned();
        drop(store);
        let target = dir.path().join("copy.redb");
        let err = backup(&path, &target, false).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
        assert!(!target.exists());

        let report = check(&path, NOW).unwrap();
        assert!(!report.sound);
        assert_eq!(report.schema_version, Some(99));
        assert!(
            report.problems[0].contains("schema version 99"),
            "{report:?}"
        );
    }

    #[test]
    fn a_check_finds_indexes_that_disagree_with_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let (store, records) = populated(dir.path());
        let (active, revoked) = (&records[0], &records[1]);
        {
            let txn = store.db.begin_write().unwrap();
            {
                // The active token loses its digest entry; the revoked one's name leads
                // elsewhere; a stray creation entry; a deleted digest comes back in use.
                let mut digests = txn.open_table(DIGESTS).unwrap();
                digests.remove(active.digest.as_bytes()).unwrap();
                digests
                    .insert(records[3].digest.as_bytes(), active.id.as_str())
                    .unwrap();
                txn.open_table(NAMES)
                    .unwrap()
                    .insert(revoked.name.as_str(), active.id.as_str())
                    .unwrap();
                txn.open_table(CREATED)
                    .unwrap()
                    .insert(1000, "nobody")
                    .unwrap();
                txn.open_table(EVENTS)
                    .unwrap()
                    .insert(1001, b"not json".as_slice())
                    .unwrap();
            }
            txn.commit().unwrap();
        }
        let path = store.path().to_owned();
        drop(store);
        let report = check(&path, NOW).unwrap();
        assert!(!report.sound);
        let text = report.problems.join("\n");
        for expected in [
            format!("token {}: missing from the digest index", active.id),
            format!(
                "token {}: the name index leads to token {}",
                revoked.id, active.id
            ),
            "the creation index holds sequence 1000 for token nobody".to_owned(),
            "event 1001 does not decode".to_owned(),
            "the change log jumps from event 6 to 1001".to_owned(),
            format!(
                "the digest of a token deleted at event 6 is in use again, by token {}",
                active.id
            ),
        ] {
            assert!(text.contains(&expected), "{expected:?} in:\n{text}");
        }
        assert_eq!(report.problem_count, report.problems.len());
    }

    #[test]
    fn a_check_finds_revocations_lost_stray_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (store, records) = populated(dir.path());
        let revoked = &records[1];
        let path = store.path().to_owned();
        drop(store);
        fn rewrite(path: &Path, change: impl FnOnce(&mut redb::Table<&str, &[u8]>)) {
            let db = Database::open(path).unwrap();
            let txn = db.begin_write().unwrap();
            change(&mut txn.open_table(REVOCATIONS).unwrap());
            txn.commit().unwrap();
        }
        let problems = || check(&path, NOW).unwrap().problems;

        // The revoked token's row is lost: the log still says it was revoked.
        rewrite(&path, |t| {
            t.remove(revoked.id.as_str()).unwrap();
        });
        assert_eq!(
            problems(),
            [format!(
                "token {}: event 5 revoked it, but it is not revoked",
                revoked.id
            )]
        );
        // A row for a token that does not exist, and a damaged row (counted as revoked, as the
        // servers treat it).
        rewrite(&path, |t| {
            t.insert(revoked.id.as_str(), &[1u8, 2][..]).unwrap();
            t.insert(
                TokenId::generate().as_str(),
                &record_codec::encode_revocation(1, None)[..],
            )
            .unwrap();
        });
        let report = check(&path, NOW).unwrap();
        assert_eq!(report.tokens.revoked, 1, "{report:?}");
        assert_eq!(report.problem_count, 2, "{report:?}");
        assert!(report.problems[0].starts_with(&format!("token {}: its revocation", revoked.id)));
        assert!(report.problems[1].starts_with("the revocations table holds token"));
    }

    #[test]
    fn a_file_that_is_no_store_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.redb");
        let mut noise = vec![0u8; 64 * 1024];
        getrandom::fill(&mut noise).unwrap();
        fs::write(&path, &noise).unwrap();
        let err = check(&path, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                MaintenanceError::Open { .. } | MaintenanceError::Damaged { .. }
            ),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            noise,
            "a check changes nothing it cannot read"
        );

        // A redb file without tollgate's tables.
        let other = dir.path().join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<u64, u64>::new("mine"))
                .unwrap()
                .insert(1, 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let report = check(&other, NOW).unwrap();
        assert!(!report.sound);
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.contains("not a tollgate store"))
        );
    }
}
