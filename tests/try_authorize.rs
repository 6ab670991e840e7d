//! `Vault::try_authorize` and `Vault::try_authorize_http`: the non-blocking authorize.
//! Each path answers inline or says what it would wait for (argon2, a commit), and a
//! "would block" answer changes nothing: "try, then the blocking call on would-block"
//! ends exactly where the blocking call alone does (results, balances, audit, usage,
//! rate-limit state), checked on twin copies of one vault file over random calls.

mod common;

use common::workloads::Rng;
use common::{options, seed_routes, TestClock, T0};
use keyledger::http::{HttpOptions, HttpRequest};
use keyledger::{
    sign_request, Attempt, AuditQuery, AuthorizeOptions, Error, Grant, LimitOwner, MasterKey,
    NewKey, RefillInterval, Result, SecretToken, Target, ThrottleConfig, Vault, VaultOptions,
    WouldBlock,
};

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};
const READ: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

fn cost(n: u64) -> AuthorizeOptions<'static> {
    AuthorizeOptions {
        cost: Some(n),
        ..none()
    }
}

fn open(path: &std::path::Path, clock: &TestClock, extra: impl FnOnce(&mut VaultOptions)) -> Vault {
    let mut o = VaultOptions {
        clock: Some(clock.clock()),
        ..options()
    };
    extra(&mut o);
    Vault::open_with(path, o).unwrap()
}

/// A vault with the seed routes, `acct_42` (10 credits) and a key with `scopes`, seeded by
/// one handle and reopened by another: the key is cold (never verified) in the new one.
struct Cold {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: TestClock,
    vault: Vault,
    token: SecretToken,
    key_id: String,
}

fn cold_with(scopes: &[&str], extra: impl Fn(&mut VaultOptions)) -> Cold {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "vault.redb");
    let clock = TestClock::new();
    let (token, key_id) = {
        let v = open(&path, &clock, &extra);
        v.create_account("acct_42", 10, None).unwrap();
        seed_routes(&v);
        let (t, info) = v
            .create_key(
                NewKey::new("acct_42", "server", scopes.iter().copied()).prefix("dial_live"),
            )
            .unwrap();
        v.close().unwrap();
        (t, info.key_id)
    };
    let vault = open(&path, &clock, &extra);
    Cold {
        _dir: dir,
        path,
        clock,
        vault,
        token,
        key_id,
    }
}

fn cold(scopes: &[&str]) -> Cold {
    cold_with(scopes, |_| {})
}

fn audit_len(v: &Vault) -> usize {
    v.audit(&AuditQuery {
        limit: Some(10_000),
        ..AuditQuery::default()
    })
    .unwrap()
    .len()
}

fn ready(a: Attempt<Result<Grant>>) -> Result<Grant> {
    match a {
        Attempt::Ready(r) => r,
        Attempt::WouldBlock(w) => panic!("expected an inline answer, got would-block ({w})"),
    }
}

#[test]
fn a_cold_key_would_block_on_argon2_and_changes_nothing() {
    let c = cold(&["numbers:read"]);
    let before_audit = audit_len(&c.vault);
    for _ in 0..3 {
        let a = c.vault.try_authorize(c.token.expose(), READ, &none());
        assert_eq!(a.would_block(), Some(WouldBlock::Argon2));
    }
    let s = c.vault.stats();
    assert_eq!((s.argon2_runs, s.throttled), (0, 0));
    assert_eq!(audit_len(&c.vault), before_audit);
    let u = c.vault.usage(&c.key_id).unwrap();
    assert_eq!((u.granted, u.refused), (0, 0));
    // The blocking call verifies it; from then on the key is decided inline.
    let g = c.vault.authorize(c.token.expose(), READ, &none()).unwrap();
    assert_eq!(c.vault.stats().argon2_runs, 1);
    let again = ready(c.vault.try_authorize(c.token.expose(), READ, &none())).unwrap();
    assert_eq!(again, g);
    assert_eq!(c.vault.stats().argon2_runs, 1);
    assert_eq!(c.vault.usage(&c.key_id).unwrap().granted, 2);
}

