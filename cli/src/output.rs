//! Output: one JSON value with `--json`, else human text: ISO-8601 times from unix
//! milliseconds, aligned tables, key states.

use std::io::Write;

use keyledger::{AuditEntry, KeyInfo, Millis};
use serde::Serialize;

use crate::exit::{CliError, CliResult};

/// Where output goes: human text or one JSON value.
pub struct Out {
    pub json: bool,
}

impl Out {
    /// Print `value` as JSON when `--json`, else the human text.
    pub fn emit<T: Serialize + ?Sized>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> CliResult {
        let text = if self.json {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))?;
            s.push('\n');
            s
        } else {
            human()
        };
        write_stdout(&text)
    }
}

pub fn write_stdout(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Other(format!("cannot write to stdout: {e}")))
}

/// `2024-05-01T12:34:56.789Z` from unix milliseconds (UTC), without a date-time crate:
/// Howard Hinnant's civil-from-days algorithm on the proleptic Gregorian calendar.
pub fn iso8601(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// (year, month 1–12, day 1–31) of the day `z` days after 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An optional time, or `fallback`.
pub fn opt_time(ms: Option<Millis>, fallback: &str) -> String {
    ms.map_or_else(|| fallback.to_string(), iso8601)
}

/// The state a key is in at `now`, in the order `authorize` checks them.
pub fn key_state(k: &KeyInfo, now: Millis) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.disabled {
        "disabled"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// An aligned plain-text table: a header row, then the rows, columns separated by two
/// spaces, the last column not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            s.push_str(cell);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The key table of `key list`.
pub fn keys_table(keys: &[KeyInfo], now: Millis) -> String {
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.key_id.clone(),
                if k.style == keyledger::TokenStyle::Colon {
                    "(colon)".to_string()
                } else {
                    k.prefix.clone()
                },
                k.account_id.clone(),
                k.name.clone(),
                if k.operator {
                    "(operator)".to_string()
                } else {
                    k.scopes.join(",")
                },
                key_state(k, now).to_string(),
                opt_time(k.expires_at, "never"),
            ]
        })
        .collect();
    table(
        &[
            "KEY_ID", "PREFIX", "ACCOUNT", "NAME", "SCOPES", "STATE", "EXPIRES",
        ],
        &rows,
    )
}

/// `key show` and the summary after `key create`: one `field: value` line each.
pub fn key_details(k: &KeyInfo, now: Millis) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("key_id", k.key_id.clone()),
        ("prefix", k.prefix.clone()),
        ("style", k.style.as_str().to_string()),
        ("account", k.account_id.clone()),
        ("name", k.name.clone()),
        ("scopes", k.scopes.join(" ")),
        ("operator", k.operator.to_string()),
        ("state", key_state(k, now).to_string()),
        ("created", iso8601(k.created_at)),
        ("expires", opt_time(k.expires_at, "never")),
    ];
    if let Some(r) = k.revoked_at {
        fields.push(("revoked", iso8601(r)));
    }
    fields.push(("signing", k.signing.to_string()));
    if let Some(from) = &k.rotated_from {
        fields.push(("rotated_from", from.clone()));
    }
    fields.push(("last_used", opt_time(k.last_used_at, "never")));
    fields.push(("metadata", k.metadata.to_string()));
    fields_block(&fields)
}

/// Aligned `name: value` lines.
pub fn fields_block(fields: &[(&str, String)]) -> String {
    let w = fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (n, v) in fields {
        out.push_str(&format!("{:<w$}  {v}\n", format!("{n}:"), w = w + 1));
    }
    out
}

/// The table of `audit`.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                iso8601(e.time),
                e.action.clone(),
                e.key_id.clone().unwrap_or_else(|| "-".into()),
                e.account_id.clone().unwrap_or_else(|| "-".into()),
                e.actor.clone().unwrap_or_else(|| "-".into()),
                e.details.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "SEQ", "TIME", "ACTION", "KEY_ID", "ACCOUNT", "ACTOR", "DETAILS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601(253_402_300_799_000), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz\n");
    }
}
