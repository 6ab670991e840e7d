//! Workers of tests/model.rs.

use std::sync::Arc;

use keyledger::Vault;

use crate::base::{env, options};
use crate::workloads::{hammer as run, mix, Tally};

/// Two threads run the random workload seeded from `KL_SEED`; each prints its tally as
/// `@@ <debited> <topped> <key:charged,…|->`.
pub fn hammer() {
    let v = Arc::new(Vault::open_with(env("KL_PATH"), options()).unwrap());
    let seed: u64 = env("KL_SEED").parse().unwrap();
    let token = env("KL_TOKEN");
    let tallies: Vec<Tally> = (0..2u64)
        .map(|i| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || run(&v, &token, mix(seed * 7 + i), 120))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for t in tallies {
        let idem: Vec<String> = t.idem.iter().map(|(k, c)| format!("{k}:{c}")).collect();
        println!(
            "\n@@ {} {} {}",
            t.debited,
            t.topped,
            if idem.is_empty() {
                "-".into()
            } else {
                idem.join(",")
            }
        );
    }
}
