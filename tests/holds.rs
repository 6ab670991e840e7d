//! Holds: reserve, settle, release and TTL expiry, on a real vault (a redb file, or a
//! PostgreSQL database when the suites run over it), with two handles on one file for
//! "exactly once", and through `migrate`.

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{options_with_clock, Fixture};
use keyledger::{
    AuditQuery, AuthorizeOptions, Error, HoldState, SettleOptions, Target, Vault, VaultOptions,
    WouldBlock,
};

const MIN: u64 = 60_000;

fn audit_count(v: &Vault, action: &str) -> usize {
    v.audit(&AuditQuery {
        action: Some(action.into()),
        limit: Some(10_000),
        ..AuditQuery::default()
    })
    .unwrap()
    .len()
}

fn parts(v: &Vault, account: &str) -> (u64, u64, u64) {
    let b = v.balance(account).unwrap();
    assert_eq!(b.credits, b.available + b.held, "{b:?}");
    (b.credits, b.held, b.available)
}

#[test]
fn a_hold_reserves_credits_and_its_settle_charges_the_actual_cost_and_gives_back_the_rest() {
    let (f, _, _) = Fixture::seeded(100, &["*"]);
    let v = &f.vault;
    let h = v.hold("acct_42", 30, 10 * MIN, None).unwrap();
    assert_eq!(h.state, HoldState::Active);
    assert_eq!((h.amount, h.charged, h.replayed), (30, 0, false));
    assert!(h.hold_id.starts_with("hold_") && h.hold_id.len() == 29);
    assert_eq!(parts(v, "acct_42"), (100, 30, 70));
    assert_eq!(v.holds(Some("acct_42")).unwrap(), vec![h.clone()]);
    let s = v.settle(&h.hold_id, 12, &SettleOptions::default()).unwrap();
    assert_eq!(
        (s.state, s.charged, s.replayed),
        (HoldState::Settled, 12, false)
    );
    assert_eq!(parts(v, "acct_42"), (88, 0, 88));
    assert!(v.holds(Some("acct_42")).unwrap().is_empty());
    assert_eq!(v.balance("acct_42").unwrap().total_credits, 100);
    assert_eq!(audit_count(v, "hold_created"), 1);
    assert_eq!(audit_count(v, "hold_settled"), 1);
}

