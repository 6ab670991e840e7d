//! Criterion benches of the performance targets (`cargo bench --bench authorize`; `bench/report` runs
//! them and writes BENCHMARKS.md). The side-by-side benchmark against peer libraries is
//! `bench/compare.py`; the multi-process debit figure and the 1 000 000-key scale figures
//! are `examples/multiprocess.rs` and `examples/scale.rs`.
//!
//! Groups (criterion ids `group/name`):
//! - `hot/*`: `authorize` with a cached verified secret, a route match, cost 0 (`*_view`:
//!   `authorize_view`, the grant reading the cached key record instead of copying it).
//! - `hot_threads/*`: the same on 1 and 2 threads (time per call; ratio = scaling).
//! - `cold/argon2_default`: the first `authorize` of a key in a fresh process (one argon2).
//! - `debit/*`: `authorize` with a durable debit of 1 credit, 1/4/16 threads, MultiWriter and
//!   exclusive; time per call, so calls/s = 1 s / time. `debit/redb_commit_multiwriter` is one
//!   bare redb MultiWriter commit (the physics the debit path is compared with).
//! - `route/match_{5,50,500}_rules` (`Router::find`), `route/gate_50_rules*` (the HTTP gate),
//!   `token/looks_like_key`.
//!
//! Set `KEYLEDGER_BENCH_1M=0` to skip the 1 000 000-key vault (built once with small argon2
//! parameters under `target/bench-data/` and reused).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keyledger::policy::{RouteRule, Router};
use keyledger::{
    looks_like_key, Argon2Params, AuthorizeOptions, LimitOwner, NewKey, Target, Vault, VaultOptions,
};

const HOT: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};
const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

fn options(exclusive: bool, argon2: Argon2Params) -> VaultOptions {
    VaultOptions {
        exclusive,
        argon2: Some(argon2),
        ..VaultOptions::default()
    }
}

fn add_routes(v: &Vault) {
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
}

/// A vault with one account, the seed routes and `extra` more keys (bulk, small argon2);
/// returns it with a token whose secret is already verified (the one argon2 of the run).
fn setup(path: &Path, exclusive: bool, extra: usize) -> (Vault, String) {
    let v = Vault::open_with(path, options(exclusive, Argon2Params::default())).unwrap();
    v.create_account("acct_42", 1_000_000_000_000, None)
        .unwrap();
    add_routes(&v);
    if extra > 0 {
        v.create_keys_bulk(
            "acct_42",
            "dial_live",
            &["numbers:read"],
            extra,
            small_argon2(),
        )
        .unwrap();
    }
    let (t, _) = v
        .create_key(
            NewKey::new("acct_42", "bench", ["numbers:read", "sms:send"]).prefix("dial_live"),
        )
        .unwrap();
    let token = t.expose().to_string();
    v.authorize(&token, HOT, &AuthorizeOptions::default())
        .unwrap();
    (v, token)
}

fn small_argon2() -> Argon2Params {
    Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    }
}

/// The 1 000 000-key vault, built once (bulk path, small argon2) and reused across runs.
fn million_vault() -> Option<(Vault, String)> {
    if std::env::var("KEYLEDGER_BENCH_1M").is_ok_and(|v| v == "0") {
        return None;
    }
    let dir = bench_data_dir().join("1m");
    let path = dir.join("vault.redb");
    let token_file = dir.join("token.txt");
    if !token_file.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let started = Instant::now();
        let v = Vault::open_with(&path, options(false, small_argon2())).unwrap();
        v.create_account("acct_42", 1_000_000_000_000, None)
            .unwrap();
        add_routes(&v);
        let tokens = v
            .create_keys_bulk(
                "acct_42",
                "dial_live",
                &["numbers:read", "sms:send"],
                1_000_000,
                small_argon2(),
            )
            .unwrap();
        v.close().unwrap();
        // A key in the middle of the key space.
        std::fs::write(&token_file, tokens[tokens.len() / 2].expose()).unwrap();
        eprintln!("built the 1 000 000-key vault in {:.1?}", started.elapsed());
    }
    let token = std::fs::read_to_string(&token_file).unwrap();
    let v = Vault::open_with(&path, options(false, small_argon2())).unwrap();
    v.authorize(&token, HOT, &AuthorizeOptions::default())
        .unwrap();
    Some((v, token))
}

fn bench_data_dir() -> PathBuf {
    // CARGO_MANIFEST_DIR is the repository root: target/ is ours to write.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
}

