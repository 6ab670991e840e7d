//! Credits under attack: idempotency keys reused for other requests, replays that must
//! not run twice, extreme clock values, and a background flusher that must outlive a bug.
//! Real vault files in temp dirs; time is a parameter.

mod common;

use std::time::{Duration, Instant};

use common::{options_with_clock, Fixture, T0};
use keyledger::{
    AuditQuery, AuthorizeOptions, Error, NewKey, OnReplay, Target, Vault, VaultOptions, MAX_TIME_MS,
};

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};
const FREE: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};

fn idem(key: &str) -> AuthorizeOptions<'_> {
    AuthorizeOptions {
        idempotency_key: Some(key),
        ..AuthorizeOptions::default()
    }
}

fn credits(f: &Fixture) -> u64 {
    f.vault.balance("acct_42").unwrap().credits
}

/// The bug: a free call with an idempotency key made every later paid call with the same
/// key a free replay, on any route and at any cost, for 24 h.
#[test]
fn a_key_first_used_on_a_free_route_does_not_make_a_paid_route_free() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send", "numbers:read"]);
    let t = token.expose();
    let free = f.vault.authorize(t, FREE, &idem("x")).unwrap();
    assert_eq!(free.charged, 0);
    let e = f.vault.authorize(t, SEND, &idem("x")).unwrap_err();
    assert_eq!(e, Error::IdempotencyConflict);
    assert_eq!((e.status(), e.code()), (409, "idempotency_conflict"));
    assert_eq!(credits(&f), 10, "a conflict charges nothing");
    // And still refused on every retry within the window.
    f.clock.advance(3_600_000);
    assert_eq!(
        f.vault.authorize(t, SEND, &idem("x")).unwrap_err(),
        Error::IdempotencyConflict
    );
}

/// The bug: a key reused with a higher explicit cost replayed the cheap first call.
#[test]
fn replayed_key_with_another_cost_is_refused() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let t = token.expose();
    f.vault.authorize(t, SEND, &idem("k")).unwrap();
    assert_eq!(credits(&f), 9);
    let dear = AuthorizeOptions {
        cost: Some(5),
        ..idem("k")
    };
    assert_eq!(
        f.vault.authorize(t, SEND, &dear).unwrap_err(),
        Error::IdempotencyConflict
    );
    // The same explicit cost as the route's default is the same request.
    let same = AuthorizeOptions {
        cost: Some(1),
        ..idem("k")
    };
    assert!(f.vault.authorize(t, SEND, &same).unwrap().replayed);
    assert_eq!(credits(&f), 9);
}

/// Scope calls: another scope, or another limit cost, is another request.
#[test]
fn replayed_key_with_another_scope_or_limit_cost_is_refused() {
    let (f, token, _) = Fixture::seeded(10, &["jobs:*"]);
    let t = token.expose();
    let paid = AuthorizeOptions {
        cost: Some(2),
        ..idem("job-1")
    };
    let first = f
        .vault
        .authorize(t, Target::scope("jobs:run"), &paid)
        .unwrap();
    assert_eq!(first.charged, 2);
    assert_eq!(
        f.vault
            .authorize(t, Target::scope("jobs:other"), &paid)
            .unwrap_err(),
        Error::IdempotencyConflict
    );
    let heavier = AuthorizeOptions {
        limit_cost: Some(10),
        ..paid
    };
    assert_eq!(
        f.vault
            .authorize(t, Target::scope("jobs:run"), &heavier)
            .unwrap_err(),
        Error::IdempotencyConflict
    );
    let again = f
        .vault
        .authorize(t, Target::scope("jobs:run"), &paid)
        .unwrap();
    assert!(again.replayed);
    assert_eq!((again.charged, credits(&f)), (0, 8));
}

