//! The part of the test helpers that needs no dev-dependency: the pinned clock, the test
//! vault options, the seed route rules, environment reading and the CI skip rule. Shared by the integration tests (through
//! `common`) and by the child-process binary `tests/children/entry_points.rs`.
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

/// Whether every check must run here: `KEYLEDGER_REQUIRE_ALL=1` (set by `.ci/run` and by
/// `scripts/test` under CI), or `CI` set to anything but empty, `0` or `false` (as CI
/// services do). Then a check that cannot run is a failure, not a skip.
pub fn require_all() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    };
    set("KEYLEDGER_REQUIRE_ALL") || set("CI")
}

/// A check that cannot run here (`why`): under [`require_all`] the test fails saying so;
/// otherwise it prints `skipped: <check>: <why>` on stderr and the caller returns.
pub fn skip_unless_required(check: &str, why: &str) {
    assert!(
        !require_all(),
        "{check} cannot run: {why}. KEYLEDGER_REQUIRE_ALL or CI is set, so a skipped check \
         is a failure (scripts/test installs what the checks need)"
    );
    eprintln!("skipped: {check}: {why}");
}