fn hot(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    let opts = AuthorizeOptions::default();
    for (name, exclusive) in [("1k_keys_multiwriter", false), ("1k_keys_exclusive", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = setup(&dir.path().join("v.redb"), exclusive, 999);
        let before = v.stats();
        g.bench_function(name, |b| {
            b.iter(|| v.authorize(black_box(&token), HOT, &opts).unwrap())
        });
        g.bench_function(format!("{name}_view"), |b| {
            b.iter(|| v.authorize_view(black_box(&token), HOT, &opts).unwrap())
        });
        let after = v.stats();
        assert_eq!(
            after.argon2_runs, before.argon2_runs,
            "argon2 on the hot path"
        );
        assert_eq!(
            after.read_txns, before.read_txns,
            "redb read on the hot path"
        );
    }
    // One auto-applied rate limit (never exhausted) against none, same vault shape.
    {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = setup(&dir.path().join("v.redb"), false, 0);
        g.bench_function("ratelimit_off", |b| {
            b.iter(|| v.authorize(black_box(&token), HOT, &opts).unwrap())
        });
        let key_id = token.rsplit('_').nth(1).unwrap().to_string();
        v.set_ratelimit(
            LimitOwner::Key(&key_id),
            "burst",
            1_000_000_000,
            1_000,
            true,
        )
        .unwrap();
        v.authorize(&token, HOT, &opts).unwrap();
        g.bench_function("ratelimit_on", |b| {
            b.iter(|| v.authorize(black_box(&token), HOT, &opts).unwrap())
        });
    }
    if let Some((v, token)) = million_vault() {
        g.bench_function("1m_keys_multiwriter", |b| {
            b.iter(|| v.authorize(black_box(&token), HOT, &opts).unwrap())
        });
        // The same call answering a `GrantView` (no copy of the key's strings): what the
        // C ABI and the hosts built on it, and Python, use.
        g.bench_function("1m_keys_multiwriter_view", |b| {
            b.iter(|| v.authorize_view(black_box(&token), HOT, &opts).unwrap())
        });
    }
    g.finish();
}

/// Run `per_thread` calls of `f` on each of `threads` threads; the wall time of the lot,
/// from the moment all threads are released until the last one is done.
fn on_threads(threads: usize, per_thread: u64, f: &(dyn Fn() + Sync)) -> Duration {
    let barrier = std::sync::Barrier::new(threads + 1);
    let mut started = None;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                barrier.wait();
                for _ in 0..per_thread {
                    f();
                }
            });
        }
        barrier.wait();
        started = Some(Instant::now());
    }); // joins every thread
    started.expect("released").elapsed()
}

/// Time per call when `threads` threads share `iters` calls.
fn per_call(threads: usize, iters: u64, f: &(dyn Fn() + Sync)) -> Duration {
    let per = iters.div_ceil(threads as u64).max(1);
    let wall = on_threads(threads, per, f);
    // Criterion divides by `iters`; scale to the calls actually made.
    wall.mul_f64(iters as f64 / (per * threads as u64) as f64)
}

fn hot_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_threads");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    let dir = tempfile::tempdir().unwrap();
    let (v, token) = setup(&dir.path().join("v.redb"), false, 0);
    let opts = AuthorizeOptions::default();
    let call = || {
        v.authorize(black_box(&token), HOT, &opts).unwrap();
    };
    for threads in [1usize, 2] {
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| per_call(threads, iters, &call))
        });
    }
    g.finish();
}

fn cold(c: &mut Criterion) {
    let mut g = c.benchmark_group("cold");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let token = {
        let (v, token) = setup(&path, false, 0);
        v.close().unwrap();
        token
    };
    // Each call: a fresh Vault (a new process's caches), then its first authorize of the
    // key, which runs argon2 at the default parameters. Only the authorize is timed.
    g.bench_function("argon2_default", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let v = Vault::open_with(&path, options(false, Argon2Params::default())).unwrap();
                let t = Instant::now();
                v.authorize(&token, HOT, &AuthorizeOptions::default())
                    .unwrap();
                total += t.elapsed();
                assert_eq!(v.stats().argon2_runs, 1);
                v.close().unwrap();
            }
            total
        })
    });
    g.finish();
}

