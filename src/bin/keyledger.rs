//! `keyledger`: the command-line tool over a keyledger vault (SPEC §9, §11).
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
//! | 1 | usage error (bad flags) or any other error |
//! | 2 | refused 401 (`invalid_api_key`, `api_key_inactive`, `api_key_expired`, `invalid_signature`), or `check`: not a key |
//! | 3 | refused 403 (`missing_scope`, `route_not_allowed`; also `route match` with no rule) |
//! | 4 | refused 402 (`insufficient_credits`) |
//! | 5 | refused 429 (`rate_limited`) |
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

#[path = "keyledger/dashboard/mod.rs"]
mod dashboard;
#[path = "keyledger/output.rs"]
mod output;
#[path = "keyledger/quickstart.rs"]
mod quickstart;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};
use keyledger::{
    Argon2Params, AuditQuery, AuthorizeOptions, Error, Millis, NewKey, Target, Vault, VaultOptions,
};
use serde::Serialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

const EXIT_CODES: &str = "\
Exit codes:
  0  ok / granted
  1  usage error or other error
  2  refused 401 (invalid_api_key, api_key_inactive, api_key_expired, invalid_signature);
     `check`: not a key
  3  refused 403 (missing_scope, route_not_allowed; `route match` with no rule)
  4  refused 402 (insufficient_credits)
  5  refused 429 (rate_limited)
  6  not_found (also: no vault at --vault; run `keyledger init`)
  7  already_exists
  8  invalid_argument (zero, negative or over-u64 amounts, bad metadata JSON, ...)
  9  storage, vault_locked, wrong_master_key, vault_closed

Tokens: `authorize`, `whoami` and `check` read the token from stdin when it is `-`
(e.g. `keyledger authorize - --route 'GET /x' < token.txt`), keeping it out of shell history.
A new token is printed once by `key create` / `key rotate`; it cannot be shown again.
With --json every command prints one JSON value on stdout; on error, the error body.";

