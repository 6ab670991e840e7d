//! Debits and refills: group-committed debit batches, idempotent replays, due refills.

use super::{
    json, limits, AuditAction, AuditRecord, AuthMethod, DebitReq, Debited, Durability, Error,
    Grant, GrantRecord, IdempotencyRecord, Inner, Millis, Ordering, Result, WriteTx,
    IDEMPOTENCY_WINDOW_MS,
};

impl Inner {
    pub(super) fn submit_debit(&self, req: DebitReq) -> Result<Debited> {
        self.group.submit(req, &|batch| self.run_debits(batch))
    }

    /// One transaction for a batch of debits; each request succeeds or fails on its own,
    /// and a failed commit fails them all (no balance moves).
    pub(super) fn run_debits(&self, batch: Vec<DebitReq>) -> Vec<Result<Debited>> {
        match self.run_debits_combined(batch) {
            Ok(results) => results,
            Err(batch) => self.run_debits_local(batch),
        }
    }

    /// [`Inner::run_debits`] in this process's own transaction.
    pub(super) fn run_debits_local(&self, batch: Vec<DebitReq>) -> Vec<Result<Debited>> {
        let n = batch.len();
        let fail_all = |e: Error| (0..n).map(|_| Err(e.clone())).collect::<Vec<_>>();
        let guard = match self.store() {
            Ok(g) => g,
            Err(e) => return fail_all(e),
        };
        let Some(store) = guard.as_ref() else {
            return fail_all(Error::VaultClosed("the vault was closed".into()));
        };
        let mut tx = match store.write() {
            Ok(tx) => tx,
            Err(e) => return fail_all(e),
        };
        let mut results = Vec::with_capacity(n);
        for req in batch {
            let r = self.apply_debit(&mut tx, req);
            if let Err(e @ Error::Storage(_)) = &r {
                return fail_all(e.clone());
            }
            results.push(r);
        }
        let durability = if self.settings.eventual {
            Durability::Eventual
        } else {
            Durability::Immediate
        };
        if let Err(e) = tx.commit(durability) {
            return fail_all(e);
        }
        // Events: the process counters of `Vault::metrics`.
        self.events.debited(&results);
        if self.settings.eventual {
            self.flushing.unsynced.store(true, Ordering::Release);
        }
        results
    }

    pub(super) fn apply_debit(&self, tx: &mut WriteTx<'_>, req: DebitReq) -> Result<Debited> {
        let account = req.account_id.as_str();
        if let Some((scope, k, fingerprint)) = &req.idempotency {
            if let Some((at, stored)) = tx.idempotent(account, *scope, k)? {
                if req.now.saturating_sub(at) < IDEMPOTENCY_WINDOW_MS {
                    // Another request under the same key (or a record from before
                    // fingerprints, which cannot prove it is the same): refuse, charge nothing.
                    if stored.fingerprint.as_ref() != Some(fingerprint) {
                        return Err(Error::IdempotencyConflict);
                    }
                    let first = stored.grant.map(Grant::from).unwrap_or(Grant {
                        account_id: account.to_string(),
                        key_id: String::new(),
                        key_name: String::new(),
                        prefix: String::new(),
                        auth_method: AuthMethod::Apikey,
                        scopes: Vec::new(),
                        charged: stored.charged,
                        credits: stored.credits,
                        total_credits: stored.total,
                        replayed: true,
                        ratelimits: Vec::new(),
                        hold_id: None,
                    });
                    return Ok(Debited {
                        charged: 0,
                        credits: stored.credits,
                        total: stored.total,
                        replayed: Some((first, at)),
                    });
                }
            }
        }
        let (mut credits, mut total) = self.refill_if_due(tx, account, req.now)?;
        // Holds: before refusing, give back what expired holds of the account reserve.
        if credits < req.cost && self.expire_in(tx, account, req.now)? > 0 {
            (credits, total) = tx.balance(account)?.unwrap_or((credits, total));
        }
        if credits < req.cost {
            return Err(Error::InsufficientCredits {
                credits,
                required: req.cost,
            });
        }
        let left = credits - req.cost;
        if req.cost > 0 {
            tx.put_balance(account, left, total)?;
            // Events and usage reports: thresholds crossed, the call's usage cell.
            self.credits_moved(tx, account, credits, left, req.now)?;
            let key_id = req.grant.as_ref().map_or("", |g| g.key_id.as_str());
            let route = req.route.as_deref().unwrap_or("(debit)");
            self.charged_cell(tx, account, key_id, route, req.cost, req.now)?;
        }
        if let Some((scope, k, fingerprint)) = &req.idempotency {
            let grant = req.grant.as_ref().map(|g| {
                let mut g = GrantRecord::from(g);
                g.charged = req.cost;
                g.credits = left;
                g.total_credits = total;
                g
            });
            let rec = IdempotencyRecord {
                fingerprint: Some(*fingerprint),
                charged: req.cost,
                credits: left,
                total,
                grant,
            };
            tx.put_idempotent(account, *scope, k, req.now, &rec)?;
        }
        if req.grant.is_none() {
            self.audit(
                tx,
                req.now,
                AuditAction::CreditsDebited,
                None,
                Some(account),
                json!({ "amount": req.cost, "credits": left }),
            )?;
        }
        Ok(Debited {
            charged: req.cost,
            credits: left,
            total,
            replayed: None,
        })
    }

    /// The balance of `account`, after applying its refill if a period boundary has passed
    /// since the last one: credits are *set* to the plan's amount, in this transaction,
    /// audited as `credits_refilled`. Exactly once per period, whatever the number of
    /// processes: the transaction re-reads `refilled_at`.
    pub(super) fn refill_if_due(
        &self,
        tx: &mut WriteTx<'_>,
        account: &str,
        now: Millis,
    ) -> Result<(u64, u64)> {
        let (credits, total) = tx
            .balance(account)?
            .ok_or_else(|| Error::NotFound(format!("account {account:?}")))?;
        let Some(mut rec) = tx.account(account)? else {
            return Ok((credits, total));
        };
        let Some(refill) = rec.refill else {
            return Ok((credits, total));
        };
        // `None` only far outside the range of accepted instants: no refill then.
        let Some(start) = limits::calendar::period_start(&refill, now) else {
            return Ok((credits, total));
        };
        if rec.refilled_at.is_some_and(|at| at >= start) {
            return Ok((credits, total));
        }
        let total = total.saturating_add(refill.amount.saturating_sub(credits));
        tx.put_balance(account, refill.amount, total)?;
        rec.refilled_at = Some(start);
        tx.put_account(account, &rec)?;
        tx.append_audit(&AuditRecord {
            time: now,
            action: AuditAction::CreditsRefilled.as_str().into(),
            key_id: None,
            account_id: Some(account.to_string()),
            actor: None,
            details: json!({ "amount": refill.amount, "previous": credits, "period_start": start })
                .to_string(),
        })?;
        // Events: the refill, and any threshold it crossed downwards.
        self.record_event(
            tx,
            now,
            "credits_refilled",
            Some(account),
            None,
            json!({ "amount": refill.amount, "previous": credits, "period_start": start }),
        )?;
        self.credits_moved(tx, account, credits, refill.amount, now)?;
        Ok((refill.amount, total))
    }
}
