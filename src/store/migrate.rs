//! Copying a whole vault from one backend to another (`keyledger::migrate`).
//!
//! Each backend exports its tables as neutral [`Row`]s from one read snapshot
//! ([`ReadTxn::export`](super::ReadTxn::export)) and imports them, exactly as stored, in
//! one write transaction ([`WriteTxn::import`](super::WriteTxn::import)). Records stay the
//! versioned bytes both backends store; hashes stay hashes and signing secrets stay
//! encrypted (the master key is never needed). The vault's identity (`format`,
//! `vault_id`) is the destination's own.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Backend, ReadTxn};
use crate::error::{Error, Result};
use crate::options::{Durability, VaultOptions};

/// One stored row of a vault, backend-neutral. Byte fields are the stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Row {
    Meta {
        name: String,
        value: Vec<u8>,
    },
    Account {
        id: String,
        record: Vec<u8>,
    },
    Balance {
        id: String,
        credits: u64,
        total: u64,
    },
    Key {
        key_id: String,
        account_id: String,
        record: Vec<u8>,
    },
    Route {
        method: String,
        pattern: String,
        scope: String,
        cost: u64,
    },
    /// `key` as stored (`a:<key>` / `d:<key>`).
    Idempotency {
        account_id: String,
        key: String,
        at: i64,
        record: Vec<u8>,
    },
    Audit {
        seq: u64,
        record: Vec<u8>,
    },
    /// `last_used` is `i64::MIN` when never used.
    UsageTotal {
        key_id: String,
        last_used: i64,
        granted: u64,
        refused: u64,
    },
    UsageHour {
        key_id: String,
        hour: i64,
        granted: u64,
    },
    /// `owner` as stored (`k:<key_id>` / `a:<account_id>`).
    Limit {
        owner: String,
        name: String,
        limit: u64,
        duration_ms: u64,
        auto_apply: bool,
    },
    Signature {
        t: i64,
        mac: Vec<u8>,
    },
    // Holds.
    /// A hold record as stored (its indexes are rebuilt from it on import).
    Hold {
        id: String,
        record: Vec<u8>,
    },
}

/// Meta entries that belong to one store (its format marker and identity), never copied.
pub(crate) fn is_identity_meta(name: &str) -> bool {
    matches!(name, "format" | "vault_id")
}

/// The tables in the order a summary lists them.
pub const TABLES: [&str; 12] = [
    "meta",
    "accounts",
    "balances",
    "keys",
    "routes",
    "idempotency",
    "audit",
    "usage_totals",
    "usage_hourly",
    "rate_limits",
    "signatures_seen",
    "holds",
];

impl Row {
    /// The summary table this row counts in.
    fn table(&self) -> &'static str {
        TABLES[self.tag() as usize]
    }

    fn tag(&self) -> u8 {
        match self {
            Row::Meta { .. } => 0,
            Row::Account { .. } => 1,
            Row::Balance { .. } => 2,
            Row::Key { .. } => 3,
            Row::Route { .. } => 4,
            Row::Idempotency { .. } => 5,
            Row::Audit { .. } => 6,
            Row::UsageTotal { .. } => 7,
            Row::UsageHour { .. } => 8,
            Row::Limit { .. } => 9,
            Row::Signature { .. } => 10,
            Row::Hold { .. } => 11,
        }
    }

    /// An unambiguous encoding (tag, then length-prefixed fields) for the digest.
    fn canonical(&self) -> Vec<u8> {
        let mut out = vec![self.tag()];
        let mut b = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Row::Meta { name, value } => {
                b(name.as_bytes());
                b(value);
            }
            Row::Account { id, record } => {
                b(id.as_bytes());
                b(record);
            }
            Row::Balance { id, credits, total } => {
                b(id.as_bytes());
                b(&credits.to_le_bytes());
                b(&total.to_le_bytes());
            }
            Row::Key {
                key_id,
                account_id,
                record,
            } => {
                b(key_id.as_bytes());
                b(account_id.as_bytes());
                b(record);
            }
            Row::Route {
                method,
                pattern,
                scope,
                cost,
            } => {
                b(method.as_bytes());
                b(pattern.as_bytes());
                b(scope.as_bytes());
                b(&cost.to_le_bytes());
            }
            Row::Idempotency {
                account_id,
                key,
                at,
                record,
            } => {
                b(account_id.as_bytes());
                b(key.as_bytes());
                b(&at.to_le_bytes());
                b(record);
            }
            Row::Audit { seq, record } => {
                b(&seq.to_le_bytes());
                b(record);
            }
            Row::UsageTotal {
                key_id,
                last_used,
                granted,
                refused,
            } => {
                b(key_id.as_bytes());
                b(&last_used.to_le_bytes());
                b(&granted.to_le_bytes());
                b(&refused.to_le_bytes());
            }
            Row::UsageHour {
                key_id,
                hour,
                granted,
            } => {
                b(key_id.as_bytes());
                b(&hour.to_le_bytes());
                b(&granted.to_le_bytes());
            }
            Row::Limit {
                owner,
                name,
                limit,
                duration_ms,
                auto_apply,
            } => {
                b(owner.as_bytes());
                b(name.as_bytes());
                b(&limit.to_le_bytes());
                b(&duration_ms.to_le_bytes());
                b(&[u8::from(*auto_apply)]);
            }
            Row::Signature { t, mac } => {
                b(&t.to_le_bytes());
                b(mac);
            }
            Row::Hold { id, record } => {
                b(id.as_bytes());
                b(record);
            }
        }
        out
    }
}

