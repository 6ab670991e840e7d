//! The operator dashboard (`keyledger dashboard`), run as the built binary on
//! 127.0.0.1:0 and driven over its JSON API with a small HTTP/1.1 client: login, sessions,
//! CSRF, every change audited as `dashboard`, no secret in any response but the one that
//! creates a key, bad input answered with 400 and a JSON body, nothing changed.

mod reports;
mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

#[test]
fn the_api_and_pages_require_a_session() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.client();
    for path in ["/api/accounts", "/api/keys", "/api/audit", "/api/session"] {
        c.get(path).refused(401, "unauthorized");
    }
    c.raw("POST", "/api/accounts", Some(&json!({"id": "a"})), false)
        .refused(401, "unauthorized");
    for page in [
        "/accounts",
        "/keys",
        "/routes",
        "/limits",
        "/audit",
        "/usage",
    ] {
        let r = c.get(page);
        assert_eq!(r.status, 303, "{page}");
        assert_eq!(r.header("location"), Some("/login"));
    }
    let login = c.get("/login");
    assert_eq!(login.status, 200);
    assert!(login.body.contains("login-form"));
    // A forged cookie is no session.
    let forged = Client {
        cookie: Some("kl_session=00".to_string()),
        ..srv.client()
    };
    forged.get("/api/accounts").refused(401, "unauthorized");
    // Security headers on every response.
    let r = c.get("/login");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r
        .header("content-security-policy")
        .is_some_and(|v| v.contains("script-src 'self'")));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    // Nothing was created.
    assert!(srv
        .admin()
        .get("/api/accounts")
        .ok()
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn a_wrong_token_and_an_api_key_cannot_log_in() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let mut c = srv.client();
    c.login("not-the-admin-token")
        .refused(401, "wrong_admin_token");
    c.login("").refused(400, "invalid_argument");
    // A real API key of this vault is refused as a dashboard credential.
    srv.cli(&["account", "create", "acct_1"], None).ok();
    let token = srv
        .cli(
            &[
                "key",
                "create",
                "--account",
                "acct_1",
                "--name",
                "k",
                "--scope",
                "*",
                "--operator",
            ],
            None,
        )
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(keyledger::looks_like_key(&token));
    c.login(&token).refused(401, "api_key_not_allowed");
    assert!(c.cookie.is_none());
    // Bearer headers carry no weight either: only the session cookie does.
    let bearer = format!("Bearer {token}");
    http(
        srv.addr,
        "GET",
        "/api/accounts",
        &[("Authorization", &bearer)],
        b"",
    )
    .refused(401, "unauthorized");
    // The right token logs in; logout ends the session.
    let mut c = srv.client();
    assert_eq!(c.login(ADMIN).status, 200);
    c.get("/api/accounts").ok();
    c.post("/api/logout", json!({})).ok();
    c.get("/api/accounts").refused(401, "unauthorized");
}

