//! The management API and the token helpers. Records and listings come back as
//! JSON documents the caller frees with `kl_string_free`; new tokens come back as strings
//! the caller frees with `kl_secret_free`.
//!
//! One file per concept: `accounts`, `keys`, `routes`, `audit`, `tokens` (rate limits and
//! refills are in `ffi/limits.rs`). The order of the modules below is the order of the
//! functions in the generated header.

use std::ffi::c_char;

use serde::Deserialize;
use serde_json::Value;

use super::args::{self, parse_json, secret_c_string, Out};
use super::handle::kl_vault;
use super::panic::{boundary, guard, FfiResult};
use super::status::kl_status;
use crate::{AuditQuery, KeyInfo, Millis, NewKey, SecretToken};

// In header order (rustfmt keeps the order of modules separated by a blank line).
mod accounts;

mod keys;

mod routes;

mod audit;

mod tokens;

// Events and usage reports.
mod events;
// Holds.
mod holds;

pub use accounts::*;
pub use audit::*;
pub use events::*;
pub use keys::*;
pub use routes::*;
pub use tokens::*;
// Holds.
pub use holds::*;
