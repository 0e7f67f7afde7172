//! Header hygiene between client and upstream (RFC 9110 §7.6.1): hop-by-hop headers, including
//! every header named in `Connection`, never cross. A request's header map loses them in place
//! (`remove`, never a rebuilt map); an answer's fields are picked from those received, in their
//! order; either way repeated headers such as `Set-Cookie` survive. Identity headers a client
//! sends under tollgate's names are dropped before tollgate adds its own.

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use crate::upstream::ResponseFields;

pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-tollgate-token-id");
pub const TOKEN_NAME: HeaderName = HeaderName::from_static("x-tollgate-token-name");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that concern one connection only, never forwarded in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What a client may claim about the hop tollgate itself describes: the host and scheme it was
/// reached by (tollgate sets its own `X-Forwarded-Host` and `X-Forwarded-Proto`), and `Forwarded`
/// and `X-Real-IP`, which tollgate does not maintain and which would otherwise reach the upstream
/// unchecked. `X-Forwarded-For` is not among them: it is appended to, as load balancers in front
/// of tollgate expect.
const CLIENT_FORWARDING: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
];

/// Headers some frameworks and servers read as "serve this other path" (Symfony, Zend, IIS's URL
/// rewrite): the route, and the permission it needs, were chosen by the request's own path, and
/// an upstream that honoured one would serve a token route on a public route's check.
const PATH_OVERRIDES: &[&str] = &["x-original-url", "x-rewrite-url"];

/// Headers some frameworks read as "treat this request as another method".
const METHOD_OVERRIDES: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// `X-Tollgate-*`: only tollgate speaks under that name upstream.
const OWN_PREFIX: &[u8] = b"x-tollgate-";

/// Whether `name`, in any case, is one of `names` (written in lower case). An `_` in `name`
/// stands for a `-`: servers behind CGI-style interfaces (CGI, WSGI, PHP, Rack) hear
/// `X_Tollgate_Token_Id` and `X-Tollgate-Token-Id` as the same variable, so a field tollgate
/// drops by name must go under either spelling.
fn is_among(name: &[u8], names: &[&str]) -> bool {
    names.iter().any(|known| spelled_as(name, known.as_bytes()))
}

/// `name` is `known` (lower case), in any case, with `_` for any `-`.
fn spelled_as(name: &[u8], known: &[u8]) -> bool {
    name.len() == known.len()
        && name
            .iter()
            .zip(known)
            .all(|(&n, &k)| n.to_ascii_lowercase() == k || (n == b'_' && k == b'-'))
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    is_among(name, HOP_BY_HOP)
}

fn is_own(name: &[u8]) -> bool {
    name.get(..OWN_PREFIX.len())
        .is_some_and(|prefix| spelled_as(prefix, OWN_PREFIX))
}

/// `X-Forwarded-For` spelled with an `_`: tollgate appends the client's address to the field
/// itself, but a CGI-style server would hear this twin as the same variable, without it.
fn is_forwarded_for_twin(name: &[u8]) -> bool {
    // The length is compared first, and most names differ there.
    spelled_as(name, b"x-forwarded-for") && name.contains(&b'_')
}

/// Removes from a request what must not reach the upstream: hop-by-hop headers, tollgate's own
/// names, the client's claims about this hop, path overrides, and, when tollgate checked a token
/// (`token_checked`), method overrides: the route and the permission it needs were chosen by
/// the request's method, and an override would have the upstream do another one (a DELETE with
/// only the permission to write).
pub fn scrub_request(headers: &mut HeaderMap, token_checked: bool) {
    remove_where(headers, |name| request_field_dropped(name, token_checked));
}

/// Whether `scrub_request` removes a request field by its name (in any case) alone; those that
/// `Connection` names go as well.
pub fn request_field_dropped(name: &[u8], token_checked: bool) -> bool {
    is_hop_by_hop(name)
        || is_own(name)
        || is_among(name, CLIENT_FORWARDING)
        || is_among(name, PATH_OVERRIDES)
        || is_forwarded_for_twin(name)
        || (token_checked && is_among(name, METHOD_OVERRIDES))
}

