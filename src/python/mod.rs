//! The Python extension module `keyledger._keyledger` (feature `python`, built by maturin).
//!
//! Mapping only: arguments are decoded into core types, the core is called with the GIL
//! released (`Python::detach`), and results are wrapped in frozen classes whose getters
//! convert lazily (times to timezone-aware `datetime`, metadata to `dict`). Every
//! `keyledger::Error` variant maps to its exception class in `keyledger._errors`; the
//! match is exhaustive, so a new variant does not build until it is mapped here.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyTuple};

use zeroize::Zeroizing;

mod http;

use crate::{
    Argon2Params, AuditQuery, AuthorizeOptions, Durability, Error, MasterKey, Millis, NewKey,
    SecretToken, Target, ThrottleConfig, VaultOptions,
};

// ------------------------------------------------------------------ errors

/// The exception class of each error, by name in `keyledger._errors`.
fn exception_name(e: &Error) -> &'static str {
    match e {
        Error::InvalidApiKey => "InvalidApiKey",
        Error::ApiKeyInactive => "ApiKeyInactive",
        Error::ApiKeyExpired => "ApiKeyExpired",
        Error::InvalidSignature => "InvalidSignature",
        Error::MissingScope { .. } => "MissingScope",
        Error::RouteNotAllowed => "RouteNotAllowed",
        Error::RateLimited { .. } => "RateLimited",
        Error::InsufficientCredits { .. } => "InsufficientCredits",
        Error::IdempotencyConflict => "IdempotencyConflict",
        Error::DuplicateRequest { .. } => "DuplicateRequest",
        Error::TooManyAttempts { .. } => "TooManyAttempts",
        Error::AmbiguousPath(_) => "AmbiguousPath",
        Error::NotFound(_) => "NotFound",
        Error::AlreadyExists(_) => "AlreadyExists",
        Error::InvalidArgument(_) => "InvalidArgument",
        Error::WrongMasterKey => "WrongMasterKey",
        Error::Storage(_) => "StorageError",
        Error::VaultLocked => "VaultLocked",
        Error::VaultClosed(_) => "VaultClosed",
    }
}

fn to_py_err(py: Python<'_>, e: &Error) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let module = py.import("keyledger._errors")?;
        let cls = module.getattr(exception_name(e))?;
        let body = json_to_py(py, &e.body().to_string())?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("status", e.status())?;
        kwargs.set_item("code", e.code())?;
        kwargs.set_item("body", body)?;
        let exc = cls.call((e.to_string(),), Some(&kwargs))?;
        Ok(PyErr::from_value(exc))
    };
    build().unwrap_or_else(|err| err)
}

trait IntoPyResult<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for crate::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, &e))
    }
}

fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py_err(py, &Error::InvalidArgument(msg.into()))
}

// ------------------------------------------------------------------ conversions

fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    JSON.get_or_try_init(py, || py.import("json").map(Bound::unbind))
        .map(|m| m.bind(py))
}

fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    json_module(py)?.call_method1("loads", (text,))
}

fn value_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &v.to_string())
}

/// A `dict` (or `None`) → a JSON object for the core.
fn metadata_arg(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<serde_json::Value>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if !obj.is_instance_of::<PyDict>() {
        return Err(PyTypeError::new_err("metadata must be a dict"));
    }
    let text: String = json_module(py)?
        .call_method1("dumps", (obj,))
        .map_err(|e| invalid(py, format!("metadata is not JSON-serializable: {e}")))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| invalid(py, format!("metadata: {e}")))
}

struct Times {
    epoch: Py<PyAny>,
    one_ms: Py<PyAny>,
    datetime: Py<PyAny>,
    timedelta: Py<PyAny>,
}

fn times(py: Python<'_>) -> PyResult<&Times> {
    static TIMES: PyOnceLock<Times> = PyOnceLock::new();
    TIMES.get_or_try_init(py, || {
        let dt = py.import("datetime")?;
        let utc = dt.getattr("timezone")?.getattr("utc")?;
        let datetime = dt.getattr("datetime")?;
        let timedelta = dt.getattr("timedelta")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("tzinfo", utc)?;
        let epoch = datetime.call((1970, 1, 1), Some(&kwargs))?;
        let k = PyDict::new(py);
        k.set_item("milliseconds", 1)?;
        let one_ms = timedelta.call((), Some(&k))?;
        Ok(Times {
            epoch: epoch.unbind(),
            one_ms: one_ms.unbind(),
            datetime: datetime.unbind(),
            timedelta: timedelta.unbind(),
        })
    })
}

