//! keyledger: an embedded API-key vault with credits.
#![forbid(unsafe_op_in_unsafe_fn)]

mod error;
pub(crate) mod shm;

pub use error::{Error, Result};
