//! keyledger: an embedded API-key vault with credits.
#![forbid(unsafe_op_in_unsafe_fn)]

mod error;
pub mod policy;
pub mod token;

pub use error::{Error, Result};
