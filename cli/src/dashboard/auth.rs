//! Login with the admin token, sessions, CSRF.
//!
//! - The admin token comes from `KEYLEDGER_ADMIN_TOKEN` or is generated (32 random bytes,
//!   hex) and printed once on stderr. It is kept only as a keyed BLAKE3 digest; a login
//!   compares digests in constant time.
//! - A string that looks like an API key (`keyledger::looks_like_key`) never logs in, and
//!   cannot be configured as the admin token: keys cannot manage keys.
//! - A session is a random id in an `HttpOnly; SameSite=Strict; Path=/` cookie, kept
//!   server-side with its own random CSRF token and an absolute lifetime.
//! - Failed logins are throttled per client address: 10 per minute from one address (one
//!   IPv6 /64), so a stranger who floods the login cannot lock the admin out from another
//!   address. A bounded server-wide backstop (1000 failures a minute from all addresses)
//!   then refuses only addresses that have failed in that minute: an address with no
//!   failure, the admin's, always gets its try. At most 4096 addresses are tracked (the
//!   oldest forgotten first). Behind a reverse proxy every client has the proxy's address:
//!   the per-address limit then acts server-wide (forwarded headers are not trusted).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use parking_lot::Mutex;
use serde_json::json;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::input::JsonObject;
use super::{ApiError, ApiResult, AppState};

/// The environment variable that holds the admin token.
pub const ADMIN_TOKEN_ENV: &str = "KEYLEDGER_ADMIN_TOKEN";
const COOKIE: &str = "kl_session";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 256;
const MIN_TOKEN_LEN: usize = 16;
const MAX_TOKEN_LEN: usize = 512;
/// At most this many failed logins per window from one client address.
const MAX_FAILURES: u32 = 10;
/// Failures per window from every address at which the backstop starts refusing the
/// addresses that failed in it.
const MAX_FAILURES_SERVER: u32 = 1000;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered at most.
const MAX_TRACKED: usize = 4096;

struct Session {
    csrf: String,
    created: Instant,
}

/// The admin credential and the live sessions.
pub struct Auth {
    digest_key: [u8; 32],
    token_digest: [u8; 32],
    /// The generated token, printed once by [`Auth::announce_token`] then dropped.
    generated: Mutex<Option<Zeroizing<String>>>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<Failures>,
}

/// Failed logins: per client address, and for the whole server (the backstop). Each count
/// is `(window start, failures in it)`.
struct Failures {
    by_client: HashMap<IpAddr, (Instant, u32)>,
    server: (Instant, u32),
}

