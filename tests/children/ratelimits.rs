//! Workers of tests/ratelimits.rs.

use std::sync::Arc;

use keyledger::{AuthorizeOptions, Target, Vault};

use crate::base::{env, options, T0};

const X: Target<'static> = Target::Scope("x");

fn at_t0() -> AuthorizeOptions<'static> {
    AuthorizeOptions {
        now: Some(T0),
        ..AuthorizeOptions::default()
    }
}

/// Four threads make 60 calls each at the instant T0; prints `GRANTED=<n>`.
pub fn hammer() {
    let v = Arc::new(Vault::open_with(env("KL_PATH"), options()).unwrap());
    let token = env("KL_TOKEN");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            std::thread::spawn(move || {
                (0..60)
                    .filter(|_| v.authorize(&token, X, &at_t0()).is_ok())
                    .count()
            })
        })
        .collect();
    let n: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("GRANTED={n}");
}

/// One call costing 1 at `KL_NOW`; prints `CREDITS=<n>`.
pub fn cross_the_boundary() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    let now: i64 = env("KL_NOW").parse().unwrap();
    let g = v
        .authorize(
            &env("KL_TOKEN"),
            X,
            &AuthorizeOptions {
                cost: Some(1),
                now: Some(now),
                ..AuthorizeOptions::default()
            },
        )
        .unwrap();
    println!("CREDITS={}", g.credits);
}
