//! Write-through token management: every change is committed to the store, then applied to the
//! cache, then acknowledged. This ordering is the revocation promise: a request that starts after
//! a revoke returns finds the token refused.
//!
//! All methods block (redb commits fsync); async callers run them on the blocking pool.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cache::TokenCache;
use crate::store::{
    Change, DeleteOutcome, Event, EventAction, ImportOutcome, Page, Peer, RevokeOutcome, Store,
    StoreError,
};
use crate::time;
use crate::token::{TokenDigest, TokenId, TokenRecord, TokenSecret, TokenSpec, TokenStatus};

/// A token to import: validated fields, and the digest (and hint) standing for its secret.
#[derive(Debug, Clone)]
pub struct ImportEntry {
    pub spec: TokenSpec,
    pub digest: TokenDigest,
    pub hint: String,
    /// When the token was revoked where it comes from: it is imported revoked.
    pub revoked_at: Option<time::UnixSeconds>,
}

pub struct Registry {
    store: Store,
    cache: Arc<TokenCache>,
    /// Held from a commit until the cache reflects it, so that the cache applies changes in
    /// commit order (two racing changes to one token cannot land in the cache reversed). Every
    /// writer of the store in this process goes through it, and so does applying other
    /// processes' changes.
    write_order: Mutex<()>,
    /// The sequence number of the last change in the store's log that the cache reflects.
    applied: AtomicU64,
    /// This process's row in the store's peers table, once it serves.
    peer_id: Mutex<Option<String>>,
}

/// How many changes one pass of `follow` reads and applies before letting writers in.
const FOLLOW_BATCH: usize = 10_000;
/// A process whose heartbeat is older than this is taken for dead: nobody waits for it.
pub const PEER_STALE: Duration = Duration::from_secs(6);
/// How often a serving process refreshes its heartbeat.
pub const PEER_HEARTBEAT: Duration = Duration::from_secs(2);
/// The longest a revoke or delete waits for the other serving processes to apply it.
const PEER_WAIT: Duration = Duration::from_secs(2);

/// Whether the other processes serving from the store applied a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerWait {
    /// No other process serves from the store.
    Alone,
    /// Every other serving process applied it.
    Applied { peers: usize },
    /// These processes had not applied it when the wait ended.
    TimedOut { laggards: Vec<Peer> },
}

impl Registry {
    /// Loads every token from the store into a new cache.
    pub fn load(store: Store) -> Result<Registry, StoreError> {
        // Sized up front: growing a map of a million entries rehashes it several times over.
        let count = usize::try_from(store.token_count()?).unwrap_or(usize::MAX);
        let cache = TokenCache::with_capacity(count);
        let applied = store.load_all(|view| cache.upsert_view(&view))?;
        Ok(Registry {
            store,
            cache: Arc::new(cache),
            write_order: Mutex::new(()),
            applied: AtomicU64::new(applied),
            peer_id: Mutex::new(None),
        })
    }

