//! Scopes and route rules (SPEC §5).
//!
//! # Scopes
//!
//! A scope is 1–[`MAX_SCOPE_LEN`] chars of `[a-z0-9:._*-]`. A key's (granted) scope is one of:
//!
//! - `*`: grants every scope;
//! - `<ns>:*` or `<ns>.*` (a non-empty `<ns>` without `*`): grants every scope that starts
//!   with `<ns>:` (resp. `<ns>.`) and has something after it, so `sms:*` grants `sms:send`
//!   but neither `sms` nor `smsx:send`;
//! - anything else without `*`: grants exactly itself.
//!
//! Any other placement of `*` is invalid. A *required* scope (on a route rule or a `scope=`
//! call) never contains `*`.
//!
//! # Routes
//!
//! A [`RouteRule`] maps `(method, pattern)` to `(scope, cost)`. The method is `*` or an HTTP
//! method token (1–16 ASCII letters, stored uppercase). The pattern starts with `/`, is at most
//! [`MAX_PATTERN_LEN`] bytes, and is split on `/` with empty segments ignored (`/a/b/` is
//! `/a/b`). A segment is
//!
//! - a literal of `[A-Za-z0-9._~!$&'()+,;=@%-]`, compared byte for byte (case-sensitive, no
//!   percent-decoding); the dot-segments `.` and `..` are refused;
//! - `:name` (name of 1–32 chars `[A-Za-z0-9_]`, unique within the pattern): any one segment;
//! - `*`, only as the last segment: one or more remaining segments.
//!
//! A [`Router`] finds the most specific rule matching a request; no rule → `None` (deny by
//! default). A `HEAD` request also matches `GET` rules.
//!
//! [`Router::find`] reads an already decoded path. The HTTP gates give the core the raw
//! request target instead, which [`crate::http`] decodes once and matches against the
//! decoded literals, refusing targets that routers could read differently.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest scope, in bytes (all ASCII).
pub const MAX_SCOPE_LEN: usize = 64;

/// Longest route pattern, in bytes, before normalization.
pub const MAX_PATTERN_LEN: usize = 512;

/// Longest HTTP method token.
pub const MAX_METHOD_LEN: usize = 16;

/// Longest `:name` parameter name (without the `:`).
pub const MAX_PARAM_NAME_LEN: usize = 32;

/// Whether `b` may appear in a scope.
fn is_scope_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'.' | b'_' | b'*' | b'-')
}

/// Length and charset of a scope, shared by both validators.
fn check_scope_chars(s: &str, what: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(format!("{what} is empty")));
    }
    if s.len() > MAX_SCOPE_LEN {
        return Err(Error::invalid(format!(
            "{what} is longer than {MAX_SCOPE_LEN} characters"
        )));
    }
    if !s.bytes().all(is_scope_byte) {
        return Err(Error::invalid(format!(
            "{what} may contain only a-z, 0-9 and ':', '.', '_', '*', '-'"
        )));
    }
    Ok(())
}

/// Checks a scope a key may hold: 1–[`MAX_SCOPE_LEN`] chars of `[a-z0-9:._*-]`, with `*`
/// only as the whole scope or as the last char after a `:` or `.` that follows a non-empty
/// namespace (`sms:*`, `sms.*`).
///
/// Returns [`Error::InvalidArgument`] saying what is wrong.
pub fn validate_scope(s: &str) -> Result<()> {
    check_scope_chars(s, "scope")?;
    if s == "*" {
        return Ok(());
    }
    match wildcard_base(s) {
        Some(base) if base.len() >= 2 && !base.contains('*') => Ok(()),
        Some(_) => Err(Error::invalid(
            "scope wildcard needs a namespace before ':*' or '.*' and only one '*'",
        )),
        None if s.contains('*') => Err(Error::invalid(
            "'*' in a scope must be the whole scope or follow a final ':' or '.'",
        )),
        None => Ok(()),
    }
}

/// Checks a scope a route or a `scope=` call requires: like [`validate_scope`] but without
/// any `*`.
pub fn validate_required_scope(s: &str) -> Result<()> {
    check_scope_chars(s, "required scope")?;
    if s.contains('*') {
        return Err(Error::invalid("a required scope may not contain '*'"));
    }
    Ok(())
}

