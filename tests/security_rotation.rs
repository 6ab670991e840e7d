//! Rotation carries every restriction of the old key to its successor, and refuses what
//! would lift one: a suspended customer, an expired trial or a rate-limited tier must not
//! escape with one "roll key" click. Real vault files in temp dirs; time is a parameter.

mod common;

use common::{options_with_clock, Fixture, TestClock, T0};
use keyledger::{
    AuthorizeOptions, Error, LimitOwner, MasterKey, NewKey, Target, Vault, VaultOptions,
};
use serde_json::json;

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

fn invalid_mentioning(r: keyledger::Result<impl std::fmt::Debug>, words: &[&str]) {
    match r {
        Err(Error::InvalidArgument(m)) => {
            for w in words {
                assert!(m.contains(w), "{m:?} does not mention {w:?}");
            }
        }
        other => panic!("expected invalid_argument, got {other:?}"),
    }
}

/// The bug: rotating a disabled key gave an enabled one.
#[test]
fn rotating_a_disabled_key_is_refused_and_mints_nothing() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    f.vault.disable_key(&key_id).unwrap();
    invalid_mentioning(f.vault.rotate_key(&key_id, 60_000), &[&key_id, "disabled"]);
    assert_eq!(f.vault.list_keys(Some("acct_42")).unwrap().len(), 1);
    assert!(f.vault.key(&key_id).unwrap().disabled);
}

/// The bug: rotating an expired key gave a key that never expires.
#[test]
fn rotating_an_expired_key_is_refused_and_mints_nothing() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    f.vault.set_expiry(&key_id, Some(T0 + 1000)).unwrap();
    f.clock.advance(1000);
    invalid_mentioning(f.vault.rotate_key(&key_id, 60_000), &[&key_id, "expired"]);
    assert_eq!(f.vault.list_keys(Some("acct_42")).unwrap().len(), 1);
}

/// A key that will expire hands its expiry to its successor.
#[test]
fn the_successor_keeps_the_expiry_and_metadata() {
    let f = Fixture::new();
    f.vault.create_account("acct_42", 10, None).unwrap();
    common::seed_routes(&f.vault);
    let (_, info) = f
        .vault
        .create_key(
            NewKey::new("acct_42", "trial", ["sms:send"])
                .expires_at(T0 + 86_400_000)
                .metadata(json!({"plan": "trial"})),
        )
        .unwrap();
    let (new, next) = f.vault.rotate_key(&info.key_id, 60_000).unwrap();
    assert_eq!(next.expires_at, Some(T0 + 86_400_000));
    assert_eq!(next.metadata, json!({"plan": "trial"}));
    assert!(!next.disabled);
    f.clock.set(T0 + 86_400_000);
    assert_eq!(
        f.vault.authorize(new.expose(), SEND, &none()).unwrap_err(),
        Error::ApiKeyExpired
    );
}

/// The bug: the key's own rate limits were dropped, so 2/min became unlimited.
#[test]
fn the_successor_keeps_the_keys_own_rate_limits() {
    let (f, _, key_id) = Fixture::seeded(100, &["sms:send"]);
    f.vault
        .set_ratelimit(LimitOwner::Key(&key_id), "free-tier", 2, 60_000, true)
        .unwrap();
    f.vault
        .set_ratelimit(LimitOwner::Key(&key_id), "named", 5, 60_000, false)
        .unwrap();
    let (new, next) = f.vault.rotate_key(&key_id, 0).unwrap();
    let limits = f.vault.ratelimits(LimitOwner::Key(&next.key_id)).unwrap();
    assert_eq!(
        f.vault.ratelimits(LimitOwner::Key(&key_id)).unwrap(),
        limits
    );
    assert_eq!(limits.len(), 2);
    for _ in 0..2 {
        f.vault.authorize(new.expose(), SEND, &none()).unwrap();
    }
    let e = f.vault.authorize(new.expose(), SEND, &none()).unwrap_err();
    assert_eq!(e.code(), "rate_limited");
}

/// The bug: a key in its grace period could be rotated again, giving two live children.
#[test]
fn a_key_already_rotated_cannot_be_rotated_again() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    let (_, next) = f.vault.rotate_key(&key_id, 3_600_000).unwrap();
    invalid_mentioning(
        f.vault.rotate_key(&key_id, 3_600_000),
        &[&key_id, &next.key_id, "rotate that key"],
    );
    assert_eq!(f.vault.list_keys(Some("acct_42")).unwrap().len(), 2);
    // Its successor can be rotated.
    let (_, third) = f.vault.rotate_key(&next.key_id, 0).unwrap();
    assert_eq!(third.rotated_from.as_deref(), Some(next.key_id.as_str()));
}

#[test]
fn a_grace_beyond_the_supported_time_range_is_refused() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    invalid_mentioning(f.vault.rotate_key(&key_id, i64::MAX), &["grace"]);
    assert_eq!(f.vault.list_keys(Some("acct_42")).unwrap().len(), 1);
}

/// A signing key's successor requires signatures too: it gets its own signing secret
/// (which needs the master key), and an unsigned call is refused.
#[test]
fn the_successor_of_a_signing_key_requires_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let clock = TestClock::new();
    let master = MasterKey::generate().unwrap();
    let v = Vault::open_with(
        &path,
        VaultOptions {
            master_key: Some(master.clone()),
            ..options_with_clock(&clock)
        },
    )
    .unwrap();
    v.create_account("a", 10, None).unwrap();
    v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
        .unwrap();
    let (_, info) = v
        .create_key(NewKey::new("a", "signed", ["sms:send"]).signing(true))
        .unwrap();
    let (new, next) = v.rotate_key(&info.key_id, 0).unwrap();
    assert!(next.signing);
    assert!(new.signing_secret().is_some());
    assert_eq!(
        v.authorize(new.expose(), SEND, &none()).unwrap_err().code(),
        "invalid_signature"
    );
    v.close().unwrap();
    drop(v);
    // Without the master key the successor could not get a signing secret: refused.
    let v = Vault::open_with(&path, options_with_clock(&clock)).unwrap();
    let e = v.rotate_key(&next.key_id, 0).unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert_eq!(v.list_keys(Some("a")).unwrap().len(), 2);
}
