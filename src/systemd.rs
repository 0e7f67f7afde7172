//! Tells systemd (a `Type=notify` unit) when the server is ready and when it begins to stop, so
//! that `systemctl start` returns only once the listeners serve: what a restart without a dropped
//! request waits for before it stops the old process. Without `$NOTIFY_SOCKET` this does nothing.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The listeners serve and the cache is loaded.
pub fn ready() {
    notify(b"READY=1");
}

/// Draining has begun.
pub fn stopping() {
    notify(b"STOPPING=1");
}

fn notify(state: &[u8]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.as_bytes();
    // A leading '@' names a socket in the abstract namespace.
    let addr = match path.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::path::Path::new(OsStr::from_bytes(path))),
    };
    let sent = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(state, &addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
