//! The HTTP gate every host adapter calls: [`Vault::authorize_http`].
//!
//! The ASGI middleware, the Express middleware (and its upgrade gate), the Elixir gate
//! and Plug, and `kl_authorize_http` hand the core what they read off the wire (the
//! method, the raw request target, the credential headers, the signature and
//! idempotency headers and, for a signed request, the body) and send back what it
//! answers: a status, response headers and, for a refusal, a JSON body. What the gate
//! decides is defined here once:
//!
//! # Credentials
//!
//! - `Authorization` decides when present. Its grammar is RFC 9110's credentials with
//!   RFC 6750's `token68`: optional spaces or tabs around the value (header whitespace),
//!   the scheme `Bearer` in any ASCII case, **one or more spaces** (a tab is refused), then
//!   the token (`A-Z a-z 0-9 - . _ ~ + /`, then optional `=` padding), nothing after it.
//!   One addition to `token68`: a colon-style token, `<key_id>:<secret>` (exactly one
//!   `:`, with `token68` characters and no padding on both sides), is read whole. Any
//!   other use of `:` (`:secret`, `id:`, two colons) is malformed. Only the `Bearer`
//!   scheme is read: `Basic` (whose base64 payload also holds a colon) is malformed.
//! - Otherwise `X-Api-Key` (or the host's configured bare-token header): the value with
//!   the surrounding spaces or tabs removed, in the same `token68` alphabet.
//! - A value longer than [`MAX_HEADER_BYTES`] is malformed, whatever it holds.
//! - A missing, empty or malformed credential is authorized as the empty token: refused
//!   with 401 `invalid_api_key` and audited (`auth_refused`, "(malformed)") exactly like
//!   a bad key, in every host.
//!
//! # Signed requests
//!
//! When the signature header is present, the host reads the body (at most
//! [`HttpOptions::max_body`] bytes, default [`DEFAULT_MAX_BODY`]) and passes it; a longer
//! body (or [`HttpRequest::body_too_large`], when the host stopped reading) is refused
//! with 413 `payload_too_large`. A signature value that is oversized or not ASCII is
//! passed on as empty: a signing key refuses it (`invalid_signature`), other keys ignore
//! it.
//!
//! # The response
//!
//! - A grant: status 200, the [`Grant`], and the `RateLimit-Limit`,
//!   `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the window is full again,
//!   rounded up) headers of the tightest applied limit ([`Grant::tightest_ratelimit`]).
//! - A refusal (or a vault failure): its status and JSON body ([`Error::body`]), with
//!   `content-type: application/json`; on 401 `www-authenticate: Bearer`; on 429
//!   `retry-after` and, for a rate limit, `ratelimit-limit` (its max),
//!   `ratelimit-remaining: 0` and `ratelimit-reset` (the retry delay).
//!
//! Header names are lowercase. An idempotency key that is not UTF-8 is read as Latin-1.

use std::borrow::Cow;
use std::fmt;

use serde_json::{json, Value};

use crate::{
    Attempt, AuthorizeOptions, Error, Grant, Millis, OnReplay, RateLimitStatus, Target, Vault,
};

/// The longest header value the gate reads (`Authorization`, `X-Api-Key`, the signature
/// and idempotency headers); a longer credential is malformed.
pub const MAX_HEADER_BYTES: usize = 4096;

/// The default largest body the gate reads for a signature check (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The code of the refusal of a signed request whose body is over the gate's cap (HTTP
/// 413). The dashboard uses the same code for its own body cap.
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";

/// What a host gate read off one HTTP request. Header values are raw bytes, as received
/// (`None`: the header is absent); the gate judges them.
#[derive(Clone, Copy, Default)]
pub struct HttpRequest<'a> {
    /// The request method (`GET`, `POST`, …).
    pub method: &'a str,
    /// The request target as sent (`/a/b%20c?x=1`, or absolute-form). Bytes that are not
    /// UTF-8 are refused as `ambiguous_path`.
    pub target: &'a [u8],
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// The `X-Api-Key` header (or the host's bare-token header); read only without
    /// `authorization`.
    pub api_key: Option<&'a [u8]>,
    /// The request-signature header (`t=…,v2=…`).
    pub signature: Option<&'a [u8]>,
    /// The idempotency header (empty: none).
    pub idempotency_key: Option<&'a [u8]>,
    /// The body, for a signed request (`None`: empty).
    pub body: Option<&'a [u8]>,
    /// The host stopped reading the body past the cap (it is larger than `body`).
    pub body_too_large: bool,
}

