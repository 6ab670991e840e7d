//! Holds: credits reserved now and charged later, when the cost is known.
//!
//! `hold(account, amount, ttl)` (or `authorize` with `AuthorizeOptions::hold`) takes
//! `amount` out of the account's spendable credits in one write transaction and records
//! the hold. `settle(hold_id, actual)` charges `actual` and gives the rest back;
//! `release(hold_id)` gives everything back; a hold neither settled nor released by its
//! `expires_at` is released by whichever comes first: the background maintenance of any
//! process (every flush interval), the next `balance`, `hold`, `settle` or `release` call
//! on its account, or a debit refused for want of credits on its account.
//!
//! Exactly once: every state change re-reads the hold inside the write transaction that
//! changes it, and only an active hold moves credits. Write transactions are serialized
//! across every process (redb's file lock; PostgreSQL's writers' lock), so two processes
//! expiring, settling or releasing the same hold cannot both move its credits, and a crash
//! before a commit leaves the hold as it was.
//!
//! Balances: the stored balance is what can be spent (`available`); `held` is the sum of
//! the active holds; `credits` is their sum. Refills set the spendable credits to the
//! plan's amount and leave active holds as they are.

use sha2::{Digest, Sha256};

use super::{
    json, AuditAction, AuthorizeOptions, Balance, Error, Grant, HoldRecord, Inner, KeyRecord,
    Millis, Result, Target, Vault, WriteTx,
};
use crate::store::HoldStateRecord;
use crate::validate::{validate_id, validate_idempotency_key};

/// The TTL of a hold made by `authorize` without `hold_ttl_ms`: 15 minutes.
pub const DEFAULT_HOLD_TTL_MS: u64 = 15 * 60 * 1000;
/// The longest TTL a hold may have: 30 days.
pub const MAX_HOLD_TTL_MS: u64 = 30 * 24 * 3_600_000;
/// Expired holds released per account check, and per maintenance transaction.
const EXPIRE_BATCH: usize = 256;

/// What became of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Its credits are reserved.
    Active,
    /// Settled: `charged` credits taken, the rest given back.
    Settled,
    /// Released by a call: every credit given back.
    Released,
    /// Reached its TTL unsettled: every credit given back.
    Expired,
}

impl HoldState {
    /// `active`, `settled`, `released` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Active => "active",
            HoldState::Settled => "settled",
            HoldState::Released => "released",
            HoldState::Expired => "expired",
        }
    }
}

/// A hold, as returned by [`Vault::hold`], [`Vault::settle`], [`Vault::release`] and
/// [`Vault::holds`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    /// The hold's id (`hold_` and 24 hex digits).
    pub hold_id: String,
    /// The account whose credits it reserves.
    pub account_id: String,
    /// The key whose `authorize` made it, if one did.
    pub key_id: Option<String>,
    /// Credits reserved.
    pub amount: u64,
    /// Credits charged by its settle (0 unless settled).
    pub charged: u64,
    /// What became of it.
    pub state: HoldState,
    /// When it was made (unix ms).
    pub created_at: Millis,
    /// When it expires if not settled or released (unix ms).
    pub expires_at: Millis,
    /// When it was settled, released or expired (unix ms).
    pub finished_at: Option<Millis>,
    /// True when this answer is the recorded outcome of an earlier, identical call
    /// (nothing moved this time).
    pub replayed: bool,
}

impl Hold {
    fn from_record(rec: &HoldRecord, replayed: bool) -> Hold {
        let (state, charged, finished_at) = match rec.state {
            HoldStateRecord::Active => (HoldState::Active, 0, None),
            HoldStateRecord::Settled { charged, at } => (HoldState::Settled, charged, Some(at)),
            HoldStateRecord::Released { at, expired } => (
                if expired {
                    HoldState::Expired
                } else {
                    HoldState::Released
                },
                0,
                Some(at),
            ),
        };
        Hold {
            hold_id: rec.id.clone(),
            account_id: rec.account_id.clone(),
            key_id: rec.key_id.clone(),
            amount: rec.amount,
            charged,
            state,
            created_at: rec.created_at,
            expires_at: rec.expires_at,
            finished_at,
            replayed,
        }
    }
}

