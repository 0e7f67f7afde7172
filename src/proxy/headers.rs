//! Header hygiene between client and upstream (RFC 9110 §7.6.1): hop-by-hop headers, including
//! every header named in `Connection`, are removed in place (`remove`, never a rebuilt map, so
//! repeated headers such as `Set-Cookie` survive); identity headers a client sends under
//! tollgate's names are dropped before tollgate adds its own.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that concern one connection only, never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-tollgate-token-id");
pub const TOKEN_NAME: HeaderName = HeaderName::from_static("x-tollgate-token-name");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Headers some frameworks read as "treat this request as another method".
const METHOD_OVERRIDES: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

const OWN_PREFIX: &[u8] = b"x-tollgate-";

/// Removes hop-by-hop headers, first those that `Connection` names, then the fixed list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(PROXY_CONNECTION);
}

/// Removes method-override headers from a request whose route was chosen by its method.
pub fn remove_method_overrides(headers: &mut HeaderMap) {
    for name in METHOD_OVERRIDES {
        headers.remove(name);
    }
}

/// Removes every `X-Tollgate-*` header: only tollgate speaks under that name upstream.
pub fn remove_own_headers(headers: &mut HeaderMap) {
    // Allocates only when a client actually sent such a header.
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().as_bytes().starts_with(OWN_PREFIX))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// Removes what a client may claim about the hop tollgate itself describes: the host and scheme
/// it was reached by (tollgate sets its own `X-Forwarded-Host` and `X-Forwarded-Proto`), and
/// `Forwarded` and `X-Real-IP`, which tollgate does not maintain and which would otherwise reach
/// the upstream unchecked. `X-Forwarded-For` is kept and appended to, as load balancers in front
/// of tollgate expect.
pub fn remove_client_forwarding(headers: &mut HeaderMap) {
    headers.remove(X_FORWARDED_HOST);
    headers.remove(X_FORWARDED_PROTO);
    headers.remove(header::FORWARDED);
    headers.remove(X_REAL_IP);
}

/// Appends the client's address to `X-Forwarded-For`, keeping what earlier proxies wrote.
pub fn append_forwarded_for(headers: &mut HeaderMap, client_ip: &HeaderValue) {
    if !headers.contains_key(&X_FORWARDED_FOR) {
        // The common case (no proxy in front): the connection's value, shared, not rebuilt.
        headers.insert(X_FORWARDED_FOR, client_ip.clone());
        return;
    }
    let client_ip = client_ip.to_str().expect("built from an IP address");
    let mut value = String::new();
    for earlier in headers.get_all(&X_FORWARDED_FOR) {
        if let Ok(earlier) = earlier.to_str() {
            value.push_str(earlier);
            value.push_str(", ");
        }
    }
    value.push_str(client_ip);
    // An IP address and visible ASCII copied from valid header values.
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Custom-Hop"),
        );
        h.insert("x-custom-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get_all(header::SET_COOKIE).iter().count(), 2);
    }

    #[test]
    fn own_headers_are_dropped_whatever_their_case() {
        let mut h = HeaderMap::new();
        h.insert("X-Tollgate-Token-Id", HeaderValue::from_static("spoof"));
        h.insert("x-tollgate-anything", HeaderValue::from_static("spoof"));
        h.insert("x-other", HeaderValue::from_static("keep"));
        remove_own_headers(&mut h);
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
        remove_client_forwarding(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &HeaderValue::from_static("127.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1");
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "127.0.0.1, 10.0.0.1");
    }
}
