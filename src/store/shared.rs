//! What processes sharing one store file need of each other: the change feed (the event log read
//! from a sequence number on, with each token's current record) and the `peers` table, where each
//! serving process says how far it has applied that feed.
//!
//! The peers table is what lets a revoke reply mean "refused everywhere from the next request
//! on": the process that commits a revoke waits, before replying, until every other serving
//! process has applied it. A process's row carries a heartbeat; a row whose heartbeat is old
//! belongs to a process that died, and nobody waits for it.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{EVENTS, Store, StoreError, TOKENS, decode_event, get_record};
use crate::store::EventAction;
use crate::token::{TokenDigest, TokenRecord};

/// Process id (random, per start) → what it has applied and when it last said so.
pub(super) const PEERS: TableDefinition<&str, &[u8]> = TableDefinition::new("peers");

/// One committed change, as a cache applies it.
#[derive(Debug, Clone)]
pub struct Change {
    pub seq: u64,
    pub action: EventAction,
    pub digest: TokenDigest,
    /// The token's record as it is now (not as it was at `seq`): `None` once it is deleted.
    /// Reading the current record is safe because a token only ever moves forward (active →
    /// revoked → deleted), so a newer state is never wrong to apply.
    pub record: Option<TokenRecord>,
}

/// A serving process, as its row in the peers table says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Random per start; the row's key.
    pub id: String,
    pub pid: u32,
    /// The last change sequence this process has applied to its cache.
    pub applied: u64,
    /// When the row was last written, in milliseconds since the Unix epoch.
    pub heartbeat_ms: i64,
}

impl Store {
    /// The sequence number of the last committed change (0 for a store without any).
    pub fn head(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        Ok(events.last()?.map_or(0, |(k, _)| k.value()))
    }

    /// Up to `limit` changes committed after `after`, oldest first, each with the token's current
    /// record, all read in one snapshot.
    pub fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<Change>, StoreError> {
        let txn = self.db.begin_read()?;
        let events = txn.open_table(EVENTS)?;
        let tokens = txn.open_table(TOKENS)?;
        let revocations = self.revocations(&txn)?;
        let mut changes = Vec::new();
        for entry in events.range(after.saturating_add(1)..)?.take(limit) {
            let (seq, value) = entry?;
            let event = decode_event(seq.value(), value.value())?;
            let record = match event.action {
                EventAction::Deleted => None,
                _ => get_record(&tokens, revocations.as_ref(), &event.token_id)?,
            };
            changes.push(Change {
                seq: event.seq,
                action: event.action,
                digest: event.digest,
                record,
            });
        }
        Ok(changes)
    }

    /// Writes (or refreshes) this process's row.
    pub fn put_peer(&self, peer: &Peer) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut peers = txn.open_table(PEERS)?;
            let value = serde_json::to_vec(peer).expect("a peer row serialises");
            peers.insert(peer.id.as_str(), value.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Removes this process's row, at a clean exit, and the rows of processes that stopped
    /// heartbeating before `stale_before_ms` (they died without removing theirs).
    pub fn remove_peer(&self, id: &str, stale_before_ms: i64) -> Result<(), StoreError> {
        let txn = self.begin_write()?;
        {
            let mut peers = txn.open_table(PEERS)?;
            peers.remove(id)?;
            peers.retain(|_, value| {
                decode_peer(value).is_some_and(|p| p.heartbeat_ms >= stale_before_ms)
            })?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every process row, live or not; unreadable rows are skipped.
    pub fn peers(&self) -> Result<Vec<Peer>, StoreError> {
        let txn = self.db.begin_read()?;
        let peers = txn.open_table(PEERS)?;
        let mut out = Vec::new();
        for entry in peers.iter()? {
            let (_, value) = entry?;
            if let Some(peer) = decode_peer(value.value()) {
                out.push(peer);
            }
        }
        Ok(out)
    }
}

fn decode_peer(bytes: &[u8]) -> Option<Peer> {
    serde_json::from_slice(bytes).ok()
}
