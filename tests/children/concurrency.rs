//! Workers of tests/concurrency.rs.

use std::sync::Arc;

use keyledger::Vault;

use crate::base::{env, options};
use crate::workloads::spend_until_refused;

/// Four threads spend from `KL_TOKEN` until refused; prints `GRANTED=<n>`.
pub fn spend() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    let token = env("KL_TOKEN");
    let v = Arc::new(v);
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || spend_until_refused(&v, &token).0)
        })
        .collect();
    let granted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("GRANTED={granted}");
}

/// Makes the change `KL_CHANGE` to key `KL_KEY` (or account `a`, or route `GET /r`).
pub fn change() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    let key_id = env("KL_KEY");
    match env("KL_CHANGE").as_str() {
        "revoke" => drop(v.revoke_key(&key_id).unwrap()),
        "disable" => drop(v.disable_key(&key_id).unwrap()),
        "scopes" => drop(v.set_scopes(&key_id, &["other"]).unwrap()),
        "debit" => drop(v.debit("a", 7, None).unwrap()),
        "route" => drop(v.remove_route("GET", "/r").unwrap()),
        other => panic!("unknown change {other}"),
    }
}
