//! The authorize pipeline: authentication (format, secret, key state), scope or route,
//! rate limits, then credits.

use super::{
    crypto, idempotency, no_master_key, policy, secrets, token, undecryptable,
    validate_authorize_args, AccountView, Arc, Argon2Params, AtomicU64, AuditAction, AuthMethod,
    AuthorizeOptions, BoundLimit, Budget, DebitReq, DigestKey, Error, EventKey, FailedSecrets,
    Grant, GrantView, HotKey, IdempotencyScope, Inner, KeyEntry, KeyState, Limiter, Matched,
    Millis, OnReplay, Ordering, Rc, Result, RwLock, Taken, Target, Throttle, Vault, Verified,
    WhoAmI, NEVER,
};

/// What a non-blocking call ([`Vault::try_authorize`]) would have to wait for, had it gone
/// on: the host runs the same call again off its event loop (a worker thread, a dirty
/// scheduler) with the blocking [`Vault::authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WouldBlock {
    /// The token's secret is not yet verified in this process: an argon2 run
    /// (milliseconds of CPU). A CPU-bound wait.
    Argon2,
    /// The call writes: a debit (a cost above 0), an idempotency key, a due refill, or a
    /// single-use signature to record. It waits for a durable commit (shared with
    /// concurrent debits). An I/O-bound wait.
    Commit,
}

impl WouldBlock {
    /// `"argon2"` or `"commit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WouldBlock::Argon2 => "argon2",
            WouldBlock::Commit => "commit",
        }
    }
}

impl std::fmt::Display for WouldBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer of a non-blocking call: what the blocking call would have answered, or
/// what it would have had to wait for. A `WouldBlock` answer changed nothing (no rate-limit
/// unit taken, no usage or audit event, no throttle or budget change), so the host makes
/// the blocking call next and gets exactly what a lone blocking call would have given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Attempt<T> {
    /// Decided without blocking: the blocking call's answer.
    Ready(T),
    /// Not decided: make the blocking call, off the event loop.
    WouldBlock(WouldBlock),
}

impl<T> Attempt<T> {
    /// The answer, if the call was decided.
    pub fn ready(self) -> Option<T> {
        match self {
            Attempt::Ready(t) => Some(t),
            Attempt::WouldBlock(_) => None,
        }
    }

    /// What the call would wait for, if it was not decided.
    pub fn would_block(&self) -> Option<WouldBlock> {
        match self {
            Attempt::Ready(_) => None,
            Attempt::WouldBlock(w) => Some(*w),
        }
    }

    /// The answer, or `blocking()` (the blocking call) when the call would block.
    pub fn or_else(self, blocking: impl FnOnce(WouldBlock) -> T) -> T {
        match self {
            Attempt::Ready(t) => t,
            Attempt::WouldBlock(w) => blocking(w),
        }
    }
}

/// Whether a pipeline run may wait (argon2, a commit) or must stop before any effect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Blocking,
    NonBlocking,
}

/// Why a pipeline run stopped without a grant: a refusal (or a vault error), or, in
/// [`Mode::NonBlocking`] only, a wait it did not start.
pub(super) enum Halt {
    Refused(Error),
    Wait(WouldBlock),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Halt {
        Halt::Refused(e)
    }
}

impl Halt {
    /// The error of a blocking run (which never stops on a wait).
    fn into_error(self) -> Error {
        match self {
            Halt::Refused(e) => e,
            // Unreachable: only `Mode::NonBlocking` produces a `Wait`.
            Halt::Wait(w) => {
                Error::Storage(format!("internal: a blocking call stopped before {w}"))
            }
        }
    }
}

/// Secret verification: the process's digest key, argon2 parameters and the guards
/// against floods of cold verifications.
pub(super) struct Verifier {
    pub(super) digest_key: DigestKey,
    pub(super) argon2: RwLock<Argon2Params>,
    pub(super) limiter: Limiter,
    pub(super) throttle: Throttle,
    pub(super) budget: Budget,
    pub(super) failed: FailedSecrets,
    pub(super) argon2_runs: AtomicU64,
    pub(super) throttled: AtomicU64,
}

