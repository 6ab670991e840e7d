//! Every record the vault stores, and its versioned encoding.
//!
//! Records are encoded here and nowhere else, so every backend stores the same bytes:
//! - accounts, keys and audit entries: a version byte ([`RECORD_VERSION`]) followed by
//!   the postcard encoding of the `*Record` struct;
//! - idempotency outcomes: see [`IdempotencyRecord`] (a 4-byte magic carries the version).
//!
//! A record type is never an API type: [`GrantRecord`] mirrors the public
//! [`Grant`](crate::Grant) field by field, so adding a field to `Grant` cannot change
//! (and so cannot break) the stored outcomes of earlier calls. A change to a record's
//! layout is a new version, and the decoder keeps reading the old ones.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{AuthMethod, Grant, Millis, RateLimitStatus};

/// The on-disk format version, stored under the `format` meta entry.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// The version byte in front of account, key and audit records.
pub(crate) const RECORD_VERSION: u8 = 1;

/// A stored account (its balance lives in its own fixed-width table).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AccountRecord {
    pub created_at: Millis,
    /// Serialized JSON object.
    pub metadata: String,
    /// Credits set back to an amount each period.
    pub refill: Option<crate::model::Refill>,
    /// Start of the last period whose refill was applied.
    pub refilled_at: Option<Millis>,
}

/// A stored key. Holds the argon2 hash: never printed (Debug is hand-written).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct KeyRecord {
    pub key_id: String,
    pub prefix: String,
    pub account_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub operator: bool,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub disabled: bool,
    pub revoked_at: Option<Millis>,
    pub secret_hash: String,
    /// Encrypted signing secret, for request signing.
    pub signing_secret: Option<Vec<u8>>,
    pub rotated_from: Option<String>,
    /// Serialized JSON object.
    pub metadata: String,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("key_id", &self.key_id)
            .field("prefix", &self.prefix)
            .field("account_id", &self.account_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("operator", &self.operator)
            .field("expires_at", &self.expires_at)
            .field("disabled", &self.disabled)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// A stored audit entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct AuditRecord {
    pub time: Millis,
    pub action: String,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    pub actor: Option<String>,
    /// Serialized JSON object.
    pub details: String,
}

/// Encode an account, key or audit record (version byte + postcard).
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![RECORD_VERSION];
    let body = postcard::to_allocvec(value).map_err(Error::storage)?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode an account, key or audit record; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|_| Error::Storage(format!("corrupt {what} record")))
        }
        _ => Err(Error::Storage(format!(
            "{what} record has an unknown format version"
        ))),
    }
}

/// Decode one stored record of each kind from raw bytes, for the fuzzer: corrupt bytes must
/// give a `storage` error, never a panic. Returns which decodes succeeded.
#[doc(hidden)]
pub fn fuzz_decode_records(bytes: &[u8]) -> [bool; 4] {
    [
        decode::<AccountRecord>(bytes, "account").is_ok(),
        decode::<KeyRecord>(bytes, "key").is_ok(),
        decode::<AuditRecord>(bytes, "audit").is_ok(),
        IdempotencyRecord::decode(bytes).is_ok(),
    ]
}

// ----------------------------------------------------------------- idempotency outcomes

/// Prefix of a version-2 idempotency record. Version 1 (before fingerprints) is the bare
/// postcard encoding of `{charged, credits, total, grant}` and never starts with it: three
/// one-byte varints and then an `Option` tag, which is 0 or 1, whereas the magic's fourth
/// byte is 2.
const IDEMPOTENCY_MAGIC_V2: [u8; 4] = *b"KLi\x02";

/// What an authorization or a management debit stored under its idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    /// The fingerprint of the request it answered; `None` for a version-1 record (which
    /// cannot prove that a reuse is the same request).
    pub fingerprint: Option<[u8; 32]>,
    /// Credits the original call was charged.
    pub charged: u64,
    pub credits: u64,
    pub total: u64,
    /// The original grant (authorize); `None` for a management debit.
    pub grant: Option<GrantRecord>,
}

