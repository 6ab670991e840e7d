//! The HTTP gate: which route rule a request reaches, read from the raw request target.
//!
//! Every host gate (ASGI, Express, the Elixir gate, the C ABI's `kl_authorize_request`)
//! hands the core the request's method and its request target *as sent on the wire*
//! (`/a/b%20c?x=1`, or the absolute form `http://host/a?x=1`), through
//! [`crate::Target::request`]. The core takes the path part, decodes percent-escapes once,
//! and matches the rules. A target whose meaning depends on how a router normalises it is
//! refused with [`Error::AmbiguousPath`] (400 `ambiguous_path`) rather than guessed at: the
//! gate must charge the rule of the handler the app runs, whatever the app's router.
//!
//! # What is refused
//!
//! In the target as sent:
//!
//! - anything but an origin-form (`/…`) or absolute-form (`http://host/…`,
//!   `https://host/…`) target: `*`, `host:443`, a relative path, the empty string;
//! - a space, a control character or DEL anywhere, and a `#` anywhere (a fragment is
//!   never sent);
//! - in the path: a byte outside printable ASCII, a `\`, a `;` (path parameters such as
//!   `;jsessionid=x`, which some servers strip and others keep), and a `%` not followed by
//!   two hex digits;
//! - an empty segment anywhere but at the end (`//a`, `/a//b`).
//!
//! After decoding each segment once:
//!
//! - an encoded `/`, `?`, `#`, `\`, `;`, `%` (double encoding, `%252e`), NUL or other
//!   control character;
//! - bytes that are not valid UTF-8 (overlong forms such as `%c0%ae`, surrogates);
//! - a `.` or `..` segment, in any encoding (`.`, `%2e`, `%2E`, `.%2e`, …).
//!
//! Then the rules are matched under every reading a router could make, and the target is
//! refused unless all of them select the same rule (or all select none):
//!
//! - a segment with percent-escapes is read decoded (Starlette, Plug) and as sent
//!   (Express matches the raw path): `/%73end` is refused when a rule names `/send`, and
//!   accepted when only a `:param` or `*` could match it;
//! - a trailing `/` is read as absent (`/a/` as `/a`, Express's default), and as an empty
//!   last segment that a `*` swallows (Starlette's `{p:path}`, `express.static`), or that
//!   a `:param` would too: `/files/` is refused when `GET /files/*` and `GET /*` differ.
//!
//! # Method and case
//!
//! `HEAD` matches `GET` rules and is charged like `GET`: frameworks serve `HEAD` with the
//! `GET` handler. An exact `HEAD` rule as specific as the `GET` one still wins. Literals
//! compare byte for byte unless the caller asks for ASCII case-insensitive matching
//! (Express's default, `case sensitive routing` off).
//!
//! The query string is not decoded and not matched; [`RequestTarget::query`] gives it as
//! sent, for the request signature.
//!
//! [`gate`] is the whole HTTP gate on top of this: credentials, body cap, rate-limit
//! headers and the refusal response ([`crate::Vault::authorize_http`]).

pub mod gate;

pub use gate::{HttpOptions, HttpOutcome, HttpRequest, DEFAULT_MAX_BODY, MAX_HEADER_BYTES};

use std::borrow::Cow;

use crate::policy::{Reading, Router};
use crate::{Error, Result, RouteRule};

/// A request target that passed the checks above: its path as sent, its query, and its
/// segments (as sent and decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget<'a> {
    path: &'a str,
    query: Option<&'a str>,
    /// `(as sent, decoded)`, empty segments only last (a trailing `/`).
    segments: Vec<(&'a str, Cow<'a, str>)>,
    /// Whether some segment had a percent-escape.
    escaped: bool,
}

fn ambiguous(reason: impl Into<String>) -> Error {
    Error::AmbiguousPath(reason.into())
}

/// Splits a raw target into (path as sent, query): the path part of an origin-form or
/// absolute-form target, without any check. Anything else comes back whole as the path.
fn split(raw: &str) -> (&str, Option<&str>) {
    let (before, query) = match raw.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (raw, None),
    };
    if before.starts_with('/') {
        return (before, query);
    }
    match absolute_path(before) {
        Some(path) => (path, query),
        None => (before, query),
    }
}

