//! Helpers shared by the integration tests: a real vault file in a temp dir, a pinned
//! clock, and child processes (the `keyledger-test-children` binary, `tests/children/`,
//! run on one named entry point).
#![allow(dead_code)]

mod base;
pub mod pg;
pub mod workloads;

pub use base::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keyledger::{NewKey, SecretToken, Vault};

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub clock: TestClock,
    pub vault: Vault,
}

/// Where a test's vault lives: the file `name` in `dir`, or, when the suites run over
/// PostgreSQL (`KEYLEDGER_TEST_PG_SUITES=<cluster URL>`, set by scripts/test), a fresh
/// database on that cluster.
pub fn location(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    match std::env::var("KEYLEDGER_TEST_PG_SUITES") {
        Ok(cluster) if !cluster.is_empty() => PathBuf::from(pg::fresh_database(&cluster, name)),
        _ => dir.path().join(name),
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // The suites that run over both backends (scripts/test) open a fresh PostgreSQL
        // database instead of the file.
        let path = location(&dir, "vault.redb");
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

/// The child-process binary, `tests/children/entry_points.rs`. It is a `[[bin]]` target that needs
/// the test-only feature `insecure-fast-argon2`, so Cargo builds it (fresh) whenever it
/// builds an integration test and never otherwise, and tells the tests where it is. Under
/// a reused nextest archive the runtime `NEXTEST_BIN_EXE_…` path wins.
pub fn children_exe() -> PathBuf {
    std::env::var_os("NEXTEST_BIN_EXE_keyledger-test-children")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keyledger-test-children")))
}

/// A command running the child entry point `entry` (e.g. `concurrency::spend`).
pub fn child_command(entry: &str) -> Command {
    let mut cmd = Command::new(children_exe());
    cmd.arg(entry);
    cmd
}

/// Run the child entry point `entry` with `env` set; panics unless it exits 0.
pub fn run_child(entry: &str, env: &[(&str, String)]) -> Output {
    let mut cmd = child_command(entry);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child {entry} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The number a child printed as `NAME=<n>`.
pub fn reported(out: &Output, name: &str) -> u64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the child reported no {name}: {text}"))
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
