//! Group commit: concurrent requests in one process share one write transaction.
//!
//! A MultiWriter commit costs two fdatasyncs whatever it holds, so throughput comes from
//! putting many debits in one commit. The first thread to find no leader
//! becomes the leader: it takes every queued request, runs them in one transaction and
//! publishes each result. Threads that queued meanwhile wait; when the leader is done,
//! one of the waiters whose request is still queued leads the next batch.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

/// Requests per transaction at most: bounds a batch's latency and its memory.
const MAX_BATCH: usize = 512;

struct State<Req, Res> {
    queue: Vec<(u64, Req)>,
    done: HashMap<u64, Result<Res>>,
    leading: bool,
    next_ticket: u64,
    /// Callers seen around the previous batch: its own requests (on their way back with
    /// their next one) plus those that queued while it committed. The next leader waits
    /// for about that many.
    population: usize,
}

/// How long a leader waits at most for the callers of the previous batch to queue again.
/// Only when more than one caller was seen around that batch: a lone caller never waits.
const GATHER: std::time::Duration = std::time::Duration::from_micros(150);

pub(crate) struct GroupCommit<Req, Res> {
    state: Mutex<State<Req, Res>>,
    cv: Condvar,
}

impl<Req, Res> GroupCommit<Req, Res> {
    pub(crate) fn new() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                queue: Vec::new(),
                done: HashMap::new(),
                leading: false,
                next_ticket: 0,
                population: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Queue `req` and wait for its result. `run` executes a batch in one transaction and
    /// returns one result per request, in order. A panic in `run` fails that batch with a
    /// storage error instead of wedging every waiter.
    pub(crate) fn submit(
        &self,
        req: Req,
        run: &dyn Fn(Vec<Req>) -> Vec<Result<Res>>,
    ) -> Result<Res> {
        let mut st = self.state.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push((ticket, req));
        if st.leading {
            // A leader may be gathering a batch: tell it one more has arrived.
            self.cv.notify_all();
        }
        loop {
            if let Some(res) = st.done.remove(&ticket) {
                return res;
            }
            if st.leading {
                self.cv.wait(&mut st);
                continue;
            }
            st.leading = true;
            // Callers of the previous batch come back one by one: give them a moment, so a
            // busy process does not alternate between full batches and batches of one. Wait
            // for every caller seen around that batch (the queue stops growing then), not
            // just for as many as it held: those that queued during its commit are already
            // here and must not stand in for the ones still on their way.
            let expected = st.population.min(MAX_BATCH);
            if expected > 1 && st.queue.len() < expected {
                let deadline = std::time::Instant::now() + GATHER;
                while st.queue.len() < expected {
                    if self.cv.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
            }
            let take = st.queue.len().min(MAX_BATCH);
            let batch: Vec<(u64, Req)> = st.queue.drain(..take).collect();
            drop(st);
            let (tickets, reqs): (Vec<u64>, Vec<Req>) = batch.into_iter().unzip();
            let n = tickets.len();
            let results = match catch_unwind(AssertUnwindSafe(|| run(reqs))) {
                Ok(r) if r.len() == n => r,
                _ => (0..n)
                    .map(|_| Err(Error::Storage("internal error in a write batch".into())))
                    .collect(),
            };
            st = self.state.lock();
            st.leading = false;
            st.population = n + st.queue.len();
            for (t, r) in tickets.into_iter().zip(results) {
                st.done.insert(t, r);
            }
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn every_request_gets_its_own_result_and_batches_form_under_contention() {
        let g = Arc::new(GroupCommit::<u64, u64>::new());
        let batches = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let g = g.clone();
                let batches = batches.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let req = t * 1000 + i;
                        let run = |reqs: Vec<u64>| {
                            batches.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(std::time::Duration::from_micros(50));
                            reqs.into_iter().map(|r| Ok(r * 2)).collect()
                        };
                        assert_eq!(g.submit(req, &run).unwrap(), req * 2);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(
            batches.load(Ordering::Relaxed) < 1600,
            "no batching happened"
        );
    }

    #[test]
    fn a_panicking_batch_fails_its_requests_and_the_next_batch_still_runs() {
        let g = GroupCommit::<u32, u32>::new();
        let boom = |_: Vec<u32>| -> Vec<Result<u32>> { panic!("boom") };
        assert!(matches!(g.submit(1, &boom), Err(Error::Storage(_))));
        let ok = |r: Vec<u32>| r.into_iter().map(Ok).collect();
        assert_eq!(g.submit(7, &ok).unwrap(), 7);
    }
}
