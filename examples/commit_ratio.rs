//! The performance target "durable debit, 1 thread ≥ 90 % of one MultiWriter commit's rate", measured
//! with the two alternated (ROUNDS rounds of SECONDS each) so a shared disk's swings weigh
//! on both alike: bare redb MultiWriter commits (one u64 written, `Durability::Immediate`)
//! against `authorize` calls with a durable 1-credit debit, on the same filesystem.
//! Prints one JSON line with each round's ratio and the median.
//!
//! `cargo run --release --example commit_ratio [-- ROUNDS SECONDS]` (default 5, 1.0).

use std::time::{Duration, Instant};

use keyledger::{AuthorizeOptions, NewKey, Target, Vault};

const T: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("t");

/// Calls of `f` per second over `d`.
fn rate(d: Duration, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < d {
        f();
        n += 1;
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(5, |a| a.parse().unwrap());
    let d = Duration::from_secs_f64(args.next().map_or(1.0, |a| a.parse().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Builder::new()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create(dir.path().join("raw.redb"))
        .unwrap();
    let v = Vault::open(dir.path().join("v.redb")).unwrap();
    v.create_account("acct_42", 1_000_000_000, None).unwrap();
    v.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)
        .unwrap();
    let (t, _) = v
        .create_key(NewKey::new("acct_42", "bench", ["sms:send"]).prefix("dial_live"))
        .unwrap();
    let token = t.expose().to_string();
    let send = Target::route("POST", "/api/v1/messaging/send");
    let opts = AuthorizeOptions::default();
    v.authorize(&token, send, &opts).unwrap();
    let mut n = 0u64;
    let mut commit = || {
        let tx = db.begin_write().unwrap();
        tx.open_table(T).unwrap().insert("acct_42", n).unwrap();
        tx.commit().unwrap();
        n += 1;
    };
    let mut debit = || {
        v.authorize(&token, send, &opts).unwrap();
    };
    let (mut commits, mut debits, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let c = rate(d, &mut commit);
        let x = rate(d, &mut debit);
        commits.push(c);
        debits.push(x);
        ratios.push(x / c);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let list = ratios
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{{\"bench\": \"commit_ratio\", \"ratios\": [{list}], \"median_ratio\": {:.3}, \"commits_per_s\": {:.0}, \"debits_per_s\": {:.0}}}",
        median(&mut ratios),
        median(&mut commits),
        median(&mut debits),
    );
}