/// A stored grant: the fields of [`Grant`] as they were when outcomes were first stored,
/// in that order (the encoding of version 1 and 2 records). A field added to `Grant` later
/// is not stored here; to store it, add a record version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GrantRecord {
    pub account_id: String,
    pub key_id: String,
    pub key_name: String,
    pub prefix: String,
    pub auth_method: AuthMethodRecord,
    pub scopes: Vec<String>,
    pub charged: u64,
    pub credits: u64,
    pub total_credits: u64,
    pub replayed: bool,
    pub ratelimits: Vec<RateLimitRecord>,
}

/// A stored [`AuthMethod`] (variant order is the encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AuthMethodRecord {
    Apikey,
    Operator,
}

/// A stored [`RateLimitStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateLimitRecord {
    pub name: String,
    pub max: u64,
    pub remaining: u64,
    pub reset_ms: Millis,
}

impl From<&Grant> for GrantRecord {
    fn from(g: &Grant) -> Self {
        GrantRecord {
            account_id: g.account_id.clone(),
            key_id: g.key_id.clone(),
            key_name: g.key_name.clone(),
            prefix: g.prefix.clone(),
            auth_method: match g.auth_method {
                AuthMethod::Apikey => AuthMethodRecord::Apikey,
                AuthMethod::Operator => AuthMethodRecord::Operator,
            },
            scopes: g.scopes.clone(),
            charged: g.charged,
            credits: g.credits,
            total_credits: g.total_credits,
            replayed: g.replayed,
            ratelimits: g
                .ratelimits
                .iter()
                .map(|r| RateLimitRecord {
                    name: r.name.clone(),
                    max: r.max,
                    remaining: r.remaining,
                    reset_ms: r.reset_ms,
                })
                .collect(),
        }
    }
}

impl From<GrantRecord> for Grant {
    fn from(g: GrantRecord) -> Self {
        Grant {
            account_id: g.account_id,
            key_id: g.key_id,
            key_name: g.key_name,
            prefix: g.prefix,
            auth_method: match g.auth_method {
                AuthMethodRecord::Apikey => AuthMethod::Apikey,
                AuthMethodRecord::Operator => AuthMethod::Operator,
            },
            scopes: g.scopes,
            charged: g.charged,
            credits: g.credits,
            total_credits: g.total_credits,
            replayed: g.replayed,
            ratelimits: g
                .ratelimits
                .into_iter()
                .map(|r| RateLimitStatus {
                    name: r.name,
                    max: r.max,
                    remaining: r.remaining,
                    reset_ms: r.reset_ms,
                })
                .collect(),
            hold_id: None,
        }
    }
}

/// Version 2 on disk (after the magic).
#[derive(Serialize, Deserialize)]
struct IdempotencyV2 {
    fingerprint: [u8; 32],
    charged: u64,
    credits: u64,
    total: u64,
    grant: Option<GrantRecord>,
}

/// Version 1 on disk: no fingerprint, no magic.
#[derive(Deserialize)]
struct IdempotencyV1 {
    charged: u64,
    credits: u64,
    total: u64,
    grant: Option<GrantRecord>,
}

