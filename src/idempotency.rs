//! Idempotency records: what an authorization or a management debit stored under its
//! idempotency key, and the fingerprint of the request it answered.
//!
//! A key is reused within its window either for the same request (a retry: the stored
//! outcome is replayed) or for another one (a client bug or an attack: refused with
//! `idempotency_conflict`, nothing charged). The fingerprint decides which: an unkeyed
//! BLAKE3 hash over the account, what the call matched (the route rule's method and
//! pattern, the scope, or a management debit), the cost and the limit cost.
//!
//! # Encoding
//! Version 2 (this one): the 4 bytes [`MAGIC`], then the postcard encoding of
//! [`StoredV2`]. Version 1 (before fingerprints) is the bare postcard encoding of
//! `{charged, credits, total, grant: Option<Grant>}`; it never starts with `MAGIC`:
//! three one-byte varints and then an `Option` tag, which is 0 or 1, whereas `MAGIC`'s
//! fourth byte is 2. A version-1 record carries no fingerprint, so nothing proves that a
//! reuse is the same request: it is answered as a conflict (safe: nothing is charged and
//! nothing is replayed; such records are at most 24 h old after an upgrade).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::Grant;

/// Prefix of a version-2 record (see the module docs for why it cannot start a v1 one).
const MAGIC: [u8; 4] = *b"KLi\x02";

/// What a call matched, for the fingerprint.
pub(crate) enum Matched<'a> {
    /// A route rule: its method and canonical pattern.
    Rule { method: &'a str, pattern: &'a str },
    /// A scope call.
    Scope(&'a str),
    /// A management debit (`Vault::debit`).
    Debit,
}

/// The fingerprint of a request: equal for a retry, different for any other request.
pub(crate) fn fingerprint(
    account: &str,
    matched: &Matched<'_>,
    cost: u64,
    limit_cost: u64,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"keyledger idempotency fingerprint v2\0");
    // Every string is length-prefixed, so no two field lists encode alike.
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(account.as_bytes());
    match matched {
        Matched::Rule { method, pattern } => {
            field(b"rule");
            field(method.as_bytes());
            field(pattern.as_bytes());
        }
        Matched::Scope(s) => {
            field(b"scope");
            field(s.as_bytes());
        }
        Matched::Debit => field(b"debit"),
    }
    field(&cost.to_le_bytes());
    field(&limit_cost.to_le_bytes());
    *h.finalize().as_bytes()
}

/// A stored outcome, version 2.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredV2 {
    pub fingerprint: [u8; 32],
    /// Credits the original call was charged.
    pub charged: u64,
    pub credits: u64,
    pub total: u64,
    /// The original grant (authorize); `None` for a management debit.
    pub grant: Option<Grant>,
}

/// Version 1, still readable: no fingerprint.
#[derive(Deserialize)]
struct StoredV1 {
    charged: u64,
    credits: u64,
    total: u64,
    grant: Option<Grant>,
}

/// A decoded record of either version.
pub(crate) struct Stored {
    /// `None` for a version-1 record.
    pub fingerprint: Option<[u8; 32]>,
    pub charged: u64,
    pub credits: u64,
    pub total: u64,
    pub grant: Option<Grant>,
}

impl StoredV2 {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        let body = postcard::to_allocvec(self).map_err(Error::storage)?;
        out.extend_from_slice(&body);
        Ok(out)
    }
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Stored> {
    let corrupt = || Error::Storage("corrupt idempotency record".into());
    if let Some(body) = bytes.strip_prefix(&MAGIC[..]) {
        let v: StoredV2 = postcard::from_bytes(body).map_err(|_| corrupt())?;
        return Ok(Stored {
            fingerprint: Some(v.fingerprint),
            charged: v.charged,
            credits: v.credits,
            total: v.total,
            grant: v.grant,
        });
    }
    let v: StoredV1 = postcard::from_bytes(bytes).map_err(|_| corrupt())?;
    Ok(Stored {
        fingerprint: None,
        charged: v.charged,
        credits: v.credits,
        total: v.total,
        grant: v.grant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct V1 {
        charged: u64,
        credits: u64,
        total: u64,
        grant: Option<Grant>,
    }

    #[test]
    fn version_one_records_stay_readable_without_a_fingerprint() {
        // Values whose varints are the bytes of MAGIC's first three.
        for (charged, credits, total) in [(75, 76, 105), (0, 0, 0), (300, 1 << 40, u64::MAX)] {
            let old = postcard::to_allocvec(&V1 {
                charged,
                credits,
                total,
                grant: None,
            })
            .unwrap();
            let d = decode(&old).unwrap();
            assert!(d.fingerprint.is_none());
            assert_eq!((d.charged, d.credits, d.total), (charged, credits, total));
        }
        let new = StoredV2 {
            fingerprint: [7; 32],
            charged: 3,
            credits: 4,
            total: 5,
            grant: None,
        }
        .encode()
        .unwrap();
        let d = decode(&new).unwrap();
        assert_eq!(d.fingerprint, Some([7; 32]));
        assert_eq!((d.charged, d.credits, d.total), (3, 4, 5));
    }

    #[test]
    fn fingerprints_differ_by_every_field() {
        let rule = Matched::Rule {
            method: "POST",
            pattern: "/send",
        };
        let base = fingerprint("a", &rule, 1, 1);
        assert_eq!(base, fingerprint("a", &rule, 1, 1));
        assert_ne!(base, fingerprint("b", &rule, 1, 1));
        assert_ne!(base, fingerprint("a", &rule, 2, 1));
        assert_ne!(base, fingerprint("a", &rule, 1, 2));
        let other = Matched::Rule {
            method: "POST",
            pattern: "/sen",
        };
        assert_ne!(base, fingerprint("a", &other, 1, 1));
        assert_ne!(base, fingerprint("a", &Matched::Scope("/send"), 1, 1));
        assert_ne!(base, fingerprint("a", &Matched::Debit, 1, 1));
    }
}
