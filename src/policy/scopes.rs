//! Scope validation and the scope-grant rule (see the module docs of `policy`).

use super::MAX_SCOPE_LEN;
use crate::{Error, Result};

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
