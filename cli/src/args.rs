//! The command line: every subcommand and flag, parsed by clap.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::exit::EXIT_CODES;

/// keyledger: an embedded API-key vault with credits.
#[derive(Parser, Debug)]
// `about` is the library's description (the one --help always showed), not this crate's.
#[command(
    name = "keyledger",
    version,
    about = "An embedded API-key vault with credits: argon2id-hashed keys, scopes, routes and durable debits in one redb file shared by every worker process.",
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// The vault file, or a postgresql:// URL (with the CLI built with the feature
    /// `postgres`).
    #[arg(
        long,
        global = true,
        env = "KEYLEDGER_VAULT",
        default_value = "./keyledger.redb"
    )]
    pub vault: PathBuf,
    /// Machine output: one JSON value on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Open the vault exclusively (a second opener gets vault_locked).
    #[arg(long, global = true)]
    pub exclusive: bool,
    /// TEST ONLY: create a new vault with insecure, fast argon2 parameters (test builds).
    #[arg(long, global = true, hide = true)]
    pub argon2_fast: bool,
    /// Ask for the master key (base64) on the terminal instead of reading
    /// KEYLEDGER_MASTER_KEY. Never pass a key as an argument: it would land in shell history.
    #[arg(long, global = true, conflicts_with = "passphrase_prompt")]
    pub master_key_prompt: bool,
    /// Ask for the master passphrase on the terminal (the key is derived with argon2id).
    #[arg(long, global = true)]
    pub passphrase_prompt: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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
    Authorize(AuthorizeArgs),
    /// Re-encrypt every signing secret under a new master key, all or nothing. The new
    /// key comes from KEYLEDGER_NEW_MASTER_KEY, a prompt (--prompt), or --generate (printed
    /// once). The current key: KEYLEDGER_MASTER_KEY, --master-key-prompt or --passphrase-prompt.
    Rekey(RekeyArgs),
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
    Audit(AuditArgs),
    /// A key's usage: last use, totals, hourly buckets (`keyledger usage KEY_ID`); or an
    /// account's usage report (`keyledger usage report ACCOUNT`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Usage {
        /// The key id.
        #[arg(required = true)]
        key_id: Option<String>,
        #[command(subcommand)]
        report: Option<UsageCmd>,
    },
    /// Whether a string has the format and checksum of a key (no vault access).
    Check {
        /// The token, or `-` to read it from stdin (keeps it out of shell history).
        token: String,
    },
    /// Serve the operator dashboard over the vault. The admin token comes from
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
    /// Copy a whole vault into a new, empty one (ignores --vault): a vault file or a
    /// postgresql:// URL on either side (URLs need the CLI built with the feature
    /// `postgres`). Everything is copied as stored (no master key is needed), in one
    /// transaction, then read back and compared. Stop the source's writers first.
    Migrate {
        /// The vault to copy: a file path or a postgresql:// URL.
        #[arg(long)]
        from: String,
        /// The new vault: a file path (created) or a postgresql:// URL of a database
        /// without vault data. A non-empty destination is refused and left unchanged.
        #[arg(long)]
        to: String,
    },
    /// Print a shell completion script, e.g.
    /// `keyledger completions bash > /etc/bash_completion.d/keyledger`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `keyledger man > /usr/local/share/man/man1/keyledger.1`.
    Man,
    // Import of existing keys (drf-api-key, Unkey).
    /// Import keys from another service; their customers' tokens keep working.
    #[command(subcommand)]
    Import(ImportCmd),
    // Events and usage reports.
    /// Low-balance alerts and the event log: thresholds, reading events, expiry notices,
    /// and a webhook sender (`keyledger events serve --webhook URL`).
    #[command(subcommand)]
    Events(EventsCmd),
    // Holds.
    /// Holds: reserve credits now, charge the real cost later (settle), or give them back.
    #[command(subcommand)]
    Holds(HoldsCmd),
}

/// `keyledger usage report`.
#[derive(Subcommand, Debug)]
pub enum UsageCmd {
    /// Credits charged, calls and refusals of an account's keys, by key, route or day.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The account.
    pub account_id: String,
    /// From (unix ms, RFC 3339 or a date; default: 30 days ago), rounded down to the hour.
    #[arg(long)]
    pub since: Option<String>,
    /// Until (default: now); the hour holding it is included.
    #[arg(long)]
    pub until: Option<String>,
    /// Group rows by `key`, `route` or `day` (UTC).
    #[arg(long, default_value = "key")]
    pub by: String,
    /// `table` (default), `csv` or `json` (`--json` is `json` too).
    #[arg(long, default_value = "table")]
    pub format: String,
}

