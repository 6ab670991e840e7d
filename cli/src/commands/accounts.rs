//! `account …` (accounts, credits, refills) and `limit …` (rate limits).

use keyledger::Vault;

use crate::args::{AccountCmd, LimitCmd};
use crate::exit::{invalid, CliResult};
use crate::input::{parse_metadata, parse_positive, parse_u64, seconds_to_ms};
use crate::output::{self, Out};

/// One line: an account's credits and its total added.
fn balance_line(b: &keyledger::Balance) -> String {
    // Holds: what active holds reserve, when any do.
    let held = if b.held > 0 {
        format!(", {} held, {} available", b.held, b.available)
    } else {
        String::new()
    };
    format!(
        "{}: {} credits ({} added in total{held})\n",
        b.account_id, b.credits, b.total_credits
    )
}

/// `keyledger account create|show|list|top-up|debit|balance|refill`.
pub fn account(vault: &Vault, cmd: &AccountCmd, out: &Out) -> CliResult {
    match cmd {
        AccountCmd::Create {
            id,
            credits,
            metadata,
        } => {
            let credits = parse_u64("credits", credits)?;
            let metadata = parse_metadata(metadata.as_deref())?;
            let a = vault.create_account(id, credits, metadata)?;
            out.emit(&a, || {
                format!("created account {} with {} credits\n", a.id, a.credits)
            })
        }
        AccountCmd::Show { id } => {
            let a = vault.account(id)?;
            out.emit(&a, || {
                output::fields_block(&[
                    ("id", a.id.clone()),
                    ("credits", a.credits.to_string()),
                    ("total_credits", a.total_credits.to_string()),
                    ("created", output::iso8601(a.created_at)),
                    ("metadata", a.metadata.to_string()),
                    (
                        "refill",
                        a.refill.map_or_else(
                            || "none".to_string(),
                            |r| serde_json::to_string(&r).unwrap_or_default(),
                        ),
                    ),
                ])
            })
        }
        AccountCmd::List => {
            let all = vault.list_accounts()?;
            out.emit(&all, || {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.clone(),
                            a.credits.to_string(),
                            a.total_credits.to_string(),
                            output::iso8601(a.created_at),
                        ]
                    })
                    .collect();
                output::table(&["ID", "CREDITS", "TOTAL", "CREATED"], &rows)
            })
        }
        AccountCmd::TopUp {
            id,
            amount,
            reference,
        } => {
            let amount = parse_positive("amount", amount)?;
            let b = vault.top_up(id, amount, reference.as_deref())?;
            out.emit(&b, || balance_line(&b))
        }
        AccountCmd::Debit {
            id,
            amount,
            idempotency_key,
        } => {
            let amount = parse_positive("amount", amount)?;
            let b = vault.debit(id, amount, idempotency_key.as_deref())?;
            out.emit(&b, || balance_line(&b))
        }
        AccountCmd::Balance { id } => {
            let b = vault.balance(id)?;
            out.emit(&b, || balance_line(&b))
        }
        AccountCmd::Refill {
            id,
            amount,
            interval,
            day,
            clear,
        } => {
            let a = if *clear {
                vault.clear_refill(id)?
            } else {
                let amount = parse_u64("amount", amount.as_deref().unwrap_or_default())?;
                let interval = match interval.as_deref() {
                    Some("monthly") => keyledger::RefillInterval::Monthly,
                    _ => keyledger::RefillInterval::Daily,
                };
                let day = u8::try_from(parse_positive("day", day)?)
                    .map_err(|_| invalid("--day must be between 1 and 28"))?;
                vault.set_refill(id, amount, interval, day)?
            };
            out.emit(&a, || match &a.refill {
                Some(r) => format!(
                    "account {} refills to {} credits {}\n",
                    a.id,
                    r.amount,
                    match r.interval {
                        keyledger::RefillInterval::Daily => "every day at 00:00 UTC".to_string(),
                        keyledger::RefillInterval::Monthly =>
                            format!("on day {} of every month at 00:00 UTC", r.day),
                    }
                ),
                None => format!("account {} has no refill plan\n", a.id),
            })
        }
    }
}

/// `keyledger limit set|remove|list`, on a key (`--key`) or an account (`--account`).
pub fn limit(vault: &Vault, cmd: &LimitCmd, out: &Out) -> CliResult {
    let table = |limits: &[keyledger::RateLimit]| {
        let rows: Vec<Vec<String>> = limits
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.limit.to_string(),
                    format!("{}s", l.duration_ms as f64 / 1000.0),
                    if l.auto_apply {
                        "every call"
                    } else {
                        "when named"
                    }
                    .to_string(),
                ]
            })
            .collect();
        output::table(&["NAME", "LIMIT", "PER", "APPLIES"], &rows)
    };
    match cmd {
        LimitCmd::Set {
            name,
            limit,
            seconds,
            owner,
            named_only,
        } => {
            let limit = parse_positive("limit", limit)?;
            let ms = seconds_to_ms("seconds", seconds)?;
            let ms = u64::try_from(ms).map_err(|_| invalid("seconds must be positive"))?;
            let l = vault.set_ratelimit(owner.owner()?, name, limit, ms, !named_only)?;
            out.emit(&l, || table(std::slice::from_ref(&l)))
        }
        LimitCmd::Remove { name, owner } => {
            let l = vault.remove_ratelimit(owner.owner()?, name)?;
            out.emit(&l, || format!("removed rate limit {}\n", l.name))
        }
        LimitCmd::List { owner } => {
            let all = vault.ratelimits(owner.owner()?)?;
            out.emit(&all, || table(&all))
        }
    }
}