/// Whether the field `name` of an upstream's answer with `fields` reaches the client: it is not
/// hop-by-hop, and its `Connection` does not name it. Both server sides pass on these.
pub fn response_field_forwarded(fields: &ResponseFields, name: &[u8]) -> bool {
    !is_hop_by_hop(name) && !fields.named_by_connection(name)
}

/// The fields of an upstream's answer that reach the client, in the order received.
pub fn forwarded_response(fields: &ResponseFields) -> impl Iterator<Item = (&[u8], &[u8])> {
    fields
        .iter()
        .filter(|(name, _)| response_field_forwarded(fields, name))
}

/// Removes every header whose (lowercase) name `doomed` picks, and those that a `Connection`
/// header names. One look at each name present: a request rarely carries any of these, and a
/// hash lookup for every name that could be there cost more than the whole scan.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&[u8]) -> bool) {
    // Allocates only when something is to go.
    let mut found: Vec<HeaderName> = headers
        .keys()
        .filter(|name| doomed(name.as_str().as_bytes()))
        .cloned()
        .collect();
    if found.contains(&header::CONNECTION) {
        found.extend(
            headers
                .get_all(header::CONNECTION)
                .iter()
                // Read as bytes, as tollgate's own side reads it (`wire::ConnectionOptions`): a
                // value with obs-text in it still names the fields it lists.
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok()),
        );
    }
    for name in found {
        headers.remove(name);
    }
}

/// Appends the client's address to `X-Forwarded-For`, keeping what earlier proxies wrote.
pub fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    // One lookup whether the header is there or not.
    let mut earlier = match headers.entry(X_FORWARDED_FOR) {
        Entry::Vacant(slot) => {
            // The common case (no proxy in front): the connection's value, shared, not rebuilt.
            slot.insert(client_ip.clone());
            return;
        }
        Entry::Occupied(earlier) => earlier,
    };
    let mut value = Vec::new();
    forwarded_for(
        earlier.iter().map(HeaderValue::as_bytes),
        client_ip.as_bytes(),
        &mut value,
    );
    // An IP address and visible ASCII copied from valid header values.
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        earlier.insert(value);
    }
}

