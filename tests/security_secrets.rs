//! The argon2 guards: a bounded argon2 queue, a process budget of failed verifications,
//! the failed-secret memory that keeps a stranger from locking a key's owner out, and
//! argon2 parameters that only ever get stronger.

mod common;

use std::path::Path;
use std::sync::Barrier;

use common::TestClock;
use keyledger::{
    Argon2Params, AuditQuery, AuthorizeOptions, Error, NewKey, SecretToken, Target, ThrottleConfig,
    Vault, VaultOptions,
};

const X: Target<'static> = Target::Scope("x");

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

/// Parameters stronger than `INSECURE_FAST` and still cheap (test builds accept them).
const MID: Argon2Params = Argon2Params {
    m_kib: 64,
    t: 2,
    p: 1,
};

fn open(path: &Path, clock: &TestClock, throttle: ThrottleConfig) -> Vault {
    Vault::open_with(
        path,
        VaultOptions {
            throttle,
            ..common::options_with_clock(clock)
        },
    )
    .unwrap()
}

/// A vault with an account and `n` keys (scope `x`), closed again so that every later
/// handle is a fresh worker that has verified nothing yet.
fn vault_with_keys(n: usize) -> (tempfile::TempDir, std::path::PathBuf, Vec<SecretToken>) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "v.redb");
    let v = Vault::open_with(&path, common::options()).unwrap();
    v.create_account("a", 0, None).unwrap();
    let tokens = (0..n)
        .map(|i| {
            v.create_key(NewKey::new("a", format!("k{i}"), ["x"]))
                .unwrap()
                .0
        })
        .collect();
    v.close().unwrap();
    (dir, path, tokens)
}

/// A well-formed token for `t`'s key_id with a fresh (wrong) secret.
fn wrong_for(t: &SecretToken) -> String {
    let p = keyledger::token::parse(t.expose()).unwrap();
    keyledger::token::mint(p.prefix, p.key_id)
        .unwrap()
        .to_string()
}

/// Regression (the owner lockout): a dozen wrong secrets against a public key_id, then
/// about one a second, made a freshly started worker answer the owner's correct token
/// with 401 `invalid_api_key`, because the per-key_id throttle refused it without
/// verifying it.
#[test]
fn a_fresh_worker_grants_the_owner_while_a_stranger_floods_the_key_id() {
    let (_dir, path, tokens) = vault_with_keys(1);
    let owner = &tokens[0];
    let clock = TestClock::new();
    let worker = open(&path, &clock, ThrottleConfig::default());
    let mut verified_wrong = 0;
    for i in 0..30 {
        if i >= 12 {
            clock.advance(1_000); // about one a second after the first dozen
        }
        match worker.authorize(&wrong_for(owner), X, &none()) {
            Err(Error::InvalidApiKey) => verified_wrong += 1,
            other => panic!("a wrong secret within the budget is verified, got {other:?}"),
        }
    }
    // Every 401 was an argon2 verdict, none a refusal of an unchecked secret.
    assert_eq!(worker.stats().argon2_runs, verified_wrong);
    worker
        .authorize(owner.expose(), X, &none())
        .expect("the owner's correct token is granted by a fresh worker");
    // And by another fresh worker opened after the flood.
    let next = open(&path, &clock, ThrottleConfig::default());
    next.authorize(owner.expose(), X, &none()).unwrap();
}

/// A secret proved wrong once is refused again without argon2, however often it repeats.
#[test]
fn the_same_wrong_secret_runs_argon2_once() {
    let (_dir, path, tokens) = vault_with_keys(1);
    let clock = TestClock::new();
    let v = open(&path, &clock, ThrottleConfig::default());
    let wrong = wrong_for(&tokens[0]);
    for _ in 0..100 {
        assert_eq!(
            v.authorize(&wrong, X, &none()).unwrap_err(),
            Error::InvalidApiKey
        );
    }
    let s = v.stats();
    assert_eq!(s.argon2_runs, 1);
    assert_eq!(s.throttled, 99);
    // Another handle (another process) has its own memory: one argon2 there too.
    let other = open(&path, &clock, ThrottleConfig::default());
    for _ in 0..10 {
        assert!(other.authorize(&wrong, X, &none()).is_err());
    }
    assert_eq!(other.stats().argon2_runs, 1);
    // The owner is unaffected.
    v.authorize(tokens[0].expose(), X, &none()).unwrap();
}

