//! Storage that fails on demand (STYLE habit 10): a write, `set_len` or fsync that fails
//! in the middle of a debit or a management change returns `storage`, and the balance is
//! exact afterwards. A failed commit never moves a balance in the process that saw it
//! fail; after a reopen the change is either wholly there or wholly absent (only a failed
//! *final* fsync can leave it there: the bytes reached the file, the kernel could not
//! promise they are durable, which every database reports as an error).
//!
//! Two failing layers (`keyledger::testing::fault`, compiled with the `fault-injection`
//! feature that the integration tests turn on): `fault::arm` fails the file under redb,
//! `fault::arm_operations` wraps the storage backend, whatever it is (redb or
//! PostgreSQL), and fails its operations.

mod common;

use common::{assert_no_audit_gap, assert_redb_integrity as check_integrity, options, Fixture};
use keyledger::testing::fault;
use keyledger::{AuthorizeOptions, NewKey, Target, Vault};

fn open(path: &std::path::Path) -> Vault {
    Vault::open_with(path, options()).unwrap()
}

#[test]
fn a_storage_error_during_a_debit_returns_storage_and_moves_no_balance() {
    let f = Fixture::new();
    f.vault.create_account("a", 1_000, None).unwrap();
    let (token, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    f.vault.close().unwrap();
    let faults = fault::arm(&f.path);
    let mut expected = 1_000u64;
    let (mut failed, mut landed_anyway, mut ok) = (0, 0, 0);
    // Fail the n-th mutating operation of the call, for every n the call performs.
    for n in 0..24u64 {
        for via_authorize in [false, true] {
            let v = open(&f.path);
            assert_eq!(v.balance("a").unwrap().credits, expected);
            let ops_before = faults.operations();
            faults.fail_after(n);
            let r = if via_authorize {
                v.authorize(
                    token.expose(),
                    Target::scope("x"),
                    &AuthorizeOptions {
                        cost: Some(3),
                        ..AuthorizeOptions::default()
                    },
                )
                .map(|g| g.credits)
            } else {
                v.debit("a", 3, None).map(|b| b.credits)
            };
            let hit = faults.operations() - ops_before > n;
            match r {
                Ok(credits) => {
                    assert!(!hit || faults.failures() > 0);
                    expected -= 3;
                    assert_eq!(credits, expected);
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.code(), "storage", "{e:?}");
                    failed += 1;
                    // The process that saw the failure never reports the debit.
                    if let Ok(b) = v.balance("a") {
                        assert_eq!(b.credits, expected, "a failed debit moved the balance");
                    }
                }
            }
            faults.heal();
            drop(v);
            check_integrity(&f.path);
            let v = open(&f.path);
            let credits = v.balance("a").unwrap().credits;
            if credits != expected {
                // Only possible when the failure hit the final fsync: all or nothing.
                assert_eq!(credits + 3, expected, "a partial or double debit");
                expected = credits;
                landed_anyway += 1;
            }
            assert_no_audit_gap(&v);
            v.close().unwrap();
        }
    }
    eprintln!("debits: {ok} acknowledged, {failed} failed ({landed_anyway} of them durable after the final fsync failed)");
    assert!(failed > 10, "the faults never hit a debit");
    fault::disarm(&f.path);
}

#[test]
fn a_storage_error_during_a_management_change_changes_nothing_or_everything() {
    let f = Fixture::new();
    f.vault.create_account("a", 10, None).unwrap();
    f.vault.close().unwrap();
    let faults = fault::arm(&f.path);
    let mut topped = 0u64;
    let mut keys = 0usize;
    for n in 0..16u64 {
        let v = open(&f.path);
        faults.fail_after(n);
        let top = v.top_up("a", 5, Some("r"));
        faults.heal();
        drop(v);
        let v = open(&f.path);
        faults.fail_after(n);
        let created = v.create_key(NewKey::new("a", "k", ["x"]));
        faults.heal();
        if let Err(e) = &top {
            assert_eq!(e.code(), "storage");
        }
        if let Err(e) = &created {
            assert_eq!(e.code(), "storage");
        }
        drop(v);
        check_integrity(&f.path);
        let v = open(&f.path);
        let b = v.balance("a").unwrap();
        // Acknowledged changes are all there; a failed one is wholly there or absent.
        if top.is_ok() {
            topped += 5;
        }
        assert!(b.credits == 10 + topped || (top.is_err() && b.credits == 10 + topped + 5));
        topped = b.credits - 10;
        assert_eq!(b.total_credits, b.credits);
        let n_keys = v.list_keys(Some("a")).unwrap().len();
        if created.is_ok() {
            keys += 1;
        }
        assert!(n_keys == keys || (created.is_err() && n_keys == keys + 1));
        keys = n_keys;
        assert_no_audit_gap(&v);
        v.close().unwrap();
    }
    fault::disarm(&f.path);
}