/// Options of [`Vault::settle`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SettleOptions<'a> {
    /// Allow `actual` above the hold's amount: the excess is debited from the account's
    /// available credits (refused with `insufficient_credits`, changing nothing, when
    /// they are short).
    pub allow_over: bool,
    /// At most 255 bytes. A repeat of the settle with the same key and amount answers
    /// the recorded outcome; with another amount it is `idempotency_conflict`.
    pub idempotency_key: Option<&'a str>,
}

/// The id of a hold made with an idempotency key: the same account and key always name
/// the same hold, so a repeat finds it. Random otherwise.
fn hold_id(account: &str, idempotency_key: Option<&str>) -> Result<String> {
    let bytes: [u8; 12] = match idempotency_key {
        Some(k) => {
            let mut h = Sha256::new();
            h.update(b"keyledger hold\0");
            h.update(account.as_bytes());
            h.update(b"\0");
            h.update(k.as_bytes());
            let d = h.finalize();
            let mut out = [0u8; 12];
            out.copy_from_slice(&d[..12]);
            out
        }
        None => {
            let mut out = [0u8; 12];
            getrandom::fill(&mut out).map_err(Error::storage)?;
            out
        }
    };
    Ok(format!(
        "hold_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// A hold id as given by a caller: `hold_` and 24 lowercase hex digits.
fn validate_hold_id(id: &str) -> Result<()> {
    let ok = id.len() == 29
        && id.starts_with("hold_")
        && id[5..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "hold_id must be \"hold_\" followed by 24 lowercase hex digits",
        ))
    }
}

pub(crate) fn validate_hold_args(amount: u64, ttl_ms: u64) -> Result<()> {
    if amount == 0 {
        return Err(Error::invalid("hold amount must be positive"));
    }
    if ttl_ms == 0 || ttl_ms > MAX_HOLD_TTL_MS {
        return Err(Error::invalid(
            "hold ttl must be between 1 ms and 30 days (2592000000 ms)",
        ));
    }
    Ok(())
}

/// How a hold ends.
#[derive(Clone, Copy)]
enum End {
    Settle(u64),
    Release,
    Expire,
}

/// What a new hold is made from.
pub(super) struct NewHold<'a> {
    pub(super) account: &'a str,
    pub(super) key_id: Option<&'a str>,
    pub(super) amount: u64,
    pub(super) ttl_ms: u64,
    pub(super) idempotency_key: Option<&'a str>,
    pub(super) now: Millis,
}

