//! `keyledger import`: keys from djangorestframework-api-key (a Django SQLite database) and
//! from Unkey (a JSON file in the shape of Unkey's key migration), with their owners and
//! states. The tokens their customers hold keep working (`keyledger::legacy`).

use std::collections::BTreeMap;
use std::path::Path;

use keyledger::legacy::{drf_hash, unkey_hash};
use keyledger::{ImportedAccount, ImportedKey, Millis, RateLimit, Vault};
use serde_json::{json, Value};

use crate::args::ImportCmd;
use crate::exit::{invalid, CliError, CliResult};
use crate::instant::parse_instant;
use crate::output::Out;

/// The table djangorestframework-api-key's `APIKey` model lives in.
const DRF_TABLE: &str = "rest_framework_api_key_apikey";

pub fn import(vault: &Vault, cmd: &ImportCmd, out: &Out) -> CliResult {
    match cmd {
        ImportCmd::DrfApiKey {
            database,
            account,
            credits,
            scopes,
        } => {
            let rows = read_drf(database)?;
            let (accounts, keys) = drf_plan(&rows, account.as_deref(), *credits, scopes)?;
            let report = vault.import_keys("drf-api-key", &accounts, &keys)?;
            emit(out, "drf-api-key", &report, &[])
        }
        ImportCmd::Unkey { file } => {
            let (accounts, keys, skipped) = unkey_plan(file)?;
            let report = vault.import_keys("unkey", &accounts, &keys)?;
            emit(out, "unkey", &report, &skipped)
        }
        ImportCmd::Pending { account } => {
            let pending = vault.imported_pending(account.as_deref())?;
            out.emit(&json!({ "pending": pending }), || {
                if pending.is_empty() {
                    "no imported key is waiting for its first use\n".to_string()
                } else {
                    pending.iter().map(|k| format!("{k}\n")).collect()
                }
            })
        }
    }
}

fn emit(
    out: &Out,
    source: &str,
    report: &keyledger::ImportReport,
    not_imported: &[String],
) -> CliResult {
    let value = json!({
        "source": source,
        "accounts_created": report.accounts_created,
        "accounts_existing": report.accounts_existing,
        "keys_imported": report.keys_imported,
        "keys_unchanged": report.keys_unchanged,
        "not_imported": not_imported,
    });
    out.emit(&value, || {
        let mut s = format!(
            "{source}: {} keys imported ({} already there), {} accounts created ({} existing)\n",
            report.keys_imported,
            report.keys_unchanged,
            report.accounts_created,
            report.accounts_existing
        );
        for n in not_imported {
            s.push_str(&format!("not imported: {n}\n"));
        }
        s
    })
}

/// One row of drf-api-key's table.
struct DrfRow {
    prefix: String,
    hashed_key: String,
    name: String,
    revoked: bool,
    expiry_date: Option<String>,
    created: Option<String>,
}