/// Unix milliseconds → an aware UTC `datetime`.
fn ms_to_datetime(py: Python<'_>, ms: Millis) -> PyResult<Bound<'_, PyAny>> {
    let t = times(py)?;
    let delta = t.one_ms.bind(py).call_method1("__mul__", (ms,))?;
    t.epoch.bind(py).call_method1("__add__", (delta,))
}

fn opt_datetime(py: Python<'_>, ms: Option<Millis>) -> PyResult<Option<Bound<'_, PyAny>>> {
    ms.map(|m| ms_to_datetime(py, m)).transpose()
}

fn is_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>()
}

/// A point in time: an aware `datetime`, or unix seconds (`int`/`float`).
fn instant_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Millis> {
    let t = times(py)?;
    if obj.is_instance(t.datetime.bind(py))? {
        if obj.getattr("tzinfo")?.is_none() {
            return Err(invalid(
                py,
                format!("{name} must be a timezone-aware datetime"),
            ));
        }
        let delta = obj.call_method1("__sub__", (t.epoch.bind(py),))?;
        return delta
            .call_method1("__floordiv__", (t.one_ms.bind(py),))?
            .extract::<i64>()
            .map_err(|_| invalid(py, format!("{name} is out of range")));
    }
    seconds_to_ms(py, obj, name)
}

/// A duration: a `timedelta`, or seconds (`int`/`float`).
fn duration_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Millis> {
    let t = times(py)?;
    if obj.is_instance(t.timedelta.bind(py))? {
        return obj
            .call_method1("__floordiv__", (t.one_ms.bind(py),))?
            .extract::<i64>()
            .map_err(|_| invalid(py, format!("{name} is out of range")));
    }
    seconds_to_ms(py, obj, name)
}

fn seconds_to_ms(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Millis> {
    if is_int(obj) {
        let s: i64 = obj
            .extract()
            .map_err(|_| invalid(py, format!("{name} is out of range")))?;
        return s
            .checked_mul(1000)
            .ok_or_else(|| invalid(py, format!("{name} is out of range")));
    }
    if obj.is_instance_of::<PyFloat>() {
        let s: f64 = obj.extract()?;
        let ms = (s * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.0e15 {
            return Err(invalid(py, format!("{name} is out of range")));
        }
        #[allow(clippy::cast_possible_truncation)]
        return Ok(ms as i64);
    }
    Err(PyTypeError::new_err(format!(
        "{name} must be a datetime/timedelta or a number of seconds"
    )))
}

/// A non-negative integer that fits in u64 (`positive`: also non-zero). Negative or
/// oversized values are `InvalidArgument`, never `OverflowError`.
fn u64_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str, positive: bool) -> PyResult<u64> {
    if !is_int(obj) {
        return Err(PyTypeError::new_err(format!("{name} must be an int")));
    }
    let v: u64 = obj
        .extract()
        .map_err(|_| invalid(py, format!("{name} must be between 0 and 2**64-1")))?;
    if positive && v == 0 {
        return Err(invalid(py, format!("{name} must be positive")));
    }
    Ok(v)
}

fn opt_u64_arg(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<u64>> {
    match obj {
        Some(o) if !o.is_none() => u64_arg(py, o, name, false).map(Some),
        _ => Ok(None),
    }
}

fn strings_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a list of strings, not a string"
        )));
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        out.push(
            item?
                .extract::<String>()
                .map_err(|_| PyTypeError::new_err(format!("{name} must contain only strings")))?,
        );
    }
    Ok(out)
}

fn token_to_py<'py>(py: Python<'py>, token: &SecretToken) -> PyResult<Bound<'py, PyAny>> {
    let cls = py.import("keyledger._types")?.getattr("Token")?;
    cls.call1((token.expose(), token.signing_secret()))
}

/// A master key: 32 raw `bytes`, or its base64 as `str`.
fn master_key_arg(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<MasterKey>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(text) = obj.extract::<PyBackedStr>() {
        return MasterKey::from_base64(&text).py(py).map(Some);
    }
    if let Ok(raw) = obj.extract::<pyo3::pybacked::PyBackedBytes>() {
        return MasterKey::from_bytes(&raw).py(py).map(Some);
    }
    Err(PyTypeError::new_err(
        "master_key must be 32 bytes or their base64 as str",
    ))
}

// ------------------------------------------------------------------ result classes

/// A successful authorization.
#[pyclass(frozen, module = "keyledger", name = "Grant")]
pub struct PyGrant(crate::Grant);

#[pymethods]
impl PyGrant {
    #[getter]
    fn account_id(&self) -> &str {
        &self.0.account_id
    }
    #[getter]
    fn key_id(&self) -> &str {
        &self.0.key_id
    }
    #[getter]
    fn key_name(&self) -> &str {
        &self.0.key_name
    }
    #[getter]
    fn prefix(&self) -> &str {
        &self.0.prefix
    }
    #[getter]
    fn auth_method(&self) -> &'static str {
        self.0.auth_method.as_str()
    }
    #[getter]
    fn scopes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.scopes)
    }
    #[getter]
    fn charged(&self) -> u64 {
        self.0.charged
    }
    #[getter]
    fn credits(&self) -> u64 {
        self.0.credits
    }
    #[getter]
    fn total_credits(&self) -> u64 {
        self.0.total_credits
    }
    #[getter]
    fn replayed(&self) -> bool {
        self.0.replayed
    }
    #[getter]
    fn ratelimits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .0
            .ratelimits
            .iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("name", &r.name)?;
                d.set_item("max", r.max)?;
                d.set_item("remaining", r.remaining)?;
                d.set_item("reset_ms", r.reset_ms)?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    /// The grant as a plain dict (JSON-ready).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &serde_json::to_value(&self.0).unwrap_or_default())
    }
    fn __repr__(&self) -> String {
        format!(
            "Grant(account_id={}, key_id={}, auth_method={}, charged={}, credits={}, replayed={})",
            pyq(&self.0.account_id),
            pyq(&self.0.key_id),
            pyq(self.0.auth_method.as_str()),
            self.0.charged,
            self.0.credits,
            if self.0.replayed { "True" } else { "False" }
        )
    }
}

/// A key's public info (never its secret or hash).
#[pyclass(frozen, module = "keyledger", name = "KeyInfo")]
pub struct PyKeyInfo(crate::KeyInfo);

#[pymethods]
impl PyKeyInfo {
    #[getter]
    fn key_id(&self) -> &str {
        &self.0.key_id
    }
    #[getter]
    fn prefix(&self) -> &str {
        &self.0.prefix
    }
    #[getter]
    fn account_id(&self) -> &str {
        &self.0.account_id
    }
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }
    #[getter]
    fn scopes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.scopes)
    }
    #[getter]
    fn operator(&self) -> bool {
        self.0.operator
    }
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ms_to_datetime(py, self.0.created_at)
    }
    #[getter]
    fn expires_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.0.expires_at)
    }
    #[getter]
    fn disabled(&self) -> bool {
        self.0.disabled
    }
    #[getter]
    fn revoked_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.0.revoked_at)
    }
    #[getter]
    fn signing(&self) -> bool {
        self.0.signing
    }
    #[getter]
    fn rotated_from(&self) -> Option<&str> {
        self.0.rotated_from.as_deref()
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.0.metadata)
    }
    #[getter]
    fn last_used_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.0.last_used_at)
    }
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &serde_json::to_value(&self.0).unwrap_or_default())
    }
    fn __repr__(&self) -> String {
        format!(
            "KeyInfo(key_id={}, prefix={}, account_id={}, name={}, scopes={}, disabled={}, revoked={})",
            pyq(&self.0.key_id),
            pyq(&self.0.prefix),
            pyq(&self.0.account_id),
            pyq(&self.0.name),
            pylist(&self.0.scopes),
            py_bool(self.0.disabled),
            py_bool(self.0.revoked_at.is_some())
        )
    }
}

