//! The in-memory token index and `decide()`: the whole hot check, from `Authorization` header
//! value to verdict.
//!
//! Keyed by the 32-byte digest, whose first eight bytes serve as the hash (see `TokenDigest`'s
//! `Hash`). Each entry holds only what a decision and the forwarded identity headers need. A
//! lookup holds a shard's read guard only for the few instructions of the check and never across
//! an `.await` or another map call.

use std::hash::{BuildHasher, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use dashmap::DashMap;
use http::HeaderValue;
use http::header::GetAll;

use crate::store::TokenView;
use crate::time::UnixSeconds;
use crate::token::{PermissionSet, TokenDigest, TokenId, TokenRecord, digest_token_bytes, hint_of};

/// Why a request was refused. Clients see the Controller's words; logs and metrics see these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization` header, several, or a scheme other than `Bearer`/`Token`.
    Missing,
    /// Not `tc-apiv1_` followed by 64 lowercase hex characters.
    Format,
    Unknown,
    Revoked,
    /// Deleted while this process ran (after a restart a deleted token is simply unknown).
    Deleted,
    Expired,
}

impl Denial {
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Missing => "missing",
            Denial::Format => "format",
            Denial::Unknown => "unknown",
            Denial::Revoked => "revoked",
            Denial::Deleted => "deleted",
            Denial::Expired => "expired",
        }
    }
}

mod name;

pub use name::Name;

/// Who a known token belongs to.
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: TokenId,
    /// Header-safe (see `header_safe_name`); a copy of the cache's, inline for short names, so
    /// that a verdict touches neither the heap nor a reference count that every core would bump
    /// for a busy token.
    pub name: Name,
    pub permissions: PermissionSet,
}

#[derive(Debug, Clone)]
pub enum Verdict {
    Allow(Identity),
    /// The identity is there when the token was known (revoked, deleted, expired), for the logs.
    Deny(Denial, Option<Identity>),
}

/// Ordered as a token's life runs: it only ever moves to a later state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Active,
    Revoked,
    Deleted,
}

/// Never expires.
const NO_EXPIRY: UnixSeconds = UnixSeconds::MAX;

/// One token in the cache: 64 bytes, with the 32-byte key 96 per slot. Kept this small on
/// purpose, since a million tokens means two million slots (hashbrown sizes by powers of two).
struct Entry {
    id: TokenId,
    /// Already header-safe (`header_safe_name`).
    name: Name,
    permissions: PermissionSet,
    expires_at: UnixSeconds,
    /// The last second this process accepted the token (`LastUsed`); 0 when it has not.
    last_used: AtomicU32,
    state: State,
    /// Set while the token waits in `dirty` for its last-used time to be written.
    dirty: AtomicBool,
}

impl Entry {
    fn identity(&self) -> Identity {
        Identity {
            id: self.id,
            name: self.name.clone(),
            permissions: self.permissions,
        }
    }

    fn last_used(&self) -> Option<UnixSeconds> {
        last_used_from(self.last_used.load(Ordering::SeqCst))
    }
}

/// Last-used times are kept in 32 bits, as seconds since this epoch (2020-01-01), which lasts
/// until 2156. Earlier times (only in tests) count as the epoch's first second.
const LAST_USED_EPOCH: UnixSeconds = 1_577_836_800;

fn last_used_bits(t: UnixSeconds) -> u32 {
    t.saturating_sub(LAST_USED_EPOCH)
        .clamp(1, i64::from(u32::MAX)) as u32
}

fn last_used_from(bits: u32) -> Option<UnixSeconds> {
    (bits != 0).then(|| LAST_USED_EPOCH + i64::from(bits))
}

/// Passes the digest's own first eight bytes through (see `TokenDigest`'s `Hash`).
#[derive(Clone, Copy, Default)]
pub struct DigestHash;

pub struct DigestHasher(u64);

impl BuildHasher for DigestHash {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `TokenDigest` is ever hashed here, through `write_u64`; fold anything else in
        // rather than lose it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

/// Counts of tokens by status, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StatusCounts {
    pub active: u64,
    pub revoked: u64,
    pub expired: u64,
}

pub struct TokenCache {
    map: DashMap<TokenDigest, Entry, DigestHash>,
    /// Tokens whose last-used time changed since the last flush.
    dirty: Mutex<Vec<TokenDigest>>,
    /// How many entries are tombstones of deleted tokens.
    tombstones: AtomicUsize,
}

