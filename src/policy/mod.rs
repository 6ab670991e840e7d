//! Scopes and route rules.
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

mod index;
#[cfg(test)]
mod index_tests;
mod router;
mod rules;
mod scopes;
#[cfg(test)]
mod tests;

/// Longest scope, in bytes (all ASCII).
pub const MAX_SCOPE_LEN: usize = 64;

/// Longest route pattern, in bytes, before normalization.
pub const MAX_PATTERN_LEN: usize = 512;

/// Longest HTTP method token.
pub const MAX_METHOD_LEN: usize = 16;

/// Longest `:name` parameter name (without the `:`).
pub const MAX_PARAM_NAME_LEN: usize = 32;

pub(crate) use router::Reading;
pub use router::Router;
pub use rules::{normalize_method, normalize_pattern, RouteRule};
pub use scopes::{scope_grants, scopes_grant, validate_required_scope, validate_scope};