impl fmt::Debug for HttpRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |v: Option<&[u8]>| v.map(|b| format!("<{} bytes>", b.len()));
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("target", &String::from_utf8_lossy(self.target))
            .field("authorization", &present(self.authorization))
            .field("api_key", &present(self.api_key))
            .field("signature", &present(self.signature))
            .field("idempotency_key", &present(self.idempotency_key))
            .field("body", &present(self.body))
            .field("body_too_large", &self.body_too_large)
            .finish()
    }
}

/// How a gate authorizes (the options its host exposes).
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpOptions<'a> {
    /// Credits to charge instead of the matched route's cost.
    pub cost: Option<u64>,
    /// Authorize this scope instead of the request's route (the method and target are
    /// then not matched).
    pub scope: Option<&'a str>,
    /// Rate limits to apply besides the auto-applied ones.
    pub limits: Option<&'a [&'a str]>,
    /// The call's weight against every applied limit (default 1).
    pub limit_cost: Option<u64>,
    /// A repeated idempotency key: [`OnReplay::Refuse`] answers 409 `duplicate_request`,
    /// [`OnReplay::Grant`] the replayed grant.
    pub on_replay: OnReplay,
    /// Match rule literals ignoring ASCII case.
    pub case_insensitive: bool,
    /// The largest body read for a signature check (default [`DEFAULT_MAX_BODY`]).
    pub max_body: Option<usize>,
    /// The request time (default: the vault's clock); `RateLimit-Reset` counts from it
    /// (default: the system clock).
    pub now: Option<Millis>,
}

/// What the gate answers: send `status`, `headers` and `body`; on a grant, call the app
/// with `grant` and add `headers` to its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOutcome {
    /// 200 for a grant, else the refusal's HTTP status.
    pub status: u16,
    /// Response headers (lowercase names).
    pub headers: Vec<(&'static str, String)>,
    /// The refusal's JSON body (empty for a grant).
    pub body: String,
    /// The grant (`None` for a refusal).
    pub grant: Option<Grant>,
}

impl HttpOutcome {
    /// The outcome of a refusal (or any error): status, headers and JSON body.
    pub fn refusal(err: &Error) -> HttpOutcome {
        let body = err.body();
        let status = err.status();
        let mut headers = vec![("content-type", "application/json".to_string())];
        if status == 401 {
            headers.push(("www-authenticate", "Bearer".into()));
        }
        if let Some(retry) = err.retry_after() {
            headers.push(("retry-after", retry.to_string()));
            if let Error::RateLimited { max, .. } = err {
                headers.push(("ratelimit-limit", max.to_string()));
                headers.push(("ratelimit-remaining", "0".into()));
                headers.push(("ratelimit-reset", retry.to_string()));
            }
        }
        HttpOutcome {
            status,
            headers,
            body: body.to_string(),
            grant: None,
        }
    }

    /// The outcome of a grant: 200 and the rate-limit headers of its tightest limit.
    pub fn granted(grant: Grant, now: Millis) -> HttpOutcome {
        HttpOutcome {
            status: 200,
            headers: ratelimit_headers(&grant, now),
            body: String::new(),
            grant: Some(grant),
        }
    }

    /// The headers as a JSON array of `[name, value]` pairs (what the C ABI returns).
    pub fn headers_json(&self) -> Value {
        Value::Array(self.headers.iter().map(|(k, v)| json!([k, v])).collect())
    }
}

fn too_large(max: usize) -> HttpOutcome {
    let body = json!({
        "success": false,
        "error": PAYLOAD_TOO_LARGE,
        "message": format!("request body over {max} bytes: too large to check its signature"),
    });
    HttpOutcome {
        status: 413,
        headers: vec![("content-type", "application/json".to_string())],
        body: body.to_string(),
        grant: None,
    }
}

