//! The part of the test helpers that needs no dev-dependency: the pinned clock, the test
//! vault options and environment reading. Shared by the integration tests (through
//! `common`) and by the child-process binary `tests/children/entry_points.rs`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keyledger::{Argon2Params, VaultOptions};

/// 2026-11-23T00:00:00Z
pub const T0: i64 = 1_795_392_000_000;

pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> TestClock {
        TestClock(Arc::new(AtomicI64::new(T0)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn clock(&self) -> keyledger::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

pub fn options() -> VaultOptions {
    VaultOptions {
        argon2: Some(Argon2Params::INSECURE_FAST),
        // The suites advance pinned clocks by days and check that the audit log has no
        // sequence gap; pruning of refusal entries is tested on its own (security_audit).
        refusal_retention: None,
        ..VaultOptions::default()
    }
}

pub fn options_with_clock(clock: &TestClock) -> VaultOptions {
    VaultOptions {
        clock: Some(clock.clock()),
        ..options()
    }
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}
