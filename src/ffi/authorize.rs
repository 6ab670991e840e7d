//! The hot path: `kl_authorize` and its variants.
//!
//! A granted `kl_authorize`/`kl_authorize_scope` fills a caller-provided [`kl_grant`] with
//! fixed-size buffers: nothing is allocated on the C side. The `_json` variants return the
//! whole grant (with scopes and rate limits) as JSON instead.

use std::ffi::c_char;

use super::args::{opt_bytes, parse_json, Out};
use super::handle::kl_vault;
use super::layout::{boundary_opts, read_opts, GrantOut};
use super::panic::Failure;
use super::status::kl_status;
use crate::{AuthMethod, AuthorizeOptions, GrantView, OnReplay, Target, Vault};

/// Size of `kl_grant.account_id`: account ids are at most 128 bytes, plus the NUL.
pub const KL_ACCOUNT_ID_SIZE: usize = 129;
/// Size of `kl_grant.key_id`: key ids are 8 characters, plus the NUL.
pub const KL_KEY_ID_SIZE: usize = 9;
/// Size of `kl_grant.prefix`: prefixes are at most 32 characters, plus the NUL.
pub const KL_PREFIX_SIZE: usize = 33;
/// Size of `kl_grant.key_name`: key names are at most 128 bytes, plus the NUL.
pub const KL_KEY_NAME_SIZE: usize = 129;
/// Size of `kl_grant.ratelimit_name`: rate limit names are at most 64 characters, plus
/// the NUL.
pub const KL_RATELIMIT_NAME_SIZE: usize = 65;
/// Size of `kl_grant.hold_id`: hold ids are 29 characters (`hold_` and 24 hex digits),
/// plus the NUL.
pub const KL_HOLD_ID_SIZE: usize = 30;
/// `kl_grant.auth_method` of an ordinary key (`"apikey"`).
pub const KL_AUTH_APIKEY: u32 = 0;
/// `kl_grant.auth_method` of an operator key (`"operator"`): every scope, never charged.
pub const KL_AUTH_OPERATOR: u32 = 1;

