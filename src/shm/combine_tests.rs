use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;

fn region(slots: usize) -> Box<[AtomicU64]> {
    let words: Box<[AtomicU64]> = (0..region_words(slots))
        .map(|_| AtomicU64::new(0))
        .collect();
    init(&words).unwrap();
    words
}

fn id(counter: u64) -> RequestId {
    RequestId {
        nonce: 0xfeed,
        counter,
    }
}

#[test]
fn a_request_goes_through_every_state_and_the_slot_is_free_again() {
    let words = region(4);
    let q = Queue::new(&words).unwrap();
    assert_eq!(q.slot_count(), 4);
    let t = q.claim(7).unwrap();
    assert_eq!(q.word(t.index).unwrap().state, State::Claimed);
    assert_eq!(q.word(t.index).unwrap().owner, 7);
    let t = q.submit(t, id(1), b"debit 5 from acct").unwrap();
    assert_eq!(q.poll(t).unwrap(), Poll::Submitted);
    let taken = q.take(9, 100).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, id(1));
    assert_eq!(taken[0].request, b"debit 5 from acct");
    assert_eq!(q.poll(t).unwrap(), Poll::Taken { combiner: 9 });
    q.complete(taken[0].ticket, b"ok 95").unwrap();
    assert_eq!(q.poll(t).unwrap(), Poll::Done(b"ok 95".to_vec()));
    q.release(t.index, 7).unwrap();
    assert_eq!(q.word(t.index).unwrap().state, State::Free);
    assert!(q.take(9, 100).unwrap().is_empty());
}

#[test]
fn operations_out_of_order_or_by_another_owner_are_refused_and_change_nothing() {
    let words = region(2);
    let q = Queue::new(&words).unwrap();
    let claimed = q.claim(1).unwrap();
    // Nothing submitted yet: nothing to take, and a claimed slot cannot be completed.
    assert!(q.take(2, 10).unwrap().is_empty());
    assert_eq!(q.complete(claimed, b"x"), Err(QueueError::WrongState));
    // Another owner cannot release it; a bad owner number is refused.
    assert_eq!(q.release(claimed.index, 2), Err(QueueError::WrongState));
    assert_eq!(q.claim(0), Err(QueueError::BadOwner));
    assert_eq!(q.claim(MAX_OWNERS + 1), Err(QueueError::BadOwner));
    let sub = q.submit(claimed, id(1), b"r").unwrap();
    // A stale ticket (the CLAIMED one) cannot submit again.
    assert_eq!(q.submit(claimed, id(2), b"r2"), Err(QueueError::WrongState));
    // A submitted slot cannot be released before its outcome.
    assert_eq!(q.release(sub.index, 1), Err(QueueError::WrongState));
    let taken = q.take(2, 10).unwrap();
    assert_eq!(
        taken[0].request, b"r",
        "the refused submit did not overwrite"
    );
    // Completing twice: the second is refused, the first outcome stays.
    q.complete(taken[0].ticket, b"first").unwrap();
    assert_eq!(
        q.complete(taken[0].ticket, b"second"),
        Err(QueueError::WrongState)
    );
    assert_eq!(q.poll(sub).unwrap(), Poll::Done(b"first".to_vec()));
}

#[test]
fn a_full_queue_and_oversized_payloads_are_refused() {
    let words = region(2);
    let q = Queue::new(&words).unwrap();
    let a = q.claim(1).unwrap();
    let _b = q.claim(1).unwrap();
    assert_eq!(q.claim(1), Err(QueueError::Full));
    assert_eq!(
        q.submit(a, id(1), &[0u8; REQ_BYTES + 1]),
        Err(QueueError::TooLong)
    );
    let a = q.submit(a, id(1), &[0xab; REQ_BYTES]).unwrap();
    let taken = q.take(3, 10).unwrap();
    assert_eq!(taken[0].request, vec![0xab; REQ_BYTES]);
    assert_eq!(
        q.complete(taken[0].ticket, &[0u8; OUT_BYTES + 1]),
        Err(QueueError::TooLong)
    );
    q.complete(taken[0].ticket, &[0xcd; OUT_BYTES]).unwrap();
    assert_eq!(q.poll(a).unwrap(), Poll::Done(vec![0xcd; OUT_BYTES]));
}

#[test]
fn a_region_that_is_not_a_queue_is_refused() {
    let zero: Box<[AtomicU64]> = (0..region_words(2)).map(|_| AtomicU64::new(0)).collect();
    assert_eq!(Queue::new(&zero).err(), Some(QueueError::BadRegion));
    let short: Box<[AtomicU64]> = (0..3).map(|_| AtomicU64::new(0)).collect();
    assert_eq!(init(&short), Err(QueueError::BadRegion));
    // A slot count larger than the region holds.
    let words = region(2);
    words[1].store(1_000, Ordering::Relaxed);
    assert_eq!(Queue::new(&words).err(), Some(QueueError::BadRegion));
}

