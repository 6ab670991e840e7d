//! Quick criterion benches of the hot path (SPEC §12). The side-by-side benchmark
//! against peer libraries lives in `bench/`.
//!
//! `cargo bench --bench authorize` (add `-- --quick` for a short run).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keyledger::{Argon2Params, AuthorizeOptions, NewKey, Target, Vault, VaultOptions};

fn setup(dir: &tempfile::TempDir, exclusive: bool) -> (Vault, String) {
    let v = Vault::open_with(
        dir.path().join("bench.redb"),
        VaultOptions {
            exclusive,
            argon2: Some(Argon2Params::default()),
            ..VaultOptions::default()
        },
    )
    .unwrap();
    v.create_account("acct_42", 1_000_000_000, None).unwrap();
    v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
        .unwrap();
    v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
        .unwrap();
    v.add_route(
        "GET",
        "/api/v1/messaging/threads/:counterparty",
        "numbers:read",
        0,
    )
    .unwrap();
    let (t, _) = v
        .create_key(
            NewKey::new("acct_42", "bench", ["numbers:read", "sms:send"]).prefix("dial_live"),
        )
        .unwrap();
    let token = t.expose().to_string();
    // The one argon2 verification of this process.
    v.authorize(
        &token,
        Target::route("GET", "/api/v1/numbers/mine"),
        &AuthorizeOptions::default(),
    )
    .unwrap();
    (v, token)
}

fn hot_authorize(c: &mut Criterion) {
    let mut g = c.benchmark_group("authorize");
    g.measurement_time(Duration::from_secs(3));
    for (name, exclusive) in [("hot_multiwriter", false), ("hot_exclusive", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = setup(&dir, exclusive);
        let opts = AuthorizeOptions::default();
        g.bench_function(name, |b| {
            b.iter(|| {
                v.authorize(
                    std::hint::black_box(&token),
                    Target::route("GET", "/api/v1/numbers/mine"),
                    &opts,
                )
                .unwrap()
            })
        });
        let before = v.stats();
        assert_eq!(before.argon2_runs, 1, "argon2 ran on the hot path");
    }
    g.finish();

    let mut g = c.benchmark_group("debit");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    let dir = tempfile::tempdir().unwrap();
    let (v, token) = setup(&dir, false);
    g.bench_function("durable_1_thread_multiwriter", |b| {
        b.iter(|| {
            v.authorize(
                &token,
                Target::route("POST", "/api/v1/messaging/send"),
                &AuthorizeOptions::default(),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, hot_authorize);
criterion_main!(benches);