impl Vault {
    /// Authorize a request: a [`Grant`] or a typed refusal ([`Error`] with
    /// `status()`, `code()`, `body()`).
    ///
    /// Checks, in order: format/checksum → key exists → secret → revoked → disabled →
    /// expired → signature → scope/route → credits. A call with cost 0 and no idempotency
    /// key answers from this process's caches when nothing changed (no redb transaction,
    /// no argon2 after the key's first success in this process).
    pub fn authorize(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Result<Grant> {
        self.authorize_view(token, target, options)
            .map(GrantView::into_grant)
    }

    /// [`Vault::authorize`], answering a [`GrantView`]: the same grant, whose key strings
    /// are read from this thread's cached key record instead of copied (no allocation on
    /// the hot path). For hosts that convert a few fields themselves.
    pub fn authorize_view(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Result<GrantView> {
        self.inner
            .authorize(token, target, options, Mode::Blocking)
            .map_err(Halt::into_error)
    }

    /// [`Vault::authorize`] without ever blocking: no argon2 run, no wait for a commit or
    /// a group-commit batch. It answers what `authorize` would answer (a grant, a refusal,
    /// an error), or [`Attempt::WouldBlock`] with what the call needs: then nothing was
    /// changed (no rate-limit unit taken, no usage or audit event, no change to the
    /// failed-secret memory, the throttle or the budget), and the host makes the blocking
    /// `authorize` call with the same arguments off its event loop.
    ///
    /// Decided inline: every call of a key already verified in this process that needs no
    /// write (cost 0, no idempotency key, no refill due, no single-use signature to
    /// record), including its rate limits; every refusal that needs no argon2 (a malformed
    /// token, an unknown key, a wrong prefix, a secret already refused in this process, a
    /// spent budget of failed verifications, a revoked, disabled or expired key, a bad
    /// signature, a missing scope, an unmatched route). [`WouldBlock::Argon2`]: a secret
    /// not yet verified here. [`WouldBlock::Commit`]: a call that would debit, store an
    /// idempotency record, apply a due refill or record a single-use signature; it stops
    /// before its rate limits are checked, so a call that would then be refused by a
    /// limit also answers `Commit`. A cache miss reads the store (a read transaction,
    /// which never waits for writers).
    pub fn try_authorize(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Attempt<Result<Grant>> {
        match self.try_authorize_view(token, target, options) {
            Attempt::Ready(r) => Attempt::Ready(r.map(GrantView::into_grant)),
            Attempt::WouldBlock(w) => Attempt::WouldBlock(w),
        }
    }

    /// [`Vault::try_authorize`], answering a [`GrantView`] (see [`Vault::authorize_view`]).
    pub fn try_authorize_view(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
    ) -> Attempt<Result<GrantView>> {
        match self
            .inner
            .authorize(token, target, options, Mode::NonBlocking)
        {
            Ok(grant) => Attempt::Ready(Ok(grant)),
            Err(Halt::Refused(e)) => Attempt::Ready(Err(e)),
            Err(Halt::Wait(w)) => Attempt::WouldBlock(w),
        }
    }
}

impl Inner {
    /// The pipeline of `authorize` (`Mode::Blocking`) and `try_authorize`.
    pub(super) fn authorize(
        &self,
        token: &str,
        target: Target<'_>,
        options: &AuthorizeOptions<'_>,
        mode: Mode,
    ) -> std::result::Result<GrantView, Halt> {
        let inner = self;
        inner.check_open()?;
        validate_authorize_args(&target, options)?;
        let now = options.now.unwrap_or_else(|| (inner.settings.clock)());
        let authed = inner.authenticate(token, now, &target, options, mode)?;
        let rec = &authed.state.rec;
        // Scope or route.
        let router;
        let (required, route_cost, matched): (&str, u64, Matched<'_>) = match target {
            Target::Route { method, path } => {
                router = inner.router()?;
                match router.find(method, path) {
                    Some(rule) => (
                        &rule.scope,
                        rule.cost,
                        Matched::Rule {
                            method: &rule.method,
                            pattern: &rule.pattern,
                        },
                    ),
                    None => {
                        return Err(inner
                            .refuse(Some(rec), &target, now, Error::RouteNotAllowed)
                            .into());
                    }
                }
            }
            Target::Request {
                method,
                target: raw,
                case_insensitive,
            } => {
                router = inner.router()?;
                match crate::http::find(&router, method, raw, case_insensitive) {
                    Ok(Some(rule)) => (
                        &rule.scope,
                        rule.cost,
                        Matched::Rule {
                            method: &rule.method,
                            pattern: &rule.pattern,
                        },
                    ),
                    Ok(None) => {
                        return Err(inner
                            .refuse(Some(rec), &target, now, Error::RouteNotAllowed)
                            .into());
                    }
                    Err(e) => return Err(inner.refuse(Some(rec), &target, now, e).into()),
                }
            }
            Target::Scope(s) => (s, 0, Matched::Scope(s)),
        };
        let operator = rec.operator;
        if !operator && !policy::scopes_grant(&rec.scopes, required) {
            let required = required.to_string();
            return Err(inner
                .refuse(Some(rec), &target, now, Error::MissingScope { required })
                .into());
        }
        // Rate limits, then credits: what a refused call took is given back.
        let account = inner.account_view(&rec.account_id)?;
        if mode == Mode::NonBlocking
            && plan(&authed.state, &account, route_cost, options, now).writes()
        {
            // Before any rate-limit unit is taken: the blocking call takes them.
            return Err(Halt::Wait(WouldBlock::Commit));
        }
        let taken = inner.take_limits(&authed.state, &account, &target, options, now)?;
        let result = inner.charge(
            &authed.hot,
            &account,
            (route_cost, &matched),
            &target,
            options,
            now,
        );
        let mut grant = match result {
            Ok(grant) => grant,
            Err(e) => {
                inner.give_back(&taken);
                return Err(e.into());
            }
        };
        if !taken.is_empty() {
            grant.set_ratelimits(taken.into_iter().map(|t| t.status).collect());
        }
        authed.usage.granted(now);
        if operator {
            inner.flushing.pending.event(
                EventKey {
                    action: AuditAction::OperatorAuthorized,
                    key_id: Some(rec.key_id.clone()),
                    account_id: Some(rec.account_id.clone()),
                    code: None,
                    route: target.describe(),
                },
                now,
                None,
            );
        }
        Ok(grant)
    }
}

/// What the credits step of a call will do.
struct Plan<'a> {
    /// Credits to debit (0 for an operator key).
    cost: u64,
    /// The idempotency key (never for an operator key).
    idem: Option<&'a str>,
    /// The account's refill is due: the call applies it.
    refill_due: bool,
    /// Credits to reserve by a hold instead of a debit.
    hold: Option<u64>,
}

impl Plan<'_> {
    /// Whether the call goes through a write transaction (a group-commit batch).
    fn writes(&self) -> bool {
        self.cost > 0 || self.idem.is_some() || self.refill_due || self.hold.is_some()
    }
}

fn plan<'a>(
    state: &KeyState,
    account: &AccountView,
    route_cost: u64,
    options: &AuthorizeOptions<'a>,
    now: Millis,
) -> Plan<'a> {
    let operator = state.rec.operator;
    Plan {
        cost: if operator || options.hold.is_some() {
            0
        } else {
            options.cost.unwrap_or(route_cost)
        },
        idem: if operator {
            None
        } else {
            options.idempotency_key
        },
        refill_due: account.next_refill.is_some_and(|due| now >= due),
        hold: options.hold,
    }
}