/// keyledger: an embedded API-key vault with credits.
#[derive(Parser, Debug)]
#[command(name = "keyledger", version, about, after_long_help = EXIT_CODES)]
struct Cli {
    /// The vault file.
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_VAULT",
        default_value = "./keyledger.redb"
    )]
    vault: PathBuf,
    /// Machine output: one JSON value on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Open the vault exclusively (a second opener gets vault_locked).
    #[arg(long, global = true)]
    exclusive: bool,
    /// TEST ONLY: create a new vault with insecure, fast argon2 parameters (test builds).
    #[arg(long, global = true, hide = true)]
    argon2_fast: bool,
    /// Ask for the master key (base64) on the terminal instead of reading
    /// KEYLEDGER_MASTER_KEY. Never pass a key as an argument: it would land in shell history.
    #[arg(long, global = true, conflicts_with = "passphrase_prompt")]
    master_key_prompt: bool,
    /// Ask for the master passphrase on the terminal (the key is derived with argon2id).
    #[arg(long, global = true)]
    passphrase_prompt: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the vault file (mode 0600) if it does not exist.
    Init,
    /// Accounts and their credits.
    #[command(subcommand)]
    Account(AccountCmd),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Route rules: (METHOD, PATTERN) -> (SCOPE, cost).
    #[command(subcommand)]
    Route(RouteCmd),
    /// Rate limits on keys and accounts, shared by every process.
    #[command(subcommand)]
    Limit(LimitCmd),
    /// Authorize a token for a route or a scope, as a host would (debits credits).
    #[command(group(ArgGroup::new("target").required(true).args(["route", "scope"])))]
    Authorize {
        /// The token, or `-` to read it from stdin (keeps it out of shell history).
        token: String,
        /// The request, as "METHOD PATH".
        #[arg(long, value_name = "METHOD PATH")]
        route: Option<String>,
        /// A scope, for non-HTTP work.
        #[arg(long)]
        scope: Option<String>,
        /// Credits to charge (default: the route's cost; 0 for --scope).
        #[arg(long, allow_hyphen_values = true)]
        cost: Option<String>,
        /// A repeat within 24 h replays the first grant and charges nothing.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The request signature, for signing keys: `t=<unix seconds>,v2=<hex>` (format 2;
        /// give the query string in the --route path, as sent).
        #[arg(long)]
        signature: Option<String>,
        /// The request body the signature covers.
        #[arg(long)]
        body: Option<String>,
    },
    /// Re-encrypt every signing secret under a new master key, all or nothing. The new
    /// key comes from KEYLEDGER_NEW_MASTER_KEY, a prompt (--prompt), or --generate (printed
    /// once). The current key: KEYLEDGER_MASTER_KEY, --master-key-prompt or --passphrase-prompt.
    Rekey {
        /// Ask for the new key (base64) on the terminal.
        #[arg(long, conflicts_with_all = ["generate", "new_passphrase"])]
        prompt: bool,
        /// Generate the new key and print it once.
        #[arg(long, conflicts_with = "new_passphrase")]
        generate: bool,
        /// Ask for a new passphrase instead of a key.
        #[arg(long)]
        new_passphrase: bool,
    },
    /// Master keys: `keyledger master-key generate` prints a fresh one (base64) for
    /// KEYLEDGER_MASTER_KEY.
    #[command(subcommand)]
    MasterKey(MasterKeyCmd),
    /// Who a token belongs to and what its account has left.
    Whoami {
        /// The token, or `-` to read it from stdin (keeps it out of shell history).
        token: String,
    },
    /// The audit log, newest first.
    Audit {
        /// Only entries about this key.
        #[arg(long = "key")]
        key_id: Option<String>,
        /// Only entries about this account.
        #[arg(long = "account")]
        account_id: Option<String>,
        /// Only this action (key_created, auth_refused, ...).
        #[arg(long)]
        action: Option<String>,
        /// Only entries at or after this time (unix milliseconds).
        #[arg(long, value_name = "UNIX_MS", allow_hyphen_values = true)]
        since: Option<String>,
        /// At most this many entries (default 100).
        #[arg(long, allow_hyphen_values = true)]
        limit: Option<String>,
    },
    /// A key's usage: last use, totals, hourly buckets.
    Usage {
        /// The key id.
        key_id: String,
    },
    /// Whether a string has the format and checksum of a key (no vault access).
    Check {
        /// The token, or `-` to read it from stdin (keeps it out of shell history).
        token: String,
    },
    /// Serve the operator dashboard over the vault (SPEC §14). The admin token comes from
    /// KEYLEDGER_ADMIN_TOKEN, or is generated and printed once on stderr.
    Dashboard {
        /// Address to listen on (loopback by default; port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8477")]
        listen: String,
    },
    /// Build a demo vault in DIR/keyledger.redb (ignores --vault) and narrate a few
    /// authorizations. Refuses a vault there that already holds data.
    Quickstart {
        /// Where to create the demo vault (created if missing).
        #[arg(long, default_value = "./keyledger-quickstart")]
        dir: PathBuf,
    },
    /// The vault's argon2id parameters for new hashes.
    #[command(subcommand)]
    Argon2(Argon2Cmd),
}