/// The throttle's key for a client: its IPv4 address, or its IPv6 /64 (one host usually
/// holds a whole /64).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures {
            by_client: HashMap::new(),
            server: (now, 0),
        }
    }

    /// Whether `client` may try to log in at `now`.
    fn allows(&mut self, client: IpAddr, now: Instant) -> bool {
        let expired = |start: Instant| now.saturating_duration_since(start) > FAILURE_WINDOW;
        if expired(self.server.0) {
            self.server = (now, 0);
        }
        let mine = match self.by_client.get(&client) {
            Some(&(start, n)) if !expired(start) => n,
            _ => 0,
        };
        mine < MAX_FAILURES && (mine == 0 || self.server.1 < MAX_FAILURES_SERVER)
    }

    /// Count a failed login from `client` at `now`.
    fn failed(&mut self, client: IpAddr, now: Instant) {
        let expired = |start: Instant| now.saturating_duration_since(start) > FAILURE_WINDOW;
        if expired(self.server.0) {
            self.server = (now, 0);
        }
        self.server.1 = self.server.1.saturating_add(1);
        if !self.by_client.contains_key(&client) && self.by_client.len() >= MAX_TRACKED {
            self.by_client.retain(|_, (start, _)| !expired(*start));
            if self.by_client.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .by_client
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| *k)
                {
                    self.by_client.remove(&oldest);
                }
            }
        }
        let entry = self.by_client.entry(client).or_insert((now, 0));
        if expired(entry.0) {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

fn random_hex(bytes: usize) -> Result<String, String> {
    let mut buf = Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(&mut buf).map_err(|e| format!("no OS randomness: {e}"))?;
    Ok(hex::encode(&*buf))
}

impl Auth {
    /// The admin token from the environment, or a fresh one.
    pub fn from_env() -> Result<Auth, String> {
        match std::env::var(ADMIN_TOKEN_ENV) {
            Ok(t) => Auth::with_token(Zeroizing::new(t), false),
            Err(std::env::VarError::NotPresent) => {
                Auth::with_token(Zeroizing::new(random_hex(32)?), true)
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(format!("{ADMIN_TOKEN_ENV} is not valid UTF-8"))
            }
        }
    }

    pub fn with_token(token: Zeroizing<String>, generated: bool) -> Result<Auth, String> {
        let t = token.trim();
        if keyledger::looks_like_key(t) {
            return Err(format!(
                "{ADMIN_TOKEN_ENV} holds an API key; keys cannot manage keys: use a separate \
                 admin token (or unset it to get a generated one)"
            ));
        }
        if t.len() < MIN_TOKEN_LEN || t.len() > MAX_TOKEN_LEN {
            return Err(format!(
                "{ADMIN_TOKEN_ENV} must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} bytes long"
            ));
        }
        let mut digest_key = [0u8; 32];
        getrandom::fill(&mut digest_key).map_err(|e| format!("no OS randomness: {e}"))?;
        let token_digest = *blake3::keyed_hash(&digest_key, t.as_bytes()).as_bytes();
        Ok(Auth {
            digest_key,
            token_digest,
            generated: Mutex::new(generated.then(|| Zeroizing::new(t.to_string()))),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(Failures::new(Instant::now())),
        })
    }

    /// Print a generated admin token once (stderr), or say where the token comes from.
    pub fn announce_token(&self) {
        match self.generated.lock().take() {
            Some(t) => eprintln!(
                "admin token (shown once; set {ADMIN_TOKEN_ENV} to choose your own): {}",
                t.as_str()
            ),
            None => eprintln!("admin token: from {ADMIN_TOKEN_ENV}"),
        }
    }

    /// A live session cookie, or `Authorization: Bearer <admin token>` (a scraper). A
    /// wrong bearer token counts as a failed login of `client` (the same throttle);
    /// `Err(429)` while it is throttled, `Err(401)` when neither is given right.
    pub fn session_or_bearer(&self, headers: &HeaderMap, client: IpAddr) -> Result<(), StatusCode> {
        if self.session_csrf(headers).is_some() {
            return Ok(());
        }
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return Err(StatusCode::UNAUTHORIZED);
        };
        if self.throttled(client) {
            return Err(StatusCode::TOO_MANY_REQUESTS);
        }
        if self.token_matches(given.trim()) {
            Ok(())
        } else {
            self.failed(client);
            Err(StatusCode::UNAUTHORIZED)
        }
    }

    fn token_matches(&self, candidate: &str) -> bool {
        let d = blake3::keyed_hash(&self.digest_key, candidate.as_bytes());
        bool::from(d.as_bytes().ct_eq(&self.token_digest))
    }

    /// Whether `client` is refused a login try now.
    fn throttled(&self, client: IpAddr) -> bool {
        !self
            .failures
            .lock()
            .allows(client_key(client), Instant::now())
    }

    /// Count a failed login from `client`.
    fn failed(&self, client: IpAddr) {
        self.failures
            .lock()
            .failed(client_key(client), Instant::now());
    }

    fn new_session(&self) -> Result<(String, String), ApiError> {
        let internal = |_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no OS randomness",
            )
        };
        let id = random_hex(32).map_err(internal)?;
        let csrf = random_hex(32).map_err(internal)?;
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        Ok((id, csrf))
    }

    /// The CSRF token of the request's live session, if it has one.
    fn session_csrf(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_cookie(headers)?;
        let mut sessions = self.sessions.lock();
        match sessions.get(id) {
            Some(s) if s.created.elapsed() < SESSION_TTL => Some(s.csrf.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    fn end_session(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.sessions.lock().remove(id);
        }
    }
}

/// The value of our session cookie.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn cookie(value: &str, max_age: u64) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("kl_session=; Path=/; Max-Age=0"))
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "log in with the admin token first",
    )
}

