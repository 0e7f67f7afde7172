//! HTTP/1.1 connections served by tollgate itself, for the requests agents send all day.
//!
//! Why not hyper's server for these: a request's head is parsed where it lies and written
//! upstream from the bytes received, with no header map built, scrubbed and encoded again (the
//! upstream's answer is written on from its own bytes too); the connection has one deadline for
//! its request heads and bodies, moved on per request rather than registered anew; and the
//! answer's head and body go out in one write. That is the work a request costs beyond the
//! check, paid on every request an agent makes.
//!
//! The requests taken here are the common ones (`request` says which). At the first request
//! that is not, the connection goes to hyper's server (`Builders::serve`) with the bytes read
//! so far put back in front: hyper reads that request from its first byte, and every later one.
//! Where a request ends is decided here only for requests whose framing leaves no doubt (one
//! `Content-Length`, or none), so the two can never disagree about it.

mod request;
mod response;
mod rewind;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::{
    AccessFields, Builders, Client, HEADER_READ_TIMEOUT, Handled, Judgement, ListenerSettings,
    ListenerState, MAX_HEADER_BYTES, Protocol, Remote, account, exchange_upstream, judge,
};
use crate::cache::Identity;
use crate::config::UpstreamAuthorization;
use crate::upstream::wire;
use request::{Checked, Credential, Hop, Parsed, Request};

/// What one read asks room for.
const READ_SIZE: usize = 8 * 1024;
/// A write buffer grown beyond this (a large answer) is not kept for the next request.
const KEPT_ANSWER: usize = 4 * 1024;
/// How long a closing connection's last bytes may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves an HTTP/1 connection to its end: here while its requests are common ones, then by
/// hyper. Each request head, the first included, must arrive within `HEADER_READ_TIMEOUT` of
/// the wait for it; a connection waiting for one closes once `closing` turns true. `watcher`
/// keeps the listener's drain waiting for the connection.
pub(super) async fn serve<I>(
    io: I,
    client: Client,
    builders: Arc<Builders>,
    watcher: Watcher,
    mut closing: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        grown: false,
        out: Vec::new(),
    };
    let deadline = tokio::time::sleep(HEADER_READ_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        // Later than the last deadline: tokio then moves the timer without registering it again.
        deadline
            .as_mut()
            .reset(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
        match conn.next_request(deadline.as_mut(), &mut closing).await {
            Some(Next::Request(request)) => {
                // Boxed: the request's state (its head, the exchange with the upstream) is held
                // only while it lasts, not by every idle connection.
                let exchange = exchange(&client, &mut conn, request, deadline.as_mut());
                if !Box::pin(exchange).await {
                    break;
                }
                conn.keep_small();
            }
            Some(Next::Other) => {
                let io = TokioIo::new(rewind::Rewind::new(conn.buf.freeze(), conn.io));
                builders
                    .serve(Protocol::Http1, io, client, watcher, closing)
                    .await;
                return;
            }
            None => break,
        }
    }
    // A clean end (TLS says `close_notify`), unless the client takes too long to hear it.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.io.shutdown()).await;
}

/// What comes next on a connection.
enum Next {
    /// A request taken here, taken from the buffer.
    Request(Request),
    /// A request for the general server, left in the buffer.
    Other,
}

