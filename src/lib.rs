//! keyledger: an embedded API-key vault with credits.
//!
//! A host calls [`Vault::authorize`] on every request and gets, in microseconds, a
//! [`Grant`] or a typed refusal ([`Error`]) that already carries its HTTP status and JSON
//! body. Keys are hashed with argon2id, scopes and routes deny by default, credits are
//! debited atomically and durably, and every change is audited, all in one redb file that
//! every worker process of a server shares.
//!
//! ```no_run
//! use keyledger::{Vault, NewKey, Target, AuthorizeOptions};
//! # fn main() -> keyledger::Result<()> {
//! let vault = Vault::open("keyledger.redb")?;
//! vault.create_account("acct_42", 100, None)?;
//! vault.add_route("POST", "/api/v1/messaging/send", "sms:send", 1)?;
//! let (token, _info) = vault.create_key(NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"))?;
//! let grant = vault.authorize(token.expose(), Target::route("POST", "/api/v1/messaging/send"), &AuthorizeOptions::default())?;
//! assert_eq!(grant.credits, 99);
//! # Ok(()) }
//! ```
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod batch;
mod cache;
mod crypto;
mod error;
mod model;
pub mod policy;
pub(crate) mod shm;
mod store;
pub mod token;
mod usage;
mod vault;

pub use crypto::{Argon2Params, ThrottleConfig};
pub use error::{Error, Result};
pub use model::{
    Account, AuditEntry, AuditQuery, AuthMethod, Balance, CacheMode, Grant, KeyInfo, Millis,
    NewKey, RateLimitStatus, SecretToken, Stats, Usage, WhoAmI,
};
pub use policy::RouteRule;
pub use token::{looks_like_key, redact};
pub use vault::{
    system_now, AuthorizeOptions, Clock, Durability, Target, Vault, VaultOptions,
    IDEMPOTENCY_WINDOW_MS,
};
