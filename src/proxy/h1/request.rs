//! A client's request head, parsed where it lies, and the head tollgate writes upstream from it.
//!
//! Only the requests agents and browsers send every day are taken here: HTTP/1.1 in origin form,
//! one of the common methods, one `Host`, and a body, if any, framed by one `Content-Length` and
//! small enough to hold. Anything else (HTTP/1.0, chunked bodies, `Expect`, `Upgrade`, a malformed
//! head) is [`Parsed::Other`], and the connection goes to the general server from that request on
//! (see `super`): it then reads the same bytes, from the same request's first byte.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::Method;
use http::uri::PathAndQuery;

use crate::proxy::{MAX_HEADER_BYTES, headers};
use crate::upstream::RequestFraming;
use crate::upstream::wire::{self, ConnectionOptions, FieldSpan};

/// The most header fields a request taken here may have.
const MAX_FIELDS: usize = 64;
/// The largest request body taken here; it is read whole before the request goes upstream.
const MAX_BODY: usize = 64 * 1024;
/// The longest request target the general server accepts (longer ones get its 414).
const MAX_TARGET: usize = 65534;
/// The most fields a request taken here may name in `Connection` (`keep-alive` aside): each field
/// forwarded is looked for among them.
const MAX_CONNECTION_NAMES: usize = 8;

/// A request head, taken from the connection's buffer.
pub struct Request {
    /// The head as received, up to and including its empty line.
    head: Bytes,
    pub method: Method,
    /// The request target, checked as the general server checks it.
    pub target: PathAndQuery,
    fields: Vec<FieldSpan>,
    /// The body's length: 0 without a `Content-Length`.
    pub content_length: usize,
    has_length: bool,
    /// What `Connection` says: `close`, and the fields it names, which are then not forwarded.
    connection: ConnectionOptions,
    /// How many `Authorization` fields it has.
    pub authorizations: usize,
    pub has_cookie: bool,
}

/// What the bytes at the start of a buffer hold.
pub enum Parsed {
    /// Not yet a whole head.
    Partial,
    /// A request head taken here, now taken from the buffer.
    Request(Request),
    /// A request head for the general server, left in the buffer.
    Other,
}

/// Parses the head at the start of `buf`, and takes it from `buf` when it is one for here.
pub fn parse(buf: &mut BytesMut) -> Parsed {
    let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buf,
        &mut fields,
    ) {
        // Larger than the general server allows: it refuses it in its own words.
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEADER_BYTES => len,
        Ok(httparse::Status::Complete(_)) => return Parsed::Other,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        // Too many fields, or malformed: the general server answers those.
        Err(_) => return Parsed::Other,
    };
    if request.version != Some(1) {
        return Parsed::Other;
    }
    let Some(method) = request.method.and_then(common_method) else {
        return Parsed::Other;
    };
    let Some(target) = request
        .path
        .filter(|path| path.starts_with('/') && path.len() <= MAX_TARGET)
    else {
        return Parsed::Other;
    };

    let start = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(request.headers.len());
    let (mut hosts, mut lengths) = (0, 0);
    let mut content_length = 0;
    let mut has_cookie = false;
    let mut connection = ConnectionOptions::default();
    let mut authorizations = 0;
    for field in request.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            match decimal(field.value) {
                Some(length) if length <= MAX_BODY => content_length = length,
                _ => return Parsed::Other,
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            if !connection.read(start, field.value, MAX_CONNECTION_NAMES) {
                return Parsed::Other;
            }
        } else if name.eq_ignore_ascii_case(b"authorization") {
            authorizations += 1;
        } else if name.eq_ignore_ascii_case(b"cookie") {
            has_cookie = true;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parsed::Other;
        }
        spans.push(FieldSpan::of(start, field));
    }
    if hosts != 1 || lengths > 1 {
        return Parsed::Other;
    }
    let target_from = target.as_ptr() as usize - start;
    let target_span = target_from..target_from + target.len();

    let head = buf.split_to(len).freeze();
    let Ok(target) = PathAndQuery::from_maybe_shared(head.slice(target_span)) else {
        // Put back for the general server, which refuses it in its own words.
        let mut whole = BytesMut::from(head);
        whole.unsplit(std::mem::take(buf));
        *buf = whole;
        return Parsed::Other;
    };
    Parsed::Request(Request {
        head,
        method,
        target,
        fields: spans,
        content_length,
        has_length: lengths == 1,
        connection,
        authorizations,
        has_cookie,
    })
}

