//! A hot `authorize` loop for profilers (perf, valgrind --tool=callgrind):
//! `cargo build --release --example hotloop && perf record -g target/release/examples/hotloop 2000000 1`
//! (CALLS, THREADS, API). Prints the time per call. API: `grant` (default,
//! `Vault::authorize`) or `view` (`Vault::authorize_view`, no copy of the key's strings).
//!
//! `hotloop scaling [ROUNDS]`: 2-thread vs 1-thread throughput on one key, the two runs
//! alternated ROUNDS times (default 7) so load from other jobs hits both alike; prints one
//! JSON line with every round's ratio and their median.

use std::time::Instant;

use keyledger::{AuthorizeOptions, NewKey, Target, Vault};

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let scaling = args.peek().is_some_and(|a| a == "scaling");
    if scaling {
        args.next();
    }
    let calls: u64 = if scaling {
        500_000
    } else {
        args.next().map_or(1_000_000, |a| a.parse().unwrap())
    };
    let rounds: usize = if scaling {
        args.next().map_or(7, |a| a.parse().unwrap())
    } else {
        0
    };
    let threads: usize = args.next().map_or(1, |a| a.parse().unwrap());
    let view = match args.next().as_deref() {
        None | Some("grant") => false,
        Some("view") => true,
        Some(other) => panic!("API must be grant or view, not {other:?}"),
    };
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
    // Wall time of `threads` threads making `calls` calls each, and their CPU time.
    let run = |threads: usize| {
        let start = Instant::now();
        let (cpu, switches) = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let (c0, s0) = (thread_cpu(), thread_switches());
                        for _ in 0..calls {
                            if view {
                                std::hint::black_box(
                                    v.authorize_view(token, route, &opts).unwrap(),
                                );
                            } else {
                                std::hint::black_box(v.authorize(token, route, &opts).unwrap());
                            }
                        }
                        let s1 = thread_switches();
                        (thread_cpu() - c0, (s1.0 - s0.0, s1.1 - s0.1))
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0.0, (0, 0)), |(c, (v, i)), (dc, (dv, di))| {
                    (c + dc, (v + dv, i + di))
                })
        });
        (start.elapsed(), cpu, switches)
    };
    if !scaling {
        let per = run(threads).0 / (calls as u32);
        println!("{threads} thread(s): {per:?} wall per call per thread");
        return;
    }
    run(1); // warm
    let mut ratios = Vec::new();
    let (mut one, mut two) = (Vec::new(), Vec::new());
    let mut cpu_ratios = Vec::new();
    let (mut voluntary, mut involuntary) = (0i64, 0i64);
    for _ in 0..rounds {
        let (w1, c1, _) = run(1);
        let (w2, c2, (vol, invol)) = run(2);
        voluntary += vol;
        involuntary += invol;
        let t1 = w1.as_secs_f64() / calls as f64;
        let t2 = w2.as_secs_f64() / calls as f64;
        // Throughput ratio: 2 threads made twice the calls in t2 per call-slot.
        ratios.push(2.0 * t1 / t2);
        one.push(t1 * 1e9);
        two.push(t2 * 1e9 / 2.0);
        // CPU time per call, 2 threads over 1: > 1 means the threads slow each other
        // down (shared cache lines); it does not depend on other jobs taking a core.
        cpu_ratios.push((c2 / 2.0) / c1);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rounds_text = fmt(&ratios);
    println!(
        "{{\"bench\": \"scaling\", \"ratios\": [{rounds_text}], \"median_ratio\": {:.2}, \"ns_per_call_1_thread\": {:.0}, \"ns_per_call_2_threads\": {:.0}, \"cpu_per_call_ratio\": {:.2}, \"voluntary_switches_2_threads\": {voluntary}, \"involuntary_switches_2_threads\": {involuntary}}}",
        median(&mut ratios),
        median(&mut one),
        median(&mut two),
        median(&mut cpu_ratios),
    );
}

/// Context switches of the calling thread so far: (voluntary — it blocked, e.g. on a
/// lock; involuntary — the scheduler gave its core to someone else).
fn thread_switches() -> (i64, i64) {
    // SAFETY: getrusage fills one rusage through a valid pointer; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    (ru.ru_nvcsw, ru.ru_nivcsw)
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
