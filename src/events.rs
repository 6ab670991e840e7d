//! Events and usage reports: the durable, sequence-numbered event log and the per-route
//! usage cells reports are built from.
//!
//! # Events
//! An event is written in the same transaction as the change it reports, so it exists if
//! and only if the change committed:
//! - `balance_below`: a committed credit movement took an account's balance from at or
//!   above one of its alert thresholds (`Vault::set_alert`) to below it;
//! - `key_expiring`: a key will expire within the vault's notice horizon
//!   (`Vault::set_expiry_notice`); once per key and expiry instant;
//! - `key_revoked`: a key was revoked;
//! - `credits_refilled`: an account's refill plan set its credits.
//!
//! Each event gets the next sequence number (1, 2, …, never reused). Readers page with
//! `Vault::events(after, limit)` and remember the last number they handled, so delivery is
//! at least once: a reader that stops before saving its position reads the same events
//! again. `Vault::set_event_cursor`/`event_cursor` store such a position in the vault under
//! a consumer name, shared by every process.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Millis;

/// Most alert thresholds per account.
pub const MAX_ALERTS: usize = 16;
/// Most events one `Vault::events` call returns.
pub const MAX_EVENTS_PAGE: usize = 10_000;

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number: 1, 2, …, in commit order, never reused.
    pub seq: u64,
    /// `balance_below`, `key_expiring`, `key_revoked` or `credits_refilled`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change committed (ms since the epoch).
    pub time: Millis,
    /// The account concerned.
    pub account_id: Option<String>,
    /// The key concerned, if any.
    pub key_id: Option<String>,
    /// The event's own fields (a JSON object): `threshold`, `credits`, `previous` for
    /// `balance_below`; `expires_at` for `key_expiring`; `amount`, `previous` for
    /// `credits_refilled`.
    pub data: Value,
}

/// The stored form of an event (its number is the table's key).
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub time: Millis,
    pub account_id: Option<String>,
    pub key_id: Option<String>,
    pub data: Value,
}

impl StoredEvent {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // A struct of strings, integers and a JSON value always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(seq: u64, bytes: &[u8]) -> Event {
        match serde_json::from_slice::<StoredEvent>(bytes) {
            Ok(s) => Event {
                seq,
                kind: s.kind,
                time: s.time,
                account_id: s.account_id,
                key_id: s.key_id,
                data: s.data,
            },
            // Never fail a reader over one bad row: show it for what it is.
            Err(_) => Event {
                seq,
                kind: "unreadable".into(),
                time: 0,
                account_id: None,
                key_id: None,
                data: Value::Null,
            },
        }
    }
}

/// One usage cell: what one key did on one route in one hour. Written by the debit's
/// transaction (`charged`, `charged_calls`) and by the usage flush (`calls`, `refused`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ReportCell {
    pub account_id: String,
    pub hour: Millis,
    pub key_id: String,
    pub route: String,
    pub charged: u64,
    pub charged_calls: u64,
    pub calls: u64,
    pub refused: u64,
}

/// The route of the cells counting every granted call of a key (the hot path counts calls
/// per key, not per route).
pub(crate) const ALL_ROUTES: &str = "";
/// The route shown in a by-route report for granted calls that charged nothing.
pub const UNCHARGED_ROUTE: &str = "(uncharged calls)";

/// How a usage report groups its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportBy {
    /// One row per key.
    Key,
    /// One row per matched route rule (or scope, or `(debit)` for management debits).
    Route,
    /// One row per UTC day.
    Day,
}

impl ReportBy {
    /// The name of a report's group column: `key_id`, `route` or `day`.
    pub fn column(self) -> &'static str {
        match self {
            ReportBy::Key => "key_id",
            ReportBy::Route => "route",
            ReportBy::Day => "day",
        }
    }
}

impl std::str::FromStr for ReportBy {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<ReportBy> {
        match s {
            "key" => Ok(ReportBy::Key),
            "route" => Ok(ReportBy::Route),
            "day" => Ok(ReportBy::Day),
            _ => Err(crate::Error::InvalidArgument(format!(
                "by must be \"key\", \"route\" or \"day\", not {s:?}"
            ))),
        }
    }
}