/// The methods taken here; a request with any other goes to the general server.
fn common_method(method: &str) -> Option<Method> {
    Some(match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        "HEAD" => Method::HEAD,
        "PATCH" => Method::PATCH,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

/// A `Content-Length` value: decimal digits only, no sign, no list, and short enough that it
/// cannot overflow (anything longer is beyond `MAX_BODY` anyway, and the general server's).
fn decimal(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 6 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0, |n, &digit| n * 10 + usize::from(digit - b'0')),
    )
}

impl Request {
    /// Every field, name and value, in the order received.
    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.fields
            .iter()
            .map(|span| (&self.head[span.name()], &self.head[span.value()]))
    }

    /// The values of every field named `name`, in any case.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + Clone {
        self.fields()
            .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }

    /// How the body goes upstream: as it came, with an explicit `Content-Length: 0` kept where
    /// the request says it has a body.
    pub fn framing(&self) -> RequestFraming {
        let length = self.content_length as u64;
        RequestFraming::of(&self.method, self.has_length, Some(length), length == 0)
    }

    /// Whether a field goes upstream as received: not hop-by-hop (nor named by `Connection`),
    /// not one tollgate writes itself. `Host` is written whatever `Connection` says, as the
    /// general path writes it back too.
    fn passes(&self, name: &[u8], checked: Option<&Checked<'_>>) -> bool {
        if name.eq_ignore_ascii_case(b"host") {
            return true;
        }
        let writes_authorization =
            checked.is_some_and(|c| !matches!(c.credential, Credential::Forward));
        !(headers::request_field_dropped(name, checked.is_some())
            || name.eq_ignore_ascii_case(b"content-length")
            || name.eq_ignore_ascii_case(b"x-forwarded-for")
            || (writes_authorization && name.eq_ignore_ascii_case(b"authorization"))
            || self.named_by_connection(name))
    }

    /// The client asked for the connection to close after this request.
    pub fn close(&self) -> bool {
        self.connection.close
    }

    fn named_by_connection(&self, name: &[u8]) -> bool {
        self.connection.names(&self.head, name)
    }
}

/// What tollgate adds to a request it forwards.
pub struct Hop<'a> {
    /// The client's address, for `X-Forwarded-For`.
    pub client_ip: &'a [u8],
    /// The scheme the client reached tollgate by, for `X-Forwarded-Proto`.
    pub proto: &'a [u8],
    /// The token tollgate checked, if it checked one.
    pub checked: Option<Checked<'a>>,
}

/// A checked token, as the upstream hears of it.
pub struct Checked<'a> {
    pub id: &'a [u8],
    /// Header-safe by construction (see `crate::cache`).
    pub name: &'a [u8],
    pub credential: Credential<'a>,
}

/// What becomes of the client's `Authorization` once tollgate has checked it.
pub enum Credential<'a> {
    Forward,
    Strip,
    /// The listener's own credential for the upstream, instead.
    Replace(&'a [u8]),
}

