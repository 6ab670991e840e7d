//! keyledger: an embedded API-key vault with credits.
//!
//! A host calls [`Vault::authorize`] on every request and gets, in microseconds, a
//! [`Grant`] or a typed refusal ([`Error`]) that already carries its HTTP status and JSON
//! body. Keys are hashed with argon2id, scopes and routes deny by default, credits are
//! debited atomically and durably, and every change is audited, all in one redb file that
//! every worker process of a server shares.
//!
//! ```
//! use keyledger::{AuthorizeOptions, NewKey, Target, Vault};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("keyledger.redb");
//! let vault = Vault::open(&path)?;
//! vault.create_account("acct_42", 100, None)?;
//! vault.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)?;
//! let (token, _info) = vault.create_key(
//!     NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"),
//! )?;
//! let send = Target::route("POST", "/api/v1/messaging/send");
//! let grant = vault.authorize(token.expose(), send, &AuthorizeOptions::default())?;
//! assert_eq!((grant.charged, grant.credits), (1, 99));
//!
//! // A refusal carries its HTTP status and JSON body.
//! let refused = vault.authorize("dial_live_nope", send, &AuthorizeOptions::default()).unwrap_err();
//! assert_eq!((refused.status(), refused.code()), (401, "invalid_api_key"));
//! # Ok(()) }
//! ```
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod audit;
mod batch;
mod cache;
mod clock;
mod credits;
mod crypto;
mod error;
mod error_code;
/// The C ABI (`include/keyledger.h`): `kl_` functions over [`Vault`]; see the module docs.
pub mod ffi;
mod files;
pub mod http;
mod idempotency;
// Per-key IP allow-lists: the address logic (networks, peers, trusted proxies), tested on its
// own; not stored or checked by `authorize` yet, so not public until it is.
#[allow(dead_code)]
mod ip_allow;
pub mod legacy;
mod limits;
mod model;
mod options;
pub mod policy;
#[cfg(feature = "python")]
mod python;
mod secrets;
pub(crate) mod shm;
mod store;
mod times;
pub mod token;
mod usage;
mod validate;
mod vault;
mod webhook;
// Events and usage reports.
pub mod events;

pub use crypto::{Argon2Params, ThrottleConfig};
/// Test hooks (storage that fails on demand, the record decoder for the fuzzer): not API.
#[doc(hidden)]
pub mod testing {
    #[cfg(feature = "fault-injection")]
    pub use crate::store::fault;
    pub use crate::store::fuzz_decode_records;
}
pub use error::{Error, Result};
pub use error_code::ErrorCode;
pub use limits::{LimitOwner, RateLimit};
pub use model::{
    Account, AuditEntry, AuditQuery, AuthMethod, Balance, CacheMode, Grant, KeyInfo, Millis,
    NewKey, RateLimitStatus, Refill, RefillInterval, SecretToken, Stats, Usage, WhoAmI,
};
pub use policy::RouteRule;
pub use secrets::{sign_request, MasterKey, DEFAULT_SIGNATURE_WINDOW_MS, MASTER_KEY_ENV};
pub use times::{MAX_TIME_MS, MIN_TIME_MS};
pub use token::{looks_like_key, redact, TokenStyle};
pub use vault::default_argon2_concurrency;
pub use vault::{
    system_now, AuthorizeOptions, Clock, Durability, OnReplay, Target, Vault, VaultOptions,
    IDEMPOTENCY_WINDOW_MS,
};
pub use vault::{Attempt, GrantView, WouldBlock};
// Importing keys from other services (drf-api-key, Unkey).
pub use vault::{ImportReport, ImportedAccount, ImportedKey, IMPORT_METADATA_KEY};
// Holds.
pub use vault::{Hold, HoldState, SettleOptions, DEFAULT_HOLD_TTL_MS, MAX_HOLD_TTL_MS};
pub use webhook::{sign_webhook, verify_webhook};

pub use store::migrate::{MigrateOptions, MigrateReport};

/// Copy a whole vault from `from` to `to`: each a vault file path or (cargo feature
/// `postgres`) a `postgresql://` URL. Every record is copied as stored (key hashes stay
/// hashes, signing secrets stay encrypted: no master key is needed), audit entries keep
/// their sequence numbers, and the settings (argon2 parameters, the master key's check)
/// come along; the destination keeps its own identity.
///
/// The destination must be empty (a new file, or a database without vault data): any
/// other is refused with `invalid_argument` and left unchanged. Everything is written in
/// one destination transaction, from one read snapshot of the source, so stop the source's
/// writers first (changes committed after the snapshot are not copied). With
/// `options.verify` (the default) the destination is read back and its row counts and
/// digest compared with the source's; a mismatch is a `storage` error.
pub fn migrate(from: &str, to: &str, options: &MigrateOptions) -> Result<MigrateReport> {
    store::migrate::migrate(from, to, options)
}
