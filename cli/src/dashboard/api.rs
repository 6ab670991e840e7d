//! The JSON endpoints under `/api/`. Each handler reads
//! and checks its input, then makes one `Vault` call (off the async workers); a core error
//! answers with its own status and body.
//!
//! | method | path | vault call |
//! |---|---|---|
//! | GET | `/api/session` | (the session's CSRF token) |
//! | POST | `/api/logout` | |
//! | GET | `/api/overview` | counts, cache mode, master key present |
//! | GET | `/api/accounts` | `list_accounts` |
//! | POST | `/api/accounts` | `create_account` `{id, credits?, metadata?}` |
//! | GET | `/api/accounts/{id}` | `account` |
//! | POST | `/api/accounts/{id}/top-up` | `top_up` `{amount, reference?}` |
//! | POST | `/api/accounts/{id}/debit` | `debit` `{amount, idempotency_key?}` |
//! | POST | `/api/accounts/{id}/refill` | `set_refill` `{amount, interval, day?}` |
//! | POST | `/api/accounts/{id}/refill/clear` | `clear_refill` |
//! | GET | `/api/keys?account=` | `list_keys`, each with `rotatable` (what `rotate_key` accepts) |
//! | POST | `/api/keys` | `create_key` `{account_id, name, scopes, prefix?, style? ("prefixed" or "colon"), expires_at?, expires_in?, operator?, signing?, metadata?}` → the token, once |
//! | GET | `/api/keys/{key_id}` | `key` |
//! | POST | `/api/keys/{key_id}/revoke` · `/disable` · `/enable` | `revoke_key` · `disable_key` · `enable_key` |
//! | POST | `/api/keys/{key_id}/rotate` | `rotate_key` `{grace}` (seconds) → the new token, once |
//! | POST | `/api/keys/{key_id}/scopes` | `set_scopes` `{scopes}` |
//! | POST | `/api/keys/{key_id}/expiry` | `set_expiry` `{expires_at?}` / `{expires_in?}` (none: clear) |
//! | GET | `/api/keys/{key_id}/usage` | `usage` |
//! | GET | `/api/routes` | `list_routes` |
//! | POST | `/api/routes` | `add_route` `{method, pattern, scope, cost?}` |
//! | POST | `/api/routes/remove` | `remove_route` `{method, pattern}` |
//! | GET | `/api/routes/match?method=&path=` | `match_route` |
//! | GET | `/api/limits?key=` / `?account=` / (all) | `ratelimits` |
//! | POST | `/api/limits` | `set_ratelimit` `{key_id | account_id, name, limit, seconds, auto_apply?}` |
//! | POST | `/api/limits/remove` | `remove_ratelimit` `{key_id | account_id, name}` |
//! | GET | `/api/audit?key=&account=&action=&since=&limit=` | `audit` |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyledger::{AuditQuery, LimitOwner, NewKey, RefillInterval, SecretToken, Vault};
use serde::Serialize;
use serde_json::{json, Value};

use super::input::{parse_u64, seconds_to_ms, Id, JsonObject, QueryMap};
use super::{auth, ApiError, ApiResult, AppState};
use axum::extract::State;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/session", get(auth::session))
        .route("/logout", post(auth::logout))
        .route("/overview", get(overview))
        .route("/accounts", get(list_accounts).post(create_account))
        .route("/accounts/{id}", get(account))
        .route("/accounts/{id}/top-up", post(top_up))
        .route("/accounts/{id}/debit", post(debit))
        .route("/accounts/{id}/refill", post(set_refill))
        .route("/accounts/{id}/refill/clear", post(clear_refill))
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", get(key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/disable", post(disable_key))
        .route("/keys/{id}/enable", post(enable_key))
        .route("/keys/{id}/rotate", post(rotate_key))
        .route("/keys/{id}/scopes", post(set_scopes))
        .route("/keys/{id}/expiry", post(set_expiry))
        .route("/keys/{id}/usage", get(usage))
        .route("/routes", get(list_routes).post(add_route))
        .route("/routes/remove", post(remove_route))
        .route("/routes/match", get(match_route))
        .route("/limits", get(list_limits).post(set_limit))
        .route("/limits/remove", post(remove_limit))
        .route("/audit", get(audit))
        // Holds.
        .route("/holds", get(list_holds))
}

fn to_json<T: Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode JSON: {e}"),
        )
    })
}

