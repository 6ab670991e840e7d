//! Worker of tests/postgres.rs: another "host" on the same PostgreSQL database.

use std::io::BufRead;

use keyledger::{AuthorizeOptions, Target, Vault};

use crate::base::{env, options};

/// Opens the vault at `KL_URL` with its own caches, prints `READY`, then for each line
/// `<token> <scope> <cost>` on stdin authorizes and prints `RESULT=ok` or
/// `RESULT=<error code>`.
pub fn serve() {
    let v = Vault::open_with(env("KL_URL"), options()).unwrap();
    println!("READY");
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut parts = line.split_whitespace();
        let (Some(token), Some(scope), Some(cost)) = (parts.next(), parts.next(), parts.next())
        else {
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
