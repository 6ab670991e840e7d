//! Scale figures against the performance targets: a vault with 1 000 000 keys (bulk path, small argon2
//! parameters): file size per key, open time, and hot `authorize` p50 against a
//! 1 000-key vault, measured in the same process.
//!
//! `cargo run --release --example scale [-- KEYS]` (default 1 000 000). The vault is kept
//! under `target/bench-data/<KEYS>/` and reused by later runs and by the criterion bench;
//! delete that directory to rebuild it. Prints one JSON line.

use std::path::Path;
use std::time::{Duration, Instant};

use keyledger::{Argon2Params, AuthorizeOptions, NewKey, Target, Vault, VaultOptions};

const HOT: Target<'static> = Target::Route {
    method: "GET",
    path: "/api/v1/numbers/mine",
};

fn small_argon2() -> Argon2Params {
    Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    }
}

fn options() -> VaultOptions {
    VaultOptions {
        argon2: Some(small_argon2()),
        ..VaultOptions::default()
    }
}

/// Build a vault of `n` keys at `path` (one account, the seed routes); a token of a key in
/// the middle of the key space.
fn build(path: &Path, n: usize) -> String {
    let v = Vault::open_with(path, options()).unwrap();
    v.create_account("acct_42", 1_000_000_000_000, None)
        .unwrap();
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
    let mut tokens = v
        .create_keys_bulk(
            "acct_42",
            "dial_live",
            &["numbers:read", "sms:send"],
            n.saturating_sub(1),
            small_argon2(),
        )
        .unwrap();
    let (t, _) = v
        .create_key(
            NewKey::new("acct_42", "bench", ["numbers:read", "sms:send"]).prefix("dial_live"),
        )
        .unwrap();
    tokens.push(t);
    v.close().unwrap();
    tokens[tokens.len() / 2].expose().to_string()
}

/// Median time of one hot `authorize`, from batches of 100 calls.
fn hot_p50(v: &Vault, token: &str) -> Duration {
    let opts = AuthorizeOptions::default();
    for _ in 0..20_000 {
        v.authorize(token, HOT, &opts).unwrap();
    }
    let mut batches: Vec<Duration> = (0..2_000)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..100 {
                std::hint::black_box(
                    v.authorize(std::hint::black_box(token), HOT, &opts)
                        .unwrap(),
                );
            }
            t.elapsed() / 100
        })
        .collect();
    batches.sort();
    batches[batches.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().unwrap());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-data")
        .join(if n == 1_000_000 {
            "1m".to_string()
        } else {
            n.to_string()
        });
    let path = dir.join("vault.redb");
    let token_file = dir.join("token.txt");
    let mut build_s = None;
    if !token_file.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = Instant::now();
        let token = build(&path, n);
        build_s = Some(t.elapsed().as_secs_f64());
        std::fs::write(&token_file, token).unwrap();
    }
    let token = std::fs::read_to_string(&token_file).unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    // Open time: median of 5 opens (each a new Vault on the existing file).
    let mut opens: Vec<Duration> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let v = Vault::open_with(&path, options()).unwrap();
            let d = t.elapsed();
            v.close().unwrap();
            d
        })
        .collect();
    opens.sort();
    let v = Vault::open_with(&path, options()).unwrap();
    v.authorize(&token, HOT, &AuthorizeOptions::default())
        .unwrap();
    let big = hot_p50(&v, &token);
    v.close().unwrap();

    let small_dir = tempfile::tempdir().unwrap();
    let small_token = build(&small_dir.path().join("v.redb"), 1_000);
    let small = Vault::open_with(small_dir.path().join("v.redb"), options()).unwrap();
    small
        .authorize(&small_token, HOT, &AuthorizeOptions::default())
        .unwrap();
    let little = hot_p50(&small, &small_token);
    println!(
        "{{\"bench\": \"scale\", \"keys\": {n}, \"file_bytes\": {bytes}, \"bytes_per_key\": {:.1}, \"open_ms\": {:.3}, \"build_s\": {}, \"hot_p50_ns_big\": {}, \"hot_p50_ns_1k\": {}, \"ratio\": {:.3}}}",
        bytes as f64 / n as f64,
        opens[2].as_secs_f64() * 1e3,
        build_s.map_or("null".to_string(), |s| format!("{s:.1}")),
        big.as_nanos(),
        little.as_nanos(),
        big.as_secs_f64() / little.as_secs_f64(),
    );
}