#[derive(Subcommand, Debug)]
pub enum EventsCmd {
    /// Low-balance alert thresholds of an account.
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Events after a sequence number, oldest first.
    List {
        /// Only events numbered above this (default 0: from the first).
        #[arg(long, default_value = "0")]
        after: String,
        /// At most this many (1–10000).
        #[arg(long, default_value = "100")]
        limit: String,
    },
    /// Emit `key_expiring` once per key that expires within SECONDS (`off`: no notices).
    ExpiryNotice {
        /// Seconds, or `off`.
        horizon: String,
    },
    /// POST every event to a webhook, signed with KEYLEDGER_WEBHOOK_SECRET (HMAC-SHA256 of
    /// the body, hex, in `X-Keyledger-Signature`), retrying with exponential backoff until
    /// it answers 2xx; the position is acknowledged in the vault under the consumer name,
    /// so a restart resumes after the last delivered event (at least once).
    Serve {
        /// An http:// URL (for https, put a TLS-terminating proxy on loopback).
        #[arg(long)]
        webhook: String,
        /// The consumer name the position is stored under.
        #[arg(long, default_value = "webhook")]
        consumer: String,
        /// How often to look for new events, in milliseconds.
        #[arg(long, default_value = "1000")]
        poll_ms: String,
        /// First retry delay in milliseconds; doubles per failure up to 60 s.
        #[arg(long, default_value = "500")]
        backoff_ms: String,
        /// Exit once every event so far is delivered (scripts and tests).
        #[arg(long)]
        until_idle: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Alert when the balance goes below N.
    Set {
        account_id: String,
        #[arg(long)]
        below: String,
    },
    /// Remove the threshold N.
    Remove {
        account_id: String,
        #[arg(long)]
        below: String,
    },
    /// The account's thresholds.
    List { account_id: String },
}

/// `keyledger import …`.
#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// Import djangorestframework-api-key's keys (table rest_framework_api_key_apikey)
    /// from a Django SQLite database. Tokens `<prefix>.<secret>` keep working.
    DrfApiKey {
        /// The Django database: a SQLite file.
        #[arg(long)]
        database: String,
        /// Put every key in this account (created if missing); default: one account per
        /// key, `drf-<prefix>`.
        #[arg(long)]
        account: Option<String>,
        /// Credits of each account the import creates.
        #[arg(long, default_value = "0")]
        credits: u64,
        /// Scopes of every imported key (repeatable; drf-api-key has none).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Import Unkey keys from a JSON file in the shape of Unkey's key migration
    /// (`[{"hash": {"value", "variant": "sha256_base64"}, "start", "externalId", "meta",
    /// "remaining", "ratelimit"/"ratelimits", "expires", "enabled", "permissions", …}]`).
    Unkey {
        /// The export file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Imported keys not used since the import (still holding their imported hash).
    Pending {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
}

// Holds.
#[derive(Subcommand, Debug)]
pub enum HoldsCmd {
    /// Reserve credits of an account until settled, released or the TTL runs out.
    Create {
        account: String,
        /// Credits to reserve (> 0).
        #[arg(allow_hyphen_values = true)]
        amount: String,
        /// Seconds until the hold is released if not settled (default 900, at most 30 days).
        #[arg(long, default_value = "900", allow_hyphen_values = true)]
        ttl: String,
        /// A repeat with the same amount and TTL answers the same hold.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Charge the actual cost of a hold and give the rest back.
    Settle {
        hold_id: String,
        /// Credits to charge (at most the hold's amount unless --allow-over).
        #[arg(allow_hyphen_values = true)]
        actual: String,
        /// Allow charging more than the hold, from the available credits.
        #[arg(long)]
        allow_over: bool,
        /// A repeat with the same amount answers the recorded outcome.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Give every credit of a hold back.
    Release { hold_id: String },
    /// One hold, in any state.
    Show { hold_id: String },
    /// The active holds (of one account with --account).
    List {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum Argon2Cmd {
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
pub enum AccountCmd {
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
pub struct LimitOwnerArgs {
    /// A key's limit.
    #[arg(long = "key")]
    pub key_id: Option<String>,
    /// An account's limit, shared by all its keys.
    #[arg(long = "account")]
    pub account_id: Option<String>,
}

impl LimitOwnerArgs {
    /// The owner (clap already requires exactly one of `--key` and `--account`).
    pub fn owner(&self) -> keyledger::Result<keyledger::LimitOwner<'_>> {
        keyledger::LimitOwner::from_ids(self.key_id.as_deref(), self.account_id.as_deref())
    }
}

#[derive(Subcommand, Debug)]
pub enum LimitCmd {
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
pub enum MasterKeyCmd {
    /// Print a fresh random master key (base64 of 32 bytes).
    Generate,
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
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
        /// Expire at this instant: unix milliseconds, RFC 3339 (2026-12-01T00:00:00Z,
        /// with an offset) or a date (midnight UTC).
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
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
pub struct KeyCreate {
    /// The owning account.
    #[arg(long)]
    pub account: String,
    /// A human-readable name.
    #[arg(long)]
    pub name: String,
    /// A scope to grant (repeat, or comma-separate).
    #[arg(long = "scope", value_name = "SCOPE", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Token prefix.
    #[arg(long, default_value = "kl_live")]
    pub prefix: String,
    /// Token style: `prefixed` (`<prefix>_<key_id>_<secret>`) or `colon`
    /// (`<key_id>:<secret>`: no prefix, no checksum, so no offline typo detection).
    #[arg(long, default_value = "prefixed", value_parser = ["prefixed", "colon"])]
    pub style: String,
    /// Expire this many seconds from now.
    #[arg(
        long,
        value_name = "SECONDS",
        conflicts_with = "expires_at",
        allow_hyphen_values = true
    )]
    pub expires_in: Option<String>,
    /// Expire at this instant: unix milliseconds, RFC 3339 (2026-12-01T00:00:00Z, with an
    /// offset) or a date (midnight UTC).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub expires_at: Option<String>,
    /// Operator key: every scope, never charged, every use audited.
    #[arg(long)]
    pub operator: bool,
    /// Require signed requests; the signing secret is printed once, after the token
    /// (needs the master key).
    #[arg(long)]
    pub signing: bool,
    /// A JSON object.
    #[arg(long)]
    pub metadata: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
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

// The arguments of `keyledger authorize` (a plain comment: a doc comment here would
// replace the subcommand's help text).
#[derive(Args, Debug)]
pub struct AuthorizeArgs {
    /// The token, or `-` to read it from stdin (keeps it out of shell history).
    pub token: String,
    /// The request, as "METHOD PATH".
    #[arg(long, value_name = "METHOD PATH")]
    pub route: Option<String>,
    /// A scope, for non-HTTP work.
    #[arg(long)]
    pub scope: Option<String>,
    /// Credits to charge (default: the route's cost; 0 for --scope).
    #[arg(long, allow_hyphen_values = true)]
    pub cost: Option<String>,
    /// A repeat within 24 h replays the first grant and charges nothing.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The request signature, for signing keys: `t=<unix seconds>,v2=<hex>` (format 2;
    /// give the query string in the --route path, as sent).
    #[arg(long)]
    pub signature: Option<String>,
    /// The request body the signature covers.
    #[arg(long)]
    pub body: Option<String>,
}

// The arguments of `keyledger rekey` (a plain comment: a doc comment here would
// replace the subcommand's help text).
#[derive(Args, Debug)]
pub struct RekeyArgs {
    /// Ask for the new key (base64) on the terminal.
    #[arg(long, conflicts_with_all = ["generate", "new_passphrase"])]
    pub prompt: bool,
    /// Generate the new key and print it once.
    #[arg(long, conflicts_with = "new_passphrase")]
    pub generate: bool,
    /// Ask for a new passphrase instead of a key.
    #[arg(long)]
    pub new_passphrase: bool,
}

// The arguments of `keyledger audit` (a plain comment: a doc comment here would
// replace the subcommand's help text).
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only entries about this key.
    #[arg(long = "key")]
    pub key_id: Option<String>,
    /// Only entries about this account.
    #[arg(long = "account")]
    pub account_id: Option<String>,
    /// Only this action (key_created, auth_refused, ...).
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries at or after this time: unix milliseconds, RFC 3339
    /// (2026-12-01T00:00:00Z, 2026-12-01T01:00:00+01:00) or a date (midnight UTC).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// At most this many entries (default 100).
    #[arg(long, allow_hyphen_values = true)]
    pub limit: Option<String>,
}
