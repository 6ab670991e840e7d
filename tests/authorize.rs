//! authorize: the check order, every refusal and its body, scopes, routes, credits,
//! idempotency, expiry, rotation — against a real vault file.

mod common;

use common::{Fixture, T0};
use keyledger::{
    AuditQuery, AuthMethod, AuthorizeOptions, Error, NewKey, Target, ThrottleConfig, Vault,
    VaultOptions,
};
use serde_json::json;

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

#[test]
fn a_granted_send_debits_one_credit_and_describes_the_caller() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let g = f.vault.authorize(token.expose(), SEND, &none()).unwrap();
    assert_eq!(g.account_id, "acct_42");
    assert_eq!(g.key_id, key_id);
    assert_eq!(g.key_name, "server");
    assert_eq!(g.prefix, "dial_live");
    assert_eq!(g.auth_method, AuthMethod::Apikey);
    assert_eq!(g.charged, 1);
    assert_eq!(g.credits, 9);
    assert_eq!(g.total_credits, 10);
    assert!(!g.replayed);
    assert_eq!(f.vault.balance("acct_42").unwrap().credits, 9);
}

#[test]
fn every_refusal_has_its_status_code_and_body() {
    let (f, token, key_id) = Fixture::seeded(0, &["numbers:read"]);
    let t = token.expose();

    let e = f.vault.authorize("garbage", SEND, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "invalid_api_key"));
    assert_eq!(e.body()["error"], json!("invalid_api_key"));

    let e = f.vault.authorize(t, SEND, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "missing_scope"));
    assert_eq!(e.body()["required"], json!("sms:send"));

    let e = f
        .vault
        .authorize(t, Target::route("DELETE", "/api/v1/numbers/mine"), &none())
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "route_not_allowed"));

    let e = f
        .vault
        .authorize(
            t,
            Target::route("GET", "/api/v1/numbers/mine"),
            &AuthorizeOptions {
                cost: Some(5),
                ..none()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 402);
    assert_eq!(
        e.body(),
        json!({"success": false, "error": "insufficient_credits", "message": e.to_string(), "credits": 0, "required": 5})
    );

    f.vault.disable_key(&key_id).unwrap();
    let e = f.vault.authorize(t, SEND, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "api_key_inactive"));
    f.vault.enable_key(&key_id).unwrap();

    f.vault.set_expiry(&key_id, Some(T0 + 1)).unwrap();
    f.clock.set(T0 + 1);
    let e = f.vault.authorize(t, SEND, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "api_key_expired"));

    f.vault.revoke_key(&key_id).unwrap();
    let e = f.vault.authorize(t, SEND, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "invalid_api_key"));
}

#[test]
fn key_state_is_revealed_only_to_the_holder_of_the_secret() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    f.vault.disable_key(&key_id).unwrap();
    // Same key_id, wrong secret: the caller learns nothing about the key being disabled.
    let wrong = keyledger::token::mint("dial_live", &key_id).unwrap();
    let e = f.vault.authorize(&wrong, SEND, &none()).unwrap_err();
    assert_eq!(e, Error::InvalidApiKey);
    let e = f
        .vault
        .authorize(token.expose(), SEND, &none())
        .unwrap_err();
    assert_eq!(e, Error::ApiKeyInactive);
    // Revoked beats disabled and expired, and looks like an unknown key.
    f.vault.revoke_key(&key_id).unwrap();
    let e = f
        .vault
        .authorize(token.expose(), SEND, &none())
        .unwrap_err();
    assert_eq!(e, Error::InvalidApiKey);
}

#[test]
fn a_token_with_another_prefix_is_invalid_even_with_the_right_secret() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let swapped = token.expose().replacen("dial_live", "sk_prod", 1);
    // The checksum covers the prefix, so this no longer even parses.
    assert_eq!(
        f.vault.authorize(&swapped, SEND, &none()).unwrap_err(),
        Error::InvalidApiKey
    );
}

#[test]
fn wildcard_scopes_grant_their_namespace_only() {
    let f = Fixture::new();
    f.vault.create_account("a", 100, None).unwrap();
    let (all, _) = f.vault.create_key(NewKey::new("a", "all", ["*"])).unwrap();
    let (sms, _) = f
        .vault
        .create_key(NewKey::new("a", "sms", ["sms:*"]))
        .unwrap();
    let (exact, _) = f
        .vault
        .create_key(NewKey::new("a", "exact", ["sms:send"]))
        .unwrap();
    let ok = |t: &keyledger::SecretToken, scope| {
        f.vault
            .authorize(t.expose(), Target::scope(scope), &none())
            .is_ok()
    };
    assert!(ok(&all, "billing:write"));
    assert!(ok(&sms, "sms:send"));
    assert!(ok(&sms, "sms:read"));
    assert!(!ok(&sms, "smsx:send"));
    assert!(!ok(&sms, "numbers:read"));
    assert!(ok(&exact, "sms:send"));
    assert!(!ok(&exact, "sms:read"));
}