#[test]
fn an_api_key_cannot_be_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let vault = dir.path().join("v.redb");
    cli(&vault, &["init"], None).ok();
    cli(&vault, &["account", "create", "a"], None).ok();
    let token = cli(
        &vault,
        &["key", "create", "--account", "a", "--name", "k"],
        None,
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    let out = Command::new(BIN)
        .arg("--vault")
        .arg(&vault)
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env("KEYLEDGER_ADMIN_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("keys cannot manage keys"), "{stderr}");
    assert!(!stderr.contains(secret_of(&token)));
    // A short token is refused too.
    let out = Command::new(BIN)
        .arg("--vault")
        .arg(&vault)
        .args(["dashboard", "--listen", "127.0.0.1:0"])
        .env("KEYLEDGER_ADMIN_TOKEN", "short")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_generated_token_is_printed_once_and_works() {
    let srv = Server::start(None, "127.0.0.1:0");
    let line = srv
        .banner
        .iter()
        .find(|l| l.starts_with("admin token"))
        .unwrap();
    let token = line.rsplit(' ').next().unwrap();
    assert_eq!(token.len(), 64, "{line}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let mut c = srv.client();
    assert_eq!(c.login(token).status, 200);
    assert!(!srv.banner.iter().any(|l| l.contains("WARNING")));
}

#[test]
fn a_non_loopback_address_gets_a_warning() {
    let srv = Server::start(Some(ADMIN), "0.0.0.0:0");
    assert!(
        srv.banner
            .iter()
            .any(|l| l.contains("WARNING") && l.contains("non-loopback")),
        "{:?}",
        srv.banner
    );
    assert!(!srv.banner.iter().any(|l| l.contains(ADMIN)));
}

#[test]
fn changes_need_the_csrf_token_and_a_json_body() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let body = json!({"id": "acct_x", "credits": 5});
    c.raw("POST", "/api/accounts", Some(&body), false)
        .refused(403, "csrf_token_invalid");
    let wrong = Client {
        csrf: Some("0".repeat(64)),
        cookie: c.cookie.clone(),
        addr: c.addr,
    };
    wrong
        .post("/api/accounts", body.clone())
        .refused(403, "csrf_token_invalid");
    // The token of one session is not valid in another.
    let other = srv.admin();
    let mixed = Client {
        csrf: other.csrf.clone(),
        cookie: c.cookie.clone(),
        addr: c.addr,
    };
    mixed
        .post("/api/accounts", body.clone())
        .refused(403, "csrf_token_invalid");
    // A form post (what a cross-site page could send) is refused even with the token.
    let cookie = c.cookie.clone().unwrap();
    let csrf = c.csrf.clone().unwrap();
    http(
        srv.addr,
        "POST",
        "/api/accounts",
        &[
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"id=acct_x&credits=5",
    )
    .refused(415, "unsupported_media_type");
    assert!(c.get("/api/accounts").ok().as_array().unwrap().is_empty());
    // With the token it works.
    assert_eq!(c.post("/api/accounts", body).status, 201);
}

#[test]
fn mint_top_up_revoke_through_the_api_audited_as_dashboard() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let (token, key_id) = account_and_key(&c);
    assert!(keyledger::looks_like_key(&token));
    assert!(token.starts_with(&format!("dial_live_{key_id}_")));
    let secret = secret_of(&token).to_string();

    let b = c
        .post(
            "/api/accounts/acct_42/top-up",
            json!({"amount": 50, "reference": "inv_1"}),
        )
        .ok();
    assert_eq!(
        (b["credits"].as_u64(), b["total_credits"].as_u64()),
        (Some(150), Some(150))
    );

    // The key works from another process (the CLI), then is revoked in the dashboard.
    let granted = srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(&token));
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let k = c
        .post(&format!("/api/keys/{key_id}/revoke"), json!({}))
        .ok();
    assert!(k["revoked_at"].is_i64());
    let refused = srv.cli(
        &["--json", "authorize", "-", "--scope", "sms:send"],
        Some(&token),
    );
    assert_eq!(refused.code, 2);
    assert!(refused.stdout.contains("invalid_api_key"));

    // Every management entry was made by the dashboard.
    let audit = c.get("/api/audit?limit=100").ok();
    let entries = audit.as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "account_created",
        "key_created",
        "credits_added",
        "key_revoked",
    ] {
        let e = entries
            .iter()
            .find(|e| e["action"] == json!(a))
            .unwrap_or_else(|| panic!("{a} in {actions:?}"));
        assert_eq!(e["actor"], json!("dashboard"), "{e}");
    }
    // Filters: by key, by account, by action, since, limit.
    let by_key = c.get(&format!("/api/audit?key={key_id}")).ok();
    assert!(by_key
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["key_id"] == json!(key_id)));
    let by_action = c.get("/api/audit?action=credits_added").ok();
    assert_eq!(by_action.as_array().unwrap().len(), 1);
    assert_eq!(by_action[0]["details"]["reference"], json!("inv_1"));
    let one = c.get("/api/audit?limit=1").ok();
    assert_eq!(one.as_array().unwrap().len(), 1);
    let future = c.get("/api/audit?since=99999999999999").ok();
    assert!(future.as_array().unwrap().is_empty());
    c.get("/api/audit?limit=0").refused(400, "invalid_argument");
    c.get("/api/audit?since=yesterday")
        .refused(400, "invalid_argument");

    // No response but the creation one carries the secret, nor any hash.
    let mut seen = Vec::new();
    for path in [
        "/api/accounts".to_string(),
        "/api/accounts/acct_42".to_string(),
        "/api/keys".to_string(),
        format!("/api/keys/{key_id}"),
        format!("/api/keys/{key_id}/usage"),
        "/api/audit?limit=1000".to_string(),
        "/api/limits".to_string(),
        "/api/overview".to_string(),
        "/keys".to_string(),
        "/assets/app.js".to_string(),
    ] {
        let r = c.get(&path);
        assert_eq!(r.status, 200, "{path}");
        seen.push((path, r.body));
    }
    for (path, body) in &seen {
        assert!(!body.contains(&secret), "{path} shows the secret");
        assert!(!body.contains("$argon2"), "{path} shows a hash");
    }
}