fn debit(c: &mut Criterion) {
    let mut g = c.benchmark_group("debit");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    let opts = AuthorizeOptions::default();
    for (mode, exclusive) in [("multiwriter", false), ("exclusive", true)] {
        let dir = tempfile::tempdir().unwrap();
        let (v, token) = setup(&dir.path().join("v.redb"), exclusive, 0);
        let v = Arc::new(v);
        let call = || {
            let grant = v.authorize(black_box(&token), SEND, &opts).unwrap();
            assert_eq!(grant.charged, 1);
        };
        let start = v.balance("acct_42").unwrap().credits;
        let mut calls = 0u64;
        for threads in [1usize, 4, 16] {
            if exclusive && threads == 4 {
                continue;
            }
            let (calls_before, commits_before) = (calls, v.stats().commits);
            g.bench_function(format!("durable_{threads}_threads_{mode}"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(threads as u64).max(1);
                    calls += per * threads as u64;
                    per_call(threads, iters, &call)
                })
            });
            // Group commit at work: debits per write transaction (the flusher's few
            // commits of usage counters are counted too).
            let commits = v.stats().commits - commits_before;
            if calls == calls_before {
                continue; // filtered out
            }
            eprintln!(
                "debit/durable_{threads}_threads_{mode}: {} debits in {commits} commits, {:.1} per commit",
                calls - calls_before,
                (calls - calls_before) as f64 / commits.max(1) as f64
            );
        }
        // Exact: every call debited exactly one credit.
        assert_eq!(v.balance("acct_42").unwrap().credits, start - calls);
    }
    // One bare redb MultiWriter commit (Immediate durability), one u64 written.
    {
        const T: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("t");
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Builder::new()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(dir.path().join("raw.redb"))
            .unwrap();
        let mut n = 0u64;
        g.bench_function("redb_commit_multiwriter", |b| {
            b.iter(|| {
                let tx = db.begin_write().unwrap();
                tx.open_table(T).unwrap().insert("acct_42", n).unwrap();
                tx.commit().unwrap();
                n += 1;
            })
        });
    }
    g.finish();
}

/// A router of 5 rules for each of `resources` resources.
fn rules_router(resources: usize) -> Router {
    let mut rules = Vec::new();
    for r in 0..resources {
        for (m, p) in [
            ("GET", format!("/api/v1/res{r}/list")),
            ("POST", format!("/api/v1/res{r}/create")),
            ("GET", format!("/api/v1/res{r}/:id")),
            ("DELETE", format!("/api/v1/res{r}/:id")),
            ("GET", format!("/api/v1/res{r}/files/*")),
        ] {
            rules.push(RouteRule {
                method: m.into(),
                pattern: p,
                scope: format!("res{r}:read"),
                cost: 0,
            });
        }
    }
    Router::new(rules)
}

fn route_and_token(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.measurement_time(Duration::from_secs(1));
    g.warm_up_time(Duration::from_millis(300));
    // 5, 50 and 500 rules over 1, 10 and 100 resources: literal, `:name` and trailing `*`
    // patterns, all under `/api/v1/` (the first segment alone tells them nothing apart). The
    // request reaches `GET /api/v1/res<r>/:id` of the resource 70 % of the way down.
    for n in [5, 50, 500] {
        let router = rules_router(n / 5);
        let path = format!("/api/v1/res{}/abc123", n / 5 * 7 / 10);
        assert_eq!(
            router.find("GET", &path).map(|r| r.pattern.as_str()),
            Some(&*format!("/api/v1/res{}/:id", n / 5 * 7 / 10))
        );
        g.bench_function(format!("match_{n}_rules"), |b| {
            b.iter(|| router.find(black_box("GET"), black_box(&path)))
        });
    }
    let router = rules_router(10);
    // The HTTP gate on the raw target: parse, decode once, every reading agreeing.
    g.bench_function("gate_50_rules", |b| {
        b.iter(|| {
            keyledger::http::find(
                &router,
                black_box("GET"),
                black_box("/api/v1/res7/abc123?page=2"),
                false,
            )
        })
    });
    g.bench_function("gate_50_rules_escaped", |b| {
        b.iter(|| {
            keyledger::http::find(
                &router,
                black_box("GET"),
                black_box("/api/v1/res7/abc%20123"),
                false,
            )
        })
    });
    g.finish();

    let mut g = c.benchmark_group("token");
    g.measurement_time(Duration::from_secs(1));
    g.warm_up_time(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let (_v, token) = setup(&dir.path().join("v.redb"), true, 0);
    g.bench_function("looks_like_key", |b| {
        b.iter(|| looks_like_key(black_box(&token)))
    });
    g.finish();
}

criterion_group!(benches, hot, hot_threads, cold, debit, route_and_token);
criterion_main!(benches);
