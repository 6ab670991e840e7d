//! Credits: the debit request and its outcome (run in group-committed batches by the
//! vault), the idempotency window, and when an account's next refill is due.

use crate::limits;
use crate::model::{Grant, Millis};
use crate::store::{AccountRecord, IdempotencyScope};

/// Idempotency keys replay for this long.
pub const IDEMPOTENCY_WINDOW_MS: Millis = 24 * 3_600_000;

pub(crate) struct DebitReq {
    pub(crate) account_id: String,
    pub(crate) cost: u64,
    /// The idempotency key, the call it belongs to, and the request's fingerprint.
    pub(crate) idempotency: Option<(IdempotencyScope, String, [u8; 32])>,
    pub(crate) now: Millis,
    /// The grant to complete (authorize) — `None` for a management debit.
    pub(crate) grant: Option<Grant>,
    /// The matched route's label for usage reports (`None`: a management debit).
    pub(crate) route: Option<String>,
}

/// Result of one debit inside a batch.
pub(crate) struct Debited {
    pub(crate) charged: u64,
    pub(crate) credits: u64,
    pub(crate) total: u64,
    /// The first call's grant and time, for a replay.
    pub(crate) replayed: Option<(Grant, Millis)>,
}

/// When the next refill of an account is due (`None`: no refill plan).
pub(crate) fn next_refill(rec: &AccountRecord) -> Option<Millis> {
    let refill = rec.refill.as_ref()?;
    Some(match rec.refilled_at {
        // Not representable: never due.
        Some(start) => limits::calendar::next_period(refill, start).unwrap_or(Millis::MAX),
        None => Millis::MIN,
    })
}