impl Inner {
    /// The credits step of `authorize`: debit (with group commit) or read the balance.
    pub(super) fn charge(
        &self,
        hot: &Rc<HotKey>,
        account: &AccountView,
        (route_cost, matched): (u64, &Matched<'_>),
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
    ) -> Result<GrantView> {
        let inner = self;
        let state = &*hot.state;
        let rec = &state.rec;
        let operator = rec.operator;
        let Plan {
            cost,
            idem,
            refill_due,
            hold,
        } = plan(state, account, route_cost, options, now);
        if !(Plan {
            cost,
            idem,
            refill_due,
            hold,
        })
        .writes()
        {
            // Nothing to write: the key's strings stay in the cached record.
            return Ok(GrantView::cached(
                hot.clone(),
                account.credits,
                account.total,
            ));
        }
        let mut grant = Grant {
            account_id: rec.account_id.clone(),
            key_id: rec.key_id.clone(),
            key_name: rec.name.clone(),
            prefix: rec.prefix.clone(),
            auth_method: if operator {
                AuthMethod::Operator
            } else {
                AuthMethod::Apikey
            },
            scopes: rec.scopes.clone(),
            charged: 0,
            credits: 0,
            total_credits: 0,
            replayed: false,
            ratelimits: Vec::new(),
            hold_id: None,
        };
        if let Some(amount) = hold {
            // Holds: the hold replaces the debit (see `holds.rs`).
            return self
                .authorize_hold(rec, grant, amount, options, target, now)
                .map(GrantView::owned);
        }
        {
            let req = DebitReq {
                account_id: rec.account_id.clone(),
                cost,
                idempotency: idem.map(|k| {
                    let limit_cost = options.limit_cost.unwrap_or(1);
                    let fp = idempotency::fingerprint(&rec.account_id, matched, cost, limit_cost);
                    (IdempotencyScope::Authorize, k.to_string(), fp)
                }),
                now,
                grant: Some(grant.clone()),
                route: Some(super::events::route_label(matched)),
            };
            match inner.submit_debit(req) {
                Ok(d) => {
                    if let Some((first, first_at)) = d.replayed {
                        if options.on_replay == OnReplay::Refuse {
                            // Not a refusal of the key: the request was already served.
                            return Err(Error::DuplicateRequest {
                                charged: first.charged,
                                first_at,
                            });
                        }
                        // The first call's grant; this call charged nothing.
                        grant = first;
                        grant.replayed = true;
                        grant.charged = 0;
                    } else {
                        grant.charged = d.charged;
                        grant.credits = d.credits;
                        grant.total_credits = d.total;
                    }
                }
                Err(e) => return Err(inner.refuse(Some(rec), target, now, e)),
            }
        }
        Ok(GrantView::owned(grant))
    }

    /// The rate-limit step of `authorize`: every auto-applied limit of the key and its
    /// account, and those named in `options.limits`. All or nothing: a refusal gives back
    /// what the earlier limits took.
    pub(super) fn take_limits(
        &self,
        state: &KeyState,
        account: &AccountView,
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        now: Millis,
    ) -> Result<Vec<Taken>> {
        let rec = &state.rec;
        let account_limits: &[BoundLimit] = account.limits.as_deref().unwrap_or(&[]);
        let named = options.limits.unwrap_or(&[]);
        if state.limits.is_empty() && account_limits.is_empty() {
            if let Some(name) = named.first() {
                return Err(Error::invalid(format!("unknown rate limit {name:?}")));
            }
            return Ok(Vec::new());
        }
        for name in named {
            if !state
                .limits
                .iter()
                .chain(account_limits)
                .any(|l| l.def.name == *name)
            {
                return Err(Error::invalid(format!("unknown rate limit {name:?}")));
            }
        }
        let weight = options.limit_cost.unwrap_or(1);
        let buckets = self
            .cache
            .sidecar
            .as_ref()
            .map_or(&[][..], |sc| sc.rate_buckets());
        let applicable = state
            .limits
            .iter()
            .chain(account_limits)
            .filter(|l| l.def.auto_apply || named.contains(&l.def.name.as_str()));
        let mut taken: Vec<Taken> = Vec::new();
        let store = self.store()?;
        let backend = store.as_deref();
        for l in applicable {
            let in_store = backend.and_then(|b| b.take_rate(l.key, &l.def, weight, now));
            let outcome = match in_store {
                Some(Ok(r)) => r,
                Some(Err(e)) => {
                    self.give_back_in(backend, &taken);
                    return Err(e);
                }
                None => self
                    .cache
                    .counters
                    .take(buckets, l.key, &l.def, weight, now),
            };
            match outcome {
                Ok(t) => taken.push(t),
                Err(x) => {
                    self.give_back_in(backend, &taken);
                    return Err(self.refuse(
                        Some(rec),
                        target,
                        now,
                        Error::RateLimited {
                            limit: x.name,
                            max: x.max,
                            remaining: 0,
                            reset_ms: x.reset_ms,
                            retry_after: x.retry_after_s,
                        },
                    ));
                }
            }
        }
        Ok(taken)
    }

    pub(super) fn give_back(&self, taken: &[Taken]) {
        let store = self.store.read();
        self.give_back_in(store.as_deref(), taken);
    }

    /// `give_back` with the store already at hand. A give-back the store fails (best
    /// effort) only leaves the limit stricter.
    fn give_back_in(&self, store: Option<&dyn crate::store::Backend>, taken: &[Taken]) {
        let buckets = self
            .cache
            .sidecar
            .as_ref()
            .map_or(&[][..], |sc| sc.rate_buckets());
        for t in taken {
            if store.and_then(|b| b.give_back_rate(t)).is_none() {
                self.cache.counters.give_back(buckets, t);
            }
        }
    }
}

impl Vault {
    /// Who a token belongs to and what its account has left (the seeds'
    /// `/api/v1/account`). Runs the key checks of `authorize` (format, secret, revoked,
    /// disabled, expired) but no scope, route or credit check.
    pub fn whoami(&self, token: &str) -> Result<WhoAmI> {
        let inner = &*self.inner;
        inner.check_open()?;
        let now = (inner.settings.clock)();
        let target = Target::Scope("whoami");
        let authed = inner
            .authenticate(
                token,
                now,
                &target,
                &AuthorizeOptions::default(),
                Mode::Blocking,
            )
            .map_err(Halt::into_error)?;
        let rec = &authed.state.rec;
        let (credits, total) = inner.balance_now(&rec.account_id, now)?;
        Ok(WhoAmI {
            account_id: rec.account_id.clone(),
            key_id: rec.key_id.clone(),
            key_name: rec.name.clone(),
            auth_method: if rec.operator {
                AuthMethod::Operator
            } else {
                AuthMethod::Apikey
            },
            scopes: rec.scopes.clone(),
            credits,
            total_credits: total,
        })
    }
}

pub(super) struct Authed {
    pub(super) hot: Rc<HotKey>,
}

impl std::ops::Deref for Authed {
    type Target = HotKey;

