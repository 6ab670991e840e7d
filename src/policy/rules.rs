//! Route rules: method and pattern validation, normalization and compilation into segments.

use serde::{Deserialize, Serialize};

use super::{MAX_METHOD_LEN, MAX_PARAM_NAME_LEN, MAX_PATTERN_LEN};
use crate::{Error, Result};

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
pub(super) enum Segment {
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
    pub(super) fn rank(&self) -> u8 {
        match self {
            Segment::Literal(..) => 2,
            Segment::Param => 1,
            Segment::Rest => 0,
        }
    }
}

/// Non-empty `/`-separated segments of `path`.
pub(super) fn segments(path: &str) -> impl Iterator<Item = &str> + Clone {
    path.split('/').filter(|s| !s.is_empty())
}

/// Parses and validates a pattern into its segments.
pub(super) fn compile_pattern(p: &str) -> Result<Vec<Segment>> {
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
    /// The scope a key needs for this route (no `*`, see
    /// [`validate_required_scope`](super::validate_required_scope)).
    pub scope: String,
    /// The default cost of a matching call, in credits.
    pub cost: u64,
}