/// Regression (argon2 floods): wrong secrets spread over many key_ids each ran argon2,
/// with no bound per process. Now a process budget of failed verifications is spent, and
/// then a secret that was not verified is refused with 429 `too_many_attempts` and a
/// `retry_after` — never with 401, which would tell a client its key is dead.
#[test]
fn a_spent_budget_refuses_unverified_secrets_with_429_never_401() {
    let (_dir, path, tokens) = vault_with_keys(8);
    let clock = TestClock::new();
    let v = open(
        &path,
        &clock,
        ThrottleConfig {
            budget_burst: 5,
            budget_per_second: 1.0,
            ..ThrottleConfig::default()
        },
    );
    let first_wrong = wrong_for(&tokens[0]);
    assert_eq!(
        v.authorize(&first_wrong, X, &none()).unwrap_err(),
        Error::InvalidApiKey
    );
    for t in &tokens[1..5] {
        assert_eq!(
            v.authorize(&wrong_for(t), X, &none()).unwrap_err(),
            Error::InvalidApiKey
        );
    }
    assert_eq!(v.stats().argon2_runs, 5);
    // The budget is spent: neither a stranger nor an owner gets an argon2 run now.
    let e = v.authorize(&wrong_for(&tokens[5]), X, &none()).unwrap_err();
    assert_eq!(e, Error::TooManyAttempts { retry_after: 1 });
    assert_eq!(e.status(), 429);
    assert_eq!(e.code(), "too_many_attempts");
    assert_eq!(e.retry_after(), Some(1));
    let owner = v.authorize(tokens[6].expose(), X, &none()).unwrap_err();
    assert_eq!(owner, Error::TooManyAttempts { retry_after: 1 });
    assert_eq!(v.stats().argon2_runs, 5);
    // A secret already proved wrong is still refused as wrong (it was verified).
    assert_eq!(
        v.authorize(&first_wrong, X, &none()).unwrap_err(),
        Error::InvalidApiKey
    );
    // The refusals are audited with their code.
    let refused = v
        .audit(&AuditQuery {
            action: Some("auth_refused".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert!(
        refused
            .iter()
            .any(|e| e.details.to_string().contains("too_many_attempts")),
        "{refused:?}"
    );
    // A second later the budget has a token again: the owner is verified and granted.
    clock.advance(1_000);
    v.authorize(tokens[6].expose(), X, &none()).unwrap();
    // A right secret does not spend the budget: the next owner needs no wait either.
    v.authorize(tokens[7].expose(), X, &none()).unwrap();
}

/// One flooded key_id (past its own burst) may only use the upper half of the process
/// budget, so the owners of other keys can still be verified.
#[test]
fn a_flooded_key_id_leaves_half_the_budget_to_other_keys() {
    let (_dir, path, tokens) = vault_with_keys(2);
    let clock = TestClock::new();
    let v = open(
        &path,
        &clock,
        ThrottleConfig {
            burst: 2,
            per_second: 0.0,
            budget_burst: 10,
            budget_per_second: 0.0,
        },
    );
    let mut codes = Vec::new();
    for _ in 0..20 {
        codes.push(v.authorize(&wrong_for(&tokens[0]), X, &none()).unwrap_err());
    }
    let verified = codes.iter().filter(|e| **e == Error::InvalidApiKey).count();
    assert_eq!(verified, 5, "{codes:?}");
    assert!(codes[5..]
        .iter()
        .all(|e| matches!(e, Error::TooManyAttempts { .. })));
    // The other key's owner still has the lower half.
    v.authorize(tokens[1].expose(), X, &none()).unwrap();
}

/// Regression: `Limiter::acquire` waited forever, so a flood of cold verifications queued
/// threads without limit. With no waiting room, a verification that finds the argon2 slot
/// busy is refused at once with 429.
#[test]
fn a_full_argon2_queue_refuses_at_once_with_too_many_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "v.redb");
    // Costly enough (tens of ms) that the threads below meet at the one argon2 slot.
    let slow = Argon2Params {
        m_kib: 2048,
        t: 1,
        p: 1,
    };
    let v = Vault::open_with(
        &path,
        VaultOptions {
            argon2: Some(slow),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let tokens: Vec<SecretToken> = (0..4)
        .map(|i| {
            v.create_key(NewKey::new("a", format!("k{i}"), ["x"]))
                .unwrap()
                .0
        })
        .collect();
    v.close().unwrap();
    let worker = Vault::open_with(
        &path,
        VaultOptions {
            argon2_concurrency: 1,
            argon2_queue: 0,
            ..VaultOptions::default()
        },
    )
    .unwrap();
    let barrier = Barrier::new(tokens.len());
    let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (worker, barrier) = (&worker, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    worker.authorize(t.expose(), X, &none()).map(|_| ())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::TooManyAttempts { retry_after: 1 })))
        .count();
    assert!(refused >= 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(Error::TooManyAttempts { .. }))),
        "never another refusal: {results:?}"
    );
    // Refused owners retry and get in; the refusals spent nothing.
    for t in &tokens {
        worker.authorize(t.expose(), X, &none()).unwrap();
    }
}

/// The default argon2 cap leaves the host a core: half the cores, at least 1.
#[test]
fn the_default_argon2_cap_is_below_the_core_count() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cap = VaultOptions::default().argon2_concurrency;
    assert_eq!(cap, (cores / 2).max(1));
    assert!(cap < cores || cores == 1, "cap {cap} with {cores} cores");
}