fn read_drf(database: &str) -> CliResult<Vec<DrfRow>> {
    if database.starts_with("postgres://") || database.starts_with("postgresql://") {
        return Err(invalid(
            "--database must be a SQLite file; for PostgreSQL, dump the table to SQLite first \
             (e.g. Django's dumpdata/loaddata into a SQLite settings)",
        ));
    }
    if !Path::new(database).is_file() {
        return Err(CliError::Vault(keyledger::Error::NotFound(format!(
            "no database file at {database:?}"
        ))));
    }
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| invalid(format!("cannot open {database:?} as SQLite: {e}")))?;
    let sql = format!(
        "SELECT prefix, hashed_key, name, revoked, expiry_date, created FROM {DRF_TABLE} ORDER BY prefix"
    );
    let mut stmt = conn.prepare(&sql).map_err(|e| {
        invalid(format!(
            "{database:?} has no readable {DRF_TABLE} table (is djangorestframework-api-key migrated there?): {e}"
        ))
    })?;
    let rows = stmt
        .query_map([], |r| {
            Ok(DrfRow {
                prefix: r.get(0)?,
                hashed_key: r.get(1)?,
                name: r.get(2)?,
                revoked: r.get(3)?,
                expiry_date: r.get(4)?,
                created: r.get(5)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("cannot read {DRF_TABLE}: {e}")))?;
    Ok(rows)
}

/// A Django datetime as stored in SQLite (`YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]`, UTC when
/// `USE_TZ = True`, Django's default).
fn django_time(what: &str, s: &str) -> CliResult<Millis> {
    let mut t = s.trim().replacen(' ', "T", 1);
    let has_offset = t.ends_with('Z') || t[10.min(t.len())..].contains(['+', '-']);
    if !has_offset {
        t.push('Z');
    }
    parse_instant(what, &t)
}

fn drf_plan(
    rows: &[DrfRow],
    account: Option<&str>,
    credits: u64,
    scopes: &[String],
) -> CliResult<(Vec<ImportedAccount>, Vec<ImportedKey>)> {
    let mut accounts = BTreeMap::new();
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let hash = drf_hash(&row.prefix, &row.hashed_key)?;
        let account_id = match account {
            Some(a) => a.to_string(),
            None => format!("drf-{}", row.prefix),
        };
        accounts
            .entry(account_id.clone())
            .or_insert(ImportedAccount {
                id: account_id.clone(),
                credits,
                metadata: None,
            });
        let name = if row.name.trim().is_empty() {
            format!("drf {}", row.prefix)
        } else {
            row.name.clone()
        };
        keys.push(ImportedKey {
            hash,
            source_id: row.prefix.clone(),
            account_id,
            name,
            scopes: scopes.to_vec(),
            created_at: row
                .created
                .as_deref()
                .map(|c| django_time("created", c))
                .transpose()?,
            expires_at: row
                .expiry_date
                .as_deref()
                .map(|c| django_time("expiry_date", c))
                .transpose()?,
            revoked: row.revoked,
            disabled: false,
            metadata: None,
            ratelimits: Vec::new(),
        });
    }
    Ok((accounts.into_values().collect(), keys))
}

/// An Unkey file: the keys array, bare or under `"keys"`.
fn unkey_plan(file: &Path) -> CliResult<(Vec<ImportedAccount>, Vec<ImportedKey>, Vec<String>)> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::Vault(keyledger::Error::NotFound(format!(
            "cannot read {}: {e}",
            file.display()
        )))
    })?;
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| invalid(format!("{} is not JSON: {e}", file.display())))?;
    let entries = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("keys") {
            Some(Value::Array(a)) => a,
            _ => {
                return Err(invalid(
                    "the Unkey file must be an array of keys or {\"keys\": [...]}",
                ))
            }
        },
        _ => {
            return Err(invalid(
                "the Unkey file must be an array of keys or {\"keys\": [...]}",
            ))
        }
    };
    let mut accounts: BTreeMap<String, ImportedAccount> = BTreeMap::new();
    let mut keys = Vec::with_capacity(entries.len());
    let mut skipped = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let (account, key, mut notes) = unkey_key(i, e)?;
        let remaining = e.get("remaining").and_then(Value::as_u64).unwrap_or(0);
        let a = accounts.entry(account.clone()).or_insert(ImportedAccount {
            id: account,
            credits: 0,
            metadata: None,
        });
        // Unkey counts `remaining` per key; keyledger's credits are the account's, shared
        // by its keys: an owner's keys pool theirs.
        a.credits = a.credits.saturating_add(remaining);
        skipped.append(&mut notes);
        keys.push(key);
    }
    Ok((accounts.into_values().collect(), keys, skipped))
}