    fn deref(&self) -> &HotKey {
        &self.hot
    }
}

impl Inner {
    /// Format → key exists → secret → revoked → disabled → expired → signature.
    pub(super) fn authenticate(
        &self,
        token: &str,
        now: Millis,
        target: &Target<'_>,
        options: &AuthorizeOptions<'_>,
        mode: Mode,
    ) -> std::result::Result<Authed, Halt> {
        if token.len() > token::MAX_TOKEN_LEN {
            return Err(self.refuse_unknown(None, target, now).into());
        }
        // Imported keys' shapes (drf-api-key, Unkey) only for what is not a native token.
        let legacy;
        let parsed = match token::parse(token) {
            Some(parsed) => parsed,
            None => match crate::legacy::parse(token) {
                Some(l) => {
                    legacy = l;
                    // The whole token is what an imported key's hash covers.
                    token::ParsedToken {
                        prefix: legacy.prefix,
                        key_id: &legacy.key_id,
                        secret: token,
                    }
                }
                None => return Err(self.refuse_unknown(None, target, now).into()),
            },
        };
        let Some((hot, verified)) = self.key_entry(parsed.key_id)? else {
            return Err(self.refuse_unknown(Some(parsed.key_id), target, now).into());
        };
        let state = &hot.state;
        let rec = &state.rec;
        if parsed.prefix != rec.prefix {
            return Err(self
                .refuse(Some(rec), target, now, Error::InvalidApiKey)
                .into());
        }
        let digest = self.verify.digest_key.digest(parsed.secret.as_bytes());
        let secret_ok = match verified {
            // A key's secret never changes: a verified digest decides without argon2.
            Some(v) => crypto::digest_eq(&v, &digest),
            // Too many attempts: the secret was not checked, so never `invalid_api_key`.
            None => match self.verify_cold(state, parsed.secret, digest, mode) {
                Ok(ok) => ok,
                Err(Halt::Refused(e)) => {
                    return Err(self.refuse(Some(rec), target, now, e).into());
                }
                Err(wait) => return Err(wait),
            },
        };
        if !secret_ok || rec.revoked_at.is_some() {
            return Err(self
                .refuse(Some(rec), target, now, Error::InvalidApiKey)
                .into());
        }
        if rec.disabled {
            return Err(self
                .refuse(Some(rec), target, now, Error::ApiKeyInactive)
                .into());
        }
        if rec.expires_at.is_some_and(|at| now >= at) {
            return Err(self
                .refuse(Some(rec), target, now, Error::ApiKeyExpired)
                .into());
        }
        if let Some(sealed) = &rec.signing_secret {
            let secret = {
                let master = self.master.read();
                let Some(master) = master.as_ref() else {
                    return Err(no_master_key().into());
                };
                master
                    .open(&secrets::signing_aad(&rec.key_id), sealed)
                    .ok_or_else(|| undecryptable(&rec.key_id))?
            };
            let signed = self.check_signature(&secret, target, options, now, mode)?;
            if !signed {
                return Err(self
                    .refuse(Some(rec), target, now, Error::InvalidSignature)
                    .into());
            }
        }
        Ok(Authed { hot })
    }

