//! Write-through token management: every change is committed to the store, then applied to the
//! cache, then acknowledged. This ordering is the revocation promise: a request that starts after
//! a revoke returns finds the token refused.
//!
//! All methods block (redb commits fsync); async callers run them on the blocking pool.

use std::sync::{Arc, Mutex};

use crate::cache::TokenCache;
use crate::store::{DeleteOutcome, Event, ImportOutcome, Page, RevokeOutcome, Store, StoreError};
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
    /// writer of the store in this process goes through it.
    write_order: Mutex<()>,
}

impl Registry {
    /// Loads every token from the store into a new cache.
    pub fn load(store: Store) -> Result<Registry, StoreError> {
        // Sized up front: growing a map of a million entries rehashes it several times over.
        let count = usize::try_from(store.token_count()?).unwrap_or(usize::MAX);
        let cache = TokenCache::with_capacity(count);
        store.load_all(|view| cache.upsert_view(&view))?;
        Ok(Registry {
            store,
            cache: Arc::new(cache),
            write_order: Mutex::new(()),
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
        let _order = self.ordered();
        self.store.create(&record, actor)?;
        self.cache.upsert(&record);
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
        let _order = self.ordered();
        let outcome = self.store.import(&records, actor)?;
        for record in &outcome.imported {
            self.cache.upsert(record);
        }
        Ok(outcome)
    }

    /// Revokes tokens in one transaction; refused from the next request on.
    pub fn revoke(
        &self,
        ids: &[TokenId],
        reason: Option<&str>,
        actor: &str,
    ) -> Result<RevokeOutcome, StoreError> {
        let _order = self.ordered();
        let outcome = self.store.revoke(ids, reason, actor, time::now())?;
        // The already-revoked ones too: whatever the store says is what the cache must say.
        for record in outcome.revoked.iter().chain(&outcome.already_revoked) {
            self.cache.upsert(record);
        }
        Ok(outcome)
    }

    /// Deletes tokens in one transaction; refused from the next request on.
    pub fn delete(&self, ids: &[TokenId], actor: &str) -> Result<DeleteOutcome, StoreError> {
        let _order = self.ordered();
        let now = time::now();
        let outcome = self.store.delete(ids, actor, now)?;
        for record in &outcome.deleted {
            self.cache.mark_deleted(&record.digest, now);
        }
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
}
