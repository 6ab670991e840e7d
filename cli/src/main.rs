//! `keyledger`: the command-line tool over a keyledger vault.
//!
//! Manage accounts, keys and routes, authorize a token by hand, read the audit log and a
//! key's usage, and run a narrated `quickstart`. Tables for people, `--json` for scripts
//! (one JSON value on stdout: the library's own types, times as unix milliseconds).
//!
//! A new token is printed once, on stdout, alone on its line (so `TOKEN=$(keyledger key
//! create …)` works), with a warning on stderr; no other command prints a secret. Commands
//! that take a token (`authorize`, `whoami`, `check`) read it from stdin when it is given
//! as `-`, which keeps it out of shell history and `ps`.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok / granted |
//! | 1 | usage error (bad flags) or any other error (also `idempotency_conflict`, `duplicate_request`, `ambiguous_path`) |
//! | 2 | refused 401 (`invalid_api_key`, `api_key_inactive`, `api_key_expired`, `invalid_signature`), or `check`: not a key |
//! | 3 | refused 403 (`missing_scope`, `route_not_allowed`; also `route match` with no rule) |
//! | 4 | refused 402 (`insufficient_credits`) |
//! | 5 | refused 429 (`rate_limited`, `too_many_attempts`) |
//! | 6 | `not_found` (including "no vault at this path") |
//! | 7 | `already_exists` |
//! | 8 | `invalid_argument` (a zero, negative or over-u64 amount, bad JSON metadata, …) |
//! | 9 | `storage`, `vault_locked`, `wrong_master_key`, `vault_closed` |
//!
//! On error, `error: <message>` goes to stderr; with `--json` the error's JSON body
//! (`{"success": false, "error": <code>, "message": …, …}`) also goes to stdout.
//!
//! `--argon2-fast` (hidden) creates a new vault with `Argon2Params::INSECURE_FAST`: for
//! tests only. It never changes an existing vault (`keyledger argon2 set` does, audited),
//! and a build without the `insecure-fast-argon2` feature refuses it.
//!
//! The code: `args.rs` (the command line), `commands/` (one module per command family on an
//! open vault), `exit.rs` (errors and their exit codes), `input.rs` (argument parsing and
//! secrets from stdin or the terminal), `instant.rs` (times: unix ms or RFC 3339),
//! `output.rs` (tables and JSON), `quickstart.rs`, and `dashboard/` (the operator
//! dashboard: axum on a tokio runtime). Everything goes through the public API of the
//! `keyledger` library.

mod args;
mod commands;
mod dashboard;
mod exit;
mod input;
mod instant;
mod output;
mod quickstart;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use keyledger::{Argon2Params, Error, Vault, VaultOptions};
use serde_json::json;

use args::{Cli, Command, MasterKeyCmd};
use exit::{exit_code, CliError, CliResult};
use input::{prompt_secret, read_token};
use output::{write_stdout, Out};

fn vault_options(cli: &Cli) -> CliResult<VaultOptions> {
    let mut options = VaultOptions {
        actor: Some(match cli.command {
            Command::Dashboard { .. } => "dashboard".into(),
            _ => "cli".into(),
        }),
        exclusive: cli.exclusive,
        argon2: cli.argon2_fast.then_some(Argon2Params::INSECURE_FAST),
        ..Default::default()
    };
    if cli.master_key_prompt {
        let text = prompt_secret("master key (base64): ")?;
        options.master_key = Some(keyledger::MasterKey::from_base64(&text)?);
    } else if cli.passphrase_prompt {
        options.master_passphrase = Some(prompt_secret("master passphrase: ")?);
    }
    Ok(options)
}

/// A PostgreSQL location (the library refuses it unless built with `postgres`).
fn is_url(vault: &Path) -> bool {
    vault
        .to_str()
        .is_some_and(|v| v.starts_with("postgresql://") || v.starts_with("postgres://"))
}

