//! Usage report exports (JSON, CSV), the event list and `/metrics` on the dashboard.

use serde_json::json;

use crate::support::*;

#[test]
fn usage_reports_export_as_json_and_csv_and_metrics_need_a_session_or_the_admin_token() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let (token, key_id) = account_and_key(&c);
    c.post(
        "/api/routes",
        json!({"method": "POST", "pattern": "/send", "scope": "sms:send", "cost": "2"}),
    )
    .ok();
    for _ in 0..2 {
        srv.cli(&["authorize", "-", "--route", "POST /send"], Some(&token))
            .ok();
    }
    // A debit made by the dashboard process itself.
    c.post("/api/accounts/acct_42/debit", json!({"amount": "5"}))
        .ok();

    let r = c.get("/api/accounts/acct_42/usage-report?by=key").ok();
    let rows = r["rows"].as_array().unwrap();
    let row = rows.iter().find(|r| r["group"] == key_id.as_str()).unwrap();
    assert_eq!(
        (row["charged"].as_u64(), row["calls"].as_u64()),
        (Some(4), Some(2))
    );
    let csv = c.get("/api/accounts/acct_42/usage-report?by=route&format=csv");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert!(csv
        .header("content-disposition")
        .is_some_and(|d| d.starts_with("attachment;")));
    assert!(
        csv.body.starts_with("route,charged,calls,refusals\r\n"),
        "{}",
        csv.body
    );
    assert!(csv.body.contains("POST /send,4,2,0\r\n"), "{}", csv.body);
    assert!(csv.body.contains("(debit),5,1,0\r\n"), "{}", csv.body);
    c.get("/api/accounts/acct_42/usage-report?by=hour")
        .refused(400, "invalid_argument");
    c.get("/api/accounts/acct_42/usage-report?format=xml")
        .refused(400, "invalid_argument");
    c.get("/api/accounts/nobody/usage-report")
        .refused(404, "not_found");
    srv.client()
        .get("/api/accounts/acct_42/usage-report")
        .refused(401, "unauthorized");

    // Events over the API.
    srv.cli(
        &["events", "alert", "set", "acct_42", "--below", "90"],
        None,
    )
    .ok();
    c.post("/api/accounts/acct_42/debit", json!({"amount": "5"}))
        .ok();
    let e = c.get("/api/events").ok();
    assert_eq!(e[0]["type"], "balance_below");

    // /metrics: the dashboard process's own counters, Prometheus text.
    let anonymous = srv.client().get("/metrics");
    assert_eq!(anonymous.status, 401);
    let wrong = http(
        srv.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {ADMIN}");
    let m = http(
        srv.addr,
        "GET",
        "/metrics",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(m
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
    assert!(m.body.contains("keyledger_debits_total 2\n"), "{}", m.body);
    assert!(m.body.contains("# TYPE keyledger_refusals_total counter"));
    assert!(m.body.contains("keyledger_argon2_runs_total"));
    assert!(m.body.contains("keyledger_key_cache_hit_ratio"));
    assert_eq!(c.get("/metrics").status, 200);
}
