//! The vault against an in-memory model, with a store that fails on demand (STYLE habit
//! 10). Each input is a sequence of operations on a fresh vault (create account, top up,
//! debit with or without an idempotency key, read a balance, arm a storage fault, reopen).
//! While the store is healthy every result (value or typed error) must be the model's.
//! A call that fails with `storage` may have landed only as a whole: after the reopen each
//! balance must be the model's plus a subset of those calls' effects, never anything else.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use keyledger::testing::fault;
use keyledger::{Argon2Params, Error, Vault, VaultOptions};
use libfuzzer_sys::fuzz_target;

const IDS: [&str; 3] = ["a", "b", "c"];

fn open(path: &std::path::Path) -> Vault {
    let options = VaultOptions {
        exclusive: true,
        argon2: Some(Argon2Params::INSECURE_FAST),
        ..VaultOptions::default()
    };
    Vault::open_with(path, options).expect("reopen after healing")
}

#[derive(Default)]
struct Model {
    /// id → (credits, total)
    accounts: BTreeMap<&'static str, (u64, u64)>,
    /// (id, idempotency key) → ((credits, total) after the first debit, its amount): a
    /// reuse with the same amount replays, with another amount is `idempotency_conflict`
    idem: BTreeMap<(&'static str, u8), ((u64, u64), u64)>,
    /// idempotency keys whose fate is unknown (a failed call carried them)
    spoiled: BTreeSet<(&'static str, u8)>,
    /// Calls that failed with `storage`: (id, credits delta, created?)
    uncertain: Vec<(&'static str, i128, bool)>,
    /// A call failed with `storage` since the last reopen.
    dead: bool,
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    std::fs::File::create(&path).unwrap();
    let faults = fault::arm(&path);
    let mut v = open(&path);
    let mut m = Model::default();
    let mut faulted = false;
    for op in data.chunks(3).take(40) {
        let (code, x, y) = (op[0], *op.get(1).unwrap_or(&0), *op.get(2).unwrap_or(&1));
        let id = IDS[usize::from(x % 3)];
        let amount = u64::from(y) + 1;
        // After a storage error the handle refuses until reopened (redb's PreviousIo);
        // no more changes until then, so at most one call is in doubt per reopen.
        if code % 7 < 4 && m.dead {
            continue;
        }
        match code % 7 {
            0 => {
                let r = v.create_account(id, amount * 10, None);
                settle(
                    &mut m,
                    faulted,
                    id,
                    r.map(|a| (a.credits, a.total_credits)),
                    |m| match m.accounts.get(id) {
                        Some(_) => (Err("already_exists"), 0, false),
                        None => (Ok((amount * 10, amount * 10)), (amount * 10) as i128, true),
                    },
                );
            }
            1 => {
                let r = v.top_up(id, amount, None);
                settle(
                    &mut m,
                    faulted,
                    id,
                    r.map(|b| (b.credits, b.total_credits)),
                    |m| match m.accounts.get(id) {
                        None => (Err("not_found"), 0, false),
                        Some(&(c, t)) => (Ok((c + amount, t + amount)), amount as i128, false),
                    },
                );
            }
            2 | 3 => {
                let key = (code % 7 == 3).then_some(x >> 2 & 3);
                if key.is_some_and(|k| m.spoiled.contains(&(id, k))) {
                    continue;
                }
                let ks = key.map(|k| format!("k{k}"));
                let r = v.debit(id, amount, ks.as_deref());
                if let (Some(k), Err(Error::Storage(_))) = (key, &r) {
                    m.spoiled.insert((id, k));
                }
                let replay = key.and_then(|k| m.idem.get(&(id, k)).copied());
                let r2 = r.map(|b| (b.credits, b.total_credits));
                let landed = settle(&mut m, faulted, id, r2, |m| match m.accounts.get(id) {
                    None => (Err("not_found"), 0, false),
                    Some(&(c, t)) => match replay {
                        Some((first, first_amount)) if first_amount == amount => {
                            (Ok(first), 0, false)
                        }
                        Some(_) => (Err("idempotency_conflict"), 0, false),
                        None if c < amount => (Err("insufficient_credits"), 0, false),
                        None => (Ok((c - amount, t)), -(amount as i128), false),
                    },
                });
                if let (Some(k), Some(after), None) = (key, landed, replay) {
                    m.idem.insert((id, k), (after, amount));
                }
            }
            4 => {
                if let Ok(b) = v.balance(id) {
                    assert!(!m.uncertain.iter().any(|u| u.0 == id) || faulted);
                    if !faulted {
                        let want = m.accounts.get(id).copied();
                        assert_eq!(Some((b.credits, b.total_credits)), want);
                    }
                } else if !faulted {
                    assert!(!m.accounts.contains_key(id));
                }
            }
            5 => {
                faults.fail_after(u64::from(x % 12));
                faulted = true;
            }
            _ => {
                faults.heal();
                drop(v);
                v = open(&path);
                reconcile(&v, &mut m);
                faulted = false;
            }
        }
    }
    faults.heal();
    drop(v);
    let v = open(&path);
    reconcile(&v, &mut m);
    drop(v);
    fault::disarm(&path);
});

/// Check one call's result against the model's prediction and apply it. Returns the
/// (credits, total) after the call when it succeeded.
fn settle(
    m: &mut Model,
    faulted: bool,
    id: &'static str,
    got: keyledger::Result<(u64, u64)>,
    predict: impl FnOnce(&Model) -> (Result<(u64, u64), &'static str>, i128, bool),
) -> Option<(u64, u64)> {
    let (want, delta, creates) = predict(m);
    match (got, want) {
        (Ok(got), Ok(want)) => {
            assert_eq!(got, want, "{id}");
            if creates {
                m.accounts.insert(id, got);
            } else if delta != 0 {
                m.accounts.insert(id, (got.0, got.1));
            }
            Some(got)
        }
        (Err(Error::Storage(_)), want) => {
            assert!(faulted, "storage error from a healthy store");
            m.dead = true;
            if want.is_ok() && (delta != 0 || creates) {
                m.uncertain.push((id, delta, creates));
            }
            None
        }
        (Err(e), Err(code)) => {
            assert_eq!(e.code(), code, "{id}");
            None
        }
        (got, want) => panic!("{id}: got {got:?}, the model says {want:?}"),
    }
}

/// After a reopen: each account is the model plus a subset of the uncertain calls.
fn reconcile(v: &Vault, m: &mut Model) {
    let uncertain = std::mem::take(&mut m.uncertain);
    m.dead = false;
    for id in IDS {
        let mine: Vec<&(&str, i128, bool)> = uncertain.iter().filter(|u| u.0 == id).collect();
        let actual = v.balance(id).ok().map(|b| (b.credits, b.total_credits));
        let base = m.accounts.get(id).copied();
        let n = mine.len().min(12);
        let mut ok = false;
        for mask in 0u32..(1 << n) {
            let mut cur: Option<(i128, i128)> = base.map(|(c, t)| (c.into(), t.into()));
            let mut valid = true;
            for (i, u) in mine.iter().take(n).enumerate() {
                if mask & (1 << i) == 0 {
                    continue;
                }
                match (&mut cur, u.2) {
                    (None, true) => cur = Some((u.1, u.1)),
                    (Some(_), true) => valid = false,
                    (None, false) => valid = false,
                    (Some((c, t)), false) => {
                        *c += u.1;
                        if u.1 > 0 {
                            *t += u.1;
                        }
                        valid &= *c >= 0;
                    }
                }
            }
            let cur = cur.map(|(c, t)| (c as u64, t as u64));
            if valid && cur == actual {
                ok = true;
                break;
            }
        }
        assert!(
            ok,
            "{id}: {actual:?} is not the model {base:?} plus a subset of {mine:?}"
        );
        match actual {
            Some(a) => {
                m.accounts.insert(id, a);
            }
            None => {
                m.accounts.remove(id);
            }
        }
    }
}