/// `POST /api/login` `{"token": "…"}` → the session cookie and `{"csrf": "…"}`.
pub async fn login(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult {
    let mut body = body;
    let token = Zeroizing::new(body.req_str("token")?);
    body.finish()?;
    let auth = &st.auth;
    let client = peer.ip();
    if auth.throttled(client) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; wait a minute",
        ));
    }
    let t = token.trim();
    if keyledger::looks_like_key(t) {
        auth.failed(client);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "api_key_not_allowed",
            "this is an API key; API keys cannot log in to the dashboard (keys cannot manage \
             keys): use the admin token",
        ));
    }
    if !auth.token_matches(t) {
        auth.failed(client);
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_admin_token",
            "wrong admin token",
        ));
    }
    // A fresh session id on every login (no fixation); an older cookie is dropped.
    auth.end_session(&headers);
    let (id, csrf) = auth.new_session()?;
    let mut res = Json(json!({"success": true, "csrf": csrf})).into_response();
    res.headers_mut()
        .insert(header::SET_COOKIE, cookie(&id, SESSION_TTL.as_secs()));
    Ok(res)
}

/// `POST /api/logout`.
pub async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Response {
    st.auth.end_session(&headers);
    let mut res = Json(json!({"success": true})).into_response();
    res.headers_mut().insert(header::SET_COOKIE, cookie("", 0));
    res
}

/// `GET /api/session` → the session's CSRF token (the pages fetch it at load).
pub async fn session(State(st): State<AppState>, headers: HeaderMap) -> ApiResult {
    let csrf = st.auth.session_csrf(&headers).ok_or_else(unauthorized)?;
    Ok(Json(json!({"success": true, "csrf": csrf, "actor": "dashboard"})).into_response())
}

/// Every `/api/` endpoint but login: a live session, and for a change the session's
/// CSRF token in `X-CSRF-Token`.
pub async fn require_session(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(csrf) = st.auth.session_csrf(req.headers()) else {
        return unauthorized().into_response();
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    if !safe {
        let given = req
            .headers()
            .get("x-csrf-token")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let ok = given.len() == csrf.len() && bool::from(given.ct_eq(csrf.as_bytes()));
        if !ok {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "missing or wrong X-CSRF-Token header; reload the page",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Pages: no session → the login page.
pub async fn require_page_session(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if st.auth.session_csrf(req.headers()).is_none() {
        return Redirect::to("/login").into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        client_key(s.parse().unwrap())
    }

    #[test]
    fn one_address_is_refused_after_ten_failures_and_others_are_not() {
        let t0 = Instant::now();
        let mut f = Failures::new(t0);
        for _ in 0..MAX_FAILURES {
            assert!(f.allows(ip("203.0.113.9"), t0));
            f.failed(ip("203.0.113.9"), t0);
        }
        assert!(!f.allows(ip("203.0.113.9"), t0));
        assert!(f.allows(ip("198.51.100.1"), t0));
        let later = t0 + FAILURE_WINDOW + Duration::from_secs(1);
        assert!(f.allows(ip("203.0.113.9"), later), "a new window");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
    }

    #[test]
    fn the_backstop_refuses_failed_addresses_only_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut f = Failures::new(t0);
        // A flood from many addresses, one failure each.
        for i in 0..MAX_FAILURES_SERVER {
            let a = IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                (i >> 16) as u16,
                i as u16,
                0,
                0,
                0,
                1,
            ));
            f.failed(a, t0);
        }
        let flooder = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 5, 0, 0, 0, 1));
        assert!(
            !f.allows(flooder, t0),
            "an address that failed during the flood"
        );
        assert!(
            f.allows(ip("192.0.2.7"), t0),
            "an address with no failure still tries"
        );
        for i in 0..(MAX_TRACKED as u32 + 100) {
            f.failed(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), t0);
        }
        assert!(f.by_client.len() <= MAX_TRACKED);
    }
}
