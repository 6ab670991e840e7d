//! The frozen result classes (`Grant`, `KeyInfo`, `Account`, `Balance`, `WhoAmI`,
//! `AuditEntry`, `Usage`, `RateLimit`, `RouteRule`): getters convert lazily, `__repr__`
//! shows what Python's `repr` would.

use super::*;

/// A successful authorization.
#[pyclass(frozen, module = "keyledger", name = "Grant")]
pub struct PyGrant(pub(super) crate::vault::SharedGrant);

impl PyGrant {
    pub(super) fn owned(g: crate::Grant) -> PyGrant {
        PyGrant(g.into())
    }
}

#[pymethods]
impl PyGrant {
    #[getter]
    fn account_id(&self) -> &str {
        self.0.account_id()
    }
    #[getter]
    fn key_id(&self) -> &str {
        self.0.key_id()
    }
    #[getter]
    fn key_name(&self) -> &str {
        self.0.key_name()
    }
    #[getter]
    fn prefix(&self) -> &str {
        self.0.prefix()
    }
    #[getter]
    fn auth_method(&self) -> &'static str {
        self.0.auth_method().as_str()
    }
    #[getter]
    fn scopes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0.scopes())
    }
    #[getter]
    fn charged(&self) -> u64 {
        self.0.charged()
    }
    #[getter]
    fn credits(&self) -> u64 {
        self.0.credits()
    }
    #[getter]
    fn total_credits(&self) -> u64 {
        self.0.total_credits()
    }
    #[getter]
    fn replayed(&self) -> bool {
        self.0.replayed()
    }
    /// The hold this call made (`hold=`), or `None`.
    #[getter]
    fn hold_id(&self) -> Option<&str> {
        self.0.hold_id()
    }
    #[getter]
    fn ratelimits<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .0
            .ratelimits()
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
        value_to_py(
            py,
            &serde_json::to_value(self.0.to_grant()).unwrap_or_default(),
        )
    }
    fn __repr__(&self) -> String {
        format!(
            "Grant(account_id={}, key_id={}, auth_method={}, charged={}, credits={}, replayed={})",
            pyq(self.0.account_id()),
            pyq(self.0.key_id()),
            pyq(self.0.auth_method().as_str()),
            self.0.charged(),
            self.0.credits(),
            if self.0.replayed() { "True" } else { "False" }
        )
    }
}

/// A key's public info (never its secret or hash).
#[pyclass(frozen, module = "keyledger", name = "KeyInfo")]
pub struct PyKeyInfo(pub(super) crate::KeyInfo);

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
    /// `"prefixed"` or `"colon"`.
    #[getter]
    fn style(&self) -> &'static str {
        self.0.style.as_str()
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
pub(super) fn pyq(s: &str) -> String {
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

pub(super) fn pyq_opt(s: Option<&str>) -> String {
    s.map_or_else(|| "None".to_string(), pyq)
}

pub(super) fn pylist(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| pyq(s)).collect();
    format!("[{}]", inner.join(", "))
}

pub(super) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// An account with its balance.
#[pyclass(frozen, module = "keyledger", name = "Account")]
pub struct PyAccount(pub(super) crate::Account);

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
pub struct PyBalance(pub(super) crate::Balance);

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
    // Holds.
    #[getter]
    fn held(&self) -> u64 {
        self.0.held
    }
    #[getter]
    fn available(&self) -> u64 {
        self.0.available
    }
    fn __repr__(&self) -> String {
        format!(
            "Balance(account_id={}, credits={}, total_credits={}, held={}, available={})",
            pyq(&self.0.account_id),
            self.0.credits,
            self.0.total_credits,
            self.0.held,
            self.0.available
        )
    }
}

/// Who a token belongs to.
#[pyclass(frozen, module = "keyledger", name = "WhoAmI")]
pub struct PyWhoAmI(pub(super) crate::WhoAmI);

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
pub struct PyAuditEntry(pub(super) crate::AuditEntry);

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
pub struct PyUsage(pub(super) crate::Usage);

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
pub struct PyRateLimit(pub(super) crate::RateLimit);

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

/// A route rule.
#[pyclass(frozen, module = "keyledger", name = "RouteRule")]
pub struct PyRouteRule(pub(super) crate::RouteRule);

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
