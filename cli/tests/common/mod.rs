//! The root suites' test helpers (`tests/common/base.rs`: a pinned clock, the test vault
//! options with cheap argon2, the seed route rules, skips that fail in CI), shared with the
//! CLI's tests.
#![allow(dead_code)]

#[path = "../../../tests/common/base.rs"]
mod base;

pub use base::*;

/// A throwaway database per test on the cluster of `KEYLEDGER_TEST_PG`.
#[cfg(feature = "postgres")]
#[path = "../../../tests/common/pg.rs"]
pub mod pg;
