//! The module-level functions: token shape and redaction, webhook and request
//! signatures, master key generation, the version.

use super::*;

/// Format and checksum only; no vault access.
#[pyfunction]
pub(super) fn looks_like_key(token: &Bound<'_, PyAny>) -> bool {
    token
        .extract::<PyBackedStr>()
        .is_ok_and(|t| crate::looks_like_key(&t))
}

/// `"<prefix>_<key_id>_…"`: what logs may show of a token.
#[pyfunction]
pub(super) fn redact(token: PyBackedStr) -> String {
    crate::redact(&token)
}

pub(super) fn bytes_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.extract::<PyBackedStr>() {
        return Ok(s.as_bytes().to_vec());
    }
    obj.extract::<Vec<u8>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be bytes or str")))
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret` (`str` is UTF-8 encoded).
#[pyfunction]
pub(super) fn sign_webhook(secret: &Bound<'_, PyAny>, body: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(crate::sign_webhook(
        &bytes_arg(secret, "secret")?,
        &bytes_arg(body, "body")?,
    ))
}

/// Constant-time check of a webhook signature; a malformed signature is `False`.
#[pyfunction]
pub(super) fn verify_webhook(
    body: &Bound<'_, PyAny>,
    signature_hex: &Bound<'_, PyAny>,
    secret: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    let Ok(sig) = signature_hex.extract::<PyBackedStr>() else {
        return Ok(false);
    };
    Ok(crate::verify_webhook(
        &bytes_arg(body, "body")?,
        &sig,
        &bytes_arg(secret, "secret")?,
    ))
}

/// The signature header (format 2) a client sends for a signed request: `t=<t>,v2=<hex
/// HMAC-SHA256>` over `"keyledger-signature-v2\n" + t + "\n" + METHOD + "\n" + target +
/// "\n" + hex(SHA-256(body))`; `path` is the request target as sent, with its query string.
#[pyfunction]
#[pyo3(signature = (signing_secret, method, path, body=None, t=None))]
pub(super) fn sign_request(
    py: Python<'_>,
    signing_secret: PyBackedStr,
    method: PyBackedStr,
    path: PyBackedStr,
    body: Option<&Bound<'_, PyAny>>,
    t: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let body = match body {
        Some(b) if !b.is_none() => bytes_arg(b, "body")?,
        _ => Vec::new(),
    };
    let t_ms = match t {
        Some(t) if !t.is_none() => instant_arg(py, t, "t")?,
        _ => crate::system_now(),
    };
    Ok(crate::sign_request(
        &signing_secret,
        t_ms.div_euclid(1000),
        &method,
        &path,
        &body,
    ))
}

/// A new random master key, as base64 (for `KEYLEDGER_MASTER_KEY`).
#[pyfunction]
pub(super) fn generate_master_key(py: Python<'_>) -> PyResult<String> {
    let k = MasterKey::generate().py(py)?;
    Ok(k.to_base64().as_str().to_string())
}

/// The version of the native module.
#[pyfunction]
pub(super) fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
