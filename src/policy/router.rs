//! The [`Router`]: compiled rules sorted by specificity, and the matching of request paths.

use std::cmp::Ordering;

use super::rules::{compile_pattern, segments, Segment};
use super::{normalize_method, normalize_pattern, RouteRule};

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
