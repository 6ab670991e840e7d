//! The commands that work on an open vault, one module per family.

mod accounts;
mod admin;
mod authorize;
// Events and usage reports.
mod events;
mod import;
// Holds.
mod holds;
mod keys;
mod routes;

use keyledger::Vault;

use crate::args::Command;
use crate::exit::CliResult;
use crate::output::Out;

/// Run `cmd` on `vault` (opened by the caller, which closes it).
pub fn with_vault(vault: &Vault, cmd: &Command, out: &Out) -> CliResult {
    let now = keyledger::system_now();
    match cmd {
        Command::Account(a) => accounts::account(vault, a, out),
        Command::Key(k) => keys::key(vault, k, out, now),
        Command::Route(r) => routes::route(vault, r, out),
        Command::Limit(l) => accounts::limit(vault, l, out),
        Command::Authorize(args) => authorize::authorize(vault, args, out),
        Command::Whoami { token } => authorize::whoami(vault, token, out),
        Command::Audit(args) => admin::audit(vault, args, out),
        Command::Rekey(args) => admin::rekey(vault, args, out),
        Command::Usage {
            report: Some(crate::args::UsageCmd::Report(args)),
            ..
        } => events::report(vault, args, out),
        Command::Usage { key_id, .. } => admin::usage(vault, key_id.as_deref().unwrap_or(""), out),
        Command::Events(cmd) => events::events(vault, cmd, out),
        Command::Argon2(cmd) => admin::argon2(vault, cmd, out),
        Command::Import(cmd) => import::import(vault, cmd, out),
        // Holds.
        Command::Holds(cmd) => holds::holds(vault, cmd, out),
        Command::Init
        | Command::Check { .. }
        | Command::Quickstart { .. }
        | Command::Migrate { .. }
        | Command::Dashboard { .. }
        | Command::MasterKey(_)
        | Command::Completions { .. }
        | Command::Man => {
            unreachable!("handled without an open vault")
        }
    }
}
