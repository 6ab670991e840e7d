//! The HTTP gate's shared case table (`tests/gates/http_cases.json`) through the core:
//! `Vault::authorize_http` and the C ABI's `kl_authorize_http`. The host suites run the
//! same table through the ASGI, Express and Elixir gates.

mod common;

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::ptr;

use common::Fixture;
use keyledger::ffi::{
    kl_authorize_http, kl_http_credential, kl_secret_free, kl_status, kl_string_free, kl_vault,
    kl_vault_flush, kl_vault_free, kl_vault_open,
};
use keyledger::http::{HttpOptions, HttpOutcome, HttpRequest};
use keyledger::{AuditQuery, LimitOwner, NewKey, OnReplay, TokenStyle};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Table {
    rules: Vec<Rule>,
    keys: BTreeMap<String, Key>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Rule {
    method: String,
    pattern: String,
    scope: String,
    cost: u64,
}

#[derive(Deserialize)]
struct Limit {
    name: String,
    limit: u64,
    duration_ms: u64,
}

#[derive(Deserialize)]
struct Key {
    scopes: Vec<String>,
    credits: u64,
    ratelimit: Option<Limit>,
    style: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    method: String,
    target: String,
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct Options {
    replay: String,
    case_insensitive: bool,
    cost: Option<u64>,
    max_body: Option<usize>,
}

#[derive(Deserialize)]
struct Expect {
    status: u16,
    code: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    absent: Vec<String>,
    credits: u64,
    #[serde(default)]
    audited: bool,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    key: String,
    request: Request,
    repeat: Option<u32>,
    options: Options,
    expect: Expect,
}

fn table() -> Table {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gates/http_cases.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A fresh vault with the table's rules and the case's key; the key's token.
fn setup(t: &Table, case: &Case) -> (Fixture, String) {
    let f = Fixture::new();
    for r in &t.rules {
        f.vault
            .add_route(&r.method, &r.pattern, &r.scope, r.cost)
            .unwrap();
    }
    let k = &t.keys[&case.key];
    f.vault.create_account("acct", k.credits, None).unwrap();
    let style = k.style.as_deref().unwrap_or("prefixed").parse().unwrap();
    let (token, info) = f
        .vault
        .create_key(NewKey::new("acct", &case.key, k.scopes.iter().cloned()).style(style))
        .unwrap();
    assert_eq!(
        token.expose().contains(':'),
        style == TokenStyle::Colon,
        "{}",
        case.name
    );
    if let Some(l) = &k.ratelimit {
        f.vault
            .set_ratelimit(
                LimitOwner::Key(&info.key_id),
                &l.name,
                l.limit,
                l.duration_ms,
                true,
            )
            .unwrap();
    }
    (f, token.expose().to_string())
}

fn header(case: &Case, token: &str, name: &str) -> Option<Vec<u8>> {
    let v = case.request.headers.get(name)?;
    Some(
        v.replace("{token}", token)
            .replace("{long}", &"a".repeat(8200))
            .into_bytes(),
    )
}

/// Checks one outcome (status, code, headers) and the vault afterwards.
fn check(t: &Case, f: &Fixture, status: u16, headers: &[(String, String)], body: &str) {
    let e = &t.expect;
    let name = &t.name;
    assert_eq!(status, e.status, "{name}: {body}");
    let code = if body.is_empty() {
        None
    } else {
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["success"], false, "{name}");
        v["error"].as_str().map(str::to_string)
    };
    assert_eq!(code, e.code, "{name}");
    for (k, want) in &e.headers {
        let got = headers.iter().find(|(n, _)| n == k).map(|(_, v)| v);
        let got = got.unwrap_or_else(|| panic!("{name}: no {k} in {headers:?}"));
        assert!(want == "*" || got == want, "{name}: {k} = {got}");
    }
    for k in &e.absent {
        assert!(headers.iter().all(|(n, _)| n != k), "{name}: {k} present");
    }
    assert_eq!(
        f.vault.balance("acct").unwrap().credits,
        e.credits,
        "{name}"
    );
    if e.audited {
        let refused = f
            .vault
            .audit(&AuditQuery {
                action: Some("auth_refused".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert!(
            refused.iter().any(|a| a.key_id.is_none()),
            "{name}: not audited"
        );
    }
}

fn run_core(t: &Table, case: &Case) {
    let (f, token) = setup(t, case);
    let h = |n| header(case, &token, n);
    let (auth, key, sig, idem) = (
        h("authorization"),
        h("x-api-key"),
        h("x-keyledger-signature"),
        h("idempotency-key"),
    );
    let request = HttpRequest {
        method: &case.request.method,
        target: case.request.target.as_bytes(),
        authorization: auth.as_deref(),
        api_key: key.as_deref(),
        signature: sig.as_deref(),
        idempotency_key: idem.as_deref(),
        body: case.request.body.as_deref().map(str::as_bytes),
        body_too_large: false,
    };
    let o = &case.options;
    let options = HttpOptions {
        cost: o.cost,
        on_replay: if o.replay == "pass" {
            OnReplay::Grant
        } else {
            OnReplay::Refuse
        },
        case_insensitive: o.case_insensitive,
        max_body: o.max_body,
        ..HttpOptions::default()
    };
    let mut out: Option<HttpOutcome> = None;
    for _ in 0..case.repeat.unwrap_or(1) {
        out = Some(f.vault.authorize_http(&request, &options));
    }
    let out = out.unwrap();
    assert_eq!(out.grant.is_some(), out.status == 200, "{}", case.name);
    let headers: Vec<(String, String)> = out
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    check(case, &f, out.status, &headers, &out.body);
}

#[test]
fn every_case_holds_through_vault_authorize_http() {
    let t = table();
    assert!(t.cases.len() >= 20);
    for case in &t.cases {
        run_core(&t, case);
    }
}

/// A C handle on the fixture's file (a second handle in this process, as a worker has).
fn c_handle(f: &Fixture) -> *mut kl_vault {
    let path = f.path.to_str().unwrap();
    let opts = r#"{"argon2": {"m_kib": 8, "t": 1, "p": 1}}"#;
    let mut v: *mut kl_vault = ptr::null_mut();
    // SAFETY: valid pointers for their lengths.
    let rc = unsafe {
        kl_vault_open(
            path.as_ptr().cast(),
            path.len(),
            opts.as_ptr().cast(),
            opts.len(),
            &mut v,
        )
    };
    assert_eq!(rc, kl_status::KL_OK);
    v
}

fn take(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string keyledger allocated.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    // SAFETY: freed once, with the documented free function.
    unsafe { kl_string_free(p) };
    s
}

fn opt(v: &Option<Vec<u8>>) -> (*const u8, usize) {
    v.as_ref()
        .map_or((ptr::null(), 0), |b| (b.as_ptr(), b.len()))
}

fn run_c(t: &Table, case: &Case) {
    let (f, token) = setup(t, case);
    let vault = c_handle(&f);
    let h = |n| header(case, &token, n);
    let (auth, key, sig, idem) = (
        h("authorization"),
        h("x-api-key"),
        h("x-keyledger-signature"),
        h("idempotency-key"),
    );
    let body = case.request.body.clone().map(String::into_bytes);
    let o = &case.options;
    let mut options = serde_json::json!({
        "replay": o.replay,
        "case_insensitive": o.case_insensitive,
    });
    if let Some(c) = o.cost {
        options["cost"] = c.into();
    }
    if let Some(m) = o.max_body {
        options["max_body"] = m.into();
    }
    let options = options.to_string();
    let (mut status, mut headers, mut out_body, mut grant) =
        (0u16, ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    for _ in 0..case.repeat.unwrap_or(1) {
        for p in [headers, out_body, grant] {
            take(p);
        }
        let m = &case.request.method;
        let tg = &case.request.target;
        // SAFETY: every pointer is valid for its length during the call.
        let rc = unsafe {
            kl_authorize_http(
                vault,
                m.as_ptr().cast(),
                m.len(),
                tg.as_ptr(),
                tg.len(),
                opt(&auth).0,
                opt(&auth).1,
                opt(&key).0,
                opt(&key).1,
                opt(&sig).0,
                opt(&sig).1,
                opt(&idem).0,
                opt(&idem).1,
                opt(&body).0,
                opt(&body).1,
                0,
                options.as_ptr().cast(),
                options.len(),
                &mut status,
                &mut headers,
                &mut out_body,
                &mut grant,
            )
        };
        assert_eq!(rc, kl_status::KL_OK, "{}", case.name);
    }
    // SAFETY: a live handle. (Its pending audit entries, for `check`.)
    assert_eq!(unsafe { kl_vault_flush(vault) }, kl_status::KL_OK);
    let headers: Vec<(String, String)> = serde_json::from_str(&take(headers)).unwrap();
    let grant = take(grant);
    assert_eq!(!grant.is_empty(), status == 200, "{}", case.name);
    if status == 200 {
        let g: Value = serde_json::from_str(&grant).unwrap();
        assert_eq!(g["account_id"], "acct");
    }
    let body = take(out_body);
    check(case, &f, status, &headers, &body);
    // SAFETY: the handle opened above, freed once.
    unsafe { kl_vault_free(vault) };
}

#[test]
fn every_case_holds_through_kl_authorize_http() {
    let t = table();
    for case in &t.cases {
        run_c(&t, case);
    }
}

fn c_credential(authorization: Option<&[u8]>, api_key: Option<&[u8]>) -> Option<String> {
    let (a, al) = authorization.map_or((ptr::null(), 0), |b| (b.as_ptr(), b.len()));
    let (k, kl) = api_key.map_or((ptr::null(), 0), |b| (b.as_ptr(), b.len()));
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY: valid pointers for their lengths; the token is freed below.
    let rc = unsafe { kl_http_credential(a, al, k, kl, &mut out) };
    if rc != kl_status::KL_OK {
        assert_eq!(rc, kl_status::KL_INVALID_API_KEY);
        assert!(out.is_null());
        return None;
    }
    // SAFETY: a NUL-terminated token keyledger allocated, freed once.
    let s = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    unsafe { kl_secret_free(out) };
    Some(s)
}

#[test]
fn kl_http_credential_reads_the_gate_grammar() {
    assert_eq!(
        c_credential(Some(b"bearer  sk_a_b "), None).as_deref(),
        Some("sk_a_b")
    );
    assert_eq!(
        c_credential(None, Some(b"sk_a_b")).as_deref(),
        Some("sk_a_b")
    );
    assert_eq!(c_credential(Some(b"Bearer\tsk_a_b"), Some(b"sk_a_b")), None);
    assert_eq!(c_credential(None, None), None);
    let long = [b"Bearer ".as_slice(), &[b'a'; 5000]].concat();
    assert_eq!(c_credential(Some(&long), None), None);
    let mut out: *mut c_char = ptr::null_mut();
    // SAFETY: NULL with a length is refused before any read.
    let rc = unsafe { kl_http_credential(ptr::null(), 3, ptr::null(), 0, &mut out) };
    assert_eq!(rc, kl_status::KL_INVALID_ARGUMENT);
}