/// Writes the head of `request` for the upstream: the request line and every field that passes
/// as received, then the fields tollgate sets, then the framing. The same hygiene as the general
/// path's `headers::scrub_request` and `forward`.
pub fn write_upstream_head(request: &Request, hop: &Hop<'_>, out: &mut Vec<u8>) {
    let checked = hop.checked.as_ref();
    out.extend_from_slice(request.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(request.target.as_str().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host = None;
    for (name, value) in request.fields() {
        if !request.passes(name, checked) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            host = Some(value);
        }
        wire::field(out, name, value);
    }
    if let Some(host) = host {
        wire::field(out, headers::X_FORWARDED_HOST.as_str(), host);
    }
    // Earlier proxies' addresses are kept, unless `Connection` called the field hop-by-hop.
    let earlier = request
        .values("x-forwarded-for")
        .filter(|_| !request.named_by_connection(b"x-forwarded-for"));
    out.extend_from_slice(b"x-forwarded-for: ");
    headers::forwarded_for(earlier, hop.client_ip, out);
    out.extend_from_slice(b"\r\n");
    wire::field(out, headers::X_FORWARDED_PROTO.as_str(), hop.proto);
    if let Some(checked) = checked {
        wire::field(out, headers::TOKEN_ID.as_str(), checked.id);
        wire::field(out, headers::TOKEN_NAME.as_str(), checked.name);
        if let Credential::Replace(credential) = checked.credential {
            wire::field(out, "authorization", credential);
        }
    }
    wire::encode_framing(request.framing(), out);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(head: &str) -> Parsed {
        parse(&mut BytesMut::from(head))
    }

    fn taken(head: &str) -> Request {
        match parsed(head) {
            Parsed::Request(request) => request,
            _ => panic!("not taken: {head:?}"),
        }
    }

    fn upstream(head: &str, hop: &Hop<'_>) -> String {
        let mut out = Vec::new();
        write_upstream_head(&taken(head), hop, &mut out);
        String::from_utf8(out).unwrap()
    }

    const PLAIN: Hop<'static> = Hop {
        client_ip: b"192.0.2.7",
        proto: b"http",
        checked: None,
    };

    #[test]
    fn common_requests_are_taken_and_leave_what_follows() {
        let mut buf = BytesMut::from(
            "GET /api/config?x=1 HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer t\r\n\r\nGET /next",
        );
        let Parsed::Request(request) = parse(&mut buf) else {
            panic!("not taken");
        };
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.target.as_str(), "/api/config?x=1");
        assert_eq!(
            request.values("authorization").collect::<Vec<_>>(),
            [b"Bearer t"]
        );
        assert!(!request.close());
        assert_eq!(&buf[..], b"GET /next");

        let post = taken(
            "POST /hb HTTP/1.1\r\nhost: c\r\ncontent-length: 12\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(post.content_length, 12);
        assert!(post.close());
        assert_eq!(post.framing(), RequestFraming::Length(12));
    }

    #[test]
    fn anything_unusual_is_left_for_the_general_server() {
        for head in [
            "GET / HTTP/1.0\r\nHost: c\r\n\r\n",
            "GET http://c/ HTTP/1.1\r\nHost: c\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: c\r\n\r\n",
            "BREW /pot HTTP/1.1\r\nHost: c\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nContent-Length: 1, 1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nContent-Length: 65537\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: c\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: c\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: c\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: c\r\nX: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: c\r\nConnection: a, b, c, d, e, f, g, h, i\r\n\r\n",
        ] {
            let mut buf = BytesMut::from(head);
            assert!(matches!(parse(&mut buf), Parsed::Other), "{head:?}");
            assert_eq!(&buf[..], head.as_bytes(), "left whole: {head:?}");
        }
        // A target httparse reads but the general server's URI parser refuses (not UTF-8): put
        // back whole, for it to answer.
        let head = b"GET /a\xffb HTTP/1.1\r\nHost: c\r\n\r\nGET /next";
        let mut buf = BytesMut::from(&head[..]);
        assert!(matches!(parse(&mut buf), Parsed::Other));
        assert_eq!(&buf[..], head);
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert!(matches!(
            parsed(&format!("GET / HTTP/1.1\r\nHost: c\r\n{many}\r\n")),
            Parsed::Other
        ));
        assert!(matches!(
            parsed("GET / HTTP/1.1\r\nHost: c\r\n"),
            Parsed::Partial
        ));
    }

    #[test]
    fn the_upstream_head_keeps_what_passes_and_adds_the_hop() {
        let head = upstream(
            "GET /p?q HTTP/1.1\r\nHost: controller:8888\r\nUser-Agent: telegraf\r\n\
             Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Tollgate-Token-Id: spoof\r\n\
             X-Forwarded-Host: evil\r\nForwarded: for=evil\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-For: 10.0.0.2\r\nAccept: a\r\nAccept: b\r\n\r\n",
            &PLAIN,
        );
        assert_eq!(
            head,
            "GET /p?q HTTP/1.1\r\nHost: controller:8888\r\nUser-Agent: telegraf\r\n\
             Accept: a\r\nAccept: b\r\nx-forwarded-host: controller:8888\r\n\
             x-forwarded-for: 10.0.0.1, 10.0.0.2, 192.0.2.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn close_names_a_field_too_and_keep_alive_costs_nothing() {
        let request = taken("GET / HTTP/1.1\r\nHost: c\r\nConnection: Close\r\nClose: x\r\n\r\n");
        assert!(request.close());
        let head = upstream(
            "GET / HTTP/1.1\r\nHost: c\r\nConnection: Close\r\nClose: x\r\nX-A: 1\r\n\r\n",
            &PLAIN,
        );
        assert!(!head.contains("Close: x"), "{head}");
        assert!(head.contains("\r\nX-A: 1\r\n"), "{head}");
        // Eight names and `keep-alive` are still taken here.
        taken(
            "GET / HTTP/1.1\r\nHost: c\r\nConnection: keep-alive, a, b, c, d, e, f, g, h\r\n\r\n",
        );
    }

    #[test]
    fn connection_cannot_take_the_host_away() {
        let head = upstream(
            "GET / HTTP/1.1\r\nHost: c\r\nConnection: host, x-forwarded-for\r\n\
             X-Forwarded-For: 10.9.9.9\r\n\r\n",
            &PLAIN,
        );
        assert_eq!(
            head,
            "GET / HTTP/1.1\r\nHost: c\r\nx-forwarded-host: c\r\n\
             x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
    }

    #[test]
    fn a_checked_token_adds_identity_and_drops_method_overrides() {
        let received = "DELETE /t HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer secret\r\n\
                        X-HTTP-Method-Override: PUT\r\n\r\n";
        let checked = |credential| Hop {
            checked: Some(Checked {
                id: b"id1",
                name: b"agent 1",
                credential,
            }),
            ..PLAIN
        };
        let forwarded = upstream(received, &checked(Credential::Forward));
        assert!(forwarded.contains("Authorization: Bearer secret\r\n"));
        assert!(!forwarded.contains("Override"));
        assert!(
            forwarded.contains("x-tollgate-token-id: id1\r\nx-tollgate-token-name: agent 1\r\n")
        );
        let stripped = upstream(received, &checked(Credential::Strip));
        assert!(!stripped.to_ascii_lowercase().contains("authorization"));
        let replaced = upstream(received, &checked(Credential::Replace(b"Token upstream")));
        assert!(!replaced.contains("secret"));
        assert!(replaced.contains("authorization: Token upstream\r\n"));
        // Without a checked token, overrides and the client's credential pass as sent.
        let public = upstream(received, &PLAIN);
        assert!(public.contains("X-HTTP-Method-Override: PUT\r\n"));
        assert!(public.contains("Authorization: Bearer secret\r\n"));
    }

    #[test]
    fn the_body_is_framed_by_what_tollgate_holds() {
        let post = upstream(
            "POST /hb HTTP/1.1\r\nHost: c\r\nContent-Length: 0\r\n\r\n",
            &PLAIN,
        );
        assert!(post.ends_with("content-length: 0\r\n\r\n"));
        let post = upstream("POST /hb HTTP/1.1\r\nHost: c\r\n\r\n", &PLAIN);
        assert!(post.ends_with("content-length: 0\r\n\r\n"));
        let get = upstream("GET / HTTP/1.1\r\nHost: c\r\n\r\n", &PLAIN);
        assert!(!get.contains("content-length"));
        let put = upstream(
            "PUT / HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\n\r\n",
            &PLAIN,
        );
        assert!(put.ends_with("content-length: 5\r\n\r\n"));
    }
}
