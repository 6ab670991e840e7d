//! Secret hygiene, timing (CI and the long run: `KEYLEDGER_REQUIRE_ALL=1` or `KEYLEDGER_LONG=1`;
//! skipped locally otherwise): authorizing a cached key with a wrong secret takes the same time
//! as with the right one — within a tolerance, reported. (That nothing prints or stores a raw
//! secret, the CLI's output included, is checked with the binary, in
//! `cli/tests/secret_hygiene.rs`.)

mod common;

use common::options;
use keyledger::{AuthorizeOptions, NewKey, Target, ThrottleConfig, Vault, VaultOptions};

/// Median of the per-call time in nanoseconds over `rounds` interleaved batches.
fn median(mut xs: Vec<u128>) -> u128 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

#[test]
fn a_wrong_secret_for_a_cached_key_takes_as_long_as_the_right_one() {
    if std::env::var_os("KEYLEDGER_LONG").is_none() && !common::require_all() {
        eprintln!(
            "timing: skipped (long run and CI only: KEYLEDGER_LONG=1 or KEYLEDGER_REQUIRE_ALL=1)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            // No throttling: every wrong attempt takes the full verification path.
            throttle: ThrottleConfig {
                burst: u32::MAX,
                per_second: 1e9,
                budget_burst: u32::MAX,
                budget_per_second: 1e9,
            },
            ..options()
        },
    )
    .unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, info) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let target = Target::scope("x");
    let o = AuthorizeOptions::default();
    v.authorize(t.expose(), target, &o).unwrap(); // cache the digest
    let wrongs: Vec<String> = (0..64)
        .map(|_| {
            keyledger::token::mint("kl_live", &info.key_id)
                .unwrap()
                .to_string()
        })
        .collect();
    for w in &wrongs {
        let _ = v.authorize(w, target, &o); // first sight of each wrong secret
    }
    let runs_before = v.stats().argon2_runs;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    const BATCH: u32 = 200;
    for round in 0..400 {
        let t0 = std::time::Instant::now();
        for _ in 0..BATCH {
            let _ = std::hint::black_box(v.authorize(t.expose(), target, &o));
        }
        let r = t0.elapsed().as_nanos() / u128::from(BATCH);
        let w = &wrongs[round % wrongs.len()];
        let t0 = std::time::Instant::now();
        for _ in 0..BATCH {
            let _ = std::hint::black_box(v.authorize(w, target, &o));
        }
        let x = t0.elapsed().as_nanos() / u128::from(BATCH);
        right.push(r);
        wrong.push(x);
    }
    let argon2_runs = v.stats().argon2_runs - runs_before;
    let (mr, mw) = (median(right), median(wrong));
    let ratio = mw as f64 / mr as f64;
    eprintln!(
        "timing: cached key, median per call over 400×{BATCH}: right secret {mr} ns, wrong secret {mw} ns (ratio {ratio:.2}); argon2 runs during the wrong attempts: {argon2_runs}"
    );
    assert!(
        (0.5..2.0).contains(&ratio),
        "a wrong secret and the right one take very different times: {mr} ns vs {mw} ns"
    );
}
