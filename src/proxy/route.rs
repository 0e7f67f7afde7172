//! Routes: which requests need which token, which pass to the upstream's own login, and which
//! are refused outright.
//!
//! A listener has an ordered list of routes (its own, then its profile's) and a default for what
//! none of them matches. A route is a path pattern, optional methods and an access rule.
//!
//! Matching is done on the path as the upstream will understand it: percent-decoded and compared
//! case-insensitively, because common servers (Express among them) route `/API/Users` and
//! `/api/%75sers` to `/api/users`. Paths that different servers read differently (an encoded
//! `/` or `\`, dot segments, empty segments) are refused before any route is consulted: otherwise
//! `/api/auth/../users` could match a public `/api/auth/**` here and reach `/api/users` upstream.

use std::borrow::Cow;
use std::sync::Arc;

use http::Method;

use crate::token::{Action, Permission, Resource};

/// What a route asks of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token check here: the request reaches the upstream as the client sent it, and the
    /// upstream's own login applies.
    Public,
    /// Any valid token.
    Token,
    /// A valid token holding this permission (or `resource:all`).
    Require(Permission),
    /// Refused by tollgate.
    Deny,
}

/// A set of request methods; a route without `methods` matches every method, extension methods
/// included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSet(u16);

/// The methods a route may name, each with its bit.
const KNOWN_METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

impl MethodSet {
    pub const ANY: MethodSet = MethodSet(u16::MAX);

    /// Parses method names, case-insensitively. `Err` carries the name it does not know.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<MethodSet, String> {
        let mut bits = 0;
        for name in names {
            let name = name.as_ref();
            let upper = name.to_ascii_uppercase();
            let i = KNOWN_METHODS
                .iter()
                .position(|m| m.as_str() == upper)
                .ok_or_else(|| name.to_owned())?;
            bits |= 1 << i;
        }
        Ok(MethodSet(bits))
    }

    fn of(methods: &[Method]) -> MethodSet {
        let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        MethodSet::parse(&names).expect("known methods")
    }

    fn contains(self, method: &Method) -> bool {
        if self == MethodSet::ANY {
            return true;
        }
        // Standard methods are compared by their inline representation, no string work.
        match KNOWN_METHODS.iter().position(|m| m == method) {
            Some(i) => self.0 & (1 << i) != 0,
            None => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Lower case, as compared.
    Literal(Box<[u8]>),
    /// `*`: exactly one segment.
    One,
    /// `**`: every remaining segment, none included.
    Rest,
}

/// A path pattern: `/api/configs/*/toml`, `/api/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Arc<str>,
    segments: Vec<Segment>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("{text:?} must start with '/'"));
        };
        let mut segments = Vec::new();
        // "/" alone is the root: no segments.
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let segment = match *part {
                    "" => return Err(format!("{text:?} has an empty segment")),
                    "." | ".." => return Err(format!("{text:?} has a dot segment")),
                    "**" if i + 1 == parts.len() => Segment::Rest,
                    "**" => return Err(format!("{text:?}: \"**\" may only end a pattern")),
                    "*" => Segment::One,
                    p if p.contains('*') => {
                        return Err(format!("{text:?}: '*' must be a whole segment"));
                    }
                    p if p.bytes().any(|b| matches!(b, b'%' | b'\\' | b'?' | b'#')) => {
                        return Err(format!(
                            "{text:?}: write segments plainly, without '%', '\\', '?' or '#'"
                        ));
                    }
                    // Requests are matched without their segments' parameters (`normalize`),
                    // so a pattern with one would never match.
                    p if p.contains(';') => {
                        return Err(format!(
                            "{text:?}: paths are matched without their ';' parameters; leave them out"
                        ));
                    }
                    p => Segment::Literal(p.to_ascii_lowercase().into_bytes().into()),
                };
                segments.push(segment);
            }
        }
        Ok(Pattern {
            text: Arc::from(text),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn matches(&self, path: &[&[u8]]) -> bool {
        let mut rest = path;
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => match rest.split_first() {
                    Some((_, tail)) => rest = tail,
                    None => return false,
                },
                Segment::Literal(literal) => match rest.split_first() {
                    Some((first, tail)) if **first == **literal => rest = tail,
                    _ => return false,
                },
            }
        }
        rest.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub pattern: Pattern,
    pub methods: MethodSet,
    pub access: Access,
    /// Whether a browser's session (a cookie, no token) may pass to the upstream's own login
    /// here, when the listener allows sessions at all. Never on the agents' routes.
    pub sessions: bool,
}