/// For a wildcard scope `ns:*` / `ns.*`, the part that granted scopes must start with
/// (`ns:` / `ns.`); `None` for any other scope.
fn wildcard_base(granted: &str) -> Option<&str> {
    if granted.ends_with(":*") || granted.ends_with(".*") {
        granted.strip_suffix('*')
    } else {
        None
    }
}

/// Whether `required` is a valid required scope, as a predicate.
fn is_valid_required_scope(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SCOPE_LEN && s.bytes().all(|b| b != b'*' && is_scope_byte(b))
}

/// Whether the granted scope `granted` grants `required`.
///
/// `*` grants everything; `ns:*` / `ns.*` grant every scope that starts with `ns:` / `ns.`
/// and is longer; any other scope grants exactly itself. A `required` that is not a valid
/// required scope (see [`validate_required_scope`]) is never granted, so a malformed request
/// cannot match a wildcard by accident.
pub fn scope_grants(granted: &str, required: &str) -> bool {
    if !is_valid_required_scope(required) {
        return false;
    }
    if granted == "*" {
        return true;
    }
    match wildcard_base(granted) {
        // `base.len() >= 2`: a bare `:*` / `.*` is not a valid scope and grants nothing.
        Some(base) => base.len() >= 2 && required.len() > base.len() && required.starts_with(base),
        None => granted == required,
    }
}

/// Whether any of the `granted` scopes grants `required` (see [`scope_grants`]).
pub fn scopes_grant<S: AsRef<str>>(granted: &[S], required: &str) -> bool {
    granted.iter().any(|g| scope_grants(g.as_ref(), required))
}

/// Normalizes a rule's method: `*` stays `*`; an HTTP method token of 1–[`MAX_METHOD_LEN`]
/// ASCII letters becomes uppercase. Anything else is [`Error::InvalidArgument`].
pub fn normalize_method(m: &str) -> Result<String> {
    if m == "*" {
        return Ok("*".to_owned());
    }
    if m.is_empty() || m.len() > MAX_METHOD_LEN || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Error::invalid(format!(
            "route method must be '*' or 1 to {MAX_METHOD_LEN} ASCII letters"
        )));
    }
    Ok(m.to_ascii_uppercase())
}

/// Whether `b` may appear in a literal path segment of a pattern.
fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'.' | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'@'
                | b'%'
                | b'-'
        )
}

/// One compiled pattern segment.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// A literal segment, compared byte for byte; with its percent-decoded form for the HTTP
    /// gate (`None` when the literal is not one the gate could ever read, see
    /// [`crate::http::decode_literal`]).
    Literal(Box<str>, Option<Box<str>>),
    /// `:name`: any one segment.
    Param,
    /// `*` (last only): one or more remaining segments.
    Rest,
}

impl Segment {
    /// Specificity rank: literal 2 > `:name` 1 > `*` 0.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(..) => 2,
            Segment::Param => 1,
            Segment::Rest => 0,
        }
    }
}

/// Non-empty `/`-separated segments of `path`.
fn segments(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.split('/').filter(|s| !s.is_empty())
}

/// Parses and validates a pattern into its segments.
fn compile_pattern(p: &str) -> Result<Vec<Segment>> {
    if p.len() > MAX_PATTERN_LEN {
        return Err(Error::invalid(format!(
            "route pattern is longer than {MAX_PATTERN_LEN} bytes"
        )));
    }
    if !p.starts_with('/') {
        return Err(Error::invalid("route pattern must start with '/'"));
    }
    let mut out: Vec<Segment> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    let mut iter = segments(p).peekable();
    while let Some(seg) = iter.next() {
        if seg == "*" {
            if iter.peek().is_some() {
                return Err(Error::invalid(
                    "'*' may only be the last segment of a route pattern",
                ));
            }
            out.push(Segment::Rest);
        } else if let Some(name) = seg.strip_prefix(':') {
            if name.is_empty()
                || name.len() > MAX_PARAM_NAME_LEN
                || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(Error::invalid(format!(
                    "route parameter name must be 1 to {MAX_PARAM_NAME_LEN} characters of \
                     A-Z, a-z, 0-9 and '_'"
                )));
            }
            if names.contains(&name) {
                return Err(Error::invalid(
                    "route parameter names must be unique within a pattern",
                ));
            }
            names.push(name);
            out.push(Segment::Param);
        } else {
            if !seg.bytes().all(is_literal_byte) {
                return Err(Error::invalid(
                    "route pattern segment has a character outside \
                     A-Z a-z 0-9 . _ ~ ! $ & ' ( ) + , ; = @ % -",
                ));
            }
            if seg == "." || seg == ".." {
                return Err(Error::invalid(
                    "route pattern may not contain '.' or '..' segments",
                ));
            }
            let decoded = crate::http::decode_literal(seg).map(Into::into);
            out.push(Segment::Literal(seg.into(), decoded));
        }
    }
    Ok(out)
}