fn ok(v: Value) -> Response {
    Json(v).into_response()
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

/// The one response that carries a secret: a new token (and signing secret).
fn new_token_body(token: &SecretToken, key: &keyledger::KeyInfo) -> Result<Value, ApiError> {
    let mut body = json!({
        "success": true,
        "token": token.expose(),
        "key": to_json(key)?,
        "warning": "this is the only time the token is shown; store it now",
    });
    if let Some(s) = token.signing_secret() {
        body["signing_secret"] = json!(s);
    }
    Ok(body)
}

async fn overview(State(st): State<AppState>) -> ApiResult {
    st.run(|v| {
        Ok(json!({
            "accounts": v.list_accounts()?.len(),
            "keys": v.list_keys(None)?.len(),
            "routes": v.list_routes()?.len(),
            "cache_mode": to_json(&v.cache_mode())?,
            "has_master_key": v.has_master_key(),
            "actor": "dashboard",
        }))
    })
    .await
    .map(ok)
}

// ------------------------------------------------------------------ accounts

async fn list_accounts(State(st): State<AppState>) -> ApiResult {
    st.run(|v| to_json(&v.list_accounts()?)).await.map(ok)
}

// Holds: the active holds of every account (expired ones are released first).
async fn list_holds(State(st): State<AppState>) -> ApiResult {
    st.run(|v| to_json(&v.holds(None)?)).await.map(ok)
}

async fn create_account(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let id = b.req_str("id")?;
    let credits = b.opt_u64("credits")?.unwrap_or(0);
    let metadata = b.metadata("metadata")?;
    b.finish()?;
    st.run(move |v| to_json(&v.create_account(&id, credits, metadata)?))
        .await
        .map(created)
}

async fn account(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.run(move |v| to_json(&v.account(&id)?)).await.map(ok)
}

async fn top_up(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let amount = b.req_u64("amount")?;
    let reference = b.opt_str("reference")?;
    b.finish()?;
    st.run(move |v| to_json(&v.top_up(&id, amount, reference.as_deref())?))
        .await
        .map(ok)
}

async fn debit(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let amount = b.req_u64("amount")?;
    let idem = b.opt_str("idempotency_key")?;
    b.finish()?;
    st.run(move |v| to_json(&v.debit(&id, amount, idem.as_deref())?))
        .await
        .map(ok)
}

async fn set_refill(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let amount = b.req_u64("amount")?;
    let interval = match b.req_str("interval")?.as_str() {
        "daily" => RefillInterval::Daily,
        "monthly" => RefillInterval::Monthly,
        other => {
            return Err(ApiError::invalid(format!(
                "interval must be \"daily\" or \"monthly\", got {other:?}"
            )))
        }
    };
    let day = b.opt_u64("day")?.unwrap_or(1);
    let day = u8::try_from(day).map_err(|_| ApiError::invalid("day must be between 1 and 28"))?;
    b.finish()?;
    st.run(move |v| to_json(&v.set_refill(&id, amount, interval, day)?))
        .await
        .map(ok)
}

async fn clear_refill(State(st): State<AppState>, Id(id): Id, b: JsonObject) -> ApiResult {
    b.finish()?;
    st.run(move |v| to_json(&v.clear_refill(&id)?))
        .await
        .map(ok)
}

// ---------------------------------------------------------------------- keys

async fn list_keys(State(st): State<AppState>, q: QueryMap) -> ApiResult {
    let account = q.str("account");
    st.run(move |v| with_rotatable(&v.list_keys(account.as_deref())?))
        .await
        .map(ok)
}

/// Each key with `rotatable`: live, enabled, not expired and not already rotated (no key
/// of the list names it in `rotated_from`) — exactly what `rotate_key` accepts, so the
/// page offers rotation only there. The list holds every key of the accounts it covers,
/// so successors are in it.
fn with_rotatable(keys: &[keyledger::KeyInfo]) -> Result<Value, ApiError> {
    let now = keyledger::system_now();
    let rotated: std::collections::HashSet<&str> = keys
        .iter()
        .filter_map(|k| k.rotated_from.as_deref())
        .collect();
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let mut j = to_json(k)?;
        j["rotatable"] = json!(
            k.revoked_at.is_none()
                && !k.disabled
                && k.expires_at.is_none_or(|at| at > now)
                && !rotated.contains(k.key_id.as_str())
        );
        out.push(j);
    }
    Ok(Value::Array(out))
}

