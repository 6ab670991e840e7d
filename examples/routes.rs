//! `Router::find` cost by number of rules, for profilers and instruction counters:
//! `cargo build --release --example routes && target/release/examples/routes RULES CALLS`
//! (RULES a multiple of 5: 5 rules per resource under `/api/v1/`, as the criterion bench
//! `route/match_*_rules`). Prints one JSON line with the time per call.
//!
//! Under `valgrind --tool=callgrind`, the instructions of `CALLS` finds are the difference
//! between a run with `CALLS` and one with 0.

use std::hint::black_box;
use std::time::Instant;

use keyledger::policy::{RouteRule, Router};

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: usize = args.next().map_or(50, |a| a.parse().unwrap());
    let calls: u64 = args.next().map_or(1_000_000, |a| a.parse().unwrap());
    let resources = (rules / 5).max(1);
    let mut list = Vec::new();
    for r in 0..resources {
        for (m, p) in [
            ("GET", format!("/api/v1/res{r}/list")),
            ("POST", format!("/api/v1/res{r}/create")),
            ("GET", format!("/api/v1/res{r}/:id")),
            ("DELETE", format!("/api/v1/res{r}/:id")),
            ("GET", format!("/api/v1/res{r}/files/*")),
        ] {
            list.push(RouteRule {
                method: m.into(),
                pattern: p,
                scope: format!("res{r}:read"),
                cost: 0,
            });
        }
    }
    let router = Router::new(list);
    let path = format!("/api/v1/res{}/abc123", resources * 7 / 10);
    assert!(router.find("GET", &path).is_some());
    let start = Instant::now();
    for _ in 0..calls {
        black_box(router.find(black_box("GET"), black_box(&path)));
    }
    let ns = start.elapsed().as_nanos() as f64 / calls.max(1) as f64;
    println!(
        "{{\"rules\": {}, \"calls\": {calls}, \"ns_per_call\": {ns:.1}}}",
        router.rules().len()
    );
}