/// The path of an absolute-form target without its query (`http://host/a` → `/a`,
/// `http://host` → `/`), or `None` when `s` is not `http://…` or `https://…` with a
/// non-empty authority.
fn absolute_path(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some(path)
}

/// The path part of a raw request target, as sent (not decoded, no query): what an audit
/// entry and a request signature see. Not validated: see [`RequestTarget::parse`].
pub fn path_of(raw: &str) -> &str {
    split(raw).0
}

/// The query string of a raw request target, as sent (after the first `?`; `None`
/// without one). Not validated: see [`RequestTarget::parse`].
pub fn query_of(raw: &str) -> Option<&str> {
    split(raw).1
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one path segment once, refusing what the module docs list. The segment has
/// already passed the raw-byte checks (printable ASCII, no `\`, `;`, `#`, `?`, `/`).
fn decode_segment(seg: &str) -> Result<Cow<'_, str>> {
    if !seg.contains('%') {
        if seg == "." || seg == ".." {
            return Err(ambiguous("a '.' or '..' segment"));
        }
        return Ok(Cow::Borrowed(seg));
    }
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(ambiguous("a '%' not followed by two hex digits"));
        };
        let d = hi * 16 + lo;
        let what = match d {
            b'/' => Some("an encoded '/'"),
            b'?' => Some("an encoded '?'"),
            b'#' => Some("an encoded '#'"),
            b'\\' => Some("an encoded '\\'"),
            b';' => Some("an encoded ';'"),
            b'%' => Some("an encoded '%' (double encoding)"),
            0 => Some("an encoded NUL"),
            0x01..=0x1f | 0x7f => Some("an encoded control character"),
            _ => None,
        };
        if let Some(what) = what {
            return Err(ambiguous(what));
        }
        out.push(d);
        i += 3;
    }
    let decoded = String::from_utf8(out)
        .map_err(|_| ambiguous("percent-escapes that are not valid UTF-8 (e.g. overlong)"))?;
    if decoded.chars().any(char::is_control) {
        return Err(ambiguous("an encoded control character"));
    }
    if decoded == "." || decoded == ".." {
        return Err(ambiguous("a '.' or '..' segment (percent-encoded)"));
    }
    Ok(Cow::Owned(decoded))
}

/// The decoded form of a route pattern's literal segment, as the gate compares it with a
/// decoded request segment; `None` for a literal no request the gate accepts could
/// decode to (one with a `;`, an invalid or refused escape), which then never matches in
/// the gate.
pub(crate) fn decode_literal(seg: &str) -> Option<String> {
    if seg.contains(';') {
        return None;
    }
    decode_segment(seg).ok().map(Cow::into_owned)
}

impl<'a> RequestTarget<'a> {
    /// Checks and splits a raw request target (see the module docs); a refusal is
    /// [`Error::AmbiguousPath`] with the reason.
    pub fn parse(raw: &'a str) -> Result<RequestTarget<'a>> {
        if raw.is_empty() {
            return Err(ambiguous("an empty request target"));
        }
        for c in raw.chars() {
            if c.is_control() || c == ' ' {
                return Err(ambiguous(
                    "a space or control character in the request target",
                ));
            }
            if c == '#' {
                return Err(ambiguous("a '#' in the request target"));
            }
        }
        let (path, query) = split(raw);
        if !path.starts_with('/') {
            return Err(ambiguous(
                "not an origin-form ('/…') or absolute-form ('http://host/…') request target",
            ));
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ambiguous("a byte outside printable ASCII in the path"));
        }
        if path.contains('\\') {
            return Err(ambiguous("a '\\' in the path"));
        }
        if path.contains(';') {
            return Err(ambiguous("a ';' path parameter"));
        }
        let mut segments = Vec::new();
        let mut escaped = false;
        if path != "/" {
            let parts: Vec<&str> = path[1..].split('/').collect();
            let last = parts.len() - 1;
            for (i, seg) in parts.into_iter().enumerate() {
                if seg.is_empty() {
                    if i != last {
                        return Err(ambiguous("an empty segment ('//')"));
                    }
                    segments.push((seg, Cow::Borrowed(seg)));
                    continue;
                }
                escaped |= seg.contains('%');
                segments.push((seg, decode_segment(seg)?));
            }
        }
        Ok(RequestTarget {
            path,
            query,
            segments,
            escaped,
        })
    }

