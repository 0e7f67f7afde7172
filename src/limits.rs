//! The process's own limits. Every client connection and every pooled upstream connection is a
//! file descriptor, and the usual soft limit (1,024) is far below what one listener may hold
//! (`max_connections`, 16,384 by default). Like nginx's `worker_rlimit_nofile`, tollgate raises
//! its soft limit to the hard limit the operator allowed (systemd's `LimitNOFILE`, `ulimit -Hn`).
//!
//! And the admin API's threads' scheduling: see [`favour_this_thread`] and
//! [`at_process_priority`].

use rustix::process::{Resource, getrlimit, setpriority_process, setrlimit};

/// Raises the soft limit on open files to the hard limit and returns the limit now in force
/// (`None`: unlimited). Failing to raise it is not fatal: tollgate runs with what it has, and the
/// log says so.
pub fn raise_open_files() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(e) => {
            tracing::warn!(
                soft = limit.current,
                hard = limit.maximum,
                error = %e,
                "cannot raise the open-file limit"
            );
            limit.current
        }
    }
}

/// The nice value the admin API's threads fall back to when real-time scheduling is refused.
pub const ADMIN_NICE: i32 = -10;

/// How far the calling thread was raised above the data path's threads.
#[derive(Debug)]
pub enum Favour {
    /// `SCHED_FIFO` at its lowest priority (1): woken, it runs at once.
    RealTime,
    /// Nice [`ADMIN_NICE`] under the ordinary scheduler, a larger share of a busy core; with
    /// why real-time scheduling was refused.
    Nice(std::io::Error),
}

/// Why the calling thread keeps the process's priority: both requests' refusals.
#[derive(Debug)]
pub struct NotFavoured {
    pub real_time: std::io::Error,
    pub nice: rustix::io::Errno,
}

/// Raises the calling thread above the data path's threads (Linux schedules each thread on its
/// own). Under full proxy load every core is busy; a revoke sleeps in its commit's flushes and,
/// woken each time, waits for a core. At nice -10 that wait still reached milliseconds: the
/// ordinary scheduler lets the thread on the core finish its slice first. A real-time thread
/// (`SCHED_FIFO`) takes the core when it wakes, so the reply waits for the disk and little
/// else.
///
/// The cost: while a favoured thread works, the data path does not get its core back until
/// it is done (the kernel's real-time throttling leaves other threads only 5% of each second).
/// The admin threads are idle but for an operator's calls; a long call (a bulk import, a list
/// over a million tokens) holds one core, and several at once as many cores as there are
/// calls, as they nearly did at nice -10. Threads a favoured thread creates inherit its
/// priority: work that comes often and need not be quick, the metrics scrape, goes to
/// [`at_process_priority`].
///
/// Real-time scheduling needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of at least 1, and may be
/// refused regardless (systemd's `RestrictRealtime=`, a container's seccomp profile, a cgroup
/// without a real-time budget); refused, the thread asks for nice [`ADMIN_NICE`], which needs
/// `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows it; refused both, it keeps its priority and
/// the errors say why.
pub fn favour_this_thread() -> Result<Favour, NotFavoured> {
    let real_time = match thread_priority::unix::set_thread_priority_and_policy(
        thread_priority::unix::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::unix::ThreadSchedulePolicy::Realtime(
            thread_priority::unix::RealtimeThreadSchedulePolicy::Fifo,
        ),
    ) {
        Ok(()) => return Ok(Favour::RealTime),
        Err(thread_priority::Error::OS(code)) => std::io::Error::from_raw_os_error(code),
        Err(other) => std::io::Error::other(other.to_string()),
    };
    match setpriority_process(Some(rustix::thread::gettid()), ADMIN_NICE) {
        Ok(()) => Ok(Favour::Nice(real_time)),
        Err(nice) => Err(NotFavoured { real_time, nice }),
    }
}