/// A token's last use, on its way to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastUse {
    pub digest: TokenDigest,
    pub id: TokenId,
    pub at: UnixSeconds,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache::new()
    }
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            map: DashMap::with_hasher(DigestHash),
            dirty: Mutex::new(Vec::new()),
            tombstones: AtomicUsize::new(0),
        }
    }

    pub fn with_capacity(n: usize) -> Self {
        TokenCache {
            map: DashMap::with_capacity_and_hasher(n, DigestHash),
            dirty: Mutex::new(Vec::new()),
            tombstones: AtomicUsize::new(0),
        }
    }

    /// The hot check. `authorization` is every `Authorization` header of the request.
    pub fn decide(&self, authorization: GetAll<'_, HeaderValue>, now: UnixSeconds) -> Verdict {
        self.decide_values(authorization.iter().map(HeaderValue::as_bytes), now)
    }

    /// The hot check on the values of every `Authorization` field of a request, as received.
    pub fn decide_values<'a>(
        &self,
        authorization: impl IntoIterator<Item = &'a [u8]>,
        now: UnixSeconds,
    ) -> Verdict {
        let Some(value) = only_one(authorization) else {
            return Verdict::Deny(Denial::Missing, None);
        };
        let Some(token) = token_from_header(value) else {
            return Verdict::Deny(Denial::Missing, None);
        };
        let Ok(digest) = digest_token_bytes(token) else {
            return Verdict::Deny(Denial::Format, None);
        };
        self.decide_digest(&digest, now)
    }

    /// The check after parsing: look the digest up and judge the entry.
    fn decide_digest(&self, digest: &TokenDigest, now: UnixSeconds) -> Verdict {
        let Some(entry) = self.map.get(digest) else {
            return Verdict::Deny(Denial::Unknown, None);
        };
        let denial = match entry.state {
            State::Revoked => Denial::Revoked,
            State::Deleted => Denial::Deleted,
            State::Active if entry.expires_at <= now => Denial::Expired,
            State::Active => {
                let identity = entry.identity();
                let must_flush = touch(&entry, now);
                drop(entry);
                if must_flush {
                    self.dirty_list().push(*digest);
                }
                return Verdict::Allow(identity);
            }
        };
        Verdict::Deny(denial, Some(entry.identity()))
    }

    /// Adds or replaces a token from its record (creation, revocation, a reload).
    pub fn upsert(&self, record: &TokenRecord) {
        self.upsert_view(&TokenView {
            digest: record.digest,
            id: record.id,
            name: &record.name,
            permissions: record.permissions,
            expires_at: record.expires_at,
            revoked: record.revoked_at.is_some(),
        });
    }

    /// Adds or replaces a token from what the cache needs of its record.
    pub fn upsert_view(&self, view: &TokenView<'_>) {
        let fresh = Entry {
            id: view.id,
            name: header_safe(view.name),
            permissions: view.permissions,
            expires_at: view.expires_at.unwrap_or(NO_EXPIRY),
            state: if view.revoked {
                State::Revoked
            } else {
                State::Active
            },
            last_used: AtomicU32::new(0),
            dirty: AtomicBool::new(false),
        };
        match self.map.entry(view.digest) {
            dashmap::Entry::Occupied(mut slot) => {
                let old = slot.get_mut();
                // A token only moves forward (active → revoked → deleted): an update that
                // would move it back is older news than what the cache holds, and is dropped.
                // The revocation promise must not depend on updates arriving in order.
                if old.state > fresh.state {
                    return;
                }
                // Keep what this process has seen of the token's use; the shard's write lock
                // is held, so no use slips in between.
                fresh
                    .last_used
                    .store(old.last_used.load(Ordering::SeqCst), Ordering::SeqCst);
                fresh
                    .dirty
                    .store(old.dirty.load(Ordering::SeqCst), Ordering::SeqCst);
                *old = fresh;
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(fresh);
            }
        }
    }

    /// Marks a token deleted. The entry stays for a while as a small tombstone, so that logs can
    /// tell a deleted token from one never seen; it holds no secret and no record.
    pub fn mark_deleted(&self, digest: &TokenDigest, now: UnixSeconds) {
        if let Some(mut entry) = self.map.get_mut(digest)
            && entry.state != State::Deleted
        {
            entry.state = State::Deleted;
            // A tombstone's expiry field holds when it was made, for the sweep.
            entry.expires_at = now;
            self.tombstones.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops tombstones older than `max_age`, so that a long run of creates and deletes does not
    /// grow the cache for ever. Scans the map only when there are tombstones.
    pub fn sweep_tombstones(&self, now: UnixSeconds, max_age: UnixSeconds) {
        if self.tombstones.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.map.retain(|_, entry| {
            let stale = entry.state == State::Deleted && entry.expires_at <= now - max_age;
            if stale {
                self.tombstones.fetch_sub(1, Ordering::Relaxed);
            }
            !stale
        });
    }

    /// The last time this process accepted the token, if it has since it started.
    pub fn last_used(&self, digest: &TokenDigest) -> Option<UnixSeconds> {
        self.map.get(digest)?.last_used()
    }

    /// Takes the last-used times that changed since the previous call, to be written to the store.
    pub fn take_last_used(&self) -> Vec<LastUse> {
        let digests = std::mem::take(&mut *self.dirty_list());
        let mut uses = Vec::with_capacity(digests.len());
        for digest in digests {
            if let Some(entry) = self.map.get(&digest) {
                // Clear the flag before reading the time: a use after this point marks the
                // token dirty again, so no use is skipped between two flushes.
                entry.dirty.store(false, Ordering::SeqCst);
                if let (State::Active, Some(at)) = (entry.state, entry.last_used()) {
                    uses.push(LastUse {
                        digest,
                        id: entry.id,
                        at,
                    });
                }
            }
        }
        uses
    }

    /// Puts back uses whose write failed, for the next flush.
    pub fn requeue_last_used(&self, uses: &[LastUse]) {
        let mut requeue = Vec::with_capacity(uses.len());
        for u in uses {
            if let Some(entry) = self.map.get(&u.digest)
                && !entry.dirty.swap(true, Ordering::SeqCst)
            {
                requeue.push(u.digest);
            }
        }
        self.dirty_list().extend(requeue);
    }

    fn dirty_list(&self) -> std::sync::MutexGuard<'_, Vec<TokenDigest>> {
        // Poisoning needs a panic while pushing to a Vec; the list stays usable.
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Counts tokens by status at `now` (a scan: for metrics scrapes, not the data path).
    pub fn status_counts(&self, now: UnixSeconds) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for entry in self.map.iter() {
            match entry.state {
                State::Active if entry.expires_at <= now => counts.expired += 1,
                State::Active => counts.active += 1,
                State::Revoked => counts.revoked += 1,
                State::Deleted => {}
            }
        }
        counts
    }
}

