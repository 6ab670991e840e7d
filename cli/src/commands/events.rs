//! Events and usage reports: `keyledger events alert|list|expiry-notice|serve` and
//! `keyledger usage report`.
//!
//! `events serve --webhook URL` is the webhook sender: it reads events after its consumer's
//! cursor (stored in the vault, shared by every process), POSTs each one, in order, signed
//! with `keyledger::sign_webhook` under KEYLEDGER_WEBHOOK_SECRET, and acknowledges it
//! only after a 2xx answer. A failure (connection refused, timeout, any other status) is
//! retried after 0.5 s, 1 s, 2 s, … up to 60 s, forever: an event is never skipped. If the
//! sender stops between a delivery and its acknowledgement, the next run sends that event
//! again: delivery is at least once, and receivers deduplicate on `X-Keyledger-Delivery`
//! (the event's sequence number).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use keyledger::events::{Event, ReportBy};
use keyledger::Vault;
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::{AlertCmd, EventsCmd, ReportArgs};
use crate::exit::{invalid, CliError, CliResult};
use crate::input::{parse_positive, parse_u64};
use crate::instant::parse_instant;
use crate::output::{self, write_stdout, Out};

/// Longest retry delay.
const MAX_BACKOFF_MS: u64 = 60_000;
/// Connect and read timeout of one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// `keyledger events …`.
pub fn events(vault: &Vault, cmd: &EventsCmd, out: &Out) -> CliResult {
    match cmd {
        EventsCmd::Alert(a) => alert(vault, a, out),
        EventsCmd::List { after, limit } => {
            let after = parse_u64("--after", after)?;
            let limit = usize::try_from(parse_positive("--limit", limit)?)
                .map_err(|_| invalid("--limit is too large"))?;
            let events = vault.events(after, limit)?;
            out.emit(&events, || events_table(&events))
        }
        EventsCmd::ExpiryNotice { horizon } => {
            let ms = if horizon == "off" {
                None
            } else {
                let s = parse_positive("horizon", horizon)?;
                Some(
                    s.checked_mul(1000)
                        .ok_or_else(|| invalid("horizon is too large"))?,
                )
            };
            vault.set_expiry_notice(ms)?;
            out.emit(&json!({ "expiry_notice_ms": ms }), || match ms {
                Some(ms) => format!("key_expiring events {} s before expiry\n", ms / 1000),
                None => "expiry notices off\n".into(),
            })
        }
        EventsCmd::Serve {
            webhook,
            consumer,
            poll_ms,
            backoff_ms,
            until_idle,
        } => {
            let target = Webhook::parse(webhook)?;
            let secret =
                Zeroizing::new(std::env::var("KEYLEDGER_WEBHOOK_SECRET").map_err(|_| {
                    invalid("set KEYLEDGER_WEBHOOK_SECRET to the secret the receiver verifies with")
                })?);
            if secret.is_empty() {
                return Err(invalid("KEYLEDGER_WEBHOOK_SECRET is empty"));
            }
            let poll = Duration::from_millis(parse_positive("--poll-ms", poll_ms)?);
            let backoff = parse_positive("--backoff-ms", backoff_ms)?.min(MAX_BACKOFF_MS);
            // Checks the consumer name before any delivery.
            vault.event_cursor(consumer)?;
            serve(
                vault,
                &target,
                secret.as_bytes(),
                consumer,
                poll,
                backoff,
                *until_idle,
                out,
            )
        }
    }
}

fn alert(vault: &Vault, cmd: &AlertCmd, out: &Out) -> CliResult {
    let (account, thresholds) = match cmd {
        AlertCmd::Set { account_id, below } => {
            let below = parse_positive("--below", below)?;
            (account_id, vault.set_alert(account_id, below)?)
        }
        AlertCmd::Remove { account_id, below } => {
            let below = parse_positive("--below", below)?;
            if !vault.remove_alert(account_id, below)? {
                return Err(CliError::Vault(keyledger::Error::NotFound(format!(
                    "alert below {below} on account {account_id:?}"
                ))));
            }
            (account_id, vault.alerts(account_id)?)
        }
        AlertCmd::List { account_id } => (account_id, vault.alerts(account_id)?),
    };
    out.emit(
        &json!({ "account_id": account, "below": thresholds }),
        || {
            if thresholds.is_empty() {
                format!("{account}: no alerts\n")
            } else {
                let t: Vec<String> = thresholds.iter().map(u64::to_string).collect();
                format!("{account}: alert below {}\n", t.join(", "))
            }
        },
    )
}

fn events_table(events: &[Event]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                output::iso8601(e.time),
                e.kind.clone(),
                e.account_id.clone().unwrap_or_default(),
                e.key_id.clone().unwrap_or_default(),
                e.data.to_string(),
            ]
        })
        .collect();
    output::table(&["SEQ", "TIME", "TYPE", "ACCOUNT", "KEY", "DATA"], &rows)
}

/// An http:// webhook target.
struct Webhook {
    /// `host:port` to connect to.
    addr: String,
    /// The Host header.
    host: String,
    path: String,
}