impl Grant {
    /// The applied rate limit with the fewest units left (the first applied on a tie):
    /// the one the `RateLimit-*` headers and `kl_grant` describe.
    pub fn tightest_ratelimit(&self) -> Option<&RateLimitStatus> {
        self.ratelimits.iter().min_by_key(|r| r.remaining)
    }
}

/// `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` (seconds from `now`
/// until the window resets, rounded up, never negative) of the grant's tightest limit.
pub fn ratelimit_headers(grant: &Grant, now: Millis) -> Vec<(&'static str, String)> {
    let Some(r) = grant.tightest_ratelimit() else {
        return Vec::new();
    };
    let reset = r
        .reset_ms
        .saturating_sub(now)
        .max(0)
        .unsigned_abs()
        .div_ceil(1000);
    vec![
        ("ratelimit-limit", r.max.to_string()),
        ("ratelimit-remaining", r.remaining.to_string()),
        ("ratelimit-reset", reset.to_string()),
    ]
}

/// What the credential headers hold.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// A well-formed token (not yet checked against the vault).
    Token(&'a str),
    /// No credential header, or an empty one.
    Missing,
    /// A credential that does not follow the grammar (module docs).
    Malformed,
}

impl fmt::Debug for Credential<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(<redacted>)"),
            Credential::Missing => f.write_str("Missing"),
            Credential::Malformed => f.write_str("Malformed"),
        }
    }
}

fn is_ows(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &v[start..end]
}

/// `token68` (RFC 7235): `A-Z a-z 0-9 - . _ ~ + /`, then optional `=` padding; or a
/// colon-style token (module docs).
fn token68(v: &[u8]) -> Option<&str> {
    if let Some(colon) = v.iter().position(|b| *b == b':') {
        let (id, secret) = (&v[..colon], &v[colon + 1..]);
        let plain = |s: &[u8]| {
            !s.is_empty()
                && s.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        };
        // ASCII checked by `plain`.
        return (plain(id) && plain(secret))
            .then(|| std::str::from_utf8(v).ok())
            .flatten();
    }
    let body = v.iter().position(|b| *b == b'=').unwrap_or(v.len());
    let ok = body > 0
        && v[..body]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        && v[body..].iter().all(|b| *b == b'=');
    // ASCII checked above.
    ok.then(|| std::str::from_utf8(v).ok()).flatten()
}

/// The token of an `Authorization: Bearer <token>` value (module docs), `None` for
/// anything else.
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    if value.len() > MAX_HEADER_BYTES {
        return None;
    }
    let v = trim_ows(value);
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    token68(&rest[start..])
}

/// The credential of a request (module docs): `Authorization` when present, else the
/// bare-token header.
pub fn credential<'a>(
    authorization: Option<&'a [u8]>,
    api_key: Option<&'a [u8]>,
) -> Credential<'a> {
    if let Some(value) = authorization {
        if trim_ows(value).is_empty() && value.len() <= MAX_HEADER_BYTES {
            return Credential::Missing;
        }
        return bearer_token(value).map_or(Credential::Malformed, Credential::Token);
    }
    let Some(value) = api_key else {
        return Credential::Missing;
    };
    if value.len() > MAX_HEADER_BYTES {
        return Credential::Malformed;
    }
    let v = trim_ows(value);
    if v.is_empty() {
        return Credential::Missing;
    }
    token68(v).map_or(Credential::Malformed, Credential::Token)
}

/// A header value as text: `None` when absent or empty; an oversized or non-ASCII
/// value becomes `""`.
fn signature_text(value: Option<&[u8]>) -> Option<&str> {
    let v = value?;
    if v.len() > MAX_HEADER_BYTES || !v.is_ascii() {
        return Some("");
    }
    std::str::from_utf8(v).ok()
}

/// The idempotency key: `None` when absent or empty; UTF-8, else read as Latin-1.
fn idempotency_text(value: Option<&[u8]>) -> Option<Cow<'_, str>> {
    let v = value.filter(|v| !v.is_empty())?;
    Some(match std::str::from_utf8(v) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(v.iter().map(|&b| char::from(b)).collect()),
    })
}

