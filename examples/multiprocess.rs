//! The performance targets: durable debits from 4 processes × 4 threads on one vault file (MultiWriter),
//! with the totals checked exact at the end.
//!
//! `cargo run --release --example multiprocess [-- PROCESSES THREADS SECONDS]`
//!
//! The parent creates the vault, then spawns itself PROCESSES times; each child opens the
//! file, verifies the key once (its one argon2), waits for a common start instant, and
//! runs THREADS threads calling `authorize` on a route that costs 1 credit for SECONDS.
//! Each child prints how many calls it made and its commits; the parent checks that the
//! account lost exactly that many credits and prints one JSON line (with debits per commit:
//! `1 16 3` measures the 16-thread group commit of one process).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyledger::{AuthorizeOptions, NewKey, Target, Vault, VaultOptions};

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};
const START_CREDITS: u64 = 1_000_000_000;

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn child(path: &str, token: &str, threads: usize, seconds: f64, start_at: u128) {
    let v = Vault::open_with(path, VaultOptions::default()).unwrap();
    let opts = AuthorizeOptions::default();
    // Warm: the one argon2 of this process, with cost 0.
    v.authorize(token, Target::route("GET", "/api/v1/numbers/mine"), &opts)
        .unwrap();
    while now_ms() < start_at {
        std::thread::sleep(Duration::from_millis(1));
    }
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let commits_before = v.stats().commits;
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
    let elapsed = t0.elapsed().as_secs_f64();
    // This process's write transactions over the run (its flusher's few commits of usage
    // counters included): debits per commit = calls / commits.
    let commits = v.stats().commits - commits_before;
    v.close().unwrap();
    println!("{} {elapsed} {commits}", calls.load(Ordering::Relaxed));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(
            &args[2],
            &std::env::var("KEYLEDGER_BENCH_TOKEN").unwrap(),
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
        );
        return;
    }
    let processes: usize = args.get(1).map_or(4, |a| a.parse().unwrap());
    let threads: usize = args.get(2).map_or(4, |a| a.parse().unwrap());
    let seconds: f64 = args.get(3).map_or(3.0, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mp.redb");
    let token = {
        let v = Vault::open_with(&path, VaultOptions::default()).unwrap();
        v.create_account("acct_42", START_CREDITS, None).unwrap();
        v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
            .unwrap();
        v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
            .unwrap();
        let (t, _) = v
            .create_key(
                NewKey::new("acct_42", "bench", ["numbers:read", "sms:send"]).prefix("dial_live"),
            )
            .unwrap();
        v.close().unwrap();
        t.expose().to_string()
    };
    let exe = std::env::current_exe().unwrap();
    // Room for every child to open the vault and run its argon2 first.
    let start_at = now_ms() + 1500;
    let kids: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--child",
                    path.to_str().unwrap(),
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
    let mut commits = 0u64;
    let mut longest = 0f64;
    for k in kids {
        let out = k.wait_with_output().unwrap();
        assert!(out.status.success(), "a child failed");
        let line = String::from_utf8(out.stdout).unwrap();
        let mut it = line.split_whitespace();
        total += it.next().unwrap().parse::<u64>().unwrap();
        longest = longest.max(it.next().unwrap().parse::<f64>().unwrap());
        commits += it.next().unwrap().parse::<u64>().unwrap();
    }
    let v = Vault::open_with(&path, VaultOptions::default()).unwrap();
    let left = v.balance("acct_42").unwrap().credits;
    let exact = left == START_CREDITS - total;
    println!(
        "{{\"bench\": \"multiprocess\", \"processes\": {processes}, \"threads\": {threads}, \"calls\": {total}, \"seconds\": {longest:.3}, \"per_second\": {:.0}, \"commits\": {commits}, \"per_commit\": {:.1}, \"credits_left\": {left}, \"exact\": {exact}}}",
        total as f64 / longest,
        total as f64 / commits.max(1) as f64
    );
    assert!(
        exact,
        "credits: {left} left, expected {}",
        START_CREDITS - total
    );
}