#[test]
fn bad_input_is_a_400_with_a_json_body_and_changes_nothing() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let (_, key_id) = account_and_key(&c);
    let before_audit = c.get("/api/audit").ok().as_array().unwrap().len();

    c.post("/api/accounts/acct_42/top-up", json!({"amount": -5}))
        .refused(400, "invalid_argument");
    c.post("/api/accounts/acct_42/top-up", json!({"amount": "lots"}))
        .refused(400, "invalid_argument");
    c.post("/api/accounts/acct_42/top-up", json!({"amount": 0}))
        .refused(400, "invalid_argument");
    c.post(
        "/api/accounts/acct_42/top-up",
        json!({"amount": "18446744073709551616"}),
    )
    .refused(400, "invalid_argument");
    c.post(
        "/api/accounts/acct_42/top-up",
        json!({"amount": 5, "amuont": 5}),
    )
    .refused(400, "invalid_argument");
    c.post("/api/accounts", json!({"id": "", "credits": 1}))
        .refused(400, "invalid_argument");
    c.post(
        "/api/accounts",
        json!({"id": "acct_9", "metadata": "[1, 2]"}),
    )
    .refused(400, "invalid_argument");
    c.post("/api/accounts", json!({"id": "acct_42"}))
        .refused(409, "already_exists");
    c.post(
        "/api/keys",
        json!({"account_id": "acct_42", "name": "bad", "scopes": ["SMS SEND!"]}),
    )
    .refused(400, "invalid_argument");
    c.post(
        "/api/keys",
        json!({"account_id": "acct_42", "name": "bad", "prefix": "Bad-Prefix_"}),
    )
    .refused(400, "invalid_argument");
    c.post("/api/keys", json!({"account_id": "nobody", "name": "x"}))
        .refused(404, "not_found");
    c.post("/api/keys/zzzzzzzz/revoke", json!({}))
        .refused(404, "not_found");
    c.post(&format!("/api/keys/{key_id}/rotate"), json!({"grace": -1}))
        .refused(400, "invalid_argument");
    c.post(
        "/api/routes",
        json!({"method": "FETCH ME", "pattern": "no-slash", "scope": "x"}),
    )
    .refused(400, "invalid_argument");
    c.post(
        "/api/limits",
        json!({"name": "m", "limit": 5, "seconds": 60}),
    )
    .refused(400, "invalid_argument");
    c.post(
        "/api/accounts/acct_42/refill",
        json!({"amount": 5, "interval": "weekly"}),
    )
    .refused(400, "invalid_argument");
    c.get("/api/routes/match?method=GET")
        .refused(400, "invalid_argument");
    // Malformed and oversized bodies.
    let cookie = c.cookie.clone().unwrap();
    let csrf = c.csrf.clone().unwrap();
    let headers = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
        ("Content-Type", "application/json"),
    ];
    http(srv.addr, "POST", "/api/accounts", &headers, b"{\"id\": ")
        .refused(400, "invalid_argument");
    http(srv.addr, "POST", "/api/accounts", &headers, b"[\"acct\"]")
        .refused(400, "invalid_argument");
    let big = format!("{{\"id\": \"{}\"}}", "a".repeat(100 * 1024));
    http(srv.addr, "POST", "/api/accounts", &headers, big.as_bytes())
        .refused(413, "payload_too_large");
    c.get("/api/no/such/thing").refused(404, "not_found");

    // Nothing changed.
    let a = c.get("/api/accounts/acct_42").ok();
    assert_eq!(a["credits"], json!(100));
    assert_eq!(c.get("/api/accounts").ok().as_array().unwrap().len(), 1);
    assert_eq!(c.get("/api/keys").ok().as_array().unwrap().len(), 1);
    assert!(c.get("/api/routes").ok().as_array().unwrap().is_empty());
    assert_eq!(
        c.get("/api/audit").ok().as_array().unwrap().len(),
        before_audit
    );
    // And the server is still there.
    c.get("/api/overview").ok();
}

