//! Debits over the sidecar's combining queue, so that the processes sharing one vault file
//! share commits: **opt-in** (environment `KEYLEDGER_COMBINE=1` when the vault is opened),
//! redb files with a shared sidecar only.
//!
//! A process's batch leader ([`crate::batch`]) puts its batch's requests into queue slots,
//! then, until every one is answered, tries the writer lock without waiting. Whoever gets
//! it (the **combiner**) takes every submitted slot of every process, runs them through
//! [`Inner::apply_debit`] in its one transaction, records each outcome under the request's
//! id in the `applied` table of that same transaction, commits, and writes the outcomes
//! back. A slot of ours still taken by another combiner when we hold the writer lock was
//! taken by a combiner that has finished or died (a combiner takes slots only while it
//! holds the lock): we take it back and read its outcome from `applied`, or run it
//! ourselves when it was never committed. So each debit is committed once or not at all.
//! An outcome that comes back "not run" (see `combine_wire`) is run by its own process.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::combine_wire::{decode_outcome, decode_request, encode_outcome, encode_request};
use super::{fork_generation, DebitReq, Debited, Durability, Error, Inner, Ordering, Result};
use crate::shm::combine::{OwnerLock, Poll, Queue, RequestId, Ticket, OWNER_LOCK_BASE};
use crate::shm::Sidecar;
use crate::store::Backend;

/// Owner numbers tried at open (processes × vault handles at once).
const MAX_HANDLES: u32 = 4096;
/// Slots a combiner takes per transaction at most.
const MAX_TAKE: usize = 512;
/// Consecutive storage errors after which a waiter gives up.
const MAX_ERRORS: u32 = 1000;
/// Applied records older than this are pruned (a waiter reads its own within moments).
const APPLIED_KEEP_MS: i64 = 10 * 60 * 1000;

/// This vault handle's place in the queue.
pub(super) struct Combining {
    lock: OwnerLock,
    nonce: u64,
    counter: AtomicU64,
}

impl Combining {
    /// `None` unless `KEYLEDGER_COMBINE=1`, the backend records applied requests and the
    /// sidecar is a shared file with a queue.
    pub(super) fn open(sidecar: Option<&Sidecar>, backend: &dyn Backend) -> Option<Combining> {
        if std::env::var_os("KEYLEDGER_COMBINE").is_none_or(|v| v != "1") {
            return None;
        }
        if !backend.records_applied() {
            return None;
        }
        let sidecar = sidecar?;
        let queue = sidecar.combine_queue()?;
        let lock =
            OwnerLock::acquire(sidecar.file_path()?, OWNER_LOCK_BASE, MAX_HANDLES).ok()??;
        queue.reclaim_owner(lock.number(), &|n| lock.is_alive(n));
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).ok()?;
        Some(Combining {
            lock,
            nonce: u64::from_le_bytes(b),
            counter: AtomicU64::new(0),
        })
    }
}

/// What became of one request of our batch.
enum Fate {
    Waiting(Ticket, RequestId),
    Answered(Result<Debited>),
    /// Not applied anywhere: run it here.
    Local,
}

impl Inner {
    /// Run `batch` over the queue; `Err(batch)` when the queue is not in use for it (then
    /// the caller commits it itself).
    pub(super) fn run_debits_combined(
        &self,
        batch: Vec<DebitReq>,
    ) -> std::result::Result<Vec<Result<Debited>>, Vec<DebitReq>> {
        let Some(c) = &self.combining else {
            return Err(batch);
        };
        if self.fork_gen != fork_generation() {
            return Err(batch);
        }
        let Some(sidecar) = self.cache.sidecar.as_deref() else {
            return Err(batch);
        };
        let Some(q) = sidecar.combine_queue() else {
            return Err(batch);
        };
        // Held while our requests are in the queue, as the local path holds it for its
        // transaction: closing the vault waits for them.
        let Ok(guard) = self.store() else {
            return Err(batch);
        };
        let Some(store) = guard.as_ref() else {
            return Err(batch);
        };
        let owner = c.lock.number();
        let mut encoded = Vec::with_capacity(batch.len());
        for r in &batch {
            match encode_request(r) {
                Some(b) => encoded.push(b),
                None => return Err(batch),
            }
        }
        // Claim every slot first: a claimed slot can be given back, a submitted one cannot.
        let mut claimed = Vec::with_capacity(batch.len());
        for _ in &batch {
            let mut got = q.claim(owner);
            if got.is_err() {
                // Slots of dead processes are freed here, when they are needed.
                q.reclaim(&|n| c.lock.is_alive(n));
                got = q.claim(owner);
            }
            match got {
                Ok(t) => claimed.push(t),
                Err(_) => {
                    for t in claimed {
                        let _ = q.release(t.index, owner);
                    }
                    return Err(batch);
                }
            }
        }
        let mut fates = Vec::with_capacity(batch.len());
        for (t, bytes) in claimed.into_iter().zip(&encoded) {
            let id = RequestId {
                nonce: c.nonce,
                counter: c.counter.fetch_add(1, Ordering::Relaxed),
            };
            match q.submit(t, id, bytes) {
                Ok(t) => fates.push(Fate::Waiting(t, id)),
                Err(_) => {
                    let _ = q.release(t.index, owner);
                    fates.push(Fate::Local);
                }
            }
        }
        let mut reqs: Vec<Option<DebitReq>> = batch.into_iter().map(Some).collect();
        let mut errors = 0u32;
        loop {
            let seen = q.wake_seen();
            let mut waiting = false;
            for f in fates.iter_mut() {
                let Fate::Waiting(t, _) = *f else { continue };
                match q.poll(t) {
                    Ok(Poll::Done(bytes)) => {
                        let _ = q.release(t.index, owner);
                        *f = match decode_outcome(&bytes) {
                            Some(r) => Fate::Answered(r),
                            None => Fate::Local,
                        };
                    }
                    Ok(_) => waiting = true,
                    // Not ours any more: cannot happen while we live; answer nothing twice.
                    Err(_) => {
                        *f = Fate::Answered(Err(Error::Storage(
                            "a debit's queue slot was lost".into(),
                        )))
                    }
                }
            }
            if !waiting {
                break;
            }
            match self.combine_once(&**store, c, &q, &mut fates, &mut reqs) {
                Ok(true) => errors = 0,
                Ok(false) => q.wait(seen, Duration::from_millis(2)),
                Err(e) => {
                    // No transaction: wait for another combiner, and retry the lock. A
                    // storage that keeps failing ends the wait with its error (another
                    // process may still commit those requests: an answer as ambiguous as
                    // a failed commit's in a crash).
                    errors += 1;
                    if errors >= MAX_ERRORS {
                        for f in fates.iter_mut() {
                            if matches!(f, Fate::Waiting(..)) {
                                *f = Fate::Answered(Err(e.clone()));
                            }
                        }
                        break;
                    }
                    q.wait(seen, Duration::from_millis(2));
                }
            }
        }
        drop(guard);
        let local: Vec<usize> = (0..fates.len())
            .filter(|&i| matches!(fates[i], Fate::Local))
            .collect();
        if !local.is_empty() {
            let batch: Vec<DebitReq> = local.iter().filter_map(|&i| reqs[i].take()).collect();
            for (&i, r) in local.iter().zip(self.run_debits_local(batch)) {
                fates[i] = Fate::Answered(r);
            }
        }
        Ok(fates
            .into_iter()
            .map(|f| match f {
                Fate::Answered(r) => r,
                _ => Err(Error::Storage("a debit got no answer".into())),
            })
            .collect())
    }

