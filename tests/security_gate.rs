//! The HTTP gate in the core (`keyledger::http`, `Target::Request`, `kl_authorize_request`)
//! against the hostile-target table every host gate shares, `tests/gates/hostile_targets.json`.
//!
//! The bug these pin: the gates passed a decoded path to the core, whose matcher cut it at
//! the first `?` or `#`, dropped empty segments and compared `HEAD` and case exactly, while
//! the app's router read the same request otherwise. A key then reached a paid handler
//! charged as a free rule (`/files/%23/../report.pdf`, `HEAD /report`, `/files/`, `/SEND`).

mod common;

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::ptr;

use common::Fixture;
use keyledger::ffi::{
    kl_authorize_opts, kl_authorize_request, kl_authorize_request_json, kl_grant,
    kl_last_error_body, kl_status, kl_status_code, kl_string_free, kl_vault, kl_vault_free,
    kl_vault_open,
};
use keyledger::{AuditQuery, AuthorizeOptions, Error, NewKey, SecretToken, Target};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Table {
    rules: Vec<Rule>,
    keys: BTreeMap<String, Key>,
    targets: Vec<Case>,
}

#[derive(Deserialize)]
struct Rule {
    id: String,
    method: String,
    pattern: String,
    scope: String,
    cost: u64,
    handlers: Vec<String>,
}

#[derive(Deserialize)]
struct Key {
    scopes: Vec<String>,
    credits: u64,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
struct Expect {
    refused: Option<String>,
    rule: Option<String>,
}

#[derive(Deserialize, Clone, Debug, PartialEq)]
struct Outcome {
    status: Option<u16>,
    code: Option<String>,
    #[serde(default)]
    granted: bool,
    charged: u64,
}

#[derive(Deserialize)]
struct Case {
    method: String,
    target: String,
    expect: Expect,
    expect_case_insensitive: Option<Expect>,
    outcomes: BTreeMap<String, Outcome>,
    outcomes_case_insensitive: Option<BTreeMap<String, Outcome>>,
    why: String,
}

impl Case {
    fn expect(&self, case_insensitive: bool) -> &Expect {
        match (&self.expect_case_insensitive, case_insensitive) {
            (Some(e), true) => e,
            _ => &self.expect,
        }
    }

