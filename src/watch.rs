//! Wake-ups for state that lives in files: the config, certificates, the store.
//!
//! A watch on a file itself goes deaf after the first save-by-rename (editors, atomic writes), and
//! Kubernetes swaps a `..data` symlink so that no event ever names the file. So [`Wakeups`] watches
//! the *directories* that hold the files, non-recursively, and treats any event there as a hint to
//! look again; a slow periodic tick catches what the watch misses (network filesystems, a full
//! event queue, a watch that could not be set up at all). Whoever wakes up re-reads and compares
//! ([`Fingerprint`]): events are hints, never a count of changes.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

/// What, in a watched directory, may mean that a file has new contents: a file written and
/// closed, moved in or out, created, deleted, or its attributes changed (`touch`). Not each
/// write (`IN_MODIFY`): a store in the same directory writes thousands of pages per commit,
/// and hearing each one cost a busy thread.
const DIR_CHANGES: WatchFlags = WatchFlags::CLOSE_WRITE
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::ATTRIB);

/// Wakes its owner on any change in a set of directories, and every `poll` regardless.
pub struct Wakeups {
    changed: Arc<Notify>,
    poll: tokio::time::Interval,
    // Dropping the watch ends it and its thread; kept for as long as the wake-ups are wanted.
    _watch: Option<Watch>,
}

impl Wakeups {
    /// Watches `dirs` (each non-recursively). A directory that cannot be watched is named in the
    /// log and left to the periodic tick. Must be called within a tokio runtime.
    pub fn new(dirs: impl IntoIterator<Item = PathBuf>, poll: Duration) -> Wakeups {
        let changed = Arc::new(Notify::new());
        let poll_ms = poll.as_millis() as u64;
        let watch = Watch::new().and_then(|mut watch| {
            for dir in dirs {
                if let Err(e) = watch.add(&dir, DIR_CHANGES) {
                    tracing::warn!(
                        dir = %dir.display(),
                        error = %e,
                        poll_ms,
                        "cannot watch the directory; changes are seen by polling only"
                    );
                }
            }
            watch.start(&changed)?;
            Ok(watch)
        });
        let watch = match watch {
            Ok(watch) => Some(watch),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    poll_ms,
                    "cannot watch files; changes are seen by polling only"
                );
                None
            }
        };
        let mut poll = tokio::time::interval(poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick of an interval is immediate; the owner has just read everything.
        poll.reset();
        Wakeups {
            changed,
            poll,
            _watch: watch,
        }
    }

    /// Waits for an event in a watched directory or the next periodic tick. After an event it
    /// waits `settle` more, so that a burst (a rename, a symlink swap, several files replaced
    /// one after another) is read once, when it is over.
    pub async fn next(&mut self, settle: Duration) {
        tokio::select! {
            _ = self.changed.notified() => {
                if !settle.is_zero() {
                    tokio::time::sleep(settle).await;
                }
            }
            _ = self.poll.tick() => {}
        }
    }
}

/// An inotify instance whose events wake a [`Notify`], read by a thread of its own (a blocking
/// read: registering the descriptor with the async reactor would take unsafe code). Dropping it
/// removes its watches, which ends the thread: the kernel answers each removal with an event.
pub struct Watch {
    fd: Arc<OwnedFd>,
    /// Watch descriptors, each once (watching one path twice gives the same one back).
    watches: Vec<i32>,
    /// Set before the watches are removed on drop, so that the thread ends quietly.
    dropped: Arc<AtomicBool>,
}

