//! Validation of what callers pass in: ids, names, scopes, metadata, idempotency keys,
//! rate-limit names and the arguments of an authorization. Bad input is refused with
//! `invalid_argument` before any work, and changes nothing.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::Millis;
use crate::options::{AuthorizeOptions, Target};
use crate::policy;
use crate::times;

pub(crate) const MAX_ID: usize = 128;
pub(crate) const MAX_NAME: usize = 128;
pub(crate) const MAX_METADATA: usize = 4096;
pub(crate) const MAX_SCOPES: usize = 64;
pub(crate) const MAX_IDEMPOTENCY_KEY: usize = 255;
pub(crate) const MAX_PATH: usize = 8192;

pub(crate) fn validate_id(id: &str, what: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID {
        return Err(Error::invalid(format!("{what} must be 1–{MAX_ID} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

/// Most rate limits on one key or account.
pub(crate) const MAX_LIMITS: usize = 16;

/// Longest rate-limit window.
pub(crate) const MAX_LIMIT_WINDOW_MS: u64 = 366 * 86_400_000;

pub(crate) fn validate_limit_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_:.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "a rate limit name is 1–64 characters of [a-z0-9_:.-]",
        ))
    }
}

pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::invalid(format!(
            "key name must be 1–{MAX_NAME} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "key name must not contain control characters",
        ));
    }
    Ok(())
}

pub(crate) fn validate_expiry(at: Millis, now: Millis) -> Result<Millis> {
    times::check("expires_at", at)?;
    if at <= now {
        return Err(Error::invalid("expires_at must be in the future"));
    }
    Ok(at)
}

pub(crate) fn validate_idempotency_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY {
        return Err(Error::invalid("idempotency_key must be 1–255 bytes"));
    }
    Ok(())
}

pub(crate) fn validate_authorize_args(
    target: &Target<'_>,
    options: &AuthorizeOptions<'_>,
) -> Result<()> {
    match target {
        Target::Route { method, path } => {
            if method.is_empty() || method.len() > 16 || path.len() > MAX_PATH {
                return Err(Error::invalid(
                    "method must be 1–16 bytes and path at most 8192 bytes",
                ));
            }
        }
        Target::Request { method, target, .. } => {
            if method.is_empty() || method.len() > 16 || target.len() > MAX_PATH {
                return Err(Error::invalid(
                    "method must be 1–16 bytes and request target at most 8192 bytes",
                ));
            }
        }
        Target::Scope(s) => policy::validate_required_scope(s)?,
    }
    if let Some(k) = options.idempotency_key {
        validate_idempotency_key(k)?;
    }
    if let Some(now) = options.now {
        times::check("now", now)?;
    }
    if options.limit_cost == Some(0) {
        return Err(Error::invalid("limit_cost must be positive"));
    }
    // Holds.
    if options.hold.is_some() && options.cost.is_some() {
        return Err(Error::invalid(
            "give hold or cost, not both: a hold is charged when it is settled",
        ));
    }
    if options.hold_ttl_ms.is_some() && options.hold.is_none() {
        return Err(Error::invalid("hold_ttl_ms needs hold"));
    }
    if let Some(amount) = options.hold {
        crate::vault::validate_hold_args(
            amount,
            options.hold_ttl_ms.unwrap_or(crate::DEFAULT_HOLD_TTL_MS),
        )?;
    }
    if let Some(q) = options.query {
        match target {
            Target::Route { path, .. } if path.contains('?') => {
                return Err(Error::invalid(
                    "give the query string in the path or in query, not both",
                ));
            }
            Target::Route { path, .. } if path.len().saturating_add(q.len()) > MAX_PATH => {
                return Err(Error::invalid(
                    "path and query must be at most 8192 bytes together",
                ));
            }
            Target::Route { .. } => {}
            Target::Request { target, .. } if target.contains('?') => {
                return Err(Error::invalid(
                    "give the query string in the target or in query, not both",
                ));
            }
            Target::Request { target, .. } if target.len().saturating_add(q.len()) > MAX_PATH => {
                return Err(Error::invalid(
                    "target and query must be at most 8192 bytes together",
                ));
            }
            Target::Request { .. } => {}
            Target::Scope(_) => {
                return Err(Error::invalid("query is for routes, not scopes"));
            }
        }
    }
    if let Some(names) = options.limits {
        if names.len() > MAX_LIMITS * 2 {
            return Err(Error::invalid("too many rate limit names"));
        }
        for name in names {
            validate_limit_name(name)?;
        }
    }
    Ok(())
}

pub(crate) fn normalize_scopes<S: AsRef<str>>(scopes: &[S]) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid(format!("at most {MAX_SCOPES} scopes")));
    }
    let mut out = Vec::with_capacity(scopes.len());
    for s in scopes {
        policy::validate_scope(s.as_ref())?;
        out.push(s.as_ref().to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

pub(crate) fn metadata_string(metadata: Option<Value>) -> Result<String> {
    let m = metadata.unwrap_or_else(|| json!({}));
    if !m.is_object() {
        return Err(Error::invalid("metadata must be a JSON object"));
    }
    // Stored metadata is read back with serde_json's parser, which stops at 128 levels of
    // nesting, and serializing a value nested thousands deep recurses as deep. So the
    // depth is measured first, without recursion (metadata nested 128 levels deep used
    // to be accepted and then read back as `{}`).
    if json_depth(&m) > MAX_METADATA_DEPTH {
        return Err(Error::invalid(format!(
            "metadata is nested too deeply (at most {MAX_METADATA_DEPTH} levels)"
        )));
    }
    let s = m.to_string();
    if s.len() > MAX_METADATA {
        return Err(Error::invalid("metadata must be at most 4 KiB as JSON"));
    }
    Ok(s)
}

/// Nesting levels of arrays and objects that serde_json reads back (its limit is 128).
pub(crate) const MAX_METADATA_DEPTH: usize = 127;

/// The nesting depth of a JSON value (an object or array is one level), iteratively.
pub(crate) fn json_depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        max = max.max(d);
        if max > MAX_METADATA_DEPTH {
            break;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    max
}