    /// A registry over the store without loading its tokens: for the command line working on a
    /// store file directly, where no request is ever decided and a store may hold a million
    /// tokens. Every read and write goes to the store as usual; the cache holds only the tokens
    /// this process changes.
    pub fn unloaded(store: Store) -> Registry {
        Registry {
            store,
            cache: Arc::new(TokenCache::new()),
            write_order: Mutex::new(()),
            // It never follows the log: nothing here decides a request.
            applied: AtomicU64::new(0),
            peer_id: Mutex::new(None),
        }
    }

    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    fn ordered(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
        self.write_order.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a token; the secret is returned this once and kept nowhere.
    pub fn create(
        &self,
        spec: TokenSpec,
        actor: &str,
    ) -> Result<(TokenRecord, TokenSecret), StoreError> {
        let secret = TokenSecret::generate();
        let record = TokenRecord::issue(TokenId::generate(), spec, &secret, time::now());
        let event = {
            let _order = self.ordered();
            let event = self.store.create(&record, actor)?;
            self.cache.upsert(&record);
            self.applied_own(std::slice::from_ref(&event));
            event
        };
        // An agent handed the new token may call any process on the store at once.
        self.reach_peers(std::slice::from_ref(&event));
        Ok((record, secret))
    }

    /// Adds tokens that exist elsewhere, known by digest, in one transaction; accepted from the
    /// next request on. Duplicates are skipped and reported.
    pub fn import(
        &self,
        entries: Vec<ImportEntry>,
        actor: &str,
    ) -> Result<ImportOutcome, StoreError> {
        let now = time::now();
        let records: Vec<TokenRecord> = entries
            .into_iter()
            .map(|e| {
                let mut record =
                    TokenRecord::imported(TokenId::generate(), e.spec, e.digest, e.hint, now);
                record.revoked_at = e.revoked_at;
                record
            })
            .collect();
        let outcome = {
            let _order = self.ordered();
            let outcome = self.store.import(&records, actor)?;
            for record in &outcome.imported {
                self.cache.upsert(record);
            }
            self.applied_own(&outcome.events);
            outcome
        };
        self.reach_peers(&outcome.events);
        Ok(outcome)
    }

    /// Revokes tokens in one transaction; refused from the next request on.
    pub fn revoke(
        &self,
        ids: &[TokenId],
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RevokeOutcome, StoreError> {
        let outcome = {
            let _order = self.ordered();
            let outcome = self.store.revoke(ids, reason, actor, time::now())?;
            // The already-revoked ones too: whatever the store says is what the cache must say.
            for record in outcome.revoked.iter().chain(&outcome.already_revoked) {
                self.cache.upsert(record);
            }
            self.applied_own(&outcome.events);
            outcome
        };
        self.reach_peers(&outcome.events);
        Ok(outcome)
    }

    /// Deletes tokens in one transaction; refused from the next request on.
    pub fn delete(&self, ids: &[TokenId], actor: &str) -> Result<DeleteOutcome, StoreError> {
        let outcome = {
            let _order = self.ordered();
            let now = time::now();
            let outcome = self.store.delete(ids, actor, now)?;
            for record in &outcome.deleted {
                self.cache.mark_deleted(&record.digest, now);
            }
            self.applied_own(&outcome.events);
            outcome
        };
        self.reach_peers(&outcome.events);
        Ok(outcome)
    }

    /// A record, with the last-used time this process has seen if it is newer than the stored one.
    pub fn get(&self, id: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.store.get(id)?.map(|r| self.with_live_last_used(r)))
    }

    pub fn list(
        &self,
        status: Option<TokenStatus>,
        name: Option<&str>,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Page, StoreError> {
        let mut page = self.store.list(status, name, limit, after, time::now())?;
        page.tokens = page
            .tokens
            .into_iter()
            .map(|r| self.with_live_last_used(r))
            .collect();
        Ok(page)
    }

    pub fn events(
        &self,
        limit: usize,
        before: Option<u64>,
        token: Option<&TokenId>,
    ) -> Result<Vec<Event>, StoreError> {
        self.store.events(limit, before, token)
    }

    /// Writes the last-used times gathered since the previous call (one transaction). When the
    /// write fails, the times are queued again for the next flush.
    pub fn flush_last_used(&self) -> Result<usize, StoreError> {
        let uses = self.cache.take_last_used();
        let by_id: Vec<_> = uses.iter().map(|u| (u.id, u.at)).collect();
        if let Err(e) = self.store.record_last_used(&by_id) {
            self.cache.requeue_last_used(&uses);
            return Err(e);
        }
        Ok(uses.len())
    }

    fn with_live_last_used(&self, mut record: TokenRecord) -> TokenRecord {
        if let Some(live) = self.cache.last_used(&record.digest) {
            record.last_used_at = Some(record.last_used_at.map_or(live, |t| t.max(live)));
        }
        record
    }

    // ---- sharing the store with other processes ----

    /// The sequence number of the last change the cache reflects.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Our own commit's events are in the cache already (write-through). When they directly
    /// follow what was applied, the applied mark moves past them, so that following does not
    /// read them back. (Called under `write_order`, right after the commit.)
    fn applied_own(&self, events: &[Event]) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let _ = self.applied.compare_exchange(
            first.seq - 1,
            last.seq,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Applies to the cache every change committed to the store since the last one applied:
    /// other processes' changes (another server, the command line working on the file). Returns
    /// how many changes it applied.
    pub fn follow(&self) -> Result<usize, StoreError> {
        // Most wake-ups come from this process's own commits, applied already. A look at the
        // log's head tells, without the write lock: a follower that took the lock for nothing
        // would make the next revoke wait for it, on a machine busy serving requests.
        if self.store.head()? <= self.applied() {
            return Ok(0);
        }
        let mut total = 0;
        loop {
            // Under the write lock: a change of our own is committed and applied whole, before
            // or after this batch, never in between its read and its application.
            let _order = self.ordered();
            let after = self.applied();
            let changes = self.store.changes_after(after, FOLLOW_BATCH)?;
            let Some(last) = changes.last().map(|c| c.seq) else {
                return Ok(total);
            };
            let now = time::now();
            for change in &changes {
                self.apply(change, now);
            }
            self.applied.store(last, Ordering::Release);
            total += changes.len();
            if changes.len() < FOLLOW_BATCH {
                return Ok(total);
            }
        }
    }

    fn apply(&self, change: &Change, now: time::UnixSeconds) {
        match (&change.action, &change.record) {
            (EventAction::Deleted, _) => self.cache.mark_deleted(&change.digest, now),
            (_, Some(record)) => self.cache.upsert(record),
            // Deleted since. Its `deleted` change comes later in the log, perhaps in the next
            // batch, after this one is counted as applied (and perhaps announced as such to a
            // revoker waiting for its peers): the token stops passing now, not then.
            (_, None) => self.cache.mark_deleted(&change.digest, now),
        }
    }

    /// Says, in the store's peers table, that this process serves and how far it has applied
    /// the log. Called at start, before serving, on every heartbeat and after following.
    pub fn announce(&self, peer_id: &str) -> Result<(), StoreError> {
        *self.peer_id.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer_id.to_owned());
        self.store.put_peer(&Peer {
            id: peer_id.to_owned(),
            pid: std::process::id(),
            applied: self.applied(),
            heartbeat_ms: time::now_millis(),
        })
    }

    /// Removes this process's row (at a clean exit), and rows of processes long dead.
    pub fn withdraw(&self) -> Result<(), StoreError> {
        let Some(id) = self
            .peer_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        let stale = time::now_millis() - 10 * PEER_STALE.as_millis() as i64;
        self.store.remove_peer(&id, stale)
    }

    /// The other processes serving from the store, those whose heartbeat is recent.
    pub fn live_peers(&self) -> Result<Vec<Peer>, StoreError> {
        let me = self
            .peer_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.live_peers_but(me.as_deref())
    }

    fn live_peers_but(&self, me: Option<&str>) -> Result<Vec<Peer>, StoreError> {
        let fresh_after = time::now_millis() - PEER_STALE.as_millis() as i64;
        Ok(self
            .store
            .peers()?
            .into_iter()
            .filter(|p| Some(p.id.as_str()) != me && p.heartbeat_ms >= fresh_after)
            .collect())
    }

    /// After a change: waits for the other serving processes to apply it (the reply must hold
    /// for them too: a revoked token refused everywhere, a new one accepted everywhere). A
    /// process that does not answer in time is named in the log; the change is committed either
    /// way, and it applies the change when it next follows.
    fn reach_peers(&self, events: &[Event]) {
        let Some(last) = events.last() else { return };
        match self.wait_for_peers(last.seq) {
            Ok(PeerWait::Alone | PeerWait::Applied { .. }) => {}
            Ok(PeerWait::TimedOut { laggards }) => {
                for peer in laggards {
                    tracing::warn!(
                        peer = %peer.id,
                        pid = peer.pid,
                        applied = peer.applied,
                        change = last.seq,
                        wait_ms = PEER_WAIT.as_millis() as u64,
                        "another process serving from the store has not applied this change yet"
                    );
                }
            }
            Err(e) => tracing::warn!(
                error = %crate::ErrorChain(&e),
                "cannot tell whether the other processes serving from the store applied this change"
            ),
        }
    }

    /// Waits until every other live process serving from the store has applied the change
    /// `seq`, for at most `PEER_WAIT`. This is what makes a revoke reply hold for the whole
    /// fleet on one file: its requests are refused everywhere once the reply is sent.
    pub fn wait_for_peers(&self, seq: u64) -> Result<PeerWait, StoreError> {
        let me = self
            .peer_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let started = Instant::now();
        let mut pause = Duration::from_micros(100);
        loop {
            let live = self.live_peers_but(me.as_deref())?;
            if live.is_empty() {
                return Ok(PeerWait::Alone);
            }
            let laggards: Vec<Peer> = live.iter().filter(|p| p.applied < seq).cloned().collect();
            if laggards.is_empty() {
                return Ok(PeerWait::Applied { peers: live.len() });
            }
            if started.elapsed() >= PEER_WAIT {
                return Ok(PeerWait::TimedOut { laggards });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenSpec;

    /// Two registries on one file stand for two processes: what one commits, the other applies
    /// when it follows, and not before.
    #[test]
    fn following_applies_what_another_writer_committed() {
        let (_dir, writer, reader) = two_processes();

        let (record, secret) = writer.create(TokenSpec::agent("agent"), "test").unwrap();
        let allowed = |registry: &Registry| passes(registry, &secret);
        assert!(!allowed(&reader));
        assert_eq!(reader.follow().unwrap(), 1);
        assert!(allowed(&reader));
        assert_eq!(reader.applied(), writer.applied());

        writer.revoke(&[record.id], None, "test").unwrap();
        writer.delete(&[record.id], "test").unwrap();
        assert_eq!(reader.follow().unwrap(), 2);
        assert!(!allowed(&reader));
        // Nothing new: nothing applied.
        assert_eq!(reader.follow().unwrap(), 0);
        // The writer's own changes were applied as it made them.
        assert_eq!(writer.follow().unwrap(), 0);
    }

    /// Two registries on one store file in a temporary directory (kept while it is held).
    fn two_processes() -> (tempfile::TempDir, Registry, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.redb");
        let writer = Registry::load(Store::open(&path).unwrap()).unwrap();
        let reader = Registry::load(Store::open(&path).unwrap()).unwrap();
        (dir, writer, reader)
    }

    /// Whether `registry`'s cache lets `secret` through.
    fn passes(registry: &Registry, secret: &crate::token::TokenSecret) -> bool {
        let header = http::HeaderValue::from_str(&format!("Bearer {}", secret.expose())).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, header);
        matches!(
            registry
                .cache()
                .decide(headers.get_all(http::header::AUTHORIZATION), time::now()),
            crate::cache::Verdict::Allow(_)
        )
    }

    /// A follower reads changes in batches. A change whose token was deleted since carries no
    /// record, and the `deleted` change may fall in the next batch: the token must stop
    /// passing with the first, which may be announced as applied before the next is read.
    #[test]
    fn a_change_whose_token_is_gone_stops_it_without_waiting_for_the_deletion() {
        let (_dir, writer, reader) = two_processes();
        let (record, secret) = writer.create(TokenSpec::agent("agent"), "test").unwrap();
        assert_eq!(reader.follow().unwrap(), 1);
        assert!(passes(&reader, &secret));

        writer.revoke(&[record.id], None, "test").unwrap();
        writer.delete(&[record.id], "test").unwrap();
        // The revoke alone, as a batch that ends before the deletion would hold it.
        let changes = reader.store().changes_after(reader.applied(), 1).unwrap();
        let [revoked] = &changes[..] else {
            panic!("one change: {changes:?}");
        };
        assert!(matches!(revoked.action, EventAction::Revoked));
        assert!(revoked.record.is_none());
        reader.apply(revoked, time::now());
        assert!(!passes(&reader, &secret));
    }

    #[test]
    fn a_revoke_waits_only_for_live_peers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tollgate.redb");
        let first = Registry::load(Store::open(&path).unwrap()).unwrap();
        first.announce("first").unwrap();
        assert_eq!(first.wait_for_peers(1).unwrap(), PeerWait::Alone);

        // A peer that stopped heartbeating long ago is not waited for.
        first
            .store()
            .put_peer(&Peer {
                id: "dead".into(),
                pid: 1,
                applied: 0,
                heartbeat_ms: time::now_millis() - 60_000,
            })
            .unwrap();
        assert_eq!(first.wait_for_peers(1).unwrap(), PeerWait::Alone);

        // A live one that has applied the change is.
        let second = Registry::load(Store::open(&path).unwrap()).unwrap();
        let (record, _) = first.create(TokenSpec::agent("agent"), "test").unwrap();
        second.follow().unwrap();
        second.announce("second").unwrap();
        let seq = first.applied();
        assert_eq!(
            first.wait_for_peers(seq).unwrap(),
            PeerWait::Applied { peers: 1 }
        );
        // One that has not, is named when the wait ends.
        let revoked = first.store().revoke(&[record.id], None, "test", 1).unwrap();
        let seq = revoked.events[0].seq;
        match first.wait_for_peers(seq).unwrap() {
            PeerWait::TimedOut { laggards } => assert_eq!(laggards[0].id, "second"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        second.withdraw().unwrap();
        assert_eq!(first.wait_for_peers(seq).unwrap(), PeerWait::Alone);
        // Withdrawing also clears rows long dead.
        assert!(
            first
                .store()
                .peers()
                .unwrap()
                .iter()
                .all(|p| p.id == "first")
        );
    }
}