#[test]
fn a_wrong_secret_needs_argon2_once_and_is_then_refused_inline() {
    let c = cold(&["numbers:read"]);
    let forged = keyledger::token::mint("dial_live", &c.key_id).unwrap();
    assert_eq!(
        c.vault.try_authorize(&forged, READ, &none()).would_block(),
        Some(WouldBlock::Argon2)
    );
    assert_eq!(c.vault.usage(&c.key_id).unwrap().refused, 0);
    let e = c.vault.authorize(&forged, READ, &none()).unwrap_err();
    assert_eq!(e, Error::InvalidApiKey);
    assert_eq!(c.vault.stats().argon2_runs, 1);
    // The failed-secret memory refuses it again without argon2, inline.
    let e = ready(c.vault.try_authorize(&forged, READ, &none())).unwrap_err();
    assert_eq!(e, Error::InvalidApiKey);
    assert_eq!(c.vault.stats().argon2_runs, 1);
    assert_eq!(c.vault.usage(&c.key_id).unwrap().refused, 2);
    // The right secret of the same key is still cold.
    assert_eq!(
        c.vault
            .try_authorize(c.token.expose(), READ, &none())
            .would_block(),
        Some(WouldBlock::Argon2)
    );
}

#[test]
fn a_spent_failure_budget_is_refused_inline_without_argon2() {
    let c = cold_with(&["numbers:read"], |o| {
        o.throttle = ThrottleConfig {
            budget_burst: 2,
            budget_per_second: 0.0,
            ..ThrottleConfig::default()
        }
    });
    for _ in 0..2 {
        let forged = keyledger::token::mint("dial_live", &c.key_id).unwrap();
        let _ = c.vault.authorize(&forged, READ, &none());
    }
    assert_eq!(c.vault.stats().argon2_runs, 2);
    let forged = keyledger::token::mint("dial_live", &c.key_id).unwrap();
    let e = ready(c.vault.try_authorize(&forged, READ, &none())).unwrap_err();
    assert!(matches!(e, Error::TooManyAttempts { .. }), "{e:?}");
    // The budget holds for the right secret too: refused inline, never verified.
    let e = ready(c.vault.try_authorize(c.token.expose(), READ, &none())).unwrap_err();
    assert!(matches!(e, Error::TooManyAttempts { .. }), "{e:?}");
    assert_eq!(c.vault.stats().argon2_runs, 2);
}

#[test]
fn refusals_that_need_no_argon2_are_answered_inline() {
    let c = cold(&["numbers:read"]);
    for t in ["garbage", "", &"x".repeat(600)] {
        assert_eq!(
            ready(c.vault.try_authorize(t, READ, &none())).unwrap_err(),
            Error::InvalidApiKey
        );
    }
    // A valid token of a key that does not exist.
    let unknown = keyledger::token::mint("dial_live", "zzzzzzzz").unwrap();
    assert_eq!(
        ready(c.vault.try_authorize(&unknown, READ, &none())).unwrap_err(),
        Error::InvalidApiKey
    );
    // The right key id under another prefix.
    let other = keyledger::token::mint("sk_test", &c.key_id).unwrap();
    assert_eq!(
        ready(c.vault.try_authorize(&other, READ, &none())).unwrap_err(),
        Error::InvalidApiKey
    );
    // Bad arguments are refused before anything.
    let e = ready(
        c.vault
            .try_authorize(c.token.expose(), Target::scope(""), &none()),
    )
    .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert_eq!(c.vault.stats().argon2_runs, 0);

    // Once verified: scope, route, disabled, expired, all inline.
    c.vault.authorize(c.token.expose(), READ, &none()).unwrap();
    let t = c.token.expose();
    assert_eq!(
        ready(c.vault.try_authorize(t, SEND, &none()))
            .unwrap_err()
            .code(),
        "missing_scope"
    );
    assert_eq!(
        ready(
            c.vault
                .try_authorize(t, Target::route("DELETE", "/nowhere"), &none())
        )
        .unwrap_err()
        .code(),
        "route_not_allowed"
    );
    c.vault.disable_key(&c.key_id).unwrap();
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap_err()
            .code(),
        "api_key_inactive"
    );
    c.vault.enable_key(&c.key_id).unwrap();
    c.vault.set_expiry(&c.key_id, Some(T0 + 10)).unwrap();
    c.clock.set(T0 + 10);
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap_err()
            .code(),
        "api_key_expired"
    );
    c.vault.revoke_key(&c.key_id).unwrap();
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap_err()
            .code(),
        "invalid_api_key"
    );
    assert_eq!(c.vault.stats().argon2_runs, 1);
}