impl Route {
    fn new(pattern: &str, methods: MethodSet, access: Access) -> Route {
        Route {
            pattern: Pattern::parse(pattern).expect("built-in patterns are valid"),
            methods,
            access,
            sessions: false,
        }
    }

    fn with_sessions(mut self) -> Route {
        self.sessions = true;
        self
    }
}

/// The answer for one request: the access rule, and the route that gave it (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub access: Access,
    /// The matched pattern, or `"default"`.
    pub route: &'a str,
    /// See `Route::sessions`; false for the default.
    pub sessions: bool,
}

/// A path that servers may read differently, refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Access,
}

/// Paths deeper than this are split into a heap vector instead of the stack array.
const INLINE_SEGMENTS: usize = 24;

impl RouteTable {
    pub fn new(routes: Vec<Route>, default: Access) -> RouteTable {
        RouteTable { routes, default }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route matching `method` and `path` decides; else the default.
    pub fn decide(&self, method: &Method, path: &str) -> Result<Decision<'_>, BadPath> {
        let normalized = normalize(path)?;
        let bytes: &[u8] = &normalized;
        let mut inline: [&[u8]; INLINE_SEGMENTS] = [&[]; INLINE_SEGMENTS];
        let heap: Vec<&[u8]>;
        let segments: &[&[u8]] = match split_segments(bytes, &mut inline) {
            Some(n) => &inline[..n],
            None => {
                heap = segments_of(bytes).collect();
                &heap
            }
        };
        let decision = self
            .routes
            .iter()
            .find(|r| r.methods.contains(method) && r.pattern.matches(segments))
            .map_or(
                Decision {
                    access: self.default,
                    route: "default",
                    sessions: false,
                },
                |r| Decision {
                    access: r.access,
                    route: r.pattern.as_str(),
                    sessions: r.sessions,
                },
            );
        Ok(decision)
    }
}

/// The segments of a normalized path (which starts with '/' and has no trailing slash, or is
/// exactly "/").
fn segments_of(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = &path[1..];
    body.split(|&b| b == b'/').filter(|_| !body.is_empty())
}

/// Splits into `out`; `None` when the path has more segments than fit.
fn split_segments<'a>(path: &'a [u8], out: &mut [&'a [u8]; INLINE_SEGMENTS]) -> Option<usize> {
    let mut n = 0;
    for segment in segments_of(path) {
        *out.get_mut(n)? = segment;
        n += 1;
    }
    Some(n)
}

/// The path as routes see it: percent-decoded, ASCII lower case, one trailing slash dropped.
/// Borrowed when nothing needs changing, which is the case for what agents send.
fn normalize(path: &str) -> Result<Cow<'_, [u8]>, BadPath> {
    let raw = path.as_bytes();
    if raw.first() != Some(&b'/') {
        return Err(BadPath);
    }
    let needs_copy = raw.iter().any(|&b| b == b'%' || b.is_ascii_uppercase());
    let mut path: Cow<'_, [u8]> = if needs_copy {
        Cow::Owned(decode_lowercase(raw)?)
    } else {
        Cow::Borrowed(raw)
    };
    if path.contains(&b';') {
        path = Cow::Owned(without_parameters(&path));
    }
    if path.len() > 1 && path.ends_with(b"/") {
        match &mut path {
            Cow::Borrowed(p) => *p = &p[..p.len() - 1],
            Cow::Owned(p) => {
                p.pop();
            }
        }
    }
    for segment in segments_of(&path) {
        if segment.is_empty() || segment == b"." || segment == b".." || segment.contains(&b'\\') {
            return Err(BadPath);
        }
    }
    Ok(path)
}