#[test]
fn take_respects_its_maximum_and_leaves_the_rest_submitted() {
    let words = region(8);
    let q = Queue::new(&words).unwrap();
    for i in 0..5 {
        let t = q.claim(1).unwrap();
        q.submit(t, id(i), &[i as u8]).unwrap();
    }
    assert_eq!(q.take(2, 3).unwrap().len(), 3);
    assert_eq!(q.take(2, 10).unwrap().len(), 2);
}

#[test]
fn reclaim_frees_a_dead_owners_slots_but_not_one_a_live_combiner_is_running() {
    let words = region(8);
    let q = Queue::new(&words).unwrap();
    let dead = 3;
    // Combiner 5 takes two of the dead owner's requests and one of live owner 4's, and
    // completes one of the dead owner's.
    let taken_live = q.submit(q.claim(dead).unwrap(), id(1), b"t").unwrap();
    let done = q.submit(q.claim(dead).unwrap(), id(2), b"d").unwrap();
    let live_owner = q.submit(q.claim(4).unwrap(), id(3), b"l").unwrap();
    let taken = q.take(5, 100).unwrap();
    assert_eq!(taken.len(), 3);
    let ticket_of = |i: usize| taken.iter().find(|t| t.ticket.index == i).unwrap().ticket;
    q.complete(ticket_of(done.index), b"ok").unwrap();
    // Then the dead owner claims one slot and submits another.
    let claimed = q.claim(dead).unwrap();
    let submitted = q.submit(q.claim(dead).unwrap(), id(4), b"s").unwrap();

    let alive = |n: u32| n != dead;
    // CLAIMED, SUBMITTED and DONE of the dead owner: freed; TAKEN by live combiner 5 and
    // the live owner's slot: kept.
    assert_eq!(q.reclaim(&alive), 3);
    for t in [claimed, submitted, done] {
        assert_eq!(q.word(t.index).unwrap().state, State::Free);
    }
    assert_eq!(q.word(taken_live.index).unwrap().state, State::Taken);
    assert_eq!(q.word(live_owner.index).unwrap().state, State::Taken);
    // The live combiner still completes the dead owner's request (nobody reads it), and
    // the next reclaim frees it.
    q.complete(ticket_of(taken_live.index), b"late").unwrap();
    assert_eq!(q.reclaim(&alive), 1);
    assert_eq!(q.word(taken_live.index).unwrap().state, State::Free);

    // A TAKEN slot of a dead owner whose combiner 6 died too is freed, and the dead
    // combiner's completion (had it come late) is refused.
    let t = q.submit(q.claim(dead).unwrap(), id(5), b"x").unwrap();
    let tk = q.take(6, 1).unwrap();
    assert_eq!(tk[0].ticket.index, t.index);
    assert_eq!(q.reclaim(&|n| n != dead && n != 6), 1);
    assert_eq!(q.word(t.index).unwrap().state, State::Free);
    assert_eq!(q.complete(tk[0].ticket, b"no"), Err(QueueError::WrongState));
    // The live owner's slot, taken by combiner 5 (alive), was never touched.
    assert_eq!(q.word(live_owner.index).unwrap().state, State::Taken);
}

#[test]
fn a_new_holder_of_an_owner_number_reclaims_its_predecessors_slots() {
    let words = region(4);
    let q = Queue::new(&words).unwrap();
    let old = q.submit(q.claim(2).unwrap(), id(1), b"old").unwrap();
    assert_eq!(q.reclaim_owner(2, &|_| true), 1);
    assert_eq!(q.word(old.index).unwrap().state, State::Free);
    // The predecessor's stale ticket can no longer be polled.
    assert_eq!(q.poll(old), Err(QueueError::WrongState));
}

#[test]
fn an_orphan_whose_combiner_died_goes_back_to_its_owner_only() {
    let words = region(2);
    let q = Queue::new(&words).unwrap();
    let t = q.submit(q.claim(1).unwrap(), id(1), b"r").unwrap();
    let taken = q.take(2, 10).unwrap();
    assert_eq!(q.adopt_orphan(t.index, 3), Err(QueueError::WrongState));
    let back = q.adopt_orphan(t.index, 1).unwrap();
    assert_eq!(q.word(t.index).unwrap().state, State::Claimed);
    // The dead combiner's outcome, had it come late, cannot land.
    assert_eq!(
        q.complete(taken[0].ticket, b"late"),
        Err(QueueError::WrongState)
    );
    // The owner may submit it again (after finding it was not applied) or release it.
    let again = q.submit(back, id(1), b"r").unwrap();
    assert_eq!(q.poll(again).unwrap(), Poll::Submitted);
}