#[test]
fn keys_rotate_scopes_expiry_disable_and_usage() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let (token, key_id) = account_and_key(&c);

    let k = c
        .post(&format!("/api/keys/{key_id}/disable"), json!({}))
        .ok();
    assert_eq!(k["disabled"], json!(true));
    let r = srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(&token));
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stdout.contains("api_key_inactive"));
    c.post(&format!("/api/keys/{key_id}/enable"), json!({}))
        .ok();

    let k = c
        .post(
            &format!("/api/keys/{key_id}/scopes"),
            json!({"scopes": "sms:send, numbers:read"}),
        )
        .ok();
    assert_eq!(k["scopes"], json!(["numbers:read", "sms:send"]));
    let k = c
        .post(
            &format!("/api/keys/{key_id}/expiry"),
            json!({"expires_in": 3600}),
        )
        .ok();
    assert!(k["expires_at"].is_i64());
    let k = c
        .post(&format!("/api/keys/{key_id}/expiry"), json!({}))
        .ok();
    assert_eq!(k["expires_at"], json!(null));

    srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(&token))
        .ok();
    let u = c.get(&format!("/api/keys/{key_id}/usage")).ok();
    assert_eq!(u["granted"], json!(1));
    assert_eq!(u["hourly"].as_array().unwrap().len(), 1);

    // Rotation with grace: a new token, once; the old key expires later.
    let r = c.post(
        &format!("/api/keys/{key_id}/rotate"),
        json!({"grace": "600"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    let new_token = b["token"].as_str().unwrap();
    assert!(keyledger::looks_like_key(new_token));
    assert_eq!(b["key"]["rotated_from"], json!(key_id));
    assert!(b["old"]["expires_at"].is_i64());
    srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(new_token))
        .ok();
    srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(&token))
        .ok();
    let all = c.get("/api/keys").ok().to_string();
    assert!(!all.contains(secret_of(new_token)));
    assert!(!all.contains(secret_of(&token)));
}

#[test]
fn routes_limits_and_refills() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    let (_, key_id) = account_and_key(&c);

    let r = c
        .post(
            "/api/routes",
            json!({"method": "post", "pattern": "/api/v1/messaging/send", "scope": "sms:send", "cost": "1"}),
        );
    assert_eq!(r.status, 201, "{}", r.body);
    c.post(
        "/api/routes",
        json!({"method": "GET", "pattern": "/sms/*", "scope": "sms.read"}),
    )
    .ok();
    let m = c
        .get("/api/routes/match?method=POST&path=/api/v1/messaging/send")
        .ok();
    assert_eq!(m["matched"], json!(true));
    assert_eq!(m["rule"]["scope"], json!("sms:send"));
    assert_eq!(m["rule"]["cost"], json!(1));
    let m = c.get("/api/routes/match?method=GET&path=/sms/a/b").ok();
    assert_eq!(m["rule"]["pattern"], json!("/sms/*"));
    let m = c.get("/api/routes/match?method=GET&path=/nope").ok();
    assert_eq!(m["matched"], json!(false));
    assert_eq!(m["status"], json!(403));
    c.post(
        "/api/routes/remove",
        json!({"method": "GET", "pattern": "/sms/*"}),
    )
    .ok();
    assert_eq!(c.get("/api/routes").ok().as_array().unwrap().len(), 1);

    let l = c.post(
        "/api/limits",
        json!({"account_id": "acct_42", "name": "per-minute", "limit": 10, "seconds": 60}),
    );
    assert_eq!(l.status, 201, "{}", l.body);
    c.post(
        "/api/limits",
        json!({"key_id": key_id, "name": "burst", "limit": "2", "seconds": "1", "applies": "when_named"}),
    )
    .ok();
    let all = c.get("/api/limits").ok();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let mine = c.get(&format!("/api/limits?key={key_id}")).ok();
    assert_eq!(mine[0]["auto_apply"], json!(false));
    assert_eq!(mine[0]["duration_ms"], json!(1000));
    c.post(
        "/api/limits/remove",
        json!({"key_id": key_id, "name": "burst"}),
    )
    .ok();
    c.post(
        "/api/limits/remove",
        json!({"key_id": key_id, "name": "burst"}),
    )
    .refused(404, "not_found");

    let a = c
        .post(
            "/api/accounts/acct_42/refill",
            json!({"amount": 500, "interval": "monthly", "day": "15"}),
        )
        .ok();
    assert_eq!(
        a["refill"],
        json!({"amount": 500, "interval": "monthly", "day": 15})
    );
    let a = c.post("/api/accounts/acct_42/refill/clear", json!({})).ok();
    assert_eq!(a["refill"], json!(null));

    let audit = c.get("/api/audit?limit=1000").ok();
    for e in audit.as_array().unwrap() {
        assert_eq!(e["actor"], json!("dashboard"), "{e}");
    }
}

