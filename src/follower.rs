//! Keeps this process's cache in step with the other processes writing the same store file:
//! another server (the one a restart replaces, or its successor), the command line working on
//! the file directly.
//!
//! The store's event log is the change feed. This process applies it from the last sequence
//! number it applied, whenever the store's commit bell rings (`store::bell`: a commit that
//! changed tokens) and once a second regardless, for what the bell can miss. After applying, and
//! on a heartbeat, it says in the store's peers table how far it has applied, so that a process
//! that commits a revoke can wait for every other one before replying.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::registry::{PEER_HEARTBEAT, Registry};
use crate::store::bell;

/// How often the store is read even when the bell did not ring.
const POLL: Duration = Duration::from_secs(1);

/// Joins the processes serving from the store: says so in the peers table, then catches up
/// with every change committed since the cache was loaded. Called before the listeners serve:
/// a process that commits a revoke from then on either sees this one in the table and waits for
/// it, or committed before the catch-up read it.
pub fn join(
    registry: &Registry,
    peer_id: &str,
    metrics: &Metrics,
) -> Result<(), crate::store::StoreError> {
    registry.announce(peer_id)?;
    let applied = registry.follow()?;
    registry.announce(peer_id)?;
    metrics.store_followed(registry.applied(), registry.store().head()?, applied);
    Ok(())
}

/// Follows the store until `stop` turns true, then withdraws this process from the peers table.
pub async fn run(
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    mut bell: Option<bell::Listener>,
    peer_id: String,
    mut stop: watch::Receiver<bool>,
) {
    // The heartbeat runs on its own: a follow that waits (behind a long commit) or fails must
    // not make this process look dead to the others, who would then stop waiting for it while
    // it still serves. Late, it is waited for and named; dead, it is not.
    let beating = tokio::spawn(heartbeat(registry.clone(), peer_id.clone(), stop.clone()));
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick of an interval is immediate; `join` has just caught up.
    poll.reset();
    loop {
        // The bell rings once a commit is durable, so the first read after it finds the change.
        tokio::select! {
            _ = rung(&mut bell) => {}
            _ = poll.tick() => {}
            _ = stop.changed() => break,
        }
        let step = {
            let registry = registry.clone();
            let metrics = metrics.clone();
            let peer_id = peer_id.clone();
            move || -> Result<(), crate::store::StoreError> {
                let applied = registry.follow()?;
                if applied == 0 {
                    // Caught up when it looked: the head was what this process had applied.
                    metrics.store_followed(registry.applied(), registry.applied(), 0);
                    return Ok(());
                }
                // Others may be waiting for this process to apply their change.
                registry.announce(&peer_id)?;
                metrics.store_followed(registry.applied(), registry.store().head()?, applied);
                Ok(())
            }
        };
        match tokio::task::spawn_blocking(step).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %crate::ErrorChain(&e),
                "cannot follow the store's changes; retrying"
            ),
            Err(_) => break,
        }
    }
    let _ = beating.await;
    let registry = registry.clone();
    match tokio::task::spawn_blocking(move || registry.withdraw()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            error = %crate::ErrorChain(&e),
            "cannot remove this process from the store's peers table; it expires on its own"
        ),
        Err(_) => {}
    }
}

/// Listens to the store's commit bell (for `run`), or logs why not: the periodic look still
/// follows. Made before `join`'s catch-up read, so that no commit falls between the two.
pub fn listen(store_path: &Path) -> Option<bell::Listener> {
    match bell::Listener::new(store_path) {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!(
                store = %store_path.display(),
                error = %e,
                poll_ms = POLL.as_millis() as u64,
                "cannot listen to the store's commit bell; changes are seen by polling only"
            );
            None
        }
    }
}

/// The next ring, or never without a listener.
async fn rung(bell: &mut Option<bell::Listener>) {
    match bell {
        Some(listener) => listener.rung().await,
        None => std::future::pending().await,
    }
}

/// Refreshes this process's row in the peers table every `PEER_HEARTBEAT` until `stop`.
async fn heartbeat(registry: Arc<Registry>, peer_id: String, mut stop: watch::Receiver<bool>) {
    let mut beats = tokio::time::interval(PEER_HEARTBEAT);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beats.reset();
    loop {
        tokio::select! {
            _ = beats.tick() => {}
            _ = stop.changed() => return,
        }
        let (registry, peer_id) = (registry.clone(), peer_id.clone());
        match tokio::task::spawn_blocking(move || registry.announce(&peer_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %crate::ErrorChain(&e),
                "cannot refresh this process's row in the store's peers table; retrying"
            ),
            Err(_) => return,
        }
    }
}
