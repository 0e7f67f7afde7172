//! HTTP/1.1 on the upstream connection: the request head tollgate writes, and the response head
//! it reads, with the framing of the body that follows (RFC 9112 §6).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use super::UpstreamError;

/// The most header fields an upstream response may carry.
const MAX_RESPONSE_HEADERS: usize = 128;
/// The largest response head accepted.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The most field names a response's `Connection` may list (`keep-alive` aside): each field
/// passed on is looked for among them.
const MAX_CONNECTION_NAMES: usize = 32;

/// How the request's body goes on the wire. Decided from the body tollgate actually has, never
/// from the client's framing headers, so that what the upstream reads is what was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing header.
    None,
    /// `Content-Length: n`, then exactly n bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: a body whose length is not known in advance.
    Chunked,
}

impl RequestFraming {
    /// `exact` is the body's exact length when known, `ended` whether it is already known to be
    /// empty. A request that says it carries a body (a `Content-Length`, or a method whose body
    /// is its point) keeps an explicit `Content-Length: 0` when that body is empty.
    /// `has_length` says whether the request came with a `Content-Length`.
    pub fn of(method: &Method, has_length: bool, exact: Option<u64>, ended: bool) -> Self {
        match exact {
            Some(0) | None if ended => {
                let says_body =
                    has_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
                if says_body {
                    RequestFraming::Length(0)
                } else {
                    RequestFraming::None
                }
            }
            Some(length) => RequestFraming::Length(length),
            None => RequestFraming::Chunked,
        }
    }
}

/// Writes a request head in origin form. The client's own framing headers are not written:
/// `framing` replaces them. `host` is written when the request has no `Host`.
pub fn encode_request_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    host: &HeaderValue,
    framing: RequestFraming,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        field(out, header::HOST.as_str(), host.as_bytes());
    }
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        field(out, name.as_str(), value.as_bytes());
    }
    encode_framing(framing, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the field that frames a request's body, if it needs one.
pub fn encode_framing(framing: RequestFraming, out: &mut Vec<u8>) {
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(length) => {
            field(out, "content-length", itoa_u64(length).as_bytes());
        }
        RequestFraming::Chunked => field(out, "transfer-encoding", b"chunked"),
    }
}

/// Writes one header field.
pub fn field(out: &mut Vec<u8>, name: impl AsRef<[u8]>, value: &[u8]) {
    out.extend_from_slice(name.as_ref());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A number's decimal digits, without a heap allocation.
pub struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

pub fn itoa_u64(mut n: u64) -> Digits {
    let mut digits = Digits {
        bytes: [0; 20],
        start: 20,
    };
    loop {
        digits.start -= 1;
        digits.bytes[digits.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return digits;
        }
    }
}

/// How the response's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body: a response to HEAD, or a 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Up to the upstream closing the connection, which then cannot be reused.
    UntilClose,
}

/// A parsed response head, ready to hand to the client side.
pub struct ResponseHead {
    pub status: StatusCode,
    pub fields: ResponseFields,
    pub framing: ResponseFraming,
    /// Whether the connection may carry another request once this response's body is read.
    pub keep_alive: bool,
}

/// A response head's fields as the upstream sent them: the head's bytes, and where each field
/// lies in them. They stay as received rather than becoming a header map: tollgate's own server
/// side writes them on as they are, and only the general one (hyper) needs a map.
pub struct ResponseFields {
    head: Bytes,
    spans: Vec<FieldSpan>,
    connection: ConnectionOptions,
    /// A `Content-Length` beside a `Transfer-Encoding`, which overrides it (RFC 9112 §6.3): it
    /// says nothing true of the body, and is not passed on, whatever the status.
    length_overridden: bool,
}

