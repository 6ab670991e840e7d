//! Rate limits and refills: rate limits shared by every worker, and credits that refill.

mod common;

use common::{options, reported, run_child, Fixture, T0};
use keyledger::{
    AuditQuery, AuthorizeOptions, Error, LimitOwner, NewKey, RefillInterval, Target, Vault,
};

const X: Target<'static> = Target::Scope("x");

fn at(now: i64) -> AuthorizeOptions<'static> {
    AuthorizeOptions {
        now: Some(now),
        ..AuthorizeOptions::default()
    }
}

fn key(f: &Fixture, account: &str) -> (String, String) {
    let (t, info) = f
        .vault
        .create_key(NewKey::new(account, "k", ["x"]))
        .unwrap();
    (t.expose().to_string(), info.key_id)
}

#[test]
fn ten_per_second_refuses_the_eleventh_call_and_recovers() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "per_second", 10, 1000, true)
        .unwrap();
    for i in 0..10 {
        let g = f.vault.authorize(&t, X, &at(T0)).unwrap();
        assert_eq!(g.ratelimits.len(), 1);
        assert_eq!(g.ratelimits[0].name, "per_second");
        assert_eq!(g.ratelimits[0].max, 10);
        assert_eq!(g.ratelimits[0].remaining, 9 - i);
    }
    let e = f.vault.authorize(&t, X, &at(T0)).unwrap_err();
    assert_eq!((e.status(), e.code()), (429, "rate_limited"));
    let body = e.body();
    assert_eq!(body["limit"], "per_second");
    assert_eq!(body["max"], 10);
    assert_eq!(body["remaining"], 0);
    assert_eq!(body["retry_after"], 1);
    assert_eq!(body["reset_ms"], T0 + 100);
    assert!(f.vault.authorize(&t, X, &at(T0 + 100)).is_ok());
    assert!(f.vault.authorize(&t, X, &at(T0 + 1100)).is_ok());
}

#[test]
fn an_account_limit_is_shared_by_all_its_keys() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t1, _) = key(&f, "a");
    let (t2, _) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Account("a"), "per_minute", 3, 60_000, true)
        .unwrap();
    f.vault.authorize(&t1, X, &at(T0)).unwrap();
    f.vault.authorize(&t2, X, &at(T0)).unwrap();
    f.vault.authorize(&t1, X, &at(T0)).unwrap();
    assert!(matches!(
        f.vault.authorize(&t2, X, &at(T0)).unwrap_err(),
        Error::RateLimited { .. }
    ));
}

#[test]
fn a_named_limit_applies_only_when_named_and_an_unknown_name_is_invalid() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "bulk", 1, 60_000, false)
        .unwrap();
    for _ in 0..5 {
        let g = f.vault.authorize(&t, X, &at(T0)).unwrap();
        assert!(g.ratelimits.is_empty());
    }
    let named = AuthorizeOptions {
        limits: Some(&["bulk"]),
        ..at(T0)
    };
    f.vault.authorize(&t, X, &named).unwrap();
    assert!(matches!(
        f.vault.authorize(&t, X, &named).unwrap_err(),
        Error::RateLimited { .. }
    ));
    let unknown = AuthorizeOptions {
        limits: Some(&["nope"]),
        ..at(T0)
    };
    assert!(matches!(
        f.vault.authorize(&t, X, &unknown).unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

#[test]
fn a_call_may_weigh_more_than_one() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "tokens", 100, 60_000, true)
        .unwrap();
    let heavy = AuthorizeOptions {
        limit_cost: Some(60),
        ..at(T0)
    };
    let g = f.vault.authorize(&t, X, &heavy).unwrap();
    assert_eq!(g.ratelimits[0].remaining, 40);
    assert!(f.vault.authorize(&t, X, &heavy).is_err());
    let zero = AuthorizeOptions {
        limit_cost: Some(0),
        ..at(T0)
    };
    assert!(matches!(
        f.vault.authorize(&t, X, &zero).unwrap_err(),
        Error::InvalidArgument(_)
    ));
}

#[test]
fn a_refused_call_charges_nothing_and_consumes_no_limit() {
    let f = Fixture::new();
    f.vault.create_account("a", 1, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "big", 100, 60_000, true)
        .unwrap();
    f.vault
        .set_ratelimit(LimitOwner::Account("a"), "small", 2, 60_000, true)
        .unwrap();
    let cost1 = AuthorizeOptions {
        cost: Some(1),
        ..at(T0)
    };
    let g = f.vault.authorize(&t, X, &cost1).unwrap();
    let big = |g: &keyledger::Grant| {
        g.ratelimits
            .iter()
            .find(|r| r.name == "big")
            .unwrap()
            .remaining
    };
    assert_eq!(big(&g), 99);
    // Refused for credits: neither limit keeps what it took.
    assert!(matches!(
        f.vault.authorize(&t, X, &cost1).unwrap_err(),
        Error::InsufficientCredits { .. }
    ));
    let g = f.vault.authorize(&t, X, &at(T0)).unwrap();
    assert_eq!(big(&g), 98, "the refused call consumed `big`");
    // Now `small` is exhausted: refused by it, and `big` is given back.
    assert!(matches!(
        f.vault.authorize(&t, X, &at(T0)).unwrap_err(),
        Error::RateLimited { ref limit, .. } if limit == "small"
    ));
    f.vault
        .remove_ratelimit(LimitOwner::Account("a"), "small")
        .unwrap();
    let g = f.vault.authorize(&t, X, &at(T0)).unwrap();
    assert_eq!(big(&g), 97);
    assert_eq!(f.vault.balance("a").unwrap().credits, 0);
}

