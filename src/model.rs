//! The public data types of the vault: what management calls return and what a grant holds.
//!
//! None of these types holds a secret or a secret hash. The one type that holds a secret,
//! [`SecretToken`], zeroizes it on drop and never prints it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// Unix time in milliseconds (UTC).
pub type Millis = i64;

/// An account (a customer or workspace) that owns keys and credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Host-chosen id, 1–128 bytes of UTF-8.
    pub id: String,
    /// Credits available now.
    pub credits: u64,
    /// Lifetime credits added (initial credits and top-ups).
    pub total_credits: u64,
    /// When the account was created.
    pub created_at: Millis,
    /// A JSON object (≤ 4 KiB serialized).
    pub metadata: Value,
    /// The account's refill plan, if any.
    pub refill: Option<Refill>,
}

/// How often a refill happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on `day` (1–28) of every month.
    Monthly,
}

/// A quota that refills: at the first call after each period boundary the account's
/// credits are *set* to `amount` (not added to), in that call's transaction, and audited as
/// `credits_refilled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refill {
    /// Credits after a refill.
    pub amount: u64,
    /// Daily or monthly.
    pub interval: RefillInterval,
    /// Day of the month (1–28) for monthly refills; 1 for daily ones.
    pub day: u8,
}

/// An account's credits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The account.
    pub account_id: String,
    /// The account's credits, including those reserved by active holds
    /// (`available + held`). Without holds, what a call can spend.
    pub credits: u64,
    /// Lifetime credits added.
    pub total_credits: u64,
    /// Credits reserved by active holds (released at settle, release or TTL).
    #[serde(default)]
    pub held: u64,
    /// Credits a debit or a new hold can take now (`credits - held`).
    #[serde(default)]
    pub available: u64,
}

/// The public view of a key. It never holds the secret or its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Public 8-character id, the "apiKeyPrefix" shown in dashboards and audit logs.
    pub key_id: String,
    /// The token prefix, e.g. `dial_live`; empty for a colon-style key.
    pub prefix: String,
    /// The token style: `prefixed` or `colon` (`<key_id>:<secret>`).
    #[serde(default)]
    pub style: crate::token::TokenStyle,
    /// The account the key belongs to.
    pub account_id: String,
    /// A human-readable name.
    pub name: String,
    /// Granted scopes, sorted.
    pub scopes: Vec<String>,
    /// Operator keys pass every scope and are never charged.
    pub operator: bool,
    /// Creation time.
    pub created_at: Millis,
    /// Expiry: the key is refused from this instant on.
    pub expires_at: Option<Millis>,
    /// Disabled keys are refused with `api_key_inactive` until enabled.
    pub disabled: bool,
    /// Revocation time; revoked keys are refused as `invalid_api_key` forever.
    pub revoked_at: Option<Millis>,
    /// Whether requests with this key must be signed.
    pub signing: bool,
    /// The key this one replaced by rotation, if any.
    pub rotated_from: Option<String>,
    /// A JSON object (≤ 4 KiB serialized).
    pub metadata: Value,
    /// Last successful authorization, as of the last usage flush (at most ~1 s behind).
    pub last_used_at: Option<Millis>,
}

/// How a grant was authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// An ordinary key, checked against scopes and charged.
    Apikey,
    /// An operator key: every scope, never charged, every use audited.
    Operator,
}

impl AuthMethod {
    /// `"apikey"` or `"operator"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Apikey => "apikey",
            AuthMethod::Operator => "operator",
        }
    }
}

/// The state of one rate limit applied to a granted call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitStatus {
    /// The limit's name.
    pub name: String,
    /// Calls allowed per window.
    pub max: u64,
    /// Calls left in the window after this one.
    pub remaining: u64,
    /// Unix milliseconds at which the window resets.
    pub reset_ms: Millis,
}

/// A successful authorization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The calling account.
    pub account_id: String,
    /// The key used.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// The key's prefix.
    pub prefix: String,
    /// `apikey` or `operator`.
    pub auth_method: AuthMethod,
    /// The key's scopes.
    pub scopes: Vec<String>,
    /// Credits debited by this call (0 for a replay or an operator).
    pub charged: u64,
    /// Credits left after the call.
    pub credits: u64,
    /// Lifetime credits of the account.
    pub total_credits: u64,
    /// True when this is the stored grant of an earlier call with the same idempotency key.
    pub replayed: bool,
    /// The rate limits applied to this call.
    pub ratelimits: Vec<RateLimitStatus>,
    /// The hold this call made (`AuthorizeOptions::hold`); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
}

/// What `whoami(token)` returns: who the token belongs to and what the account has left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The account.
    pub account_id: String,
    /// The key.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// `apikey` or `operator`.
    pub auth_method: AuthMethod,
    /// The key's scopes.
    pub scopes: Vec<String>,
    /// Credits available.
    pub credits: u64,
    /// Lifetime credits.
    pub total_credits: u64,
}

/// One entry of the append-only audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, strictly increasing, starting at 1.
    pub seq: u64,
    /// When it happened.
    pub time: Millis,
    /// What happened (`key_created`, `auth_refused`, …).
    pub action: String,
    /// The key concerned, if any.
    pub key_id: Option<String>,
    /// The account concerned, if any.
    pub account_id: Option<String>,
    /// Who made the change (`cli`, `dashboard`, or what the host set), if known.
    pub actor: Option<String>,
    /// Action-specific details (a JSON object).
    pub details: Value,
}

