//! The `Vault` class: opening, authorize, accounts and credits, keys, signing secrets,
//! rate limits and refills, routes, audit and usage. Argument decoding lives in `args`.

use super::*;

/// An open vault. Thread-safe; open one per process (after `os.fork()`, open a new one in
/// the child: the parent's handle refuses with `VaultClosed`).
#[pyclass(frozen, module = "keyledger", name = "Vault")]
pub struct PyVault {
    vault: crate::Vault,
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

    /// Where the vault lives, as a `str`: the file's path, or for PostgreSQL the URL with
    /// its password shown as `***` (a `pathlib.Path` would fold the URL's `//`).
    #[getter]
    fn path(&self) -> std::ffi::OsString {
        self.vault.path().as_os_str().to_os_string()
    }

    /// `"shared"`, `"private"` or `"disabled"`.
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

    #[pyo3(signature = (token, *, route=None, scope=None, cost=None, idempotency_key=None, signature=None, body=None, limits=None, limit_cost=None, now=None, on_replay=None, query=None, hold=None, hold_ttl=None))]
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
        hold: Option<&Bound<'_, PyAny>>,
        hold_ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyGrant> {
        let a = AuthorizeCall {
            route,
            scope,
            cost,
            idempotency_key,
            signature,
            body,
            limits,
            limit_cost,
            now,
            on_replay,
            query,
            hold,
            hold_ttl,
        };
        a.run(py, |target, options| {
            let grant = py
                .detach(|| {
                    self.vault
                        .authorize_view(&token, target, options)
                        .map(crate::GrantView::into_shared)
                })
                .py(py)?;
            Ok(PyGrant(grant))
        })
    }

    /// `authorize` that never blocks: the same answer (a `Grant` or the refusal raised),
    /// or `None` when the call would run argon2 (a key not yet verified in this process)
    /// or wait for a commit (a debit, an idempotency key, a due refill, a single-use
    /// signature). `None` changed nothing: make the `authorize` call with the same
    /// arguments off the event loop (what `authorize_async` does).
    #[pyo3(signature = (token, *, route=None, scope=None, cost=None, idempotency_key=None, signature=None, body=None, limits=None, limit_cost=None, now=None, on_replay=None, query=None, hold=None, hold_ttl=None))]
    #[allow(clippy::too_many_arguments)]
    fn try_authorize(
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
        hold: Option<&Bound<'_, PyAny>>,
        hold_ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<PyGrant>> {
        let a = AuthorizeCall {
            route,
            scope,
            cost,
            idempotency_key,
            signature,
            body,
            limits,
            limit_cost,
            now,
            on_replay,
            query,
            hold,
            hold_ttl,
        };
        // With the GIL held: this call never waits (no argon2, no commit).
        a.run(py, |target, options| {
            match self.vault.try_authorize_view(&token, target, options) {
                crate::Attempt::Ready(r) => Ok(Some(PyGrant(r.py(py)?.into_shared()))),
                crate::Attempt::WouldBlock(_) => Ok(None),
            }
        })
    }

    /// `await vault.authorize_async(token, ...)`: `authorize` for asyncio and trio (through
    /// anyio when it is installed). Decided inline when the call needs neither argon2 nor
    /// a commit (`try_authorize`); otherwise `authorize` runs in a worker thread, with the
    /// GIL released, and the event loop keeps running.
    #[pyo3(signature = (*args, **kwargs))]
    fn authorize_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kwargs = match kwargs {
            Some(k) => k.clone(),
            None => PyDict::new(py),
        };
        aio(py, "authorize")?.call1((slf, args, kwargs))
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
        Ok(PyGrant::owned(grant))
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
        let out = super::http::authorize_http(py, &self.vault, &method, target, options, false)?;
        out.ok_or_else(|| invalid(py, "internal: the blocking gate did not decide"))
    }

