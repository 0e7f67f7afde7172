//! Idle upstream connections, newest first out: the warmest connection serves the next request,
//! and the ones that stay unused age out after the idle timeout.
//!
//! Each worker thread (`crate::workers`) has a shelf of its own: a connection is registered with
//! the runtime of the worker that opened it, and one taken up by another worker would have every
//! read's readiness cross between the two threads. A worker whose shelf is empty opens a new
//! connection, as each of nginx's worker processes keeps its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::conn::Connection;

pub struct Pool {
    /// Shelf 0 serves the threads that are not workers, the others a worker each.
    shelves: Box<[Shelf]>,
    idle_timeout: Duration,
}

/// One worker's idle connections, oldest at the front. Aligned so that two shelves never share a
/// cache line, which the two workers' locks would otherwise pass back and forth.
#[repr(align(128))]
#[derive(Default)]
struct Shelf(Mutex<VecDeque<Idle>>);

struct Idle {
    conn: Connection,
    since: Instant,
}

impl Pool {
    /// A pool whose connections close after `idle_timeout` unused, with a shelf for each of
    /// `workers` worker threads. Within a tokio runtime, a task closes them even when no request
    /// comes to notice; it ends with the pool.
    pub fn new(idle_timeout: Duration, workers: usize) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            shelves: (0..=workers).map(|_| Shelf::default()).collect(),
            idle_timeout,
        });
        if !idle_timeout.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
            // Half the timeout: no connection outlives it by more than that.
            let every = (idle_timeout / 2).max(Duration::from_millis(50));
            tokio::spawn(close_expired(Arc::downgrade(&pool), every));
        }
        pool
    }

    /// The newest idle connection on this thread's shelf that still looks open, if any.
    pub fn take(&self) -> Option<Connection> {
        let mut closed: Vec<Connection> = Vec::new();
        let found = {
            let mut idle = self.own_shelf();
            loop {
                let Some(newest) = idle.pop_back() else {
                    break None;
                };
                if newest.since.elapsed() >= self.idle_timeout {
                    // The rest are older still.
                    closed.push(newest.conn);
                    closed.extend(idle.drain(..).map(|i| i.conn));
                    break None;
                }
                let mut conn = newest.conn;
                if conn.looks_open() {
                    break Some(conn);
                }
                closed.push(conn);
            }
        };
        // Closed outside the lock: a close is a system call.
        drop(closed);
        found
    }

    pub fn put(&self, conn: Connection) {
        if self.idle_timeout.is_zero() {
            return;
        }
        self.own_shelf().push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    fn remove_expired(&self) {
        for shelf in &self.shelves {
            let expired: Vec<Idle> = {
                let mut idle = lock(shelf);
                let fresh = idle
                    .iter()
                    .position(|i| i.since.elapsed() < self.idle_timeout)
                    .unwrap_or(idle.len());
                idle.drain(..fresh).collect()
            };
            drop(expired);
        }
    }

    fn own_shelf(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        lock(&self.shelves[crate::workers::shelf(self.shelves.len())])
    }
}

fn lock(shelf: &Shelf) -> MutexGuard<'_, VecDeque<Idle>> {
    // The queue is consistent between any two statements; a panic elsewhere leaves it usable.
    shelf.0.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn close_expired(pool: Weak<Pool>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        pool.remove_expired();
    }
}