impl Watch {
    pub fn new() -> io::Result<Watch> {
        Ok(Watch {
            fd: Arc::new(inotify::init(CreateFlags::CLOEXEC)?),
            watches: Vec::new(),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Watches `path` for the events in `mask`. Call before `start`.
    pub fn add(&mut self, path: &Path, mask: WatchFlags) -> io::Result<()> {
        let watch = inotify::add_watch(&*self.fd, path, mask)?;
        if !self.watches.contains(&watch) {
            self.watches.push(watch);
        }
        Ok(())
    }

    /// Starts the thread that wakes `changed` on every event. Each burst of events read at once
    /// makes one wake-up (`notify_one` keeps one permit). A watch that ends (its file or
    /// directory removed or replaced) wakes the owner too, so that it reads again; when none is
    /// left, the thread says so and ends, and the owner goes on with its periodic reads.
    pub fn start(&self, changed: &Arc<Notify>) -> io::Result<()> {
        if self.watches.is_empty() {
            return Err(io::Error::other("nothing could be watched"));
        }
        let (fd, dropped) = (self.fd.clone(), self.dropped.clone());
        let changed = Arc::downgrade(changed);
        let mut live = self.watches.len();
        std::thread::Builder::new()
            .name("tollgate-watch".into())
            .spawn(move || {
                let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
                let mut events = inotify::Reader::new(&*fd, &mut buf);
                loop {
                    let ended = match events.next() {
                        Ok(event) => event.events().contains(ReadFlags::IGNORED),
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "a file watch failed; polling only");
                            return;
                        }
                    };
                    if dropped.load(Ordering::Acquire) {
                        return;
                    }
                    let Some(changed) = changed.upgrade() else {
                        return;
                    };
                    changed.notify_one();
                    if ended {
                        live -= 1;
                        if live == 0 {
                            tracing::warn!(
                                "every watched file or directory is gone; changes are seen by \
                                 polling only"
                            );
                            return;
                        }
                    }
                }
            })
            .map(drop)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
        for watch in self.watches.drain(..) {
            // Gone already if its file went; either way the thread hears about it.
            let _ = inotify::remove_watch(&*self.fd, watch);
        }
    }
}

/// The directory to watch for a file: its parent, or the working directory for a bare name.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// What a set of files held when last read, to tell a real change from an event that changed
/// nothing (a `touch`, a rewrite with the same bytes, our own reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of contents already read, in order.
    pub fn of<'a>(contents: impl IntoIterator<Item = &'a [u8]>) -> Fingerprint {
        let mut hasher = Sha256::new();
        for content in contents {
            // Length-prefixed, so that moving bytes from one file to the next is a change.
            hasher.update((content.len() as u64).to_le_bytes());
            hasher.update(content);
        }
        Fingerprint(hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_contents_and_their_split_apart() {
        let a = Fingerprint::of([b"ab".as_slice(), b"c"]);
        assert_eq!(a, Fingerprint::of([b"ab".as_slice(), b"c"]));
        assert_ne!(a, Fingerprint::of([b"a".as_slice(), b"bc"]));
        assert_ne!(a, Fingerprint::of([b"abc".as_slice()]));
    }

    #[test]
    fn a_bare_file_name_is_watched_in_the_working_directory() {
        assert_eq!(dir_of(Path::new("tollgate.toml")), PathBuf::from("."));
        assert_eq!(
            dir_of(Path::new("/etc/tollgate/tollgate.toml")),
            PathBuf::from("/etc/tollgate")
        );
    }

    #[tokio::test]
    async fn a_watched_directory_that_goes_wakes_the_owner() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("config");
        std::fs::create_dir(&dir).unwrap();
        let mut wakeups = Wakeups::new([dir.clone()], Duration::from_secs(3600));
        std::fs::remove_dir(&dir).unwrap();
        wakeups.next(Duration::ZERO).await;
    }

    #[test]
    fn dropping_a_watch_ends_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let mut watch = Watch::new().unwrap();
        watch.add(dir.path(), DIR_CHANGES).unwrap();
        // The same directory twice is one watch, ended once.
        watch.add(dir.path(), DIR_CHANGES).unwrap();
        let changed = Arc::new(Notify::new());
        watch.start(&changed).unwrap();
        let fd = watch.fd.clone();
        assert_eq!(
            Arc::strong_count(&fd),
            3,
            "the watch, its thread and this test"
        );
        drop(watch);
        // The thread lets go of the descriptor as it ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while Arc::strong_count(&fd) > 1 {
            assert!(std::time::Instant::now() < deadline, "the thread went on");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test]
    async fn a_rename_into_a_watched_directory_wakes_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mut wakeups = Wakeups::new([dir.path().to_owned()], Duration::from_secs(3600));
        let staged = dir.path().join(".staged");
        std::fs::write(&staged, b"new").unwrap();
        std::fs::rename(&staged, dir.path().join("file")).unwrap();
        // Without the event, the hour-long tick would make this wait forever (the test's
        // harness timeout would fail it).
        wakeups.next(Duration::from_millis(10)).await;
    }
}