/// Validates a route pattern and returns its canonical form: `/` followed by its non-empty
/// segments joined by `/` (the root is `/`), so `/a//b/` becomes `/a/b`.
///
/// Refused with [`Error::InvalidArgument`]: longer than [`MAX_PATTERN_LEN`] bytes, not
/// starting with `/`, a segment with a character outside the literal set, a `.` or `..`
/// segment, a bad or repeated `:name`, or `*` anywhere but as the whole last segment.
pub fn normalize_pattern(p: &str) -> Result<String> {
    compile_pattern(p)?;
    let mut out = String::with_capacity(p.len());
    for seg in segments(p) {
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// A route rule: requests matching `(method, pattern)` require `scope` and cost `cost`
/// credits by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRule {
    /// `*` or an uppercase HTTP method (see [`normalize_method`]).
    pub method: String,
    /// The canonical pattern (see [`normalize_pattern`]).
    pub pattern: String,
    /// The scope a key needs for this route (no `*`, see [`validate_required_scope`]).
    pub scope: String,
    /// The default cost of a matching call, in credits.
    pub cost: u64,
}

/// A rule's compiled pattern, parallel to [`Router::rules`].
#[derive(Clone, Debug)]
struct Compiled {
    segments: Box<[Segment]>,
    any_method: bool,
}

/// A compiled set of route rules, sorted most specific first.
///
/// # Order
///
/// Rules are sorted by this total order, and [`Router::find`] returns the first rule that
/// matches, which is therefore the most specific matching one:
///
/// 1. segment kinds compared position by position, literal (2) > `:name` (1) > `*` (0); at the
///    first differing position the higher rank comes first; when one rule's kinds are a
///    prefix of the other's, the longer (more segments) comes first;
/// 2. an exact method before `*`;
/// 3. then, only to make the order total, the pattern and the method in byte order.
///
/// Two rules equal under 1 and 2 that match the same request differ only in the name of a
/// `:name` segment (`/a/:x` vs `/a/:y`); the pattern's byte order decides between them.
#[derive(Clone, Debug, Default)]
pub struct Router {
    rules: Vec<RouteRule>,
    compiled: Vec<Compiled>,
    /// Whether some literal has a `%`: its raw and decoded forms then differ.
    escaped_literals: bool,
}

/// The specificity order of the [`Router`] docs (less = more specific).
fn specificity(a: &(RouteRule, Compiled), b: &(RouteRule, Compiled)) -> Ordering {
    let ranks_a = a.1.segments.iter().map(Segment::rank);
    let ranks_b = b.1.segments.iter().map(Segment::rank);
    // Lexicographic on ranks, reversed: a higher rank, or a longer sequence, first.
    ranks_b
        .cmp(ranks_a)
        .then(a.1.any_method.cmp(&b.1.any_method))
        .then_with(|| a.0.pattern.cmp(&b.0.pattern))
        .then_with(|| a.0.method.cmp(&b.0.method))
}

impl Router {
    /// Compiles and sorts `rules` (see the order above).
    ///
    /// The rules are expected to be validated and normalized already; as a safeguard each
    /// method and pattern is normalized again, a rule whose method or pattern is invalid is
    /// dropped (it can never match), and of rules with the same normalized `(method,
    /// pattern)` only the first is kept.
    pub fn new(rules: Vec<RouteRule>) -> Router {
        let mut entries: Vec<(RouteRule, Compiled)> = Vec::with_capacity(rules.len());
        for mut rule in rules {
            let (Ok(method), Ok(pattern)) = (
                normalize_method(&rule.method),
                normalize_pattern(&rule.pattern),
            ) else {
                continue;
            };
            let Ok(segments) = compile_pattern(&pattern) else {
                continue;
            };
            let any_method = method == "*";
            rule.method = method;
            rule.pattern = pattern;
            entries.push((
                rule,
                Compiled {
                    segments: segments.into_boxed_slice(),
                    any_method,
                },
            ));
        }
        // Stable: of equal (method, pattern), which sort as equal and so end up adjacent,
        // the first given stays first and is the one kept.
        entries.sort_by(specificity);
        entries.dedup_by(|later, kept| {
            later.0.method == kept.0.method && later.0.pattern == kept.0.pattern
        });
        let escaped_literals = entries.iter().any(|(rule, _)| rule.pattern.contains('%'));
        let (rules, compiled) = entries.into_iter().unzip();
        Router {
            rules,
            compiled,
            escaped_literals,
        }
    }

    /// The most specific rule matching `method` and `path`, or `None` (deny by default).
    ///
    /// This reads an already decoded path, as [`crate::Target::route`] callers pass it. The
    /// HTTP gates do not use it: they give the raw request target to [`crate::http`], which
    /// refuses what routers could read differently.
    ///
    /// The path's query and fragment (from the first `?` or `#`) are ignored; a path that
    /// does not start with `/`, or that has a `.` or `..` segment, matches nothing. Empty
    /// segments are ignored (`/a//b/` is `/a/b`). Literal segments compare byte for byte
    /// (case-sensitive, no percent-decoding). The method compares ignoring ASCII case; a
    /// rule with method `*` matches any method, and a `HEAD` request also matches `GET`
    /// rules (an exact `HEAD` rule as specific as the `GET` one wins). Allocates nothing
    /// unless the request is a `HEAD` matched by a `GET` rule.
    pub fn find(&self, method: &str, path: &str) -> Option<&RouteRule> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') {
            return None;
        }
        let segs = segments(path);
        if segs.clone().any(|s| s == "." || s == "..") {
            return None;
        }
        self.find_index(method, |compiled| {
            matches_segments(&compiled.segments, segs.clone())
        })
        .map(|i| &self.rules[i])
    }

    /// The rules, most specific first.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }

    /// Whether there are no rules (every request is then denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// Whether the request segments `path` match the compiled `pattern`.
