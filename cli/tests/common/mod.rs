//! Helpers for the CLI's tests that also use the library: a pinned clock, the test vault
//! options (cheap argon2) and the route rules of the root suites (`tests/common/`).
#![allow(dead_code)]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keyledger::{Argon2Params, Vault, VaultOptions};

/// 2026-11-23T00:00:00Z
pub const T0: i64 = 1_795_392_000_000;

pub struct TestClock(pub Arc<AtomicI64>);

impl TestClock {
    pub fn new() -> TestClock {
        TestClock(Arc::new(AtomicI64::new(T0)))
    }
    pub fn clock(&self) -> keyledger::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

pub fn options() -> VaultOptions {
    VaultOptions {
        argon2: Some(Argon2Params::INSECURE_FAST),
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

pub fn seed_routes(v: &Vault) {
    v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
        .unwrap();
    v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
        .unwrap();
    v.add_route(
        "GET",
        "/api/v1/messaging/threads/:counterparty",
        "numbers:read",
        0,
    )
    .unwrap();
    v.add_route("GET", "/sms/*", "sms.read", 0).unwrap();
}
