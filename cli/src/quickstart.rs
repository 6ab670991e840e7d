//! `keyledger quickstart`: build a demo vault and narrate a few authorizations.

use std::path::Path;

use keyledger::{
    Argon2Params, AuditQuery, AuthorizeOptions, Error, KeyInfo, NewKey, Target, Vault, VaultOptions,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::{output, quickstart_vault, CliError, CliResult, Out};

const ACCOUNT: &str = "acct_demo";
const ROUTES: [(&str, &str, &str, u64); 2] = [
    ("POST", "/api/v1/messaging/send", "sms:send", 1),
    ("GET", "/api/v1/numbers/mine", "numbers:read", 0),
];

/// Run the demo in `dir`; refuses a vault there that already holds anything.
pub fn run(dir: &Path, argon2_fast: bool, out: &Out) -> CliResult {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let path = quickstart_vault(dir);
    let existed = path.exists();
    let vault = Vault::open_with(
        &path,
        VaultOptions {
            actor: Some("cli".into()),
            argon2: argon2_fast.then_some(Argon2Params::INSECURE_FAST),
            ..Default::default()
        },
    )?;
    let result = (|| {
        if existed
            && (!vault.list_accounts()?.is_empty()
                || !vault.list_keys(None)?.is_empty()
                || !vault.list_routes()?.is_empty())
        {
            return Err(CliError::Vault(Error::AlreadyExists(format!(
                "a vault with data at {} (quickstart will not overwrite it; use another --dir)",
                path.display()
            ))));
        }
        demo(&vault, &path, out)
    })();
    let closed = vault.close();
    result?;
    closed?;
    Ok(())
}

/// One narrated authorization.
struct Step {
    what: String,
    request: String,
    result: Result<keyledger::Grant, Error>,
}

impl Step {
    fn narrate(&self) -> String {
        match &self.result {
            Ok(g) => format!(
                "granted: charged {}, {} credits left{}",
                g.charged,
                g.credits,
                if g.charged == 0 { " (free route)" } else { "" }
            ),
            Err(e) => format!("refused {} {}: {}", e.status(), e.code(), e.body()),
        }
    }

    fn to_json(&self) -> Value {
        match &self.result {
            Ok(g) => {
                json!({"what": self.what, "request": self.request, "granted": true, "grant": g})
            }
            Err(e) => json!({
                "what": self.what, "request": self.request, "granted": false,
                "status": e.status(), "code": e.code(), "body": e.body(),
            }),
        }
    }
}

fn demo(vault: &Vault, path: &Path, out: &Out) -> CliResult {
    let account = vault.create_account(ACCOUNT, 100, Some(json!({"demo": true})))?;
    for (m, p, s, c) in ROUTES {
        vault.add_route(m, p, s, c)?;
    }
    let (token, key) = vault.create_key(
        NewKey::new(ACCOUNT, "quickstart demo", ["sms:send", "numbers:read"]).prefix("dial_live"),
    )?;
    let redacted = keyledger::redact(token.expose());
    let tampered = tamper(token.expose());

    let mut steps = Vec::new();
    let mut call = |what: &str, tok: &str, method: &str, p: &str| {
        steps.push(Step {
            what: what.to_string(),
            request: format!("{method} {p}"),
            result: vault.authorize(tok, Target::route(method, p), &AuthorizeOptions::default()),
        });
    };
    call(
        "send an SMS (costs 1 credit)",
        token.expose(),
        "POST",
        "/api/v1/messaging/send",
    );
    call(
        "read my numbers (free)",
        token.expose(),
        "GET",
        "/api/v1/numbers/mine",
    );
    call(
        "call a route no rule allows",
        token.expose(),
        "GET",
        "/api/v1/admin/export",
    );
    call(
        "send with a tampered token",
        &tampered,
        "POST",
        "/api/v1/messaging/send",
    );
    drop(token);

    let balance = vault.balance(ACCOUNT)?;
    let audit = vault.audit(&AuditQuery {
        limit: Some(10),
        ..Default::default()
    })?;

    if out.json {
        return out.emit(
            &json!({
                "vault": path,
                "account": account,
                "routes": vault.list_routes()?,
                "key": key,
                "redacted": redacted,
                "steps": steps.iter().map(Step::to_json).collect::<Vec<_>>(),
                "balance": balance,
                "audit": audit,
            }),
            String::new,
        );
    }
    out.emit(&(), || {
        narrate(
            path, vault, &account, &key, &redacted, &steps, &balance, &audit,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn narrate(
    path: &Path,
    vault: &Vault,
    account: &keyledger::Account,
    key: &KeyInfo,
    redacted: &str,
    steps: &[Step],
    balance: &keyledger::Balance,
    audit: &[keyledger::AuditEntry],
) -> String {
    let p = vault.argon2_params();
    let mut s = format!(
        "keyledger quickstart\n\n\
         vault: {} (argon2id m={} KiB, t={}, p={})\n\n",
        path.display(),
        p.m_kib,
        p.t,
        p.p
    );
    s.push_str(&format!(
        "1. created account {} with {} credits\n",
        account.id, account.credits
    ));
    s.push_str("2. added route rules (anything else is denied):\n");
    for (m, pat, sc, c) in ROUTES {
        s.push_str(&format!("     {m:<4} {pat:<24} -> {sc} (cost {c})\n"));
    }
    s.push_str(&format!(
        "3. minted key {} for {}: name {:?}, scopes {}\n   \
         (the full token stays inside this demo; `key create` prints a real one once)\n",
        redacted,
        key.account_id,
        key.name,
        key.scopes.join(" ")
    ));
    for (i, st) in steps.iter().enumerate() {
        s.push_str(&format!(
            "{}. {}: authorize {}\n   -> {}\n",
            i + 4,
            st.what,
            st.request,
            st.narrate()
        ));
    }
    s.push_str(&format!(
        "\nfinal balance of {}: {} credits ({} added in total)\n\naudit tail (newest first):\n",
        balance.account_id, balance.credits, balance.total_credits
    ));
    s.push_str(&output::audit_table(audit));
    s.push_str(&format!(
        "\nexplore it: keyledger --vault {} key list\n",
        path.display()
    ));
    s
}

/// The token with one character of its secret changed (so it fails the checksum).
fn tamper(token: &str) -> Zeroizing<String> {
    let mut t = Zeroizing::new(token.to_string());
    let i = t.len().saturating_sub(10);
    // Tokens are ASCII (base62 secret), so byte `i` is a char boundary.
    if i < t.len() && t.is_char_boundary(i) && t.is_char_boundary(i + 1) {
        let replacement = if &t[i..=i] == "A" { "B" } else { "A" };
        t.replace_range(i..=i, replacement);
    }
    t
}