impl Vault {
    /// Authorize one HTTP request as every host gate does (module docs of
    /// [`crate::http::gate`]): never fails, every refusal or vault error is an
    /// [`HttpOutcome`] with its status, headers and JSON body.
    pub fn authorize_http(
        &self,
        request: &HttpRequest<'_>,
        options: &HttpOptions<'_>,
    ) -> HttpOutcome {
        self.gate(request, options, &|token, target, authorize| {
            Attempt::Ready(self.authorize(token, target, authorize))
        })
        .or_else(|_| unreachable_wait())
    }

    /// [`Vault::authorize_http`] without ever blocking (see [`Vault::try_authorize`]): the
    /// outcome `authorize_http` would give, or [`Attempt::WouldBlock`] with what the call
    /// needs (argon2, a commit), having changed nothing. Then the host calls
    /// `authorize_http` with the same request and options off its event loop. A body over
    /// the cap and a malformed or missing credential are answered inline.
    pub fn try_authorize_http(
        &self,
        request: &HttpRequest<'_>,
        options: &HttpOptions<'_>,
    ) -> Attempt<HttpOutcome> {
        self.gate(request, options, &|token, target, authorize| {
            self.try_authorize(token, target, authorize)
        })
    }

    /// The gate around one authorize call (`authorize` or `try_authorize`).
    fn gate(
        &self,
        request: &HttpRequest<'_>,
        options: &HttpOptions<'_>,
        call: &AuthorizeCall<'_>,
    ) -> Attempt<HttpOutcome> {
        let signature = signature_text(request.signature);
        let max_body = options.max_body.unwrap_or(DEFAULT_MAX_BODY);
        if signature.is_some()
            && (request.body_too_large || request.body.is_some_and(|b| b.len() > max_body))
        {
            return Attempt::Ready(too_large(max_body));
        }
        let token = match credential(request.authorization, request.api_key) {
            Credential::Token(t) => t,
            // Authorized as the empty token: refused and audited like any bad key.
            Credential::Missing | Credential::Malformed => "",
        };
        let raw_target = String::from_utf8_lossy(request.target);
        let target = match options.scope {
            Some(scope) => Target::Scope(scope),
            None => Target::request(request.method, &raw_target)
                .case_insensitive(options.case_insensitive),
        };
        let idempotency_key = idempotency_text(request.idempotency_key);
        let authorize = AuthorizeOptions {
            cost: options.cost,
            idempotency_key: idempotency_key.as_deref(),
            signature,
            body: signature.and(request.body),
            now: options.now,
            limits: options.limits,
            limit_cost: options.limit_cost,
            on_replay: options.on_replay,
            query: None,
            hold: None,
            hold_ttl_ms: None,
        };
        match call(token, target, &authorize) {
            Attempt::Ready(Ok(grant)) => Attempt::Ready(HttpOutcome::granted(
                grant,
                options.now.unwrap_or_else(crate::system_now),
            )),
            Attempt::Ready(Err(err)) => Attempt::Ready(HttpOutcome::refusal(&err)),
            Attempt::WouldBlock(w) => Attempt::WouldBlock(w),
        }
    }
}

/// `Vault::authorize` or `Vault::try_authorize`, as the gate calls it.
type AuthorizeCall<'v> =
    dyn Fn(&str, Target<'_>, &AuthorizeOptions<'_>) -> Attempt<crate::Result<Grant>> + 'v;

