//! Helpers shared by the integration tests: a real vault file in a temp dir, a pinned
//! clock, and child processes (this test binary re-run with an entry point chosen by an
//! environment variable).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use keyledger::{Argon2Params, NewKey, SecretToken, Vault, VaultOptions};

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

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: TestClock,
    pub vault: Vault,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.redb");
        let clock = TestClock::new();
        let vault = Vault::open_with(&path, options_with_clock(&clock)).unwrap();
        Fixture {
            dir,
            path,
            clock,
            vault,
        }
    }

    /// An account with `credits`, the seed routes, and a `dial_live` key with `scopes`.
    pub fn seeded(credits: u64, scopes: &[&str]) -> (Fixture, SecretToken, String) {
        let f = Fixture::new();
        f.vault.create_account("acct_42", credits, None).unwrap();
        seed_routes(&f.vault);
        let (token, info) = f
            .vault
            .create_key(
                NewKey::new("acct_42", "server", scopes.iter().copied()).prefix("dial_live"),
            )
            .unwrap();
        (f, token, info.key_id)
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

/// Run the test named `entry` of this test binary in a child process, with `env` set.
pub fn run_child(entry: &str, env: &[(&str, String)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", entry, "--nocapture", "--test-threads=1"]);
    cmd.env("KEYLEDGER_CHILD", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child {entry} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The number a child printed as `NAME=<n>` (libtest may print "test … " on the same line).
pub fn reported(out: &Output, name: &str) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the child reported no {name}: {text}"))
}

pub fn is_child() -> bool {
    std::env::var_os("KEYLEDGER_CHILD").is_some()
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

// ---- reliability helpers (tests/crash.rs, tests/faults.rs, tests/model.rs) ----

/// Open the file with redb alone (no other handle may have it open) and run its integrity
/// check; panics if the file is not a clean redb database.
pub fn assert_redb_integrity(path: &Path) {
    let mut db = redb::Database::open(path).expect("redb cannot open the vault file");
    assert!(
        db.check_integrity().expect("redb integrity check errored"),
        "redb integrity check failed (the file needed repair)"
    );
}

/// The newest audit entries (at most 10 000) have consecutive sequence numbers ending at
/// the newest one, and if there are fewer than 10 000 they start at 1: no gap.
pub fn assert_no_audit_gap(v: &Vault) -> u64 {
    let entries = v
        .audit(&keyledger::AuditQuery {
            limit: Some(10_000),
            ..keyledger::AuditQuery::default()
        })
        .unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    for w in seqs.windows(2) {
        assert_eq!(
            w[0],
            w[1] + 1,
            "audit sequence gap between {} and {}",
            w[1],
            w[0]
        );
    }
    if seqs.len() < 10_000 {
        assert_eq!(
            seqs.last().copied().unwrap_or(1),
            1,
            "audit does not start at 1"
        );
    }
    seqs.first().copied().unwrap_or(0)
}