/// The hint of the token a request presents, for logs: `None` unless exactly one
/// `Authorization` header carries a well-formed token.
pub fn presented_hint<'a>(authorization: impl IntoIterator<Item = &'a [u8]>) -> Option<String> {
    hint_of(token_from_header(only_one(authorization)?)?)
}

/// The value of a field that must appear exactly once: several `Authorization` fields are as
/// good as none, whatever they say.
fn only_one<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    let mut values = values.into_iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(value),
        _ => None,
    }
}

/// Records a use at `now`; returns whether the token must be queued for a last-used flush.
/// Costs one atomic load for a token already used this second.
fn touch(entry: &Entry, now: UnixSeconds) -> bool {
    let now = last_used_bits(now);
    if entry.last_used.load(Ordering::Relaxed) >= now {
        return false;
    }
    entry.last_used.fetch_max(now, Ordering::SeqCst);
    !entry.dirty.swap(true, Ordering::SeqCst)
}

/// `Bearer <token>` or `Token <token>`, the scheme in any case, as Telegraf and the Controller
/// send them. Surrounding spaces around the token are tolerated.
fn token_from_header(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !(scheme.eq_ignore_ascii_case(b"bearer") || scheme.eq_ignore_ascii_case(b"token")) {
        return None;
    }
    Some(rest.trim_ascii())
}

/// The name as held in the cache: copied as is when it is header-safe already (visible ASCII,
/// spaces, no `%`: most names), through `header_safe_name` otherwise.
fn header_safe(name: &str) -> Name {
    if name.bytes().all(is_header_safe) {
        Name::new(name)
    } else {
        Name::new(&header_safe_name(name))
    }
}

fn is_header_safe(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b'%'
}