/// Optional parts of an authorization. Initialize it with `KL_AUTHORIZE_OPTS_INIT`
/// (`size` set to `sizeof(kl_authorize_opts)`, every other field zero) or `= {0}` (size 0:
/// this library's layout), then set what you need: every zero field means "default".
/// Pass NULL for all defaults.
///
/// Growth: fields are only ever added at the end, each starting at or past the previous
/// layout's `sizeof`. The library reads only the fields that lie wholly within `size`
/// (the rest are defaults), so a program built against an older header keeps working
/// with a newer library. A `size` below the first layout is `KL_INVALID_ARGUMENT`; a
/// `size` beyond this library's struct (a newer header) is accepted only when the bytes
/// past it are zero (`KL_INVALID_ARGUMENT` otherwise: an option this library does not
/// know is refused, never ignored).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kl_authorize_opts {
    /// `sizeof(kl_authorize_opts)` as the caller's header declares it, or 0 for this
    /// library's layout.
    pub size: u32,
    /// Credits to charge, used only when `has_cost` is non-zero.
    pub cost: u64,
    /// 0: charge the matched route's cost (0 for a scope). Non-zero: charge `cost`.
    pub has_cost: u8,
    /// Optional (NULL: none), 1–255 bytes, per account: a repeat within 24 h returns the
    /// first call's grant with `replayed` set and charges nothing.
    pub idempotency_key: *const c_char,
    /// Length of `idempotency_key` in bytes.
    pub idempotency_key_len: usize,
    /// Optional (NULL: none): `t=<unix seconds>,v2=<hex>` for keys that require signing
    /// (see `kl_sign_request`); `v1=` signatures are refused.
    pub signature: *const c_char,
    /// Length of `signature` in bytes.
    pub signature_len: usize,
    /// Optional (NULL: none): the request body, for signatures. Any bytes.
    pub body: *const u8,
    /// Length of `body` in bytes.
    pub body_len: usize,
    /// The request time in unix milliseconds; 0: the vault's clock.
    pub now_ms: i64,
    /// Optional (NULL: none): the rate limits to apply besides the auto-applied ones
    /// (named rate limits), as a JSON array of limit names, e.g. `["tokens"]`. A name that is
    /// neither the key's nor its account's limit is `KL_INVALID_ARGUMENT`. (A JSON array,
    /// like `kl_set_scopes`, rather than an array of pointers: one string to validate.)
    pub limits_json: *const c_char,
    /// Length of `limits_json` in bytes.
    pub limits_json_len: usize,
    /// How much this call weighs against every applied rate limit, used only when
    /// `has_limit_cost` is non-zero (default 1).
    pub limit_cost: u64,
    /// 0: the call weighs 1. Non-zero: it weighs `limit_cost`.
    pub has_limit_cost: u8,
    /// 0: a repeat of `idempotency_key` (same request, within 24 h) returns the first
    /// grant with `replayed` set. Non-zero: it is refused with `KL_DUPLICATE_REQUEST`,
    /// whose body carries the first call's `charged` and `first_at`. Either way nothing is
    /// charged; a reuse of the key for another request is `KL_IDEMPOTENCY_CONFLICT`.
    pub refuse_replay: u8,
    /// Optional (NULL: none): the request's query string exactly as sent, without the `?`
    /// (`to=A` for `/send?to=A`). A signature covers `path?query`. Routes only; NULL when
    /// `path` carries its own query.
    pub query: *const c_char,
    /// Length of `query` in bytes.
    pub query_len: usize,
    /// `kl_authorize_request` only: non-zero matches rule literals ignoring ASCII case
    /// (Express's default routing); 0 compares them byte for byte.
    pub case_insensitive: u8,
    /// Optional (NULL: none; added in 0.2, read only when `size` covers it): when the call
    /// fails (any status but `KL_OK`, `KL_WOULD_BLOCK` included), `*error_body` receives a
    /// copy of its JSON body, the one `kl_last_error_body()` gives on the calling thread,
    /// which the caller frees with `kl_string_free`; untouched on `KL_OK` and when `size`
    /// itself is refused. For a host that reads the answer on another thread than the one
    /// that made the call (an event loop whose blocking call ran on a worker thread).
    pub error_body: *mut *mut c_char,
    // Holds (appended after the 0.2 layout; read only when `size` covers them).
    /// Non-zero: reserve this many credits instead of charging a cost; the grant's
    /// `hold_id` names the hold, to settle with `kl_settle`. Not with `has_cost`
    /// (`KL_INVALID_ARGUMENT`). 0: no hold.
    pub hold: u64,
    /// The hold's TTL in ms; 0: the default (15 minutes). Only with `hold`.
    pub hold_ttl_ms: u64,
}