/// `s` as Python's `repr` of a str would show it (single quotes).
fn pyq(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn pyq_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "None".to_string(), pyq)
}

fn pylist(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| pyq(s)).collect();
    format!("[{}]", inner.join(", "))
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// An account with its balance.
#[pyclass(frozen, module = "keyledger", name = "Account")]
pub struct PyAccount(crate::Account);

#[pymethods]
impl PyAccount {
    #[getter]
    fn id(&self) -> &str {
        &self.0.id
    }
    #[getter]
    fn credits(&self) -> u64 {
        self.0.credits
    }
    #[getter]
    fn total_credits(&self) -> u64 {
        self.0.total_credits
    }
    #[getter]
    fn created_at<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ms_to_datetime(py, self.0.created_at)
    }
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.0.metadata)
    }
    /// `{"amount", "interval": "daily"|"monthly", "day"}` or `None`.
    #[getter]
    fn refill<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.0
            .refill
            .as_ref()
            .map(|r| value_to_py(py, &serde_json::to_value(r).unwrap_or_default()))
            .transpose()
    }
    fn __repr__(&self) -> String {
        format!(
            "Account(id={}, credits={}, total_credits={})",
            pyq(&self.0.id),
            self.0.credits,
            self.0.total_credits
        )
    }
}

/// An account's credits.
#[pyclass(frozen, module = "keyledger", name = "Balance")]
pub struct PyBalance(crate::Balance);

#[pymethods]
impl PyBalance {
    #[getter]
    fn account_id(&self) -> &str {
        &self.0.account_id
    }
    #[getter]
    fn credits(&self) -> u64 {
        self.0.credits
    }
    #[getter]
    fn total_credits(&self) -> u64 {
        self.0.total_credits
    }
    fn __repr__(&self) -> String {
        format!(
            "Balance(account_id={}, credits={}, total_credits={})",
            pyq(&self.0.account_id),
            self.0.credits,
            self.0.total_credits
        )
    }
}

/// Who a token belongs to.
#[pyclass(frozen, module = "keyledger", name = "WhoAmI")]
pub struct PyWhoAmI(crate::WhoAmI);

#[pymethods]
impl PyWhoAmI {
    #[getter]
    fn account_id(&self) -> &str {
        &self.0.account_id
    }
    #[getter]
    fn key_id(&self) -> &str {
        &self.0.key_id
    }
    #[getter]
    fn key_name(&self) -> &str {
        &self.0.key_name
    }
    #[getter]
    fn auth_method(&self) -> &'static str {
        self.0.auth_method.as_str()
    }
    #[getter]
    fn scopes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.0.scopes)
    }
    #[getter]
    fn credits(&self) -> u64 {
        self.0.credits
    }
    #[getter]
    fn total_credits(&self) -> u64 {
        self.0.total_credits
    }
    fn __repr__(&self) -> String {
        format!(
            "WhoAmI(account_id={}, key_id={}, auth_method={}, credits={})",
            pyq(&self.0.account_id),
            pyq(&self.0.key_id),
            pyq(self.0.auth_method.as_str()),
            self.0.credits
        )
    }
}

/// One audit log entry.
#[pyclass(frozen, module = "keyledger", name = "AuditEntry")]
pub struct PyAuditEntry(crate::AuditEntry);

#[pymethods]
impl PyAuditEntry {
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }
    #[getter]
    fn time<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        ms_to_datetime(py, self.0.time)
    }
    #[getter]
    fn action(&self) -> &str {
        &self.0.action
    }
    #[getter]
    fn key_id(&self) -> Option<&str> {
        self.0.key_id.as_deref()
    }
    #[getter]
    fn account_id(&self) -> Option<&str> {
        self.0.account_id.as_deref()
    }
    #[getter]
    fn actor(&self) -> Option<&str> {
        self.0.actor.as_deref()
    }
    #[getter]
    fn details<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        value_to_py(py, &self.0.details)
    }
    fn __repr__(&self) -> String {
        format!(
            "AuditEntry(seq={}, action={}, key_id={}, account_id={})",
            self.0.seq,
            pyq(&self.0.action),
            pyq_opt(self.0.key_id.as_deref()),
            pyq_opt(self.0.account_id.as_deref())
        )
    }
}

/// A key's usage.
#[pyclass(frozen, module = "keyledger", name = "Usage")]
pub struct PyUsage(crate::Usage);