#[test]
fn a_call_that_writes_would_block_on_a_commit_before_taking_a_rate_limit_unit() {
    let c = cold(&["sms:send", "numbers:read"]);
    let t = c.token.expose();
    c.vault
        .set_ratelimit(LimitOwner::Key(&c.key_id), "one", 1, 60_000, true)
        .unwrap();
    c.vault.authorize(t, READ, &none()).unwrap();
    // (That call took the limit's one unit; let the window pass.)
    c.clock.advance(60_000);
    let idem = AuthorizeOptions {
        idempotency_key: Some("k1"),
        ..none()
    };
    let commits = c.vault.stats().commits;
    for (target, o) in [(SEND, none()), (READ, cost(2)), (READ, idem)] {
        for _ in 0..3 {
            assert_eq!(
                c.vault.try_authorize(t, target, &o).would_block(),
                Some(WouldBlock::Commit)
            );
        }
    }
    assert_eq!(
        c.vault.stats().commits,
        commits,
        "a would-block call committed"
    );
    assert_eq!(c.vault.balance("acct_42").unwrap().credits, 10);
    // No unit was taken: the limit's one unit is still there for the blocking call.
    let g = c.vault.authorize(t, SEND, &none()).unwrap();
    assert_eq!((g.charged, g.credits), (1, 9));
    assert_eq!(g.ratelimits[0].remaining, 0);
    // A free call over the limit is refused inline.
    let e = ready(c.vault.try_authorize(t, READ, &none())).unwrap_err();
    assert_eq!(e.code(), "rate_limited");
    // An explicit cost of 0 on a paid route needs no commit.
    c.clock.advance(60_000);
    let g = ready(c.vault.try_authorize(t, SEND, &cost(0))).unwrap();
    assert_eq!((g.charged, g.credits), (0, 9));
}

#[test]
fn a_free_call_checks_its_rate_limits_inline() {
    let c = cold(&["numbers:read"]);
    let t = c.token.expose();
    c.vault
        .set_ratelimit(LimitOwner::Account("acct_42"), "acct", 2, 60_000, true)
        .unwrap();
    c.vault
        .set_ratelimit(LimitOwner::Key(&c.key_id), "named", 5, 60_000, false)
        .unwrap();
    c.vault.authorize(t, READ, &none()).unwrap();
    let named = ["named"];
    let o = AuthorizeOptions {
        limits: Some(&named),
        ..none()
    };
    let g = ready(c.vault.try_authorize(t, READ, &o)).unwrap();
    let remaining: Vec<_> = g
        .ratelimits
        .iter()
        .map(|r| (r.name.as_str(), r.remaining))
        .collect();
    assert_eq!(remaining, [("named", 4), ("acct", 0)]);
    let e = ready(c.vault.try_authorize(t, READ, &o)).unwrap_err();
    assert_eq!(e.code(), "rate_limited");
    let unknown = ["nope"];
    let e = ready(c.vault.try_authorize(
        t,
        READ,
        &AuthorizeOptions {
            limits: Some(&unknown),
            ..none()
        },
    ))
    .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}

#[test]
fn a_due_refill_would_block_and_the_blocking_call_applies_it() {
    let c = cold(&["numbers:read"]);
    let t = c.token.expose();
    c.vault
        .set_refill("acct_42", 50, RefillInterval::Daily, 1)
        .unwrap();
    c.vault.authorize(t, READ, &none()).unwrap();
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap()
            .credits,
        10
    );
    c.clock.advance(86_400_000);
    let commits = c.vault.stats().commits;
    assert_eq!(
        c.vault.try_authorize(t, READ, &none()).would_block(),
        Some(WouldBlock::Commit)
    );
    assert_eq!(c.vault.stats().commits, commits);
    assert_eq!(c.vault.authorize(t, READ, &none()).unwrap().credits, 50);
    assert_eq!(c.vault.stats().commits, commits + 1);
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap()
            .credits,
        50
    );
}

