//! The answer to a client: the response's head, then its body as it comes, in HTTP/1.1.

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::super::{Answer, headers};
use crate::upstream::{UpstreamBody, UpstreamResponse, wire};

/// Body data gathered before a write, at most.
const GATHER: usize = 16 * 1024;

/// Writes `answer` to the client, as the answer to a `method` request; with `close`, it says
/// the connection closes after it. The upstream's fields go out as they came, but for the
/// hop-by-hop ones. `out` is the connection's write buffer, empty on return. Returns whether the
/// whole answer went out: if not (the client's side or the body failed), the connection cannot
/// carry another request.
pub async fn write<I, B>(
    io: &mut I,
    out: &mut Vec<u8>,
    answer: Answer<B>,
    method: &Method,
    close: bool,
) -> bool
where
    I: AsyncWrite + Unpin,
    UpstreamBody<B>: Body<Data = Bytes> + Unpin,
{
    match answer {
        Answer::Upstream(UpstreamResponse {
            status,
            fields,
            body,
        }) => {
            let framing = Framing::of(method, status, &body);
            write_head(
                out,
                status,
                headers::forwarded_response(&fields),
                framing,
                close,
            );
            // The head's bytes share the upstream connection's read buffer: let go of them
            // before the body is read, so that the buffer can take the body's bytes in place.
            drop(fields);
            write_body(io, out, body, framing).await
        }
        Answer::Own(response) => write_response(io, out, response, method, close).await,
    }
}

/// Writes a response whose fields are a header map (tollgate's own answers); as [`write`].
async fn write_response<I, B>(
    io: &mut I,
    out: &mut Vec<u8>,
    response: Response<B>,
    method: &Method,
    close: bool,
) -> bool
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    let (parts, body) = response.into_parts();
    let framing = Framing::of(method, parts.status, &body);
    let fields = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    write_head(out, parts.status, fields, framing, close);
    write_body(io, out, body, framing).await
}

/// Writes the body after its head, which `out` holds; as [`write`].
async fn write_body<I, B>(io: &mut I, out: &mut Vec<u8>, mut body: B, framing: Framing) -> bool
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
{
    if matches!(framing, Framing::Head(_) | Framing::None) {
        return send(io, out).await;
    }

    let chunked = framing == Framing::Chunked;
    loop {
        // Whatever body is ready goes out with what is already pending, in one write; the head
        // goes out at once if the body is not ready.
        let ended = poll_fn(|cx| {
            loop {
                match Pin::new(&mut body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            if chunked {
                                encode_chunk(&data, out);
                            } else {
                                out.extend_from_slice(&data);
                            }
                        }
                        if out.len() >= GATHER {
                            return Poll::Ready(Some(false));
                        }
                    }
                    Poll::Ready(None) => {
                        if chunked {
                            out.extend_from_slice(b"0\r\n\r\n");
                        }
                        return Poll::Ready(Some(true));
                    }
                    // The upstream's connection broke mid-body: the client sees the answer cut.
                    Poll::Ready(Some(Err(_))) => return Poll::Ready(None),
                    Poll::Pending if out.is_empty() => return Poll::Pending,
                    Poll::Pending => return Poll::Ready(Some(false)),
                }
            }
        })
        .await;
        let Some(ended) = ended else {
            out.clear();
            return false;
        };
        if !send(io, out).await {
            return false;
        }
        if ended {
            return true;
        }
    }
}

/// How an answer's body is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    /// The answer to a HEAD: no body follows, and the fields say what a GET's would be: the
    /// response's own, or else the length of the body it holds (tollgate's own answers).
    Head(Option<u64>),
    /// A status without a body (1xx, 204, 304): no framing fields at all.
    None,
}

impl Framing {
    /// The framing of the answer with `status` and `body` to a `method` request.
    fn of<B: Body>(method: &Method, status: StatusCode, body: &B) -> Framing {
        if *method == Method::HEAD {
            Framing::Head(body.size_hint().exact())
        } else if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::None
        } else {
            match body.size_hint().exact() {
                Some(length) => Framing::Length(length),
                None => Framing::Chunked,
            }
        }
    }
}

/// Writes a status line and fields: the response's own (name and value, names in any case), but
/// for `Connection`, which `close` decides, and for the framing fields, which `framing` decides.
/// With a `Date` when the response has none.
fn write_head<'f>(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
    framing: Framing,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let own_framing = matches!(framing, Framing::Head(_));
    let (mut dated, mut framed) = (false, false);
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"date") {
            dated = true;
        } else if name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"transfer-encoding")
        {
            framed = true;
            if !own_framing {
                continue;
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            continue;
        }
        wire::field(out, name, value);
    }
    if !dated {
        write_date(out);
    }
    let length = match framing {
        Framing::Length(length) => Some(length),
        Framing::Head(Some(length)) if length > 0 && !framed => Some(length),
        Framing::Chunked => {
            wire::field(out, "transfer-encoding", b"chunked");
            None
        }
        Framing::Head(_) | Framing::None => None,
    };
    if let Some(length) = length {
        wire::field(out, "content-length", wire::itoa_u64(length).as_bytes());
    }
    if close {
        wire::field(out, "connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
}

fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = data.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// `Date`, formatted once a second per thread.
fn write_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(formatted_at, text)| {
        if *formatted_at != second {
            *formatted_at = second;
            *text = httpdate::fmt_http_date(now);
        }
        wire::field(out, "date", text.as_bytes());
    });
}