/// A successful authorization, with fixed-size NUL-terminated buffers (each sized for the
/// longest value keyledger accepts, see the `KL_*_SIZE` constants, so nothing is ever
/// truncated). Scopes and every applied rate limit are
/// in the JSON variants (`kl_authorize_json`); this struct carries the tightest applied
/// limit (the one with the fewest units left; the first applied on a tie), enough for
/// the `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers.
///
/// Before the call, set `size` (`kl_grant g = KL_GRANT_INIT;`, or `= {0}` for this
/// library's layout): the library checks it before any work (below the first layout:
/// `KL_INVALID_ARGUMENT`, nothing done, the struct untouched) and on `KL_OK` writes only
/// the fields that lie wholly within it, keeping `size`. Fields are only ever added at the
/// end, so a program built against an older header keeps working with a newer library;
/// bytes past this library's struct (a newer header) are left as they were.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct kl_grant {
    /// `sizeof(kl_grant)` as the caller's header declares it, or 0 for this library's
    /// layout. Read before the call; kept as it is.
    pub size: u32,
    /// The calling account.
    pub account_id: [c_char; KL_ACCOUNT_ID_SIZE],
    /// The key used (8 characters).
    pub key_id: [c_char; KL_KEY_ID_SIZE],
    /// The key's prefix, e.g. `dial_live`.
    pub prefix: [c_char; KL_PREFIX_SIZE],
    /// The key's name.
    pub key_name: [c_char; KL_KEY_NAME_SIZE],
    /// `KL_AUTH_APIKEY` or `KL_AUTH_OPERATOR`.
    pub auth_method: u32,
    /// Credits debited by this call (0 for a replay or an operator).
    pub charged: u64,
    /// Credits left after the call.
    pub credits: u64,
    /// Lifetime credits of the account.
    pub total_credits: u64,
    /// True when this is the stored grant of an earlier call with the same idempotency key.
    pub replayed: bool,
    /// Non-zero when at least one rate limit applied to this call: the `ratelimit_*`
    /// fields then describe the tightest one. 0: no limit applied, and they are zero.
    pub has_ratelimit: u8,
    /// The tightest limit's name (empty without one).
    pub ratelimit_name: [c_char; KL_RATELIMIT_NAME_SIZE],
    /// Its maximum per window (`RateLimit-Limit`).
    pub ratelimit_limit: u64,
    /// Units left in its window after this call (`RateLimit-Remaining`).
    pub ratelimit_remaining: u64,
    /// Unix milliseconds at which its window is full again (`RateLimit-Reset` is the
    /// seconds from now until then, rounded up).
    pub ratelimit_reset_ms: i64,
    // Holds (appended after the 0.2 layout; written only when `size` covers it).
    /// The hold this call made (`kl_authorize_opts.hold`); empty otherwise.
    pub hold_id: [c_char; KL_HOLD_ID_SIZE],
}

