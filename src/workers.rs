//! The data path's threads: one single-threaded tokio runtime per thread, each accepting and
//! serving its share of every listener's connections, as nginx's worker processes do.
//!
//! A connection lives on the worker that accepted it, and so does everything its requests touch:
//! their tasks, their timers, and the upstream connections they use (the upstream pool keeps a
//! shelf per worker, see [`shelf`]; only closing the connections left idle too long is done from
//! the main runtime). No request is handed from one thread to another, so no core
//! has to wake another to go on with it, and no task's state moves between caches. Every worker
//! has a listening socket of its own on each listener's address (SO_REUSEPORT, bound in
//! `crate::server`), and the kernel spreads new connections over them by their addresses.
//!
//! Everything else (start-up, reloads, the store's follower, background upkeep) runs on the
//! process's main runtime, and the admin API on a thread of its own.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::num::NonZeroUsize;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

thread_local! {
    /// This thread's worker number, counted from 1; 0 on any other thread.
    static NUMBER: Cell<usize> = const { Cell::new(0) };
}

/// The shelf of a per-worker structure that the current thread uses, among `shelves`: its
/// worker number's, or shelf 0 on a thread that is not a worker. With more workers than
/// shelves, some share one, which is still correct, only less local.
pub fn shelf(shelves: usize) -> usize {
    NUMBER.with(Cell::get) % shelves.max(1)
}

/// How many workers to run when the config leaves it to tollgate: one per core this process may
/// run on (its CPU affinity and cgroup quota included).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The running workers. Dropping this ends them: each runtime then drops the tasks it still
/// holds (by then the listeners have drained, or their grace period is over).
pub struct Workers {
    handles: Vec<Handle>,
    /// Dropped with `Workers`: each worker's runtime returns when its sender goes.
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `count` worker threads (at least one), each with a runtime ready for work.
    pub fn start(count: usize) -> io::Result<Workers> {
        let count = count.max(1);
        let mut handles = Vec::with_capacity(count);
        let mut stops = Vec::with_capacity(count);
        for number in 1..=count {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("worker-{number}"))
                .spawn(move || {
                    NUMBER.with(|n| n.set(number));
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    // Spawned tasks run while this waits.
                    let _ = runtime.block_on(stop_rx);
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("a worker thread ended while starting"))??;
            handles.push(handle);
            stops.push(stop_tx);
        }
        Ok(Workers {
            handles,
            _stop: stops,
        })
    }

    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Runs `make(input)`'s future on each worker, one input per worker in order.
    pub fn spawn_on_each<T, F, Fut>(&self, inputs: Vec<T>, make: F) -> Vec<JoinHandle<()>>
    where
        F: FnMut(T) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        assert_eq!(inputs.len(), self.handles.len(), "one input per worker");
        self.handles
            .iter()
            .zip(inputs.into_iter().map(make))
            .map(|(handle, work)| handle.spawn(work))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_runs_on_its_own_thread_and_knows_its_shelf() {
        let workers = Workers::start(3).unwrap();
        assert_eq!(workers.count(), 3);
        let (tx, rx) = std::sync::mpsc::channel();
        let running = workers.spawn_on_each(vec![0, 1, 2], |worker| {
            let tx = tx.clone();
            async move {
                let thread = std::thread::current().name().unwrap().to_owned();
                tx.send((worker, thread, shelf(16), shelf(2))).unwrap();
            }
        });
        drop(tx);
        let mut seen: Vec<_> = rx.iter().collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (0, "worker-1".to_owned(), 1, 1),
                (1, "worker-2".to_owned(), 2, 0),
                (2, "worker-3".to_owned(), 3, 1),
            ]
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for done in running {
                done.await.unwrap();
            }
        });
        // Not a worker: shelf 0.
        assert_eq!(shelf(16), 0);
    }

    #[test]
    fn a_default_count_is_at_least_one() {
        assert!(default_count() >= 1);
    }

    #[test]
    fn dropping_the_workers_ends_their_tasks() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let _running = workers.spawn_on_each(vec![tx], |tx| async move {
            let _held = tx;
            std::future::pending::<()>().await;
        });
        drop(workers);
        // The task, dropped with its runtime, drops its sender.
        assert!(rx.recv().is_err());
    }
}
