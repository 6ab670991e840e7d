//! Conversions between Python values and core values: times and durations, integers,
//! strings, metadata, master keys, argon2 parameters, the keyword arguments `authorize` and
//! `authorize_request` share, and limit owners.

use super::*;

pub(super) fn json_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static JSON: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    JSON.get_or_try_init(py, || py.import("json").map(Bound::unbind))
        .map(|m| m.bind(py))
}

pub(super) fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    json_module(py)?.call_method1("loads", (text,))
}

pub(super) fn value_to_py<'py>(
    py: Python<'py>,
    v: &serde_json::Value,
) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &v.to_string())
}

/// A `dict` (or `None`) → a JSON object for the core.
pub(super) fn metadata_arg(
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

pub(super) struct Times {
    epoch: Py<PyAny>,
    pub(super) one_ms: Py<PyAny>,
    datetime: Py<PyAny>,
    timedelta: Py<PyAny>,
}

pub(super) fn times(py: Python<'_>) -> PyResult<&Times> {
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
pub(super) fn ms_to_datetime(py: Python<'_>, ms: Millis) -> PyResult<Bound<'_, PyAny>> {
    let t = times(py)?;
    let delta = t.one_ms.bind(py).call_method1("__mul__", (ms,))?;
    t.epoch.bind(py).call_method1("__add__", (delta,))
}

pub(super) fn opt_datetime(
    py: Python<'_>,
    ms: Option<Millis>,
) -> PyResult<Option<Bound<'_, PyAny>>> {
    ms.map(|m| ms_to_datetime(py, m)).transpose()
}

pub(super) fn is_int(obj: &Bound<'_, PyAny>) -> bool {
    obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>()
}

/// A point in time: an aware `datetime`, or unix seconds (`int`/`float`).
pub(super) fn instant_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Millis> {
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
pub(super) fn duration_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Millis> {
    let t = times(py)?;
    if obj.is_instance(t.timedelta.bind(py))? {
        return obj
            .call_method1("__floordiv__", (t.one_ms.bind(py),))?
            .extract::<i64>()
            .map_err(|_| invalid(py, format!("{name} is out of range")));
    }
    seconds_to_ms(py, obj, name)
}

pub(super) fn seconds_to_ms(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    name: &str,
) -> PyResult<Millis> {
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
pub(super) fn u64_arg(
    py: Python<'_>,
    obj: &Bound<'_, PyAny>,
    name: &str,
    positive: bool,
) -> PyResult<u64> {
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

pub(super) fn opt_u64_arg(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<u64>> {
    match obj {
        Some(o) if !o.is_none() => u64_arg(py, o, name, false).map(Some),
        _ => Ok(None),
    }
}

pub(super) fn strings_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
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

pub(super) fn token_to_py<'py>(
    py: Python<'py>,
    token: &SecretToken,
) -> PyResult<Bound<'py, PyAny>> {
    let cls = py.import("keyledger._types")?.getattr("Token")?;
    cls.call1((token.expose(), token.signing_secret()))
}

/// A master key: 32 raw `bytes`, or its base64 as `str`.
pub(super) fn master_key_arg(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<MasterKey>> {
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

pub(super) fn argon2_arg(
    py: Python<'_>,
    obj: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Argon2Params>> {
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
pub(super) struct AuthorizeArgs {
    cost: Option<u64>,
    limit_cost: Option<u64>,
    limit_names: Option<Vec<String>>,
    now: Option<Millis>,
    on_replay: crate::OnReplay,
}

impl AuthorizeArgs {
    pub(super) fn decode(
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

    pub(super) fn limit_refs(&self) -> Option<Vec<&str>> {
        self.limit_names
            .as_ref()
            .map(|v| v.iter().map(String::as_str).collect())
    }

    /// The options these arguments set (the borrowed ones are the caller's to fill in).
    pub(super) fn options(&self) -> AuthorizeOptions<'static> {
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
pub(super) fn on_replay_arg(py: Python<'_>, v: Option<&str>) -> PyResult<crate::OnReplay> {
    match v {
        None | Some("grant") => Ok(crate::OnReplay::Grant),
        Some("refuse") => Ok(crate::OnReplay::Refuse),
        Some(_) => Err(invalid(py, "on_replay must be \"grant\" or \"refuse\"")),
    }
}

pub(super) fn owner_arg<'a>(
    py: Python<'_>,
    key_id: Option<&'a str>,
    account_id: Option<&'a str>,
) -> PyResult<crate::LimitOwner<'a>> {
    crate::LimitOwner::from_ids(key_id, account_id).py(py)
}