    /// argon2 check of a secret not yet verified in this process. `Ok(false)`: the secret
    /// is wrong (argon2 said so, now or before: a secret that failed once is refused again
    /// without argon2). `Err(TooManyAttempts)`: the secret was not checked, because the
    /// process budget of failed verifications is spent or the argon2 queue is full. A
    /// key_id past its own burst of failures may only use the upper half of the budget.
    ///
    /// `Mode::NonBlocking`: a secret already refused, or a spent budget, is answered as
    /// in a blocking call; anything that would run argon2 stops with
    /// `WouldBlock::Argon2` before any change (the throttle and the budget are only read).
    pub(super) fn verify_cold(
        &self,
        state: &Arc<KeyState>,
        secret: &str,
        digest: [u8; 32],
        mode: Mode,
    ) -> std::result::Result<bool, Halt> {
        let rec = &state.rec;
        let failed = self
            .verify
            .digest_key
            .failed_digest(&rec.secret_hash, secret.as_bytes());
        if self.verify.failed.contains(&failed) {
            self.verify.throttled.fetch_add(1, Ordering::Relaxed);
            return Ok(false);
        }
        let now = (self.settings.clock)();
        if mode == Mode::NonBlocking {
            let own = self.verify.throttle.peek(&rec.key_id, now);
            return match self.verify.budget.peek(now, !own) {
                Err(retry_after) => {
                    self.verify.throttled.fetch_add(1, Ordering::Relaxed);
                    Err(Error::TooManyAttempts { retry_after }.into())
                }
                Ok(()) => Err(Halt::Wait(WouldBlock::Argon2)),
            };
        }
        let own = self.verify.throttle.allows(&rec.key_id, now);
        if let Err(retry_after) = self.verify.budget.take(now, !own) {
            self.verify.throttled.fetch_add(1, Ordering::Relaxed);
            return Err(Error::TooManyAttempts { retry_after }.into());
        }
        let current = *self.verify.argon2.read();
        let outcome = {
            let Some(_permit) = self.verify.limiter.try_acquire() else {
                self.verify.budget.refund();
                self.verify.throttled.fetch_add(1, Ordering::Relaxed);
                return Err(Error::TooManyAttempts { retry_after: 1 }.into());
            };
            self.verify.argon2_runs.fetch_add(1, Ordering::Relaxed);
            crypto::verify_secret(secret.as_bytes(), &rec.secret_hash, current)
        };
        match outcome {
            Verified::No => {
                self.verify.throttle.failed(&rec.key_id, now);
                self.verify.failed.insert(failed);
                Ok(false)
            }
            Verified::Yes | Verified::YesRehash => {
                self.verify.budget.refund();
                let found = self
                    .cache
                    .keys
                    .with_mut(&rec.key_id, |e| e.verified = Some(digest));
                if found.is_none() {
                    self.cache.keys.insert(
                        &rec.key_id,
                        KeyEntry {
                            state: state.clone(),
                            gen: NEVER,
                            verified: Some(digest),
                            usage: self.flushing.pending.cell(&rec.key_id),
                        },
                    );
                }
                if outcome == Verified::YesRehash {
                    // Best effort: a failed rehash leaves the old (still valid) hash.
                    let _ = self.rehash(&rec.key_id, secret);
                }
                Ok(true)
            }
        }
    }

    /// Rehash a verified secret whose hash is strictly weaker than the current parameters
    /// (never towards weaker ones). Skipped when the argon2 queue is full.
    pub(super) fn rehash(&self, key_id: &str, secret: &str) -> Result<()> {
        let current = *self.verify.argon2.read();
        let hash = {
            let Some(_permit) = self.verify.limiter.try_acquire() else {
                return Ok(());
            };
            crypto::hash_secret(secret.as_bytes(), current)?
        };
        self.write(|tx| {
            if let Some(mut rec) = tx.key(key_id)? {
                if crypto::verify_secret(secret.as_bytes(), &rec.secret_hash, current)
                    == Verified::YesRehash
                {
                    rec.secret_hash = hash;
                    tx.put_key(&rec)?;
                }
            }
            Ok(())
        })
    }
}