/// A blocking gate never stops on a wait; were it to, it answers a 500.
fn unreachable_wait() -> HttpOutcome {
    HttpOutcome::refusal(&Error::Storage(
        "internal: a blocking call stopped before it was decided".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_grammar_is_strict() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bEaReR   abc  "), Some("abc"));
        assert_eq!(bearer_token(b"\tBearer abc\t"), Some("abc"));
        assert_eq!(bearer_token(b"Bearer ab+/c=="), Some("ab+/c=="));
        // A colon-style token is read whole.
        assert_eq!(bearer_token(b"Bearer k7p2m9qa:Ab9"), Some("k7p2m9qa:Ab9"));
        assert_eq!(
            credential(None, Some(b" k7p2m9qa:Ab9 ")),
            Credential::Token("k7p2m9qa:Ab9")
        );
        for bad in [
            &b"Bearer :secret"[..],
            b"Bearer k7p2m9qa:",
            b"Bearer :",
            b"Bearer a::b",
            b"Bearer a:b:c",
            b"Bearer a:b=",
            b"Bearer a=:b",
            b"Bearer a: b",
            b"Basic k7p2m9qa:Ab9",
            b"Basic azdwMm05cWE6QWI5",
        ] {
            assert_eq!(
                bearer_token(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [&b":"[..], b"a:", b":b", b"a:b:c"] {
            assert_eq!(credential(None, Some(bad)), Credential::Malformed);
        }
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer\tabc",
            b"Bearerabc",
            b"Basic abc",
            b"Bearer a b",
            b"Bearer a=b",
            b"Bearer \xff",
            b"Bearer a\x00",
            b"Bearer =",
        ] {
            assert_eq!(
                bearer_token(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"Bearer ".as_slice(), &[b'a'; MAX_HEADER_BYTES]].concat();
        assert_eq!(bearer_token(&long), None);
    }

    #[test]
    fn authorization_decides_before_the_api_key_header() {
        assert_eq!(credential(None, None), Credential::Missing);
        assert_eq!(credential(Some(b" "), Some(b"k")), Credential::Missing);
        assert_eq!(
            credential(Some(b"Basic x"), Some(b"k")),
            Credential::Malformed
        );
        assert_eq!(credential(None, Some(b" k_1 ")), Credential::Token("k_1"));
        assert_eq!(credential(None, Some(b"k 1")), Credential::Malformed);
        assert_eq!(credential(None, Some(b"")), Credential::Missing);
        assert_eq!(
            format!("{:?}", Credential::Token("secret")),
            "Token(<redacted>)"
        );
    }

    #[test]
    fn request_debug_hides_credentials() {
        let r = HttpRequest {
            method: "GET",
            target: b"/x",
            authorization: Some(b"Bearer sk_live_secret"),
            ..HttpRequest::default()
        };
        let shown = format!("{r:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn refusal_headers_follow_the_status() {
        let o = HttpOutcome::refusal(&Error::RateLimited {
            limit: "rpm".into(),
            max: 10,
            remaining: 0,
            reset_ms: 5,
            retry_after: 3,
        });
        assert_eq!(o.status, 429);
        let h: Vec<_> = o.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            h,
            [
                "content-type=application/json",
                "retry-after=3",
                "ratelimit-limit=10",
                "ratelimit-remaining=0",
                "ratelimit-reset=3"
            ]
        );
        let o = HttpOutcome::refusal(&Error::InvalidApiKey);
        assert!(o.headers.contains(&("www-authenticate", "Bearer".into())));
    }

    #[test]
    fn reset_rounds_up_and_never_goes_negative() {
        let mut g = Grant {
            account_id: "a".into(),
            key_id: "k".into(),
            key_name: "n".into(),
            prefix: "p".into(),
            auth_method: crate::AuthMethod::Apikey,
            scopes: vec![],
            charged: 0,
            credits: 0,
            total_credits: 0,
            replayed: false,
            ratelimits: vec![],
            hold_id: None,
        };
        assert!(ratelimit_headers(&g, 0).is_empty());
        let limit = |name: &str, remaining, reset_ms| RateLimitStatus {
            name: name.into(),
            max: 10,
            remaining,
            reset_ms,
        };
        g.ratelimits = vec![
            limit("a", 5, 10_000),
            limit("b", 2, 1_001),
            limit("c", 2, 0),
        ];
        assert_eq!(g.tightest_ratelimit().unwrap().name, "b");
        let h = ratelimit_headers(&g, 0);
        assert_eq!(h[1], ("ratelimit-remaining", "2".into()));
        assert_eq!(h[2], ("ratelimit-reset", "2".into()));
        assert_eq!(ratelimit_headers(&g, 5_000)[2].1, "0");
    }

    proptest::proptest! {
        #[test]
        fn credentials_never_panic_and_tokens_are_token68(
            a in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            k in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            prefixed in proptest::bool::ANY,
        ) {
            let a = if prefixed { [b"Bearer ".as_slice(), &a].concat() } else { a };
            for c in [credential(Some(&a), None), credential(None, Some(&k)), credential(Some(&a), Some(&k))] {
                if let Credential::Token(t) = c {
                    proptest::prop_assert!(token68(t.as_bytes()).is_some());
                    proptest::prop_assert!(t.len() <= MAX_HEADER_BYTES);
                }
            }
        }
    }
}
