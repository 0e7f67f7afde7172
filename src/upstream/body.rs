//! The upstream's response body, read from its connection as the client side asks for it. Once
//! the body's last byte is read, the connection goes back to the pool (when it may carry another
//! request); a body dropped before its end closes the connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::conn::Connection;
use super::pool::Pool;
use super::wire::ResponseFraming;
use super::{BoxError, Sender, UpstreamError};

/// Data up to this size is copied out of the connection's buffer, which then stays whole for
/// the next read; larger data is handed over without a copy.
const COPY_BELOW: usize = 4 * 1024;
/// The longest chunk-size line, and the most trailer bytes, accepted.
const MAX_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;

/// `B` is the request's body, of which the rest may still be going out (see `upload`).
pub struct UpstreamBody<B> {
    decoder: Decoder,
    /// Present until the body has been read to its end (or failed).
    conn: Option<Connection>,
    keep_alive: bool,
    /// The rest of a request whose answer came before it was all sent, sent as this body is
    /// read. A connection whose request is not all sent when its answer ends is not reused.
    /// Boxed: it is rare, and the body is moved several times on its way to the client.
    upload: Option<Box<(Sender, B)>>,
    pool: Arc<Pool>,
}

impl<B> UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// The body that follows a response head, whose bytes may already be in `conn`'s buffer.
    pub(super) fn new(
        framing: ResponseFraming,
        conn: Connection,
        keep_alive: bool,
        upload: Option<(Sender, B)>,
        pool: Arc<Pool>,
    ) -> UpstreamBody<B> {
        let decoder = match framing {
            ResponseFraming::Empty | ResponseFraming::Length(0) => Decoder::Done,
            ResponseFraming::Length(n) => Decoder::Length(n),
            ResponseFraming::Chunked => Decoder::Chunked(Chunked::Size),
            ResponseFraming::UntilClose => Decoder::UntilClose,
        };
        let mut body = UpstreamBody {
            decoder,
            conn: Some(conn),
            keep_alive,
            upload: upload.map(Box::new),
            pool,
        };
        if body.decoder == Decoder::Done {
            body.finish();
        }
        body
    }

    /// The body is read: its connection goes back to the pool, or is closed.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        let request_sent = self.upload.take().is_none();
        if let Some(mut conn) = self.conn.take()
            && self.keep_alive
            && request_sent
            && conn.is_reusable()
        {
            self.pool.put(conn);
        }
    }

    /// Sends more of an unfinished request. A failure ends the sending, not the answer.
    fn poll_upload(&mut self, cx: &mut Context<'_>) {
        let (Some((sender, body)), Some(conn)) = (self.upload.as_deref_mut(), self.conn.as_mut())
        else {
            return;
        };
        match sender.poll_send(cx, conn, body) {
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Ready(Err(_)) => {
                self.upload = None;
                self.keep_alive = false;
            }
            Poll::Pending => {}
        }
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        this.poll_upload(cx);
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.decoder == Decoder::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.decoder == Decoder::UntilClose => {
                    this.decoder = Decoder::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(UpstreamError::Invalid(
                        "connection closed before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(UpstreamError::Io(e))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.decoder == Decoder::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// Where a chunked body's decoder stands (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Expecting a chunk-size line.
    Size,
    /// Bytes left of the current chunk's data.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines (dropped) up to an empty line; bytes seen so far.
    Trailers(usize),
}

enum Step {
    Data(Bytes),
    NeedMore,
    Done,
}

impl Decoder {
    /// Takes what it can from `buf`: body data, the end of the body, or nothing yet.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Step, UpstreamError> {
        loop {
            match self {
                Decoder::Done => return Ok(Step::Done),
                Decoder::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(take(buf, buf.len())));
                }
                Decoder::Length(left) => {
                    let Some(data) = take_up_to(buf, left) else {
                        return Ok(Step::NeedMore);
                    };
                    if *left == 0 {
                        *self = Decoder::Done;
                    }
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunked::Data(left)) => {
                    let Some(data) = take_up_to(buf, left) else {
                        return Ok(Step::NeedMore);
                    };
                    if *left == 0 {
                        *self = Decoder::Chunked(Chunked::DataEnd);
                    }
                    return Ok(Step::Data(data));
                }
                Decoder::Chunked(Chunked::Size) => {
                    let Some(line) = take_line(buf, MAX_LINE)? else {
                        return Ok(Step::NeedMore);
                    };
                    *self = match chunk_size(&line)? {
                        0 => Decoder::Chunked(Chunked::Trailers(0)),
                        n => Decoder::Chunked(Chunked::Data(n)),
                    };
                }
                Decoder::Chunked(Chunked::DataEnd) => {
                    let Some(line) = take_line(buf, 2)? else {
                        return Ok(Step::NeedMore);
                    };
                    if !line.is_empty() {
                        return Err(UpstreamError::Invalid("chunk data longer than its size"));
                    }
                    *self = Decoder::Chunked(Chunked::Size);
                }
                Decoder::Chunked(Chunked::Trailers(seen)) => {
                    let Some(line) = take_line(buf, MAX_TRAILERS.saturating_sub(*seen))? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        *self = Decoder::Done;
                    } else {
                        *seen += line.len() + 2;
                        if *seen >= MAX_TRAILERS {
                            return Err(UpstreamError::Invalid("chunked trailers too large"));
                        }
                    }
                }
            }
        }
    }
}