#[test]
fn threads_as_processes_each_get_their_own_outcome_with_totals_exact() {
    // Four owners submit numbered requests; one combiner thread at a time (a mutex standing
    // in for the writer lock) takes them in batches and answers each with its double.
    let words: Arc<Box<[AtomicU64]>> = Arc::new(region(16));
    let writer = Arc::new(parking_lot::Mutex::new(0u64));
    let batches = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (1..=4u32)
        .map(|owner| {
            let (words, writer, batches) = (words.clone(), writer.clone(), batches.clone());
            std::thread::spawn(move || {
                let q = Queue::new(&words).unwrap();
                let mut sum = 0u64;
                for i in 0..300u64 {
                    let value = u64::from(owner) * 1_000_000 + i;
                    let t = loop {
                        match q.claim(owner) {
                            Ok(t) => break t,
                            Err(QueueError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e:?}"),
                        }
                    };
                    let t = q
                        .submit(
                            t,
                            RequestId {
                                nonce: owner.into(),
                                counter: i,
                            },
                            &value.to_le_bytes(),
                        )
                        .unwrap();
                    loop {
                        let seen = q.wake_seen();
                        match q.poll(t).unwrap() {
                            Poll::Done(out) => {
                                let got = u64::from_le_bytes(out.try_into().unwrap());
                                assert_eq!(got, value * 2);
                                sum += got;
                                q.release(t.index, owner).unwrap();
                                break;
                            }
                            Poll::Submitted => {
                                if let Some(mut total) = writer.try_lock() {
                                    let taken = q.take(owner, usize::MAX).unwrap();
                                    batches.fetch_add(1, Ordering::Relaxed);
                                    for tk in taken {
                                        let v = u64::from_le_bytes(tk.request.try_into().unwrap());
                                        *total += v;
                                        q.complete(tk.ticket, &(v * 2).to_le_bytes()).unwrap();
                                    }
                                    q.wake();
                                } else {
                                    q.wait(seen, Duration::from_millis(1));
                                }
                            }
                            Poll::Taken { .. } => q.wait(seen, Duration::from_millis(1)),
                        }
                    }
                }
                sum
            })
        })
        .collect();
    let sums: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let expected: u64 = (1..=4u64)
        .map(|o| (0..300u64).map(|i| o * 1_000_000 + i).sum::<u64>())
        .sum();
    assert_eq!(
        *writer.lock(),
        expected,
        "every request applied exactly once"
    );
    assert_eq!(
        sums,
        expected * 2,
        "every outcome reached its own requester"
    );
    assert!(batches.load(Ordering::Relaxed) <= 1_200);
    let q = Queue::new(&words).unwrap();
    assert!((0..q.slot_count()).all(|i| q.word(i).unwrap().state == State::Free));
}

#[test]
fn a_waiter_sleeps_until_woken() {
    let words: Arc<Box<[AtomicU64]>> = Arc::new(region(1));
    let woke = Arc::new(AtomicBool::new(false));
    let q = Queue::new(&words).unwrap();
    let seen = q.wake_seen();
    let h = {
        let (words, woke) = (words.clone(), woke.clone());
        std::thread::spawn(move || {
            let q = Queue::new(&words).unwrap();
            woke.store(true, Ordering::SeqCst);
            q.wake();
        })
    };
    // Loops until the counter moved: a spurious return or a timeout just waits again.
    while q.wake_seen() == seen {
        q.wait(seen, Duration::from_secs(5));
    }
    assert!(woke.load(Ordering::SeqCst));
    h.join().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn owner_numbers_are_exclusive_and_a_dropped_holder_is_seen_dead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.shm");
    std::fs::write(&path, [0u8; 64]).unwrap();
    let base = 1 << 40;
    let a = OwnerLock::acquire(&path, base, 8).unwrap().unwrap();
    let b = OwnerLock::acquire(&path, base, 8).unwrap().unwrap();
    assert_ne!(a.number(), b.number());
    assert!(a.is_alive(b.number()));
    assert!(b.is_alive(a.number()));
    assert!(!a.is_alive(5), "a number nobody holds is dead");
    let gone = b.number();
    drop(b);
    assert!(
        !a.is_alive(gone),
        "the kernel dropped the closed holder's lock"
    );
    // Its number is free for the next process.
    let c = OwnerLock::acquire(&path, base, 8).unwrap().unwrap();
    assert_eq!(c.number(), gone);
    // Every number taken: none left.
    let held: Vec<_> = (0..6)
        .map(|_| OwnerLock::acquire(&path, base, 8).unwrap().unwrap())
        .collect();
    assert!(OwnerLock::acquire(&path, base, 8).unwrap().is_none());
    let numbers: HashSet<u32> = held.iter().map(OwnerLock::number).collect();
    assert_eq!(numbers.len(), 6);
}