#[derive(Subcommand, Debug)]
enum Argon2Cmd {
    /// Print the parameters new hashes get.
    Show,
    /// Change them (audited as argon2_params_changed). Existing hashes are rehashed at
    /// their next verification only where the new parameters are stronger. Below the
    /// OWASP minimum (m=19456 KiB with t=2, or an equivalent) is refused.
    Set {
        /// Memory in KiB.
        #[arg(long)]
        m_kib: u32,
        /// Passes.
        #[arg(long)]
        t: u32,
        /// Lanes.
        #[arg(long, default_value = "1")]
        p: u32,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCmd {
    /// Create an account.
    Create {
        /// Account id (1-128 bytes).
        id: String,
        /// Initial credits.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        credits: String,
        /// A JSON object.
        #[arg(long)]
        metadata: Option<String>,
    },
    /// Show an account.
    Show { id: String },
    /// List every account.
    List,
    /// Add credits.
    TopUp {
        id: String,
        /// Credits to add (> 0).
        #[arg(allow_hyphen_values = true)]
        amount: String,
        /// Kept in the audit entry (e.g. an invoice id).
        #[arg(long)]
        reference: Option<String>,
    },
    /// Debit credits (for callers authenticated some other way).
    Debit {
        id: String,
        /// Credits to debit (> 0).
        #[arg(allow_hyphen_values = true)]
        amount: String,
        /// A repeat within 24 h charges nothing.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// An account's credits.
    Balance { id: String },
    /// A quota that refills: credits are set to --amount at the first call after each
    /// daily or monthly boundary (UTC). `--clear` removes the plan.
    #[command(group(ArgGroup::new("plan").required(true).args(["amount", "clear"])))]
    Refill {
        id: String,
        /// Credits after each refill.
        #[arg(long, allow_hyphen_values = true, requires = "interval")]
        amount: Option<String>,
        /// `daily` or `monthly`.
        #[arg(long, value_parser = ["daily", "monthly"])]
        interval: Option<String>,
        /// Day of the month (1-28) for monthly refills.
        #[arg(long, default_value = "1", allow_hyphen_values = true)]
        day: String,
        /// Remove the refill plan.
        #[arg(long)]
        clear: bool,
    },
}

/// Which key or account a rate limit belongs to.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct LimitOwnerArgs {
    /// A key's limit.
    #[arg(long = "key")]
    key_id: Option<String>,
    /// An account's limit, shared by all its keys.
    #[arg(long = "account")]
    account_id: Option<String>,
}

impl LimitOwnerArgs {
    fn owner(&self) -> keyledger::LimitOwner<'_> {
        match (&self.key_id, &self.account_id) {
            (Some(k), _) => keyledger::LimitOwner::Key(k),
            (None, Some(a)) => keyledger::LimitOwner::Account(a),
            (None, None) => unreachable!("clap requires one of --key / --account"),
        }
    }
}

#[derive(Subcommand, Debug)]
enum LimitCmd {
    /// Set (or replace) a limit of LIMIT calls per SECONDS.
    Set {
        name: String,
        #[arg(allow_hyphen_values = true)]
        limit: String,
        /// The window, in whole seconds.
        #[arg(allow_hyphen_values = true)]
        seconds: String,
        #[command(flatten)]
        owner: LimitOwnerArgs,
        /// Apply only when a call names it (default: every authorize checks it).
        #[arg(long)]
        named_only: bool,
    },
    /// Remove a limit.
    Remove {
        name: String,
        #[command(flatten)]
        owner: LimitOwnerArgs,
    },
    /// List the limits of a key or an account.
    List {
        #[command(flatten)]
        owner: LimitOwnerArgs,
    },
}

#[derive(Subcommand, Debug)]
enum MasterKeyCmd {
    /// Print a fresh random master key (base64 of 32 bytes).
    Generate,
}

#[derive(Subcommand, Debug)]
enum KeyCmd {
    /// Mint a key; its token is printed once.
    Create(KeyCreate),
    /// List keys (never their secrets).
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
    /// Show a key.
    Show { key_id: String },
    /// Print a signing key's signing secret (needs the master key; audited).
    RevealSecret { key_id: String },
    /// Revoke a key for good.
    Revoke { key_id: String },
    /// Disable a key (refused as api_key_inactive until enabled).
    Disable { key_id: String },
    /// Enable a disabled key.
    Enable { key_id: String },
    /// Mint a replacement key; the old one expires after --grace. The new token is printed once.
    Rotate {
        key_id: String,
        /// Seconds the old key keeps working (default 0: it stops now).
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        grace: String,
    },
    /// Replace a key's scopes.
    Scopes {
        key_id: String,
        /// The new scopes (none: the key grants nothing).
        scopes: Vec<String>,
    },
    /// Set or clear a key's expiry.
    #[command(group(ArgGroup::new("when").required(true).args(["at", "in_", "never"])))]
    Expire {
        key_id: String,
        /// Expire at this instant (unix milliseconds).
        #[arg(long, value_name = "UNIX_MS", allow_hyphen_values = true)]
        at: Option<String>,
        /// Expire this many seconds from now.
        #[arg(long = "in", value_name = "SECONDS", allow_hyphen_values = true)]
        in_: Option<String>,
        /// Never expire.
        #[arg(long)]
        never: bool,
    },
}

#[derive(Args, Debug)]
struct KeyCreate {
    /// The owning account.
    #[arg(long)]
    account: String,
    /// A human-readable name.
    #[arg(long)]
    name: String,
    /// A scope to grant (repeat, or comma-separate).
    #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',')]
    scopes: Vec<String>,
    /// Token prefix.
    #[arg(long, default_value = "kl_live")]
    prefix: String,
    /// Expire this many seconds from now.
    #[arg(
        long,
        value_name = "SECONDS",
        conflicts_with = "expires_at",
        allow_hyphen_values = true
    )]
    expires_in: Option<String>,
    /// Expire at this instant (unix milliseconds).
    #[arg(long, value_name = "UNIX_MS", allow_hyphen_values = true)]
    expires_at: Option<String>,
    /// Operator key: every scope, never charged, every use audited.
    #[arg(long)]
    operator: bool,
    /// Require signed requests; the signing secret is printed once, after the token
    /// (needs the master key).
    #[arg(long)]
    signing: bool,
    /// A JSON object.
    #[arg(long)]
    metadata: Option<String>,
}