/// Rows counted per table and digested, independent of the order a backend lists them.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<&'static str, u64>,
    hashes: Vec<[u8; 32]>,
}

impl Tally {
    fn add(&mut self, row: &Row) {
        *self.counts.entry(row.table()).or_default() += 1;
        self.hashes.push(Sha256::digest(row.canonical()).into());
    }

    fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// SHA-256 over the sorted row hashes, in hex.
    fn digest(mut self) -> (Vec<(&'static str, u64)>, String) {
        self.hashes.sort_unstable();
        let mut h = Sha256::new();
        for r in &self.hashes {
            h.update(r);
        }
        let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let counts = TABLES
            .iter()
            .map(|t| (*t, self.counts.get(t).copied().unwrap_or(0)))
            .collect();
        (counts, hex)
    }
}

/// Options of [`migrate`](crate::migrate).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MigrateOptions {
    /// Re-read the destination after the commit and compare its row counts and digest
    /// with the source's (default true).
    pub verify: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions { verify: true }
    }
}

/// What [`migrate`](crate::migrate) copied.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrateReport {
    /// Rows copied per table (every table, in a fixed order).
    pub tables: Vec<(&'static str, u64)>,
    /// SHA-256 (hex) over every copied row, independent of order: equal on both sides.
    pub digest: String,
    /// Whether the destination was re-read and matched.
    pub verified: bool,
}

impl std::fmt::Display for MigrateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (t, n) in &self.tables {
            writeln!(f, "{t:<16} {n}")?;
        }
        write!(
            f,
            "digest           {}{}",
            self.digest,
            if self.verified { " (verified)" } else { "" }
        )
    }
}

fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgresql://") || location.starts_with("postgres://")
}

/// The location as shown in errors (no password).
fn shown(location: &str) -> String {
    #[cfg(feature = "postgres")]
    if is_postgres_url(location) {
        return super::postgres::redact(location);
    }
    location.to_string()
}

/// Open the backend of a location (a vault file path or a PostgreSQL URL).
fn open(location: &str, source: bool) -> Result<Box<dyn Backend>> {
    let options = VaultOptions::default();
    if is_postgres_url(location) {
        #[cfg(feature = "postgres")]
        return Ok(Box::new(super::postgres::PgBackend::open(
            location,
            options.shm_slots,
        )?));
        #[cfg(not(feature = "postgres"))]
        return Err(Error::invalid(
            "a postgresql:// vault needs keyledger built with the cargo feature \"postgres\"",
        ));
    }
    let path = Path::new(location);
    if source && !path.is_file() {
        return Err(Error::invalid(format!(
            "migrate: no vault file at {location}"
        )));
    }
    Ok(Box::new(super::redb::RedbBackend::open(
        path,
        &super::redb::FileOptions {
            exclusive: false,
            cache_bytes: options.storage_cache_bytes,
            shared_cache: options.shared_cache,
            shm_slots: options.shm_slots,
        },
    )?))
}