/// The name as header-safe text: visible ASCII and spaces as they are, every other byte (UTF-8
/// beyond ASCII, and `%` itself) percent-encoded, so that no upstream has to guess a charset.
fn header_safe_name(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        if is_header_safe(b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    // Only visible ASCII and spaces remain: a valid header value.
    debug_assert!(HeaderValue::from_str(&encoded).is_ok());
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{TokenSecret, TokenSpec};
    use http::HeaderMap;
    use http::header::AUTHORIZATION;

    fn record(secret: &TokenSecret) -> TokenRecord {
        TokenRecord::issue(TokenId::generate(), TokenSpec::agent("agent"), secret, 0)
    }

    fn decide(cache: &TokenCache, values: &[&str], now: UnixSeconds) -> Verdict {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        cache.decide(headers.get_all(AUTHORIZATION), now)
    }

    fn denial(v: Verdict) -> Option<Denial> {
        match v {
            Verdict::Allow(_) => None,
            Verdict::Deny(d, _) => Some(d),
        }
    }

    #[test]
    fn schemes_and_shapes() {
        let cache = TokenCache::new();
        let secret = TokenSecret::generate();
        cache.upsert(&record(&secret));
        let t = secret.expose();
        for ok in [
            format!("Bearer {t}"),
            format!("bearer {t}"),
            format!("TOKEN {t}"),
            format!("Token  {t} "),
        ] {
            assert_eq!(denial(decide(&cache, &[&ok], 10)), None, "{ok}");
        }
        assert_eq!(denial(decide(&cache, &[], 10)), Some(Denial::Missing));
        let bearer = format!("Bearer {t}");
        assert_eq!(
            denial(decide(&cache, &[&bearer, &bearer], 10)),
            Some(Denial::Missing)
        );
        assert_eq!(
            denial(decide(&cache, &[&format!("Basic {t}")], 10)),
            Some(Denial::Missing)
        );
        assert_eq!(denial(decide(&cache, &[t], 10)), Some(Denial::Missing));
        assert_eq!(
            denial(decide(&cache, &["Bearer tc-apiv1_abc"], 10)),
            Some(Denial::Format)
        );
        let unknown = TokenSecret::generate();
        assert_eq!(
            denial(decide(
                &cache,
                &[&format!("Bearer {}", unknown.expose())],
                10
            )),
            Some(Denial::Unknown)
        );
    }

    #[test]
    fn a_token_never_moves_back_to_an_earlier_state() {
        let cache = TokenCache::new();
        let secret = TokenSecret::generate();
        let active = record(&secret);
        let mut revoked = active.clone();
        assert!(revoked.revoke(5, None));
        let bearer = format!("Bearer {}", secret.expose());

        cache.upsert(&revoked);
        // An older read of the record, applied late, leaves it revoked.
        cache.upsert(&active);
        assert_eq!(
            denial(decide(&cache, &[&bearer], 10)),
            Some(Denial::Revoked)
        );

        cache.mark_deleted(&active.digest, 10);
        cache.upsert(&revoked);
        cache.upsert(&active);
        assert_eq!(
            denial(decide(&cache, &[&bearer], 10)),
            Some(Denial::Deleted)
        );
        // The tombstone is counted once, and swept.
        cache.sweep_tombstones(10_000, 60);
        assert!(cache.is_empty());
    }

    #[test]
    fn states() {
        let cache = TokenCache::new();
        let secret = TokenSecret::generate();
        let header = format!("Bearer {}", secret.expose());
        let mut r = record(&secret);
        r.expires_at = Some(100);
        cache.upsert(&r);
        assert_eq!(denial(decide(&cache, &[&header], 99)), None);
        assert_eq!(
            denial(decide(&cache, &[&header], 100)),
            Some(Denial::Expired)
        );
        r.revoke(50, None);
        cache.upsert(&r);
        assert_eq!(
            denial(decide(&cache, &[&header], 60)),
            Some(Denial::Revoked)
        );
        cache.mark_deleted(&r.digest, 60);
        assert_eq!(
            denial(decide(&cache, &[&header], 60)),
            Some(Denial::Deleted)
        );
        cache.sweep_tombstones(100, 60);
        assert_eq!(
            denial(decide(&cache, &[&header], 100)),
            Some(Denial::Deleted)
        );
        cache.sweep_tombstones(120, 60);
        assert_eq!(
            denial(decide(&cache, &[&header], 120)),
            Some(Denial::Unknown)
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn names_become_ascii_header_values() {
        assert_eq!(header_safe_name("agent east-1"), "agent east-1");
        assert_eq!(header_safe_name("capteur-été"), "capteur-%C3%A9t%C3%A9");
        assert_eq!(header_safe_name("100%"), "100%25");
        for name in ["agent east-1", "capteur-été", "100%", "tab\there"] {
            assert_eq!(
                header_safe(name).as_str(),
                header_safe_name(name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn last_used_is_queued_once_per_flush() {
        let cache = TokenCache::new();
        let secret = TokenSecret::generate();
        let r = record(&secret);
        cache.upsert(&r);
        let header = format!("Bearer {}", secret.expose());
        const T: UnixSeconds = 1_800_000_000;
        for now in [T + 10, T + 10, T + 11, T + 12] {
            decide(&cache, &[&header], now);
        }
        let at = |uses: Vec<LastUse>| uses.iter().map(|u| (u.id, u.at)).collect::<Vec<_>>();
        assert_eq!(at(cache.take_last_used()), [(r.id, T + 12)]);
        assert_eq!(at(cache.take_last_used()), []);
        decide(&cache, &[&header], T + 13);
        let uses = cache.take_last_used();
        assert_eq!(at(uses.clone()), [(r.id, T + 13)]);
        assert_eq!(cache.last_used(&r.digest), Some(T + 13));
        // A failed write puts them back; a revoke-upsert keeps what was seen.
        cache.requeue_last_used(&uses);
        cache.upsert(&r);
        assert_eq!(at(cache.take_last_used()), [(r.id, T + 13)]);
    }

    #[test]
    fn entries_stay_small() {
        // The per-token memory target rests on this; see `Entry`.
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        assert_eq!(std::mem::size_of::<(TokenDigest, Entry)>(), 96);
    }
}