    /// `authorize_http` that never blocks: the same `(status, headers, body, grant)`, or
    /// `None` when the request would run argon2 or wait for a commit (nothing was changed:
    /// make the `authorize_http` call off the event loop).
    #[pyo3(signature = (method, target, **options))]
    fn try_authorize_http<'py>(
        &self,
        py: Python<'py>,
        method: PyBackedStr,
        target: &Bound<'py, PyAny>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        super::http::authorize_http(py, &self.vault, &method, target, options, true)
    }

    /// `await vault.authorize_http_async(method, target, **options)`: `authorize_http`
    /// for asyncio and trio, decided inline when it can be (`try_authorize_http`), else in
    /// a worker thread.
    #[pyo3(signature = (method, target, **options))]
    fn authorize_http_async<'py>(
        slf: &Bound<'py, Self>,
        method: &Bound<'py, PyAny>,
        target: &Bound<'py, PyAny>,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let options = match options {
            Some(o) => o.clone(),
            None => PyDict::new(py),
        };
        aio(py, "authorize_http")?.call1((slf, method, target, options))
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
    #[pyo3(signature = (account_id, name, scopes, *, prefix="kl_live", expires_at=None, expires_in=None, operator=false, signing=false, metadata=None, style="prefixed"))]
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
        style: &str,
    ) -> PyResult<(Bound<'py, PyAny>, PyKeyInfo)> {
        let mut new = NewKey::new(account_id, name, strings_arg(scopes, "scopes")?).prefix(prefix);
        new.style = style.parse::<crate::TokenStyle>().py(py)?;
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
    // Events and usage reports (`src/python/events.rs`).
    /// Alert when the balance goes from at or above `below` to under it; the account's
    /// thresholds, ascending.
    fn set_alert(
        &self,
        py: Python<'_>,
        account_id: PyBackedStr,
        below: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<u64>> {
        let below = u64_arg(py, below, "below", true)?;
        py.detach(|| self.vault.set_alert(&account_id, below))
            .py(py)
    }

    /// Remove one threshold; whether it existed.
    fn remove_alert(
        &self,
        py: Python<'_>,
        account_id: PyBackedStr,
        below: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let below = u64_arg(py, below, "below", false)?;
        py.detach(|| self.vault.remove_alert(&account_id, below))
            .py(py)
    }

    /// The account's alert thresholds, ascending.
    fn alerts(&self, py: Python<'_>, account_id: PyBackedStr) -> PyResult<Vec<u64>> {
        py.detach(|| self.vault.alerts(&account_id)).py(py)
    }

    /// Events numbered above `after`, oldest first (dicts), at most `limit` (1–10000).
    #[pyo3(signature = (after=None, limit=None))]
    fn events<'py>(
        &self,
        py: Python<'py>,
        after: Option<&Bound<'_, PyAny>>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let after = opt_u64_arg(py, after, "after")?.unwrap_or(0);
        let limit = opt_u64_arg(py, limit, "limit")?.unwrap_or(100);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let events = py.detach(|| self.vault.events(after, limit)).py(py)?;
        events.iter().map(|e| events::event_to_py(py, e)).collect()
    }

    /// The last event number `consumer` acknowledged (0: none).
    fn event_cursor(&self, py: Python<'_>, consumer: PyBackedStr) -> PyResult<u64> {
        py.detach(|| self.vault.event_cursor(&consumer)).py(py)
    }

    /// Acknowledge every event up to `seq` for `consumer` (never moves back).
    fn ack_events(
        &self,
        py: Python<'_>,
        consumer: PyBackedStr,
        seq: &Bound<'_, PyAny>,
    ) -> PyResult<u64> {
        let seq = u64_arg(py, seq, "seq", false)?;
        py.detach(|| self.vault.ack_events(&consumer, seq)).py(py)
    }

    /// `key_expiring` events `horizon` (a `timedelta` or seconds) before keys expire;
    /// `None` turns them off.
    fn set_expiry_notice(
        &self,
        py: Python<'_>,
        horizon: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let ms = match horizon {
            Some(h) if !h.is_none() => {
                let ms = duration_arg(py, h, "horizon")?;
                Some(u64::try_from(ms).map_err(|_| invalid(py, "horizon must be positive"))?)
            }
            _ => None,
        };
        py.detach(|| self.vault.set_expiry_notice(ms)).py(py)
    }

    /// Scan for expiring keys now; how many `key_expiring` events were written.
    fn check_expiring_keys(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.vault.check_expiring_keys()).py(py)
    }

    /// Credits charged, calls and refusals of an account's keys between `since` and
    /// `until` (datetimes or ms; hourly cells), grouped `by` "key", "route" or "day":
    /// a list of dicts `{group, charged, calls, refusals}`.
    #[pyo3(signature = (account_id, since, until, by="key"))]
    fn usage_report<'py>(
        &self,
        py: Python<'py>,
        account_id: PyBackedStr,
        since: &Bound<'_, PyAny>,
        until: &Bound<'_, PyAny>,
        by: &str,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let since = instant_arg(py, since, "since")?;
        let until = instant_arg(py, until, "until")?;
        let by: crate::events::ReportBy = by.parse().py(py)?;
        let rows = py
            .detach(|| self.vault.usage_report(&account_id, since, until, by))
            .py(py)?;
        rows.iter()
            .map(|r| {
                let v = serde_json::to_value(r).map_err(|e| invalid(py, e.to_string()))?;
                value_to_py(py, &v)
            })
            .collect()
    }

    /// This process's counters (grants, refusals by code, debits, argon2 runs, key cache
    /// misses, cache hit ratio) as a dict.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.vault.metrics();
        let mut v = serde_json::to_value(&m).map_err(|e| invalid(py, e.to_string()))?;
        v["cache_hit_ratio"] = serde_json::json!(m.cache_hit_ratio());
        value_to_py(py, &v)
    }

    /// The same counters as Prometheus text.
    fn metrics_prometheus(&self) -> String {
        self.vault.metrics().prometheus()
    }

    /// Call `callback(event)` for every event after `consumer`'s cursor, on a thread of
    /// its own, acknowledging each after the callback returns (at least once; an
    /// exception goes to `sys.unraisablehook` and the event is offered again).
    #[pyo3(signature = (callback, *, consumer="default", poll_interval=1.0))]
    fn on_event(
        slf: Py<Self>,
        py: Python<'_>,
        callback: Py<PyAny>,
        consumer: &str,
        poll_interval: f64,
    ) -> PyResult<events::PyEventSubscription> {
        if !callback.bind(py).is_callable() {
            return Err(PyTypeError::new_err("callback must be callable"));
        }
        if !(poll_interval.is_finite() && (0.001..=3600.0).contains(&poll_interval)) {
            return Err(invalid(py, "poll_interval must be 0.001–3600 seconds"));
        }
        events::start(
            py,
            slf,
            callback,
            consumer.to_string(),
            std::time::Duration::from_secs_f64(poll_interval),
        )
    }

    // Holds.
    /// Reserve `amount` credits of `account_id` for `ttl` (a `timedelta` or seconds;
    /// default 15 minutes, at most 30 days). Raises `InsufficientCredits` (402) when
    /// fewer are available.
    #[pyo3(signature = (account_id, amount, *, ttl=None, idempotency_key=None))]
    fn hold(
        &self,
        py: Python<'_>,
        account_id: PyBackedStr,
        amount: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
        idempotency_key: Option<PyBackedStr>,
    ) -> PyResult<PyHold> {
        let amount = u64_arg(py, amount, "amount", true)?;
        let ttl = ttl_arg(py, ttl)?.unwrap_or(crate::DEFAULT_HOLD_TTL_MS);
        py.detach(|| {
            self.vault
                .hold(&account_id, amount, ttl, idempotency_key.as_deref())
        })
        .py(py)
        .map(PyHold)
    }

    /// Charge `actual` credits of a hold and give the rest back (`allow_over=True`: more
    /// than the hold, from the available credits).
    #[pyo3(signature = (hold_id, actual, *, allow_over=false, idempotency_key=None))]
    fn settle(
        &self,
        py: Python<'_>,
        hold_id: PyBackedStr,
        actual: &Bound<'_, PyAny>,
        allow_over: bool,
        idempotency_key: Option<PyBackedStr>,
    ) -> PyResult<PyHold> {
        let actual = u64_arg(py, actual, "actual", false)?;
        let options = crate::SettleOptions {
            allow_over,
            idempotency_key: idempotency_key.as_deref(),
        };
        py.detach(|| self.vault.settle(&hold_id, actual, &options))
            .py(py)
            .map(PyHold)
    }

    /// Give every credit of a hold back.
    fn release(&self, py: Python<'_>, hold_id: PyBackedStr) -> PyResult<PyHold> {
        py.detach(|| self.vault.release(&hold_id))
            .py(py)
            .map(PyHold)
    }

    /// One hold by id, whatever its state.
    fn get_hold(&self, py: Python<'_>, hold_id: PyBackedStr) -> PyResult<PyHold> {
        py.detach(|| self.vault.get_hold(&hold_id))
            .py(py)
            .map(PyHold)
    }

    /// The active holds of `account_id` (or of every account).
    #[pyo3(signature = (account_id=None))]
    fn holds(&self, py: Python<'_>, account_id: Option<PyBackedStr>) -> PyResult<Vec<PyHold>> {
        let v = py
            .detach(|| self.vault.holds(account_id.as_deref()))
            .py(py)?;
        Ok(v.into_iter().map(PyHold).collect())
    }

    /// `await vault.hold_async(...)`: `hold` in a worker thread.
    #[pyo3(signature = (*args, **kwargs))]
    fn hold_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "call")?.call1((slf, "hold", args, kwargs))
    }

    /// `await vault.settle_async(...)`: `settle` in a worker thread.
    #[pyo3(signature = (*args, **kwargs))]
    fn settle_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "call")?.call1((slf, "settle", args, kwargs))
    }

    /// `await vault.release_async(hold_id)`: `release` in a worker thread.
    #[pyo3(signature = (*args, **kwargs))]
    fn release_async<'py>(
        slf: &Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        aio(slf.py(), "call")?.call1((slf, "release", args, kwargs))
    }
}