impl ResponseFields {
    /// Every field, name (in the case it came in) and value, in the order received; but for an
    /// overridden `Content-Length`.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans()
            .map(|span| (&self.head[span.name()], &self.head[span.value()]))
    }

    fn spans(&self) -> impl Iterator<Item = &FieldSpan> {
        self.spans.iter().filter(|span| {
            !(self.length_overridden
                && self.head[span.name()].eq_ignore_ascii_case(b"content-length"))
        })
    }

    /// Whether `Connection` names the field `name` (in any case), making it hop-by-hop.
    pub fn named_by_connection(&self, name: &[u8]) -> bool {
        self.connection.names(&self.head, name)
    }

    /// A header map of the fields (see `iter`) whose names `keep` picks; the values share the
    /// head's bytes.
    pub fn header_map(&self, keep: impl Fn(&[u8]) -> bool) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.spans.len());
        for span in self.spans().filter(|span| keep(&self.head[span.name()])) {
            let name = HeaderName::from_bytes(&self.head[span.name()]);
            let value = HeaderValue::from_maybe_shared(self.head.slice(span.value()));
            // httparse took these fields only if their names are tokens and their values
            // visible ASCII, spaces, tabs and obs-text: exactly what these two accept, so that
            // both server sides pass on the same fields.
            debug_assert!(name.is_ok() && value.is_ok(), "a field httparse took");
            if let (Ok(name), Ok(value)) = (name, value) {
                map.append(name, value);
            }
        }
        map
    }
}

/// What a look at the bytes received so far found.
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// An interim (1xx) response, skipped: the final one follows.
    Interim,
    /// The final response head.
    Final(ResponseHead),
}

/// Whether `buf` may hold a complete head: it has an empty line (CRLF CRLF, or bare LFs) after
/// `searched`, which records how far it is known to hold none.
pub fn may_hold_head(buf: &[u8], searched: &mut usize) -> bool {
    // An empty line found across the last read's end starts up to two bytes before it.
    let from = searched.saturating_sub(2).min(buf.len());
    // Line ends only, found a word at a time, and only up to the first empty line: the buffer
    // often holds the body as well, which need not be looked at.
    let found = memchr::memchr_iter(b'\n', &buf[from..]).any(|at| {
        let next = &buf[from + at + 1..];
        next.starts_with(b"\n") || next.starts_with(b"\r\n")
    });
    if !found {
        *searched = buf.len();
    }
    found
}