impl Webhook {
    fn parse(url: &str) -> CliResult<Webhook> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            invalid("--webhook must be an http:// URL (for https, put a TLS-terminating proxy on loopback)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty()
            || authority.contains('@')
            || !path.bytes().all(|b| b.is_ascii_graphic())
            || !authority.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(format!("--webhook is not a usable URL: {url:?}")));
        }
        let addr = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Webhook {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// POST `body`; the answer's status code.
    fn post(&self, body: &[u8], headers: &[(&str, String)]) -> std::io::Result<u16> {
        let sock = self
            .addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the webhook host has no address"))?;
        let mut s = TcpStream::connect_timeout(&sock, DELIVERY_TIMEOUT)?;
        s.set_read_timeout(Some(DELIVERY_TIMEOUT))?;
        s.set_write_timeout(Some(DELIVERY_TIMEOUT))?;
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: keyledger-events\r\n",
            self.path,
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        s.flush()?;
        // The status line is all that matters: "HTTP/1.x NNN …".
        let mut buf = Vec::with_capacity(64);
        let mut byte = [0u8; 1];
        while buf.len() < 1024 && !buf.ends_with(b"\r\n") {
            if s.read(&mut byte)? == 0 {
                break;
            }
            buf.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&buf);
        line.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|_| line.starts_with("HTTP/1."))
            .ok_or_else(|| std::io::Error::other("the webhook's answer is not HTTP/1.x"))
    }
}

#[allow(clippy::too_many_arguments)]
fn serve(
    vault: &Vault,
    target: &Webhook,
    secret: &[u8],
    consumer: &str,
    poll: Duration,
    first_backoff: u64,
    until_idle: bool,
    out: &Out,
) -> CliResult {
    let mut delivered = 0u64;
    loop {
        let cursor = vault.event_cursor(consumer)?;
        let batch = vault.events(cursor, 100)?;
        if batch.is_empty() {
            if until_idle {
                return out.emit(&json!({ "delivered": delivered, "cursor": cursor }), || {
                    format!("delivered {delivered} event(s); cursor {cursor}\n")
                });
            }
            std::thread::sleep(poll);
            continue;
        }
        for event in batch {
            let body = serde_json::to_vec(&event)
                .map_err(|e| CliError::Other(format!("cannot encode an event: {e}")))?;
            let headers = [
                (
                    "X-Keyledger-Signature",
                    keyledger::sign_webhook(secret, &body),
                ),
                ("X-Keyledger-Event", event.kind.clone()),
                ("X-Keyledger-Delivery", event.seq.to_string()),
            ];
            let mut backoff = first_backoff;
            loop {
                match target.post(&body, &headers) {
                    Ok(code) if (200..300).contains(&code) => break,
                    Ok(code) => eprintln!(
                        "event {}: the webhook answered {code}; retrying in {backoff} ms",
                        event.seq
                    ),
                    Err(e) => eprintln!(
                        "event {}: delivery failed ({e}); retrying in {backoff} ms",
                        event.seq
                    ),
                }
                std::thread::sleep(Duration::from_millis(backoff));
                backoff = (backoff * 2).min(MAX_BACKOFF_MS);
            }
            vault.ack_events(consumer, event.seq)?;
            delivered += 1;
        }
    }
}

/// `keyledger usage report ACCOUNT`.
pub fn report(vault: &Vault, args: &ReportArgs, out: &Out) -> CliResult {
    let now = keyledger::system_now();
    let since = match &args.since {
        Some(s) => parse_instant("--since", s)?,
        None => now.saturating_sub(30 * 86_400_000),
    };
    let until = match &args.until {
        Some(s) => parse_instant("--until", s)?,
        None => now,
    };
    let by: ReportBy = args.by.parse()?;
    let format = if out.json {
        "json"
    } else {
        args.format.as_str()
    };
    if !["table", "csv", "json"].contains(&format) {
        return Err(invalid(format!(
            "--format must be table, csv or json, not {format:?}"
        )));
    }
    // Until is exclusive: round it up to the next hour so the current hour is included.
    let rows = vault.usage_report(&args.account_id, since, until.saturating_add(3_599_999), by)?;
    let group = by.column();
    match format {
        "json" => {
            let text = serde_json::to_string_pretty(&json!({
                "account_id": args.account_id,
                "since": since,
                "until": until,
                "by": args.by,
                "rows": rows,
            }))
            .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))?;
            write_stdout(&format!("{text}\n"))
        }
        "csv" => write_stdout(&keyledger::events::report_csv(by, &rows)),
        _ => {
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.group.clone(),
                        r.charged.to_string(),
                        r.calls.to_string(),
                        r.refusals.to_string(),
                    ]
                })
                .collect();
            write_stdout(&output::table(
                &[&group.to_uppercase(), "CHARGED", "CALLS", "REFUSALS"],
                &table,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_http_with_an_optional_port() {
        let w = Webhook::parse("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!(
            (w.addr.as_str(), w.path.as_str()),
            ("127.0.0.1:9000", "/hook?x=1")
        );
        let w = Webhook::parse("http://example.com").unwrap();
        assert_eq!((w.addr.as_str(), w.path.as_str()), ("example.com:80", "/"));
        assert!(Webhook::parse("https://example.com/").is_err());
        assert!(Webhook::parse("http://user:pw@example.com/").is_err());
        assert!(Webhook::parse("http://a/b c").is_err());
        assert!(Webhook::parse("http:///x").is_err());
    }
}