/// Writes out what `out` holds; false if the client's side failed.
async fn send<I: AsyncWrite + Unpin>(io: &mut I, out: &mut Vec<u8>) -> bool {
    let sent = io.write_all(out).await;
    out.clear();
    sent.is_ok() && io.flush().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use http_body::Frame;
    use http_body_util::Full;
    use std::collections::VecDeque;
    use std::convert::Infallible;

    async fn written<B>(response: Response<B>, method: Method, close: bool) -> String
    where
        B: Body<Data = Bytes> + Unpin,
    {
        let mut io = Vec::new();
        let mut out = Vec::new();
        assert!(write_response(&mut io, &mut out, response, &method, close).await);
        assert!(out.is_empty());
        String::from_utf8(io).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn a_known_length_is_written_once_and_the_body_follows() {
        let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, "999".parse().unwrap());
        response.headers_mut().insert(
            header::DATE,
            "Thu, 03 Dec 2026 12:00:00 GMT".parse().unwrap(),
        );
        response
            .headers_mut()
            .append(header::SET_COOKIE, "a=1".parse().unwrap());
        response
            .headers_mut()
            .append(header::SET_COOKIE, "b=2".parse().unwrap());
        let text = runtime().block_on(written(response, Method::GET, false));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\nset-cookie: a=1\r\n\
             set-cookie: b=2\r\ncontent-length: 5\r\n\r\nhello"
        );
    }

    #[test]
    fn an_unknown_length_is_chunked_and_close_is_said() {
        let body = Frames(["ab", "", "cdefghijklmnopq"].map(Bytes::from).into());
        let text = runtime().block_on(written(Response::new(body), Method::GET, true));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("\r\ndate: "));
        assert!(head.ends_with("transfer-encoding: chunked\r\nconnection: close"));
        assert_eq!(body, "2\r\nab\r\nf\r\ncdefghijklmnopq\r\n0\r\n\r\n");
    }

    #[test]
    fn head_and_bodiless_statuses_keep_their_fields_and_send_no_body() {
        let mut response = Response::new(Full::new(Bytes::new()));
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, "42".parse().unwrap());
        let text = runtime().block_on(written(response, Method::HEAD, false));
        assert!(text.contains("\r\ncontent-length: 42\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text}");
        // tollgate's own answer to a HEAD says the length its GET would have.
        let own = Response::new(Full::new(Bytes::from_static(b"{\"error\":\"x\"}")));
        let text = runtime().block_on(written(own, Method::HEAD, false));
        assert!(text.contains("\r\ncontent-length: 13\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text}");
        for status in [StatusCode::NOT_MODIFIED, StatusCode::NO_CONTENT] {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, "42".parse().unwrap());
            let text = runtime().block_on(written(response, Method::GET, false));
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{text}"
            );
            assert!(!text.contains("content-length"), "{text}");
            assert!(text.ends_with("\r\n\r\n"));
        }
    }

    /// The head written for the upstream's answer `head` to a `method` request whose body is
    /// `length` long.
    fn forwarded_head(head: &str, method: Method, length: u64) -> String {
        let mut buf = bytes::BytesMut::from(head);
        let Ok(wire::Parsed::Final(head)) = wire::take_response_head(&mut buf, &method) else {
            panic!("not a final head: {head:?}");
        };
        let framing = if method == Method::HEAD {
            Framing::Head(Some(length))
        } else {
            Framing::Length(length)
        };
        let mut out = Vec::new();
        let fields = headers::forwarded_response(&head.fields);
        write_head(&mut out, head.status, fields, framing, false);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_upstreams_fields_go_on_as_received_less_the_hop_by_hop_ones() {
        let text = forwarded_head(
            "HTTP/1.1 200 OK\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\nConnection: x-hop\r\n\
             X-Hop: 1\r\nSet-Cookie: a=1\r\nKeep-Alive: timeout=5\r\nContent-Length: 9\r\n\r\n",
            Method::GET,
            9,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nDate: Thu, 03 Dec 2026 12:00:00 GMT\r\nSet-Cookie: a=1\r\n\
             content-length: 9\r\n\r\n"
        );
        // A HEAD's answer keeps the upstream's length, the length its GET would have.
        let text = forwarded_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
            Method::HEAD,
            0,
        );
        assert!(text.contains("\r\nContent-Length: 42\r\n"), "{text}");
        assert!(!text.contains("content-length"), "one length only: {text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        // One that a transfer coding overrode does not go on.
        let text = forwarded_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 42\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::HEAD,
            0,
        );
        assert!(
            !text.to_ascii_lowercase().contains("content-length"),
            "{text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("transfer-encoding"),
            "{text}"
        );
    }

    /// A body of unknown length whose frames are each ready in turn.
    struct Frames(VecDeque<Bytes>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.0.pop_front().map(|data| Ok(Frame::data(data))))
        }
    }
}