/// Copy `s` into a NUL-terminated buffer. The core's limits make every field fit; were one
/// ever longer, it would be cut at a UTF-8 boundary (never fail after a debit).
fn fill<const N: usize>(buf: &mut [c_char; N], s: &str) {
    let mut n = s.len().min(N - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    debug_assert_eq!(n, s.len(), "grant field longer than its kl_grant buffer");
    for (dst, src) in buf.iter_mut().zip(&s.as_bytes()[..n]) {
        *dst = *src as c_char;
    }
    buf[n] = 0;
}

impl From<&GrantView> for kl_grant {
    fn from(g: &GrantView) -> kl_grant {
        let mut out = kl_grant {
            size: 0,
            account_id: [0; KL_ACCOUNT_ID_SIZE],
            key_id: [0; KL_KEY_ID_SIZE],
            prefix: [0; KL_PREFIX_SIZE],
            key_name: [0; KL_KEY_NAME_SIZE],
            auth_method: match g.auth_method() {
                AuthMethod::Apikey => KL_AUTH_APIKEY,
                AuthMethod::Operator => KL_AUTH_OPERATOR,
            },
            charged: g.charged(),
            credits: g.credits(),
            total_credits: g.total_credits(),
            replayed: g.replayed(),
            has_ratelimit: 0,
            ratelimit_name: [0; KL_RATELIMIT_NAME_SIZE],
            ratelimit_limit: 0,
            ratelimit_remaining: 0,
            ratelimit_reset_ms: 0,
            hold_id: [0; KL_HOLD_ID_SIZE],
        };
        if let Some(h) = g.hold_id() {
            fill(&mut out.hold_id, h);
        }
        if let Some(r) = g.tightest_ratelimit() {
            out.has_ratelimit = 1;
            fill(&mut out.ratelimit_name, &r.name);
            out.ratelimit_limit = r.max;
            out.ratelimit_remaining = r.remaining;
            out.ratelimit_reset_ms = r.reset_ms;
        }
        fill(&mut out.account_id, g.account_id());
        fill(&mut out.key_id, g.key_id());
        fill(&mut out.prefix, g.prefix());
        fill(&mut out.key_name, g.key_name());
        out
    }
}

/// Decode `opts` (a copy made by `layout::read_opts`; `None`: defaults) and run `f` with the options. The limit names of
/// `limits_json` live only for the call, hence the closure.
///
/// # Safety
/// The pointers in `opts` must be NULL or valid for their lengths during the call.
unsafe fn with_opts<R>(
    opts: Option<&kl_authorize_opts>,
    f: impl FnOnce(&AuthorizeOptions<'_>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let Some(o) = opts else {
        return f(&AuthorizeOptions::default());
    };
    let idempotency_key = try_opt_str!(o.idempotency_key, o.idempotency_key_len);
    let signature = try_opt_str!(o.signature, o.signature_len);
    let query = try_opt_str!(o.query, o.query_len);
    // SAFETY: forwarded contract.
    let body = unsafe { opt_bytes(o.body, o.body_len, isize::MAX.unsigned_abs(), "opts->body") }?;
    let names: Option<Vec<String>> = try_opt_str!(o.limits_json, o.limits_json_len)
        .map(|json| parse_json(json, "opts->limits_json"))
        .transpose()?;
    let limits: Option<Vec<&str>> = names
        .as_ref()
        .map(|n| n.iter().map(String::as_str).collect());
    f(&AuthorizeOptions {
        cost: (o.has_cost != 0).then_some(o.cost),
        idempotency_key,
        signature,
        body,
        now: (o.now_ms != 0).then_some(o.now_ms),
        limits: limits.as_deref(),
        limit_cost: (o.has_limit_cost != 0).then_some(o.limit_cost),
        on_replay: if o.refuse_replay != 0 {
            OnReplay::Refuse
        } else {
            OnReplay::Grant
        },
        query,
        hold: (o.hold != 0).then_some(o.hold),
        hold_ttl_ms: (o.hold_ttl_ms != 0).then_some(o.hold_ttl_ms),
    })
}

/// Authorize a request: the most specific route rule for (`method`, `path`) decides the
/// scope and the default cost. `token`, `method` and `path` are required
/// UTF-8 strings; `opts` may be NULL. `path` is an already decoded path; an HTTP gate
/// should pass the raw request target to `kl_authorize_request` instead.
///
/// On `KL_OK`, `*out_grant` (caller-owned memory, e.g. on the stack) is filled; nothing is
/// allocated. On a refusal `*out_grant` is untouched and the refusal's message and JSON
/// body are available from `kl_last_error_message()` / `kl_last_error_body()`.
///
/// Returns `KL_OK`, a refusal (`KL_INVALID_API_KEY`, `KL_API_KEY_INACTIVE`,
/// `KL_API_KEY_EXPIRED`, `KL_INVALID_SIGNATURE`, `KL_MISSING_SCOPE`,
/// `KL_ROUTE_NOT_ALLOWED`, `KL_RATE_LIMITED`, `KL_INSUFFICIENT_CREDITS`,
/// `KL_IDEMPOTENCY_CONFLICT`, `KL_DUPLICATE_REQUEST` with `refuse_replay`),
/// `KL_INVALID_ARGUMENT` (NULL, non-UTF-8 or oversized input, a `limits_json` that is
/// not an array of strings or names an unknown limit; a token over 512 bytes is
/// `KL_INVALID_API_KEY`), `KL_VAULT_CLOSED`, `KL_STORAGE`.
///
/// `KL_RATE_LIMITED` (HTTP 429) charges nothing; its body is `{"error":"rate_limited",
/// "limit","max","remaining":0,"reset_ms","retry_after"}` (`retry_after` in seconds, for
/// a `Retry-After` header).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_with(
            "kl_authorize",
            decide_blocking,
            v,
            token,
            token_len,
            method,
            method_len,
            path,
            path_len,
            opts,
            out_grant,
        )
    }
}

/// The body of `kl_authorize` and `kl_authorize_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out = try_out!(out_grant);
        // SAFETY: module contract (a non-null grant with its `size` set).
        let out = unsafe { GrantOut::new(out.as_ptr()) }?;
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let method = try_str!(method, method_len);
        let path = try_str!(path, path_len);
        // SAFETY: module contract.
        let grant = unsafe {
            with_opts(opts.as_ref(), |o| {
                decide(vault, token, Target::route(method, path), o)
            })
        }?;
        out.write(kl_grant::from(&grant));
        Ok(())
    })
}

