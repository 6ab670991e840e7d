//! The child-process entry points of the integration tests: one binary, run as
//! `keyledger-test-children <suite>::<entry>` with its inputs in `KL_*` environment
//! variables, playing another worker process on the same vault file.
//!
//! It is a `[[bin]]` target (Cargo.toml) with `required-features = ["insecure-fast-argon2"]`:
//! that feature is switched on only by the crate's own dev-dependency, so Cargo builds this
//! binary whenever it builds the integration tests (fresh, even for `--test one`), hands
//! them its path as `CARGO_BIN_EXE_keyledger-test-children`, and never builds or installs
//! it otherwise. Before, these entry points were `#[test]`s of each test binary re-running
//! itself, and they passed, doing nothing, in every normal run.
//!
//! With no argument it does nothing and exits 0. An unknown entry point is an error (exit
//! 2), so a parent test that names the wrong one fails. A failing child panics (exit 101);
//! the parent checks the exit status (`common::run_child`).

#[path = "../common/base.rs"]
mod base;
#[path = "../common/workloads.rs"]
mod workloads;

mod combining;
mod concurrency;
mod crash;
mod model;
mod postgres;
mod ratelimits;
mod security_sidecar;
mod signing;

type Entry = fn();

const ENTRIES: &[(&str, Entry)] = &[
    (
        "combining::debit_until_killed",
        combining::debit_until_killed,
    ),
    ("concurrency::spend", concurrency::spend),
    ("concurrency::change", concurrency::change),
    ("crash::worker", crash::worker),
    ("crash::server", crash::server),
    ("model::hammer", model::hammer),
    ("postgres::serve", postgres::serve),
    ("postgres::debit_until_killed", postgres::debit_until_killed),
    ("ratelimits::hammer", ratelimits::hammer),
    (
        "ratelimits::cross_the_boundary",
        ratelimits::cross_the_boundary,
    ),
    ("security_sidecar::revoke", security_sidecar::revoke),
    (
        "security_signing::replay_a_signature",
        signing::replay_a_signature,
    ),
    (
        "signing::open_with_the_master_key_from_the_environment",
        signing::open_with_the_master_key_from_the_environment,
    ),
];

fn main() {
    let Some(name) = std::env::args().nth(1) else {
        return;
    };
    match ENTRIES.iter().find(|(n, _)| *n == name) {
        Some((_, entry)) => entry(),
        None => {
            let known: Vec<&str> = ENTRIES.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "keyledger-test-children: unknown entry point {name:?}; known: {}",
                known.join(", ")
            );
            std::process::exit(2);
        }
    }
}