async fn create_key(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let account_id = b.req_str("account_id")?;
    let name = b.req_str("name")?;
    let scopes = b.scopes("scopes")?;
    let mut new = NewKey::new(account_id, name, scopes);
    if let Some(p) = b.opt_str("prefix")? {
        new = new.prefix(p.trim());
    }
    if let Some(style) = b.opt_str("style")? {
        new = new.style(style.trim().parse()?);
    }
    if let Some(at) = b.opt_i64("expires_at")? {
        new = new.expires_at(at);
    }
    if let Some(secs) = b.opt_u64("expires_in")? {
        if new.expires_at.is_some() {
            return Err(ApiError::invalid("give expires_at or expires_in, not both"));
        }
        new = new.expires_in_ms(seconds_to_ms("expires_in", secs)?);
    }
    new = new
        .operator(b.bool("operator")?)
        .signing(b.bool("signing")?);
    if let Some(m) = b.metadata("metadata")? {
        new = new.metadata(m);
    }
    b.finish()?;
    st.run(move |v| {
        let (token, info) = v.create_key(new)?;
        new_token_body(&token, &info)
    })
    .await
    .map(created)
}

async fn key(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.run(move |v| to_json(&v.key(&id)?)).await.map(ok)
}

async fn key_change(
    st: AppState,
    id: String,
    b: JsonObject,
    f: fn(&Vault, &str) -> keyledger::Result<keyledger::KeyInfo>,
) -> ApiResult {
    b.finish()?;
    st.run(move |v| to_json(&f(v, &id)?)).await.map(ok)
}

async fn revoke_key(State(st): State<AppState>, Id(id): Id, b: JsonObject) -> ApiResult {
    key_change(st, id, b, Vault::revoke_key).await
}

async fn disable_key(State(st): State<AppState>, Id(id): Id, b: JsonObject) -> ApiResult {
    key_change(st, id, b, Vault::disable_key).await
}

async fn enable_key(State(st): State<AppState>, Id(id): Id, b: JsonObject) -> ApiResult {
    key_change(st, id, b, Vault::enable_key).await
}

async fn rotate_key(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let grace = seconds_to_ms("grace", b.opt_u64("grace")?.unwrap_or(0))?;
    b.finish()?;
    st.run(move |v| {
        let (token, info) = v.rotate_key(&id, grace)?;
        let mut body = new_token_body(&token, &info)?;
        body["old"] = to_json(&v.key(&id)?)?;
        Ok(body)
    })
    .await
    .map(created)
}

async fn set_scopes(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let scopes = b.scopes("scopes")?;
    b.finish()?;
    st.run(move |v| to_json(&v.set_scopes(&id, &scopes)?))
        .await
        .map(ok)
}

async fn set_expiry(State(st): State<AppState>, Id(id): Id, mut b: JsonObject) -> ApiResult {
    let at = b.opt_i64("expires_at")?;
    let within = b.opt_u64("expires_in")?;
    b.finish()?;
    let when = match (at, within) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("give expires_at or expires_in, not both"))
        }
        (Some(at), None) => Some(at),
        (None, Some(secs)) => Some(
            keyledger::system_now()
                .checked_add(seconds_to_ms("expires_in", secs)?)
                .ok_or_else(|| ApiError::invalid("expires_in is too large"))?,
        ),
        (None, None) => None,
    };
    st.run(move |v| to_json(&v.set_expiry(&id, when)?))
        .await
        .map(ok)
}

async fn usage(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.run(move |v| {
        v.flush()?;
        to_json(&v.usage(&id)?)
    })
    .await
    .map(ok)
}

// -------------------------------------------------------------------- routes

async fn list_routes(State(st): State<AppState>) -> ApiResult {
    st.run(|v| to_json(&v.list_routes()?)).await.map(ok)
}

async fn add_route(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let method = b.req_str("method")?;
    let pattern = b.req_str("pattern")?;
    let scope = b.req_str("scope")?;
    let cost = b.opt_u64("cost")?.unwrap_or(0);
    b.finish()?;
    st.run(move |v| to_json(&v.add_route(&method, &pattern, &scope, cost)?))
        .await
        .map(created)
}

async fn remove_route(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let method = b.req_str("method")?;
    let pattern = b.req_str("pattern")?;
    b.finish()?;
    st.run(move |v| to_json(&v.remove_route(&method, &pattern)?))
        .await
        .map(ok)
}

