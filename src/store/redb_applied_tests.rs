//! The `applied` records of the combining queue and the writer's try-lock, on a real file.

use super::*;

fn open(dir: &tempfile::TempDir) -> RedbBackend {
    RedbBackend::open(
        &dir.path().join("vault.redb"),
        &FileOptions {
            exclusive: false,
            cache_bytes: 1 << 20,
            shared_cache: true,
            shm_slots: crate::shm::Sidecar::DEFAULT_SLOTS,
        },
    )
    .unwrap()
}

#[test]
fn an_applied_outcome_exists_only_once_its_transaction_committed() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir);
    assert!(b.records_applied());
    let mut tx = b.write().unwrap();
    tx.put_applied((7, 1), 1_000, b"first").unwrap();
    drop(tx); // aborted: never committed
    let mut tx = b.write().unwrap();
    assert_eq!(tx.applied((7, 1)).unwrap(), None);
    tx.put_applied((7, 1), 1_000, b"first").unwrap();
    tx.put_applied((7, 2), 2_000, b"second").unwrap();
    tx.commit(Durability::Immediate).unwrap();
    let mut tx = b.write().unwrap();
    assert_eq!(tx.applied((7, 1)).unwrap().as_deref(), Some(&b"first"[..]));
    assert_eq!(tx.applied((7, 2)).unwrap().as_deref(), Some(&b"second"[..]));
    assert_eq!(tx.applied((8, 1)).unwrap(), None);
}

#[test]
fn pruning_forgets_only_applied_records_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir);
    let mut tx = b.write().unwrap();
    for i in 0..10u64 {
        tx.put_applied((1, i), i as i64 * 100, b"x").unwrap();
    }
    tx.commit(Durability::Immediate).unwrap();
    let mut tx = b.write().unwrap();
    assert_eq!(tx.prune_applied(500, 3).unwrap(), 3);
    assert_eq!(tx.prune_applied(500, 100).unwrap(), 2);
    assert_eq!(tx.prune_applied(500, 100).unwrap(), 0);
    tx.commit(Durability::Immediate).unwrap();
    let mut tx = b.write().unwrap();
    for i in 0..10u64 {
        assert_eq!(tx.applied((1, i)).unwrap().is_some(), i >= 5, "record {i}");
    }
}

#[test]
fn try_write_refuses_while_another_write_is_in_progress_and_succeeds_after() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(&dir);
    let tx = b.write().unwrap();
    assert!(b.try_write().unwrap().is_none());
    drop(tx);
    let tx = b.try_write().unwrap().expect("free again");
    tx.commit(Durability::Immediate).unwrap();
}