/// One row of a usage report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The key id, the route, or the day (`YYYY-MM-DD`, UTC).
    pub group: String,
    /// Credits charged.
    pub charged: u64,
    /// Granted calls (by route: the calls that charged credits; the rest are one
    /// `(uncharged calls)` row).
    pub calls: u64,
    /// Refused calls of the account's keys.
    pub refusals: u64,
}

/// Counters this process's handle keeps since it was opened (not the vault's totals:
/// every process counts its own calls). Grants and refusals are as of the last usage
/// flush (at most about a second behind).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Granted calls.
    pub grants: u64,
    /// Refused calls by error code.
    pub refusals: BTreeMap<String, u64>,
    /// Debits that charged credits, committed.
    pub debits: u64,
    /// argon2 verifications run.
    pub argon2_runs: u64,
    /// Key lookups the cache could not answer.
    pub key_cache_misses: u64,
}

impl Metrics {
    /// The share of key lookups answered from the cache: 1 − misses / (grants +
    /// refusals), clamped to 0–1; `None` before any call.
    pub fn cache_hit_ratio(&self) -> Option<f64> {
        let calls = self.grants + self.refusals.values().sum::<u64>();
        (calls > 0).then(|| (1.0 - self.key_cache_misses as f64 / calls as f64).clamp(0.0, 1.0))
    }

    /// The Prometheus text exposition (format 0.0.4) of these counters.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            s.push_str(&format!(
                "# HELP {name} {help} Counted by this process's vault handle since it opened.\n# TYPE {name} counter\n{name} {value}\n"
            ));
        };
        counter(
            "keyledger_grants_total",
            "Granted calls, as of the last usage flush.",
            self.grants,
        );
        counter(
            "keyledger_debits_total",
            "Committed debits that charged credits.",
            self.debits,
        );
        counter(
            "keyledger_argon2_runs_total",
            "argon2id verifications run.",
            self.argon2_runs,
        );
        counter(
            "keyledger_key_cache_misses_total",
            "Key lookups the cache could not answer.",
            self.key_cache_misses,
        );
        s.push_str(
            "# HELP keyledger_refusals_total Refused calls by error code, as of the last usage flush. Counted by this process's vault handle since it opened.\n# TYPE keyledger_refusals_total counter\n",
        );
        for (code, n) in &self.refusals {
            s.push_str(&format!(
                "keyledger_refusals_total{{code=\"{code}\"}} {n}\n"
            ));
        }
        s.push_str(
            "# HELP keyledger_key_cache_hit_ratio Share of calls whose key came from the cache (1 - misses / calls). Counted by this process's vault handle since it opened.\n# TYPE keyledger_key_cache_hit_ratio gauge\n",
        );
        match self.cache_hit_ratio() {
            Some(r) => s.push_str(&format!("keyledger_key_cache_hit_ratio {r}\n")),
            None => s.push_str("keyledger_key_cache_hit_ratio NaN\n"),
        }
        s
    }
}

/// A usage report as RFC 4180 CSV (CRLF lines, a header line `<group>,charged,calls,refusals`).
/// A field starting with `=`, `+`, `-` or `@` gets a leading `'`, so a spreadsheet never
/// reads a route as a formula.
pub fn report_csv(by: ReportBy, rows: &[UsageRow]) -> String {
    let mut s = format!("{},charged,calls,refusals\r\n", by.column());
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{}\r\n",
            csv_field(&r.group),
            r.charged,
            r.calls,
            r.refusals
        ));
    }
    s
}

fn csv_field(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        let rows = [
            UsageRow {
                group: "GET /a,b".into(),
                charged: 1,
                calls: 2,
                refusals: 3,
            },
            UsageRow {
                group: "=cmd()".into(),
                ..UsageRow::default()
            },
            UsageRow {
                group: "say \"hi\"".into(),
                ..UsageRow::default()
            },
        ];
        assert_eq!(
            report_csv(ReportBy::Route, &rows),
            "route,charged,calls,refusals\r\n\"GET /a,b\",1,2,3\r\n'=cmd(),0,0,0\r\n\"say \"\"hi\"\"\",0,0,0\r\n"
        );
    }
}