    /// The path part, as sent (percent-escapes kept, no query).
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query string as sent, without the `?` (`None` when the target has no `?`).
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }

    /// The decoded path segments (a trailing `/` gives an empty last segment).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|(_, d)| &**d)
    }

    /// Whether the path ends with `/` after at least one segment (`/a/`).
    pub fn trailing_slash(&self) -> bool {
        self.segments.last().is_some_and(|(raw, _)| raw.is_empty())
    }

    /// The most specific rule of `router` this request reaches under every reading a
    /// router could make (see the module docs), `None` when no rule matches under any, and
    /// [`Error::AmbiguousPath`] when readings disagree.
    pub fn find<'r>(
        &self,
        router: &'r Router,
        method: &str,
        case_insensitive: bool,
    ) -> Result<Option<&'r RouteRule>> {
        let all: Vec<(&str, &str)> = self.segments.iter().map(|(r, d)| (*r, &**d)).collect();
        let trailing = self.trailing_slash();
        // (segments, param may match an empty segment)
        let mut shapes: Vec<(&[(&str, &str)], bool)> = vec![(&all, false)];
        if trailing {
            shapes.push((&all[..all.len() - 1], false));
            shapes.push((&all, true));
        }
        let decodings: &[bool] = if self.escaped || router.has_escaped_literals() {
            &[true, false]
        } else {
            &[true]
        };
        let mut chosen: Option<Option<usize>> = None;
        for &decoded in decodings {
            for &(segs, param_matches_empty) in &shapes {
                let reading = Reading {
                    decoded,
                    case_insensitive,
                    param_matches_empty,
                };
                let found = router.find_reading(method, segs, reading);
                match chosen {
                    None => chosen = Some(found),
                    Some(first) if first == found => {}
                    Some(_) => {
                        return Err(ambiguous(if trailing {
                            "a trailing '/' that routers read as different rules"
                        } else {
                            "percent-escapes that routers read as different rules"
                        }));
                    }
                }
            }
        }
        Ok(chosen.flatten().map(|i| router.rule(i)))
    }
}

