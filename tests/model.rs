//! The vault against a simple in-memory model: random sequences of
//! operations (accounts, top-ups, debits with and without idempotency keys, keys created,
//! revoked, disabled, enabled, expiring, authorizations with a cost, a pinned clock moved
//! forward) where every observable result — value or typed error — must be the model's.
//! Then the same promises under concurrency, where results interleave: from several
//! threads and from several processes on one file, no overspend, totals exact, and an
//! idempotency key charges once whoever races on it.
//!
//! Sizes: 200 sequences by default (40 over PostgreSQL, `KEYLEDGER_TEST_PG_SUITES`),
//! `KEYLEDGER_LONG=1` 2 000 (or `PROPTEST_CASES`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::workloads::{hammer, mix, Tally};
use common::{options, run_child, Fixture, TestClock};
use keyledger::{AuthorizeOptions, Error, NewKey, Target, Vault, IDEMPOTENCY_WINDOW_MS};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const ACCOUNTS: [&str; 3] = ["acct_a", "acct_b", "did:privy:c"];
const SCOPES: [&str; 4] = ["sms:send", "sms:read", "numbers:read", "x"];
const HOUR: i64 = 3_600_000;

#[derive(Clone, Debug)]
enum Op {
    CreateAccount(usize, u64),
    TopUp(usize, u64),
    Debit(usize, u64, Option<u8>),
    CreateKey(usize, Vec<usize>, Option<i64>),
    Revoke(usize),
    Disable(usize),
    Enable(usize),
    SetExpiry(usize, Option<i64>),
    Authorize {
        key: usize,
        scope: usize,
        cost: u64,
        idem: Option<u8>,
        wrong_secret: bool,
    },
    Balance(usize),
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let acct = 0..ACCOUNTS.len();
    prop_oneof![
        2 => (acct.clone(), 0..40u64).prop_map(|(a, c)| Op::CreateAccount(a, c)),
        2 => (acct.clone(), 0..20u64).prop_map(|(a, c)| Op::TopUp(a, c)),
        3 => (acct.clone(), 0..15u64, proptest::option::of(0..3u8))
            .prop_map(|(a, c, k)| Op::Debit(a, c, k)),
        2 => (acct.clone(), proptest::collection::vec(0..5usize, 1..3),
              proptest::option::of(1..48i64))
            .prop_map(|(a, s, e)| Op::CreateKey(a, s, e.map(|h| h * HOUR))),
        1 => (0..6usize).prop_map(Op::Revoke),
        1 => (0..6usize).prop_map(Op::Disable),
        1 => (0..6usize).prop_map(Op::Enable),
        1 => (0..6usize, proptest::option::of(-24..48i64))
            .prop_map(|(k, h)| Op::SetExpiry(k, h.map(|h| h * HOUR))),
        6 => (0..6usize, 0..SCOPES.len(), 0..8u64, proptest::option::of(0..3u8), proptest::bool::weighted(0.1))
            .prop_map(|(key, scope, cost, idem, wrong_secret)| Op::Authorize { key, scope, cost, idem, wrong_secret }),
        1 => acct.prop_map(Op::Balance),
        1 => prop_oneof![0..2 * HOUR, 20 * HOUR..30 * HOUR].prop_map(Op::Advance),
    ]
}

#[derive(Clone, Debug)]
struct MKey {
    key_id: String,
    token: String,
    account: usize,
    scopes: Vec<String>,
    revoked: bool,
    disabled: bool,
    expires_at: Option<i64>,
}

#[derive(Default, Debug)]
struct Model {
    /// credits, total
    accounts: HashMap<usize, (u64, u64)>,
    keys: Vec<MKey>,
    /// (account, namespaced idempotency key) → (time, credits, total, charged, what the
    /// call was: its scope or "debit", and its cost)
    idem: HashMap<(usize, String), Stored>,
}

