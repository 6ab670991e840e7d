//! `Vault::authorize_view` / `try_authorize_view`: the grant that reads the cached key
//! record answers exactly what `authorize` answers (every field, every kind of call: the
//! hot path, a debit, an idempotent replay, an operator key, a rate-limited call, a
//! refusal), each view call followed by the same `authorize` call on the same vault.

mod common;

use common::Fixture;
use keyledger::{
    Attempt, AuthMethod, AuthorizeOptions, Error, Grant, GrantView, LimitOwner, NewKey, Target,
    WouldBlock,
};

const READ: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};
const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

/// Every field of a view, read through its methods, as a `Grant`.
fn fields(v: &GrantView) -> Grant {
    Grant {
        account_id: v.account_id().to_owned(),
        key_id: v.key_id().to_owned(),
        key_name: v.key_name().to_owned(),
        prefix: v.prefix().to_owned(),
        auth_method: v.auth_method(),
        scopes: v.scopes().to_vec(),
        charged: v.charged(),
        credits: v.credits(),
        total_credits: v.total_credits(),
        replayed: v.replayed(),
        ratelimits: v.ratelimits().to_vec(),
        hold_id: v.hold_id().map(str::to_owned),
    }
}

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

/// A view's fields, and its `into_grant`, against the next `authorize` with the same
/// arguments (which must answer the same, `adjust` applied to the view's copy first).
fn same_as_next(
    f: &Fixture,
    token: &str,
    target: Target<'_>,
    o: &AuthorizeOptions<'_>,
    adjust: impl Fn(&mut Grant, &Grant),
) -> Grant {
    let view = f.vault.authorize_view(token, target, o).unwrap();
    let read = fields(&view);
    assert_eq!(view.into_grant(), read, "into_grant is the fields read");
    let mut expected = read;
    let grant = f.vault.authorize(token, target, o).unwrap();
    adjust(&mut expected, &grant);
    assert_eq!(grant, expected);
    grant
}

#[test]
fn a_hot_view_has_every_field_of_the_grant() {
    let (f, token, key_id) = Fixture::seeded(10, &["numbers:read", "sms:send"]);
    let token = token.expose();
    // The first call verifies the secret; the next ones are the hot path.
    f.vault.authorize(token, READ, &none()).unwrap();
    let g = same_as_next(&f, token, READ, &none(), |_, _| {});
    assert_eq!(g.key_id, key_id);
    assert_eq!(g.account_id, "acct_42");
    assert_eq!(g.prefix, "dial_live");
    assert_eq!(g.key_name, "server");
    assert_eq!(g.scopes, ["numbers:read", "sms:send"]);
    assert_eq!((g.charged, g.credits, g.total_credits), (0, 10, 10));
    assert_eq!(g.auth_method, AuthMethod::Apikey);
    assert!(!g.replayed && g.ratelimits.is_empty());
    // A scope call as well.
    same_as_next(&f, token, Target::Scope("sms:send"), &none(), |_, _| {});
}

#[test]
fn a_debiting_view_reports_its_charge() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let token = token.expose();
    // The view debits 1 (9 left), the grant after it 1 more (8 left).
    let g = same_as_next(&f, token, SEND, &none(), |g, _| g.credits -= 1);
    assert_eq!((g.charged, g.credits), (1, 8));
}

#[test]
fn a_replayed_view_is_the_first_calls_grant() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let token = token.expose();
    let o = AuthorizeOptions {
        idempotency_key: Some("req-1"),
        cost: Some(3),
        ..none()
    };
    let first = f.vault.authorize(token, SEND, &o).unwrap();
    let g = same_as_next(&f, token, SEND, &o, |_, _| {});
    assert!(g.replayed);
    assert_eq!(g.charged, 0);
    assert_eq!(g.credits, first.credits);
    assert_eq!(f.vault.balance("acct_42").unwrap().credits, 7);
}

#[test]
fn an_operator_view_says_operator() {
    let f = Fixture::new();
    f.vault.create_account("acct_42", 5, None).unwrap();
    common::seed_routes(&f.vault);
    let (t, _) = f
        .vault
        .create_key(NewKey::new("acct_42", "ops", Vec::<String>::new()).operator(true))
        .unwrap();
    let g = same_as_next(&f, t.expose(), SEND, &none(), |_, _| {});
    assert_eq!(g.auth_method, AuthMethod::Operator);
    assert_eq!(g.charged, 0);
}

#[test]
fn a_rate_limited_view_carries_its_limits() {
    let (f, token, key_id) = Fixture::seeded(10, &["numbers:read"]);
    let token = token.expose();
    f.vault
        .set_ratelimit(LimitOwner::Key(&key_id), "burst", 5, 60_000, true)
        .unwrap();
    // The view took one unit (4 left), the grant after it another (3 left; its window
    // resets later).
    let g = same_as_next(&f, token, READ, &none(), |g, next| {
        g.ratelimits[0].remaining -= 1;
        assert!(next.ratelimits[0].reset_ms >= g.ratelimits[0].reset_ms);
        g.ratelimits[0].reset_ms = next.ratelimits[0].reset_ms;
    });
    assert_eq!(g.ratelimits.len(), 1);
    assert_eq!((g.ratelimits[0].max, g.ratelimits[0].remaining), (5, 3));
    let view = f.vault.authorize_view(token, READ, &none()).unwrap();
    assert_eq!(view.tightest_ratelimit().map(|r| r.remaining), Some(2));
}

#[test]
fn a_refused_view_is_the_same_refusal() {
    let (f, token, _) = Fixture::seeded(10, &["numbers:read"]);
    let token = token.expose();
    f.vault.authorize(token, READ, &none()).unwrap();
    let e = f.vault.authorize_view(token, SEND, &none()).unwrap_err();
    assert_eq!(e, f.vault.authorize(token, SEND, &none()).unwrap_err());
    assert!(matches!(e, Error::MissingScope { .. }));
    let bad = format!("{}x", &token[..token.len() - 1]);
    let e = f.vault.authorize_view(&bad, READ, &none()).unwrap_err();
    assert_eq!(e.code(), "invalid_api_key");
}

#[test]
fn try_authorize_view_answers_inline_or_would_block_like_try_authorize() {
    let (f, token, _) = Fixture::seeded(10, &["numbers:read", "sms:send"]);
    let token = token.expose();
    assert_eq!(
        f.vault
            .try_authorize_view(token, READ, &none())
            .would_block(),
        Some(WouldBlock::Argon2)
    );
    f.vault.authorize(token, READ, &none()).unwrap();
    let Attempt::Ready(Ok(view)) = f.vault.try_authorize_view(token, READ, &none()) else {
        panic!("a verified key's free call is decided inline");
    };
    let Attempt::Ready(Ok(grant)) = f.vault.try_authorize(token, READ, &none()) else {
        panic!("a verified key's free call is decided inline");
    };
    assert_eq!(fields(&view), grant);
    assert_eq!(
        f.vault
            .try_authorize_view(token, SEND, &none())
            .would_block(),
        Some(WouldBlock::Commit)
    );
    assert_eq!(f.vault.balance("acct_42").unwrap().credits, 10);
}