#[pymethods]
impl PyUsage {
    #[getter]
    fn key_id(&self) -> &str {
        &self.0.key_id
    }
    #[getter]
    fn last_used_at<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        opt_datetime(py, self.0.last_used_at)
    }
    #[getter]
    fn granted(&self) -> u64 {
        self.0.granted
    }
    #[getter]
    fn refused(&self) -> u64 {
        self.0.refused
    }
    /// `[(start of hour as datetime, count), …]`, oldest first.
    #[getter]
    fn hourly<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .0
            .hourly
            .iter()
            .map(|(h, n)| {
                PyTuple::new(
                    py,
                    [ms_to_datetime(py, *h)?, n.into_pyobject(py)?.into_any()],
                )
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    fn __repr__(&self) -> String {
        format!(
            "Usage(key_id={}, granted={}, refused={})",
            pyq(&self.0.key_id),
            self.0.granted,
            self.0.refused
        )
    }
}

/// A rate limit definition.
#[pyclass(frozen, module = "keyledger", name = "RateLimit")]
pub struct PyRateLimit(crate::RateLimit);

#[pymethods]
impl PyRateLimit {
    #[getter]
    fn name(&self) -> &str {
        &self.0.name
    }
    #[getter]
    fn limit(&self) -> u64 {
        self.0.limit
    }
    /// The window as a `timedelta`.
    #[getter]
    fn duration<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let ms = i64::try_from(self.0.duration_ms).unwrap_or(i64::MAX);
        times(py)?.one_ms.bind(py).call_method1("__mul__", (ms,))
    }
    #[getter]
    fn auto_apply(&self) -> bool {
        self.0.auto_apply
    }
    fn __repr__(&self) -> String {
        format!(
            "RateLimit(name={}, limit={}, duration_ms={}, auto_apply={})",
            pyq(&self.0.name),
            self.0.limit,
            self.0.duration_ms,
            py_bool(self.0.auto_apply)
        )
    }
}

fn owner_arg<'a>(
    py: Python<'_>,
    key_id: Option<&'a str>,
    account_id: Option<&'a str>,
) -> PyResult<crate::LimitOwner<'a>> {
    crate::LimitOwner::from_ids(key_id, account_id).py(py)
}

/// A route rule.
#[pyclass(frozen, module = "keyledger", name = "RouteRule")]
pub struct PyRouteRule(crate::RouteRule);

#[pymethods]
impl PyRouteRule {
    #[getter]
    fn method(&self) -> &str {
        &self.0.method
    }
    #[getter]
    fn pattern(&self) -> &str {
        &self.0.pattern
    }
    #[getter]
    fn scope(&self) -> &str {
        &self.0.scope
    }
    #[getter]
    fn cost(&self) -> u64 {
        self.0.cost
    }
    fn __repr__(&self) -> String {
        format!(
            "RouteRule(method={}, pattern={}, scope={}, cost={})",
            pyq(&self.0.method),
            pyq(&self.0.pattern),
            pyq(&self.0.scope),
            self.0.cost
        )
    }
}

// ------------------------------------------------------------------ the vault

/// An open vault. Thread-safe; open one per process (after `os.fork()`, open a new one in
/// the child: the parent's handle refuses with `VaultClosed`).
#[pyclass(frozen, module = "keyledger", name = "Vault")]
pub struct PyVault {
    vault: crate::Vault,
}

fn argon2_arg(py: Python<'_>, obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Argon2Params>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = obj.extract::<String>() {
        return match s.as_str() {
            "default" => Ok(Some(Argon2Params::default())),
            "insecure-fast" => Ok(Some(Argon2Params::INSECURE_FAST)),
            _ => Err(invalid(
                py,
                "argon2 must be \"default\", \"insecure-fast\" or a dict {m_kib, t, p}",
            )),
        };
    }
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("argon2 must be a str or a dict {m_kib, t, p}"))?;
    let get = |k: &str, default: u32| -> PyResult<u32> {
        match dict.get_item(k)? {
            None => Ok(default),
            Some(v) => {
                let n = u64_arg(py, &v, k, true)?;
                u32::try_from(n).map_err(|_| invalid(py, format!("argon2 {k} is too large")))
            }
        }
    };
    let d = Argon2Params::default();
    Ok(Some(Argon2Params {
        m_kib: get("m_kib", d.m_kib)?,
        t: get("t", d.t)?,
        p: get("p", d.p)?,
    }))
}

/// The keyword arguments `authorize` and `authorize_request` share, decoded.
struct AuthorizeArgs {
    cost: Option<u64>,
    limit_cost: Option<u64>,
    limit_names: Option<Vec<String>>,
    now: Option<Millis>,
    on_replay: crate::OnReplay,
}

impl AuthorizeArgs {
    fn decode(
        py: Python<'_>,
        cost: Option<&Bound<'_, PyAny>>,
        limits: Option<&Bound<'_, PyAny>>,
        limit_cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
        on_replay: Option<PyBackedStr>,
    ) -> PyResult<AuthorizeArgs> {
        Ok(AuthorizeArgs {
            on_replay: on_replay_arg(py, on_replay.as_deref())?,
            cost: opt_u64_arg(py, cost, "cost")?,
            limit_cost: opt_u64_arg(py, limit_cost, "limit_cost")?,
            limit_names: match limits {
                Some(l) if !l.is_none() => Some(strings_arg(l, "limits")?),
                _ => None,
            },
            now: match now {
                Some(n) if !n.is_none() => Some(instant_arg(py, n, "now")?),
                _ => None,
            },
        })
    }

    fn limit_refs(&self) -> Option<Vec<&str>> {
        self.limit_names
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect())
    }

    /// The options these arguments set (the borrowed ones are the caller's to fill in).
    fn options(&self) -> AuthorizeOptions<'static> {
        AuthorizeOptions {
            cost: self.cost,
            now: self.now,
            limit_cost: self.limit_cost,
            on_replay: self.on_replay,
            ..AuthorizeOptions::default()
        }
    }
}

/// `on_replay=`: `"grant"` (default) or `"refuse"`.
fn on_replay_arg(py: Python<'_>, v: Option<&str>) -> PyResult<crate::OnReplay> {
    match v {
        None | Some("grant") => Ok(crate::OnReplay::Grant),
        Some("refuse") => Ok(crate::OnReplay::Refuse),
        Some(_) => Err(invalid(py, "on_replay must be \"grant\" or \"refuse\"")),
    }
}