fn matches_segments<'a>(pattern: &[Segment], mut path: impl Iterator<Item = &'a str>) -> bool {
    for seg in pattern {
        match seg {
            Segment::Rest => return path.next().is_some(),
            Segment::Param => {
                if path.next().is_none() {
                    return false;
                }
            }
            Segment::Literal(lit, _) => {
                if path.next() != Some(&**lit) {
                    return false;
                }
            }
        }
    }
    path.next().is_none()
}

/// How the HTTP gate reads a request's segments against the rules (one reading of
/// [`crate::http`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reading {
    /// Compare the percent-decoded request segments with the decoded literals (else the
    /// raw segments with the raw literals).
    pub decoded: bool,
    /// Compare literals ignoring ASCII case.
    pub case_insensitive: bool,
    /// Whether a `:name` segment may match an empty request segment.
    pub param_matches_empty: bool,
}

/// [`matches_segments`] for one gate reading: `path` holds (raw, decoded) segments, empty
/// ones included.
fn matches_reading(pattern: &[Segment], path: &[(&str, &str)], reading: Reading) -> bool {
    let mut path = path.iter();
    for seg in pattern {
        let Some(&(raw, decoded)) = path.next() else {
            return false;
        };
        match seg {
            Segment::Rest => return true,
            Segment::Param => {
                if decoded.is_empty() && !reading.param_matches_empty {
                    return false;
                }
            }
            Segment::Literal(lit, lit_decoded) => {
                let (want, got) = if reading.decoded {
                    match lit_decoded {
                        Some(d) => (&**d, decoded),
                        None => return false,
                    }
                } else {
                    (&**lit, raw)
                };
                let same = if reading.case_insensitive {
                    want.eq_ignore_ascii_case(got)
                } else {
                    want == got
                };
                if !same {
                    return false;
                }
            }
        }
    }
    path.next().is_none()
}

impl Router {
    /// The index of the most specific rule matching `method` and the request segments
    /// `path` ((raw, decoded) pairs) under `reading`, for the HTTP gate. `HEAD` also
    /// matches `GET` rules (see [`Router::find`]).
    pub(crate) fn find_reading(
        &self,
        method: &str,
        path: &[(&str, &str)],
        reading: Reading,
    ) -> Option<usize> {
        self.find_index(method, |compiled| {
            matches_reading(&compiled.segments, path, reading)
        })
    }