#[test]
fn an_operator_key_is_never_charged_so_never_waits_for_a_commit() {
    let c = cold(&[]);
    let (op, _) = c
        .vault
        .create_key(NewKey::new("acct_42", "ops", ["*"]).operator(true))
        .unwrap();
    c.vault.authorize(op.expose(), SEND, &none()).unwrap();
    let o = AuthorizeOptions {
        cost: Some(5),
        idempotency_key: Some("x"),
        ..none()
    };
    let g = ready(c.vault.try_authorize(op.expose(), SEND, &o)).unwrap();
    assert_eq!((g.charged, g.credits), (0, 10));
}

#[test]
fn single_use_signatures_would_block_only_when_the_signature_is_valid() {
    let master = MasterKey::generate().unwrap();
    let c = cold_with(&["numbers:read"], |o| {
        o.master_key = Some(master.clone());
        o.single_use_signatures = true;
    });
    let (token, info) = c
        .vault
        .create_key(NewKey::new("acct_42", "signer", ["numbers:read"]).signing(true))
        .unwrap();
    let secret = token.signing_secret().unwrap().to_string();
    let t = token.expose();
    let sig = sign_request(&secret, T0 / 1000, "GET", "/api/v1/numbers/mine", b"");
    let signed = AuthorizeOptions {
        signature: Some(&sig),
        now: Some(T0),
        ..none()
    };
    // Verify the key with a refused (unsigned) call: no signature recorded.
    assert_eq!(
        c.vault.authorize(t, READ, &none()).unwrap_err().code(),
        "invalid_signature"
    );
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &none()))
            .unwrap_err()
            .code(),
        "invalid_signature"
    );
    let bad = sig.replace("v2=", "v2=0");
    let o = AuthorizeOptions {
        signature: Some(&bad),
        ..signed
    };
    assert_eq!(
        ready(c.vault.try_authorize(t, READ, &o))
            .unwrap_err()
            .code(),
        "invalid_signature"
    );
    assert_eq!(
        c.vault.try_authorize(t, READ, &signed).would_block(),
        Some(WouldBlock::Commit)
    );
    assert_eq!(c.vault.signatures_recorded().unwrap(), 0);
    c.vault.authorize(t, READ, &signed).unwrap();
    assert_eq!(c.vault.signatures_recorded().unwrap(), 1);
    // Its replay: the signature is valid, so the check needs the store's word (a write).
    assert_eq!(
        c.vault.try_authorize(t, READ, &signed).would_block(),
        Some(WouldBlock::Commit)
    );
    assert_eq!(
        c.vault.authorize(t, READ, &signed).unwrap_err().code(),
        "invalid_signature"
    );
    let _ = info;
}

#[test]
fn signatures_without_single_use_are_checked_inline() {
    let master = MasterKey::generate().unwrap();
    let c = cold_with(&["numbers:read"], |o| o.master_key = Some(master.clone()));
    let (token, _) = c
        .vault
        .create_key(NewKey::new("acct_42", "signer", ["numbers:read"]).signing(true))
        .unwrap();
    let sig = sign_request(
        token.signing_secret().unwrap(),
        T0 / 1000,
        "GET",
        "/api/v1/numbers/mine",
        b"",
    );
    let signed = AuthorizeOptions {
        signature: Some(&sig),
        now: Some(T0),
        ..none()
    };
    c.vault.authorize(token.expose(), READ, &signed).unwrap();
    ready(c.vault.try_authorize(token.expose(), READ, &signed)).unwrap();
}

#[test]
fn a_closed_vault_answers_inline() {
    let c = cold(&["numbers:read"]);
    c.vault.close().unwrap();
    let e = ready(c.vault.try_authorize(c.token.expose(), READ, &none())).unwrap_err();
    assert_eq!(e.code(), "vault_closed");
    let _ = &c.path;
}