impl Vault {
    /// Reserve `amount` (> 0) credits of `account` for `ttl_ms` (1 ms – 30 days): they
    /// leave its available credits now and come back at [`Vault::release`], at the TTL,
    /// or, less the charge, at [`Vault::settle`]. Refused with `insufficient_credits`
    /// (402, nothing reserved) when fewer are available. Audited as `hold_created`.
    ///
    /// With an `idempotency_key` (≤ 255 bytes, per account), a repeat with the same
    /// amount and TTL answers the same hold (marked `replayed`, whatever its state now);
    /// with other values it is `idempotency_conflict`. The key is remembered as long as
    /// the hold's record.
    pub fn hold(
        &self,
        account: &str,
        amount: u64,
        ttl_ms: u64,
        idempotency_key: Option<&str>,
    ) -> Result<Hold> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account, "account id")?;
        validate_hold_args(amount, ttl_ms)?;
        if let Some(k) = idempotency_key {
            validate_idempotency_key(k)?;
        }
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            inner.create_hold(
                tx,
                &NewHold {
                    account,
                    key_id: None,
                    amount,
                    ttl_ms,
                    idempotency_key,
                    now,
                },
            )
        })
    }

    /// Settle a hold: charge `actual` credits and give the rest of the hold back, in one
    /// transaction, audited as `hold_settled`. `actual` above the hold's amount needs
    /// [`SettleOptions::allow_over`] (else `invalid_argument`); the excess then comes from
    /// the account's available credits (`insufficient_credits` when short).
    ///
    /// A second settle of a settled hold with the same `actual` (and, if the first gave
    /// one, the same idempotency key) answers the recorded outcome, marked `replayed`,
    /// moving nothing; any other settle of a finished hold (another amount, or a hold
    /// released or expired) is `hold_settled` (409). An unknown id is `hold_not_found`.
    pub fn settle(&self, hold_id: &str, actual: u64, options: &SettleOptions<'_>) -> Result<Hold> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_hold_id(hold_id)?;
        if let Some(k) = options.idempotency_key {
            validate_idempotency_key(k)?;
        }
        let now = (inner.settings.clock)();
        inner.write(|tx| inner.settle_hold(tx, hold_id, actual, options, now))
    }

    /// Release a hold: every credit goes back to the account, audited as `hold_released`.
    /// Releasing a hold that is already released or expired answers its record (marked
    /// `replayed`, nothing moves); a settled hold is `hold_settled`; an unknown id is
    /// `hold_not_found`.
    pub fn release(&self, hold_id: &str) -> Result<Hold> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_hold_id(hold_id)?;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let rec = inner.current_hold(tx, hold_id, now)?;
            match rec.state {
                HoldStateRecord::Active => {
                    let rec = inner.finish_hold(tx, rec, End::Release, now)?;
                    Ok(Hold::from_record(&rec, false))
                }
                HoldStateRecord::Released { .. } => Ok(Hold::from_record(&rec, true)),
                HoldStateRecord::Settled { charged, .. } => Err(Error::HoldSettled(format!(
                    "hold {hold_id:?} was already settled for {charged} credits"
                ))),
            }
        })
    }

    /// One hold by id, in whatever state (an expired one is released first).
    pub fn get_hold(&self, hold_id: &str) -> Result<Hold> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_hold_id(hold_id)?;
        let now = (inner.settings.clock)();
        let rec = inner
            .read()?
            .hold(hold_id)?
            .ok_or_else(|| Error::HoldNotFound(hold_id.to_string()))?;
        if rec.active() && rec.expires_at <= now {
            inner.expire_holds_of(&rec.account_id, now)?;
            return self.get_hold(hold_id);
        }
        Ok(Hold::from_record(&rec, false))
    }

    /// The active holds of `account` (or of every account), ordered by account and id.
    /// Holds past their TTL are released first.
    pub fn holds(&self, account: Option<&str>) -> Result<Vec<Hold>> {
        let inner = &*self.inner;
        inner.check_open()?;
        if let Some(a) = account {
            validate_id(a, "account id")?;
        }
        let now = (inner.settings.clock)();
        match account {
            Some(a) => inner.expire_holds_of(a, now)?,
            None => while inner.expire_due_holds(now)? == EXPIRE_BATCH {},
        }
        Ok(inner
            .read()?
            .active_holds(account)?
            .iter()
            .map(|r| Hold::from_record(r, false))
            .collect())
    }
}

impl Inner {
    /// The credits step of `authorize` with `hold`: make the hold in its own transaction
    /// and complete the grant with its id and the credits left available. A refusal
    /// (`insufficient_credits`, `idempotency_conflict`) is audited like a debit's.
    pub(super) fn authorize_hold(
        &self,
        rec: &KeyRecord,
        mut grant: Grant,
        amount: u64,
        options: &AuthorizeOptions<'_>,
        target: &Target<'_>,
        now: Millis,
    ) -> Result<Grant> {
        if rec.operator {
            return Err(Error::invalid(
                "an operator key is never charged: make holds with an API key or Vault::hold",
            ));
        }
        let made = self.write(|tx| {
            let hold = self.create_hold(
                tx,
                &NewHold {
                    account: &rec.account_id,
                    key_id: Some(&rec.key_id),
                    amount,
                    ttl_ms: options.hold_ttl_ms.unwrap_or(DEFAULT_HOLD_TTL_MS),
                    idempotency_key: options.idempotency_key,
                    now,
                },
            )?;
            let (credits, total) = tx.balance(&rec.account_id)?.unwrap_or((0, 0));
            Ok((hold, credits, total))
        });
        match made {
            Ok((hold, credits, total)) => {
                grant.credits = credits;
                grant.total_credits = total;
                grant.replayed = hold.replayed;
                grant.hold_id = Some(hold.hold_id);
                Ok(grant)
            }
            Err(e) => Err(self.refuse(Some(rec), target, now, e)),
        }
    }