fn file_contains(path: &Path, needle: &str) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A vault created with `MID` parameters, one key: (dir, path, token).
fn mid_vault() -> (tempfile::TempDir, std::path::PathBuf, SecretToken) {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "v.redb");
    let v = Vault::open_with(
        &path,
        VaultOptions {
            argon2: Some(MID),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    v.close().unwrap();
    assert!(file_contains(&path, "$m=64,t=2,p=1$"));
    (dir, path, t)
}

/// Regression (the downgrade): any opener's `argon2` option was stored for the whole
/// vault, and verification rehashed in either direction, so one worker opened with weak
/// parameters rewrote every key's hash to them over time.
#[test]
fn an_opener_cannot_downgrade_the_vault_argon2_params() {
    let (_dir, path, t) = mid_vault();
    let weak_opener = Vault::open_with(
        &path,
        VaultOptions {
            argon2: Some(Argon2Params::INSECURE_FAST),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        weak_opener.argon2_params(),
        MID,
        "the stored parameters win"
    );
    weak_opener.authorize(t.expose(), X, &none()).unwrap();
    // A key created by this opener gets the vault's parameters too.
    weak_opener
        .create_key(NewKey::new("a", "k2", ["x"]))
        .unwrap();
    weak_opener.close().unwrap();
    assert!(
        !file_contains(&path, "$m=8,t=1,p=1$"),
        "a hash was written with the opener's weak parameters"
    );
    let again = Vault::open(&path).unwrap();
    assert_eq!(again.argon2_params(), MID);
    assert!(again
        .audit(&AuditQuery {
            action: Some("argon2_params_changed".into()),
            ..AuditQuery::default()
        })
        .unwrap()
        .is_empty());
}

/// Changing the parameters is an explicit, audited call; a verified secret is rehashed
/// towards stronger parameters only.
#[test]
fn set_argon2_params_is_audited_and_hashes_only_get_stronger() {
    let (_dir, path, t) = mid_vault();
    let v = Vault::open_with(&path, VaultOptions::default()).unwrap();
    let stronger = Argon2Params {
        m_kib: 128,
        t: 2,
        p: 1,
    };
    v.set_argon2_params(stronger).unwrap();
    assert_eq!(v.argon2_params(), stronger);
    let entries = v
        .audit(&AuditQuery {
            action: Some("argon2_params_changed".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        entries[0].details,
        serde_json::json!({"from": {"m_kib": 64, "t": 2, "p": 1}, "to": {"m_kib": 128, "t": 2, "p": 1}})
    );
    // Verifying the key rehashes it with the stronger parameters.
    v.authorize(t.expose(), X, &none()).unwrap();
    v.close().unwrap();
    assert!(file_contains(&path, "$m=128,t=2,p=1$"));
    // Back down: new hashes use the weaker parameters, the existing hash stays stronger.
    let v = Vault::open(&path).unwrap();
    assert_eq!(
        v.argon2_params(),
        stronger,
        "another process reads them at open"
    );
    let weaker = Argon2Params {
        m_kib: 96,
        t: 2,
        p: 1,
    };
    v.set_argon2_params(weaker).unwrap();
    let fresh = Vault::open(&path).unwrap();
    assert_eq!(fresh.argon2_params(), weaker);
    fresh.authorize(t.expose(), X, &none()).unwrap();
    fresh.close().unwrap();
    assert!(
        !file_contains(&path, "$m=96,t=2,p=1$"),
        "a hash was rehashed towards weaker parameters"
    );
    // Setting the same parameters again changes nothing and audits nothing.
    v.set_argon2_params(weaker).unwrap();
    assert_eq!(
        v.audit(&AuditQuery {
            action: Some("argon2_params_changed".into()),
            ..AuditQuery::default()
        })
        .unwrap()
        .len(),
        2
    );
    // Bad parameters change nothing.
    for bad in [
        Argon2Params {
            m_kib: 64,
            t: 0,
            p: 1,
        },
        Argon2Params {
            m_kib: 64,
            t: 2,
            p: 0,
        },
    ] {
        assert_eq!(
            v.set_argon2_params(bad).unwrap_err().code(),
            "invalid_argument"
        );
    }
    assert_eq!(v.argon2_params(), weaker);
}

/// The opener's `argon2` option still sets the parameters of a vault it creates.
#[test]
fn the_opener_argon2_option_applies_to_a_new_vault() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "v.redb");
    let v = Vault::open_with(
        &path,
        VaultOptions {
            argon2: Some(MID),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    assert_eq!(v.argon2_params(), MID);
    v.close().unwrap();
    assert_eq!(Vault::open(&path).unwrap().argon2_params(), MID);
    // A vault created without the option stores the defaults.
    let other = common::location(&dir, "w.redb");
    Vault::open(&other).unwrap().close().unwrap();
    let w = Vault::open_with(
        &other,
        VaultOptions {
            argon2: Some(MID),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    assert_eq!(w.argon2_params(), Argon2Params::default());
}