fn unkey_key(i: usize, e: &Value) -> CliResult<(String, ImportedKey, Vec<String>)> {
    let at = |field: &str| format!("key #{i}: {field}");
    let hash = e.get("hash").ok_or_else(|| {
        invalid(at(
            "hash is missing (a key given as plaintext cannot be imported)",
        ))
    })?;
    let variant = hash.get("variant").and_then(Value::as_str).unwrap_or("");
    if variant != "sha256_base64" {
        return Err(invalid(at(&format!(
            "hash variant {variant:?} is not supported (only sha256_base64)"
        ))));
    }
    let value = hash
        .get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(at("hash.value is missing")))?;
    let legacy = unkey_hash(value).map_err(|e| invalid(at(&e.to_string())))?;
    let source_id = e
        .get("keyId")
        .or_else(|| e.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("sha256:{}", &value.trim()[..12.min(value.trim().len())]));
    let owner = e
        .get("externalId")
        .or_else(|| e.get("ownerId"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("unkey-{}", legacy.key_id));
    let start = e.get("start").and_then(Value::as_str).unwrap_or("");
    let name = e
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            if start.is_empty() {
                "unkey".to_string()
            } else {
                start.to_string()
            }
        });
    let mut scopes = Vec::new();
    if let Some(Value::Array(p)) = e.get("permissions") {
        for s in p {
            scopes.push(
                s.as_str()
                    .ok_or_else(|| invalid(at("permissions must be strings")))?
                    .to_string(),
            );
        }
    }
    let mut ratelimits = Vec::new();
    if let Some(r) = e.get("ratelimit").filter(|r| !r.is_null()) {
        // v1: `limit` per `refillInterval` ms (`duration` in later shapes).
        let limit = r.get("limit").and_then(Value::as_u64);
        let window = r
            .get("duration")
            .or_else(|| r.get("refillInterval"))
            .and_then(Value::as_u64);
        match (limit, window) {
            (Some(limit), Some(duration_ms)) => ratelimits.push(RateLimit {
                name: "ratelimit".into(),
                limit,
                duration_ms,
                auto_apply: true,
            }),
            _ => {
                return Err(invalid(at(
                    "ratelimit needs limit and refillInterval (or duration)",
                )))
            }
        }
    }
    if let Some(Value::Array(rs)) = e.get("ratelimits") {
        for r in rs {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("ratelimit");
            let limit = r.get("limit").and_then(Value::as_u64);
            let duration = r.get("duration").and_then(Value::as_u64);
            let (Some(limit), Some(duration_ms)) = (limit, duration) else {
                return Err(invalid(at(
                    "each ratelimits entry needs limit and duration",
                )));
            };
            ratelimits.push(RateLimit {
                name: name.to_string(),
                limit,
                duration_ms,
                auto_apply: r.get("autoApply").and_then(Value::as_bool).unwrap_or(true),
            });
        }
    }
    let mut notes = Vec::new();
    if e.get("roles")
        .is_some_and(|r| r.as_array().is_some_and(|a| !a.is_empty()))
    {
        notes.push(format!(
            "key #{i}: roles (no roles in keyledger: give their permissions as scopes)"
        ));
    }
    if e.get("refill").is_some_and(|r| !r.is_null()) {
        notes.push(format!(
            "key #{i}: refill (set a refill plan on the account: keyledger account refill)"
        ));
    }
    let metadata = match e.get("meta") {
        None | Some(Value::Null) => None,
        Some(m @ Value::Object(_)) => Some(m.clone()),
        Some(_) => return Err(invalid(at("meta must be a JSON object"))),
    };
    let expires_at = match e.get("expires") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_i64()
                .ok_or_else(|| invalid(at("expires must be unix milliseconds")))?,
        ),
    };
    let key = ImportedKey {
        hash: legacy,
        source_id,
        account_id: owner.clone(),
        name,
        scopes,
        created_at: e.get("createdAt").and_then(Value::as_i64),
        expires_at,
        revoked: false,
        disabled: e.get("enabled").and_then(Value::as_bool) == Some(false),
        metadata,
        ratelimits,
    };
    Ok((owner, key, notes))
}
