//! Workloads run both in a test's own threads and in child processes
//! (`tests/children/`): the same code on both sides of the comparison. No dev-dependency
//! here: the child binary includes this file too.
#![allow(dead_code)]

use std::collections::HashMap;

use keyledger::{AuthorizeOptions, Error, MasterKey, OnReplay, Target, Vault, VaultOptions};

use super::base::{options, TestClock, T0};

// ---------------------------------------------------------------- tests/concurrency.rs

pub const COST1: AuthorizeOptions<'static> = AuthorizeOptions {
    cost: Some(1),
    idempotency_key: None,
    signature: None,
    body: None,
    now: None,
    limits: None,
    limit_cost: None,
    on_replay: OnReplay::Grant,
    query: None,
    hold: None,
    hold_ttl_ms: None,
};

pub fn spend_until_refused(v: &Vault, token: &str) -> (u64, u64) {
    let (mut granted, mut refused) = (0, 0);
    loop {
        match v.authorize(token, Target::scope("x"), &COST1) {
            Ok(_) => granted += 1,
            Err(Error::InsufficientCredits { credits: 0, .. }) => {
                refused += 1;
                if refused >= 3 {
                    return (granted, refused);
                }
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

// ---------------------------------------------------------------- tests/model.rs, tests/crash.rs

/// splitmix64
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// splitmix64 as a stream: reproducible randomness without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let z = mix(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Totals one worker saw acknowledged.
#[derive(Default, Debug)]
pub struct Tally {
    pub debited: u64,
    pub topped: u64,
    /// idempotency key → credits charged under it by this worker
    pub idem: HashMap<u64, u64>,
    pub refused: u64,
}

/// Random debits (authorize with a cost, management debits, shared idempotency keys whose
/// cost is fixed per key) and top-ups, against one account, until `ops` are done.
pub fn hammer(v: &Vault, token: &str, seed: u64, ops: u64) -> Tally {
    let mut t = Tally::default();
    let mut s = seed;
    for _ in 0..ops {
        s = mix(s);
        let c = 1 + (s >> 8) % 7;
        match s % 10 {
            0..=4 => match v.authorize(
                token,
                Target::scope("x"),
                &AuthorizeOptions {
                    cost: Some(c),
                    ..AuthorizeOptions::default()
                },
            ) {
                Ok(g) => t.debited += g.charged,
                Err(Error::InsufficientCredits { required, .. }) if required == c => t.refused += 1,
                Err(e) => panic!("authorize: {e:?}"),
            },
            5 => match v.debit("a", c, None) {
                Ok(_) => t.debited += c,
                Err(Error::InsufficientCredits { .. }) => t.refused += 1,
                Err(e) => panic!("debit: {e:?}"),
            },
            6..=8 => {
                // 16 keys shared by every worker; the cost is a function of the key.
                let k = (s >> 20) % 16;
                let key = format!("shared-{k}");
                match v.authorize(
                    token,
                    Target::scope("x"),
                    &AuthorizeOptions {
                        cost: Some(1 + k % 5),
                        idempotency_key: Some(&key),
                        ..AuthorizeOptions::default()
                    },
                ) {
                    Ok(g) => {
                        assert!(!g.replayed || g.charged == 0);
                        *t.idem.entry(k).or_default() += g.charged;
                        t.debited += g.charged;
                    }
                    Err(Error::InsufficientCredits { .. }) => t.refused += 1,
                    Err(e) => panic!("idempotent authorize: {e:?}"),
                }
            }
            _ => {
                v.top_up("a", c * 3, None).unwrap();
                t.topped += c * 3;
            }
        }
    }
    t
}

// ---------------------------------------------------------------- tests/security_signing.rs

/// A vault with the master key, the pinned clock and (or not) single-use signatures.
pub fn open_signing(
    path: &std::path::Path,
    master: &MasterKey,
    clock: &TestClock,
    single_use: bool,
) -> Vault {
    Vault::open_with(
        path,
        VaultOptions {
            master_key: Some(master.clone()),
            clock: Some(clock.clock()),
            single_use_signatures: single_use,
            ..options()
        },
    )
    .unwrap()
}

/// Authorize options carrying a signature, the body and query, at T0.
pub fn signed<'a>(sig: &'a str, body: &'a [u8], query: Option<&'a str>) -> AuthorizeOptions<'a> {
    AuthorizeOptions {
        signature: Some(sig),
        body: Some(body),
        now: Some(T0),
        query,
        ..AuthorizeOptions::default()
    }
}