/// Whether `opts` (`None`: defaults) asks for case-insensitive matching.
fn case_insensitive(opts: Option<&kl_authorize_opts>) -> bool {
    opts.is_some_and(|o| o.case_insensitive != 0)
}

/// Authorize an HTTP request from its raw request target, as the server received it:
/// what every HTTP gate calls. `method` is the request method (`HEAD` is charged like
/// `GET`); `target` is the request target as sent, undecoded: origin-form
/// (`/a/b%20c?x=1`) or absolute-form (`http://host/a?x=1`). The core takes its path,
/// decodes it once and matches the route rules; `opts->case_insensitive` (non-zero)
/// matches literals ignoring ASCII case. `opts` may be NULL.
///
/// A target routers could read differently is refused with `KL_AMBIGUOUS_PATH` (HTTP
/// 400 `ambiguous_path`): an encoded `/`, `?`, `#`, `\`, `;`, `%` or control character, a
/// raw `\`, `;`, `#`, space, control or non-ASCII byte, a `.` or `..` segment in any
/// encoding, invalid UTF-8 after decoding, an empty segment (`//`), and a trailing `/` or
/// percent-escape that changes which rule matches. Otherwise exactly like `kl_authorize`,
/// with the same statuses and the same `*out_grant`.
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_request(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_request_with(
            "kl_authorize_request",
            decide_blocking,
            v,
            token,
            token_len,
            method,
            method_len,
            target,
            target_len,
            opts,
            out_grant,
        )
    }
}

/// The body of `kl_authorize_request` and `kl_authorize_request_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize_request`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_request_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out = try_out!(out_grant);
        // SAFETY: module contract (a non-null grant with its `size` set).
        let out = unsafe { GrantOut::new(out.as_ptr()) }?;
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let method = try_str!(method, method_len);
        let target = try_str!(target, target_len);
        let insensitive = case_insensitive(opts.as_ref());
        let target = Target::request(method, target).case_insensitive(insensitive);
        // SAFETY: module contract.
        let grant = unsafe { with_opts(opts.as_ref(), |o| decide(vault, token, target, o)) }?;
        out.write(kl_grant::from(&grant));
        Ok(())
    })
}

/// Like `kl_authorize_request`, but on `KL_OK` writes the whole grant as JSON to
/// `*out_json` (see `kl_authorize_json`; caller frees with `kl_string_free`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_request_json(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_request_json_with(
            "kl_authorize_request_json",
            decide_blocking,
            v,
            token,
            token_len,
            method,
            method_len,
            target,
            target_len,
            opts,
            out_json,
        )
    }
}

/// The body of `kl_authorize_request_json` and `kl_authorize_request_json_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize_request_json`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_request_json_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    target: *const c_char,
    target_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out: Out<*mut c_char> = try_out!(out_json);
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let method = try_str!(method, method_len);
        let target = try_str!(target, target_len);
        let insensitive = case_insensitive(opts.as_ref());
        let target = Target::request(method, target).case_insensitive(insensitive);
        // SAFETY: module contract.
        let grant = unsafe { with_opts(opts.as_ref(), |o| decide(vault, token, target, o)) }?;
        out.put_json(&grant.into_grant())
    })
}

/// Authorize non-HTTP work by naming the required `scope` directly (no route lookup; the
/// default cost is 0). Otherwise exactly like `kl_authorize`, with the same statuses.
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_scope(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_scope_with(
            "kl_authorize_scope",
            decide_blocking,
            v,
            token,
            token_len,
            scope,
            scope_len,
            opts,
            out_grant,
        )
    }
}