#[test]
fn the_most_specific_route_decides_scope_and_cost() {
    let f = Fixture::new();
    f.vault.create_account("a", 100, None).unwrap();
    f.vault.add_route("GET", "/v1/*", "v1.any", 0).unwrap();
    f.vault
        .add_route("GET", "/v1/items/:id", "items:read", 2)
        .unwrap();
    f.vault
        .add_route("GET", "/v1/items/special", "items:special", 5)
        .unwrap();
    f.vault
        .add_route("*", "/v1/items/:id", "items:any", 7)
        .unwrap();
    let r = |m, p| {
        f.vault
            .match_route(m, p)
            .unwrap()
            .map(|r| (r.scope, r.cost))
    };
    assert_eq!(
        r("GET", "/v1/items/special"),
        Some(("items:special".into(), 5))
    );
    assert_eq!(r("GET", "/v1/items/42"), Some(("items:read".into(), 2)));
    assert_eq!(r("PUT", "/v1/items/42"), Some(("items:any".into(), 7)));
    assert_eq!(r("GET", "/v1/other/deep/path"), Some(("v1.any".into(), 0)));
    assert_eq!(r("GET", "/v2/items/42"), None);

    let (t, _) = f
        .vault
        .create_key(NewKey::new("a", "k", ["items:read"]))
        .unwrap();
    let g = f
        .vault
        .authorize(
            t.expose(),
            Target::route("GET", "/v1/items/42?x=1"),
            &none(),
        )
        .unwrap();
    assert_eq!((g.charged, g.credits), (2, 98));
    let e = f
        .vault
        .authorize(
            t.expose(),
            Target::route("GET", "/v1/items/special"),
            &none(),
        )
        .unwrap_err();
    assert_eq!(e.body()["required"], json!("items:special"));
}

#[test]
fn a_route_no_rule_matches_is_refused_even_for_a_star_key() {
    let f = Fixture::new();
    f.vault.create_account("a", 100, None).unwrap();
    let (t, _) = f.vault.create_key(NewKey::new("a", "k", ["*"])).unwrap();
    let e = f
        .vault
        .authorize(t.expose(), Target::route("GET", "/anything"), &none())
        .unwrap_err();
    assert_eq!(e, Error::RouteNotAllowed);
}

#[test]
fn operator_keys_pass_every_scope_are_never_charged_and_are_audited() {
    let (f, _, _) = Fixture::seeded(0, &[]);
    let (op, info) = f
        .vault
        .create_key(NewKey::new("acct_42", "admin", Vec::<String>::new()).operator(true))
        .unwrap();
    let g = f.vault.authorize(op.expose(), SEND, &none()).unwrap();
    assert_eq!(g.auth_method, AuthMethod::Operator);
    assert_eq!((g.charged, g.credits), (0, 0));
    // Still deny by default: operators pass scopes, not unknown routes.
    assert_eq!(
        f.vault
            .authorize(op.expose(), Target::route("GET", "/nope"), &none())
            .unwrap_err(),
        Error::RouteNotAllowed
    );
    let entries = f
        .vault
        .audit(&AuditQuery {
            key_id: Some(info.key_id.clone()),
            action: Some("operator_authorized".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].details["count"], json!(1));
}

#[test]
fn expiry_takes_effect_at_the_exact_millisecond() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, _) = f
        .vault
        .create_key(NewKey::new("a", "k", ["x"]).expires_in_ms(1000))
        .unwrap();
    let at = |ms| {
        f.vault.authorize(
            t.expose(),
            Target::scope("x"),
            &AuthorizeOptions {
                now: Some(ms),
                ..none()
            },
        )
    };
    assert!(at(T0 + 999).is_ok());
    assert_eq!(at(T0 + 1000).unwrap_err(), Error::ApiKeyExpired);
    // Clearing the expiry brings it back.
    let key_id = keyledger::token::parse(t.expose()).unwrap().key_id;
    f.vault.set_expiry(key_id, None).unwrap();
    assert!(at(T0 + 5000).is_ok());
}

