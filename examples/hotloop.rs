//! A hot `authorize` loop for profilers (perf, valgrind --tool=callgrind):
//! `cargo build --release --example hotloop && perf record -g target/release/examples/hotloop 2000000 1`
//! (CALLS, THREADS). Prints the time per call.

use std::time::Instant;

use keyledger::{AuthorizeOptions, NewKey, Target, Vault};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let threads: usize = args.next().map_or(1, |a| a.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open(dir.path().join("v.redb")).unwrap();
    v.create_account("acct_42", 1_000, None).unwrap();
    v.add_route("GET", "/api/v1/numbers/mine", "numbers:read", 0)
        .unwrap();
    let (t, _) = v
        .create_key(NewKey::new("acct_42", "bench", ["numbers:read"]).prefix("dial_live"))
        .unwrap();
    let token = t.expose();
    let route = Target::route("GET", "/api/v1/numbers/mine");
    let opts = AuthorizeOptions::default();
    v.authorize(token, route, &opts).unwrap();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..calls {
                    std::hint::black_box(v.authorize(token, route, &opts).unwrap());
                }
            });
        }
    });
    let per = start.elapsed() / (calls as u32);
    println!("{threads} thread(s): {per:?} wall per call per thread");
}