/// Another path under the same rule is the same request (the fingerprint is the rule's
/// method and pattern); another rule is not.
#[test]
fn the_fingerprint_is_the_matched_rule_not_the_raw_path() {
    let (f, token, _) = Fixture::seeded(10, &["numbers:read"]);
    let t = token.expose();
    let a = Target::route("GET", "/api/v1/messaging/threads/alice");
    let b = Target::route("GET", "/api/v1/messaging/threads/bob");
    f.vault.authorize(t, a, &idem("r")).unwrap();
    assert!(f.vault.authorize(t, b, &idem("r")).unwrap().replayed);
    assert_eq!(
        f.vault.authorize(t, FREE, &idem("r")).unwrap_err(),
        Error::IdempotencyConflict
    );
}

#[test]
fn on_replay_refuse_answers_duplicate_request_with_the_first_charge_and_time() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let t = token.expose();
    let refuse = AuthorizeOptions {
        on_replay: OnReplay::Refuse,
        ..idem("send-1")
    };
    let first = f.vault.authorize(t, SEND, &refuse).unwrap();
    assert_eq!((first.charged, first.replayed), (1, false));
    let first_at = f.clock.now();
    f.clock.advance(5_000);
    let e = f.vault.authorize(t, SEND, &refuse).unwrap_err();
    assert_eq!(
        e,
        Error::DuplicateRequest {
            charged: 1,
            first_at
        }
    );
    assert_eq!((e.status(), e.code()), (409, "duplicate_request"));
    assert_eq!(e.body()["charged"], 1);
    assert_eq!(e.body()["first_at"], first_at);
    assert_eq!(credits(&f), 9, "a refused replay charges nothing");
    // The default still hands the replayed grant over.
    let g = f.vault.authorize(t, SEND, &idem("send-1")).unwrap();
    assert!(g.replayed);
    assert_eq!((g.charged, g.credits), (0, 9));
    // A conflict stays a conflict whatever the replay option.
    let dear = AuthorizeOptions {
        cost: Some(3),
        ..refuse
    };
    assert_eq!(
        f.vault.authorize(t, SEND, &dear).unwrap_err(),
        Error::IdempotencyConflict
    );
}

/// A refused replay gives back what the rate limits took: it did no work.
#[test]
fn a_refused_replay_or_conflict_takes_nothing_from_the_rate_limits() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let t = token.expose();
    f.vault
        .set_ratelimit(
            keyledger::LimitOwner::Key(&key_id),
            "burst",
            2,
            60_000,
            true,
        )
        .unwrap();
    let refuse = AuthorizeOptions {
        on_replay: OnReplay::Refuse,
        ..idem("once")
    };
    f.vault.authorize(t, SEND, &refuse).unwrap();
    for _ in 0..5 {
        assert!(matches!(
            f.vault.authorize(t, SEND, &refuse),
            Err(Error::DuplicateRequest { .. })
        ));
        let dear = AuthorizeOptions {
            cost: Some(2),
            ..refuse
        };
        assert_eq!(
            f.vault.authorize(t, SEND, &dear).unwrap_err(),
            Error::IdempotencyConflict
        );
    }
    // One unit of the limit is left for a new request.
    assert!(f.vault.authorize(t, SEND, &idem("two")).is_ok());
}

#[test]
fn a_management_debit_key_reused_with_another_amount_is_refused() {
    let (f, _, _) = Fixture::seeded(10, &["sms:send"]);
    assert_eq!(f.vault.debit("acct_42", 2, Some("d1")).unwrap().credits, 8);
    assert_eq!(f.vault.debit("acct_42", 2, Some("d1")).unwrap().credits, 8);
    assert_eq!(
        f.vault.debit("acct_42", 7, Some("d1")).unwrap_err(),
        Error::IdempotencyConflict
    );
    assert_eq!(credits(&f), 8);
}

