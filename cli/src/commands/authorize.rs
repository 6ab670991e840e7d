//! `authorize` and `whoami`: a token checked as a host would check it.

use keyledger::{AuthorizeOptions, Target, Vault};

use crate::args::AuthorizeArgs;
use crate::exit::{invalid, CliResult};
use crate::input::{parse_u64, read_token};
use crate::output::{self, write_stdout, Out};

/// `keyledger authorize`: grants print the grant; refusals print their status and body
/// (unless `--json`) and exit with the refusal's code.
pub fn authorize(vault: &Vault, args: &AuthorizeArgs, out: &Out) -> CliResult {
    let AuthorizeArgs {
        token,
        route,
        scope,
        cost,
        idempotency_key,
        signature,
        body,
    } = args;
    let token = read_token(token)?;
    let cost = cost.as_deref().map(|c| parse_u64("cost", c)).transpose()?;
    let (method, path);
    let target = match (route, scope) {
        (Some(r), _) => {
            let r = r.trim();
            let (m, p) = r
                .split_once(char::is_whitespace)
                .ok_or_else(|| invalid("--route must be \"METHOD PATH\""))?;
            method = m.to_string();
            path = p.trim().to_string();
            Target::route(&method, &path)
        }
        (None, Some(s)) => Target::scope(s),
        (None, None) => return Err(invalid("give --route or --scope")),
    };
    let options = AuthorizeOptions {
        cost,
        idempotency_key: idempotency_key.as_deref(),
        signature: signature.as_deref(),
        body: body.as_deref().map(str::as_bytes),
        ..Default::default()
    };
    match vault.authorize(&token, target, &options) {
        Ok(grant) => out.emit(&grant, || {
            let mut f = vec![
                ("result", "granted".to_string()),
                ("account", grant.account_id.clone()),
                ("key_id", grant.key_id.clone()),
                ("key_name", grant.key_name.clone()),
                ("auth_method", grant.auth_method.as_str().to_string()),
                ("scopes", grant.scopes.join(" ")),
                ("charged", grant.charged.to_string()),
                ("credits", grant.credits.to_string()),
                ("total_credits", grant.total_credits.to_string()),
            ];
            if grant.replayed {
                f.push(("replayed", "true".into()));
            }
            for rl in &grant.ratelimits {
                f.push((
                    "ratelimit",
                    format!(
                        "{}: {}/{} left, resets {}",
                        rl.name,
                        rl.remaining,
                        rl.max,
                        output::iso8601(rl.reset_ms)
                    ),
                ));
            }
            output::fields_block(&f)
        }),
        Err(e) if e.is_refusal() => {
            if !out.json {
                write_stdout(&format!(
                    "refused: {} {}\nbody: {}\n",
                    e.status(),
                    e.code(),
                    e.body()
                ))?;
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

/// `keyledger whoami`: who a token belongs to and what its account has left.
pub fn whoami(vault: &Vault, token: &str, out: &Out) -> CliResult {
    let token = read_token(token)?;
    let w = vault.whoami(&token)?;
    out.emit(&w, || {
        output::fields_block(&[
            ("account", w.account_id.clone()),
            ("key_id", w.key_id.clone()),
            ("key_name", w.key_name.clone()),
            ("auth_method", w.auth_method.as_str().to_string()),
            ("scopes", w.scopes.join(" ")),
            ("credits", w.credits.to_string()),
            ("total_credits", w.total_credits.to_string()),
        ])
    })
}