#[derive(Subcommand, Debug)]
enum RouteCmd {
    /// Add a rule.
    Add {
        /// HTTP method or `*`.
        method: String,
        /// Path pattern: literal segments, `:name` segments, optional trailing `*`.
        pattern: String,
        /// Scope a key needs.
        scope: String,
        /// Default cost in credits.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        cost: String,
    },
    /// List rules, most specific first.
    List,
    /// Remove the rule for (METHOD, PATTERN).
    Remove { method: String, pattern: String },
    /// Which rule decides METHOD PATH.
    Match { method: String, path: String },
}

/// What a command failed with.
#[derive(Debug)]
enum CliError {
    /// A library error (or one of the same kind found by the CLI): exit code by `code()`.
    Vault(Error),
    /// Anything else (I/O on stdin or stdout, a refused quickstart directory): exit 1.
    Other(String),
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Vault(e)
    }
}

type CliResult<T = ()> = Result<T, CliError>;

/// The exit code of a library error (see the module docs).
fn exit_code(e: &Error) -> u8 {
    match e.code() {
        "invalid_api_key" | "api_key_inactive" | "api_key_expired" | "invalid_signature" => 2,
        "missing_scope" | "route_not_allowed" => 3,
        "insufficient_credits" => 4,
        "rate_limited" | "too_many_attempts" => 5,
        "not_found" => 6,
        "already_exists" => 7,
        "invalid_argument" => 8,
        "storage" | "vault_locked" | "wrong_master_key" | "vault_closed" => 9,
        _ => 1,
    }
}

fn invalid(msg: impl Into<String>) -> CliError {
    CliError::Vault(Error::InvalidArgument(msg.into()))
}

/// A non-negative integer argument; anything else (negative, over u64, not a number) is
/// `invalid_argument`, as in every host (SPEC §9).
fn parse_u64(what: &str, s: &str) -> CliResult<u64> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map_err(|_| invalid(format!("{what} is larger than {}", u64::MAX)));
    }
    if t.starts_with('-') && t.len() > 1 && t[1..].bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!("{what} must not be negative")));
    }
    Err(invalid(format!(
        "{what} must be a non-negative integer, got {s:?}"
    )))
}

/// A positive integer argument (amounts).
fn parse_positive(what: &str, s: &str) -> CliResult<u64> {
    match parse_u64(what, s)? {
        0 => Err(invalid(format!("{what} must be positive"))),
        n => Ok(n),
    }
}

/// An `i64` millisecond instant.
fn parse_millis(what: &str, s: &str) -> CliResult<Millis> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| invalid(format!("{what} must be unix milliseconds, got {s:?}")))
}

/// Seconds → milliseconds, refusing what does not fit.
fn seconds_to_ms(what: &str, s: &str) -> CliResult<i64> {
    let secs = parse_u64(what, s)?;
    i64::try_from(secs)
        .ok()
        .and_then(|v| v.checked_mul(1000))
        .ok_or_else(|| invalid(format!("{what} is too large")))
}

