//! Idle upstream connections, newest first out: the warmest connection serves the next request,
//! and the ones that stay unused age out after the idle timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::conn::Connection;

pub struct Pool {
    /// Oldest at the front.
    idle: Mutex<VecDeque<Idle>>,
    idle_timeout: Duration,
}

struct Idle {
    conn: Connection,
    since: Instant,
}

impl Pool {
    /// A pool whose connections close after `idle_timeout` unused. Within a tokio runtime, a
    /// task closes them even when no request comes to notice; it ends with the pool.
    pub fn new(idle_timeout: Duration) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
        });
        if !idle_timeout.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
            // Half the timeout: no connection outlives it by more than that.
            let every = (idle_timeout / 2).max(Duration::from_millis(50));
            tokio::spawn(close_expired(Arc::downgrade(&pool), every));
        }
        pool
    }

    /// The newest idle connection that still looks open, if any.
    pub fn take(&self) -> Option<Connection> {
        let mut closed: Vec<Connection> = Vec::new();
        let found = {
            let mut idle = self.lock();
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
        self.lock().push_back(Idle {
            conn,
            since: Instant::now(),
        });
    }

    fn remove_expired(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.lock();
            let fresh = idle
                .iter()
                .position(|i| i.since.elapsed() < self.idle_timeout)
                .unwrap_or(idle.len());
            idle.drain(..fresh).collect()
        };
        drop(expired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        // The queue is consistent between any two statements; a panic elsewhere leaves it usable.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
