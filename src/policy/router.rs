//! The [`Router`]: compiled rules sorted by specificity, and the matching of request paths.

use std::cmp::Ordering;

use super::index::{Mode, RuleIx, Trie};
#[cfg(test)]
use super::rules::segments;
use super::rules::{compile_pattern, Segment};
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
///
/// # Index
///
/// The rules are also indexed by a trie of their segments (one per reading of the literals:
/// raw or decoded, exact or ignoring ASCII case), so that finding a rule walks the request's
/// segments instead of trying every rule: the cost does not grow with the number of rules.
/// The answer is the one the order above defines.
#[derive(Clone, Debug, Default)]
pub struct Router {
    rules: Vec<RouteRule>,
    compiled: Vec<Compiled>,
    /// Whether some literal has a `%`: its raw and decoded forms then differ.
    escaped_literals: bool,
    /// Per rule, the id of its segment kinds (equal ids = equal kinds, position by position).
    shapes: Vec<u32>,
    /// The tries, indexed by [`trie_slot`]; empty for a router without rules.
    tries: Vec<Trie>,
}

/// Gives a segment reader its signature (the text borrowed from the segment).
fn reader<T>(f: impl Fn(&T) -> (&str, bool)) -> impl Fn(&T) -> (&str, bool) {
    f
}

/// Request segments [`Router::find`] keeps on the stack.
const STACK_SEGMENTS: usize = 16;

/// The position in [`Router::tries`] of the trie for `mode`.
fn trie_slot(mode: Mode) -> usize {
    usize::from(mode.decoded) * 2 + usize::from(mode.fold)
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
        let (rules, compiled): (Vec<RouteRule>, Vec<Compiled>) = entries.into_iter().unzip();
        // Sorted by kinds first, so equal kinds are adjacent.
        let mut shapes = Vec::with_capacity(compiled.len());
        let mut shape = 0u32;
        for (i, c) in compiled.iter().enumerate() {
            if i > 0 && !same_kinds(&compiled[i - 1], c) {
                shape += 1;
            }
            shapes.push(shape);
        }
        let tries = if rules.is_empty() {
            Vec::new()
        } else {
            let mut tries = Vec::with_capacity(4);
            for decoded in [false, true] {
                for fold in [false, true] {
                    let mode = Mode { decoded, fold };
                    debug_assert_eq!(trie_slot(mode), tries.len());
                    tries.push(Trie::build(compiled.iter().map(|c| &*c.segments), mode));
                }
            }
            tries
        };
        Router {
            rules,
            compiled,
            escaped_literals,
            shapes,
            tries,
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
        let end = path
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(path.len());
        let path = &path[..end];
        if !path.starts_with('/') {
            return None;
        }
        // The segments on the stack (a longer path, rare, in a Vec).
        let mut stack: [&str; STACK_SEGMENTS] = [""; STACK_SEGMENTS];
        let mut heap: Vec<&str> = Vec::new();
        let mut count = 0;
        let bytes = path.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            let len = bytes[start..]
                .iter()
                .position(|&b| b == b'/')
                .unwrap_or(bytes.len() - start);
            // Split at ASCII '/' (or the end): on char boundaries.
            let seg = &path[start..start + len];
            start += len + 1;
            if seg.is_empty() {
                continue;
            }
            if seg == "." || seg == ".." {
                return None;
            }
            if count < STACK_SEGMENTS {
                stack[count] = seg;
            } else {
                if heap.is_empty() {
                    heap.extend_from_slice(&stack);
                }
                heap.push(seg);
            }
            count += 1;
        }
        let segs: &[&str] = if heap.is_empty() {
            &stack[..count]
        } else {
            &heap
        };
        let mode = Mode {
            decoded: false,
            fold: false,
        };
        self.find_index(method, mode, segs, &reader(|s: &&str| (*s, true)))
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
#[cfg(test)]
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
#[cfg(test)]
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
        let mode = Mode {
            decoded: reading.decoded,
            fold: reading.case_insensitive,
        };
        let read = reader(|&(raw, decoded): &(&str, &str)| {
            let text = if reading.decoded { decoded } else { raw };
            (text, !decoded.is_empty() || reading.param_matches_empty)
        });
        self.find_index(method, mode, path, &read)
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
    /// matches the request segments `path` (text, whether a `:name` may take it), found in
    /// the trie for `mode`. A `HEAD` request also matches `GET` rules, as every framework
    /// serves `HEAD` with the `GET` handler; among rules as specific as the `GET` rule found
    /// (same segment kinds, exact method), an exact `HEAD` rule that matches wins.
    fn find_index<T>(
        &self,
        method: &str,
        mode: Mode,
        path: &[T],
        read: &impl Fn(&T) -> (&str, bool),
    ) -> Option<usize> {
        let trie = self.tries.get(trie_slot(mode))?;
        let head = method.eq_ignore_ascii_case("HEAD");
        let accepts = |ix: RuleIx| {
            let (rule, compiled) = (&self.rules[ix as usize], &self.compiled[ix as usize]);
            compiled.any_method
                || rule.method.eq_ignore_ascii_case(method)
                || (head && rule.method == "GET")
        };
        let found = trie.lowest(path, read, &accepts)?;
        if head && self.rules[found as usize].method == "GET" {
            // The rules after `found` with its kinds and an exact method are adjacent (the
            // order puts exact methods before `*`), as the linear scan reads them.
            let shape = self.shapes[found as usize];
            let better = |ix: RuleIx| {
                ix > found
                    && self.shapes[ix as usize] == shape
                    && self.rules[ix as usize].method == "HEAD"
            };
            if let Some(ix) = trie.lowest(path, read, &better) {
                return Some(ix as usize);
            }
        }
        Some(found as usize)
    }
}

/// Whether two compiled patterns have the same segment kinds, position by position.
fn same_kinds(a: &Compiled, b: &Compiled) -> bool {
    a.segments.len() == b.segments.len()
        && a.segments
            .iter()
            .zip(b.segments.iter())
            .all(|(x, y)| x.rank() == y.rank())
}

/// The linear scan the index replaced, kept as the oracle of the index's tests.
#[cfg(test)]
impl Router {
    /// [`Router::find`] by trying the rules one by one.
    pub(super) fn find_linear(&self, method: &str, path: &str) -> Option<&RouteRule> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        if !path.starts_with('/') {
            return None;
        }
        let segs = segments(path);
        if segs.clone().any(|s| s == "." || s == "..") {
            return None;
        }
        self.find_index_linear(method, |compiled| {
            matches_segments(&compiled.segments, segs.clone())
        })
        .map(|i| &self.rules[i])
    }

    /// [`Router::find_reading`] by trying the rules one by one.
    pub(super) fn find_reading_linear(
        &self,
        method: &str,
        path: &[(&str, &str)],
        reading: Reading,
    ) -> Option<usize> {
        self.find_index_linear(method, |compiled| {
            matches_reading(&compiled.segments, path, reading)
        })
    }

    fn find_index_linear(
        &self,
        method: &str,
        matches: impl Fn(&Compiled) -> bool,
    ) -> Option<usize> {
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