/// Records written before fingerprints existed (version 1: postcard of charged, credits,
/// total, grant) are still read, but cannot prove a reuse is the same request: a reuse
/// within the window is a conflict, never a free replay. After the window the key is
/// fresh.
#[test]
fn a_record_from_before_fingerprints_is_read_and_answered_as_a_conflict() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let Fixture {
        dir,
        path,
        clock,
        vault,
    } = f;
    vault.close().unwrap();
    drop(vault);
    {
        #[derive(serde::Serialize)]
        struct V1 {
            charged: u64,
            credits: u64,
            total: u64,
            grant: Option<keyledger::Grant>,
        }
        let bytes = postcard::to_allocvec(&V1 {
            charged: 0,
            credits: 10,
            total: 10,
            grant: None,
        })
        .unwrap();
        let db = redb::Database::open(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<(&str, &str), (i64, &[u8])> =
                redb::TableDefinition::new("idempotency");
            let mut t = tx.open_table(table).unwrap();
            t.insert(("acct_42", "a:old"), (T0, bytes.as_slice()))
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let vault = Vault::open_with(&path, options_with_clock(&clock)).unwrap();
    let t = token.expose();
    assert_eq!(
        vault.authorize(t, SEND, &idem("old")).unwrap_err(),
        Error::IdempotencyConflict
    );
    assert_eq!(vault.balance("acct_42").unwrap().credits, 10);
    clock.advance(keyledger::IDEMPOTENCY_WINDOW_MS);
    let g = vault.authorize(t, SEND, &idem("old")).unwrap();
    assert_eq!((g.charged, g.replayed), (1, false));
    drop(dir);
}

/// The bug: `now = -9223372036854775` was granted, and the flusher then overflowed
/// computing its hour bucket.
#[test]
fn an_authorize_time_outside_the_supported_range_is_refused_and_changes_nothing() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let t = token.expose();
    for now in [
        -9_223_372_036_854_775,
        -1,
        MAX_TIME_MS + 1,
        i64::MAX,
        i64::MIN,
    ] {
        let opts = AuthorizeOptions {
            now: Some(now),
            ..AuthorizeOptions::default()
        };
        let e = f.vault.authorize(t, SEND, &opts).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "now={now}");
        assert!(e.to_string().contains("now"), "{e}");
    }
    assert_eq!(credits(&f), 10);
    f.vault.flush().unwrap();
    let u = f.vault.usage(&key_id).unwrap();
    assert_eq!((u.granted, u.last_used_at), (0, None));
    // Both ends of the range are accepted.
    for now in [0, MAX_TIME_MS] {
        let opts = AuthorizeOptions {
            now: Some(now),
            ..AuthorizeOptions::default()
        };
        assert!(f.vault.authorize(t, SEND, &opts).is_ok(), "now={now}");
    }
    f.vault.flush().unwrap();
    assert_eq!(f.vault.usage(&key_id).unwrap().granted, 2);
}

#[test]
fn management_time_arguments_outside_the_range_are_refused() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    let e = f
        .vault
        .set_expiry(&key_id, Some(MAX_TIME_MS + 1))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert_eq!(f.vault.key(&key_id).unwrap().expires_at, None);
    let e = f
        .vault
        .create_key(NewKey::new("acct_42", "far", ["sms:send"]).expires_at(i64::MAX))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    let e = f
        .vault
        .audit(&AuditQuery {
            since: Some(-9_223_372_036_854_775),
            ..AuditQuery::default()
        })
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    // The end of year 9999 is still a valid expiry.
    assert!(f.vault.set_expiry(&key_id, Some(MAX_TIME_MS)).is_ok());
}