/// A client connection, with the bytes read from it that no request has taken yet.
struct Conn<I> {
    io: I,
    buf: BytesMut,
    /// `buf` has held more than one read's room (a large head or body): its allocation is
    /// replaced once it is empty, rather than kept by an idle connection.
    grown: bool,
    /// What is being written to the client, kept for the next answer.
    out: Vec<u8>,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Conn<I> {
    /// The next request's head: one taken here, or one for the general server (left in the
    /// buffer); `None` once the connection is over (closed by the client, broken, too slow, or
    /// its listener closing while no whole head has come).
    async fn next_request(
        &mut self,
        mut deadline: Pin<&mut Sleep>,
        closing: &mut watch::Receiver<bool>,
    ) -> Option<Next> {
        // How far the buffer is known to hold no complete head, so that a head arriving in
        // many small reads is not parsed again from its start each time.
        let mut searched = 0;
        loop {
            // Empty lines between requests (a client may send one after a body, RFC 9112 §2.2)
            // are not a request begun. Only whole ones: a lone CR is the parser's to refuse.
            let blank = empty_lines(&self.buf);
            if blank > 0 {
                self.buf.advance(blank);
                searched = 0;
            }
            if wire::may_hold_head(&self.buf, &mut searched) {
                match request::parse(&mut self.buf) {
                    Parsed::Request(request) => return Some(Next::Request(request)),
                    Parsed::Other => return Some(Next::Other),
                    // An empty line that did not end a head: more is to come.
                    Parsed::Partial => searched = self.buf.len(),
                }
            }
            if self.buf.len() >= MAX_HEADER_BYTES {
                // hyper refuses it in its own words.
                return Some(Next::Other);
            }
            tokio::select! {
                biased;
                read = self.fill() => if !read {
                    return None;
                },
                () = deadline.as_mut() => return None,
                _ = closing.wait_for(|closing| *closing) => return None,
            }
        }
    }

    /// The next `length` bytes, the body of the request whose head was just read: within
    /// `HEADER_READ_TIMEOUT` of now. `None` if the connection ends first.
    async fn read_body(&mut self, length: usize, mut deadline: Pin<&mut Sleep>) -> Option<Bytes> {
        if self.buf.len() < length {
            self.buf.reserve(length - self.buf.len());
            self.grown = true;
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
        }
        while self.buf.len() < length {
            tokio::select! {
                biased;
                read = self.fill() => if !read {
                    return None;
                },
                () = deadline.as_mut() => return None,
            }
        }
        Some(self.buf.split_to(length).freeze())
    }

    /// Reads what the client has sent into the buffer; false at the end of the stream, or on
    /// an error.
    async fn fill(&mut self) -> bool {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.grown |= !self.buf.is_empty();
            self.buf.reserve(READ_SIZE);
        }
        matches!(self.io.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    /// Lets go of buffers a large request or answer grew, between requests.
    fn keep_small(&mut self) {
        if self.grown && self.buf.is_empty() {
            self.buf = BytesMut::new();
            self.grown = false;
        }
        if self.out.capacity() > KEPT_ANSWER {
            self.out = Vec::new();
        }
    }
}

/// One request taken here: judged, forwarded or refused, answered, counted and logged, as
/// `super::handle` does for the requests hyper serves. Its body is read only once it is to be
/// forwarded. Returns whether the connection carries on.
async fn exchange<I: AsyncRead + AsyncWrite + Unpin>(
    client: &Client,
    conn: &mut Conn<I>,
    request: Request,
    deadline: Pin<&mut Sleep>,
) -> bool {
    let state = &client.state;
    // One load per request, as in `super::handle`.
    let settings = state.settings.load_full();
    let authorization = request.values("authorization");
    let logged = AccessFields::taken(
        &settings,
        &request.method,
        Some(&request.target),
        authorization.clone(),
    );
    let Judgement {
        route,
        required,
        verdict,
    } = judge(
        state,
        &settings,
        &request.method,
        request.target.path(),
        authorization,
        request.has_cookie && request.authorizations == 0,
    );
    let mut close = request.close();
    let handled = match verdict {
        Ok((identity, outcome)) => {
            let Some(body) = conn.read_body(request.content_length, deadline).await else {
                tracing::debug!(
                    listener = %state.name,
                    "a request body did not all come: time ran out, or the connection ended"
                );
                return false;
            };
            let hop = hop(state, &settings, &client.remote, identity.as_ref());
            let sent = settings.client.send_head(
                &request.method,
                request.framing(),
                |head| request::write_upstream_head(&request, &hop, head),
                Full::new(body),
            );
            let handled = exchange_upstream(state, &settings, outcome, sent).await;
            Handled {
                identity,
                ..handled
            }
        }
        Err(refused) => {
            // A refused request's body is not waited for: passed over if it is here already,
            // and otherwise the connection closes after the answer.
            if conn.buf.len() >= request.content_length {
                conn.buf.advance(request.content_length);
            } else {
                close = true;
            }
            *refused
        }
    };
    account(state, &client.remote, logged, route, required, &handled);
    // A stopping listener answers, then closes: the client reconnects, to the process that
    // serves the port from now on. Asked as the answer goes out, as `super::handle` does.
    close |= state.draining.load(std::sync::atomic::Ordering::Acquire);
    let method = &request.method;
    let out = &mut conn.out;
    response::write(&mut conn.io, out, handled.answer, method, close).await && !close
}

/// How many bytes of empty lines (LF or CRLF) `buf` starts with.
fn empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match &buf[at..] {
            [b'\n', ..] => at += 1,
            [b'\r', b'\n', ..] => at += 2,
            _ => return at,
        }
    }
}

/// What tollgate tells the upstream about the request's hop and checked token, as
/// `super::forward` does.
fn hop<'a>(
    state: &'a ListenerState,
    settings: &'a ListenerSettings,
    remote: &'a Remote,
    identity: Option<&'a Identity>,
) -> Hop<'a> {
    Hop {
        client_ip: remote.forwarded_for.as_bytes(),
        proto: state.forwarded_proto().as_bytes(),
        checked: identity.map(|identity| Checked {
            id: identity.id.as_bytes(),
            name: identity.name.as_bytes(),
            credential: match &settings.authorization {
                UpstreamAuthorization::Forward => Credential::Forward,
                UpstreamAuthorization::Strip => Credential::Strip,
                UpstreamAuthorization::Replace(value) => Credential::Replace(value.as_bytes()),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_empty_lines_are_passed_over() {
        assert_eq!(empty_lines(b"\r\n\nGET"), 3);
        assert_eq!(empty_lines(b"GET"), 0);
        // A lone CR, or one whose LF has not come yet, stays for the parser.
        assert_eq!(empty_lines(b"\rGET"), 0);
        assert_eq!(empty_lines(b"\n\r"), 1);
    }
}
