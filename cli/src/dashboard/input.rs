//! Reading request input with clear messages: a JSON object body (numbers may come as
//! numbers or as the strings a form field holds), and query parameters. Anything
//! malformed is `invalid_argument` (400) before the vault is touched; unknown fields are
//! refused too, so a typo never silently does less than asked.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde_json::{Map, Value};

use super::ApiError;

/// A JSON object body (`Content-Type: application/json` required).
pub struct JsonObject {
    map: Map<String, Value>,
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send a JSON object with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {} bytes", super::MAX_BODY),
                )
            } else {
                ApiError::invalid("cannot read the request body")
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject { map: Map::new() });
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject { map }),
            Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
            Err(e) => Err(ApiError::invalid(format!(
                "the body is not valid JSON: {e}"
            ))),
        }
    }
}

/// Query parameters (`?key=…&limit=…`); an empty value counts as absent.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(map) = Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("bad query string: {e}")))?;
        Ok(QueryMap(
            map.into_iter()
                .filter(|(_, v)| !v.trim().is_empty())
                .collect(),
        ))
    }
}

impl QueryMap {
    pub fn str(&self, name: &str) -> Option<String> {
        self.0.get(name).map(|v| v.trim().to_string())
    }

    pub fn i64(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.0.get(name).map(|v| parse_i64(name, v)).transpose()
    }
}

/// A non-negative integer; anything else (negative, over u64, not a number) is
/// `invalid_argument`, as in every host.
pub fn parse_u64(what: &str, s: &str) -> Result<u64, ApiError> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| ApiError::invalid(format!("{what} is larger than {}", u64::MAX)));
    }
    if t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(format!("{what} must not be negative")));
    }
    Err(ApiError::invalid(format!(
        "{what} must be a non-negative integer, got {s:?}"
    )))
}

pub fn parse_i64(what: &str, s: &str) -> Result<i64, ApiError> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| ApiError::invalid(format!("{what} must be an integer, got {s:?}")))
}

/// Seconds (a non-negative integer) → milliseconds.
pub fn seconds_to_ms(what: &str, secs: u64) -> Result<i64, ApiError> {
    i64::try_from(secs)
        .ok()
        .and_then(|v| v.checked_mul(1000))
        .ok_or_else(|| ApiError::invalid(format!("{what} is too large")))
}

fn describe(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

impl JsonObject {
    /// Refuse fields nobody asked for.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.map.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        Err(ApiError::invalid(format!(
            "unknown field(s): {}",
            names.join(", ")
        )))
    }

    /// Take a field; `null` counts as absent.
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// A string field; an empty (or all-blank) string counts as absent.
    pub fn opt_str(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be a string, got {}",
                describe(&v)
            ))),
        }
    }

    pub fn req_str(&mut self, name: &str) -> Result<String, ApiError> {
        self.opt_str(name)?
            .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    /// A non-negative integer, as a JSON number or a string of digits.
    pub fn opt_u64(&mut self, name: &str) -> Result<Option<u64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => parse_u64(name, &s).map(Some),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => Ok(Some(v)),
                None => parse_u64(name, &n.to_string()).map(Some),
            },
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be a non-negative integer, got {}",
                describe(&v)
            ))),
        }
    }

    pub fn req_u64(&mut self, name: &str) -> Result<u64, ApiError> {
        self.opt_u64(name)?
            .ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    /// A signed integer (unix milliseconds), as a number or a string.
    pub fn opt_i64(&mut self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => parse_i64(name, &s).map(Some),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::invalid(format!("{name} must be an integer, got {n}"))),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be an integer, got {}",
                describe(&v)
            ))),
        }
    }

    pub fn bool(&mut self, name: &str) -> Result<bool, ApiError> {
        match self.take(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be true or false, got {}",
                describe(&v)
            ))),
        }
    }

    /// Scopes: a JSON array of strings, or one string separated by commas or spaces.
    pub fn scopes(&mut self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.take(name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(ApiError::invalid(format!(
                        "{name} must hold strings, got {}",
                        describe(&other)
                    ))),
                })
                .collect(),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be a list of strings, got {}",
                describe(&v)
            ))),
        }
    }

    /// Metadata: a JSON object, or a string holding one; blank counts as absent.
    pub fn metadata(&mut self, name: &str) -> Result<Option<Value>, ApiError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Value::Object(m))),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                Ok(v @ Value::Object(_)) => Ok(Some(v)),
                Ok(_) => Err(ApiError::invalid(format!("{name} must be a JSON object"))),
                Err(e) => Err(ApiError::invalid(format!("{name} is not valid JSON: {e}"))),
            },
            Some(_) => Err(ApiError::invalid(format!("{name} must be a JSON object"))),
        }
    }
}

/// The single `{id}` segment of a path (an account id or a key id).
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Id(id))
            .map_err(|e| ApiError::invalid(format!("bad path: {e}")))
    }
}