#[test]
fn rotation_keeps_the_old_key_working_for_the_grace_period_only() {
    let (f, old, old_id) = Fixture::seeded(10, &["sms:send"]);
    let (new, info) = f.vault.rotate_key(&old_id, 60_000).unwrap();
    assert_ne!(info.key_id, old_id);
    assert_eq!(info.rotated_from.as_deref(), Some(old_id.as_str()));
    assert_eq!(info.scopes, vec!["sms:send".to_string()]);
    assert_eq!(info.prefix, "dial_live");
    assert!(f.vault.authorize(old.expose(), SEND, &none()).is_ok());
    assert!(f.vault.authorize(new.expose(), SEND, &none()).is_ok());
    f.clock.advance(60_000);
    assert_eq!(
        f.vault.authorize(old.expose(), SEND, &none()).unwrap_err(),
        Error::ApiKeyExpired
    );
    assert!(f.vault.authorize(new.expose(), SEND, &none()).is_ok());
    let actions: Vec<String> = f
        .vault
        .audit(&AuditQuery {
            key_id: Some(old_id),
            ..AuditQuery::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.contains(&"key_rotated".to_string()), "{actions:?}");
}

#[test]
fn an_idempotent_repeat_replays_the_first_grant_and_charges_nothing() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let opts = AuthorizeOptions {
        idempotency_key: Some("req-1"),
        ..none()
    };
    let first = f.vault.authorize(token.expose(), SEND, &opts).unwrap();
    assert_eq!(
        (first.charged, first.credits, first.replayed),
        (1, 9, false)
    );
    let again = f.vault.authorize(token.expose(), SEND, &opts).unwrap();
    assert!(again.replayed);
    assert_eq!((again.charged, again.credits), (0, 9));
    assert_eq!(f.vault.balance("acct_42").unwrap().credits, 9);
    // After 24 h the key is fresh again.
    f.clock.advance(keyledger::IDEMPOTENCY_WINDOW_MS);
    let later = f.vault.authorize(token.expose(), SEND, &opts).unwrap();
    assert!(!later.replayed);
    assert_eq!(later.credits, 8);
}

#[test]
fn a_refused_debit_changes_nothing() {
    let (f, token, _) = Fixture::seeded(1, &["sms:send"]);
    assert!(f.vault.authorize(token.expose(), SEND, &none()).is_ok());
    let e = f
        .vault
        .authorize(token.expose(), SEND, &none())
        .unwrap_err();
    assert_eq!(
        e,
        Error::InsufficientCredits {
            credits: 0,
            required: 1
        }
    );
    let b = f.vault.balance("acct_42").unwrap();
    assert_eq!((b.credits, b.total_credits), (0, 1));
}

#[test]
fn the_hot_path_runs_argon2_once_and_opens_no_transaction_while_nothing_changes() {
    let (f, token, _) = Fixture::seeded(10, &["numbers:read"]);
    let read = Target::route("GET", "/api/v1/numbers/mine");
    f.vault.authorize(token.expose(), read, &none()).unwrap();
    let before = f.vault.stats();
    assert_eq!(before.argon2_runs, 1);
    for _ in 0..1000 {
        f.vault.authorize(token.expose(), read, &none()).unwrap();
    }
    let after = f.vault.stats();
    assert_eq!(after.argon2_runs, 1, "argon2 ran on the hot path");
    assert_eq!(
        after.read_txns, before.read_txns,
        "the hot path opened a read transaction"
    );
    assert_eq!(after.commits, before.commits);
    // A change invalidates exactly what it touches: the next call reads once, then hot again.
    f.vault.top_up("acct_42", 5, None).unwrap();
    let g = f.vault.authorize(token.expose(), read, &none()).unwrap();
    assert_eq!(g.credits, 15);
    let s1 = f.vault.stats();
    f.vault.authorize(token.expose(), read, &none()).unwrap();
    assert_eq!(f.vault.stats().read_txns, s1.read_txns);
}

#[test]
fn a_wrong_secret_for_a_verified_key_is_refused_without_argon2() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    f.vault.authorize(token.expose(), SEND, &none()).unwrap();
    let runs = f.vault.stats().argon2_runs;
    let wrong = keyledger::token::mint("dial_live", &key_id).unwrap();
    for _ in 0..100 {
        assert_eq!(
            f.vault.authorize(&wrong, SEND, &none()).unwrap_err(),
            Error::InvalidApiKey
        );
    }
    assert_eq!(f.vault.stats().argon2_runs, runs);
}