impl IdempotencyRecord {
    /// Encode as the current version (2). A record without a fingerprint is never
    /// written (only read from version 1).
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let fingerprint = self
            .fingerprint
            .ok_or_else(|| Error::Storage("an idempotency record needs a fingerprint".into()))?;
        let mut out = IDEMPOTENCY_MAGIC_V2.to_vec();
        let body = postcard::to_allocvec(&IdempotencyV2 {
            fingerprint,
            charged: self.charged,
            credits: self.credits,
            total: self.total,
            grant: self.grant.clone(),
        })
        .map_err(Error::storage)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decode a record of either version.
    pub(crate) fn decode(bytes: &[u8]) -> Result<IdempotencyRecord> {
        let corrupt = || Error::Storage("corrupt idempotency record".into());
        if let Some(body) = bytes.strip_prefix(&IDEMPOTENCY_MAGIC_V2[..]) {
            let v: IdempotencyV2 = postcard::from_bytes(body).map_err(|_| corrupt())?;
            return Ok(IdempotencyRecord {
                fingerprint: Some(v.fingerprint),
                charged: v.charged,
                credits: v.credits,
                total: v.total,
                grant: v.grant,
            });
        }
        let v: IdempotencyV1 = postcard::from_bytes(bytes).map_err(|_| corrupt())?;
        Ok(IdempotencyRecord {
            fingerprint: None,
            charged: v.charged,
            credits: v.credits,
            total: v.total,
            grant: v.grant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            account_id: "acct_42".into(),
            key_id: "k7p2m9qa".into(),
            key_name: "server".into(),
            prefix: "dial_live".into(),
            auth_method: AuthMethod::Operator,
            scopes: vec!["sms:send".into(), "numbers:*".into()],
            charged: 3,
            credits: 97,
            total_credits: 100,
            replayed: false,
            ratelimits: vec![RateLimitStatus {
                name: "per_minute".into(),
                max: 60,
                remaining: 59,
                reset_ms: 1_700_000_060_000,
            }],
            hold_id: None,
        }
    }

    /// Outcomes stored before this module existed were the postcard encoding of the
    /// public `Grant` itself: they must decode to the same grant through `GrantRecord`.
    #[test]
    fn outcomes_stored_with_the_public_grant_type_still_decode() {
        #[derive(Serialize)]
        struct OldV2 {
            fingerprint: [u8; 32],
            charged: u64,
            credits: u64,
            total: u64,
            grant: Option<Grant>,
        }
        #[derive(Serialize)]
        struct OldV1 {
            charged: u64,
            credits: u64,
            total: u64,
            grant: Option<Grant>,
        }
        let mut old = IDEMPOTENCY_MAGIC_V2.to_vec();
        old.extend(
            postcard::to_allocvec(&OldV2 {
                fingerprint: [9; 32],
                charged: 3,
                credits: 97,
                total: 100,
                grant: Some(grant()),
            })
            .unwrap(),
        );
        let d = IdempotencyRecord::decode(&old).unwrap();
        assert_eq!(d.fingerprint, Some([9; 32]));
        assert_eq!(Grant::from(d.grant.clone().unwrap()), grant());
        // And the current encoder writes exactly those bytes.
        assert_eq!(d.encode().unwrap(), old);

        let v1 = postcard::to_allocvec(&OldV1 {
            charged: 3,
            credits: 97,
            total: 100,
            grant: Some(grant()),
        })
        .unwrap();
        let d = IdempotencyRecord::decode(&v1).unwrap();
        assert_eq!(d.fingerprint, None);
        assert_eq!(Grant::from(d.grant.unwrap()), grant());
    }

    #[test]
    fn version_one_outcomes_stay_readable_without_a_fingerprint() {
        #[derive(Serialize)]
        struct V1 {
            charged: u64,
            credits: u64,
            total: u64,
            grant: Option<Grant>,
        }
        // Values whose varints are the bytes of the magic's first three.
        for (charged, credits, total) in [(75, 76, 105), (0, 0, 0), (300, 1 << 40, u64::MAX)] {
            let old = postcard::to_allocvec(&V1 {
                charged,
                credits,
                total,
                grant: None,
            })
            .unwrap();
            let d = IdempotencyRecord::decode(&old).unwrap();
            assert!(d.fingerprint.is_none());
            assert_eq!((d.charged, d.credits, d.total), (charged, credits, total));
        }
        let new = IdempotencyRecord {
            fingerprint: Some([7; 32]),
            charged: 3,
            credits: 4,
            total: 5,
            grant: None,
        }
        .encode()
        .unwrap();
        let d = IdempotencyRecord::decode(&new).unwrap();
        assert_eq!(d.fingerprint, Some([7; 32]));
        assert_eq!((d.charged, d.credits, d.total), (3, 4, 5));
    }

    #[test]
    fn a_corrupt_record_is_a_storage_error() {
        for bytes in [&b""[..], b"KLi\x02\xff", b"\x02\x00\x00\x07"] {
            assert_eq!(
                IdempotencyRecord::decode(bytes).unwrap_err().code(),
                "storage"
            );
        }
        assert!(decode::<KeyRecord>(b"\x09abc", "key").is_err());
    }
}