/// Every row of a snapshot but the store's identity.
fn tally<T: ReadTxn + ?Sized>(txn: &T) -> Result<Tally> {
    let mut t = Tally::default();
    txn.export(&mut |row| {
        if !matches!(&row, Row::Meta { name, .. } if is_identity_meta(name)) {
            t.add(&row);
        }
        Ok(())
    })?;
    Ok(t)
}

/// See [`crate::migrate`].
pub(crate) fn migrate(from: &str, to: &str, options: &MigrateOptions) -> Result<MigrateReport> {
    if from == to {
        return Err(Error::invalid(
            "migrate: the source and the destination are the same vault",
        ));
    }
    let src = open(from, true)?;
    let dst = open(to, false)?;
    let snapshot = src.read()?;
    let mut out = dst.write()?;
    let present = tally(&*out)?;
    if present.total() > 0 {
        let (counts, _) = present.digest();
        let what: Vec<String> = counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t}: {n}"))
            .collect();
        return Err(Error::invalid(format!(
            "migrate: the destination {} is not empty ({}); migrate only into a new vault",
            shown(to),
            what.join(", ")
        )));
    }
    let mut copied = Tally::default();
    snapshot.export(&mut |row| {
        if let Row::Meta { name, .. } = &row {
            if is_identity_meta(name) {
                return Ok(());
            }
        }
        copied.add(&row);
        out.import(&row)
    })?;
    drop(snapshot);
    if copied.total() == 0 {
        return Err(Error::invalid(format!(
            "migrate: the source {} holds no vault data",
            shown(from)
        )));
    }
    out.commit(Durability::Immediate)?;
    let (tables, digest) = copied.digest();
    let mut verified = false;
    if options.verify {
        let (after, after_digest) = tally(&*dst.read()?)?.digest();
        if after != tables || after_digest != digest {
            return Err(Error::Storage(format!(
                "migrate: verification failed: the destination {} holds {after:?} (digest {after_digest}), \
                 the source {tables:?} (digest {digest})",
                shown(to)
            )));
        }
        verified = true;
    }
    Ok(MigrateReport {
        tables,
        digest,
        verified,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Argon2Params, AuditQuery, NewKey, Target, Vault};

    fn open(path: &Path) -> Vault {
        Vault::open_with(
            path,
            VaultOptions {
                argon2: Some(Argon2Params::INSECURE_FAST),
                ..VaultOptions::default()
            },
        )
        .unwrap()
    }

    fn loc(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    #[test]
    fn a_file_vault_is_copied_into_a_new_file_and_a_non_empty_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
        let token = {
            let v = open(&src);
            v.create_account("acct", 9, None).unwrap();
            let (t, _) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
            v.close().unwrap();
            t
        };
        let report = migrate(loc(&src), loc(&dst), &MigrateOptions::default()).unwrap();
        assert!(report.verified);
        assert_eq!(
            report.tables[TABLES.iter().position(|t| *t == "keys").unwrap()].1,
            1
        );
        let (a, b) = (open(&src), open(&dst));
        assert_eq!(
            a.audit(&AuditQuery::default()).unwrap(),
            b.audit(&AuditQuery::default()).unwrap()
        );
        let opts = crate::AuthorizeOptions::default();
        let grant = b
            .authorize(token.expose(), Target::Scope("x"), &opts)
            .unwrap();
        assert_eq!(grant.credits, 9);
        drop((a, b));
        let before = migrate(
            loc(&dst),
            loc(&dir.path().join("c.redb")),
            &MigrateOptions::default(),
        )
        .unwrap();
        let e = migrate(loc(&src), loc(&dst), &MigrateOptions::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        assert!(e.to_string().contains("not empty"), "{e}");
        let after = migrate(
            loc(&dst),
            loc(&dir.path().join("d.redb")),
            &MigrateOptions::default(),
        )
        .unwrap();
        assert_eq!(before, after, "a refused migration changed the destination");
    }

    #[test]
    fn a_missing_source_or_the_same_location_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("none.redb"), dir.path().join("b.redb"));
        let e = migrate(loc(&src), loc(&dst), &MigrateOptions::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        assert!(!src.exists() && !dst.exists(), "nothing is created");
        open(&dst).close().unwrap();
        let e = migrate(loc(&dst), loc(&dst), &MigrateOptions::default()).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        #[cfg(not(feature = "postgres"))]
        {
            let e = migrate(
                loc(&dst),
                "postgresql://u@localhost/db",
                &MigrateOptions::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("postgres"), "{e}");
        }
    }
}
