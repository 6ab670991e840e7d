//! `keyledger dashboard`: the operator dashboard, an HTTP server over one
//! [`Vault`] opened with actor `dashboard`.
//!
//! - Pages (`/accounts`, `/keys`, `/routes`, `/limits`, `/audit`, `/usage`) are static
//!   HTML shells compiled into the binary; `assets/app.js` renders them from the JSON
//!   endpoints under `/api/`. No page ever carries vault data in its HTML.
//! - Every `/api/` call but `POST /api/login` needs the session cookie; every call that
//!   changes something also needs the session's CSRF token in `X-CSRF-Token` and a JSON
//!   body (`Content-Type: application/json`).
//! - Every operation goes through the public `Vault` API: no rule is implemented twice.
//!   Core errors answer with `Error::status()` and `Error::body()`.
//! - The only response that carries a secret is the one that creates or rotates a key.
//!   The signing-secret reveal is deliberately not exposed here.

mod api;
mod auth;
mod input;
// Events and usage reports.
mod reports;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keyledger::{Error, Vault};
use serde_json::{json, Value};

/// Bodies larger than this are refused with 413 before any parsing.
const MAX_BODY: usize = 64 * 1024;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const PAGE_HTML: &str = include_str!("assets/page.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");

/// The pages of the dashboard: (path, title).
const PAGES: &[(&str, &str)] = &[
    ("accounts", "Accounts"),
    ("keys", "API keys"),
    ("routes", "Routes"),
    ("limits", "Rate limits"),
    ("audit", "Audit log"),
    ("usage", "Usage"),
];

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
    pub auth: Arc<auth::Auth>,
    /// Bound to a loopback address: requests must name a loopback host (DNS rebinding).
    pub loopback: bool,
}

/// An error answered as JSON: a core error keeps its status and body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: json!({"success": false, "error": code, "message": message.into()}),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        Error::InvalidArgument(message.into()).into()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: e.body(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

pub type ApiResult = Result<Response, ApiError>;

impl AppState {
    /// Run a (blocking) vault call off the async workers.
    pub async fn run<F>(&self, f: F) -> Result<Value, ApiError>
    where
        F: FnOnce(&Vault) -> Result<Value, ApiError> + Send + 'static,
    {
        let vault = self.vault.clone();
        tokio::task::spawn_blocking(move || f(&vault))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the operation failed unexpectedly; nothing is reported as done",
                )
            })?
    }
}

/// Start the server and block until Ctrl-C / SIGTERM; then close the vault.
pub fn serve(vault: Vault, listen: &str) -> Result<(), String> {
    let auth = Arc::new(auth::Auth::from_env()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let vault = Arc::new(vault);
    let shared = vault.clone();
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let state = AppState {
            vault: shared,
            auth,
            loopback: addr.ip().is_loopback(),
        };
        announce(addr, &state.auth);
        // The peer address feeds the per-client login throttle.
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))
    });
    drop(runtime);
    let closed = vault.close().map_err(|e| format!("closing the vault: {e}"));
    result.and(closed)
}

/// The startup lines: the URL on stdout (for scripts), the rest on stderr.
fn announce(addr: SocketAddr, auth: &auth::Auth) {
    if !addr.ip().is_loopback() {
        eprintln!(
            "WARNING: the dashboard is bound to {addr}, a non-loopback address: anyone who can \
             reach it can try the admin token. Serve it on 127.0.0.1 and use an SSH tunnel, or \
             put it behind TLS."
        );
    }
    auth.announce_token();
    println!("keyledger dashboard listening on http://{addr}/");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("keyledger dashboard: shutting down");
}

/// The whole application: pages, assets, the JSON API and the layers around them.
pub fn router(state: AppState) -> Router {
    let api = api::routes()
        .merge(reports::api_routes())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ))
        .route("/login", post(auth::login))
        .fallback(api_not_found)
        .method_not_allowed_fallback(api_wrong_method);
    let mut pages = Router::new();
    for (path, _) in PAGES {
        pages = pages.route(&format!("/{path}"), get(page));
    }
    let pages = pages.layer(middleware::from_fn_with_state(
        state.clone(),
        auth::require_page_session,
    ));
    Router::new()
        .route("/", get(|| async { Redirect::to("/accounts") }))
        .route("/login", get(login_page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/metrics", get(reports::metrics))
        .merge(pages)
        .nest("/api", api)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), check_host))
        .layer(middleware::from_fn(security_headers))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(on_panic))
        .with_state(state)
}

/// On a loopback address, only requests that name a loopback host are served: a page of
/// another site whose name is rebound to 127.0.0.1 (DNS rebinding) gets nothing.
async fn check_host(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if st.loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !is_loopback_host(host) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "this dashboard answers only to 127.0.0.1, [::1] or localhost\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// `127.0.0.1:8477`, `localhost`, `[::1]:9000`, … (any port: SSH tunnels remap it).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Headers on every response: nothing is cached (a creation response holds a secret),
/// nothing is framed, scripts and styles come from this origin only.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the request was aborted",
    )
    .into_response()
}

async fn api_not_found(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no such endpoint for {method}"),
    )
}

async fn api_wrong_method(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on this endpoint"),
    )
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn page(State(_): State<AppState>, req: Request) -> Response {
    let name = req.uri().path().trim_start_matches('/');
    let Some((path, title)) = PAGES.iter().find(|(p, _)| *p == name) else {
        return not_found().await;
    };
    html(
        PAGE_HTML
            .replace("{{title}}", title)
            .replace("{{page}}", path),
    )
}

async fn login_page() -> Response {
    html(LOGIN_HTML.to_string())
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8477",
            "127.0.0.1",
            "localhost:9000",
            "LOCALHOST",
            "[::1]:8477",
            "[::1]",
            "127.1.2.3:80",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:8477",
            "localhost.evil.example",
            "10.0.0.1:8477",
            "[::2]:8477",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