/// The flusher thread died on the first panic of a round: usage and audit entries then
/// stayed in memory until close. Now each round runs under `catch_unwind`.
#[test]
fn the_background_flusher_survives_a_panicking_round_and_keeps_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.redb");
    let v = Vault::open_with(
        &path,
        VaultOptions {
            flush_interval: Duration::from_millis(20),
            ..common::options()
        },
    )
    .unwrap();
    v.create_account("a", 10, None).unwrap();
    v.add_route("GET", "/x", "x", 0).unwrap();
    let (token, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    v.inject_flusher_panics(3);
    let deadline = Instant::now() + Duration::from_secs(20);
    while v.stats().flusher_panics < 3 {
        assert!(Instant::now() < deadline, "the rounds never panicked");
        std::thread::sleep(Duration::from_millis(5));
    }
    // A granted call leaves usage pending; only the background flusher writes it now.
    let commits = v.stats().commits;
    v.authorize(
        token.expose(),
        Target::route("GET", "/x"),
        &AuthorizeOptions::default(),
    )
    .unwrap();
    while v.stats().commits == commits {
        assert!(
            Instant::now() < deadline,
            "the flusher stopped after a panic"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(v.stats().flusher_panics, 3);
}

/// The C ABI: `refuse_replay` at the end of `kl_authorize_opts` turns a replay into
/// `KL_DUPLICATE_REQUEST` with the first call's charge and time; a zeroed struct keeps
/// the replayed grant; another cost under the key is `KL_IDEMPOTENCY_CONFLICT`.
#[test]
fn the_c_abi_refuses_a_replay_when_asked_and_a_conflict_always() {
    use keyledger::ffi::{self, kl_status};
    use std::ffi::{c_char, CStr};
    use std::ptr;

    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let Fixture {
        dir, path, vault, ..
    } = f;
    vault.close().unwrap();
    drop(vault);
    let path = path.to_str().unwrap();
    let mut v = ptr::null_mut();
    // SAFETY: valid pointers and lengths; `v` is freed once below.
    unsafe {
        assert_eq!(
            ffi::kl_vault_open(path.as_ptr().cast(), path.len(), ptr::null(), 0, &mut v),
            kl_status::KL_OK
        );
    }
    let t = token.expose();
    let (method, route) = ("POST", "/api/v1/messaging/send");
    let key = "c-1";
    let call = |opts: &ffi::kl_authorize_opts| -> (kl_status, String) {
        let mut out: *mut c_char = ptr::null_mut();
        // SAFETY: every pointer is valid for its length during the call.
        unsafe {
            let st = ffi::kl_authorize_json(
                v,
                t.as_ptr().cast(),
                t.len(),
                method.as_ptr().cast(),
                method.len(),
                route.as_ptr().cast(),
                route.len(),
                opts,
                &mut out,
            );
            if st == kl_status::KL_OK {
                let s = CStr::from_ptr(out).to_string_lossy().into_owned();
                ffi::kl_string_free(out);
                (st, s)
            } else {
                assert_eq!(ffi::kl_last_error_body(&mut out), kl_status::KL_OK);
                let s = CStr::from_ptr(out).to_string_lossy().into_owned();
                ffi::kl_string_free(out);
                (st, s)
            }
        }
    };
    // SAFETY: plain data; all-zero is "every default".
    let mut opts: ffi::kl_authorize_opts = unsafe { std::mem::zeroed() };
    opts.idempotency_key = key.as_ptr().cast();
    opts.idempotency_key_len = key.len();
    opts.now_ms = T0;
    let (st, first) = call(&opts);
    assert_eq!(st, kl_status::KL_OK, "{first}");
    let (st, body) = call(&opts);
    assert_eq!(st, kl_status::KL_OK);
    assert!(body.contains("\"replayed\":true"), "{body}");
    opts.refuse_replay = 1;
    let (st, body) = call(&opts);
    assert_eq!(st, kl_status::KL_DUPLICATE_REQUEST);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["charged"], 1);
    assert_eq!(body["first_at"], T0);
    opts.has_cost = 1;
    opts.cost = 4;
    assert_eq!(call(&opts).0, kl_status::KL_IDEMPOTENCY_CONFLICT);
    opts.has_cost = 0;
    opts.refuse_replay = 0;
    opts.idempotency_key = ptr::null();
    opts.idempotency_key_len = 0;
    opts.now_ms = -9_223_372_036_854_775;
    assert_eq!(call(&opts).0, kl_status::KL_INVALID_ARGUMENT);
    // SAFETY: opened above, freed once.
    unsafe { ffi::kl_vault_free(v) };
    let v = Vault::open(path).unwrap();
    assert_eq!(v.balance("acct_42").unwrap().credits, 9);
    drop(dir);
}