/// Parses the response head at the start of `buf` and, once it is complete, takes it from
/// `buf`, an interim one too. `request_method` decides whether a body follows (none after HEAD).
/// After an error the connection is not used again, and `buf` holds no meaning.
pub fn take_response_head(
    buf: &mut BytesMut,
    request_method: &Method,
) -> Result<Parsed, UpstreamError> {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_RESPONSE_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut fields,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_RESPONSE_HEAD => len,
        // Complete, but larger than allowed: it came in one read.
        Ok(httparse::Status::Complete(_)) => {
            return Err(UpstreamError::Invalid("response head too large"));
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(UpstreamError::Invalid("response head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(UpstreamError::Invalid("too many response header fields"));
        }
        Err(_) => return Err(UpstreamError::Invalid("malformed response head")),
    };
    let code = response.code.unwrap_or_default();
    let status = StatusCode::from_u16(code)
        .map_err(|_| UpstreamError::Invalid("invalid response status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        // tollgate never forwards an upgrade, so an upstream has nothing to switch to.
        return Err(UpstreamError::Invalid("unrequested protocol switch"));
    }
    if status.is_informational() {
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    if *request_method == Method::CONNECT && status.is_success() {
        // A tunnel (RFC 9112 §6.3), which tollgate does not open either.
        return Err(UpstreamError::Invalid("unrequested tunnel"));
    }
    let http10 = response.version == Some(0);
    let start = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(response.headers.len());
    // What the framing and the connection's reuse depend on, gathered in one look at the names.
    let mut connection = ConnectionOptions::default();
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut length: Result<Option<u64>, &'static str> = Ok(None);
    for field in response.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            if !connection.read(start, field.value, MAX_CONNECTION_NAMES) {
                return Err(UpstreamError::Invalid(
                    "too many fields named in Connection",
                ));
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            if let Some(coding) = tokens(field.value).last() {
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            length = length.and_then(|known| agreed_length(known, field.value));
        }
        spans.push(FieldSpan::of(start, field));
    }
    // HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it unless told
    // `keep-alive`, and `close` wins over `keep-alive` (RFC 9112 §9.3).
    let mut keep_alive = if http10 {
        connection.keep_alive && !connection.close
    } else {
        !connection.close
    };
    let head = buf.split_to(len).freeze();

    let framing = if *request_method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        ResponseFraming::Empty
    } else if transfer_encoding {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3); a response with both may
        // be an attempt to desynchronise, so its connection is not used again.
        // HTTP/1.0 has no transfer codings either (RFC 9112 §6.1).
        if !matches!(length, Ok(None)) || http10 {
            keep_alive = false;
        }
        if chunked_last {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    } else {
        match length {
            Ok(Some(length)) => ResponseFraming::Length(length),
            Ok(None) => ResponseFraming::UntilClose,
            Err(message) => return Err(UpstreamError::Invalid(message)),
        }
    };
    if framing == ResponseFraming::UntilClose {
        keep_alive = false;
    }
    let length_overridden = transfer_encoding && !matches!(length, Ok(None));
    Ok(Parsed::Final(ResponseHead {
        status,
        fields: ResponseFields {
            head,
            spans,
            connection,
            length_overridden,
        },
        framing,
        keep_alive,
    }))
}

/// Where a header field's name and value lie in the head it was parsed from (a response head is
/// at most `MAX_RESPONSE_HEAD` long, a request head at most the proxy's 64 KiB, so offsets fit in
/// 32 bits).
#[derive(Clone, Copy)]
pub struct FieldSpan {
    name: (u32, u32),
    value: (u32, u32),
}

impl FieldSpan {
    /// `start` is the address of the buffer's first byte: httparse's fields are slices of it.
    pub fn of(start: usize, field: &httparse::Header<'_>) -> FieldSpan {
        let at = |bytes: &[u8]| {
            let from = bytes.as_ptr() as usize - start;
            (from as u32, (from + bytes.len()) as u32)
        };
        FieldSpan {
            name: at(field.name.as_bytes()),
            value: at(field.value),
        }
    }

    pub fn name(&self) -> Range<usize> {
        self.name.0 as usize..self.name.1 as usize
    }

    pub fn value(&self) -> Range<usize> {
        self.value.0 as usize..self.value.1 as usize
    }
}

/// What a head's `Connection` fields say (RFC 9110 §7.6.1): `close`, `keep-alive`, and the names
/// of the other fields that are hop-by-hop for this head, each kept as where it lies in the head.
/// Neither `close` nor `keep-alive` is kept as a name, so the common `Connection: keep-alive` and
/// `Connection: close` allocate nothing: a field called `Keep-Alive` is hop-by-hop anyway, and
/// one called `Close` is named by the flag.
#[derive(Default)]
pub struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    names: Vec<(u32, u32)>,
}

impl ConnectionOptions {
    /// Reads one `Connection` value, a slice of the head whose first byte is at address `start`;
    /// false once the fields read so far name more than `max` (then no more are kept).
    pub fn read(&mut self, start: usize, value: &[u8], max: usize) -> bool {
        for token in tokens(value) {
            if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
                continue;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
                continue;
            }
            if self.names.len() == max {
                return false;
            }
            let from = token.as_ptr() as usize - start;
            self.names.push((from as u32, (from + token.len()) as u32));
        }
        true
    }

    /// Whether the field `name` (in any case) is one these name; `head` is the head read.
    pub fn names(&self, head: &[u8], name: &[u8]) -> bool {
        (self.close && name.eq_ignore_ascii_case(b"close"))
            || self
                .names
                .iter()
                .any(|&(from, to)| head[from as usize..to as usize].eq_ignore_ascii_case(name))
    }
}

