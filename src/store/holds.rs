//! The stored hold: credits reserved on an account until settled, released or expired.
//!
//! A hold's amount leaves the account's stored balance when it is made (so every debit
//! check sees it without knowing about holds) and is accounted for in the hold record
//! while the hold is active. A backend keeps, besides the record, two indexes of the
//! active holds only: by account (the balance's `held`) and by expiry time (the
//! maintenance that releases expired holds). Finished records stay, so a repeated call
//! gets the recorded outcome.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::Millis;

use super::records::{decode, encode};

/// What became of a hold.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) enum HoldStateRecord {
    Active,
    /// Charged `charged` credits and gave the rest back.
    Settled {
        charged: u64,
        at: Millis,
    },
    /// Gave every credit back, by a call (`expired` false) or at its TTL.
    Released {
        at: Millis,
        expired: bool,
    },
}

/// A stored hold (version byte + postcard, like accounts and keys).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HoldRecord {
    pub id: String,
    pub account_id: String,
    /// The key whose `authorize` made it, if one did.
    pub key_id: Option<String>,
    pub amount: u64,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub state: HoldStateRecord,
    /// The idempotency key the hold was made with (its id derives from it).
    pub idempotency_key: Option<String>,
    /// The idempotency key of the settle that finished it.
    pub settle_key: Option<String>,
    /// Whether the settle was allowed to charge more than `amount`.
    pub settle_over: bool,
}

impl HoldRecord {
    pub(crate) fn active(&self) -> bool {
        self.state == HoldStateRecord::Active
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        encode(self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<HoldRecord> {
        decode(bytes, "hold")
    }
}