/// Usage of one key: totals and hourly buckets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The key.
    pub key_id: String,
    /// Last successful authorization.
    pub last_used_at: Option<Millis>,
    /// Successful authorizations, lifetime.
    pub granted: u64,
    /// Refused authorizations that got as far as identifying this key, lifetime.
    pub refused: u64,
    /// Successful authorizations per hour: (start of the hour, count), oldest first.
    pub hourly: Vec<(Millis, u64)>,
}

/// A freshly minted token: shown once, never stored, zeroized on drop, never printed by
/// `Debug`. Call [`SecretToken::expose`] to hand it to the user. A key created with
/// `signing` also carries its signing secret ([`SecretToken::signing_secret`]), shown once
/// as well.
#[derive(Clone)]
pub struct SecretToken {
    pub(crate) token: Zeroizing<String>,
    pub(crate) signing: Option<Zeroizing<String>>,
}

impl SecretToken {
    /// The token itself. Show it once; keyledger cannot show it again.
    pub fn expose(&self) -> &str {
        &self.token
    }

    /// The signing secret of a signing key (64 hex characters; its ASCII bytes are the
    /// HMAC key clients sign requests with), `None` for other keys. An admin can recover
    /// it later with `reveal_signing_secret` (audited).
    pub fn signing_secret(&self) -> Option<&str> {
        self.signing.as_deref().map(String::as_str)
    }
}

impl std::fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretToken({}", crate::token::redact(&self.token))?;
        if self.signing.is_some() {
            f.write_str(", signing secret: …")?;
        }
        f.write_str(")")
    }
}

/// What a new key should look like; the argument of [`crate::Vault::create_key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewKey {
    /// The owning account (must exist).
    pub account_id: String,
    /// A human-readable name, 1–128 bytes.
    pub name: String,
    /// Scopes to grant (each 1–64 chars of `[a-z0-9:._*-]`), at most 64 of them.
    pub scopes: Vec<String>,
    /// Token prefix; default `kl_live`. Ignored for a colon-style key.
    pub prefix: String,
    /// Token style: `<prefix>_<key_id>_<secret>` (default) or `<key_id>:<secret>`.
    pub style: crate::token::TokenStyle,
    /// Absolute expiry.
    pub expires_at: Option<Millis>,
    /// Relative expiry in milliseconds from now (exclusive with `expires_at`).
    pub expires_in_ms: Option<i64>,
    /// Operator key: every scope, never charged, audited.
    pub operator: bool,
    /// Require signed requests.
    pub signing: bool,
    /// A JSON object (≤ 4 KiB).
    pub metadata: Option<Value>,
}

impl NewKey {
    /// A key for `account_id` named `name` with `scopes`, prefix `kl_live`, no expiry.
    pub fn new<S: Into<String>>(
        account_id: impl Into<String>,
        name: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> NewKey {
        NewKey {
            account_id: account_id.into(),
            name: name.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            prefix: "kl_live".into(),
            style: crate::token::TokenStyle::Prefixed,
            expires_at: None,
            expires_in_ms: None,
            operator: false,
            signing: false,
            metadata: None,
        }
    }

    /// Set the token prefix (e.g. `dial_live`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Set the token style ([`crate::token::TokenStyle`]); a colon-style key has no
    /// prefix and no checksum.
    #[must_use]
    pub fn style(mut self, style: crate::token::TokenStyle) -> Self {
        self.style = style;
        self
    }

    /// Set an absolute expiry.
    #[must_use]
    pub fn expires_at(mut self, at: Millis) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Set a relative expiry.
    #[must_use]
    pub fn expires_in_ms(mut self, ms: i64) -> Self {
        self.expires_in_ms = Some(ms);
        self
    }

    /// Make it an operator key.
    #[must_use]
    pub fn operator(mut self, operator: bool) -> Self {
        self.operator = operator;
        self
    }

    /// Require signed requests (needs a vault opened with a master key).
    #[must_use]
    pub fn signing(mut self, signing: bool) -> Self {
        self.signing = signing;
        self
    }

    /// Attach metadata (a JSON object).
    #[must_use]
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

/// Filter for [`crate::Vault::audit`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries about this key.
    pub key_id: Option<String>,
    /// Only entries about this account.
    pub account_id: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<Millis>,
    /// At most this many entries (default 100, at most 10 000), newest first.
    pub limit: Option<usize>,
}

/// How this process validates its caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Generation slots in the shared-memory sidecar `<vault>.shm`: every process sees every
    /// other process's writes on its next call, without a redb transaction on the hot path.
    Shared,
    /// `exclusive` vault: one process, generation slots in process memory.
    Private,
    /// The sidecar could not be created: every call reads redb (slower, still correct).
    Disabled,
}

/// Counters of what this handle did; tests use them to prove the hot path stays hot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// argon2 verifications run by this process.
    pub argon2_runs: u64,
    /// Read transactions opened on the store.
    pub read_txns: u64,
    /// Write transactions committed.
    pub commits: u64,
    /// Secret checks answered without running argon2: a secret already proved wrong, or
    /// (`too_many_attempts`) a spent budget of failed verifications or a full argon2 queue.
    pub throttled: u64,
    /// Background flusher rounds that panicked (each was caught, and the flusher went on).
    pub flusher_panics: u64,
}
