//! `Vault.authorize_http` and `bearer_token`: the core's HTTP gate (`keyledger::http`) for
//! Python; `keyledger.asgi` is a thin adapter over it.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use super::{instant_arg, invalid, opt_u64_arg, strings_arg, PyGrant};
use crate::http::{HttpOptions, HttpRequest};
use crate::OnReplay;

/// The token of an `Authorization: Bearer <token>` value, or None (the gate's grammar).
#[pyfunction]
pub(super) fn bearer_token(value: &[u8]) -> Option<String> {
    crate::http::gate::bearer_token(value).map(str::to_string)
}

/// A header value or body: `bytes`, `bytearray` or `str` (UTF-8); None is absent.
fn bytes_arg(v: &Bound<'_, PyAny>, name: &str) -> PyResult<Option<Vec<u8>>> {
    if v.is_none() {
        return Ok(None);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(s.extract::<String>()?.into_bytes()));
    }
    v.extract::<Vec<u8>>()
        .map(Some)
        .map_err(|_| PyTypeError::new_err(format!("{name} must be bytes, str or None")))
}

#[derive(Default)]
struct Args {
    authorization: Option<Vec<u8>>,
    api_key: Option<Vec<u8>>,
    signature: Option<Vec<u8>>,
    idempotency_key: Option<Vec<u8>>,
    body: Option<Vec<u8>>,
    body_too_large: bool,
    cost: Option<u64>,
    scope: Option<String>,
    limits: Option<Vec<String>>,
    limit_cost: Option<u64>,
    refuse_replay: bool,
    case_insensitive: bool,
    max_body: Option<u64>,
    now: Option<crate::Millis>,
}

fn decode(py: Python<'_>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Args> {
    let mut a = Args {
        refuse_replay: true,
        ..Args::default()
    };
    let Some(kwargs) = kwargs else {
        return Ok(a);
    };
    for (k, v) in kwargs.iter() {
        let name: String = k.extract()?;
        let set = !v.is_none();
        match name.as_str() {
            "authorization" => a.authorization = bytes_arg(&v, &name)?,
            "api_key" => a.api_key = bytes_arg(&v, &name)?,
            "signature" => a.signature = bytes_arg(&v, &name)?,
            "idempotency_key" => a.idempotency_key = bytes_arg(&v, &name)?,
            "body" => a.body = bytes_arg(&v, &name)?,
            "body_too_large" => a.body_too_large = v.is_truthy()?,
            "cost" => a.cost = opt_u64_arg(py, Some(&v), "cost")?,
            "scope" => a.scope = v.extract()?,
            "limits" if set => a.limits = Some(strings_arg(&v, "limits")?),
            "limit_cost" => a.limit_cost = opt_u64_arg(py, Some(&v), "limit_cost")?,
            "replay" => {
                a.refuse_replay = match v.extract::<Option<String>>()?.as_deref() {
                    None | Some("refuse") => true,
                    Some("pass") => false,
                    Some(_) => return Err(invalid(py, "replay must be \"refuse\" or \"pass\"")),
                }
            }
            "case_insensitive" => a.case_insensitive = v.is_truthy()?,
            "max_body" => a.max_body = opt_u64_arg(py, Some(&v), "max_body")?,
            "now" if set => a.now = Some(instant_arg(py, &v, "now")?),
            "limits" | "now" => {}
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "authorize_http() got an unexpected keyword argument '{name}'"
                )))
            }
        }
    }
    Ok(a)
}

/// `Vault.authorize_http(method, target, **options)`: `(status, headers, body, grant)`;
/// `nonblocking` (`try_authorize_http`): `None` when the request would block.
pub(super) fn authorize_http<'py>(
    py: Python<'py>,
    vault: &crate::Vault,
    method: &str,
    target: &Bound<'py, PyAny>,
    kwargs: Option<&Bound<'py, PyDict>>,
    nonblocking: bool,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let a = decode(py, kwargs)?;
    let target = bytes_arg(target, "target")?.unwrap_or_default();
    let limits: Option<Vec<&str>> = a
        .limits
        .as_ref()
        .map(|l| l.iter().map(String::as_str).collect());
    let request = HttpRequest {
        method,
        target: &target,
        authorization: a.authorization.as_deref(),
        api_key: a.api_key.as_deref(),
        signature: a.signature.as_deref(),
        idempotency_key: a.idempotency_key.as_deref(),
        body: a.body.as_deref(),
        body_too_large: a.body_too_large,
    };
    let options = HttpOptions {
        cost: a.cost,
        scope: a.scope.as_deref(),
        limits: limits.as_deref(),
        limit_cost: a.limit_cost,
        on_replay: if a.refuse_replay {
            OnReplay::Refuse
        } else {
            OnReplay::Grant
        },
        case_insensitive: a.case_insensitive,
        max_body: a.max_body.map(|m| usize::try_from(m).unwrap_or(usize::MAX)),
        now: a.now,
    };
    let out = if nonblocking {
        // With the GIL held: this call never waits (no argon2, no commit).
        match vault.try_authorize_http(&request, &options) {
            crate::Attempt::Ready(out) => out,
            crate::Attempt::WouldBlock(_) => return Ok(None),
        }
    } else {
        py.detach(|| vault.authorize_http(&request, &options))
    };
    let headers: Vec<(&str, String)> = out.headers.iter().map(|(k, v)| (*k, v.clone())).collect();
    let grant = out.grant.map(PyGrant::owned);
    (
        out.status,
        headers,
        PyBytes::new(py, out.body.as_bytes()),
        grant,
    )
        .into_pyobject(py)
        .map(Some)
}