/// The rule a request reaches: [`RequestTarget::parse`] then [`RequestTarget::find`].
pub fn find<'r>(
    router: &'r Router,
    method: &str,
    raw_target: &str,
    case_insensitive: bool,
) -> Result<Option<&'r RouteRule>> {
    RequestTarget::parse(raw_target)?.find(router, method, case_insensitive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, pattern: &str, scope: &str, cost: u64) -> RouteRule {
        RouteRule {
            method: method.into(),
            pattern: pattern.into(),
            scope: scope.into(),
            cost,
        }
    }

    fn router() -> Router {
        Router::new(vec![
            rule("GET", "/files/*", "files:read", 5),
            rule("GET", "/report", "report:read", 5),
            rule("POST", "/api/v1/messaging/send", "sms:send", 1),
            rule("*", "/api/*", "api:basic", 0),
            rule("GET", "/items/:id", "items:read", 2),
            rule("*", "/*", "public", 0),
        ])
    }

    fn scope_of(method: &str, target: &str) -> Result<Option<String>> {
        Ok(find(&router(), method, target, false)?.map(|r| r.scope.clone()))
    }

    fn refused(method: &str, target: &str) -> bool {
        matches!(scope_of(method, target), Err(Error::AmbiguousPath(_)))
    }

    #[test]
    fn encoded_delimiters_and_dot_segments_are_refused() {
        for t in [
            "/files/%23/../report.pdf",
            "/files/%3F/../report.pdf",
            "/files/%3f/%2e%2e/report.pdf",
            "/files/%2F",
            "/files/%2f..",
            "/files/%5c..%5creport.pdf",
            "/files/%00",
            "/files/%0a",
            "/files/%7f",
            "/files/%c2%85",
            "/files/%252e%252e/report.pdf",
            "/files/%c0%ae%c0%ae/report.pdf",
            "/files/%ed%a0%80",
            "/files/%2e",
            "/files/.%2E",
            "/files/..",
            "/files/.",
            "/./files/report.pdf",
            "/files/%zz",
            "/files/%4",
            "/files/%3b",
        ] {
            assert!(refused("GET", t), "{t}");
        }
    }

    #[test]
    fn raw_hostile_bytes_are_refused() {
        for t in [
            "/files\\..\\report.pdf",
            "/files/a\0b",
            "/files/a b",
            "/files/a\tb",
            "/files/report.pdf;jsessionid=x",
            "/files/report.pdf#x",
            "/files/é",
            "//files/report.pdf",
            "/files//",
            "/files//report.pdf",
            "//",
            "",
            "*",
            "example.com:443",
            "files/report.pdf",
            "ftp://host/files/report.pdf",
            "http:///files/report.pdf",
        ] {
            assert!(refused("GET", t), "{t:?}");
        }
    }

    #[test]
    fn plain_targets_match_as_before() {
        assert_eq!(
            scope_of("GET", "/files/report.pdf").unwrap().unwrap(),
            "files:read"
        );
        assert_eq!(
            scope_of("GET", "/files/a%20b.pdf").unwrap().unwrap(),
            "files:read"
        );
        assert_eq!(
            scope_of("GET", "/items/%2B1555").unwrap().unwrap(),
            "items:read"
        );
        assert_eq!(scope_of("GET", "/files/report.pdf?x=/../%2F#").ok(), None);
        assert_eq!(
            scope_of("GET", "/files/report.pdf?x=/../%2F")
                .unwrap()
                .unwrap(),
            "files:read"
        );
        assert_eq!(scope_of("GET", "/").unwrap(), None);
        assert_eq!(
            scope_of("GET", "/files/...").unwrap().unwrap(),
            "files:read"
        );
        assert_eq!(scope_of("GET", "/café%C3%A9").ok(), None);
        assert_eq!(scope_of("GET", "/caf%C3%A9").unwrap().unwrap(), "public");
    }

    #[test]
    fn absolute_form_targets_use_their_path() {
        assert_eq!(
            scope_of("GET", "http://example.com/files/report.pdf?x=1")
                .unwrap()
                .unwrap(),
            "files:read"
        );
        assert_eq!(
            scope_of("GET", "HTTPS://example.com:8443/report")
                .unwrap()
                .unwrap(),
            "report:read"
        );
        assert_eq!(scope_of("GET", "http://example.com").unwrap(), None);
        assert!(refused("GET", "http://example.com/files/%2e%2e/x"));
        let t = RequestTarget::parse("http://h/a/b?c=d").unwrap();
        assert_eq!((t.path(), t.query()), ("/a/b", Some("c=d")));
    }

    #[test]
    fn trailing_slash_is_refused_only_where_rules_disagree() {
        // `/files/` is `/files` (public) to one router and `/files/<empty>` to another.
        assert!(refused("GET", "/files/"));
        assert!(refused("GET", "/report/"));
        assert!(refused("POST", "/api/v1/messaging/send/"));
        assert!(refused("GET", "/items/"));
        // Every reading of these lands on the same rule.
        assert_eq!(scope_of("GET", "/docs/").unwrap().unwrap(), "public");
        assert_eq!(scope_of("GET", "/files/a/").unwrap().unwrap(), "files:read");
        assert_eq!(scope_of("GET", "/api/x/").unwrap().unwrap(), "api:basic");
    }

    #[test]
    fn escapes_that_change_the_rule_are_refused() {
        // Express matches `/%73end` as sent (the api rule), Starlette decoded (send).
        assert!(refused("POST", "/api/v1/messaging/%73end"));
        assert!(refused("GET", "/%72eport"));
        // Only a parameter or wildcard could match: both readings agree.
        assert_eq!(
            scope_of("GET", "/items/%41").unwrap().unwrap(),
            "items:read"
        );
    }

    #[test]
    fn head_is_charged_like_get_and_a_head_rule_wins() {
        let r = router();
        let got = find(&r, "HEAD", "/report", false).unwrap().unwrap();
        assert_eq!((got.scope.as_str(), got.cost), ("report:read", 5));
        assert_eq!(r.find("HEAD", "/report").unwrap().scope, "report:read");
        assert_eq!(r.find("head", "/files/x").unwrap().scope, "files:read");
        let with_head = Router::new(vec![
            rule("GET", "/report", "report:read", 5),
            rule("HEAD", "/report", "report:head", 1),
            rule("GET", "/a/:x", "get", 1),
            rule("HEAD", "/a/:y", "head", 0),
            rule("HEAD", "/*", "head-any", 0),
        ]);
        let got = find(&with_head, "HEAD", "/report", false).unwrap().unwrap();
        assert_eq!(got.scope, "report:head");
        assert_eq!(with_head.find("HEAD", "/a/b").unwrap().scope, "head");
        assert_eq!(with_head.find("GET", "/a/b").unwrap().scope, "get");
        assert_eq!(with_head.find("HEAD", "/z").unwrap().scope, "head-any");
        assert!(with_head.find("POST", "/report").is_none());
    }

    #[test]
    fn case_insensitive_matching_is_an_option() {
        let r = router();
        let t = "/API/v1/messaging/SEND";
        let sensitive = find(&r, "POST", t, false).unwrap().unwrap();
        assert_eq!(sensitive.scope, "public");
        let insensitive = find(&r, "POST", t, true).unwrap().unwrap();
        assert_eq!(insensitive.scope, "sms:send");
        assert_eq!(
            find(&r, "GET", "/REPORT", true).unwrap().unwrap().scope,
            "report:read"
        );
    }

    #[test]
    fn pattern_literals_compare_decoded() {
        let r = Router::new(vec![
            rule("GET", "/a%20b", "spaced", 1),
            rule("GET", "/x;y", "semi", 1),
            rule("*", "/*", "public", 0),
        ]);
        assert_eq!(
            find(&r, "GET", "/a%20b", false).unwrap().unwrap().scope,
            "spaced"
        );
        // The same decoded text, but a router matching the raw path misses the literal.
        let r = Router::new(vec![
            rule("GET", "/a%2Bb", "plus", 1),
            rule("*", "/*", "public", 0),
        ]);
        assert!(find(&r, "GET", "/a%2bb", false).is_err());
        assert!(find(&r, "GET", "/a+b", false).is_err());
        assert_eq!(
            find(&r, "GET", "/a%2bb", true).unwrap().unwrap().scope,
            "plus"
        );
        assert_eq!(
            find(&r, "GET", "/other", false).unwrap().unwrap().scope,
            "public"
        );
        assert!(find(&r, "GET", "/x;y", false).is_err());
        assert!(find(&r, "GET", "/x%3By", false).is_err());
        assert_eq!(
            find(&r, "GET", "/a%20c", false).unwrap().unwrap().scope,
            "public"
        );
    }

    #[test]
    fn path_and_query_helpers_take_the_parts_as_sent() {
        assert_eq!(path_of("/a%2Fb?x=1"), "/a%2Fb");
        assert_eq!(query_of("/a%2Fb?x=1&y=%20"), Some("x=1&y=%20"));
        assert_eq!(query_of("/a"), None);
        assert_eq!(path_of("http://h/a?b"), "/a");
        assert_eq!(path_of("http://h?b"), "/");
        assert_eq!(path_of("*"), "*");
    }

    proptest::proptest! {
        #[test]
        fn parse_and_find_never_panic(t in "\\PC*", m in "[A-Za-z]{1,8}") {
            let r = router();
            let _ = find(&r, &m, &t, false);
            let _ = find(&r, &m, &t, true);
        }

        #[test]
        fn target_shaped_strings_never_panic(t in "[/a-z%0-9A-F.;?#\\\\:]{0,40}") {
            let r = router();
            if let Ok(parsed) = RequestTarget::parse(&t) {
                // What the gate accepts never holds a dot segment or an encoded delimiter.
                for s in parsed.segments() {
                    proptest::prop_assert!(s != "." && s != "..");
                    proptest::prop_assert!(!s.contains(['/', '?', '#', '\\', '%', ';']));
                }
                let _ = parsed.find(&r, "GET", false);
            }
        }
    }
}