#[test]
fn held_credits_cannot_be_spent_and_a_hold_beyond_the_available_credits_is_402() {
    let (f, token, _) = Fixture::seeded(10, &["*"]);
    let v = &f.vault;
    let e = v.hold("acct_42", 11, MIN, None).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InsufficientCredits {
                credits: 10,
                required: 11
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.status(), 402);
    assert_eq!(parts(v, "acct_42"), (10, 0, 10));
    v.hold("acct_42", 8, MIN, None).unwrap();
    let e = v.debit("acct_42", 3, None).unwrap_err();
    assert_eq!(e.code(), "insufficient_credits", "{e}");
    let e = v
        .authorize(
            token.expose(),
            Target::Scope("x"),
            &AuthorizeOptions {
                cost: Some(3),
                ..AuthorizeOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 402);
    let b = v.debit("acct_42", 2, None).unwrap();
    assert_eq!((b.credits, b.held, b.available), (8, 8, 0));
    assert_eq!(parts(v, "acct_42"), (8, 8, 0));
}

#[test]
fn release_gives_every_credit_back_once_and_a_finished_hold_refuses_another_outcome() {
    let (f, _, _) = Fixture::seeded(50, &["*"]);
    let v = &f.vault;
    let h = v.hold("acct_42", 20, MIN, None).unwrap();
    let r = v.release(&h.hold_id).unwrap();
    assert_eq!((r.state, r.replayed), (HoldState::Released, false));
    assert_eq!(parts(v, "acct_42"), (50, 0, 50));
    let again = v.release(&h.hold_id).unwrap();
    assert_eq!((again.state, again.replayed), (HoldState::Released, true));
    assert_eq!(
        parts(v, "acct_42"),
        (50, 0, 50),
        "a second release moved credits"
    );
    let e = v
        .settle(&h.hold_id, 5, &SettleOptions::default())
        .unwrap_err();
    assert_eq!((e.code(), e.status()), ("hold_settled", 409), "{e}");
    assert_eq!(audit_count(v, "hold_released"), 1);

    // A second settle: the same amount answers the recorded outcome; another is refused.
    let h = v.hold("acct_42", 20, MIN, None).unwrap();
    let key = SettleOptions {
        idempotency_key: Some("settle-1"),
        ..SettleOptions::default()
    };
    v.settle(&h.hold_id, 7, &key).unwrap();
    let same = v.settle(&h.hold_id, 7, &key).unwrap();
    assert_eq!((same.charged, same.replayed), (7, true));
    let same = v.settle(&h.hold_id, 7, &SettleOptions::default()).unwrap();
    assert!(same.replayed);
    let e = v.settle(&h.hold_id, 8, &key).unwrap_err();
    assert_eq!(e.code(), "idempotency_conflict", "{e}");
    let e = v
        .settle(&h.hold_id, 8, &SettleOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "hold_settled", "{e}");
    let e = v.release(&h.hold_id).unwrap_err();
    assert_eq!(e.code(), "hold_settled", "{e}");
    assert_eq!(parts(v, "acct_42"), (43, 0, 43));
    assert_eq!(audit_count(v, "hold_settled"), 1);
}

#[test]
fn a_settle_above_the_hold_needs_allow_over_and_the_available_credits() {
    let (f, _, _) = Fixture::seeded(30, &["*"]);
    let v = &f.vault;
    let h = v.hold("acct_42", 10, MIN, None).unwrap();
    let e = v
        .settle(&h.hold_id, 11, &SettleOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument", "{e}");
    let over = SettleOptions {
        allow_over: true,
        ..SettleOptions::default()
    };
    let e = v.settle(&h.hold_id, 31, &over).unwrap_err();
    assert!(
        matches!(
            e,
            Error::InsufficientCredits {
                credits: 20,
                required: 21
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        parts(v, "acct_42"),
        (30, 10, 20),
        "a refused settle changed the balance"
    );
    let s = v.settle(&h.hold_id, 25, &over).unwrap();
    assert_eq!(s.charged, 25);
    assert_eq!(parts(v, "acct_42"), (5, 0, 5));
}

#[test]
fn a_hold_with_an_idempotency_key_is_made_once_and_a_reuse_for_another_hold_is_a_conflict() {
    let (f, _, _) = Fixture::seeded(100, &["*"]);
    let v = &f.vault;
    let a = v.hold("acct_42", 40, MIN, Some("job-7")).unwrap();
    let b = v.hold("acct_42", 40, MIN, Some("job-7")).unwrap();
    assert_eq!(a.hold_id, b.hold_id);
    assert!(!a.replayed && b.replayed);
    assert_eq!(parts(v, "acct_42"), (100, 40, 60));
    let e = v.hold("acct_42", 41, MIN, Some("job-7")).unwrap_err();
    assert_eq!(e.code(), "idempotency_conflict", "{e}");
    // Settled, the same call still answers the same hold (nothing reserved again).
    v.settle(&a.hold_id, 40, &SettleOptions::default()).unwrap();
    let c = v.hold("acct_42", 40, MIN, Some("job-7")).unwrap();
    assert_eq!(
        (c.hold_id, c.state, c.replayed),
        (a.hold_id, HoldState::Settled, true)
    );
    assert_eq!(parts(v, "acct_42"), (60, 0, 60));
    assert_eq!(audit_count(v, "hold_created"), 1);
}

#[test]
fn bad_arguments_are_refused_and_change_nothing() {
    let (f, _, _) = Fixture::seeded(100, &["*"]);
    let v = &f.vault;
    for (amount, ttl) in [(0, MIN), (1, 0), (1, keyledger::MAX_HOLD_TTL_MS + 1)] {
        let e = v.hold("acct_42", amount, ttl, None).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
    }
    assert_eq!(
        v.hold("nobody", 1, MIN, None).unwrap_err().code(),
        "not_found"
    );
    for bad in [
        "",
        "hold_",
        "hold_XYZ",
        "hold_0123456789abcdef0123456G",
        "x",
    ] {
        let e = v.settle(bad, 1, &SettleOptions::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{bad:?}: {e}");
        assert_eq!(v.release(bad).unwrap_err().code(), "invalid_argument");
    }
    let unknown = "hold_0123456789abcdef01234567";
    let e = v.release(unknown).unwrap_err();
    assert_eq!((e.code(), e.status()), ("hold_not_found", 404), "{e}");
    assert_eq!(
        v.settle(unknown, 1, &SettleOptions::default())
            .unwrap_err()
            .code(),
        "hold_not_found"
    );
    assert_eq!(parts(v, "acct_42"), (100, 0, 100));
    assert_eq!(audit_count(v, "hold_created"), 0);
}

#[test]
fn a_hold_past_its_ttl_is_released_once_and_can_no_longer_be_settled() {
    let (f, _, _) = Fixture::seeded(100, &["*"]);
    let v = &f.vault;
    let h = v.hold("acct_42", 60, MIN, None).unwrap();
    f.clock.advance(MIN as i64 - 1);
    assert_eq!(parts(v, "acct_42"), (100, 60, 40));
    f.clock.advance(1);
    assert_eq!(parts(v, "acct_42"), (100, 0, 100));
    assert_eq!(v.get_hold(&h.hold_id).unwrap().state, HoldState::Expired);
    let e = v
        .settle(&h.hold_id, 1, &SettleOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "hold_settled", "{e}");
    assert!(e.to_string().contains("TTL"), "{e}");
    let r = v.release(&h.hold_id).unwrap();
    assert_eq!((r.state, r.replayed), (HoldState::Expired, true));
    assert_eq!(parts(v, "acct_42"), (100, 0, 100));
    assert_eq!(audit_count(v, "hold_expired"), 1);
}

#[test]
fn a_debit_short_of_credits_first_gets_back_what_expired_holds_reserved() {
    let (f, _, _) = Fixture::seeded(10, &["*"]);
    let v = &f.vault;
    v.hold("acct_42", 10, MIN, None).unwrap();
    f.clock.advance(MIN as i64);
    // No balance read in between: the debit itself releases the expired hold.
    let b = v.debit("acct_42", 4, None).unwrap();
    assert_eq!((b.credits, b.held, b.available), (6, 0, 6));
    assert_eq!(audit_count(v, "hold_expired"), 1);
}

/// Two handles on one file, racing to expire the same holds (balance reads, hold lists,
/// settles and releases of each): every hold is released exactly once.
#[test]
fn two_handles_on_one_file_expire_each_hold_exactly_once() {
    let f = Fixture::new();
    let v1 = Arc::new(f.vault);
    let v2 = Arc::new(Vault::open_with(&f.path, options_with_clock(&f.clock)).unwrap());
    v1.create_account("a", 1_000, None).unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(v1.hold("a", 10 + i, MIN, None).unwrap().hold_id);
    }
    assert_eq!(parts(&v2, "a").1, (10..30).sum::<u64>());
    f.clock.advance(MIN as i64);
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let v = if t % 2 == 0 { v1.clone() } else { v2.clone() };
            let (barrier, ids) = (barrier.clone(), ids.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for id in &ids {
                    match t {
                        0 => drop(v.balance("a").unwrap()),
                        1 => drop(v.holds(None).unwrap()),
                        2 => {
                            let e = v.settle(id, 1, &SettleOptions::default()).unwrap_err();
                            assert_eq!(e.code(), "hold_settled", "{e}");
                        }
                        _ => assert_eq!(v.release(id).unwrap().state, HoldState::Expired),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(parts(&v1, "a"), (1_000, 0, 1_000));
    assert_eq!(parts(&v2, "a"), (1_000, 0, 1_000));
    assert_eq!(audit_count(&v1, "hold_expired"), 20);
    common::assert_no_audit_gap(&v1);
}

/// Nobody calls: the background maintenance of an open handle releases the hold.
#[test]
fn the_background_maintenance_releases_an_expired_hold_without_any_call() {
    let f = Fixture::new();
    let v = Vault::open_with(
        &f.path,
        VaultOptions {
            flush_interval: Duration::from_millis(20),
            ..options_with_clock(&f.clock)
        },
    )
    .unwrap();
    v.create_account("a", 100, None).unwrap();
    let h = v.hold("a", 70, MIN, None).unwrap();
    f.clock.advance(MIN as i64);
    let deadline = Instant::now() + Duration::from_secs(10);
    while audit_count(&v, "hold_expired") == 0 {
        assert!(
            Instant::now() < deadline,
            "the hold was not released in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Read without the lazy path: the stored record is already finished.
    assert_eq!(v.get_hold(&h.hold_id).unwrap().state, HoldState::Expired);
    assert_eq!(parts(&v, "a"), (100, 0, 100));
    assert_eq!(audit_count(&v, "hold_expired"), 1);
}

#[test]
fn authorize_with_a_hold_grants_with_its_id_and_refuses_hold_with_cost() {
    let (f, token, key_id) = Fixture::seeded(100, &["*"]);
    let v = &f.vault;
    let opts = AuthorizeOptions {
        hold: Some(25),
        hold_ttl_ms: Some(5 * MIN),
        ..AuthorizeOptions::default()
    };
    // A hold always writes: the non-blocking call defers it.
    assert!(matches!(
        v.try_authorize(token.expose(), Target::Scope("llm"), &opts),
        keyledger::Attempt::WouldBlock(WouldBlock::Commit | WouldBlock::Argon2)
    ));
    let g = v
        .authorize(
            token.expose(),
            Target::Route {
                method: "POST",
                path: "/api/v1/messaging/send",
            },
            &opts,
        )
        .unwrap();
    let id = g.hold_id.clone().expect("hold_id");
    assert_eq!(
        (g.charged, g.credits),
        (0, 75),
        "the route's cost is not charged with a hold"
    );
    let h = v.get_hold(&id).unwrap();
    assert_eq!((h.amount, h.key_id.as_deref()), (25, Some(key_id.as_str())));
    assert_eq!(h.expires_at - h.created_at, (5 * MIN) as i64);
    assert!(matches!(
        v.try_authorize(token.expose(), Target::Scope("llm"), &opts),
        keyledger::Attempt::WouldBlock(WouldBlock::Commit)
    ));
    v.settle(&id, 9, &SettleOptions::default()).unwrap();
    assert_eq!(parts(v, "acct_42"), (91, 0, 91));

    // Idempotent: the same key answers the same hold.
    let idem = AuthorizeOptions {
        idempotency_key: Some("req-1"),
        ..opts
    };
    let a = v
        .authorize(token.expose(), Target::Scope("llm"), &idem)
        .unwrap();
    let b = v
        .authorize(token.expose(), Target::Scope("llm"), &idem)
        .unwrap();
    assert_eq!(a.hold_id, b.hold_id);
    assert!(b.replayed);
    assert_eq!(parts(v, "acct_42"), (91, 25, 66));

    for bad in [
        AuthorizeOptions {
            hold: Some(1),
            cost: Some(1),
            ..AuthorizeOptions::default()
        },
        AuthorizeOptions {
            hold: Some(0),
            ..AuthorizeOptions::default()
        },
        AuthorizeOptions {
            hold_ttl_ms: Some(1),
            ..AuthorizeOptions::default()
        },
    ] {
        let e = v
            .authorize(token.expose(), Target::Scope("llm"), &bad)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
    }
    let e = v
        .authorize(
            token.expose(),
            Target::Scope("llm"),
            &AuthorizeOptions {
                hold: Some(1_000),
                ..AuthorizeOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 402);
    assert_eq!(parts(v, "acct_42"), (91, 25, 66));
}

#[test]
fn holds_survive_a_migration_and_settle_on_the_copy() {
    // Two files, whatever backend the other suites run over.
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    let clock = common::TestClock::new();
    let (active, settled) = {
        let v = Vault::open_with(&src, options_with_clock(&clock)).unwrap();
        v.create_account("a", 100, None).unwrap();
        let active = v.hold("a", 30, MIN, Some("k1")).unwrap();
        let settled = v.hold("a", 10, MIN, None).unwrap();
        v.settle(&settled.hold_id, 4, &SettleOptions::default())
            .unwrap();
        v.close().unwrap();
        (active, settled)
    };
    let report = keyledger::migrate(
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        &keyledger::MigrateOptions::default(),
    )
    .unwrap();
    assert!(report.verified);
    assert!(report.tables.contains(&("holds", 2)), "{:?}", report.tables);
    let v = Vault::open_with(&dst, options_with_clock(&clock)).unwrap();
    assert_eq!(parts(&v, "a"), (96, 30, 66));
    assert_eq!(v.holds(Some("a")).unwrap(), vec![active.clone()]);
    assert_eq!(v.get_hold(&settled.hold_id).unwrap().charged, 4);
    // The idempotency key came along: the same call answers the same hold.
    assert!(v.hold("a", 30, MIN, Some("k1")).unwrap().replayed);
    v.settle(&active.hold_id, 30, &SettleOptions::default())
        .unwrap();
    assert_eq!(parts(&v, "a"), (66, 0, 66));
}