#[test]
fn only_loopback_host_names_are_served_and_wrong_methods_get_json() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    // A rebound name (DNS rebinding) gets nothing, not even the login page.
    for path in ["/login", "/api/session", "/assets/app.js"] {
        let r = http(srv.addr, "GET", path, &[("Host", "evil.example:8477")], b"");
        assert_eq!(r.status, 421, "{path}");
    }
    let r = http(
        srv.addr,
        "GET",
        "/login",
        &[("Host", "localhost:1234")],
        b"",
    );
    assert_eq!(r.status, 200);
    srv.client()
        .get("/api/login")
        .refused(405, "method_not_allowed");
}

#[test]
fn sigterm_closes_the_vault_and_exits_cleanly() {
    let mut srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    c.post("/api/accounts", json!({"id": "acct_1", "credits": 3}))
        .ok();
    let pid = srv.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut rest = String::new();
    srv.stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("shutting down"), "{rest}");
    assert!(!rest.contains(ADMIN));
    // The change is in the vault for the next process.
    let shown = srv.cli(&["--json", "account", "show", "acct_1"], None).ok();
    assert!(shown.stdout.contains("\"credits\": 3"), "{}", shown.stdout);
}

/// Create a key on `acct_42` named `name` with `sms:send`, plus the fields of `extra`.
fn new_key(c: &Client, name: &str, extra: Value) -> String {
    let mut spec = json!({"account_id": "acct_42", "name": name, "scopes": "sms:send"});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let r = c.post("/api/keys", spec);
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["key"]["key_id"].as_str().unwrap().to_string()
}

/// Every key of `acct_42` with whether the dashboard offers to rotate it, sorted.
fn rotatable(c: &Client) -> Vec<(String, bool)> {
    let r = c.get("/api/keys?account=acct_42");
    assert_eq!(r.status, 200, "{}", r.body);
    let keys = r.json();
    let mut out: Vec<(String, bool)> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key_id"].as_str().unwrap().to_string(),
                k["rotatable"]
                    .as_bool()
                    .expect("every key says whether it is rotatable"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn rotation_is_offered_and_accepted_only_for_enabled_unexpired_unrotated_keys() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let a = srv.admin();
    assert_eq!(
        a.post("/api/accounts", json!({"id": "acct_42", "credits": "10"}))
            .status,
        201
    );
    let active = new_key(&a, "active", json!({}));
    let disabled = new_key(&a, "disabled", json!({}));
    assert_eq!(
        a.post(&format!("/api/keys/{disabled}/disable"), json!({}))
            .status,
        200
    );
    let expired = new_key(&a, "expired", json!({}));
    assert_eq!(
        a.post(
            &format!("/api/keys/{expired}/expiry"),
            json!({"expires_at": 1000})
        )
        .status,
        200
    );
    let r = a.post(
        &format!("/api/keys/{active}/rotate"),
        json!({"grace": 3600}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let successor = r.json()["key"]["key_id"].as_str().unwrap().to_string();

    let mut want = vec![
        (active.clone(), false),
        (disabled.clone(), false),
        (expired.clone(), false),
        (successor.clone(), true),
    ];
    want.sort();
    assert_eq!(rotatable(&a), want);

    for (id, word) in [
        (&disabled, "disabled"),
        (&expired, "expired"),
        (&active, "already rotated"),
    ] {
        let r = a.post(&format!("/api/keys/{id}/rotate"), json!({"grace": 60}));
        assert_eq!(r.status, 400, "{}", r.body);
        let b = r.json();
        assert_eq!(b["error"], json!("invalid_argument"));
        assert!(b["message"].as_str().unwrap().contains(word), "{}", r.body);
        assert!(!r.body.contains("dial_") && !r.body.contains("kl_live_"));
    }
    // Nothing was minted by the refusals.
    assert_eq!(rotatable(&a).len(), 4);
}

/// A TCP connection to `to` from the local address `from` (port chosen by the system).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor this function owns; on success it is
    // handed to `TcpStream`, on failure closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let sin = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let local = sin(SocketAddrV4::new(from, 0));
        let to = match to {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => panic!("IPv4 only"),
        };
        let remote = sin(to);
        let bound = libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len);
        let connected =
            bound == 0 && libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) == 0;
        if !connected {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            panic!("connect from {from} to {to}: {e}");
        }
        TcpStream::from_raw_fd(fd)
    }
}