    /// Whether some rule's literal has a `%` (its raw and decoded readings differ).
    pub(crate) fn has_escaped_literals(&self) -> bool {
        self.escaped_literals
    }

    /// The rule at `index` (from [`Router::find_reading`]).
    pub(crate) fn rule(&self, index: usize) -> &RouteRule {
        &self.rules[index]
    }

    /// The first rule (most specific) whose method accepts `method` and whose pattern
    /// `matches`. A `HEAD` request also matches `GET` rules, as every framework serves
    /// `HEAD` with the `GET` handler; among rules as specific as the `GET` rule found, an
    /// exact `HEAD` rule that matches wins.
    fn find_index(&self, method: &str, matches: impl Fn(&Compiled) -> bool) -> Option<usize> {
        let head = method.eq_ignore_ascii_case("HEAD");
        let accepts = |rule: &RouteRule, compiled: &Compiled| {
            compiled.any_method
                || rule.method.eq_ignore_ascii_case(method)
                || (head && rule.method == "GET")
        };
        let found = self
            .rules
            .iter()
            .zip(&self.compiled)
            .position(|(rule, compiled)| accepts(rule, compiled) && matches(compiled))?;
        if head && self.rules[found].method == "GET" {
            let ranks = |c: &Compiled| c.segments.iter().map(Segment::rank).collect::<Vec<_>>();
            let found_ranks = ranks(&self.compiled[found]);
            let better = self.rules[found + 1..]
                .iter()
                .zip(&self.compiled[found + 1..])
                .take_while(|(_, c)| !c.any_method && ranks(c) == found_ranks)
                .position(|(rule, c)| rule.method == "HEAD" && matches(c));
            if let Some(offset) = better {
                return Some(found + 1 + offset);
            }
        }
        Some(found)
    }
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

    fn seed_router() -> Router {
        Router::new(vec![
            rule("GET", "/sms/*", "sms.read", 0),
            rule("POST", "/api/v1/messaging/send", "sms:send", 1),
            rule("GET", "/api/v1/numbers/mine", "numbers:read", 0),
            rule(
                "GET",
                "/api/v1/messaging/threads/:counterparty",
                "numbers:read",
                0,
            ),
        ])
    }