#[test]
fn the_http_gate_has_the_same_non_blocking_answers() {
    let c = cold(&["sms:send", "numbers:read"]);
    let bearer = format!("Bearer {}", c.token.expose());
    let read = HttpRequest {
        method: "GET",
        target: b"/api/v1/numbers/mine",
        authorization: Some(bearer.as_bytes()),
        ..HttpRequest::default()
    };
    let send = HttpRequest {
        method: "POST",
        target: b"/api/v1/messaging/send",
        ..read
    };
    let o = HttpOptions {
        now: Some(T0),
        ..HttpOptions::default()
    };
    assert_eq!(
        c.vault.try_authorize_http(&read, &o).would_block(),
        Some(WouldBlock::Argon2)
    );
    // Missing and malformed credentials, an oversized signed body: inline.
    for r in [
        HttpRequest {
            authorization: None,
            ..read
        },
        HttpRequest {
            authorization: Some(b"Basic x"),
            ..read
        },
    ] {
        let Attempt::Ready(out) = c.vault.try_authorize_http(&r, &o) else {
            panic!("would block");
        };
        assert_eq!(out.status, 401);
    }
    let big = vec![0u8; 10];
    let too_large = HttpRequest {
        signature: Some(b"t=1,v2=00"),
        body: Some(&big),
        ..read
    };
    let Attempt::Ready(out) = c.vault.try_authorize_http(
        &too_large,
        &HttpOptions {
            max_body: Some(4),
            ..o
        },
    ) else {
        panic!("would block");
    };
    assert_eq!(out.status, 413);
    let blocking = c.vault.authorize_http(&read, &o);
    assert_eq!(blocking.status, 200);
    let Attempt::Ready(inline) = c.vault.try_authorize_http(&read, &o) else {
        panic!("a verified free request would block");
    };
    assert_eq!(inline, blocking);
    assert_eq!(
        c.vault.try_authorize_http(&send, &o).would_block(),
        Some(WouldBlock::Commit)
    );
    assert_eq!(c.vault.balance("acct_42").unwrap().credits, 10);
    assert_eq!(c.vault.authorize_http(&send, &o).grant.unwrap().credits, 9);
}

// ------------------------------------------------------------------ twins, random calls

/// Two handles on two copies of one seeded vault file, with clocks kept equal.
struct Twins {
    _dir: tempfile::TempDir,
    clocks: [TestClock; 2],
    vaults: [Vault; 2],
    tokens: Vec<String>,
    key_ids: Vec<String>,
    master: MasterKey,
}

fn twin_options(clock: &TestClock, master: &MasterKey) -> VaultOptions {
    VaultOptions {
        clock: Some(clock.clock()),
        master_key: Some(master.clone()),
        single_use_signatures: true,
        throttle: ThrottleConfig {
            burst: 2,
            per_second: 0.5,
            budget_burst: 4,
            budget_per_second: 0.02,
        },
        ..options()
    }
}

