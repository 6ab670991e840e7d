//! Holds in Python: the `Hold` result class (`Vault.hold`, `settle`, `release`, `holds`,
//! `get_hold` are `Vault` methods, with `_async` variants that run them in a worker
//! thread).

use super::*;

/// A hold: credits reserved until settled, released or expired.
#[pyclass(frozen, module = "keyledger", name = "Hold")]
pub struct PyHold(pub(super) crate::Hold);

#[pymethods]
impl PyHold {
    #[getter]
    fn hold_id(&self) -> &str {
        &self.0.hold_id
    }
    #[getter]
    fn account_id(&self) -> &str {
        &self.0.account_id
    }
    #[getter]
    fn key_id(&self) -> Option<&str> {
        self.0.key_id.as_deref()
    }
    #[getter]
    fn amount(&self) -> u64 {
        self.0.amount
    }
    #[getter]
    fn charged(&self) -> u64 {
        self.0.charged
    }
    /// `"active"`, `"settled"`, `"released"` or `"expired"`.
    #[getter]
    fn state(&self) -> &'static str {
        self.0.state.as_str()
    }
    /// Unix milliseconds.
    #[getter]
    fn created_at(&self) -> i64 {
        self.0.created_at
    }
    /// Unix milliseconds.
    #[getter]
    fn expires_at(&self) -> i64 {
        self.0.expires_at
    }
    /// Unix milliseconds, or `None` while active.
    #[getter]
    fn finished_at(&self) -> Option<i64> {
        self.0.finished_at
    }
    #[getter]
    fn replayed(&self) -> bool {
        self.0.replayed
    }
    fn __repr__(&self) -> String {
        format!(
            "Hold(hold_id={}, account_id={}, amount={}, charged={}, state={})",
            pyq(&self.0.hold_id),
            pyq(&self.0.account_id),
            self.0.amount,
            self.0.charged,
            pyq(self.0.state.as_str())
        )
    }
}

/// A hold's TTL: a `timedelta` or seconds; `None`: the default (15 minutes).
pub(super) fn ttl_arg(py: Python<'_>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    match ttl.filter(|o| !o.is_none()) {
        None => Ok(None),
        Some(t) => {
            let ms = duration_arg(py, t, "ttl")?;
            u64::try_from(ms)
                .map(Some)
                .map_err(|_| invalid(py, "ttl must be positive"))
        }
    }
}