    /// Make a hold in `tx` (the step shared by `Vault::hold` and `authorize`'s `hold`).
    pub(super) fn create_hold(&self, tx: &mut WriteTx<'_>, new: &NewHold<'_>) -> Result<Hold> {
        let NewHold {
            account,
            key_id,
            amount,
            ttl_ms,
            idempotency_key,
            now,
        } = *new;
        let id = hold_id(account, idempotency_key)?;
        let ttl = i64::try_from(ttl_ms).map_err(|_| Error::invalid("hold ttl is too large"))?;
        if let Some(existing) = tx.hold(&id)? {
            if existing.account_id != account {
                // A 96-bit collision of two accounts' keys: refuse rather than mix them.
                return Err(Error::IdempotencyConflict);
            }
            if existing.amount != amount || existing.expires_at - existing.created_at != ttl {
                return Err(Error::IdempotencyConflict);
            }
            return Ok(Hold::from_record(&existing, true));
        }
        self.expire_in(tx, account, now)?;
        let (credits, total) = self.refill_if_due(tx, account, now)?;
        if credits < amount {
            return Err(Error::InsufficientCredits {
                credits,
                required: amount,
            });
        }
        let left = credits - amount;
        tx.put_balance(account, left, total)?;
        // A hold lowers the available credits: low-balance alerts see it like a debit.
        self.credits_moved(tx, account, credits, left, now)?;
        let rec = HoldRecord {
            id,
            account_id: account.to_string(),
            key_id: key_id.map(str::to_string),
            amount,
            created_at: now,
            expires_at: now.saturating_add(ttl),
            state: HoldStateRecord::Active,
            idempotency_key: idempotency_key.map(str::to_string),
            settle_key: None,
            settle_over: false,
        };
        tx.put_hold(&rec)?;
        self.audit(
            tx,
            now,
            AuditAction::HoldCreated,
            key_id,
            Some(account),
            json!({ "hold_id": rec.id, "amount": amount, "expires_at": rec.expires_at, "credits": left }),
        )?;
        Ok(Hold::from_record(&rec, false))
    }

    fn settle_hold(
        &self,
        tx: &mut WriteTx<'_>,
        hold_id: &str,
        actual: u64,
        options: &SettleOptions<'_>,
        now: Millis,
    ) -> Result<Hold> {
        let rec = self.current_hold(tx, hold_id, now)?;
        match rec.state {
            HoldStateRecord::Settled { charged, .. } => {
                let same_key = match (&rec.settle_key, options.idempotency_key) {
                    (Some(a), Some(b)) => Some(a == b),
                    _ => None,
                };
                return match (same_key, charged == actual) {
                    (Some(true), true) | (None, true) => Ok(Hold::from_record(&rec, true)),
                    (Some(true), false) => Err(Error::IdempotencyConflict),
                    _ => Err(Error::HoldSettled(format!(
                        "hold {hold_id:?} was already settled for {charged} credits"
                    ))),
                };
            }
            HoldStateRecord::Released { expired, .. } => {
                return Err(Error::HoldSettled(format!(
                    "hold {hold_id:?} was {}: its credits went back to the account",
                    if expired {
                        "not settled before its TTL"
                    } else {
                        "released"
                    }
                )));
            }
            HoldStateRecord::Active => {}
        }
        if actual > rec.amount && !options.allow_over {
            return Err(Error::invalid(format!(
                "actual ({actual}) is above the hold's amount ({}); allow_over permits it",
                rec.amount
            )));
        }
        let mut rec = rec;
        rec.settle_key = options.idempotency_key.map(str::to_string);
        rec.settle_over = options.allow_over;
        let rec = self.finish_hold(tx, rec, End::Settle(actual), now)?;
        Ok(Hold::from_record(&rec, false))
    }

    /// The hold `id` as of now, read in `tx`: an active hold past its TTL is expired first.
    fn current_hold(&self, tx: &mut WriteTx<'_>, id: &str, now: Millis) -> Result<HoldRecord> {
        let rec = tx
            .hold(id)?
            .ok_or_else(|| Error::HoldNotFound(id.to_string()))?;
        if rec.active() && rec.expires_at <= now {
            return self.finish_hold(tx, rec, End::Expire, now);
        }
        Ok(rec)
    }