/// The path with each segment cut at its first `;`. Servers that take `;` as the start of a
/// segment's parameters (Tomcat, Jetty, Spring) read `/api;x/users` as `/api/users` and `..;` as
/// `..`: judged with its parameters, such a path would fall to another route than the one the
/// upstream serves it by. Where a server reads `;` as part of the name, the request is judged by
/// the route of the path without it, which asks for a token wherever that path does.
fn without_parameters(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for segment in segments_of(path) {
        out.push(b'/');
        out.extend(segment.iter().take_while(|&&b| b != b';'));
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

fn decode_lowercase(raw: &[u8]) -> Result<Vec<u8>, BadPath> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let hi = raw.get(i + 1).and_then(|&h| hex_value(h));
            let lo = raw.get(i + 2).and_then(|&l| hex_value(l));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(BadPath);
            };
            let decoded = hi << 4 | lo;
            // A decoded separator or NUL would make a different path for whoever decodes next;
            // so would a `%` that starts another escape (`%252e`, for a server that decodes
            // twice). Bytes beyond ASCII are refused because servers fold them differently
            // (the Kelvin sign lower-cases to `k` in some routers); agents never send them.
            let escapes_again = decoded == b'%'
                && raw.get(i + 3).is_some_and(|&b| hex_value(b).is_some())
                && raw.get(i + 4).is_some_and(|&b| hex_value(b).is_some());
            if matches!(decoded, b'/' | b'\\' | 0) || decoded >= 0x80 || escapes_again {
                return Err(BadPath);
            }
            out.push(decoded.to_ascii_lowercase());
            i += 3;
        } else {
            out.push(b.to_ascii_lowercase());
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Built-in route tables for the services tollgate is made to stand in front of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    TelegrafController,
}

impl Profile {
    pub const NAMES: &'static str = "\"telegraf-controller\"";

    pub fn parse(name: &str) -> Option<Profile> {
        match name {
            "telegraf-controller" => Some(Profile::TelegrafController),
            _ => None,
        }
    }

    /// The profile's routes. `upstream_checks_tokens` is false when the upstream will not see
    /// the client's token (`strip`, `replace`): then what the profile cannot tie to a
    /// permission is refused rather than let through on any valid token, since the upstream
    /// would act with the service credential's rights, or check nothing.
    pub fn routes(self, upstream_checks_tokens: bool) -> Vec<Route> {
        match self {
            Profile::TelegrafController => telegraf_controller_routes(upstream_checks_tokens),
        }
    }
}