fn twins() -> Twins {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let seed_path = dir.path().join("seed.redb");
    let clock = TestClock::new();
    let mut tokens = Vec::new();
    let mut key_ids = Vec::new();
    let mut signing = None;
    {
        let v = Vault::open_with(&seed_path, twin_options(&clock, &master)).unwrap();
        seed_routes(&v);
        v.create_account("acct_a", 40, None).unwrap();
        v.create_account("acct_b", 6, None).unwrap();
        v.set_refill("acct_b", 9, RefillInterval::Daily, 1).unwrap();
        let keys = [
            NewKey::new("acct_a", "k0", ["sms:send", "numbers:read"]),
            NewKey::new("acct_a", "k1", ["numbers:read"]),
            NewKey::new("acct_b", "k2", ["sms:send", "numbers:read", "sms.read"]),
            NewKey::new("acct_b", "k3", ["*"]).operator(true),
            NewKey::new("acct_b", "k4", ["numbers:read"]).signing(true),
        ];
        for k in keys {
            let (t, info) = v.create_key(k.prefix("dial_live")).unwrap();
            if let Some(s) = t.signing_secret() {
                signing = Some(s.to_string());
            }
            tokens.push(t.expose().to_string());
            key_ids.push(info.key_id);
        }
        v.set_ratelimit(LimitOwner::Key(&key_ids[0]), "burst", 3, 10_000, true)
            .unwrap();
        v.set_ratelimit(LimitOwner::Key(&key_ids[1]), "tokens", 4, 5_000, false)
            .unwrap();
        v.set_ratelimit(LimitOwner::Account("acct_b"), "acct", 5, 20_000, true)
            .unwrap();
        v.close().unwrap();
    }
    // Forged tokens: known key ids, valid checksums, wrong secrets (shared by the twins).
    for id in key_ids.clone() {
        for _ in 0..3 {
            tokens.push(
                keyledger::token::mint("dial_live", &id)
                    .unwrap()
                    .to_string(),
            );
        }
    }
    tokens.push("dial_live_garbage".into());
    tokens.push(signing.unwrap()); // the signing secret, kept last
    let mut vaults = Vec::new();
    let clocks = [TestClock::new(), TestClock::new()];
    for (i, c) in clocks.iter().enumerate() {
        // A copy of the seed: the file, or (over PostgreSQL) a fresh database it is
        // migrated into.
        let p = common::location(&dir, &format!("twin{i}.redb"));
        if p.starts_with(dir.path()) {
            std::fs::copy(&seed_path, &p).unwrap();
        } else {
            keyledger::migrate(
                seed_path.to_str().unwrap(),
                p.to_str().unwrap(),
                &keyledger::MigrateOptions::default(),
            )
            .unwrap();
        }
        vaults.push(Vault::open_with(&p, twin_options(c, &master)).unwrap());
    }
    let [a, b]: [Vault; 2] = vaults.try_into().unwrap();
    Twins {
        _dir: dir,
        clocks,
        vaults: [a, b],
        tokens,
        key_ids,
        master,
    }
}

/// One random call's inputs.
struct Call {
    token: usize,
    target: Target<'static>,
    cost: Option<u64>,
    idem: Option<&'static str>,
    refuse_replay: bool,
    named: bool,
    limit_cost: Option<u64>,
    signed: bool,
    advance: i64,
}

fn random_call(r: &mut Rng, tokens: usize) -> Call {
    const TARGETS: [Target<'static>; 5] = [
        SEND,
        READ,
        Target::Scope("numbers:read"),
        Target::Route {
            method: "GET",
            path: "/sms/inbox",
        },
        Target::Route {
            method: "DELETE",
            path: "/nope",
        },
    ];
    Call {
        token: r.below(tokens as u64 - 1) as usize,
        target: TARGETS[r.below(5) as usize],
        cost: match r.below(6) {
            0 => Some(0),
            1 => Some(1),
            2 => Some(3),
            _ => None,
        },
        idem: match r.below(8) {
            0 => Some("i1"),
            1 => Some("i2"),
            _ => None,
        },
        refuse_replay: r.below(2) == 0,
        named: r.below(4) == 0,
        limit_cost: (r.below(6) == 0).then_some(2),
        signed: r.below(3) == 0,
        advance: match r.below(20) {
            0 => 86_400_000,
            1..=5 => 0,
            _ => r.below(3_000) as i64,
        },
    }
}

/// Everything a call can change, as the public API shows it.
#[derive(Debug, PartialEq)]
struct State {
    balances: Vec<(u64, u64)>,
    usage: Vec<(u64, u64, Option<i64>)>,
    /// Entries flushed together get their sequence numbers in no fixed order: compared
    /// as a set of (time, action, key, details).
    audit: std::collections::BTreeSet<(i64, String, Option<String>, String)>,
    argon2_runs: u64,
    throttled: u64,
    signatures: u64,
    limits: Vec<Result<Vec<(String, u64, i64)>>>,
}

