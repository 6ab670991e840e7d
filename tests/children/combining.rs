//! Workers of tests/combining.rs.

use std::io::Write;
use std::sync::Arc;

use keyledger::{AuthorizeOptions, Target, Vault};

use crate::base::{env, options};

/// Four threads authorize calls of cost 1 until killed; before each call a thread prints
/// `I`, after it returns `A` (one line each, written at once).
pub fn debit_until_killed() {
    let v = Arc::new(Vault::open_with(env("KL_PATH"), options()).unwrap());
    let token = Arc::new(env("KL_TOKEN"));
    println!("READY");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || loop {
                let opts = AuthorizeOptions {
                    cost: Some(1),
                    ..AuthorizeOptions::default()
                };
                {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "I").unwrap();
                    out.flush().unwrap();
                }
                let g = v.authorize(&token, Target::scope("x"), &opts).unwrap();
                assert_eq!(g.charged, 1);
                let mut out = std::io::stdout().lock();
                writeln!(out, "A").unwrap();
                out.flush().unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