/// Open an existing vault (every command but `init` and `quickstart`): a mistyped path
/// must not silently create an empty vault.
fn open_existing(cli: &Cli) -> CliResult<Vault> {
    if !is_url(&cli.vault) && !cli.vault.exists() {
        return Err(CliError::Vault(Error::NotFound(format!(
            "vault {} (run `keyledger init` first, or set --vault / KEYLEDGER_VAULT)",
            cli.vault.display()
        ))));
    }
    Ok(Vault::open_with(&cli.vault, vault_options(cli)?)?)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors; here 2 means "refused 401", so usage is 1.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let out = Out { json: cli.json };
    match run(&cli, &out) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let (code, body, message) = match &err {
                CliError::Vault(e) => (exit_code(e), e.body(), e.to_string()),
                CliError::Other(m) => (
                    1,
                    json!({"success": false, "error": "error", "message": m}),
                    m.clone(),
                ),
            };
            if cli.json {
                let _ = write_stdout(&format!("{body}\n"));
            }
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}

/// Run the command; `Ok(code)` for commands that answer with a non-zero code without an
/// error (`check`).
fn run(cli: &Cli, out: &Out) -> CliResult<u8> {
    match &cli.command {
        Command::Init => {
            let vault = Vault::open_with(&cli.vault, vault_options(cli)?)?;
            let mode = vault.cache_mode();
            // A URL's password never reaches the output (`Vault::path` redacts it).
            let shown = vault.path().to_path_buf();
            vault.close()?;
            let path = if is_url(&cli.vault) {
                shown
            } else {
                std::fs::canonicalize(&cli.vault).unwrap_or_else(|_| cli.vault.clone())
            };
            out.emit(&json!({"path": path, "cache_mode": mode}), || {
                format!("vault ready at {}\n", path.display())
            })?;
            Ok(0)
        }
        Command::Check { token } => {
            let token = read_token(token)?;
            let ok = keyledger::looks_like_key(&token);
            let redacted = keyledger::redact(&token);
            out.emit(&json!({"looks_like_key": ok, "redacted": redacted}), || {
                if ok {
                    format!("{redacted} looks like a keyledger key (format and checksum)\n")
                } else {
                    "not a keyledger key (bad format or checksum)\n".to_string()
                }
            })?;
            Ok(if ok { 0 } else { 2 })
        }
        Command::MasterKey(MasterKeyCmd::Generate) => {
            let key = keyledger::MasterKey::generate()?;
            let b64 = key.to_base64();
            eprintln!(
                "warning: store this key now (e.g. in KEYLEDGER_MASTER_KEY); it is shown once"
            );
            out.emit(&json!({"master_key": b64.as_str()}), || {
                format!("{}\n", b64.as_str())
            })?;
            Ok(0)
        }
        Command::Migrate { from, to } => {
            let report = keyledger::migrate(from, to, &keyledger::MigrateOptions::default())?;
            let tables: serde_json::Map<String, serde_json::Value> = report
                .tables
                .iter()
                .map(|(t, n)| ((*t).to_string(), json!(n)))
                .collect();
            out.emit(
                &json!({"tables": tables, "digest": report.digest, "verified": report.verified}),
                || format!("migrated into an empty vault:\n{report}\n"),
            )?;
            Ok(0)
        }
        Command::Quickstart { dir } => {
            quickstart::run(dir, cli.argon2_fast, out)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "keyledger", &mut script);
            write_stdout(&String::from_utf8_lossy(&script))?;
            Ok(0)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| CliError::Other(format!("cannot render the man page: {e}")))?;
            write_stdout(&String::from_utf8_lossy(&page))?;
            Ok(0)
        }
        Command::Dashboard { listen } => {
            dashboard::serve(open_existing(cli)?, listen).map_err(CliError::Other)?;
            Ok(0)
        }
        cmd => {
            let vault = open_existing(cli)?;
            let result = commands::with_vault(&vault, cmd, out);
            let closed = vault.close();
            result?;
            closed?;
            Ok(0)
        }
    }
}

/// The vault path inside a quickstart directory.
fn quickstart_vault(dir: &Path) -> PathBuf {
    dir.join("keyledger.redb")
}
