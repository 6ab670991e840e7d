//! The vault's own affairs: the audit log, a key's usage, the master key (`rekey`) and the
//! argon2 parameters.

use keyledger::{Argon2Params, AuditQuery, Vault};
use serde_json::json;
use zeroize::Zeroizing;

use crate::args::{Argon2Cmd, AuditArgs, RekeyArgs};
use crate::exit::{invalid, CliResult};
use crate::input::{parse_positive, prompt_secret};
use crate::instant::parse_instant;
use crate::output::{self, write_stdout, Out};

/// `keyledger audit`: the audit log, newest first.
pub fn audit(vault: &Vault, args: &AuditArgs, out: &Out) -> CliResult {
    let AuditArgs {
        key_id,
        account_id,
        action,
        since,
        limit,
    } = args;
    let limit = match limit {
        Some(l) => Some(
            usize::try_from(parse_positive("limit", l)?)
                .map_err(|_| invalid("limit is too large"))?,
        ),
        None => None,
    };
    let query = AuditQuery {
        key_id: key_id.clone(),
        account_id: account_id.clone(),
        action: action.clone(),
        since: since
            .as_deref()
            .map(|s| parse_instant("--since", s))
            .transpose()?,
        limit,
    };
    let entries = vault.audit(&query)?;
    out.emit(&entries, || output::audit_table(&entries))
}

/// `keyledger rekey`: every signing secret re-encrypted under a new master key.
pub fn rekey(vault: &Vault, args: &RekeyArgs, out: &Out) -> CliResult {
    let RekeyArgs {
        prompt,
        generate,
        new_passphrase,
    } = args;
    let count = if *new_passphrase {
        let p = prompt_secret("new master passphrase: ")?;
        vault.rekey_passphrase(&p)?
    } else {
        let new = if *generate {
            keyledger::MasterKey::generate()?
        } else if *prompt {
            keyledger::MasterKey::from_base64(&prompt_secret("new master key (base64): ")?)?
        } else {
            let text = Zeroizing::new(std::env::var("KEYLEDGER_NEW_MASTER_KEY").map_err(|_| {
                invalid("give the new key in KEYLEDGER_NEW_MASTER_KEY, or use --prompt, --generate or --new-passphrase")
            })?);
            keyledger::MasterKey::from_base64(&text)?
        };
        let count = vault.rekey(new.clone())?;
        if *generate {
            eprintln!("the new master key follows; store it now (it is shown once) and restart every worker with it");
            let b64 = new.to_base64();
            if out.json {
                return out.emit(
                    &json!({"reencrypted": count, "master_key": b64.as_str()}),
                    String::new,
                );
            }
            write_stdout(&format!("{}\n", b64.as_str()))?;
            return Ok(());
        }
        count
    };
    out.emit(&json!({"reencrypted": count}), || {
        format!("re-encrypted {count} signing secret(s) under the new master key; restart every worker with it\n")
    })
}

/// `keyledger usage`: a key's last use, totals and hourly buckets.
pub fn usage(vault: &Vault, key_id: &str, out: &Out) -> CliResult {
    let u = vault.usage(key_id)?;
    out.emit(&u, || {
        let mut s = output::fields_block(&[
            ("key_id", u.key_id.clone()),
            ("last_used", output::opt_time(u.last_used_at, "never")),
            ("granted", u.granted.to_string()),
            ("refused", u.refused.to_string()),
        ]);
        if !u.hourly.is_empty() {
            let rows: Vec<Vec<String>> = u
                .hourly
                .iter()
                .map(|(h, n)| vec![output::iso8601(*h), n.to_string()])
                .collect();
            s.push('\n');
            s.push_str(&output::table(&["HOUR", "GRANTED"], &rows));
        }
        s
    })
}

/// `keyledger argon2 show|set`.
pub fn argon2(vault: &Vault, cmd: &Argon2Cmd, out: &Out) -> CliResult {
    if let Argon2Cmd::Set { m_kib, t, p } = cmd {
        vault.set_argon2_params(Argon2Params {
            m_kib: *m_kib,
            t: *t,
            p: *p,
        })?;
    }
    let a = vault.argon2_params();
    out.emit(&json!({"m_kib": a.m_kib, "t": a.t, "p": a.p}), || {
        format!("argon2id m={} KiB, t={}, p={}\n", a.m_kib, a.t, a.p)
    })
}