#[test]
fn limits_are_managed_validated_and_audited() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (_, k) = key(&f, "a");
    let bad =
        |r: keyledger::Result<keyledger::RateLimit>| matches!(r, Err(Error::InvalidArgument(_)));
    assert!(bad(f.vault.set_ratelimit(
        LimitOwner::Key(&k),
        "x",
        0,
        1000,
        true
    )));
    assert!(bad(f.vault.set_ratelimit(
        LimitOwner::Key(&k),
        "x",
        1,
        0,
        true
    )));
    assert!(bad(f.vault.set_ratelimit(
        LimitOwner::Key(&k),
        "Bad Name",
        1,
        1000,
        true
    )));
    assert!(bad(f.vault.set_ratelimit(
        LimitOwner::Key(&k),
        "",
        1,
        1000,
        true
    )));
    assert!(matches!(
        f.vault
            .set_ratelimit(LimitOwner::Account("nobody"), "x", 1, 1000, true),
        Err(Error::NotFound(_))
    ));
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "x", 5, 1000, true)
        .unwrap();
    let replaced = f
        .vault
        .set_ratelimit(LimitOwner::Key(&k), "x", 7, 2000, false)
        .unwrap();
    assert_eq!(
        f.vault.ratelimits(LimitOwner::Key(&k)).unwrap(),
        vec![replaced]
    );
    f.vault.remove_ratelimit(LimitOwner::Key(&k), "x").unwrap();
    assert!(matches!(
        f.vault.remove_ratelimit(LimitOwner::Key(&k), "x"),
        Err(Error::NotFound(_))
    ));
    let actions: Vec<String> = f
        .vault
        .audit(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.iter().filter(|a| *a == "ratelimit_set").count() == 2);
    assert!(actions.contains(&"ratelimit_removed".to_string()));
}

#[test]
fn four_processes_share_one_limit_instead_of_each_allowing_it() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "per_minute", 100, 60_000, true)
        .unwrap();
    let env = [
        ("KL_PATH", f.path.display().to_string()),
        ("KL_TOKEN", t.clone()),
    ];
    let children: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run_child("ratelimits::hammer", &env))
        })
        .collect();
    let mut total = 0u64;
    for c in children {
        total += reported(&c.join().unwrap(), "GRANTED");
    }
    // 960 attempts at one instant: exactly the limit, not 4 × 100.
    assert_eq!(total, 100);
}

const DAY: i64 = 86_400_000;

#[test]
fn a_monthly_refill_sets_the_credits_once_per_period() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, _) = key(&f, "a");
    // T0 is 2026-11-23; refill on the 1st of each month.
    let acct = f
        .vault
        .set_refill("a", 500, RefillInterval::Monthly, 1)
        .unwrap();
    assert_eq!(acct.refill.unwrap().amount, 500);
    assert_eq!(
        f.vault.authorize(&t, X, &at(T0)).unwrap().credits,
        0,
        "no refill before the boundary"
    );
    let dec1 = T0 + 8 * DAY; // 2026-12-01
    let g = f.vault.authorize(&t, X, &at(dec1 + 5)).unwrap();
    assert_eq!(g.credits, 500);
    f.vault.debit("a", 100, None).unwrap();
    let g = f.vault.authorize(&t, X, &at(dec1 + 10 * DAY)).unwrap();
    assert_eq!(g.credits, 400, "set once per period, not on every call");
    let refills = f
        .vault
        .audit(&AuditQuery {
            action: Some("credits_refilled".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(refills.len(), 1);
    assert_eq!(refills[0].details["amount"], 500);
    f.vault.clear_refill("a").unwrap();
    let jan1 = dec1 + 31 * DAY;
    assert_eq!(f.vault.authorize(&t, X, &at(jan1)).unwrap().credits, 400);
}

#[test]
fn eight_processes_crossing_a_boundary_refill_exactly_once() {
    let f = Fixture::new();
    f.vault.create_account("a", 3, None).unwrap();
    let (t, _) = key(&f, "a");
    f.vault
        .set_refill("a", 1000, RefillInterval::Daily, 1)
        .unwrap();
    let tomorrow = (T0 / DAY + 1) * DAY + 1;
    let env = [
        ("KL_PATH", f.path.display().to_string()),
        ("KL_TOKEN", t.clone()),
        ("KL_NOW", tomorrow.to_string()),
    ];
    let children: Vec<_> = (0..8)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run_child("ratelimits::cross_the_boundary", &env))
        })
        .collect();
    for c in children {
        c.join().unwrap();
    }
    assert_eq!(f.vault.balance("a").unwrap().credits, 1000 - 8);
    let refills = f
        .vault
        .audit(&AuditQuery {
            action: Some("credits_refilled".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(refills.len(), 1, "{refills:?}");
}

#[test]
fn limits_still_hold_after_a_garbage_sidecar_is_rebuilt() {
    let f = Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let (t, k) = key(&f, "a");
    f.vault
        .set_ratelimit(LimitOwner::Key(&k), "per_second", 2, 1000, true)
        .unwrap();
    f.vault.close().unwrap();
    let shm = f.path.with_extension("redb.shm");
    let len = std::fs::metadata(&shm).unwrap().len() as usize;
    std::fs::write(&shm, vec![0xA5u8; len]).unwrap();
    let v = Vault::open_with(&f.path, options()).unwrap();
    v.authorize(&t, X, &at(T0)).unwrap();
    v.authorize(&t, X, &at(T0)).unwrap();
    assert!(matches!(
        v.authorize(&t, X, &at(T0)).unwrap_err(),
        Error::RateLimited { .. }
    ));
}