    fn outcomes(&self, case_insensitive: bool) -> &BTreeMap<String, Outcome> {
        match (&self.outcomes_case_insensitive, case_insensitive) {
            (Some(o), true) => o,
            _ => &self.outcomes,
        }
    }
}

fn table() -> Table {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/gates/hostile_targets.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A vault with the table's rules, and per key an account holding its credits.
struct Setup {
    f: Fixture,
    tokens: BTreeMap<String, SecretToken>,
}

fn setup(t: &Table) -> Setup {
    let f = Fixture::new();
    for r in &t.rules {
        f.vault
            .add_route(&r.method, &r.pattern, &r.scope, r.cost)
            .unwrap();
    }
    let mut tokens = BTreeMap::new();
    for (name, k) in &t.keys {
        let account = format!("acct_{name}");
        f.vault.create_account(&account, k.credits, None).unwrap();
        let (token, _) = f
            .vault
            .create_key(NewKey::new(&account, name, k.scopes.iter().cloned()))
            .unwrap();
        tokens.insert(name.clone(), token);
    }
    Setup { f, tokens }
}

/// What the table's outcome must be, derived from the rules and keys (so a hand edit of
/// one outcome that contradicts its rule is caught).
fn derive(t: &Table, key: &Key, expect: &Expect) -> Outcome {
    let refusal = |status, code: &str| Outcome {
        status: Some(status),
        code: Some(code.into()),
        granted: false,
        charged: 0,
    };
    if let Some(code) = &expect.refused {
        return refusal(400, code);
    }
    let Some(id) = &expect.rule else {
        return refusal(403, "route_not_allowed");
    };
    let rule = t.rules.iter().find(|r| &r.id == id).expect("rule id");
    if !key.scopes.contains(&rule.scope) {
        return refusal(403, "missing_scope");
    }
    if rule.cost > key.credits {
        return refusal(402, "insufficient_credits");
    }
    Outcome {
        status: None,
        code: None,
        granted: true,
        charged: rule.cost,
    }
}

#[test]
fn the_hostile_table_is_consistent_and_covers_the_reported_targets() {
    let t = table();
    for c in &t.targets {
        for ci in [false, true] {
            for (name, key) in &t.keys {
                let want = derive(&t, key, c.expect(ci));
                assert_eq!(
                    &c.outcomes(ci)[name],
                    &want,
                    "{} {} ({name})",
                    c.method,
                    c.target
                );
            }
            if let Some(id) = &c.expect(ci).rule {
                assert!(t.rules.iter().any(|r| &r.id == id), "{id}");
            }
        }
        assert!(!c.why.is_empty());
    }
    for r in &t.rules {
        assert!(!r.handlers.is_empty(), "{}", r.id);
    }
    let has = |m: &str, target: &str| {
        t.targets
            .iter()
            .any(|c| c.method == m && c.target == target)
    };
    for target in [
        "/files/%23/../report.pdf",
        "/files/%3F/../report.pdf",
        "/files/%3f/%2e%2e/report.pdf",
        "/files/%2F",
        "/files/",
        "/files//",
        "//files/report.pdf",
        "/files/.",
        "/files/report.pdf;jsessionid=x",
        "/files/%252e%252e/report.pdf",
        "/files/%c0%ae%c0%ae/report.pdf",
        "/files\\..\\report.pdf",
        "/files/%00",
        "http://example.com/files/report.pdf",
    ] {
        assert!(has("GET", target), "{target}");
    }
    assert!(has("HEAD", "/report"));
    assert!(has("POST", "/API/v1/messaging/SEND"));
}

#[test]
fn every_hostile_target_reaches_the_rule_the_table_names() {
    let t = table();
    let s = setup(&t);
    for c in &t.targets {
        for ci in [false, true] {
            let got = s.f.vault.match_request(&c.method, &c.target, ci);
            let what = format!(
                "{} {:?} (case_insensitive={ci}): {}",
                c.method, c.target, c.why
            );
            match &c.expect(ci).refused {
                Some(code) => {
                    let e = got.expect_err(&what);
                    assert!(matches!(e, Error::AmbiguousPath(_)), "{what}: {e:?}");
                    assert_eq!(e.code(), code, "{what}");
                }
                None => {
                    let rule = got.expect(&what);
                    let want = c.expect(ci).rule.as_ref().map(|id| {
                        let r = t.rules.iter().find(|r| &r.id == id).unwrap();
                        (r.method.clone(), r.pattern.clone())
                    });
                    assert_eq!(rule.map(|r| (r.method, r.pattern)), want, "{what}");
                }
            }
        }
    }
}

#[test]
fn every_hostile_target_is_refused_or_charged_as_the_table_says() {
    let t = table();
    let s = setup(&t);
    for c in &t.targets {
        for ci in [false, true] {
            for (name, token) in &s.tokens {
                let account = format!("acct_{name}");
                let before = s.f.vault.balance(&account).unwrap().credits;
                let target = Target::request(&c.method, &c.target).case_insensitive(ci);
                let got =
                    s.f.vault
                        .authorize(token.expose(), target, &AuthorizeOptions::default());
                let want = &c.outcomes(ci)[name];
                let what = format!("{} {:?} ci={ci} key={name}: {}", c.method, c.target, c.why);
                match got {
                    Ok(g) => {
                        assert!(want.granted, "{what}: granted, want {want:?}");
                        assert_eq!(g.charged, want.charged, "{what}");
                    }
                    Err(e) => {
                        assert!(!want.granted, "{what}: refused {e:?}");
                        assert_eq!(Some(e.status()), want.status, "{what}");
                        assert_eq!(Some(e.code()), want.code.as_deref(), "{what}");
                    }
                }
                let after = s.f.vault.balance(&account).unwrap().credits;
                assert_eq!(before - after, want.charged, "{what}");
            }
        }
    }
}

fn c(s: &str) -> (*const c_char, usize) {
    (s.as_ptr().cast(), s.len())
}

fn last_error_body() -> Value {
    let mut body = ptr::null_mut();
    // SAFETY: a valid out-pointer; the string is freed below.
    unsafe {
        assert_eq!(kl_last_error_body(&mut body), kl_status::KL_OK);
        let v = serde_json::from_str(CStr::from_ptr(body).to_str().unwrap()).unwrap();
        kl_string_free(body);
        v
    }
}

#[test]
fn the_c_abi_gate_reads_the_same_table() {
    let t = table();
    let s = setup(&t);
    let path = s.f.path.to_str().unwrap();
    let opts_json = r#"{"argon2": {"m_kib": 8, "t": 1, "p": 1}}"#;
    let mut v: *mut kl_vault = ptr::null_mut();
    let (p, pl) = c(path);
    let (o, ol) = c(opts_json);
    // SAFETY: valid pointers for their lengths; `v` is freed at the end.
    unsafe {
        assert_eq!(kl_vault_open(p, pl, o, ol, &mut v), kl_status::KL_OK);
    }
    for case in &t.targets {
        for ci in [false, true] {
            // SAFETY: all-zero is the documented default of every field.
            let mut opts: kl_authorize_opts = unsafe { std::mem::zeroed() };
            opts.case_insensitive = u8::from(ci);
            for (name, token) in &s.tokens {
                let want = &case.outcomes(ci)[name];
                let what = format!("{} {:?} ci={ci} key={name}", case.method, case.target);
                let (tk, tkl) = c(token.expose());
                let (m, ml) = c(&case.method);
                let (tg, tgl) = c(&case.target);
                // SAFETY: valid pointers for their lengths; the grant is caller memory.
                let (status, grant) = unsafe {
                    let mut g: kl_grant = std::mem::zeroed();
                    let st = kl_authorize_request(v, tk, tkl, m, ml, tg, tgl, &opts, &mut g);
                    (st, g)
                };
                if want.granted {
                    assert_eq!(status, kl_status::KL_OK, "{what}: {}", last_error_body());
                    assert_eq!(grant.charged, want.charged, "{what}");
                } else {
                    // SAFETY: a static string.
                    let code = unsafe { CStr::from_ptr(kl_status_code(status as u32)) };
                    assert_eq!(code.to_str().ok(), want.code.as_deref(), "{what}");
                    assert_eq!(
                        last_error_body()["error"].as_str(),
                        want.code.as_deref(),
                        "{what}"
                    );
                }
                // The JSON variant decides the same.
                let mut json = ptr::null_mut();
                // SAFETY: as above; the string is freed right away.
                let status = unsafe {
                    let st =
                        kl_authorize_request_json(v, tk, tkl, m, ml, tg, tgl, &opts, &mut json);
                    kl_string_free(json);
                    st
                };
                assert_eq!(status == kl_status::KL_OK, want.granted, "{what} (json)");
            }
        }
    }
    // SAFETY: the handle from kl_vault_open, freed once.
    unsafe { kl_vault_free(v) };
}

#[test]
fn a_null_opts_gate_is_case_sensitive_and_a_bad_target_pointer_is_refused() {
    let t = table();
    let s = setup(&t);
    let (p, pl) = c(s.f.path.to_str().unwrap());
    let (o, ol) = c(r#"{"argon2": {"m_kib": 8, "t": 1, "p": 1}}"#);
    let mut v: *mut kl_vault = ptr::null_mut();
    let token = s.tokens["payer"].expose().to_string();
    let (tk, tkl) = c(&token);
    let (m, ml) = c("POST");
    let (tg, tgl) = c("/API/v1/messaging/SEND");
    // SAFETY: valid pointers for their lengths, or NULL where the test says so.
    unsafe {
        assert_eq!(kl_vault_open(p, pl, o, ol, &mut v), kl_status::KL_OK);
        let mut g: kl_grant = std::mem::zeroed();
        let st = kl_authorize_request(v, tk, tkl, m, ml, tg, tgl, ptr::null(), &mut g);
        assert_eq!(st, kl_status::KL_OK);
        assert_eq!(g.charged, 0, "case-sensitive: the free public rule");
        let st = kl_authorize_request(v, tk, tkl, m, ml, ptr::null(), 3, ptr::null(), &mut g);
        assert_eq!(st, kl_status::KL_INVALID_ARGUMENT);
        let st = kl_authorize_request(v, tk, tkl, m, ml, tg, tgl, ptr::null(), ptr::null_mut());
        assert_eq!(st, kl_status::KL_INVALID_ARGUMENT);
        kl_vault_free(v);
    }
}

/// `HEAD /report` ran the paid GET handler for free: the matcher compared methods exactly
/// and only the `* /*` rule matched. The older decoded-path API now charges it like GET.
#[test]
fn head_through_the_route_api_is_charged_like_get() {
    let t = table();
    let s = setup(&t);
    let token = s.tokens["payer"].expose();
    let g =
        s.f.vault
            .authorize(
                token,
                Target::route("HEAD", "/report"),
                &AuthorizeOptions::default(),
            )
            .unwrap();
    assert_eq!(g.charged, 7);
    let e =
        s.f.vault
            .authorize(
                s.tokens["attacker"].expose(),
                Target::route("HEAD", "/report"),
                &AuthorizeOptions::default(),
            )
            .unwrap_err();
    assert_eq!(e.code(), "missing_scope");
}

#[test]
fn an_ambiguous_target_is_audited_with_its_path_and_never_its_query() {
    let t = table();
    let s = setup(&t);
    let token = s.tokens["payer"].expose();
    let e =
        s.f.vault
            .authorize(
                token,
                Target::request("GET", "/files/%2F?api_key=sk_live_secret"),
                &AuthorizeOptions::default(),
            )
            .unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "ambiguous_path"));
    assert_eq!(e.body()["error"], "ambiguous_path");
    s.f.vault
        .authorize(
            token,
            Target::request("GET", "/files/report.pdf?api_key=sk_live_secret"),
            &AuthorizeOptions::default(),
        )
        .unwrap();
    s.f.vault.flush().unwrap();
    let entries =
        s.f.vault
            .audit(&AuditQuery {
                action: Some("auth_refused".into()),
                ..AuditQuery::default()
            })
            .unwrap();
    let text =
        serde_json::to_string(&entries.iter().map(|e| &e.details).collect::<Vec<_>>()).unwrap();
    assert!(text.contains("ambiguous_path"), "{text}");
    assert!(text.contains("GET /files/%2F"), "{text}");
    assert!(!text.contains("sk_live_secret"), "{text}");
}

#[test]
fn oversized_or_malformed_gate_arguments_are_invalid_and_change_nothing() {
    let t = table();
    let s = setup(&t);
    let token = s.tokens["payer"].expose();
    let long = format!("/files/{}", "a".repeat(8200));
    for (m, target) in [
        ("GET", long.as_str()),
        ("", "/report"),
        ("GETGETGETGETGETGET", "/report"),
    ] {
        let e =
            s.f.vault
                .authorize(
                    token,
                    Target::request(m, target),
                    &AuthorizeOptions::default(),
                )
                .unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{m} {}", target.len());
    }
    assert_eq!(s.f.vault.balance("acct_payer").unwrap().credits, 1000);
}

/// The decoded-path API is what the gates used to call: given what a decoding router
/// sees of `/files/%23/../report.pdf`, it cuts at `#` and answers the free `* /*` rule
/// while the router serves the paid file. The raw-target gate refuses it.
#[test]
fn the_gate_refuses_what_the_decoded_path_api_misreads() {
    let t = table();
    let s = setup(&t);
    let old =
        s.f.vault
            .match_route("GET", "/files/#/../report.pdf")
            .unwrap();
    assert_eq!(old.map(|r| r.pattern).as_deref(), Some("/*"));
    let new =
        s.f.vault
            .match_request("GET", "/files/%23/../report.pdf", false);
    assert!(matches!(new, Err(Error::AmbiguousPath(_))), "{new:?}");
}
