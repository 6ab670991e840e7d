//! The Python extension module `keyledger._keyledger` (feature `python`, built by maturin).
//!
//! Mapping only: arguments are decoded into core types, the core is called with the GIL
//! released (`Python::detach`), and results are wrapped in frozen classes whose getters
//! convert lazily (times to timezone-aware `datetime`, metadata to `dict`). Every
//! `keyledger::Error` variant maps to its exception class in `keyledger._errors`; the
//! match is exhaustive, so a new variant does not build until it is mapped here.
//!
//! Layout: `errors` (error → exception), `args` (Python values ↔ core values, shared
//! argument decoding), `types` (the frozen result classes), `vault` (the `Vault` class),
//! `functions` (module-level functions). This file holds the imports every part shares
//! and the module definition.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedStr;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyTuple};

use zeroize::Zeroizing;

use crate::{
    Argon2Params, AuditQuery, AuthorizeOptions, Durability, Error, MasterKey, Millis, NewKey,
    SecretToken, Target, ThrottleConfig, VaultOptions,
};

mod args;
mod errors;
// Events and usage reports.
mod events;
mod functions;
// Holds.
mod holds;
mod http;
mod types;
mod vault;

use args::*;
use errors::*;
use functions::*;
use holds::*;
use types::*;
use vault::*;

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
    // Events and usage reports.
    #[pymodule_export]
    use super::events::PyEventSubscription;
    // Holds.
    #[pymodule_export]
    use super::PyHold;
}