/// The body of `kl_authorize_scope` and `kl_authorize_scope_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize_scope`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_scope_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_grant: *mut kl_grant,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out = try_out!(out_grant);
        // SAFETY: module contract (a non-null grant with its `size` set).
        let out = unsafe { GrantOut::new(out.as_ptr()) }?;
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let scope = try_str!(scope, scope_len);
        // SAFETY: module contract.
        let grant = unsafe {
            with_opts(opts.as_ref(), |o| {
                decide(vault, token, Target::scope(scope), o)
            })
        }?;
        out.write(kl_grant::from(&grant));
        Ok(())
    })
}

/// Like `kl_authorize`, but on `KL_OK` writes the whole grant as JSON to `*out_json`
/// (caller frees with `kl_string_free`): `{"account_id", "key_id", "key_name", "prefix",
/// "auth_method": "apikey"|"operator", "scopes": [...], "charged", "credits",
/// "total_credits", "replayed", "ratelimits": [{"name","max","remaining","reset_ms"}]}`.
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_json(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_json_with(
            "kl_authorize_json",
            decide_blocking,
            v,
            token,
            token_len,
            method,
            method_len,
            path,
            path_len,
            opts,
            out_json,
        )
    }
}

/// The body of `kl_authorize_json` and `kl_authorize_json_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize_json`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_json_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    method: *const c_char,
    method_len: usize,
    path: *const c_char,
    path_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out: Out<*mut c_char> = try_out!(out_json);
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let method = try_str!(method, method_len);
        let path = try_str!(path, path_len);
        // SAFETY: module contract.
        let grant = unsafe {
            with_opts(opts.as_ref(), |o| {
                decide(vault, token, Target::route(method, path), o)
            })
        }?;
        out.put_json(&grant.into_grant())
    })
}

/// Like `kl_authorize_scope`, but on `KL_OK` writes the whole grant as JSON to
/// `*out_json` (see `kl_authorize_json`; caller frees with `kl_string_free`).
#[no_mangle]
pub unsafe extern "C" fn kl_authorize_scope_json(
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    // SAFETY: forwarded contract.
    unsafe {
        kl_authorize_scope_json_with(
            "kl_authorize_scope_json",
            decide_blocking,
            v,
            token,
            token_len,
            scope,
            scope_len,
            opts,
            out_json,
        )
    }
}

/// The body of `kl_authorize_scope_json` and `kl_authorize_scope_json_try`: one decoding, decided by `decide`.
///
/// # Safety
/// The module contract, as for `kl_authorize_scope_json`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn kl_authorize_scope_json_with(
    function: &str,
    decide: Decide,
    v: *const kl_vault,
    token: *const c_char,
    token_len: usize,
    scope: *const c_char,
    scope_len: usize,
    opts: *const kl_authorize_opts,
    out_json: *mut *mut c_char,
) -> kl_status {
    boundary_opts(function, opts, || {
        let out: Out<*mut c_char> = try_out!(out_json);
        let vault = try_vault!(v);
        // SAFETY: module contract.
        let opts = unsafe { read_opts(opts) }?;
        let token = try_str!(token, token_len);
        let scope = try_str!(scope, scope_len);
        // SAFETY: module contract.
        let grant = unsafe {
            with_opts(opts.as_ref(), |o| {
                decide(vault, token, Target::scope(scope), o)
            })
        }?;
        out.put_json(&grant.into_grant())
    })
}

/// How an entry point decides: the blocking [`decide_blocking`] or the non-blocking
/// `try_decide` (`authorize_try.rs`). Each `kl_authorize*` and its `_try` twin share one
/// body (`*_with`) and differ only in this.
pub(super) type Decide =
    fn(&Vault, &str, Target<'_>, &AuthorizeOptions<'_>) -> Result<GrantView, Failure>;

/// `Vault::authorize`: waits for argon2 and commits as needed.
fn decide_blocking(
    vault: &Vault,
    token: &str,
    target: Target<'_>,
    o: &AuthorizeOptions<'_>,
) -> Result<GrantView, Failure> {
    Ok(vault.authorize_view(token, target, o)?)
}
