//! The process's own limits. Every client connection and every pooled upstream connection is a
//! file descriptor, and the usual soft limit (1,024) is far below what one listener may hold
//! (`max_connections`, 16,384 by default). Like nginx's `worker_rlimit_nofile`, tollgate raises
//! its soft limit to the hard limit the operator allowed (systemd's `LimitNOFILE`, `ulimit -Hn`).
//!
//! And the admin API's scheduling priority: see [`favour_this_thread`].

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

/// The nice value the admin API's threads ask for.
pub const ADMIN_NICE: i32 = -10;

/// Gives the calling thread the nice value `nice` (Linux sets it per thread). Under full proxy
/// load every core is busy; a revoke sleeps in its commit's flushes and, woken, waits behind the
/// data path's threads for a core, several times over. A higher priority for the few admin
/// threads makes its reply wait for the disk only, and costs the data path nothing it would
/// notice: they are idle but for an operator's call. A lower nice value than the process's needs
/// `CAP_SYS_NICE` (or root, or an `RLIMIT_NICE` that allows it); without it the thread keeps its
/// priority, and the error says why.
pub fn favour_this_thread(nice: i32) -> rustix::io::Result<()> {
    setpriority_process(Some(rustix::thread::gettid()), nice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_favoured_thread_has_the_nice_value_or_the_reason_why_not() {
        // On a thread of its own: the nice value is per thread, and stays with it.
        std::thread::spawn(|| {
            let me = Some(rustix::thread::gettid());
            let before = rustix::process::getpriority_process(me).unwrap();
            match favour_this_thread(ADMIN_NICE) {
                Ok(()) => assert_eq!(
                    rustix::process::getpriority_process(me).unwrap(),
                    ADMIN_NICE
                ),
                Err(e) => {
                    assert!(
                        [rustix::io::Errno::ACCESS, rustix::io::Errno::PERM].contains(&e),
                        "{e}"
                    );
                    assert_eq!(rustix::process::getpriority_process(me).unwrap(), before);
                }
            }
            // The process's main thread keeps its own.
            let main = Some(rustix::process::getpid());
            assert_eq!(rustix::process::getpriority_process(main).unwrap(), before);
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