/// `POST /api/login` from `from`: the status and the JSON body.
fn login(srv: &Server, from: Ipv4Addr, token: &str) -> (u16, Value) {
    let mut s = connect_from(from, srv.addr);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let body = json!({ "token": token }).to_string();
    let req = format!(
        "POST /api/login HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        srv.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let json = serde_json::from_str(rest).unwrap_or(Value::Null);
    (status, json)
}

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const ADMIN_HOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The dashboard's login throttle is per client address. The bug: failed logins were counted for the whole server, so ten wrong tokens from
/// anyone who could reach the port locked the admin out for a minute.
#[test]
fn a_flood_of_wrong_logins_from_one_address_does_not_lock_out_another() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    for _ in 0..10 {
        let (status, body) = login(&srv, ATTACKER, "not-the-admin-token");
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("wrong_admin_token"))
        );
    }
    // The attacker's address is refused, even with the right token.
    let (status, body) = login(&srv, ATTACKER, "not-the-admin-token");
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too_many_attempts"))
    );
    let (status, _) = login(&srv, ATTACKER, ADMIN);
    assert_eq!(status, 429);
    // The admin, from another address, still logs in; a typo there is a plain 401.
    let (status, body) = login(&srv, ADMIN_HOST, "a-typo-in-the-token");
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("wrong_admin_token"))
    );
    let (status, body) = login(&srv, ADMIN_HOST, ADMIN);
    assert_eq!(status, 200, "{body}");
    assert!(body["csrf"].as_str().is_some());
}

// Token styles.
#[test]
fn the_dashboard_creates_a_colon_style_key_that_the_cli_authorizes() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    c.post("/api/accounts", json!({"id": "acct_42", "credits": "10"}))
        .ok();
    let r = c.post(
        "/api/keys",
        json!({"account_id": "acct_42", "name": "voice", "scopes": "sms:send", "style": "colon"}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let b = r.json();
    let token = b["token"].as_str().unwrap().to_string();
    let key_id = b["key"]["key_id"].as_str().unwrap();
    assert_eq!(b["key"]["style"], "colon");
    assert!(token.starts_with(&format!("{key_id}:")) && keyledger::looks_like_key(&token));
    let granted = srv.cli(&["authorize", "-", "--scope", "sms:send"], Some(&token));
    assert_eq!(granted.code, 0, "{}", granted.stderr);
    let listed = c.get("/api/keys").ok();
    assert!(!listed.to_string().contains(&token[9..]));
    c.post(
        "/api/keys",
        json!({"account_id": "acct_42", "name": "bad", "scopes": "sms:send", "style": "Colon"}),
    )
    .refused(400, "invalid_argument");
    assert_eq!(c.get("/api/keys").ok().as_array().unwrap().len(), 1);
}

// Holds.
/// A hold made by another process (the CLI) shows in the dashboard's hold list, with its
/// account's available credits lowered, and leaves it once released.
#[test]
fn active_holds_are_listed_and_the_account_shows_its_available_credits() {
    let srv = Server::start(Some(ADMIN), "127.0.0.1:0");
    let c = srv.admin();
    account_and_key(&c);
    assert_eq!(c.get("/api/holds").ok(), json!([]));
    let made = srv
        .cli(&["--json", "holds", "create", "acct_42", "30"], None)
        .ok();
    let made: serde_json::Value = serde_json::from_str(&made.stdout).unwrap();
    let id = made["hold_id"].as_str().unwrap().to_string();
    let holds = c.get("/api/holds").ok();
    let list = holds.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["hold_id"].as_str(), list[0]["amount"].as_u64()),
        (Some(id.as_str()), Some(30))
    );
    let a = c.get("/api/accounts/acct_42").ok();
    assert_eq!(
        a["credits"].as_u64(),
        Some(70),
        "an account's credits are the available ones"
    );
    srv.cli(&["holds", "release", &id], None).ok();
    assert_eq!(c.get("/api/holds").ok(), json!([]));
    assert_eq!(
        c.get("/api/accounts/acct_42").ok()["credits"].as_u64(),
        Some(100)
    );
}