    fn found<'a>(r: &'a Router, m: &str, p: &str) -> Option<&'a str> {
        r.find(m, p).map(|rule| rule.pattern.as_str())
    }

    #[test]
    fn star_scope_grants_everything() {
        assert!(scope_grants("*", "sms:send"));
        assert!(scope_grants("*", "numbers.read"));
        assert!(scope_grants("*", "x"));
    }

    #[test]
    fn namespace_wildcard_grants_only_inside_the_namespace() {
        assert!(scope_grants("sms:*", "sms:send"));
        assert!(scope_grants("sms:*", "sms:send:bulk"));
        assert!(!scope_grants("sms:*", "sms"));
        assert!(!scope_grants("sms:*", "sms:"));
        assert!(!scope_grants("sms:*", "smsx:send"));
        assert!(!scope_grants("sms:*", "sms.read"));
        assert!(scope_grants("sms.*", "sms.read"));
        assert!(!scope_grants("sms.*", "sms:read"));
        assert!(!scope_grants("sms.*", "sms"));
    }

    #[test]
    fn plain_scope_grants_exactly_itself() {
        assert!(scope_grants("sms:send", "sms:send"));
        assert!(!scope_grants("sms:send", "sms:sendx"));
        assert!(!scope_grants("sms:send", "sms"));
        assert!(!scope_grants("sms", "sms:send"));
    }

    #[test]
    fn invalid_required_scope_is_never_granted() {
        assert!(!scope_grants("*", ""));
        assert!(!scope_grants("*", "*"));
        assert!(!scope_grants("sms:*", "sms:*"));
        assert!(!scope_grants("*", "SMS"));
        assert!(!scope_grants("*", &"a".repeat(65)));
        assert!(!scope_grants("a*b", "a*b"));
        assert!(!scope_grants(":*", ":x"));
    }

    #[test]
    fn scopes_grant_checks_every_granted_scope() {
        let granted = ["numbers:read", "sms:*"];
        assert!(scopes_grant(&granted, "sms:send"));
        assert!(scopes_grant(&granted, "numbers:read"));
        assert!(!scopes_grant(&granted, "numbers:write"));
        let none: [String; 0] = [];
        assert!(!scopes_grant(&none, "sms:send"));
        assert!(scopes_grant(&["*".to_string()], "anything"));
    }

    #[test]
    fn valid_scopes_are_accepted() {
        for s in [
            "*",
            "sms:*",
            "sms.*",
            "sms:send",
            "a",
            "a-b_c.d:e",
            "v1.sms:*",
            &"a".repeat(64),
        ] {
            assert_eq!(validate_scope(s), Ok(()), "{s:?}");
        }
        for s in ["sms:send", "a", "x.y-z_0"] {
            assert_eq!(validate_required_scope(s), Ok(()), "{s:?}");
        }
    }

    #[test]
    fn invalid_scopes_are_rejected() {
        for s in [
            "",
            "SMS",
            "sms send",
            &"a".repeat(65),
            "a*b",
            "*:x",
            "**",
            "sms*",
            ":*",
            ".*",
            "sms:**",
            "*:*",
            "sms/send",
            "é",
        ] {
            assert!(
                matches!(validate_scope(s), Err(Error::InvalidArgument(_))),
                "{s:?}"
            );
        }
        for s in ["*", "sms:*", "", "SMS", "a b", &"a".repeat(65)] {
            assert!(
                matches!(validate_required_scope(s), Err(Error::InvalidArgument(_))),
                "{s:?}"
            );
        }
    }

    #[test]
    fn methods_normalize_to_uppercase_or_star() {
        assert_eq!(normalize_method("get").unwrap(), "GET");
        assert_eq!(normalize_method("Post").unwrap(), "POST");
        assert_eq!(normalize_method("*").unwrap(), "*");
        for bad in ["", "G ET", "GET1", "**", "é", &"A".repeat(17)] {
            assert!(normalize_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns_normalize_to_canonical_form() {
        assert_eq!(normalize_pattern("/a/b/").unwrap(), "/a/b");
        assert_eq!(normalize_pattern("//a///b").unwrap(), "/a/b");
        assert_eq!(normalize_pattern("/").unwrap(), "/");
        assert_eq!(normalize_pattern("///").unwrap(), "/");
        assert_eq!(normalize_pattern("/sms/*").unwrap(), "/sms/*");
        assert_eq!(
            normalize_pattern("/api/v1/threads/:counterparty/").unwrap(),
            "/api/v1/threads/:counterparty"
        );
        assert_eq!(
            normalize_pattern("/a/b.c~d!$&'()+,;=@%20-e").unwrap(),
            "/a/b.c~d!$&'()+,;=@%20-e"
        );
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let long = format!("/{}", "a".repeat(512));
        for bad in [
            "", "a/b", "/a/*/b", "/a/b*", "/*x", "/a/:", "/a/:b-c", "/a/:x/:x", "/a b", "/a?b",
            "/a#b", "/a/../b", "/./a", "/é", "/a:b", &long,
        ] {
            assert!(
                matches!(normalize_pattern(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        assert!(normalize_pattern(&format!("/a/:{}", "n".repeat(33))).is_err());
        assert!(normalize_pattern(&format!("/a/:{}", "n".repeat(32))).is_ok());
    }

    #[test]
    fn seed_rules_match_as_expected() {
        let r = seed_router();
        let send = r.find("POST", "/api/v1/messaging/send").unwrap();
        assert_eq!((send.scope.as_str(), send.cost), ("sms:send", 1));
        let mine = r.find("GET", "/api/v1/numbers/mine").unwrap();
        assert_eq!(mine.scope, "numbers:read");
        let thread = r
            .find("GET", "/api/v1/messaging/threads/+15551234")
            .unwrap();
        assert_eq!(thread.pattern, "/api/v1/messaging/threads/:counterparty");
        assert_eq!(thread.scope, "numbers:read");
        let sms = r.find("GET", "/sms/inbox/42").unwrap();
        assert_eq!(sms.scope, "sms.read");
        assert!(r.find("GET", "/api/v1/messaging/send").is_none());
        assert!(r.find("POST", "/api/v1/numbers/mine").is_none());
        assert!(r.find("GET", "/api/v1/messaging/threads").is_none());
        assert!(r.find("GET", "/api/v1/messaging/threads/a/b").is_none());
    }

    #[test]
    fn unmatched_request_is_denied_by_default() {
        let r = seed_router();
        assert!(r.find("GET", "/").is_none());
        assert!(r.find("GET", "/admin").is_none());
        assert!(Router::default().find("GET", "/").is_none());
        assert!(Router::default().is_empty());
        assert!(!r.is_empty());
    }

    #[test]
    fn literal_beats_param_beats_rest() {
        let r = Router::new(vec![
            rule("GET", "/a/*", "rest", 0),
            rule("GET", "/a/:id", "param", 0),
            rule("GET", "/a/me", "literal", 0),
        ]);
        assert_eq!(r.find("GET", "/a/me").unwrap().scope, "literal");
        assert_eq!(r.find("GET", "/a/you").unwrap().scope, "param");
        assert_eq!(r.find("GET", "/a/you/too").unwrap().scope, "rest");
        let order: Vec<_> = r.rules().iter().map(|r| r.scope.as_str()).collect();
        assert_eq!(order, ["literal", "param", "rest"]);
    }

    #[test]
    fn first_differing_segment_decides_specificity() {
        let r = Router::new(vec![
            rule("GET", "/:x/b/c", "param-first", 0),
            rule("GET", "/a/:y/*", "literal-first", 0),
        ]);
        assert_eq!(r.find("GET", "/a/b/c").unwrap().scope, "literal-first");
        assert_eq!(r.find("GET", "/z/b/c").unwrap().scope, "param-first");
    }

    #[test]
    fn longer_pattern_beats_its_prefix() {
        let r = Router::new(vec![
            rule("GET", "/a/*", "short", 0),
            rule("GET", "/a/:x/*", "long", 0),
        ]);
        assert_eq!(r.find("GET", "/a/b").unwrap().scope, "short");
        assert_eq!(r.find("GET", "/a/b/c").unwrap().scope, "long");
        let r = Router::new(vec![
            rule("GET", "/a", "short", 0),
            rule("GET", "/a/b", "long", 0),
        ]);
        assert_eq!(r.rules()[0].scope, "long");
    }

    #[test]
    fn exact_method_beats_star_method() {
        let r = Router::new(vec![
            rule("*", "/a", "any", 0),
            rule("POST", "/a", "post", 0),
        ]);
        assert_eq!(r.find("POST", "/a").unwrap().scope, "post");
        assert_eq!(r.find("GET", "/a").unwrap().scope, "any");
        assert_eq!(r.find("DELETE", "/a").unwrap().scope, "any");
    }

    #[test]
    fn segment_specificity_beats_method_exactness() {
        let r = Router::new(vec![
            rule("GET", "/a/:x", "param-get", 0),
            rule("*", "/a/b", "literal-any", 0),
        ]);
        assert_eq!(r.find("GET", "/a/b").unwrap().scope, "literal-any");
    }

    #[test]
    fn rest_needs_at_least_one_segment() {
        let r = seed_router();
        assert!(r.find("GET", "/sms").is_none());
        assert!(r.find("GET", "/sms/").is_none());
        assert!(r.find("GET", "/sms/a").is_some());
        assert!(r.find("GET", "/sms/a/b").is_some());
        assert!(r.find("GET", "/smsx/a").is_none());
    }

    #[test]
    fn query_string_and_fragment_are_ignored() {
        let r = seed_router();
        assert!(r.find("GET", "/api/v1/numbers/mine?page=2&x=/y").is_some());
        assert!(r.find("GET", "/api/v1/numbers/mine#top").is_some());
        assert!(r.find("GET", "/api/v1/numbers/mine/?a=b").is_some());
        assert!(r.find("GET", "/sms?x=/a").is_none());
        assert!(r.find("GET", "?/sms/a").is_none());
    }

    #[test]
    fn trailing_and_doubled_slashes_are_tolerated() {
        let r = seed_router();
        assert!(r.find("GET", "/api/v1/numbers/mine/").is_some());
        assert!(r.find("GET", "//api//v1/numbers/mine").is_some());
        let root = Router::new(vec![rule("GET", "/", "root", 0)]);
        assert!(root.find("GET", "/").is_some());
        assert!(root.find("GET", "//").is_some());
        assert!(root.find("GET", "/a").is_none());
    }

    #[test]
    fn method_matches_ignoring_ascii_case() {
        let r = seed_router();
        assert!(r.find("get", "/api/v1/numbers/mine").is_some());
        assert!(r.find("GeT", "/api/v1/numbers/mine").is_some());
        assert!(r.find("post", "/api/v1/messaging/send").is_some());
        assert!(r.find("GETX", "/api/v1/numbers/mine").is_none());
    }

    #[test]
    fn path_without_leading_slash_matches_nothing() {
        let r = Router::new(vec![rule("*", "/*", "all", 0)]);
        assert!(r.find("GET", "/anything").is_some());
        assert!(r.find("GET", "anything").is_none());
        assert!(r.find("GET", "").is_none());
        assert!(r.find("GET", "http://host/anything").is_none());
    }

    #[test]
    fn dot_segments_in_request_match_nothing() {
        let r = Router::new(vec![rule("*", "/*", "all", 0)]);
        assert!(r.find("GET", "/sms/../admin").is_none());
        assert!(r.find("GET", "/./a").is_none());
        assert!(r.find("GET", "/a/...").is_some());
    }

    #[test]
    fn literals_compare_case_sensitively() {
        let r = seed_router();
        assert!(r.find("GET", "/API/v1/numbers/mine").is_none());
    }

    #[test]
    fn router_normalizes_and_drops_invalid_or_duplicate_rules() {
        let r = Router::new(vec![
            rule("get", "/a/b/", "first", 0),
            rule("GET", "/a/b", "duplicate", 0),
            rule("GET", "no-slash", "bad", 0),
            rule("G E T", "/x", "bad", 0),
            rule("GET", "/a/*/b", "bad", 0),
        ]);
        assert_eq!(r.rules().len(), 1);
        assert_eq!(r.rules()[0].method, "GET");
        assert_eq!(r.rules()[0].pattern, "/a/b");
        assert_eq!(r.rules()[0].scope, "first");
    }

    #[test]
    fn rule_order_is_independent_of_insertion_order() {
        let rules = vec![
            rule("GET", "/a/:x", "1", 0),
            rule("*", "/a/:x", "2", 0),
            rule("GET", "/a/b", "3", 0),
            rule("GET", "/a/*", "4", 0),
            rule("GET", "/a/:y", "5", 0),
            rule("GET", "/", "6", 0),
            rule("*", "/*", "7", 0),
        ];
        let forward = Router::new(rules.clone());
        let mut reversed = rules;
        reversed.reverse();
        let backward = Router::new(reversed);
        assert_eq!(forward.rules(), backward.rules());
        assert_eq!(found(&forward, "GET", "/a/c"), Some("/a/:x"));
        assert_eq!(found(&forward, "PUT", "/a/c"), Some("/a/:x"));
        assert_eq!(forward.find("PUT", "/a/c").unwrap().method, "*");
        assert_eq!(found(&forward, "GET", "/"), Some("/"));
        assert_eq!(found(&forward, "PUT", "/"), None);
        assert_eq!(found(&forward, "PUT", "/z/z"), Some("/*"));
    }

    #[test]
    fn route_rule_round_trips_through_serde() {
        let r = rule("POST", "/api/v1/messaging/send", "sms:send", 1);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<RouteRule>(&json).unwrap(), r);
    }

    proptest::proptest! {
        #[test]
        fn find_never_panics_on_arbitrary_strings(method in "\\PC*", path in "\\PC*") {
            let r = seed_router();
            let _ = r.find(&method, &path);
            let catch_all = Router::new(vec![rule("*", "/*", "all", 0)]);
            let _ = catch_all.find(&method, &path);
        }

        #[test]
        fn validators_never_panic_on_arbitrary_strings(s in "\\PC*") {
            let _ = validate_scope(&s);
            let _ = validate_required_scope(&s);
            let _ = scope_grants(&s, "sms:send");
            let _ = scope_grants("sms:*", &s);
            let _ = normalize_method(&s);
            if let Ok(p) = normalize_pattern(&s) {
                let again = normalize_pattern(&p);
                proptest::prop_assert_eq!(again.as_deref(), Ok(p.as_str()));
            }
        }

        #[test]
        fn path_shaped_strings_never_panic(
            path in "[/a-z:*?#.é🔑]{0,40}", pattern in "[/a-z:*.]{0,20}"
        ) {
            let r = Router::new(vec![rule("*", &pattern, "s", 0), rule("GET", "/a/*", "t", 0)]);
            let _ = r.find("GET", &path);
            let _ = normalize_pattern(&pattern);
        }
    }
}
