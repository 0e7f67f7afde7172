//! The store's commit bell: how a process that follows the file learns, within a millisecond,
//! that another one committed a change to its tokens.
//!
//! A directory watch would do, but it hears every page write of every commit: a bulk revoke of
//! 10,000 tokens writes thousands of pages, and each write woke the watching thread and, through
//! it, a read of the log's head that contends for the file's locks with the commit itself. So a
//! commit that changes tokens rings instead: it sets the file's times to now (`utimensat`, which
//! any process that may write the file may do), and followers listen for that attribute change
//! on the file alone (inotify `IN_ATTRIB`), not for its writes. One event per commit, none for
//! the page writes, and none for the peers table's heartbeats. Events stay hints: a follower
//! reads the log's head and also looks every second on its own.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustix::fs::inotify::WatchFlags;
use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_NOW, utimensat};
use tokio::sync::Notify;

use crate::watch::Watch;

/// Rings the bell of the store at `path`. Setting both times to "now" needs only the right to
/// write the file, which the commit that rings already had.
pub fn ring(path: &Path) -> io::Result<()> {
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_NOW,
    };
    let times = Timestamps {
        last_access: now,
        last_modification: now,
    };
    Ok(utimensat(CWD, path, &times, AtFlags::empty())?)
}

/// Hears the bell of one store file (a watch of its attribute changes: `watch::Watch`).
pub struct Listener {
    rang: Arc<Notify>,
    _watch: Watch,
}

impl Listener {
    pub fn new(path: &Path) -> io::Result<Listener> {
        let mut watch = Watch::new()?;
        watch.add(path, WatchFlags::ATTRIB)?;
        let rang = Arc::new(Notify::new());
        watch.start(&rang)?;
        Ok(Listener {
            rang,
            _watch: watch,
        })
    }

    /// Waits until the bell rang at least once since the last call; several rings in between
    /// make one wake-up.
    pub async fn rung(&mut self) {
        self.rang.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_ring_is_heard_and_page_writes_are_not() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        std::fs::write(&path, b"pages").unwrap();
        let mut listener = Listener::new(&path).unwrap();

        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for _ in 0..100 {
            file.write_all(b"another page").unwrap();
        }
        file.sync_all().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(300), listener.rung()).await;
        assert!(waited.is_err(), "writes to the file rang the bell");

        ring(&path).unwrap();
        listener.rung().await;
    }
}