/// A vault whose throttle allows 5 failed secret checks per key_id, never refilled, with
/// one account and one key: (vault, its dir, token, a wrong token for the same key_id).
fn throttled_vault() -> (Vault, tempfile::TempDir, keyledger::SecretToken, String) {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            throttle: ThrottleConfig {
                burst: 5,
                per_second: 0.0,
                ..ThrottleConfig::default()
            },
            ..common::options()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, info) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let wrong = keyledger::token::mint(&info.prefix, &info.key_id)
        .unwrap()
        .to_string();
    (v, dir, t, wrong)
}

#[test]
fn a_flood_of_wrong_secrets_is_throttled_and_the_owner_still_gets_in() {
    let (v, _dir, t, wrong) = throttled_vault();
    for _ in 0..50 {
        assert_eq!(
            v.authorize(&wrong, Target::scope("x"), &none())
                .unwrap_err(),
            Error::InvalidApiKey
        );
    }
    let s = v.stats();
    // The same wrong secret is remembered as wrong: argon2 ran once.
    assert_eq!(
        s.argon2_runs, 1,
        "a known wrong secret must not run argon2 again"
    );
    assert_eq!(s.throttled, 49);
    // The right secret is still verified (never refused unverified as invalid_api_key)...
    v.authorize(t.expose(), Target::scope("x"), &none())
        .unwrap();
    // ...but an owner whose secret was verified before the attack is never throttled.
    let (v2, _dir2, t2, wrong2) = throttled_vault();
    v2.authorize(t2.expose(), Target::scope("x"), &none())
        .unwrap();
    for _ in 0..50 {
        assert!(v2.authorize(&wrong2, Target::scope("x"), &none()).is_err());
    }
    assert!(v2
        .authorize(t2.expose(), Target::scope("x"), &none())
        .is_ok());
}

#[test]
fn refusals_are_audited_and_coalesced() {
    let (f, token, key_id) = Fixture::seeded(10, &["numbers:read"]);
    for _ in 0..20 {
        let _ = f.vault.authorize(token.expose(), SEND, &none());
    }
    for _ in 0..30 {
        let _ = f
            .vault
            .authorize("dial_live_zzzzzzzz_nonsense", SEND, &none());
    }
    let refused = f
        .vault
        .audit(&AuditQuery {
            action: Some("auth_refused".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    let mine: Vec<_> = refused
        .iter()
        .filter(|e| e.key_id.as_deref() == Some(key_id.as_str()))
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].details["count"], json!(20));
    assert_eq!(mine[0].details["code"], json!("missing_scope"));
    let anon: u64 = refused
        .iter()
        .filter(|e| e.key_id.is_none())
        .map(|e| e.details["count"].as_u64().unwrap())
        .sum();
    assert_eq!(anon, 30);
    let u = f.vault.usage(&key_id).unwrap();
    assert_eq!(u.refused, 20);
}

#[test]
fn usage_counts_grants_per_hour_and_tracks_last_use() {
    let (f, token, key_id) = Fixture::seeded(10, &["numbers:read"]);
    let read = Target::route("GET", "/api/v1/numbers/mine");
    for _ in 0..3 {
        f.vault.authorize(token.expose(), read, &none()).unwrap();
    }
    f.vault.flush().unwrap();
    f.clock.advance(3_600_000);
    f.vault.authorize(token.expose(), read, &none()).unwrap();
    let u = f.vault.usage(&key_id).unwrap();
    assert_eq!(u.granted, 4);
    assert_eq!(u.last_used_at, Some(T0 + 3_600_000));
    assert_eq!(u.hourly, vec![(T0, 3), (T0 + 3_600_000, 1)]);
    assert_eq!(
        f.vault.key(&key_id).unwrap().last_used_at,
        Some(T0 + 3_600_000)
    );
}

#[test]
fn whoami_reports_the_account_behind_a_token() {
    let (f, token, key_id) = Fixture::seeded(7, &["sms:send"]);
    let w = f.vault.whoami(token.expose()).unwrap();
    assert_eq!(
        (w.account_id.as_str(), w.key_id.as_str()),
        ("acct_42", key_id.as_str())
    );
    assert_eq!((w.credits, w.total_credits), (7, 7));
    assert_eq!(w.auth_method, AuthMethod::Apikey);
    assert_eq!(f.vault.whoami("nope").unwrap_err(), Error::InvalidApiKey);
}