async fn match_route(State(st): State<AppState>, q: QueryMap) -> ApiResult {
    let method = q
        .str("method")
        .ok_or_else(|| ApiError::invalid("method is required"))?;
    let path = q
        .str("path")
        .ok_or_else(|| ApiError::invalid("path is required"))?;
    st.run(move |v| {
        Ok(match v.match_route(&method, &path)? {
            Some(rule) => json!({"matched": true, "rule": to_json(&rule)?}),
            None => json!({
                "matched": false,
                "rule": null,
                "refusal": keyledger::Error::RouteNotAllowed.body(),
                "status": keyledger::Error::RouteNotAllowed.status(),
            }),
        })
    })
    .await
    .map(ok)
}

// --------------------------------------------------------------- rate limits

/// `key_id` xor `account_id` from a body.
fn owner_of(b: &mut JsonObject) -> Result<(bool, String), ApiError> {
    let (key_id, account_id) = (b.opt_str("key_id")?, b.opt_str("account_id")?);
    Ok(
        match LimitOwner::from_ids(key_id.as_deref(), account_id.as_deref())? {
            LimitOwner::Key(k) => (true, k.to_owned()),
            LimitOwner::Account(a) => (false, a.to_owned()),
        },
    )
}

fn owner(is_key: bool, id: &str) -> LimitOwner<'_> {
    if is_key {
        LimitOwner::Key(id)
    } else {
        LimitOwner::Account(id)
    }
}

fn limit_row(is_key: bool, id: &str, l: &keyledger::RateLimit) -> Result<Value, ApiError> {
    let mut row = to_json(l)?;
    row["owner"] = json!(if is_key { "key" } else { "account" });
    row["owner_id"] = json!(id);
    Ok(row)
}

async fn list_limits(State(st): State<AppState>, q: QueryMap) -> ApiResult {
    let key = q.str("key");
    let account = q.str("account");
    st.run(move |v| {
        let owners: Vec<(bool, String)> = match (key, account) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid("give key or account, not both"));
            }
            (Some(k), None) => vec![(true, k)],
            (None, Some(a)) => vec![(false, a)],
            (None, None) => v
                .list_accounts()?
                .into_iter()
                .map(|a| (false, a.id))
                .chain(v.list_keys(None)?.into_iter().map(|k| (true, k.key_id)))
                .collect(),
        };
        let mut rows = Vec::new();
        for (is_key, id) in &owners {
            for l in v.ratelimits(owner(*is_key, id))? {
                rows.push(limit_row(*is_key, id, &l)?);
            }
        }
        Ok(Value::Array(rows))
    })
    .await
    .map(ok)
}

async fn set_limit(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let (is_key, id) = owner_of(&mut b)?;
    let name = b.req_str("name")?;
    let limit = b.req_u64("limit")?;
    let secs = b.req_u64("seconds")?;
    let auto_apply = match b.opt_str("applies")?.as_deref() {
        None | Some("every_call") => true,
        Some("when_named") => false,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "applies must be \"every_call\" or \"when_named\", got {other:?}"
            )))
        }
    };
    b.finish()?;
    let ms = u64::try_from(seconds_to_ms("seconds", secs)?)
        .map_err(|_| ApiError::invalid("seconds is too large"))?;
    st.run(move |v| {
        let l = v.set_ratelimit(owner(is_key, &id), &name, limit, ms, auto_apply)?;
        limit_row(is_key, &id, &l)
    })
    .await
    .map(created)
}

async fn remove_limit(State(st): State<AppState>, mut b: JsonObject) -> ApiResult {
    let (is_key, id) = owner_of(&mut b)?;
    let name = b.req_str("name")?;
    b.finish()?;
    st.run(move |v| {
        let l = v.remove_ratelimit(owner(is_key, &id), &name)?;
        limit_row(is_key, &id, &l)
    })
    .await
    .map(ok)
}

// --------------------------------------------------------------------- audit

async fn audit(State(st): State<AppState>, q: QueryMap) -> ApiResult {
    let limit = match q.str("limit") {
        Some(l) => match parse_u64("limit", &l)? {
            0 => return Err(ApiError::invalid("limit must be positive")),
            n => Some(usize::try_from(n).map_err(|_| ApiError::invalid("limit is too large"))?),
        },
        None => None,
    };
    let query = AuditQuery {
        key_id: q.str("key"),
        account_id: q.str("account"),
        action: q.str("action"),
        since: q.i64("since")?,
        limit,
    };
    st.run(move |v| to_json(&v.audit(&query)?)).await.map(ok)
}
