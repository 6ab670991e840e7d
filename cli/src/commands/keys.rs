//! `key …`: mint, list, show, revoke, disable, enable, rotate, scopes, expire.

use keyledger::{Millis, NewKey, Vault};
use serde_json::json;

use crate::args::KeyCmd;
use crate::exit::{invalid, CliResult};
use crate::input::{parse_metadata, seconds_to_ms};
use crate::instant::parse_instant;
use crate::output::{self, write_stdout, Out};

/// Print a freshly minted token: alone on stdout (or inside the JSON), once, with a
/// warning and the key's details on stderr.
fn print_new_token(
    out: &Out,
    token: &keyledger::SecretToken,
    info: &keyledger::KeyInfo,
    note: &str,
    now: Millis,
) -> CliResult {
    eprint!("{note}{}", output::key_details(info, now));
    eprintln!(
        "warning: this is the only time the token is shown; store it now: it cannot be shown again"
    );
    if let Some(secret) = token.signing_secret() {
        eprintln!("the second line of stdout is the key's signing secret (also shown once)");
        if out.json {
            return out.emit(
                &json!({"token": token.expose(), "signing_secret": secret, "key": info}),
                String::new,
            );
        }
        return write_stdout(&format!("{}\n{secret}\n", token.expose()));
    }
    if out.json {
        out.emit(&json!({"token": token.expose(), "key": info}), String::new)
    } else {
        write_stdout(&format!("{}\n", token.expose()))
    }
}

/// `keyledger key …`; a new token (create, rotate) is printed once, alone on stdout.
pub fn key(vault: &Vault, cmd: &KeyCmd, out: &Out, now: Millis) -> CliResult {
    let show = |k: keyledger::KeyInfo, verb: &str| -> CliResult {
        out.emit(&k, || {
            format!("{verb} key {}\n{}", k.key_id, output::key_details(&k, now))
        })
    };
    match cmd {
        KeyCmd::Create(c) => {
            let mut new = NewKey::new(c.account.as_str(), c.name.as_str(), c.scopes.iter())
                .prefix(c.prefix.as_str())
                .style(c.style.parse()?)
                .operator(c.operator)
                .signing(c.signing);
            if let Some(s) = &c.expires_in {
                new = new.expires_in_ms(seconds_to_ms("--expires-in", s)?);
            }
            if let Some(s) = &c.expires_at {
                new = new.expires_at(parse_instant("--expires-at", s)?);
            }
            if let Some(m) = parse_metadata(c.metadata.as_deref())? {
                new = new.metadata(m);
            }
            let (token, info) = vault.create_key(new)?;
            print_new_token(out, &token, &info, "created key:\n", now)
        }
        KeyCmd::List { account } => {
            let keys = vault.list_keys(account.as_deref())?;
            out.emit(&keys, || output::keys_table(&keys, now))
        }
        KeyCmd::Show { key_id } => show(vault.key(key_id)?, "showing"),
        KeyCmd::RevealSecret { key_id } => {
            let secret = vault.reveal_signing_secret(key_id)?;
            eprintln!("warning: this reveal is recorded in the audit log");
            out.emit(
                &json!({"key_id": key_id, "signing_secret": secret.as_str()}),
                || format!("{}\n", secret.as_str()),
            )
        }
        KeyCmd::Revoke { key_id } => show(vault.revoke_key(key_id)?, "revoked"),
        KeyCmd::Disable { key_id } => show(vault.disable_key(key_id)?, "disabled"),
        KeyCmd::Enable { key_id } => show(vault.enable_key(key_id)?, "enabled"),
        KeyCmd::Rotate { key_id, grace } => {
            let grace_ms = seconds_to_ms("--grace", grace)?;
            let (token, info) = vault.rotate_key(key_id, grace_ms)?;
            let old = vault.key(key_id)?;
            let note = format!(
                "rotated {key_id} -> {}; the old key {} {}\nnew key:\n",
                info.key_id,
                if grace_ms == 0 {
                    "stopped at"
                } else {
                    "expires at"
                },
                output::opt_time(old.expires_at, "never"),
            );
            print_new_token(out, &token, &info, &note, now)
        }
        KeyCmd::Scopes { key_id, scopes } => show(vault.set_scopes(key_id, scopes)?, "updated"),
        KeyCmd::Expire {
            key_id,
            at,
            in_,
            never,
        } => {
            let when = match (at, in_, never) {
                (Some(at), _, _) => Some(parse_instant("--at", at)?),
                (None, Some(secs), _) => Some(
                    now.checked_add(seconds_to_ms("--in", secs)?)
                        .ok_or_else(|| invalid("--in is too large"))?,
                ),
                (None, None, true) => None,
                (None, None, false) => return Err(invalid("give --at, --in or --never")),
            };
            show(vault.set_expiry(key_id, when)?, "updated")
        }
    }
}