/// The comma-separated items of a field value, trimmed, the empty ones left out.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// The length that `known` (from earlier `Content-Length` fields) and every item of `value`
/// agree on: repeats of one value are allowed (RFC 9110 §8.6), anything else makes the response
/// invalid.
fn agreed_length(known: Option<u64>, value: &[u8]) -> Result<Option<u64>, &'static str> {
    let mut length = known;
    for item in value.split(|&b| b == b',') {
        let item = item.trim_ascii();
        let parsed = (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
            .then(|| item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
            .ok_or("invalid Content-Length")?;
        if length.is_some_and(|l| l != parsed) {
            return Err("conflicting Content-Length values");
        }
        length = Some(parsed);
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text`, and what is left of it after a head that was taken.
    fn parse(text: &[u8], method: &Method) -> (Result<Parsed, UpstreamError>, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = take_response_head(&mut buf, method);
        (parsed, buf)
    }

    fn head(text: &str, method: Method) -> ResponseHead {
        match parse(text.as_bytes(), &method) {
            (Ok(Parsed::Final(head)), rest) => {
                assert!(rest.is_empty(), "{rest:?} left of {text:?}");
                head
            }
            (Ok(_), _) => panic!("not a final head: {text:?}"),
            (Err(e), _) => panic!("{e}: {text:?}"),
        }
    }

    fn refused(text: &str) -> String {
        match parse(text.as_bytes(), &Method::GET).0 {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted: {text:?}"),
        }
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let length = head("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::GET);
        assert_eq!(length.framing, ResponseFraming::Length(5));
        assert!(length.keep_alive);

        let chunked = head(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(chunked.framing, ResponseFraming::Chunked);
        assert!(chunked.keep_alive);

        let both = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(both.framing, ResponseFraming::Chunked);
        let names: Vec<&[u8]> = both.fields.iter().map(|(name, _)| name).collect();
        assert_eq!(names, [b"transfer-encoding"], "the overridden length goes");
        assert!(
            !both.keep_alive,
            "a response with both is not trusted twice"
        );

        // Overridden whatever the status: a HEAD's answer does not pass it on either.
        let both_to_head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::HEAD,
        );
        assert_eq!(both_to_head.framing, ResponseFraming::Empty);
        assert_eq!(both_to_head.fields.iter().count(), 1);

        let close = head("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(close.framing, ResponseFraming::UntilClose);
        assert!(!close.keep_alive);

        let gzip_only = head(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
            Method::GET,
        );
        assert_eq!(gzip_only.framing, ResponseFraming::UntilClose);

        for (text, method) in [
            ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", Method::HEAD),
            ("HTTP/1.1 204 No Content\r\n\r\n", Method::GET),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                Method::GET,
            ),
        ] {
            let empty = head(text, method);
            assert_eq!(empty.framing, ResponseFraming::Empty, "{text:?}");
            assert!(empty.keep_alive);
        }
    }

    #[test]
    fn connection_reuse_follows_the_version_and_connection_header() {
        let closed = head(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(!closed.keep_alive);
        let old = head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", Method::GET);
        assert!(!old.keep_alive);
        let old_kept = head(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        );
        assert!(old_kept.keep_alive);
        // `close` wins over `keep-alive` in HTTP/1.0 too, in one field or in two.
        for fields in [
            "Connection: keep-alive, close\r\n",
            "Connection: Keep-Alive\r\nConnection: close\r\n",
        ] {
            let old_closed = head(
                &format!("HTTP/1.0 200 OK\r\n{fields}content-length: 0\r\n\r\n"),
                Method::GET,
            );
            assert!(!old_closed.keep_alive, "{fields}");
        }
    }

    #[test]
    fn repeated_equal_lengths_pass_and_others_are_refused() {
        let repeated = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n",
            Method::GET,
        );
        assert_eq!(repeated.framing, ResponseFraming::Length(3));
        assert!(
            refused("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n")
                .contains("conflicting")
        );
        for bad in ["-1", "+3", "0x10", "", "99999999999999999999", "3 3"] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {bad}\r\n\r\n");
            assert!(refused(&text).contains("Content-Length"), "{bad:?}");
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_switching_is_refused() {
        let text = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
        let (interim, rest) = parse(text, &Method::POST);
        assert!(matches!(interim, Ok(Parsed::Interim)));
        assert_eq!(&rest[..], b"HTTP/1.1 200 OK\r\n");
        assert!(
            refused("HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n").contains("switch")
        );
        let (tunnel, _) = parse(b"HTTP/1.1 200 OK\r\n\r\n", &Method::CONNECT);
        assert!(matches!(
            tunnel,
            Err(UpstreamError::Invalid("unrequested tunnel"))
        ));
    }

    #[test]
    fn a_head_is_looked_for_only_once_it_can_be_complete() {
        let complete = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        for split in 1..complete.len() {
            let mut searched = 0;
            assert!(
                !may_hold_head(&complete[..split], &mut searched),
                "at {split}"
            );
            assert_eq!(searched, split);
            assert!(may_hold_head(complete, &mut searched), "after {split}");
        }
        let mut searched = 0;
        assert!(may_hold_head(
            b"HTTP/1.1 200 OK\ncontent-length: 0\n\n",
            &mut searched
        ));
        let old_chunked = head(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert!(
            !old_chunked.keep_alive,
            "HTTP/1.0 with a transfer coding is not trusted twice"
        );
    }

    #[test]
    fn a_head_is_taken_with_its_fields_and_the_body_stays() {
        let text = b"HTTP/1.1 200 OK\r\nX-A:  1 \r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\
                     content-length: 4\r\n\r\nbody";
        let (parsed, rest) = parse(text, &Method::GET);
        let Ok(Parsed::Final(head)) = parsed else {
            panic!("not a final head")
        };
        assert_eq!(&rest[..], b"body");
        let map = head.fields.header_map(|_| true);
        assert_eq!(map["x-a"], "1");
        let cookies: Vec<_> = map.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(head.framing, ResponseFraming::Length(4));
    }

    #[test]
    fn empty_lines_before_the_status_line_are_skipped() {
        // The empty line at the start is found first; the parse then waits for the rest.
        let mut searched = 0;
        assert!(may_hold_head(b"\r\n\r\nHTTP/1.1 200 OK\r\n", &mut searched));
        let (partial, rest) = parse(b"\r\n\r\nHTTP/1.1 200 OK\r\n", &Method::GET);
        assert!(matches!(partial, Ok(Parsed::Partial)));
        assert_eq!(rest.len(), 21, "nothing taken");
        let full = head(
            "\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            Method::GET,
        );
        assert_eq!(full.framing, ResponseFraming::Length(0));
    }

    #[test]
    fn partial_malformed_and_oversized_heads() {
        let (partial, rest) = parse(b"HTTP/1.1 200 OK\r\ncontent-le", &Method::GET);
        assert!(matches!(partial, Ok(Parsed::Partial)));
        assert_eq!(&rest[..], b"HTTP/1.1 200 OK\r\ncontent-le", "nothing taken");
        assert!(refused("HTTP/1.1 200 OK\r\nbad header\r\n\r\n").contains("malformed"));
        assert!(refused("HTTP/1.1 200 OK\r\n folded: no\r\n\r\n").contains("malformed"));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(refused(&huge).contains("too large"));
        let huge_and_complete = format!("{huge}\r\n\r\n");
        assert!(refused(&huge_and_complete).contains("too large"));
        let many: String = (0..=MAX_RESPONSE_HEADERS)
            .map(|i| format!("x-{i}: 1\r\n"))
            .collect();
        assert!(refused(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).contains("too many"));
        // Each field passed on is looked for among those `Connection` names: a bounded list.
        let names = |n: usize| {
            (0..n)
                .map(|i| format!("x-{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let listed = format!(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, {}\r\ncontent-length: 0\r\n\r\n",
            names(MAX_CONNECTION_NAMES)
        );
        assert!(
            head(&listed, Method::GET)
                .fields
                .named_by_connection(b"X-31")
        );
        let too_many = format!(
            "HTTP/1.1 200 OK\r\nConnection: {}\r\ncontent-length: 0\r\n\r\n",
            names(MAX_CONNECTION_NAMES + 1)
        );
        assert!(refused(&too_many).contains("named in Connection"));
    }

    #[test]
    fn request_framing_comes_from_the_body_tollgate_holds() {
        let (none, with_length) = (false, true);
        assert_eq!(
            RequestFraming::of(&Method::GET, none, Some(0), true),
            RequestFraming::None
        );
        assert_eq!(
            RequestFraming::of(&Method::GET, with_length, Some(0), true),
            RequestFraming::Length(0)
        );
        assert_eq!(
            RequestFraming::of(&Method::POST, none, Some(0), true),
            RequestFraming::Length(0)
        );
        assert_eq!(
            RequestFraming::of(&Method::POST, none, Some(12), false),
            RequestFraming::Length(12)
        );
        assert_eq!(
            RequestFraming::of(&Method::POST, with_length, None, false),
            RequestFraming::Chunked
        );
    }

    #[test]
    fn request_head_replaces_the_clients_framing() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.append("x-a", HeaderValue::from_static("1"));
        headers.append("x-a", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        let host = HeaderValue::from_static("upstream:80");
        encode_request_head(
            &Method::POST,
            "/a?b=c",
            &headers,
            &host,
            RequestFraming::Length(1234567890),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=c HTTP/1.1\r\nhost: upstream:80\r\nx-a: 1\r\nx-a: 2\r\n\
             content-length: 1234567890\r\n\r\n"
        );
        assert_eq!(itoa_u64(0).as_bytes(), b"0");
        assert_eq!(
            itoa_u64(u64::MAX).as_bytes(),
            u64::MAX.to_string().as_bytes()
        );
    }
}
