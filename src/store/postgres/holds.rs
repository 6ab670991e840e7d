//! Holds on PostgreSQL: `kl_holds` (schema step 5) keeps every hold record by id, with
//! its account, expiry and whether it is active in columns of their own, so the partial
//! indexes on active holds serve the balance's `held` and the expiry maintenance.

use super::big;
use super::txn::PgRead;
use crate::error::Result;
use crate::model::Millis;
use crate::store::HoldRecord;

impl PgRead {
    pub(super) fn hold_by_id(&self, id: &str) -> Result<Option<HoldRecord>> {
        self.opt("SELECT record FROM kl_holds WHERE id = $1", &[&id])?
            .map(|r| HoldRecord::decode(r.get::<_, &[u8]>(0)))
            .transpose()
    }

    pub(super) fn active_holds_of(&self, account_id: Option<&str>) -> Result<Vec<HoldRecord>> {
        let rows = match account_id {
            None => self.query(
                "SELECT record FROM kl_holds WHERE active ORDER BY account_id, id",
                &[],
            )?,
            Some(a) => self.query(
                "SELECT record FROM kl_holds WHERE active AND account_id = $1 ORDER BY id",
                &[&a],
            )?,
        };
        rows.iter()
            .map(|r| HoldRecord::decode(r.get::<_, &[u8]>(0)))
            .collect()
    }

    pub(super) fn holds_due_at(&self, now: Millis, max: usize) -> Result<Vec<HoldRecord>> {
        let max = big(max as u64)?;
        self.query(
            "SELECT record FROM kl_holds WHERE active AND expires_at <= $1 \
             ORDER BY expires_at, id LIMIT $2",
            &[&now, &max],
        )?
        .iter()
        .map(|r| HoldRecord::decode(r.get::<_, &[u8]>(0)))
        .collect()
    }

    pub(super) fn put_hold_row(&mut self, rec: &HoldRecord) -> Result<()> {
        let bytes = rec.encode()?;
        self.exec(
            "INSERT INTO kl_holds (id, account_id, expires_at, active, record) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET \
             account_id = EXCLUDED.account_id, expires_at = EXCLUDED.expires_at, \
             active = EXCLUDED.active, record = EXCLUDED.record",
            &[
                &rec.id,
                &rec.account_id,
                &rec.expires_at,
                &rec.active(),
                &bytes,
            ],
        )?;
        Ok(())
    }
}
