//! Accounts: creation, balances, top-ups, management debits and refill plans.

use super::{
    idempotency, json, limits, metadata_string, validate_id, validate_idempotency_key, Account,
    AccountRecord, AuditAction, Balance, DebitReq, Error, IdempotencyScope, Inner, Matched, Millis,
    Refill, RefillInterval, Result, Value, Vault, MAX_IDEMPOTENCY_KEY,
};

impl Vault {
    /// Create an account with `credits` (≥ 0) and optional metadata (a JSON object).
    pub fn create_account(
        &self,
        id: &str,
        credits: u64,
        metadata: Option<Value>,
    ) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let metadata = metadata_string(metadata)?;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            if tx.account(id)?.is_some() {
                return Err(Error::AlreadyExists(format!("account {id:?}")));
            }
            tx.put_account(
                id,
                &AccountRecord {
                    created_at: now,
                    metadata: metadata.clone(),
                    refill: None,
                    refilled_at: None,
                },
            )?;
            tx.put_balance(id, credits, credits)?;
            inner.audit(
                tx,
                now,
                AuditAction::AccountCreated,
                None,
                Some(id),
                json!({ "credits": credits }),
            )?;
            Ok(())
        })?;
        self.account(id)
    }

    /// An account with its balance.
    pub fn account(&self, id: &str) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let r = inner.read()?;
        let rec = r
            .account(id)?
            .ok_or_else(|| Error::NotFound(format!("account {id:?}")))?;
        let (credits, total) = r.balance(id)?.unwrap_or((0, 0));
        Ok(account_from(id, &rec, credits, total))
    }

    /// Every account, ordered by id.
    pub fn list_accounts(&self) -> Result<Vec<Account>> {
        let inner = &*self.inner;
        inner.check_open()?;
        let r = inner.read()?;
        let mut out = Vec::new();
        for id in r.account_ids()? {
            if let Some(rec) = r.account(&id)? {
                let (credits, total) = r.balance(&id)?.unwrap_or((0, 0));
                out.push(account_from(&id, &rec, credits, total));
            }
        }
        Ok(out)
    }

    /// Add `amount` (> 0) credits; `reference` (≤ 255 bytes) is kept in the audit entry.
    pub fn top_up(&self, id: &str, amount: u64, reference: Option<&str>) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        if amount == 0 {
            return Err(Error::invalid("amount must be positive"));
        }
        if reference.is_some_and(|r| r.len() > MAX_IDEMPOTENCY_KEY) {
            return Err(Error::invalid("reference is longer than 255 bytes"));
        }
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let (credits, total) = tx
                .balance(id)?
                .ok_or_else(|| Error::NotFound(format!("account {id:?}")))?;
            let (Some(credits), Some(total)) =
                (credits.checked_add(amount), total.checked_add(amount))
            else {
                return Err(Error::invalid(
                    "top-up would overflow the account's credits",
                ));
            };
            tx.put_balance(id, credits, total)?;
            inner.audit(
                tx,
                now,
                AuditAction::CreditsAdded,
                None,
                Some(id),
                json!({ "amount": amount, "reference": reference, "credits": credits }),
            )?;
            let held = tx
                .active_holds(Some(id))?
                .iter()
                .fold(0u64, |sum, h| sum.saturating_add(h.amount));
            Ok(inner.balance_with_holds(id, credits, total, held))
        })
    }

    /// Debit `amount` (> 0) credits for a caller authenticated some other way (e.g. a
    /// dashboard session). Refuses with `insufficient_credits` (402) and changes nothing
    /// when the balance is short. An `idempotency_key` repeat within 24 h charges nothing;
    /// reused with another amount it is [`Error::IdempotencyConflict`].
    pub fn debit(&self, id: &str, amount: u64, idempotency_key: Option<&str>) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        if amount == 0 {
            return Err(Error::invalid("amount must be positive"));
        }
        if let Some(k) = idempotency_key {
            validate_idempotency_key(k)?;
        }
        let d = inner.submit_debit(DebitReq {
            account_id: id.to_string(),
            cost: amount,
            idempotency: idempotency_key.map(|k| {
                let fp = idempotency::fingerprint(id, &Matched::Debit, amount, 0);
                (IdempotencyScope::Debit, k.to_string(), fp)
            }),
            now: (inner.settings.clock)(),
            grant: None,
            route: None,
        })?;
        let held = inner.held(id, (inner.settings.clock)())?;
        Ok(inner.balance_with_holds(id, d.credits, d.total, held))
    }

    /// An account's credits.
    pub fn balance(&self, id: &str) -> Result<Balance> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(id, "account id")?;
        let now = (inner.settings.clock)();
        // Expired holds first (a write only when one is due): their credits are back.
        let held = inner.held(id, now)?;
        let (credits, total) = inner.balance_now(id, now)?;
        Ok(inner.balance_with_holds(id, credits, total, held))
    }

    /// Give an account a quota that refills: at the first call after each
    /// period boundary its credits are set to `amount`. `day` (1–28) is the day of the
    /// month for monthly refills (ignored, and stored as 1, for daily ones). The first
    /// refill happens at the next boundary.
    pub fn set_refill(
        &self,
        account_id: &str,
        amount: u64,
        interval: RefillInterval,
        day: u8,
    ) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        if interval == RefillInterval::Monthly && !(1..=28).contains(&day) {
            return Err(Error::invalid("day must be between 1 and 28"));
        }
        let refill = Refill {
            amount,
            interval,
            day: if interval == RefillInterval::Daily {
                1
            } else {
                day
            },
        };
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let mut rec = tx
                .account(account_id)?
                .ok_or_else(|| Error::NotFound(format!("account {account_id:?}")))?;
            rec.refill = Some(refill);
            rec.refilled_at = Some(
                limits::calendar::period_start(&refill, now)
                    .ok_or_else(|| Error::invalid("the clock is outside the supported range"))?,
            );
            tx.put_account(account_id, &rec)?;
            inner.audit(
                tx,
                now,
                AuditAction::RefillSet,
                None,
                Some(account_id),
                json!({ "amount": amount, "interval": refill.interval, "day": refill.day }),
            )?;
            Ok(())
        })?;
        self.account(account_id)
    }

    /// Remove an account's refill plan (its credits stay as they are).
    pub fn clear_refill(&self, account_id: &str) -> Result<Account> {
        let inner = &*self.inner;
        inner.check_open()?;
        validate_id(account_id, "account id")?;
        let now = (inner.settings.clock)();
        inner.write(|tx| {
            let mut rec = tx
                .account(account_id)?
                .ok_or_else(|| Error::NotFound(format!("account {account_id:?}")))?;
            if rec.refill.take().is_some() {
                rec.refilled_at = None;
                tx.put_account(account_id, &rec)?;
                inner.audit(
                    tx,
                    now,
                    AuditAction::RefillCleared,
                    None,
                    Some(account_id),
                    json!({}),
                )?;
            }
            Ok(())
        })?;
        self.account(account_id)
    }
}

impl Inner {
    /// (credits, total_credits) of an account, applying a due refill first.
    pub(super) fn balance_now(&self, account_id: &str, now: Millis) -> Result<(u64, u64)> {
        let view = self.account_view(account_id)?;
        if view.next_refill.is_some_and(|due| now >= due) {
            let d = self.submit_debit(DebitReq {
                account_id: account_id.to_string(),
                cost: 0,
                idempotency: None,
                now,
                grant: None,
                route: None,
            })?;
            return Ok((d.credits, d.total));
        }
        Ok((view.credits, view.total))
    }
}

pub(super) fn account_from(id: &str, rec: &AccountRecord, credits: u64, total: u64) -> Account {
    Account {
        refill: rec.refill,
        id: id.to_string(),
        credits,
        total_credits: total,
        created_at: rec.created_at,
        metadata: serde_json::from_str(&rec.metadata).unwrap_or_else(|_| json!({})),
    }
}