/// The Controller's routes: health checks public; the agents' config fetch and heartbeat need
/// the agent preset's permissions; `/api/RESOURCE/**` needs the permission its method implies;
/// the login API and the web UI pass to the Controller's own session login. The web UI's API
/// calls may go on its session; the agents' routes never do.
fn telegraf_controller_routes(upstream_checks_tokens: bool) -> Vec<Route> {
    use Access::{Public, Require};
    let unmapped = if upstream_checks_tokens {
        Access::Token
    } else {
        Access::Deny
    };
    let read = MethodSet::of(&[Method::GET, Method::HEAD]);
    let write = MethodSet::of(&[Method::POST, Method::PUT, Method::PATCH]);
    let delete = MethodSet::of(&[Method::DELETE]);
    let any = MethodSet::ANY;

    let mut routes = vec![
        Route::new("/health/live", any, Public),
        Route::new("/health/ready", any, Public),
        Route::new("/health/leader", any, Public),
        Route::new("/health", any, Public),
        Route::new(
            "/api/configs/*/toml",
            read,
            Require(Permission::new(Resource::Configs, Action::Read)),
        ),
        Route::new(
            "/agents/heartbeat",
            MethodSet::of(&[Method::POST]),
            Require(Permission::new(Resource::Heartbeat, Action::Write)),
        ),
        Route::new("/api/auth/**", any, Public),
    ];
    for &resource in Resource::ALL {
        let pattern = format!("/api/{resource}/**");
        for (methods, action) in [
            (read, Action::Read),
            (write, Action::Write),
            (delete, Action::Delete),
        ] {
            routes.push(
                Route::new(
                    &pattern,
                    methods,
                    Require(Permission::new(resource, action)),
                )
                .with_sessions(),
            );
        }
    }
    routes.extend([
        // Other API paths and methods (OPTIONS, extension methods): no permission to tie them to.
        Route::new("/api/**", any, unmapped).with_sessions(),
        Route::new("/agents/**", any, unmapped),
        // The web UI's pages and assets; its API calls are covered above.
        Route::new("/**", read, Public),
    ]);
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, Option<&[&str]>, Access)], default: Access) -> RouteTable {
        let routes = routes
            .iter()
            .map(|(p, m, a)| Route {
                pattern: Pattern::parse(p).unwrap(),
                methods: m.map_or(MethodSet::ANY, |m| MethodSet::parse(m).unwrap()),
                access: *a,
                sessions: false,
            })
            .collect();
        RouteTable::new(routes, default)
    }

    fn access(t: &RouteTable, method: Method, path: &str) -> Result<Access, BadPath> {
        t.decide(&method, path).map(|d| d.access)
    }

    fn perm(s: &str) -> Access {
        Access::Require(Permission::parse(s).unwrap())
    }

    #[test]
    fn patterns_match_exact_one_and_rest() {
        let t = table(
            &[
                ("/", None, Access::Public),
                ("/a/*/c", None, perm("configs:read")),
                ("/b/**", None, Access::Token),
            ],
            Access::Deny,
        );
        assert_eq!(access(&t, Method::GET, "/"), Ok(Access::Public));
        assert_eq!(access(&t, Method::GET, "/a/x/c"), Ok(perm("configs:read")));
        assert_eq!(access(&t, Method::GET, "/a/x/c/"), Ok(perm("configs:read")));
        assert_eq!(access(&t, Method::GET, "/a/c"), Ok(Access::Deny));
        assert_eq!(access(&t, Method::GET, "/a/x/y/c"), Ok(Access::Deny));
        assert_eq!(access(&t, Method::GET, "/b"), Ok(Access::Token));
        assert_eq!(access(&t, Method::GET, "/b/1/2/3"), Ok(Access::Token));
        assert_eq!(access(&t, Method::GET, "/bb"), Ok(Access::Deny));
        assert_eq!(
            t.decide(&Method::GET, "/a/1/c").unwrap().route,
            "/a/*/c",
            "the log names the pattern"
        );
        assert_eq!(t.decide(&Method::GET, "/zz").unwrap().route, "default");
    }

    #[test]
    fn methods_filter_and_the_first_match_decides() {
        let t = table(
            &[
                ("/x", Some(&["get", "HEAD"]), Access::Public),
                ("/x", None, Access::Token),
            ],
            Access::Deny,
        );
        assert_eq!(access(&t, Method::HEAD, "/x"), Ok(Access::Public));
        assert_eq!(access(&t, Method::POST, "/x"), Ok(Access::Token));
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(access(&t, propfind, "/x"), Ok(Access::Token));
        assert_eq!(MethodSet::parse(&["GTE"]), Err("GTE".to_string()));
    }

    #[test]
    fn matching_is_case_insensitive_and_percent_decoded() {
        let t = table(&[("/api/Users/**", None, Access::Token)], Access::Public);
        for path in [
            "/api/users",
            "/API/USERS/1",
            "/api/%75sers",
            "/api/%55SERS/x",
        ] {
            assert_eq!(access(&t, Method::GET, path), Ok(Access::Token), "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let t = table(&[("/**", None, Access::Public)], Access::Public);
        for path in [
            "/api/auth/../users",
            "/api/auth/./x",
            "/api/auth/%2e%2e/users",
            "/api/auth/%2E./users",
            "/api/auth%2Fusers",
            "/api/auth%2fusers",
            "/api/auth%5cusers",
            "/api\\users",
            "/api/%00",
            "/api//users",
            "//api",
            "/health/..;/api/users",
            "/health/.;x/api",
            "/a/%252e%252e/b",
            "/api/to%E2%84%AAens",
            "/api/%c0%ae%c0%ae/users",
            "/bad%zz",
            "/bad%4",
            "*",
            "",
        ] {
            assert_eq!(access(&t, Method::GET, path), Err(BadPath), "{path:?}");
        }
        // Encodings of harmless characters are fine, and so is a lone encoded '%'.
        assert_eq!(access(&t, Method::GET, "/a%20b"), Ok(Access::Public));
        assert_eq!(access(&t, Method::GET, "/100%25"), Ok(Access::Public));
        assert_eq!(access(&t, Method::GET, "/a;v=1/b"), Ok(Access::Public));
        // A segment that is nothing but parameters is an empty one.
        assert_eq!(access(&t, Method::GET, "/api/;x/users"), Err(BadPath));
    }

    #[test]
    fn parameters_do_not_move_a_request_to_another_route() {
        let t = table(
            &[
                ("/api/users/**", None, Access::Token),
                ("/**", None, Access::Public),
            ],
            Access::Deny,
        );
        for path in [
            "/api/users",
            "/api;x/users",
            "/API;jsessionid=1/users",
            "/api/users;x",
            "/api/users;",
            "/api%3bx/users",
            "/api;a;b/users/7;v=2/",
            "/api/users/;",
        ] {
            assert_eq!(access(&t, Method::GET, path), Ok(Access::Token), "{path}");
        }
        assert_eq!(access(&t, Method::GET, "/;x"), Ok(Access::Public));
        assert!(Pattern::parse("/api;x/**").is_err());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "api", "/a//b", "/a/**/b", "/a*", "/a/%2e", "/a/../b", "/a/./b",
        ] {
            assert!(Pattern::parse(p).is_err(), "{p}");
        }
        assert!(Pattern::parse("/").is_ok());
        assert!(Pattern::parse("/**").is_ok());
    }

    #[test]
    fn deep_paths_match_too() {
        let t = table(&[("/a/**", None, Access::Token)], Access::Deny);
        let deep = "/a".to_string() + &"/x".repeat(100);
        assert_eq!(access(&t, Method::GET, &deep), Ok(Access::Token));
        let deep_b = "/b".to_string() + &"/x".repeat(100);
        assert_eq!(access(&t, Method::GET, &deep_b), Ok(Access::Deny));
    }

    #[test]
    fn the_controller_profile() {
        let t = RouteTable::new(Profile::TelegrafController.routes(true), Access::Deny);
        let cases: &[(Method, &str, Access)] = &[
            (Method::GET, "/health/live", Access::Public),
            (Method::GET, "/health/ready", Access::Public),
            (Method::GET, "/health/leader", Access::Public),
            (Method::GET, "/health", Access::Public),
            (Method::GET, "/api/configs/abc/toml", perm("configs:read")),
            (Method::HEAD, "/api/configs/abc/toml", perm("configs:read")),
            (Method::POST, "/agents/heartbeat", perm("heartbeat:write")),
            (Method::POST, "/api/auth/login", Access::Public),
            (Method::GET, "/api/users", perm("users:read")),
            (Method::PATCH, "/api/users/7", perm("users:write")),
            (
                Method::DELETE,
                "/api/reporting-rules/1",
                perm("reporting-rules:delete"),
            ),
            (
                Method::PUT,
                "/api/password-resets/x",
                perm("password-resets:write"),
            ),
            (Method::OPTIONS, "/api/users", Access::Token),
            (Method::GET, "/api/unknown-thing", Access::Token),
            (Method::GET, "/agents/list", Access::Token),
            (Method::GET, "/", Access::Public),
            (Method::GET, "/assets/app.js", Access::Public),
            (Method::POST, "/somewhere", Access::Deny),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                access(&t, method.clone(), path),
                Ok(*want),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn the_profile_without_the_clients_token_upstream_refuses_what_it_cannot_map() {
        let t = RouteTable::new(Profile::TelegrafController.routes(false), Access::Deny);
        assert_eq!(
            access(&t, Method::GET, "/api/users"),
            Ok(perm("users:read"))
        );
        assert_eq!(access(&t, Method::GET, "/api/me"), Ok(Access::Deny));
        assert_eq!(access(&t, Method::OPTIONS, "/api/users"), Ok(Access::Deny));
        assert_eq!(access(&t, Method::PUT, "/agents/x"), Ok(Access::Deny));
    }

    #[test]
    fn sessions_pass_only_on_the_web_uis_api_routes() {
        let t = RouteTable::new(Profile::TelegrafController.routes(true), Access::Token);
        let sessions = |m: Method, p: &str| t.decide(&m, p).unwrap().sessions;
        assert!(sessions(Method::GET, "/api/users"));
        assert!(sessions(Method::POST, "/api/configs"));
        assert!(!sessions(Method::GET, "/api/configs/1/toml"));
        assert!(!sessions(Method::POST, "/agents/heartbeat"));
        assert!(!sessions(Method::POST, "/elsewhere"));
    }
}
