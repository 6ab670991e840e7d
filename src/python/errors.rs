//! Errors: every `keyledger::Error` maps to its exception class in `keyledger._errors`
//! (the match is exhaustive: a new variant does not build until it is mapped here).

use super::*;

/// The exception class of each error, by name in `keyledger._errors`.
pub(super) fn exception_name(e: &Error) -> &'static str {
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
        Error::HoldNotFound(_) => "HoldNotFound",
        Error::HoldSettled(_) => "HoldSettled",
    }
}

pub(super) fn to_py_err(py: Python<'_>, e: &Error) -> PyErr {
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

pub(super) trait IntoPyResult<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for crate::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py_err(py, &e))
    }
}

pub(super) fn invalid(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    to_py_err(py, &Error::InvalidArgument(msg.into()))
}