/// What an idempotent call was, for conflicts: its scope (or "debit") and its cost.
type Call = (String, u64);
/// (time, credits, total, charged, call)
type Stored = (i64, u64, u64, u64, Call);

/// What a call returned, in a form both sides can produce.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Balance(u64, u64),
    Grant {
        charged: u64,
        credits: u64,
        replayed: bool,
    },
    Key,
    Err(Error),
}

fn scope_grants(granted: &[String], required: &str) -> bool {
    granted.iter().any(|g| {
        g == "*"
            || g == required
            || g.strip_suffix('*')
                .is_some_and(|ns| required.starts_with(ns))
    })
}

impl Model {
    /// The stored outcome of a repeat, or a conflict when the key served another call.
    fn idem_replay(
        &self,
        a: usize,
        k: &str,
        now: i64,
        what: &(String, u64),
    ) -> Option<Result<(u64, u64, u64), Error>> {
        self.idem
            .get(&(a, k.to_string()))
            .filter(|(at, ..)| now - at < IDEMPOTENCY_WINDOW_MS)
            .map(|(_, c, t, ch, w)| {
                if w == what {
                    Ok((*c, *t, *ch))
                } else {
                    Err(Error::IdempotencyConflict)
                }
            })
    }

    /// The model's answer to a debit of `cost` (idempotency key already namespaced).
    fn debit(
        &mut self,
        a: usize,
        cost: u64,
        idem: Option<String>,
        now: i64,
        scope: &str,
    ) -> Result<(u64, u64, u64, bool), Error> {
        let what = (scope.to_string(), cost);
        let &(credits, total) = self
            .accounts
            .get(&a)
            .ok_or_else(|| Error::NotFound(String::new()))?;
        if let Some(k) = &idem {
            if let Some(r) = self.idem_replay(a, k, now, &what) {
                let (c, t, ch) = r?;
                return Ok((c, t, ch, true));
            }
        }
        if credits < cost {
            return Err(Error::InsufficientCredits {
                credits,
                required: cost,
            });
        }
        let left = credits - cost;
        self.accounts.insert(a, (left, total));
        if let Some(k) = idem {
            self.idem.insert((a, k), (now, left, total, cost, what));
        }
        Ok((left, total, cost, false))
    }
}

/// Errors compare by code (messages of not_found and invalid_argument are free text),
/// and by every field for the refusals whose body carries data.
fn normalize(e: Error) -> Error {
    match e {
        Error::NotFound(_) => Error::NotFound(String::new()),
        Error::InvalidArgument(_) => Error::InvalidArgument(String::new()),
        other => other,
    }
}