fn parse_metadata(s: Option<&str>) -> CliResult<Option<Value>> {
    match s {
        None => Ok(None),
        Some(s) => {
            let v: Value = serde_json::from_str(s)
                .map_err(|e| invalid(format!("metadata is not valid JSON: {e}")))?;
            if !v.is_object() {
                return Err(invalid("metadata must be a JSON object"));
            }
            Ok(Some(v))
        }
    }
}

/// The token argument, or stdin (trimmed) when it is `-`; zeroized on drop.
fn read_token(arg: &str) -> CliResult<Zeroizing<String>> {
    if arg != "-" {
        return Ok(Zeroizing::new(arg.to_string()));
    }
    let mut s = Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut s)
        .map_err(|e| CliError::Other(format!("cannot read the token from stdin: {e}")))?;
    Ok(Zeroizing::new(s.trim().to_string()))
}

/// Where output goes: human text or one JSON value.
struct Out {
    json: bool,
}

impl Out {
    /// Print `value` as JSON when `--json`, else the human text.
    fn emit<T: Serialize + ?Sized>(&self, value: &T, human: impl FnOnce() -> String) -> CliResult {
        let text = if self.json {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| CliError::Other(format!("cannot encode JSON: {e}")))?;
            s.push('\n');
            s
        } else {
            human()
        };
        write_stdout(&text)
    }
}

fn write_stdout(text: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Other(format!("cannot write to stdout: {e}")))
}

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

/// Read one line from the terminal without echo (from stdin when it is not a terminal).
fn prompt_secret(prompt: &str) -> CliResult<Zeroizing<String>> {
    use std::io::BufRead;
    let fd = libc::STDIN_FILENO;
    // SAFETY: isatty only inspects the descriptor.
    let tty = unsafe { libc::isatty(fd) } == 1;
    let mut saved: Option<libc::termios> = None;
    if tty {
        eprint!("{prompt}");
        // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr, which fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is a terminal; t is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut t) } == 0 {
            let mut quiet = t;
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: as above; restoring happens below.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
            saved = Some(t);
        }
    }
    let mut line = Zeroizing::new(String::new());
    let read = std::io::stdin().lock().take(4096).read_line(&mut line);
    if let Some(t) = saved {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        eprintln!();
    }
    read.map_err(|e| CliError::Other(format!("cannot read from the terminal: {e}")))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_string());
    if trimmed.is_empty() {
        return Err(invalid("nothing was entered"));
    }
    Ok(trimmed)
}

/// Open an existing vault (every command but `init` and `quickstart`): a mistyped path
/// must not silently create an empty vault.
fn open_existing(cli: &Cli) -> CliResult<Vault> {
    if !cli.vault.exists() {
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
            vault.close()?;
            let path = std::fs::canonicalize(&cli.vault).unwrap_or_else(|_| cli.vault.clone());
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
        Command::Quickstart { dir } => {
            quickstart::run(dir, cli.argon2_fast, out)?;
            Ok(0)
        }
        Command::Dashboard { listen } => {
            dashboard::serve(open_existing(cli)?, listen).map_err(CliError::Other)?;
            Ok(0)
        }
        cmd => {
            let vault = open_existing(cli)?;
            let result = with_vault(&vault, cmd, out);
            let closed = vault.close();
            result?;
            closed?;
            Ok(0)
        }
    }
}