/// Up to `left` bytes of `buf`, counted off `left`; `None` when `buf` is empty.
fn take_up_to(buf: &mut BytesMut, left: &mut u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    Some(take(buf, n))
}

fn take(buf: &mut BytesMut, n: usize) -> Bytes {
    if n < COPY_BELOW {
        let data = Bytes::copy_from_slice(&buf[..n]);
        buf.advance(n);
        data
    } else {
        buf.split_to(n).freeze()
    }
}

/// One line from the start of `buf`, without its line ending (CRLF, or a bare LF); `None` while
/// the line is incomplete. A line longer than `limit` is an error.
fn take_line(buf: &mut BytesMut, limit: usize) -> Result<Option<BytesMut>, UpstreamError> {
    let Some(end) = buf.iter().take(limit + 1).position(|&b| b == b'\n') else {
        if buf.len() > limit {
            return Err(UpstreamError::Invalid("chunked framing line too long"));
        }
        return Ok(None);
    };
    let mut line = buf.split_to(end + 1);
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.truncate(end - 1);
    }
    Ok(Some(line))
}

/// A chunk-size line's size: hexadecimal digits, then optional extensions (ignored).
fn chunk_size(line: &[u8]) -> Result<u64, UpstreamError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(UpstreamError::Invalid("invalid chunk size"));
    }
    Ok(digits.iter().fold(0u64, |n, &d| {
        let value = (d as char).to_digit(16).unwrap_or_default();
        n * 16 + u64::from(value)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; the data, and whether the body ended.
    fn decode(mut decoder: Decoder, input: &[u8], step: usize) -> Result<(Vec<u8>, bool), String> {
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf).map_err(|e| e.to_string())? {
                    Step::Data(d) => data.extend_from_slice(&d),
                    Step::NeedMore => break,
                    Step::Done => return Ok((data, buf.is_empty())),
                }
            }
        }
        Ok((data, false))
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_reads() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\nA \r\n0123456789\r\n0\r\nx-t: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, ended) = decode(Decoder::Chunked(Chunked::Size), wire, step).unwrap();
            assert_eq!(data, b"hello, world0123456789", "step {step}");
            assert!(ended, "step {step}");
        }
        let bare_lf = b"3\nabc\n0\n\n";
        assert_eq!(
            decode(Decoder::Chunked(Chunked::Size), bare_lf, 1).unwrap(),
            (b"abc".to_vec(), true)
        );
    }

    #[test]
    fn bad_chunked_framing_is_an_error() {
        for (wire, expected) in [
            (&b"zz\r\n"[..], "invalid chunk size"),
            (b"\r\n", "invalid chunk size"),
            (b"-1\r\n", "invalid chunk size"),
            (b"1000000000000000\r\n", "invalid chunk size"),
            (b"3\r\nabcd\r\n", "longer than its size"),
        ] {
            let error = decode(Decoder::Chunked(Chunked::Size), wire, 1).unwrap_err();
            assert!(error.contains(expected), "{wire:?}: {error}");
        }
        let long_line = vec![b'1'; MAX_LINE + 1];
        assert!(decode(Decoder::Chunked(Chunked::Size), &long_line, 512).is_err());
        let mut trailers = b"0\r\n".to_vec();
        trailers.extend(std::iter::repeat_n(b"x-t: 1\r\n", MAX_TRAILERS / 8 + 1).flatten());
        assert!(decode(Decoder::Chunked(Chunked::Size), &trailers, 64).is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (data, ended) = decode(Decoder::Length(5), b"helloEXTRA", 3).unwrap();
        assert_eq!(data, b"hello");
        assert!(!ended, "bytes after the body are left in the buffer");
        let big = vec![7u8; 3 * COPY_BELOW];
        let (data, ended) = decode(Decoder::Length(big.len() as u64), &big, big.len()).unwrap();
        assert_eq!((data, ended), (big, true));
    }
}