/// Runs `job` on a blocking thread of `upkeep`, a runtime whose threads run at the process's
/// priority, and returns what it returns (`None` if it panicked). For work that a favoured
/// thread serves but must not favour: a thread inherits its creator's scheduling, so a job
/// handed to the favoured threads' own blocking pool would run real-time, holding a core from
/// the data path for as long as it takes.
pub async fn at_process_priority<T: Send + 'static>(
    upkeep: &tokio::runtime::Handle,
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    // Spawned from one of `upkeep`'s own threads, so that a new blocking thread is made by a
    // thread at the process's priority, not by the caller.
    let job = upkeep.spawn(async move { tokio::task::spawn_blocking(job).await.ok() });
    job.await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test that lowers the process's scheduling limits runs alone with the one that reads
    /// them, so that each takes the branch it means to.
    static LIMITS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_favoured_thread_is_real_time_or_nice_or_says_why_not() {
        let _alone = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        use thread_priority::unix::{
            RealtimeThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
        };
        // On a thread of its own: priorities are per thread, and stay with it.
        std::thread::spawn(|| {
            let me = Some(rustix::thread::gettid());
            let before = rustix::process::getpriority_process(me).unwrap();
            let ordinary = thread_schedule_policy().unwrap();
            assert!(matches!(ordinary, ThreadSchedulePolicy::Normal(_)));
            match favour_this_thread() {
                Ok(Favour::RealTime) => {
                    let (policy, params) = thread_priority::unix::thread_schedule_policy_param(
                        thread_priority::unix::thread_native_id(),
                    )
                    .unwrap();
                    assert_eq!(
                        policy,
                        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo)
                    );
                    assert_eq!(params.sched_priority, 1);
                }
                Ok(Favour::Nice(_)) => {
                    assert_eq!(thread_schedule_policy().unwrap(), ordinary);
                    assert_eq!(
                        rustix::process::getpriority_process(me).unwrap(),
                        ADMIN_NICE
                    );
                }
                Err(refused) => {
                    let denied = [rustix::io::Errno::PERM, rustix::io::Errno::ACCESS]
                        .map(|e| Some(e.raw_os_error()));
                    assert!(
                        denied.contains(&refused.real_time.raw_os_error()),
                        "{}",
                        refused.real_time
                    );
                    assert!(
                        [rustix::io::Errno::ACCESS, rustix::io::Errno::PERM]
                            .contains(&refused.nice),
                        "{}",
                        refused.nice
                    );
                    assert_eq!(thread_schedule_policy().unwrap(), ordinary);
                    assert_eq!(rustix::process::getpriority_process(me).unwrap(), before);
                }
            }
            // The process's main thread keeps its own.
            let main = Some(rustix::process::getpid());
            assert_eq!(rustix::process::getpriority_process(main).unwrap(), before);
        })
        .join()
        .unwrap();
        // Nor did this thread change.
        assert!(matches!(
            thread_schedule_policy().unwrap(),
            ThreadSchedulePolicy::Normal(_)
        ));
    }

    #[test]
    fn refused_real_time_a_favoured_thread_falls_back_to_nice() {
        let _alone = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        use rustix::process::Rlimit;
        use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
        std::thread::spawn(|| {
            // This thread alone gives up CAP_SYS_NICE (capabilities are per thread): the
            // limits decide, as for a service without the capability.
            let mut sets = capabilities(None).unwrap();
            sets.effective.remove(CapabilitySet::SYS_NICE);
            set_capabilities(None, sets).unwrap();
            let (rtprio, nice) = (getrlimit(Resource::Rtprio), getrlimit(Resource::Nice));
            let no_real_time = Rlimit {
                current: Some(0),
                maximum: rtprio.maximum,
            };
            setrlimit(Resource::Rtprio, no_real_time).unwrap();
            // An RLIMIT_NICE of 30 allows nice values down to -10 (systemd's LimitNICE=30).
            // Raising the hard limit needs CAP_SYS_RESOURCE; without it, both are refused.
            let nice_allowed = setrlimit(
                Resource::Nice,
                Rlimit {
                    current: Some(30),
                    maximum: nice.maximum.map(|max| max.max(30)),
                },
            )
            .is_ok();
            let favoured = favour_this_thread();
            setrlimit(Resource::Rtprio, rtprio).unwrap();
            setrlimit(Resource::Nice, nice).unwrap();

            let me = Some(rustix::thread::gettid());
            match favoured {
                Ok(Favour::Nice(refused)) => {
                    assert!(nice_allowed);
                    assert_eq!(
                        refused.raw_os_error(),
                        Some(rustix::io::Errno::PERM.raw_os_error())
                    );
                    assert_eq!(
                        rustix::process::getpriority_process(me).unwrap(),
                        ADMIN_NICE
                    );
                }
                Err(refused) => {
                    assert!(!nice_allowed, "nice -10 refused: {}", refused.nice);
                    assert_eq!(
                        refused.real_time.raw_os_error(),
                        Some(rustix::io::Errno::PERM.raw_os_error())
                    );
                }
                Ok(Favour::RealTime) => panic!("real-time without the capability or the limit"),
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn work_handed_on_by_a_favoured_thread_runs_at_the_process_priority() {
        use thread_priority::unix::{ThreadSchedulePolicy, thread_schedule_policy};
        let _alone = LIMITS.lock().unwrap_or_else(|e| e.into_inner());
        let upkeep = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let handle = upkeep.handle().clone();
        let me = Some(rustix::process::getpid());
        let process_nice = rustix::process::getpriority_process(me).unwrap();
        std::thread::spawn(move || {
            let favoured = favour_this_thread();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            // Twice: the first job makes upkeep's blocking thread, the second may reuse it.
            for _ in 0..2 {
                let (policy, nice) = runtime
                    .block_on(at_process_priority(&handle, || {
                        (
                            thread_schedule_policy().unwrap(),
                            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
                                .unwrap(),
                        )
                    }))
                    .expect("the job ran");
                assert!(
                    matches!(policy, ThreadSchedulePolicy::Normal(_)),
                    "{policy:?} (this thread: {favoured:?})"
                );
                assert_eq!(nice, process_nice, "this thread: {favoured:?}");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let in_force = raise_open_files();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(in_force, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