impl PyVault {
    /// The core vault (events' poller thread).
    pub(super) fn core(&self) -> &crate::Vault {
        &self.vault
    }
}

/// A function of `keyledger._aio` (the async entry points), imported once.
fn aio<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import("keyledger._aio").map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

/// The arguments of `authorize` and `try_authorize`, decoded once for either.
struct AuthorizeCall<'a, 'py> {
    route: Option<(PyBackedStr, PyBackedStr)>,
    scope: Option<PyBackedStr>,
    cost: Option<&'a Bound<'py, PyAny>>,
    idempotency_key: Option<PyBackedStr>,
    signature: Option<PyBackedStr>,
    body: Option<pyo3::pybacked::PyBackedBytes>,
    limits: Option<&'a Bound<'py, PyAny>>,
    limit_cost: Option<&'a Bound<'py, PyAny>>,
    now: Option<&'a Bound<'py, PyAny>>,
    on_replay: Option<PyBackedStr>,
    query: Option<PyBackedStr>,
    // Holds.
    hold: Option<&'a Bound<'py, PyAny>>,
    hold_ttl: Option<&'a Bound<'py, PyAny>>,
}

impl AuthorizeCall<'_, '_> {
    /// Decode the arguments and call `f` with the target and the options.
    fn run<R>(
        self,
        py: Python<'_>,
        f: impl FnOnce(Target<'_>, &AuthorizeOptions<'_>) -> PyResult<R>,
    ) -> PyResult<R> {
        let args = AuthorizeArgs::decode(
            py,
            self.cost,
            self.limits,
            self.limit_cost,
            self.now,
            self.on_replay,
        )?;
        let limit_refs = args.limit_refs();
        let target = match (&self.route, &self.scope) {
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
            idempotency_key: self.idempotency_key.as_deref(),
            signature: self.signature.as_deref(),
            body: self.body.as_deref(),
            limits: limit_refs.as_deref(),
            query: self.query.as_deref(),
            hold: opt_u64_arg(py, self.hold, "hold")?,
            hold_ttl_ms: ttl_arg(py, self.hold_ttl)?,
            ..args.options()
        };
        f(target, &options)
    }
}
