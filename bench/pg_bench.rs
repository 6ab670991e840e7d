//! PostgreSQL benchmarks, each beside the redb file's figure taken in the same run
//! (the two backends alternate, so machine load weighs on both alike):
//!
//! - `revocation_visible`: a revocation seen by another process. A child process holds
//!   each key warm in its cache and spins on `authorize` (yielding between calls) until
//!   it is refused; the parent revokes the key. Measured from the return of the
//!   revoker's `revoke_key` (its commit) to the child's first refusal, both read from
//!   CLOCK_MONOTONIC (one clock for every process). p50/p99/max over `--revocations`.
//! - `hot_authorize`: a warm key on a free route (cache hit), one thread: ns per call.
//! - `durable_debits`: `authorize` on a route costing 1 credit (each debit durable when
//!   the call returns) from 1 and 16 threads of one process, and 4 processes × 4
//!   threads; the account must have lost exactly the credits granted (checked).
//! - `cold_authorize`: the first call of each of `--cold` keys in a freshly opened
//!   handle (nothing cached: the key, its account and the route table are read from the
//!   store, and argon2 verifies the secret). The keys are hashed with the insecure test
//!   parameters (m = 8 KiB, t = 1); `argon2` lines give that cost and the default
//!   parameters' (m = 19 MiB, t = 2) measured alone, so the store's share is
//!   `cold − argon2_fast`, and a production cold call adds `argon2_default` on either
//!   backend.
//!
//! ```sh
//! cargo run --release --locked --features postgres --example pg_bench -- [--url URL]
//!     [--revocations 1000] [--seconds 3] [--rounds 2] [--cold 300] [--hot 200000]
//! ```
//!
//! Without `--url` it starts its own throwaway cluster with `scripts/pg-cluster` (and
//! stops it at the end); with one (a superuser URL), it creates its databases there.
//! One JSON object per line on stdout; progress on stderr.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyledger::{Argon2Params, AuthorizeOptions, CacheMode, Target, Vault, VaultOptions};

const FREE: Target<'static> = Target::Route {
    method: "GET",
    path: "/v1/numbers",
};
const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/v1/send",
};
const CREDITS: u64 = 1_000_000_000_000;

/// CLOCK_MONOTONIC in nanoseconds: the same clock in every process of the machine.
fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn wall_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn options() -> VaultOptions {
    VaultOptions {
        argon2: Some(Argon2Params::INSECURE_FAST),
        ..VaultOptions::default()
    }
}