#[pymethods]
impl PyVault {
    #[new]
    #[pyo3(signature = (path, *, master_key=None, master_passphrase=None, argon2=None, exclusive=false, durability="immediate", cache_capacity=100_000, actor=None, throttle_burst=None, throttle_per_second=None, signature_window=None, refusal_retention=None, single_use_signatures=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: std::path::PathBuf,
        master_key: Option<&Bound<'_, PyAny>>,
        master_passphrase: Option<String>,
        argon2: Option<&Bound<'_, PyAny>>,
        exclusive: bool,
        durability: &str,
        cache_capacity: usize,
        actor: Option<String>,
        throttle_burst: Option<u32>,
        throttle_per_second: Option<f64>,
        signature_window: Option<&Bound<'_, PyAny>>,
        refusal_retention: Option<&Bound<'_, PyAny>>,
        single_use_signatures: bool,
    ) -> PyResult<Self> {
        let master_key = master_key_arg(py, master_key)?;
        let durability = match durability {
            "immediate" => Durability::Immediate,
            "eventual" => Durability::Eventual,
            _ => {
                return Err(invalid(
                    py,
                    "durability must be \"immediate\" or \"eventual\"",
                ))
            }
        };
        let mut throttle = ThrottleConfig::default();
        if let Some(b) = throttle_burst {
            throttle.burst = b;
        }
        if let Some(r) = throttle_per_second {
            if !(r.is_finite() && r >= 0.0) {
                return Err(invalid(
                    py,
                    "throttle_per_second must be a non-negative number",
                ));
            }
            throttle.per_second = r;
        }
        let options = VaultOptions {
            exclusive,
            durability,
            argon2: argon2_arg(py, argon2)?,
            cache_capacity,
            actor,
            throttle,
            master_key,
            master_passphrase: master_passphrase.map(Zeroizing::new),
            single_use_signatures,
            ..VaultOptions::default()
        };
        let mut options = options;
        if let Some(w) = signature_window.filter(|o| !o.is_none()) {
            options.signature_window_ms = duration_arg(py, w, "signature_window")?;
        }
        if let Some(r) = refusal_retention.filter(|o| !o.is_none()) {
            let ms = u64::try_from(duration_arg(py, r, "refusal_retention")?)
                .map_err(|_| invalid(py, "refusal_retention must not be negative"))?;
            options.refusal_retention = (ms > 0).then(|| std::time::Duration::from_millis(ms));
        }
        let vault = py
            .detach(|| crate::Vault::open_with(&path, options))
            .py(py)?;
        Ok(PyVault { vault })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// Flush pending usage and audit entries, close the file. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.vault.close()).py(py)
    }

    /// Flush pending usage counters and request-path audit entries now.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.vault.flush()).py(py)
    }

    /// The vault file.
    #[getter]
    fn path(&self) -> std::path::PathBuf {
        self.vault.path().to_path_buf()
    }

    /// `"shared"`, `"private"` or `"disabled"` (SPEC §4).
    #[getter]
    fn cache_mode(&self) -> &'static str {
        match self.vault.cache_mode() {
            crate::CacheMode::Shared => "shared",
            crate::CacheMode::Private => "private",
            crate::CacheMode::Disabled => "disabled",
        }
    }

    /// Counters: argon2_runs, read_txns, commits, throttled.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.vault.stats();
        let d = PyDict::new(py);
        d.set_item("argon2_runs", s.argon2_runs)?;
        d.set_item("read_txns", s.read_txns)?;
        d.set_item("commits", s.commits)?;
        d.set_item("throttled", s.throttled)?;
        d.set_item("flusher_panics", s.flusher_panics)?;
        Ok(d)
    }

    /// The argon2id parameters new hashes get: `{"m_kib", "t", "p"}`.
    fn argon2_params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let a = self.vault.argon2_params();
        let d = PyDict::new(py);
        d.set_item("m_kib", a.m_kib)?;
        d.set_item("t", a.t)?;
        d.set_item("p", a.p)?;
        Ok(d)
    }

    /// Change the vault's argon2id parameters (a dict `{m_kib, t, p}` or `"default"`),
    /// audited as `argon2_params_changed`. Hashes are rehashed only towards stronger ones.
    fn set_argon2_params(&self, py: Python<'_>, argon2: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(params) = argon2_arg(py, Some(argon2))? else {
            return Err(invalid(
                py,
                "argon2 must be \"default\" or a dict {m_kib, t, p}",
            ));
        };
        py.detach(|| self.vault.set_argon2_params(params)).py(py)
    }

    #[pyo3(signature = (token, *, route=None, scope=None, cost=None, idempotency_key=None, signature=None, body=None, limits=None, limit_cost=None, now=None, on_replay=None, query=None))]
    #[allow(clippy::too_many_arguments)]
    fn authorize(
        &self,
        py: Python<'_>,
        token: PyBackedStr,
        route: Option<(PyBackedStr, PyBackedStr)>,
        scope: Option<PyBackedStr>,
        cost: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<PyBackedStr>,
        signature: Option<PyBackedStr>,
        body: Option<pyo3::pybacked::PyBackedBytes>,
        limits: Option<&Bound<'_, PyAny>>,
        limit_cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
        on_replay: Option<PyBackedStr>,
        query: Option<PyBackedStr>,
    ) -> PyResult<PyGrant> {
        let args = AuthorizeArgs::decode(py, cost, limits, limit_cost, now, on_replay)?;
        let limit_refs = args.limit_refs();
        let target = match (&route, &scope) {
            (Some((m, p)), None) => Target::route(m, p),
            (None, Some(s)) => Target::scope(s),
            _ => {
                return Err(invalid(
                    py,
                    "give exactly one of route=(method, path) or scope=",
                ))
            }
        };
        let options = AuthorizeOptions {
            idempotency_key: idempotency_key.as_deref(),
            signature: signature.as_deref(),
            body: body.as_deref(),
            limits: limit_refs.as_deref(),
            query: query.as_deref(),
            ..args.options()
        };
        let grant = py
            .detach(|| self.vault.authorize(&token, target, &options))
            .py(py)?;
        Ok(PyGrant(grant))
    }

    /// The HTTP gate: authorize a request from its raw request target as sent (see
    /// `keyledger::http`). Ambiguous targets raise `AmbiguousPath` (400).
    #[pyo3(signature = (token, method, target, *, cost=None, idempotency_key=None, signature=None, body=None, limits=None, limit_cost=None, now=None, case_insensitive=false, on_replay=None))]
    #[allow(clippy::too_many_arguments)]
    fn authorize_request(
        &self,
        py: Python<'_>,
        token: PyBackedStr,
        method: PyBackedStr,
        target: PyBackedStr,
        cost: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<PyBackedStr>,
        signature: Option<PyBackedStr>,
        body: Option<pyo3::pybacked::PyBackedBytes>,
        limits: Option<&Bound<'_, PyAny>>,
        limit_cost: Option<&Bound<'_, PyAny>>,
        now: Option<&Bound<'_, PyAny>>,
        case_insensitive: bool,
        on_replay: Option<PyBackedStr>,
    ) -> PyResult<PyGrant> {
        let args = AuthorizeArgs::decode(py, cost, limits, limit_cost, now, on_replay)?;
        let limit_refs = args.limit_refs();
        let target = Target::request(&method, &target).case_insensitive(case_insensitive);
        // The query is read from the target itself.
        let options = AuthorizeOptions {
            idempotency_key: idempotency_key.as_deref(),
            signature: signature.as_deref(),
            body: body.as_deref(),
            limits: limit_refs.as_deref(),
            ..args.options()
        };
        let grant = py
            .detach(|| self.vault.authorize(&token, target, &options))
            .py(py)?;
        Ok(PyGrant(grant))
    }

    /// The whole HTTP gate (`keyledger.asgi` runs on it): `(status, headers, body,
    /// grant)`. Options: see `src/python/http.rs` and the `.pyi` stub.
    #[pyo3(signature = (method, target, **options))]
    fn authorize_http<'py>(
        &self,
        py: Python<'py>,
        method: PyBackedStr,
        target: &Bound<'py, PyAny>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        http::authorize_http(py, &self.vault, &method, target, options)
    }

    fn whoami(&self, py: Python<'_>, token: PyBackedStr) -> PyResult<PyWhoAmI> {
        py.detach(|| self.vault.whoami(&token)).py(py).map(PyWhoAmI)
    }

    #[pyo3(signature = (id, credits=None, metadata=None))]
    fn create_account(
        &self,
        py: Python<'_>,
        id: PyBackedStr,
        credits: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyAccount> {
        let credits = opt_u64_arg(py, credits, "credits")?.unwrap_or(0);
        let metadata = metadata_arg(py, metadata)?;
        py.detach(|| self.vault.create_account(&id, credits, metadata))
            .py(py)
            .map(PyAccount)
    }

    fn account(&self, py: Python<'_>, id: PyBackedStr) -> PyResult<PyAccount> {
        py.detach(|| self.vault.account(&id)).py(py).map(PyAccount)
    }

    fn list_accounts(&self, py: Python<'_>) -> PyResult<Vec<PyAccount>> {
        let v = py.detach(|| self.vault.list_accounts()).py(py)?;
        Ok(v.into_iter().map(PyAccount).collect())
    }

    #[pyo3(signature = (id, amount, reference=None))]
    fn top_up(
        &self,
        py: Python<'_>,
        id: PyBackedStr,
        amount: &Bound<'_, PyAny>,
        reference: Option<PyBackedStr>,
    ) -> PyResult<PyBalance> {
        let amount = u64_arg(py, amount, "amount", true)?;
        py.detach(|| self.vault.top_up(&id, amount, reference.as_deref()))
            .py(py)
            .map(PyBalance)
    }

    #[pyo3(signature = (id, amount, idempotency_key=None))]
    fn debit(
        &self,
        py: Python<'_>,
        id: PyBackedStr,
        amount: &Bound<'_, PyAny>,
        idempotency_key: Option<PyBackedStr>,
    ) -> PyResult<PyBalance> {
        let amount = u64_arg(py, amount, "amount", true)?;
        py.detach(|| self.vault.debit(&id, amount, idempotency_key.as_deref()))
            .py(py)
            .map(PyBalance)
    }

    fn balance(&self, py: Python<'_>, id: PyBackedStr) -> PyResult<PyBalance> {
        py.detach(|| self.vault.balance(&id)).py(py).map(PyBalance)
    }

    /// Mint a key: returns `(token, KeyInfo)`. The token is shown once and never again.
    #[pyo3(signature = (account_id, name, scopes, *, prefix="kl_live", expires_at=None, expires_in=None, operator=false, signing=false, metadata=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_key<'py>(
        &self,
        py: Python<'py>,
        account_id: String,
        name: String,
        scopes: &Bound<'_, PyAny>,
        prefix: &str,
        expires_at: Option<&Bound<'_, PyAny>>,
        expires_in: Option<&Bound<'_, PyAny>>,
        operator: bool,
        signing: bool,
        metadata: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, PyKeyInfo)> {
        let mut new = NewKey::new(account_id, name, strings_arg(scopes, "scopes")?).prefix(prefix);
        if let Some(at) = expires_at.filter(|o| !o.is_none()) {
            new.expires_at = Some(instant_arg(py, at, "expires_at")?);
        }
        if let Some(d) = expires_in.filter(|o| !o.is_none()) {
            new.expires_in_ms = Some(duration_arg(py, d, "expires_in")?);
        }
        new.operator = operator;
        new.signing = signing;
        new.metadata = metadata_arg(py, metadata)?;
        let (token, info) = py.detach(|| self.vault.create_key(new)).py(py)?;
        Ok((token_to_py(py, &token)?, PyKeyInfo(info)))
    }

    fn key(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<PyKeyInfo> {
        py.detach(|| self.vault.key(&key_id)).py(py).map(PyKeyInfo)
    }

    #[pyo3(signature = (account_id=None))]
    fn list_keys(
        &self,
        py: Python<'_>,
        account_id: Option<PyBackedStr>,
    ) -> PyResult<Vec<PyKeyInfo>> {
        let v = py
            .detach(|| self.vault.list_keys(account_id.as_deref()))
            .py(py)?;
        Ok(v.into_iter().map(PyKeyInfo).collect())
    }

    fn revoke_key(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<PyKeyInfo> {
        py.detach(|| self.vault.revoke_key(&key_id))
            .py(py)
            .map(PyKeyInfo)
    }

    fn disable_key(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<PyKeyInfo> {
        py.detach(|| self.vault.disable_key(&key_id))
            .py(py)
            .map(PyKeyInfo)
    }

    fn enable_key(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<PyKeyInfo> {
        py.detach(|| self.vault.enable_key(&key_id))
            .py(py)
            .map(PyKeyInfo)
    }

    fn set_scopes(
        &self,
        py: Python<'_>,
        key_id: PyBackedStr,
        scopes: &Bound<'_, PyAny>,
    ) -> PyResult<PyKeyInfo> {
        let scopes = strings_arg(scopes, "scopes")?;
        py.detach(|| self.vault.set_scopes(&key_id, &scopes))
            .py(py)
            .map(PyKeyInfo)
    }

    /// Set the expiry (an aware datetime or unix seconds), or clear it with `None`.
    fn set_expiry(
        &self,
        py: Python<'_>,
        key_id: PyBackedStr,
        expires_at: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyKeyInfo> {
        let at = match expires_at {
            Some(o) if !o.is_none() => Some(instant_arg(py, o, "expires_at")?),
            _ => None,
        };
        py.detach(|| self.vault.set_expiry(&key_id, at))
            .py(py)
            .map(PyKeyInfo)
    }

    /// Rotate: a new key with the same settings; the old one works for `grace`
    /// (a timedelta or seconds; default 0) and then expires. Returns `(token, KeyInfo)`.
    #[pyo3(signature = (key_id, grace=None))]
    fn rotate_key<'py>(
        &self,
        py: Python<'py>,
        key_id: PyBackedStr,
        grace: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, PyKeyInfo)> {
        let grace = match grace {
            Some(g) if !g.is_none() => duration_arg(py, g, "grace")?,
            _ => 0,
        };
        let (token, info) = py.detach(|| self.vault.rotate_key(&key_id, grace)).py(py)?;
        Ok((token_to_py(py, &token)?, PyKeyInfo(info)))
    }

    /// The signing secret of a signing key (audited as `signing_secret_revealed`).
    fn reveal_signing_secret(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<String> {
        let secret = py
            .detach(|| self.vault.reveal_signing_secret(&key_id))
            .py(py)?;
        Ok(secret.as_str().to_string())
    }

    /// Re-encrypt every signing secret under a new master key (32 bytes, or base64 str),
    /// all or nothing. Returns how many were re-encrypted.
    fn rekey(&self, py: Python<'_>, new_master_key: &Bound<'_, PyAny>) -> PyResult<usize> {
        let key = master_key_arg(py, Some(new_master_key))?
            .ok_or_else(|| invalid(py, "new_master_key is required"))?;
        py.detach(|| self.vault.rekey(key)).py(py)
    }

    /// `rekey` to a key derived from a new passphrase.
    fn rekey_passphrase(&self, py: Python<'_>, passphrase: String) -> PyResult<usize> {
        let passphrase = Zeroizing::new(passphrase);
        py.detach(|| self.vault.rekey_passphrase(&passphrase))
            .py(py)
    }

    /// Set a rate limit of `limit` per `duration` (timedelta or seconds) on a key or an
    /// account (shared by its keys). Setting an existing name replaces it.
    #[pyo3(signature = (name, limit, duration, *, key_id=None, account_id=None, auto_apply=true))]
    #[allow(clippy::too_many_arguments)]
    fn set_ratelimit(
        &self,
        py: Python<'_>,
        name: String,
        limit: &Bound<'_, PyAny>,
        duration: &Bound<'_, PyAny>,
        key_id: Option<String>,
        account_id: Option<String>,
        auto_apply: bool,
    ) -> PyResult<PyRateLimit> {
        let limit = u64_arg(py, limit, "limit", true)?;
        let duration_ms = duration_arg(py, duration, "duration")?;
        let duration_ms =
            u64::try_from(duration_ms).map_err(|_| invalid(py, "duration must be positive"))?;
        let owner = owner_arg(py, key_id.as_deref(), account_id.as_deref())?;
        py.detach(|| {
            self.vault
                .set_ratelimit(owner, &name, limit, duration_ms, auto_apply)
        })
        .py(py)
        .map(PyRateLimit)
    }

    #[pyo3(signature = (name, *, key_id=None, account_id=None))]
    fn remove_ratelimit(
        &self,
        py: Python<'_>,
        name: String,
        key_id: Option<String>,
        account_id: Option<String>,
    ) -> PyResult<PyRateLimit> {
        let owner = owner_arg(py, key_id.as_deref(), account_id.as_deref())?;
        py.detach(|| self.vault.remove_ratelimit(owner, &name))
            .py(py)
            .map(PyRateLimit)
    }

    #[pyo3(signature = (*, key_id=None, account_id=None))]
    fn ratelimits(
        &self,
        py: Python<'_>,
        key_id: Option<String>,
        account_id: Option<String>,
    ) -> PyResult<Vec<PyRateLimit>> {
        let owner = owner_arg(py, key_id.as_deref(), account_id.as_deref())?;
        let v = py.detach(|| self.vault.ratelimits(owner)).py(py)?;
        Ok(v.into_iter().map(PyRateLimit).collect())
    }

    /// Refill the account's credits to `amount` each period ("daily", or "monthly" on
    /// `day` 1–28), at the first call after the boundary.
    #[pyo3(signature = (account_id, amount, interval, day=None))]
    fn set_refill(
        &self,
        py: Python<'_>,
        account_id: String,
        amount: &Bound<'_, PyAny>,
        interval: &str,
        day: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyAccount> {
        let amount = u64_arg(py, amount, "amount", false)?;
        let interval = match interval {
            "daily" => crate::RefillInterval::Daily,
            "monthly" => crate::RefillInterval::Monthly,
            _ => return Err(invalid(py, "interval must be \"daily\" or \"monthly\"")),
        };
        let day = match day {
            Some(d) if !d.is_none() => u8::try_from(u64_arg(py, d, "day", true)?)
                .map_err(|_| invalid(py, "day must be between 1 and 28"))?,
            _ => 1,
        };
        py.detach(|| self.vault.set_refill(&account_id, amount, interval, day))
            .py(py)
            .map(PyAccount)
    }

    fn clear_refill(&self, py: Python<'_>, account_id: String) -> PyResult<PyAccount> {
        py.detach(|| self.vault.clear_refill(&account_id))
            .py(py)
            .map(PyAccount)
    }

    /// Whether this handle holds a master key.
    #[getter]
    fn has_master_key(&self) -> bool {
        self.vault.has_master_key()
    }

    #[pyo3(signature = (method, pattern, scope, cost=None))]
    fn add_route(
        &self,
        py: Python<'_>,
        method: PyBackedStr,
        pattern: PyBackedStr,
        scope: PyBackedStr,
        cost: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyRouteRule> {
        let cost = opt_u64_arg(py, cost, "cost")?.unwrap_or(0);
        py.detach(|| self.vault.add_route(&method, &pattern, &scope, cost))
            .py(py)
            .map(PyRouteRule)
    }

    fn remove_route(
        &self,
        py: Python<'_>,
        method: PyBackedStr,
        pattern: PyBackedStr,
    ) -> PyResult<PyRouteRule> {
        py.detach(|| self.vault.remove_route(&method, &pattern))
            .py(py)
            .map(PyRouteRule)
    }

    fn list_routes(&self, py: Python<'_>) -> PyResult<Vec<PyRouteRule>> {
        let v = py.detach(|| self.vault.list_routes()).py(py)?;
        Ok(v.into_iter().map(PyRouteRule).collect())
    }

    fn match_route(
        &self,
        py: Python<'_>,
        method: PyBackedStr,
        path: PyBackedStr,
    ) -> PyResult<Option<PyRouteRule>> {
        let r = py
            .detach(|| self.vault.match_route(&method, &path))
            .py(py)?;
        Ok(r.map(PyRouteRule))
    }

    #[pyo3(signature = (method, target, *, case_insensitive=false))]
    fn match_request(
        &self,
        py: Python<'_>,
        method: PyBackedStr,
        target: PyBackedStr,
        case_insensitive: bool,
    ) -> PyResult<Option<PyRouteRule>> {
        let r = py
            .detach(|| self.vault.match_request(&method, &target, case_insensitive))
            .py(py)?;
        Ok(r.map(PyRouteRule))
    }

    #[pyo3(signature = (*, key_id=None, account_id=None, action=None, since=None, limit=None))]
    fn audit(
        &self,
        py: Python<'_>,
        key_id: Option<String>,
        account_id: Option<String>,
        action: Option<String>,
        since: Option<&Bound<'_, PyAny>>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<PyAuditEntry>> {
        let since = match since {
            Some(s) if !s.is_none() => Some(instant_arg(py, s, "since")?),
            _ => None,
        };
        let limit =
            opt_u64_arg(py, limit, "limit")?.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
        let q = AuditQuery {
            key_id,
            account_id,
            action,
            since,
            limit,
        };
        let v = py.detach(|| self.vault.audit(&q)).py(py)?;
        Ok(v.into_iter().map(PyAuditEntry).collect())
    }

    fn usage(&self, py: Python<'_>, key_id: PyBackedStr) -> PyResult<PyUsage> {
        py.detach(|| self.vault.usage(&key_id)).py(py).map(PyUsage)
    }

    fn __repr__(&self) -> String {
        format!(
            "Vault(path={}, cache_mode={})",
            pyq(&self.vault.path().display().to_string()),
            pyq(self.cache_mode())
        )
    }
}

/// Format and checksum only; no vault access.
#[pyfunction]
fn looks_like_key(token: &Bound<'_, PyAny>) -> bool {
    token
        .extract::<PyBackedStr>()
        .is_ok_and(|t| crate::looks_like_key(&t))
}

/// `"<prefix>_<key_id>_…"`: what logs may show of a token.
#[pyfunction]
fn redact(token: PyBackedStr) -> String {
    crate::redact(&token)
}

fn bytes_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.extract::<PyBackedStr>() {
        return Ok(s.as_bytes().to_vec());
    }
    obj.extract::<Vec<u8>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be bytes or str")))
}

/// Lowercase hex HMAC-SHA256 of `body` under `secret` (`str` is UTF-8 encoded).
#[pyfunction]
fn sign_webhook(secret: &Bound<'_, PyAny>, body: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(crate::sign_webhook(
        &bytes_arg(secret, "secret")?,
        &bytes_arg(body, "body")?,
    ))
}

/// Constant-time check of a webhook signature; a malformed signature is `False`.
#[pyfunction]
fn verify_webhook(
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
fn sign_request(
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
fn generate_master_key(py: Python<'_>) -> PyResult<String> {
    let k = MasterKey::generate().py(py)?;
    Ok(k.to_base64().as_str().to_string())
}

/// The version of the native module.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule(gil_used = false)]
mod _keyledger {
    #[pymodule_export]
    use super::http::bearer_token;
    #[pymodule_export]
    use super::{
        generate_master_key, looks_like_key, redact, sign_request, sign_webhook, verify_webhook,
        version, PyAccount, PyAuditEntry, PyBalance, PyGrant, PyKeyInfo, PyRateLimit, PyRouteRule,
        PyUsage, PyVault, PyWhoAmI,
    };
}