#[test]
fn after_a_storage_error_the_same_handle_refuses_or_stays_exact() {
    let f = Fixture::new();
    f.vault.create_account("a", 1_000, None).unwrap();
    f.vault.close().unwrap();
    let faults = fault::arm(&f.path);
    let (mut recovered, mut refused) = (0, 0);
    for n in 0..12u64 {
        let v = open(&f.path);
        let start = v.balance("a").unwrap().credits;
        faults.fail_after(n);
        let first = v.debit("a", 3, None);
        faults.heal();
        // The same handle, after the disk is healthy again.
        let mut acked = u64::from(first.is_ok()) * 3;
        for _ in 0..3 {
            match v.debit("a", 1, None) {
                Ok(b) => {
                    acked += 1;
                    recovered += 1;
                    // What it reports is what the file holds (the failed debit may have
                    // landed only if its final fsync failed).
                    assert!(b.credits == start - acked || b.credits + 3 == start - acked);
                }
                Err(e) => {
                    assert_eq!(e.code(), "storage", "{e:?}");
                    refused += 1;
                }
            }
        }
        drop(v);
        let v = open(&f.path);
        let now = v.balance("a").unwrap().credits;
        assert!(
            now == start - acked || (first.is_err() && now + 3 == start - acked),
            "start {start} acked {acked} now {now}"
        );
        v.close().unwrap();
    }
    eprintln!(
        "same handle after a fault: {recovered} debits succeeded, {refused} refused with storage"
    );
    fault::disarm(&f.path);
}

/// The same promise over the backend trait, whatever the backend: a storage operation that
/// fails (any typed write of the transaction, or its commit) at any point of a debit, an
/// authorization that charges or a top-up fails that call with `storage` and changes
/// nothing, and the same handle goes on exactly once the storage is healthy.
#[test]
fn a_failed_backend_operation_fails_the_call_and_changes_nothing() {
    let f = Fixture::new();
    f.vault.create_account("a", 1_000, None).unwrap();
    let (token, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    f.vault.close().unwrap();
    let faults = fault::arm_operations(&f.path);
    let v = open(&f.path);
    let charge = AuthorizeOptions {
        cost: Some(2),
        ..AuthorizeOptions::default()
    };
    let mut expected = 1_000u64;
    let mut failed = 0;
    for n in 0..8u64 {
        faults.fail_after(n);
        let debit = v.debit("a", 3, None).map(|b| b.credits);
        let authorized = v
            .authorize(token.expose(), Target::scope("x"), &charge)
            .map(|g| g.credits);
        let topped = v.top_up("a", 5, None).map(|b| b.credits);
        faults.heal();
        for (r, delta) in [(debit, -3i64), (authorized, -2), (topped, 5)] {
            match r {
                Ok(credits) => {
                    expected = expected.checked_add_signed(delta).unwrap();
                    assert_eq!(credits, expected);
                }
                Err(e) => {
                    assert_eq!(e.code(), "storage", "{e:?}");
                    failed += 1;
                }
            }
        }
        assert_eq!(v.balance("a").unwrap().credits, expected);
    }
    assert!(failed > 0, "no operation failed");
    assert!(faults.failures() > 0);
    v.close().unwrap();
    drop(v);
    fault::disarm(&f.path);
    // A redb file is checked with redb's own integrity check (over PostgreSQL, the
    // Fixture's database: nothing to check but the answers below).
    if f.path.starts_with(f.dir.path()) {
        check_integrity(&f.path);
    }
    let v = open(&f.path);
    assert_eq!(v.balance("a").unwrap().credits, expected);
    assert_no_audit_gap(&v);
    v.close().unwrap();
}