    /// Finish an active hold in `tx`: charge `charged` (0 for a release or an expiry),
    /// give the rest back (or take the excess above its amount), record and audit it.
    fn finish_hold(
        &self,
        tx: &mut WriteTx<'_>,
        mut rec: HoldRecord,
        end: End,
        now: Millis,
    ) -> Result<HoldRecord> {
        let charged = match end {
            End::Settle(c) => c,
            End::Release | End::Expire => 0,
        };
        debug_assert!(rec.active());
        let account = rec.account_id.clone();
        let (credits, total) = tx
            .balance(&account)?
            .ok_or_else(|| Error::NotFound(format!("account {account:?}")))?;
        let left = if charged <= rec.amount {
            credits.checked_add(rec.amount - charged).ok_or_else(|| {
                Error::Storage(format!("account {account:?}: credits would overflow"))
            })?
        } else {
            let extra = charged - rec.amount;
            if credits < extra {
                return Err(Error::InsufficientCredits {
                    credits,
                    required: extra,
                });
            }
            credits - extra
        };
        tx.put_balance(&account, left, total)?;
        // A settle above the hold lowers the available credits further.
        self.credits_moved(tx, &account, credits, left, now)?;
        let (action, state) = match end {
            End::Settle(_) => (
                AuditAction::HoldSettled,
                HoldStateRecord::Settled { charged, at: now },
            ),
            End::Expire => (
                AuditAction::HoldExpired,
                HoldStateRecord::Released {
                    at: now,
                    expired: true,
                },
            ),
            End::Release => (
                AuditAction::HoldReleased,
                HoldStateRecord::Released {
                    at: now,
                    expired: false,
                },
            ),
        };
        rec.state = state;
        tx.put_hold(&rec)?;
        self.audit(
            tx,
            now,
            action,
            rec.key_id.as_deref(),
            Some(&account),
            json!({ "hold_id": rec.id, "amount": rec.amount, "charged": charged, "credits": left }),
        )?;
        Ok(rec)
    }

    /// Expire, in `tx`, the active holds of `account` whose TTL has passed; returns how
    /// many.
    pub(super) fn expire_in(
        &self,
        tx: &mut WriteTx<'_>,
        account: &str,
        now: Millis,
    ) -> Result<usize> {
        let due: Vec<HoldRecord> = tx
            .active_holds(Some(account))?
            .into_iter()
            .filter(|h| h.expires_at <= now)
            .take(EXPIRE_BATCH)
            .collect();
        let n = due.len();
        for rec in due {
            self.finish_hold(tx, rec, End::Expire, now)?;
        }
        Ok(n)
    }

    /// Release the expired holds of one account (a write only when one is due).
    pub(super) fn expire_holds_of(&self, account: &str, now: Millis) -> Result<()> {
        let due = self
            .read()?
            .active_holds(Some(account))?
            .iter()
            .any(|h| h.expires_at <= now);
        if due {
            self.write(|tx| self.expire_in(tx, account, now))?;
        }
        Ok(())
    }

    /// Release up to one batch of expired holds of any account (the maintenance step of
    /// the background flusher); returns how many. A write only when one is due.
    pub(super) fn expire_due_holds(&self, now: Millis) -> Result<usize> {
        if self.read()?.holds_due(now, 1)?.is_empty() {
            return Ok(0);
        }
        self.write(|tx| {
            // Re-read inside the transaction: another process may have expired them.
            let due = tx.holds_due(now, EXPIRE_BATCH)?;
            let n = due.len();
            for rec in due {
                self.finish_hold(tx, rec, End::Expire, now)?;
            }
            Ok(n)
        })
    }

    /// Credits held by the active holds of `account` (expired ones released first).
    pub(super) fn held(&self, account: &str, now: Millis) -> Result<u64> {
        self.expire_holds_of(account, now)?;
        Ok(self
            .read()?
            .active_holds(Some(account))?
            .iter()
            .fold(0u64, |sum, h| sum.saturating_add(h.amount)))
    }

    /// A balance with its `held` and `available` parts, from the spendable credits.
    pub(super) fn balance_with_holds(
        &self,
        account: &str,
        available: u64,
        total: u64,
        held: u64,
    ) -> Balance {
        Balance {
            account_id: account.to_string(),
            credits: available.saturating_add(held),
            total_credits: total,
            held,
            available,
        }
    }
}