fn run_sequence(ops: &[Op], checked: &AtomicU64) -> Result<(), TestCaseError> {
    let f = Fixture::new();
    let v = &f.vault;
    let clock: &TestClock = &f.clock;
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now();
        let (got, want): (Seen, Seen) = match op {
            Op::CreateAccount(a, c) => {
                let got = v
                    .create_account(ACCOUNTS[*a], *c, None)
                    .map(|acc| Seen::Balance(acc.credits, acc.total_credits));
                let want = if m.accounts.contains_key(a) {
                    Err(Error::AlreadyExists(String::new()))
                } else {
                    m.accounts.insert(*a, (*c, *c));
                    Ok(Seen::Balance(*c, *c))
                };
                (
                    got.unwrap_or_else(|e| {
                        Seen::Err(match normalize(e) {
                            Error::AlreadyExists(_) => Error::AlreadyExists(String::new()),
                            e => e,
                        })
                    }),
                    want.unwrap_or_else(Seen::Err),
                )
            }
            Op::TopUp(a, c) => {
                let got = v
                    .top_up(ACCOUNTS[*a], *c, None)
                    .map(|b| Seen::Balance(b.credits, b.total_credits));
                let want = if *c == 0 {
                    Err(Error::InvalidArgument(String::new()))
                } else if let Some(&(cr, t)) = m.accounts.get(a) {
                    m.accounts.insert(*a, (cr + c, t + c));
                    Ok(Seen::Balance(cr + c, t + c))
                } else {
                    Err(Error::NotFound(String::new()))
                };
                (
                    got.unwrap_or_else(|e| Seen::Err(normalize(e))),
                    want.unwrap_or_else(Seen::Err),
                )
            }
            Op::Debit(a, c, k) => {
                let key = k.map(|k| format!("idem-{k}"));
                let got = v
                    .debit(ACCOUNTS[*a], *c, key.as_deref())
                    .map(|b| Seen::Balance(b.credits, b.total_credits));
                let want = if *c == 0 {
                    Err(Error::InvalidArgument(String::new()))
                } else {
                    m.debit(*a, *c, key.map(|k| format!("d:{k}")), now, "debit")
                        .map(|(cr, t, _, _)| Seen::Balance(cr, t))
                };
                (
                    got.unwrap_or_else(|e| Seen::Err(normalize(e))),
                    want.unwrap_or_else(Seen::Err),
                )
            }
            Op::CreateKey(a, scopes, expires_in) => {
                let scopes: Vec<String> = scopes
                    .iter()
                    .map(|&s| SCOPES.get(s).map_or("sms:*".to_string(), |s| s.to_string()))
                    .collect();
                let mut new = NewKey::new(ACCOUNTS[*a], "k", scopes.iter().map(String::as_str));
                if let Some(ms) = expires_in {
                    new = new.expires_in_ms(*ms);
                }
                let got = v.create_key(new);
                let want = if m.accounts.contains_key(a) {
                    Seen::Key
                } else {
                    Seen::Err(Error::NotFound(String::new()))
                };
                let got = match got {
                    Ok((token, info)) => {
                        prop_assert_eq!(info.expires_at, expires_in.map(|ms| now + ms));
                        let mut sorted = scopes.clone();
                        sorted.sort();
                        sorted.dedup();
                        let mut have = info.scopes.clone();
                        have.sort();
                        prop_assert_eq!(have, sorted.clone());
                        m.keys.push(MKey {
                            key_id: info.key_id,
                            token: token.expose().to_string(),
                            account: *a,
                            scopes: sorted,
                            revoked: false,
                            disabled: false,
                            expires_at: info.expires_at,
                        });
                        Seen::Key
                    }
                    Err(e) => Seen::Err(normalize(e)),
                };
                (got, want)
            }
            Op::Revoke(i) | Op::Disable(i) | Op::Enable(i) | Op::SetExpiry(i, _) => {
                let Some(k) = m.keys.get(*i % m.keys.len().max(1)).cloned() else {
                    continue;
                };
                let idx = *i % m.keys.len();
                let r = match op {
                    Op::Revoke(_) => v.revoke_key(&k.key_id),
                    Op::Disable(_) => v.disable_key(&k.key_id),
                    Op::Enable(_) => v.enable_key(&k.key_id),
                    Op::SetExpiry(_, h) => v.set_expiry(&k.key_id, h.map(|h| now + h)),
                    _ => unreachable!(),
                };
                let want = if k.revoked && !matches!(op, Op::Revoke(_)) {
                    Seen::Err(Error::InvalidArgument(String::new()))
                } else {
                    let mk = &mut m.keys[idx];
                    match op {
                        Op::Revoke(_) => mk.revoked = true,
                        Op::Disable(_) => mk.disabled = true,
                        Op::Enable(_) => mk.disabled = false,
                        Op::SetExpiry(_, h) => mk.expires_at = h.map(|h| now + h),
                        _ => unreachable!(),
                    }
                    Seen::Key
                };
                let got = match r {
                    Ok(info) => {
                        let mk = &m.keys[idx];
                        prop_assert_eq!(info.revoked_at.is_some(), mk.revoked);
                        prop_assert_eq!(info.disabled, mk.disabled);
                        prop_assert_eq!(info.expires_at, mk.expires_at);
                        Seen::Key
                    }
                    Err(e) => Seen::Err(normalize(e)),
                };
                (got, want)
            }
            Op::Authorize {
                key,
                scope,
                cost,
                idem,
                wrong_secret,
            } => {
                let Some(k) = m.keys.get(*key % m.keys.len().max(1)).cloned() else {
                    continue;
                };
                let mut token = k.token.clone();
                if *wrong_secret {
                    // Another valid-looking secret for the same key id.
                    token = keyledger::token::mint(
                        keyledger::token::parse(&k.token).unwrap().prefix,
                        &k.key_id,
                    )
                    .unwrap()
                    .to_string();
                }
                let ikey = idem.map(|i| format!("req-{i}"));
                let opts = AuthorizeOptions {
                    cost: Some(*cost),
                    idempotency_key: ikey.as_deref(),
                    ..AuthorizeOptions::default()
                };
                let required = SCOPES[*scope];
                let got = match v.authorize(&token, Target::scope(required), &opts) {
                    Ok(g) => {
                        // A replay returns the first call's grant, maybe another key's.
                        if !g.replayed {
                            prop_assert_eq!(&g.key_id, &k.key_id);
                        }
                        prop_assert_eq!(g.account_id.as_str(), ACCOUNTS[k.account]);
                        Seen::Grant {
                            charged: g.charged,
                            credits: g.credits,
                            replayed: g.replayed,
                        }
                    }
                    Err(e) => Seen::Err(normalize(e)),
                };
                let want = if *wrong_secret || k.revoked {
                    Seen::Err(Error::InvalidApiKey)
                } else if k.disabled {
                    Seen::Err(Error::ApiKeyInactive)
                } else if k.expires_at.is_some_and(|at| now >= at) {
                    Seen::Err(Error::ApiKeyExpired)
                } else if !scope_grants(&k.scopes, required) {
                    Seen::Err(Error::MissingScope {
                        required: required.to_string(),
                    })
                } else if *cost == 0 && ikey.is_none() {
                    let (c, _) = m.accounts[&k.account];
                    Seen::Grant {
                        charged: 0,
                        credits: c,
                        replayed: false,
                    }
                } else {
                    match m.debit(
                        k.account,
                        *cost,
                        ikey.map(|i| format!("a:{i}")),
                        now,
                        required,
                    ) {
                        Ok((credits, _, charged, replayed)) => Seen::Grant {
                            charged: if replayed { 0 } else { charged },
                            credits,
                            replayed,
                        },
                        Err(e) => Seen::Err(e),
                    }
                };
                (got, want)
            }
            Op::Balance(a) => {
                let got = v
                    .balance(ACCOUNTS[*a])
                    .map(|b| Seen::Balance(b.credits, b.total_credits))
                    .unwrap_or_else(|e| Seen::Err(normalize(e)));
                let want = m
                    .accounts
                    .get(a)
                    .map_or(Seen::Err(Error::NotFound(String::new())), |&(c, t)| {
                        Seen::Balance(c, t)
                    });
                (got, want)
            }
            Op::Advance(ms) => {
                clock.advance(*ms);
                continue;
            }
        };
        let got = match got {
            Seen::Err(Error::AlreadyExists(_)) => Seen::Err(Error::AlreadyExists(String::new())),
            g => g,
        };
        prop_assert_eq!(got, want, "step {} {:?}", step, op);
        checked.fetch_add(1, Ordering::Relaxed);
    }
    // Everything the model holds is in the file too, seen by a fresh handle.
    drop(f.vault);
    let v = Vault::open_with(&f.path, options()).unwrap();
    for (a, &(c, t)) in &m.accounts {
        let b = v.balance(ACCOUNTS[*a]).unwrap();
        prop_assert_eq!((b.credits, b.total_credits), (c, t));
    }
    for k in &m.keys {
        let info = v.key(&k.key_id).unwrap();
        prop_assert_eq!(info.revoked_at.is_some(), k.revoked);
        prop_assert_eq!(info.disabled, k.disabled);
        prop_assert_eq!(info.expires_at, k.expires_at);
    }
    common::assert_no_audit_gap(&v);
    Ok(())
}