    /// Combine if the writer lock is free: false when it is not.
    fn combine_once(
        &self,
        store: &dyn Backend,
        c: &Combining,
        q: &Queue<'_>,
        fates: &mut [Fate],
        reqs: &mut [Option<DebitReq>],
    ) -> Result<bool> {
        let Some(mut tx) = store.try_write()? else {
            return Ok(false);
        };
        let owner = c.lock.number();
        let now = (self.settings.clock)();
        // Our slots still taken by another combiner: it has finished or died.
        let mut adopted = Vec::new();
        for (i, f) in fates.iter_mut().enumerate() {
            let Fate::Waiting(t, id) = *f else { continue };
            if let Ok(Poll::Taken { .. }) = q.poll(t) {
                if let Ok(t) = q.adopt_orphan(t.index, owner) {
                    adopted.push((i, t, id));
                }
            }
        }
        let mut mine = Vec::new();
        for (i, t, id) in adopted {
            let _ = q.release(t.index, owner);
            let recorded = tx.applied((id.nonce, id.counter))?;
            fates[i] = match recorded.as_deref().and_then(decode_outcome) {
                Some(r) => Fate::Answered(r),
                None => {
                    mine.push(i);
                    Fate::Local
                }
            };
        }
        let taken = q.take(owner, MAX_TAKE).unwrap_or_default();
        let mut outs = Vec::with_capacity(taken.len());
        let mut failed = None;
        for t in &taken {
            let r = match decode_request(&t.request) {
                Some(req) => self.apply_debit(&mut tx, req),
                None => Err(Error::Storage("not this encoding".into())),
            };
            if let Err(e @ Error::Storage(_)) = &r {
                failed = Some(e.clone());
                break;
            }
            let bytes = encode_outcome(&r);
            if let Err(e) = tx.put_applied((t.id.nonce, t.id.counter), now, &bytes) {
                failed = Some(e);
                break;
            }
            outs.push(bytes);
        }
        let mut local_results = Vec::new();
        if failed.is_none() {
            for &i in &mine {
                let Some(req) = reqs[i].take() else { continue };
                let r = self.apply_debit(&mut tx, req);
                if let Err(e @ Error::Storage(_)) = &r {
                    failed = Some(e.clone());
                    break;
                }
                local_results.push((i, r));
            }
        }
        if failed.is_none() {
            let _ = tx.prune_applied(now.saturating_sub(APPLIED_KEEP_MS), 64);
            let durability = if self.settings.eventual {
                Durability::Eventual
            } else {
                Durability::Immediate
            };
            if let Err(e) = tx.commit(durability) {
                failed = Some(e);
            } else if self.settings.eventual {
                self.flushing.unsynced.store(true, Ordering::Release);
            }
        } else {
            drop(tx);
        }
        match failed {
            None => {
                for (t, o) in taken.iter().zip(&outs) {
                    let _ = q.complete(t.ticket, o);
                }
                for (i, r) in local_results {
                    fates[i] = Fate::Answered(r);
                }
            }
            Some(e) => {
                // Nothing was committed: every taken request goes back "not run".
                let not_run = encode_outcome(&Err(Error::Storage(String::new())));
                for t in &taken {
                    let _ = q.complete(t.ticket, &not_run);
                }
                for &i in &mine {
                    fates[i] = Fate::Answered(Err(e.clone()));
                }
            }
        }
        q.wake();
        Ok(true)
    }
}
