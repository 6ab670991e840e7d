//! Usage reports, events and metrics on the dashboard:
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/api/accounts/{id}/usage-report?by=key\|route\|day&since=&until=&format=json\|csv` | `usage_report` (times in unix ms; default the last 30 days); CSV as a download |
//! | GET | `/api/events?after=&limit=` | `events` |
//! | GET | `/metrics` | Prometheus text: this dashboard process's vault counters (`Vault::metrics`); a session cookie or `Authorization: Bearer <admin token>` |

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use keyledger::events::{report_csv, ReportBy};
use serde_json::{json, Value};

use super::input::{parse_u64, Id, QueryMap};
use super::{ApiError, ApiResult, AppState};

/// The routes under `/api/` (behind the session check).
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/{id}/usage-report", get(usage_report))
        .route("/events", get(events))
}

async fn usage_report(State(st): State<AppState>, Id(id): Id, q: QueryMap) -> ApiResult {
    let by: ReportBy = q
        .str("by")
        .unwrap_or_else(|| "key".into())
        .parse()
        .map_err(|e: keyledger::Error| ApiError::invalid(e.to_string()))?;
    let now = keyledger::system_now();
    let since = q
        .i64("since")?
        .unwrap_or(now.saturating_sub(30 * 86_400_000));
    // The hour holding `until` is included.
    let until = q.i64("until")?.unwrap_or(now).saturating_add(3_599_999);
    let format = q.str("format").unwrap_or_else(|| "json".into());
    if format != "json" && format != "csv" {
        return Err(ApiError::invalid(format!(
            "format must be \"json\" or \"csv\", not {format:?}"
        )));
    }
    let account = id.clone();
    let rows = st
        .run(move |v| {
            let rows = v.usage_report(&account, since, until, by)?;
            serde_json::to_value(rows).map_err(|e| ApiError::invalid(e.to_string()))
        })
        .await?;
    if format == "csv" {
        let rows: Vec<keyledger::events::UsageRow> =
            serde_json::from_value(rows).map_err(|e| ApiError::invalid(e.to_string()))?;
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"usage-{}.csv\"", by.column()),
                ),
            ],
            report_csv(by, &rows),
        )
            .into_response());
    }
    Ok(Json(json!({
        "account_id": id,
        "since": since,
        "until": until,
        "by": by.column(),
        "rows": rows,
    }))
    .into_response())
}

async fn events(State(st): State<AppState>, q: QueryMap) -> ApiResult {
    let after = match q.str("after") {
        Some(a) => parse_u64("after", &a)?,
        None => 0,
    };
    let limit = match q.str("limit") {
        Some(l) => usize::try_from(parse_u64("limit", &l)?)
            .map_err(|_| ApiError::invalid("limit is too large"))?,
        None => 100,
    };
    st.run(move |v| {
        let e = v.events(after, limit)?;
        serde_json::to_value(e).map_err(|e| ApiError::invalid(e.to_string()))
    })
    .await
    .map(|v: Value| Json(v).into_response())
}

/// `GET /metrics`.
pub async fn metrics(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(status) = st.auth.session_or_bearer(&headers, peer.ip()) {
        return (
            status,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "log in, or send Authorization: Bearer <admin token>\n",
        )
            .into_response();
    }
    let text = st.vault.metrics().prometheus();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