/// Writes the `X-Forwarded-For` value of a request that came with the values `earlier`: those
/// of them that are visible ASCII, in their order, then the client's address.
pub fn forwarded_for<'a>(
    earlier: impl Iterator<Item = &'a [u8]>,
    client_ip: &[u8],
    out: &mut Vec<u8>,
) {
    for earlier in earlier.filter(|value| {
        value
            .iter()
            .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    }) {
        out.extend_from_slice(earlier);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::wire::{Parsed, take_response_head};

    /// The fields of `head` that reach the client, as text.
    fn forwarded(head: &str) -> Vec<String> {
        let mut buf = bytes::BytesMut::from(head);
        let Ok(Parsed::Final(head)) = take_response_head(&mut buf, &http::Method::GET) else {
            panic!("not a final head: {head:?}");
        };
        forwarded_response(&head.fields)
            .map(|(name, value)| {
                format!(
                    "{}: {}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value)
                )
            })
            .collect()
    }

    #[test]
    fn fields_dropped_by_name_go_when_spelled_with_underscores_too() {
        for name in [
            "X_Tollgate_Token_Id",
            "x_tollgate-token-name",
            "X_FORWARDED_PROTO",
            "x_forwarded_host",
            "X_Real_IP",
            "X_Forwarded_For",
            "Proxy_Connection",
            "keep_alive",
        ] {
            assert!(request_field_dropped(name.as_bytes(), false), "{name}");
        }
        assert!(request_field_dropped(b"X_HTTP_Method_Override", true));
        // Path overrides go whether or not a token was checked: on a public route they would
        // reach a token route's path.
        for name in ["X-Original-URL", "x-rewrite-url", "X_Original_URL"] {
            assert!(request_field_dropped(name.as_bytes(), false), "{name}");
        }
        assert!(!request_field_dropped(b"X_HTTP_Method_Override", false));
        // The field itself is appended to, not dropped; other names with `_` pass.
        for name in [
            "x-forwarded-for",
            "X_Request_Id",
            "accept_language",
            "x_forwarded",
        ] {
            assert!(!request_field_dropped(name.as_bytes(), true), "{name}");
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let kept = forwarded(
            "HTTP/1.1 200 OK\r\nConnection: close, X-Custom-Hop\r\nx-custom-hop: 1\r\n\
             Keep-Alive: timeout=5\r\nTE: trailers\r\nSet-Cookie: a=1\r\nProxy-Connection: x\r\n\
             Upgrade: h2c\r\nTrailer: x-t\r\nProxy-Authenticate: Basic\r\nset-cookie: b=2\r\n\
             X-Custom: Kept As Sent\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(
            kept,
            [
                "Set-Cookie: a=1",
                "set-cookie: b=2",
                "X-Custom: Kept As Sent",
                "content-length: 0"
            ]
        );
        // `Connection: keep-alive` names no other field; a length that a transfer coding
        // overrides goes, the coding itself being hop-by-hop.
        let kept = forwarded(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\n\
             Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(kept, ["X-A: 1"]);
        // `close` names a field too.
        let kept = forwarded(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nClose: x\r\nX-A: 1\r\n\
             Content-Length: 0\r\n\r\n",
        );
        assert_eq!(kept, ["X-A: 1", "Content-Length: 0"]);
    }

    #[test]
    fn own_headers_are_dropped_whatever_their_case() {
        let mut h = HeaderMap::new();
        h.insert("X-Tollgate-Token-Id", HeaderValue::from_static("spoof"));
        h.insert("x-tollgate-anything", HeaderValue::from_static("spoof"));
        h.insert("x-other", HeaderValue::from_static("keep"));
        scrub_request(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn client_claims_about_this_hop_go() {
        let mut h = HeaderMap::new();
        for name in [
            "x-forwarded-host",
            "x-forwarded-proto",
            "forwarded",
            "x-real-ip",
        ] {
            h.insert(name, HeaderValue::from_static("evil.example"));
        }
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        scrub_request(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn method_overrides_go_only_where_a_token_was_checked() {
        let overrides = || {
            let mut h = HeaderMap::new();
            for name in [
                "X-HTTP-Method-Override",
                "x-http-method",
                "x-method-override",
            ] {
                h.insert(name, HeaderValue::from_static("DELETE"));
            }
            h
        };
        let mut public = overrides();
        scrub_request(&mut public, false);
        assert_eq!(public.len(), 3);
        let mut checked = overrides();
        scrub_request(&mut checked, true);
        assert!(checked.is_empty());
    }

    #[test]
    fn a_request_loses_its_hop_by_hop_headers_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("controller"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Hop"),
        );
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.append(header::ACCEPT, HeaderValue::from_static("text/plain"));
        h.append(header::ACCEPT, HeaderValue::from_static("application/json"));
        scrub_request(&mut h, true);
        let mut left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization", "host"]);
        assert_eq!(h.get_all(header::ACCEPT).iter().count(), 2);
    }

    #[test]
    fn connection_names_fields_even_with_obs_text_in_its_value() {
        // As tollgate's own side reads it: the value's bytes, not only a visible-ASCII value.
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b"x-a, \x80").unwrap(),
        );
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        scrub_request(&mut h, true);
        let left: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        assert_eq!(left, ["x-b"]);
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &HeaderValue::from_static("127.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1, 10.0.0.1");

        // Several fields from earlier proxies become one, in their order, with ours last.
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.1"));
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("192.0.2.2, 192.0.2.3"),
        );
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        let values: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(values, ["192.0.2.1, 192.0.2.2, 192.0.2.3, 10.0.0.1"]);
    }
}