fn cases() -> u32 {
    if let Ok(n) = std::env::var("PROPTEST_CASES") {
        return n.parse().unwrap();
    }
    if std::env::var_os("KEYLEDGER_LONG").is_some() {
        2_000
    } else if std::env::var("KEYLEDGER_TEST_PG_SUITES").is_ok_and(|u| !u.is_empty()) {
        // Over PostgreSQL each sequence creates a database: fewer, for CI's time.
        40
    } else {
        200
    }
}

#[test]
fn random_operation_sequences_match_the_model() {
    let checked = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let ops = proptest::collection::vec(op(), 1..48);
    let started = std::time::Instant::now();
    runner
        .run(&ops, |ops| run_sequence(&ops, &checked))
        .unwrap();
    eprintln!(
        "model: {} sequences, {} operations checked against the model in {:.1}s",
        cases(),
        checked.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------- concurrency

fn check_totals(v: &Vault, initial: u64, tallies: &[Tally]) {
    let debited: u64 = tallies.iter().map(|t| t.debited).sum();
    let topped: u64 = tallies.iter().map(|t| t.topped).sum();
    let b = v.balance("a").unwrap();
    assert_eq!(b.total_credits, initial + topped, "top-ups lost");
    assert_eq!(
        b.credits + debited,
        initial + topped,
        "credits lost or overspent"
    );
    for k in 0..16u64 {
        let charged: u64 = tallies.iter().filter_map(|t| t.idem.get(&k)).sum();
        assert!(
            charged == 0 || charged == 1 + k % 5,
            "idempotency key {k} charged {charged}"
        );
    }
}

#[test]
fn threads_racing_on_one_account_never_overspend_and_totals_are_exact() {
    const INITIAL: u64 = 300;
    let f = Fixture::new();
    f.vault.create_account("a", INITIAL, None).unwrap();
    let (token, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let v = Arc::new(f.vault);
    let token = Arc::new(token.expose().to_string());
    let tallies: Vec<Tally> = (0..6u64)
        .map(|i| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || hammer(&v, &token, mix(i + 1), 150))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    check_totals(&v, INITIAL, &tallies);
    let refused: u64 = tallies.iter().map(|t| t.refused).sum();
    eprintln!("threads: 900 operations, {refused} refused for credits");
}

#[test]
fn processes_racing_on_one_file_never_overspend_and_totals_are_exact() {
    const INITIAL: u64 = 300;
    let f = Fixture::new();
    f.vault.create_account("a", INITIAL, None).unwrap();
    let (token, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let children: Vec<_> = (0..3u64)
        .map(|i| {
            let env = [
                ("KL_PATH", f.path.display().to_string()),
                ("KL_TOKEN", token.expose().to_string()),
                ("KL_SEED", (i + 11).to_string()),
            ];
            std::thread::spawn(move || run_child("model::hammer", &env))
        })
        .collect();
    let mut tallies = Vec::new();
    for c in children {
        let out = c.join().unwrap();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(rest) = line.strip_prefix("@@ ") else {
                continue;
            };
            let w: Vec<&str> = rest.split(' ').collect();
            let mut t = Tally {
                debited: w[0].parse().unwrap(),
                topped: w[1].parse().unwrap(),
                ..Tally::default()
            };
            if w[2] != "-" {
                for kc in w[2].split(',') {
                    let (k, c) = kc.split_once(':').unwrap();
                    t.idem.insert(k.parse().unwrap(), c.parse().unwrap());
                }
            }
            tallies.push(t);
        }
    }
    assert_eq!(tallies.len(), 6, "every worker reported");
    check_totals(&f.vault, INITIAL, &tallies);
}