fn state(t: &Twins, i: usize) -> State {
    let v = &t.vaults[i];
    let balances = ["acct_a", "acct_b"]
        .iter()
        .map(|a| {
            let b = v.balance(a).unwrap();
            (b.credits, b.total_credits)
        })
        .collect();
    let usage = t
        .key_ids
        .iter()
        .map(|k| {
            let u = v.usage(k).unwrap();
            (u.granted, u.refused, u.last_used_at)
        })
        .collect();
    let audit = v
        .audit(&AuditQuery {
            limit: Some(10_000),
            ..AuditQuery::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| (e.time, e.action, e.key_id, e.details.to_string()))
        .collect::<std::collections::BTreeSet<_>>();
    let s = v.stats();
    State {
        balances,
        usage,
        audit,
        argon2_runs: s.argon2_runs,
        throttled: s.throttled,
        signatures: v.signatures_recorded().unwrap(),
        limits: Vec::new(),
    }
}

/// Run `calls` random calls on both twins: the first with `authorize` only, the second
/// with `try_authorize` first (twice on would-block: it must say the same) and
/// `authorize` on would-block. Returns how many calls were decided inline, how many
/// would have blocked on argon2 and on a commit, and how many were throttled.
fn run_twins(seed: u64, calls: usize) -> (usize, usize, usize, u64) {
    let t = twins();
    let mut r = Rng(seed);
    let signing_secret = t.tokens.last().unwrap().clone();
    let (mut inline, mut argon2, mut commit) = (0, 0, 0);
    for n in 0..calls {
        let c = random_call(&mut r, t.tokens.len());
        for clock in &t.clocks {
            clock.advance(c.advance);
        }
        let now = t.clocks[0].now();
        let (method, signed_target) = match c.target {
            Target::Route { method, path } => (method, path.to_string()),
            Target::Scope(s) => ("SCOPE", s.to_string()),
            _ => unreachable!(),
        };
        let sig = sign_request(
            &signing_secret,
            now.div_euclid(1000),
            method,
            &signed_target,
            b"",
        );
        let named = ["tokens"];
        let o = AuthorizeOptions {
            cost: c.cost,
            idempotency_key: c.idem,
            signature: c.signed.then_some(sig.as_str()),
            limits: c.named.then_some(&named[..]),
            limit_cost: c.limit_cost,
            on_replay: if c.refuse_replay {
                keyledger::OnReplay::Refuse
            } else {
                keyledger::OnReplay::Grant
            },
            ..none()
        };
        let token = &t.tokens[c.token];
        let blocking = t.vaults[0].authorize(token, c.target, &o);
        let tried = match t.vaults[1].try_authorize(token, c.target, &o) {
            Attempt::Ready(res) => {
                inline += 1;
                res
            }
            Attempt::WouldBlock(w) => {
                match w {
                    WouldBlock::Argon2 => argon2 += 1,
                    WouldBlock::Commit => commit += 1,
                    other => panic!("a new reason: {other}"),
                }
                assert_eq!(
                    t.vaults[1].try_authorize(token, c.target, &o).would_block(),
                    Some(w),
                    "seed {seed} call {n}: a second try answered differently"
                );
                t.vaults[1].authorize(token, c.target, &o)
            }
        };
        assert_eq!(tried, blocking, "seed {seed} call {n}");
    }
    let mut states = [state(&t, 0), state(&t, 1)];
    // The rate-limit state: one more call per key, weighing every named limit.
    for (i, s) in states.iter_mut().enumerate() {
        for (k, token) in t.tokens[..t.key_ids.len()].iter().enumerate() {
            let named = ["tokens"];
            let o = AuthorizeOptions {
                limits: (k == 1).then_some(&named[..]),
                ..none()
            };
            let g = t.vaults[i].authorize(token, Target::scope("numbers:read"), &o);
            s.limits.push(g.map(|g| {
                g.ratelimits
                    .into_iter()
                    .map(|l| (l.name, l.remaining, l.reset_ms))
                    .collect()
            }));
        }
    }
    assert_eq!(states[0], states[1], "seed {seed}: final states differ");
    let _ = &t.master;
    (inline, argon2, commit, states[0].throttled)
}

#[test]
fn try_then_blocking_on_would_block_ends_where_the_blocking_call_alone_does() {
    let (mut inline, mut argon2, mut commit, mut throttled) = (0, 0, 0, 0);
    for seed in 0..8 {
        let (i, a, c, th) = run_twins(0x7e57 + seed, 150);
        inline += i;
        argon2 += a;
        commit += c;
        throttled += th;
    }
    // The random calls exercised every outcome.
    let seen = format!("inline {inline}, argon2 {argon2}, commit {commit}, throttled {throttled}");
    assert!(
        inline > 600 && argon2 > 50 && commit > 40 && throttled > 60,
        "{seen}"
    );
}