fn open(location: &str) -> Vault {
    let v = Vault::open_with(location, options()).unwrap_or_else(|e| panic!("open: {e}"));
    if location.starts_with("postgres") {
        // The cache serves nothing until the change listener has confirmed its position.
        let deadline = Instant::now() + Duration::from_secs(30);
        while v.cache_mode() == CacheMode::Disabled {
            assert!(
                Instant::now() < deadline,
                "the change listener did not connect: {:?}",
                v.cache_disabled_reason()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    v
}

/// The account `acct` (with plenty of credits), the free and the paid route, `n` keys.
fn seed(location: &str, n: usize) -> Vec<String> {
    let v = open(location);
    v.create_account("acct", CREDITS, None).unwrap();
    v.add_route("GET", "/v1/numbers", "numbers:read", 0)
        .unwrap();
    v.add_route("POST", "/v1/send", "sms:send", 1).unwrap();
    let tokens = v
        .create_keys_bulk(
            "acct",
            "bench",
            &["numbers:read", "sms:send"],
            n,
            Argon2Params::INSECURE_FAST,
        )
        .unwrap()
        .into_iter()
        .map(|t| t.expose().to_string())
        .collect();
    v.close().unwrap();
    tokens
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Where the benchmark's vaults live: a temp dir for redb files, databases on a cluster.
struct Places {
    dir: tempfile::TempDir,
    cluster: String,
    own_cluster: Option<PathBuf>,
    n: u32,
}

impl Places {
    fn new(url: Option<String>) -> Places {
        let dir = tempfile::tempdir().unwrap();
        let (cluster, own_cluster) = match url {
            Some(u) => (u, None),
            None => {
                let c = dir.path().join("cluster");
                let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                let out = Command::new("bash")
                    .arg(root.join("scripts/pg-cluster"))
                    .arg("start")
                    .arg(&c)
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run scripts/pg-cluster");
                assert!(out.status.success(), "scripts/pg-cluster start failed");
                let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
                (url, Some(c))
            }
        };
        Places {
            dir,
            cluster,
            own_cluster,
            n: 0,
        }
    }

    /// A new, empty vault location on `backend` ("redb" or "pg").
    fn fresh(&mut self, backend: &str) -> String {
        self.n += 1;
        if backend == "redb" {
            return self
                .dir
                .path()
                .join(format!("b{}.redb", self.n))
                .to_string_lossy()
                .into_owned();
        }
        let db = format!("kl_bench_{}_{}", std::process::id(), self.n);
        let mut client = postgres::Client::connect(&self.cluster, postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the cluster: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        with_database(&self.cluster, &db)
    }
}

impl Drop for Places {
    fn drop(&mut self) {
        if let Some(c) = &self.own_cluster {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let _ = Command::new("bash")
                .arg(root.join("scripts/pg-cluster"))
                .arg("stop")
                .arg(c)
                .status();
        }
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (before, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before.split('/').next().unwrap_or("");
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

// ---- revocation visible on another process ---------------------------------------------

/// The child: tokens on stdin (one per line, then an empty line). For each: warm it,
/// print `ready I`, spin until refused, print `refused I <mono_ns>` (or `timeout I`).
fn spinner(location: &str) {
    let v = open(location);
    let opts = AuthorizeOptions::default();
    let stdin = std::io::stdin();
    let mut tokens = Vec::new();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        if line.is_empty() {
            break;
        }
        tokens.push(line);
    }
    let mut out = std::io::stdout().lock();
    for (i, token) in tokens.iter().enumerate() {
        v.authorize(token, FREE, &opts).unwrap();
        v.authorize(token, FREE, &opts).unwrap();
        writeln!(out, "ready {i}").unwrap();
        out.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if v.authorize(token, FREE, &opts).is_err() {
                let t = mono_ns();
                writeln!(out, "refused {i} {t}").unwrap();
                break;
            }
            if Instant::now() > deadline {
                writeln!(out, "timeout {i}").unwrap();
                break;
            }
            std::thread::yield_now();
        }
        out.flush().unwrap();
    }
    v.close().unwrap();
}

fn revocation(places: &mut Places, backend: &str, n: usize) {
    let location = places.fresh(backend);
    let tokens = seed(&location, n);
    let v = open(&location);
    let ids: Vec<String> = tokens
        .iter()
        .map(|t| t.split('_').nth(1).unwrap().to_string())
        .collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--spinner", &location])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for t in &tokens {
            writeln!(stdin, "{t}").unwrap();
        }
        writeln!(stdin).unwrap();
    }
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut deltas = Vec::with_capacity(n);
    let mut timeouts = 0usize;
    let mut early = 0usize;
    for (i, id) in ids.iter().enumerate() {
        let ready = lines.next().unwrap().unwrap();
        assert_eq!(ready, format!("ready {i}"));
        v.revoke_key(id).unwrap();
        let committed = mono_ns();
        let answer = lines.next().unwrap().unwrap();
        let parts: Vec<&str> = answer.split(' ').collect();
        match parts.as_slice() {
            ["refused", j, t] if *j == i.to_string() => {
                let d = t.parse::<i64>().unwrap() - committed;
                if d < 0 {
                    early += 1;
                }
                deltas.push(d.max(0) as f64 / 1e6);
            }
            ["timeout", _] => timeouts += 1,
            other => panic!("unexpected line from the child: {other:?}"),
        }
        if (i + 1) % 250 == 0 {
            eprintln!("  {backend}: {} revocations", i + 1);
        }
    }
    assert!(child.wait().unwrap().success(), "the spinner failed");
    v.close().unwrap();
    let s = sorted(deltas);
    println!(
        "{{\"bench\": \"revocation_visible\", \"backend\": \"{backend}\", \"revocations\": {n}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"refused_before_revoke_returned\": {early}, \"timeouts_10s\": {timeouts}}}",
        pct(&s, 0.5),
        pct(&s, 0.99),
        s.last().copied().unwrap_or(f64::NAN)
    );
}

// ---- hot authorize ------------------------------------------------------------------

fn hot(places: &mut Places, backend: &str, calls: usize) -> f64 {
    let location = places.fresh(backend);
    let token = seed(&location, 1).remove(0);
    let v = open(&location);
    let opts = AuthorizeOptions::default();
    for _ in 0..1000 {
        v.authorize(&token, FREE, &opts).unwrap();
    }
    let batch = 1000;
    let mut per_call = Vec::new();
    for _ in 0..(calls / batch).max(1) {
        let t0 = Instant::now();
        for _ in 0..batch {
            std::hint::black_box(v.authorize(&token, FREE, &opts).unwrap());
        }
        per_call.push(t0.elapsed().as_nanos() as f64 / batch as f64);
    }
    let mode = format!("{:?}", v.cache_mode()).to_lowercase();
    v.close().unwrap();
    let s = sorted(per_call);
    let p50 = pct(&s, 0.5);
    println!(
        "{{\"bench\": \"hot_authorize\", \"backend\": \"{backend}\", \"calls\": {}, \"ns_per_call_p50_of_batches\": {p50:.0}, \"ns_per_call_p99_of_batches\": {:.0}, \"cache_mode\": \"{mode}\"}}",
        s.len() * batch,
        pct(&s, 0.99)
    );
    p50
}

// ---- durable debits -------------------------------------------------------------------

/// Debit from `threads` threads for `seconds` after `start_at` (wall ms); the count.
fn debit_loop(v: &Vault, token: &str, threads: usize, seconds: f64, start_at: u128) -> (u64, f64) {
    let opts = AuthorizeOptions::default();
    v.authorize(token, FREE, &opts).unwrap();
    while wall_ms() < start_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let g = v.authorize(token, SEND, &opts).unwrap();
                    assert_eq!(g.charged, 1);
                    n += 1;
                }
                calls.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    (calls.load(Ordering::Relaxed), t0.elapsed().as_secs_f64())
}

fn debit_child(location: &str, threads: usize, seconds: f64, start_at: u128) {
    let token = std::env::var("KEYLEDGER_BENCH_TOKEN").unwrap();
    let v = open(location);
    let (n, secs) = debit_loop(&v, &token, threads, seconds, start_at);
    v.close().unwrap();
    println!("{n} {secs}");
}

fn debits(
    places: &mut Places,
    backend: &str,
    processes: usize,
    threads: usize,
    seconds: f64,
) -> f64 {
    let location = places.fresh(backend);
    let token = seed(&location, 1).remove(0);
    let (total, longest) = if processes == 1 {
        let v = open(&location);
        let r = debit_loop(&v, &token, threads, seconds, wall_ms());
        v.close().unwrap();
        r
    } else {
        let start_at = wall_ms() + 2000;
        let kids: Vec<Child> = (0..processes)
            .map(|_| {
                Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--debit-child",
                        &location,
                        &threads.to_string(),
                        &seconds.to_string(),
                        &start_at.to_string(),
                    ])
                    .env("KEYLEDGER_BENCH_TOKEN", &token)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut total = 0u64;
        let mut longest = 0f64;
        for k in kids {
            let out = k.wait_with_output().unwrap();
            assert!(out.status.success(), "a debit child failed");
            let line = String::from_utf8(out.stdout).unwrap();
            let mut it = line.split_whitespace();
            total += it.next().unwrap().parse::<u64>().unwrap();
            longest = longest.max(it.next().unwrap().parse::<f64>().unwrap());
        }
        (total, longest)
    };
    let v = open(&location);
    let left = v.balance("acct").unwrap().credits;
    v.close().unwrap();
    let exact = left == CREDITS - total;
    let per_second = total as f64 / longest;
    println!(
        "{{\"bench\": \"durable_debits\", \"backend\": \"{backend}\", \"processes\": {processes}, \"threads\": {threads}, \"debits\": {total}, \"seconds\": {longest:.3}, \"per_second\": {per_second:.0}, \"us_per_debit\": {:.1}, \"exact\": {exact}}}",
        1e6 / per_second
    );
    assert!(
        exact,
        "{backend}: {left} credits left, expected {}",
        CREDITS - total
    );
    per_second
}

// ---- cold authorize -------------------------------------------------------------------

fn cold(places: &mut Places, backend: &str, n: usize) {
    let location = places.fresh(backend);
    let tokens = seed(&location, n);
    let v = open(&location);
    let opts = AuthorizeOptions::default();
    let mut us = Vec::with_capacity(n);
    for t in &tokens {
        let t0 = Instant::now();
        v.authorize(t, FREE, &opts).unwrap();
        us.push(t0.elapsed().as_nanos() as f64 / 1e3);
    }
    v.close().unwrap();
    let s = sorted(us);
    println!(
        "{{\"bench\": \"cold_authorize\", \"backend\": \"{backend}\", \"keys\": {n}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"argon2\": \"m=8KiB,t=1 included\"}}",
        pct(&s, 0.5),
        pct(&s, 0.99)
    );
}

fn argon2_cost() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    for (name, m, t, n) in [("fast", 8u32, 1u32, 200usize), ("default", 19_456, 2, 10)] {
        let params = argon2::Params::new(m, t, 1, Some(32)).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"keyledger-bench!").unwrap();
        let mut us = Vec::with_capacity(n);
        for _ in 0..n {
            let t0 = Instant::now();
            std::hint::black_box(
                a.hash_password(b"0123456789abcdef0123456789abcdef", &salt)
                    .unwrap(),
            );
            us.push(t0.elapsed().as_nanos() as f64 / 1e3);
        }
        let s = sorted(us);
        println!(
            "{{\"bench\": \"argon2\", \"params\": \"{name}\", \"m_kib\": {m}, \"t\": {t}, \"p50_us\": {:.1}}}",
            pct(&s, 0.5)
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--spinner") => return spinner(&args[2]),
        Some("--debit-child") => {
            return debit_child(
                &args[2],
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
        }
        _ => {}
    }
    let mut url = None;
    let mut revocations = 1000usize;
    let mut seconds = 3.0f64;
    let mut rounds = 2usize;
    let mut cold_keys = 300usize;
    let mut hot_calls = 200_000usize;
    let mut only: Vec<String> = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| panic!("{a} needs a value"))
                .clone()
        };
        match a.as_str() {
            "--url" => url = Some(val()),
            "--revocations" => revocations = val().parse().unwrap(),
            "--seconds" => seconds = val().parse().unwrap(),
            "--rounds" => rounds = val().parse().unwrap(),
            "--cold" => cold_keys = val().parse().unwrap(),
            "--hot" => hot_calls = val().parse().unwrap(),
            "--only" => only.push(val()),
            other => panic!("unknown argument {other}"),
        }
    }
    let want = |b: &str| only.is_empty() || only.iter().any(|o| o == b);
    let mut places = Places::new(url);
    eprintln!("pg_bench: cluster {}", places.cluster);
    if want("revocation") {
        eprintln!("revocation visible on another process ({revocations} revocations per backend)");
        revocation(&mut places, "pg", revocations);
        revocation(&mut places, "redb", revocations.min(200));
    }
    for round in 0..rounds {
        // Alternate which backend goes first, round by round.
        let order = if round % 2 == 0 {
            ["redb", "pg"]
        } else {
            ["pg", "redb"]
        };
        for backend in order {
            eprintln!("round {round}: {backend}");
            if want("hot") {
                hot(&mut places, backend, hot_calls);
            }
            if want("debits") {
                debits(&mut places, backend, 1, 1, seconds);
                debits(&mut places, backend, 1, 16, seconds);
                debits(&mut places, backend, 4, 4, seconds);
            }
            if want("cold") {
                cold(&mut places, backend, cold_keys);
            }
        }
    }
    if want("cold") {
        argon2_cost();
    }
}
