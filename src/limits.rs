//! The process's own limits. Every client connection and every pooled upstream connection is a
//! file descriptor, and the usual soft limit (1,024) is far below what one listener may hold
//! (`max_connections`, 16,384 by default). Like nginx's `worker_rlimit_nofile`, tollgate raises
//! its soft limit to the hard limit the operator allowed (systemd's `LimitNOFILE`, `ulimit -Hn`).

use rustix::process::{Resource, getrlimit, setrlimit};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let in_force = raise_open_files();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(in_force, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }
}
