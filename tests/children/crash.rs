//! Workers of tests/crash.rs: the worker killed at random points and the long-lived
//! server. Protocol lines start with `@@ ` (see tests/crash.rs).

use std::io::{BufRead, Write};

use keyledger::{AuthorizeOptions, NewKey, Target, Vault};

use crate::base::{env, options};
use crate::workloads::Rng;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

/// A worker whose call fails reports it (the parent fails the test) and stops.
fn ok<T>(r: keyledger::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        say(&format!("FAIL {e:?}"));
        std::process::exit(3)
    })
}

fn cost(c: u64, idem: Option<&str>) -> AuthorizeOptions<'_> {
    AuthorizeOptions {
        cost: Some(c),
        idempotency_key: idem,
        ..AuthorizeOptions::default()
    }
}

/// The worker: runs until killed.
pub fn worker() {
    let mut rng = Rng(env("KL_SEED").parse().unwrap());
    let round = env("KL_ROUND");
    let token = env("KL_TOKEN");
    let v = ok(Vault::open_with(env("KL_PATH"), options()));
    let mut mine: Vec<String> = Vec::new();
    // Holds this worker made and has not settled yet (those of killed workers stay held).
    let mut holds: Vec<(String, u64)> = Vec::new();
    say("READY");
    // First, retry the idempotent call that was in flight when the last worker died.
    if let Ok(retry) = std::env::var("KL_RETRY") {
        let (k, c) = retry.split_once(' ').unwrap();
        let c: u64 = c.parse().unwrap();
        say(&format!("I idem {c} {k}"));
        let g = ok(v.authorize(&token, Target::scope("x"), &cost(c, Some(k))));
        say(&format!("A idem {} {} {k}", g.charged, g.replayed));
    }
    for i in 0u64.. {
        match rng.below(100) {
            0..=44 => {
                let c = 1 + rng.below(5);
                say(&format!("I auth {c}"));
                let g = ok(v.authorize(&token, Target::scope("x"), &cost(c, None)));
                say(&format!("A auth {} {}", g.charged, g.credits));
            }
            45..=59 => {
                let c = 1 + rng.below(5);
                let k = format!("r{round}-{i}");
                say(&format!("I idem {c} {k}"));
                let g = ok(v.authorize(&token, Target::scope("x"), &cost(c, Some(&k))));
                say(&format!("A idem {} {} {k}", g.charged, g.replayed));
            }
            60..=69 => {
                let c = 1 + rng.below(9);
                say(&format!("I debit {c}"));
                let b = ok(v.debit("a", c, None));
                say(&format!("A debit {c} {}", b.credits));
            }
            // Holds: reserve (idempotent, a TTL longer than the test), settle one of ours.
            70..=72 => {
                let c = 1 + rng.below(20);
                let k = format!("h{round}-{i}");
                say(&format!("I hold {c} {k}"));
                let h = ok(v.hold("a", c, 3_600_000, Some(&k)));
                say(&format!("A hold {c} {}", h.hold_id));
                holds.push((h.hold_id, c));
            }
            73..=74 if !holds.is_empty() => {
                let (id, c) = holds.swap_remove(rng.below(holds.len() as u64) as usize);
                let actual = rng.below(c + 1);
                say(&format!("I settle {actual} {id}"));
                let h = ok(v.settle(&id, actual, &keyledger::SettleOptions::default()));
                say(&format!("A settle {} {id}", h.charged));
            }
            75..=79 => {
                let c = 10 + rng.below(90);
                say(&format!("I topup {c}"));
                let b = ok(v.top_up("a", c, None));
                say(&format!("A topup {c} {}", b.credits));
            }
            80..=89 => {
                say("I create 0");
                let (t, info) = ok(v.create_key(NewKey::new("a", "k", ["x"])));
                say(&format!("A create {} {}", info.key_id, t.expose()));
                mine.push(info.key_id);
            }
            90..=94 if !mine.is_empty() => {
                let id = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                say(&format!("I revoke 0 {id}"));
                ok(v.revoke_key(&id));
                say(&format!("A revoke {id}"));
            }
            95..=99 if !mine.is_empty() => {
                let id = mine[rng.below(mine.len() as u64) as usize].clone();
                let disable = rng.below(2) == 0;
                say(&format!("I toggle 0 {id} {disable}"));
                if disable {
                    ok(v.disable_key(&id));
                } else {
                    ok(v.enable_key(&id));
                }
                say(&format!("A toggle {id} {disable}"));
            }
            _ => {}
        }
    }
}

/// The long-lived server: answers commands from stdin from its warm caches.
pub fn server() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("AUTH") => {
                let token = words.next().unwrap();
                match v.authorize(token, Target::scope("x"), &AuthorizeOptions::default()) {
                    Ok(g) => say(&format!("OK {}", g.credits)),
                    Err(e) => say(&format!("ERR {}", e.code())),
                }
            }
            Some("BAL") => say(&format!("BAL {}", v.balance("a").unwrap().credits)),
            _ => break,
        }
    }
    v.close().unwrap();
}
