//! `keyledger holds create|settle|release|list|show`: credits reserved now and charged
//! when the real cost is known.

use keyledger::{Hold, SettleOptions, Vault};

use crate::args::HoldsCmd;
use crate::exit::CliResult;
use crate::input::{parse_positive, parse_u64, seconds_to_ms};
use crate::output::{self, Out};

fn hold_line(h: &Hold) -> String {
    let replayed = if h.replayed {
        " (recorded outcome)"
    } else {
        ""
    };
    match h.state {
        keyledger::HoldState::Active => format!(
            "{}: {} credits of {} held until {}{replayed}\n",
            h.hold_id,
            h.amount,
            h.account_id,
            output::iso8601(h.expires_at)
        ),
        keyledger::HoldState::Settled => format!(
            "{}: settled, {} of {} credits charged to {}{replayed}\n",
            h.hold_id, h.charged, h.amount, h.account_id
        ),
        state => format!(
            "{}: {}, {} credits back to {}{replayed}\n",
            h.hold_id,
            state.as_str(),
            h.amount,
            h.account_id
        ),
    }
}

/// Run one `holds` command.
pub fn holds(vault: &Vault, cmd: &HoldsCmd, out: &Out) -> CliResult {
    match cmd {
        HoldsCmd::Create {
            account,
            amount,
            ttl,
            idempotency_key,
        } => {
            let amount = parse_positive("amount", amount)?;
            let ttl = u64::try_from(seconds_to_ms("--ttl", ttl)?).unwrap_or(0);
            let h = vault.hold(account, amount, ttl, idempotency_key.as_deref())?;
            out.emit(&h, || hold_line(&h))
        }
        HoldsCmd::Settle {
            hold_id,
            actual,
            allow_over,
            idempotency_key,
        } => {
            let actual = parse_u64("actual", actual)?;
            let options = SettleOptions {
                allow_over: *allow_over,
                idempotency_key: idempotency_key.as_deref(),
            };
            let h = vault.settle(hold_id, actual, &options)?;
            out.emit(&h, || hold_line(&h))
        }
        HoldsCmd::Release { hold_id } => {
            let h = vault.release(hold_id)?;
            out.emit(&h, || hold_line(&h))
        }
        HoldsCmd::Show { hold_id } => {
            let h = vault.get_hold(hold_id)?;
            out.emit(&h, || hold_line(&h))
        }
        HoldsCmd::List { account } => {
            let list = vault.holds(account.as_deref())?;
            out.emit(&list, || {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|h| {
                        vec![
                            h.hold_id.clone(),
                            h.account_id.clone(),
                            h.amount.to_string(),
                            output::iso8601(h.expires_at),
                        ]
                    })
                    .collect();
                output::table(&["HOLD", "ACCOUNT", "AMOUNT", "EXPIRES"], &rows)
            })
        }
    }
}
