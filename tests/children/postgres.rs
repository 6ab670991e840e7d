//! Workers of tests/postgres.rs: other "hosts" on the same PostgreSQL database.

use std::io::{BufRead, Write};
use std::sync::Arc;

use keyledger::{AuthorizeOptions, Target, Vault};

use crate::base::{env, options};

/// Opens the vault at `KL_URL` with its own caches, prints `READY`, then for each line
/// `<token> <scope> <cost>` on stdin authorizes and prints `RESULT=ok` or
/// `RESULT=<error code>`; for a line `BALANCE <account>`, prints `RESULT=<credits>`.
pub fn serve() {
    let v = Vault::open_with(env("KL_URL"), options()).unwrap();
    println!("READY");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        let (Some(token), Some(scope)) = (parts.next(), parts.next()) else {
            break;
        };
        if token == "BALANCE" {
            match v.balance(scope) {
                Ok(b) => println!("RESULT={}", b.credits),
                Err(e) => println!("RESULT={}", e.code()),
            }
            continue;
        }
        let Some(cost) = parts.next() else {
            break;
        };
        let opts = AuthorizeOptions {
            cost: Some(cost.parse().unwrap()),
            ..AuthorizeOptions::default()
        };
        match v.authorize(token, Target::Scope(scope), &opts) {
            Ok(_) => println!("RESULT=ok"),
            Err(e) => println!("RESULT={}", e.code()),
        }
    }
}

/// Debits until killed: `KL_THREADS` threads each make idempotent paid calls with the
/// token `KL_TOKEN` (scope `x`), the idempotency key `<KL_NAME>-<thread>-<n>` and a cost
/// of 1 to 5. Before each call it prints `@@ I <key> <cost>`, after it `@@ A <key>
/// <charged> <replayed>` (each line written whole, so a kill leaves at most one call in
/// flight per thread). Prints `@@ READY` once open; `@@ FAIL <error>` and exit 3 if a call
/// fails.
pub fn debit_until_killed() {
    let v = Arc::new(Vault::open_with(env("KL_URL"), options()).unwrap());
    let (token, name) = (env("KL_TOKEN"), env("KL_NAME"));
    let threads: usize = env("KL_THREADS").parse().unwrap();
    say("READY");
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (v, token, name) = (v.clone(), token.clone(), name.clone());
            std::thread::spawn(move || {
                for n in 0u64.. {
                    let key = format!("{name}-{t}-{n}");
                    let cost = 1 + (n * 7 + t as u64) % 5;
                    say(&format!("I {key} {cost}"));
                    let opts = AuthorizeOptions {
                        cost: Some(cost),
                        idempotency_key: Some(&key),
                        ..AuthorizeOptions::default()
                    };
                    match v.authorize(&token, Target::Scope("x"), &opts) {
                        Ok(g) => say(&format!("A {key} {} {}", g.charged, g.replayed)),
                        Err(e) => {
                            say(&format!("FAIL {e}"));
                            std::process::exit(3);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("@@ {line}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}
