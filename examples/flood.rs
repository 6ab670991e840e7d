//! The performance targets: a flood of wrong secrets for one key_id. One thread sends well-formed tokens
//! with the owner's key_id and wrong secrets for SECONDS while the owner keeps calling
//! `authorize` with the right token; prints one JSON line: attempts, argon2 runs during the
//! flood (bounded by the throttle: burst + rate × time), and the owner's hot p50 before
//! and during the flood.
//!
//! Then the same flood against a freshly opened vault in which no call has verified the
//! key yet (a new worker): there every wrong secret would need an argon2, and the process
//! budget of failed verifications bounds how many run (the rest get `too_many_attempts`).
//!
//! `cargo run --release --example flood [-- SECONDS]` (default 3).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use keyledger::{AuthorizeOptions, NewKey, Target, ThrottleConfig, Vault};

const HOT: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};

/// Median per-call time over batches of 100 calls, for `d`.
fn p50(v: &Vault, token: &str, d: Duration) -> Duration {
    let opts = AuthorizeOptions::default();
    let mut batches = Vec::new();
    let end = Instant::now() + d;
    while Instant::now() < end {
        let t = Instant::now();
        for _ in 0..100 {
            std::hint::black_box(v.authorize(token, HOT, &opts).unwrap());
        }
        batches.push(t.elapsed() / 100);
    }
    batches.sort();
    batches[batches.len() / 2]
}

fn main() {
    let seconds: f64 = std::env::args().nth(1).map_or(3.0, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open(dir.path().join("v.redb")).unwrap();
    v.create_account("acct_42", 1_000, None).unwrap();
    v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
        .unwrap();
    let (t, info) = v
        .create_key(NewKey::new("acct_42", "owner", ["numbers:read"]).prefix("dial_live"))
        .unwrap();
    let token = t.expose().to_string();
    v.authorize(&token, HOT, &AuthorizeOptions::default())
        .unwrap();
    let window = Duration::from_secs_f64(seconds);
    let quiet = p50(&v, &token, window);
    let stop = AtomicBool::new(false);
    let attempts = AtomicU64::new(0);
    let runs_before = v.stats().argon2_runs;
    let (during, flood_s) = std::thread::scope(|s| {
        s.spawn(|| {
            let opts = AuthorizeOptions::default();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // A well-formed token (valid checksum) for the owner's key_id, wrong secret.
                let wrong = keyledger::token::mint("dial_live", &info.key_id).unwrap();
                assert!(v.authorize(&wrong, HOT, &opts).is_err());
                n += 1;
            }
            attempts.store(n, Ordering::Relaxed);
        });
        let t0 = Instant::now();
        let during = p50(&v, &token, window);
        stop.store(true, Ordering::Relaxed);
        (during, t0.elapsed().as_secs_f64())
    });
    let runs = v.stats().argon2_runs - runs_before;
    let path = v.path().to_path_buf();
    v.close().unwrap();
    // A fresh worker: nothing verified yet, so every wrong secret would cost an argon2.
    let fresh = Vault::open(&path).unwrap();
    let opts = AuthorizeOptions::default();
    let t0 = Instant::now();
    let mut cold_attempts = 0u64;
    while t0.elapsed() < window {
        let wrong = keyledger::token::mint("dial_live", &info.key_id).unwrap();
        assert!(fresh.authorize(&wrong, HOT, &opts).is_err());
        cold_attempts += 1;
    }
    let cold_s = t0.elapsed().as_secs_f64();
    let cold = fresh.stats();
    let cfg = ThrottleConfig::default();
    // Every failed verification spends the process budget (a key_id past its own burst
    // only its upper half), so argon2 runs stay within the budget's burst + refill.
    let bound = f64::from(cfg.budget_burst) + cfg.budget_per_second * cold_s;
    println!(
        "{{\"bench\": \"flood\", \"seconds\": {flood_s:.2}, \"attempts\": {}, \"argon2_runs\": {runs}, \"owner_p50_ns_quiet\": {}, \"owner_p50_ns_flood\": {}, \"fresh_attempts\": {cold_attempts}, \"fresh_argon2_runs\": {}, \"fresh_argon2_bound\": {bound:.0}, \"fresh_throttled\": {}}}",
        attempts.load(Ordering::Relaxed),
        quiet.as_nanos(),
        during.as_nanos(),
        cold.argon2_runs,
        cold.throttled,
    );
}