fn with_vault(vault: &Vault, cmd: &Command, out: &Out) -> CliResult {
    let now = keyledger::system_now();
    match cmd {
        Command::Account(a) => account(vault, a, out),
        Command::Key(k) => key(vault, k, out, now),
        Command::Route(r) => route(vault, r, out),
        Command::Limit(l) => limit(vault, l, out),
        Command::Authorize {
            token,
            route,
            scope,
            cost,
            idempotency_key,
            signature,
            body,
        } => {
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
        Command::Whoami { token } => {
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
        Command::Audit {
            key_id,
            account_id,
            action,
            since,
            limit,
        } => {
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
                    .map(|s| parse_millis("since", s))
                    .transpose()?,
                limit,
            };
            let entries = vault.audit(&query)?;
            out.emit(&entries, || output::audit_table(&entries))
        }
        Command::Rekey {
            prompt,
            generate,
            new_passphrase,
        } => {
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
        Command::Usage { key_id } => {
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
        Command::Argon2(cmd) => {
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
        Command::Init
        | Command::Check { .. }
        | Command::Quickstart { .. }
        | Command::Dashboard { .. }
        | Command::MasterKey(_) => {
            unreachable!("handled without an open vault")
        }
    }
}

fn balance_line(b: &keyledger::Balance) -> String {
    format!(
        "{}: {} credits ({} added in total)\n",
        b.account_id, b.credits, b.total_credits
    )
}

fn account(vault: &Vault, cmd: &AccountCmd, out: &Out) -> CliResult {
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

fn limit(vault: &Vault, cmd: &LimitCmd, out: &Out) -> CliResult {
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
            let l = vault.set_ratelimit(owner.owner(), name, limit, ms, !named_only)?;
            out.emit(&l, || table(std::slice::from_ref(&l)))
        }
        LimitCmd::Remove { name, owner } => {
            let l = vault.remove_ratelimit(owner.owner(), name)?;
            out.emit(&l, || format!("removed rate limit {}\n", l.name))
        }
        LimitCmd::List { owner } => {
            let all = vault.ratelimits(owner.owner())?;
            out.emit(&all, || table(&all))
        }
    }
}

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

fn key(vault: &Vault, cmd: &KeyCmd, out: &Out, now: Millis) -> CliResult {
    let show = |k: keyledger::KeyInfo, verb: &str| -> CliResult {
        out.emit(&k, || {
            format!("{verb} key {}\n{}", k.key_id, output::key_details(&k, now))
        })
    };
    match cmd {
        KeyCmd::Create(c) => {
            let mut new = NewKey::new(c.account.as_str(), c.name.as_str(), c.scopes.iter())
                .prefix(c.prefix.as_str())
                .operator(c.operator)
                .signing(c.signing);
            if let Some(s) = &c.expires_in {
                new = new.expires_in_ms(seconds_to_ms("--expires-in", s)?);
            }
            if let Some(s) = &c.expires_at {
                new = new.expires_at(parse_millis("--expires-at", s)?);
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
                (Some(at), _, _) => Some(parse_millis("--at", at)?),
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

fn route(vault: &Vault, cmd: &RouteCmd, out: &Out) -> CliResult {
    let rule_line = |r: &keyledger::RouteRule| {
        format!(
            "{} {} -> {} (cost {})\n",
            r.method, r.pattern, r.scope, r.cost
        )
    };
    match cmd {
        RouteCmd::Add {
            method,
            pattern,
            scope,
            cost,
        } => {
            let cost = parse_u64("cost", cost)?;
            let r = vault.add_route(method, pattern, scope, cost)?;
            out.emit(&r, || format!("added {}", rule_line(&r)))
        }
        RouteCmd::List => {
            let rules = vault.list_routes()?;
            out.emit(&rules, || {
                let rows: Vec<Vec<String>> = rules
                    .iter()
                    .map(|r| {
                        vec![
                            r.method.clone(),
                            r.pattern.clone(),
                            r.scope.clone(),
                            r.cost.to_string(),
                        ]
                    })
                    .collect();
                output::table(&["METHOD", "PATTERN", "SCOPE", "COST"], &rows)
            })
        }
        RouteCmd::Remove { method, pattern } => {
            let r = vault.remove_route(method, pattern)?;
            out.emit(&r, || format!("removed {}", rule_line(&r)))
        }
        RouteCmd::Match { method, path } => match vault.match_route(method, path)? {
            Some(r) => out.emit(&r, || rule_line(&r)),
            None => Err(Error::RouteNotAllowed.into()),
        },
    }
}

/// The vault path inside a quickstart directory.
fn quickstart_vault(dir: &Path) -> PathBuf {
    dir.join("keyledger.redb")
}
