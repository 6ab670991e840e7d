//! The PostgreSQL backend (cargo feature `postgres`): one database shared by the
//! processes of several hosts, for `Vault::open("postgresql://user@host/db")`.
//!
//! The only module that names a PostgreSQL type: this file (connections, the pool,
//! schema migrations, the backend), `txn.rs` (the transactions and their typed
//! operations) and `listener.rs` (the change listener and poller). It uses the
//! synchronous `postgres` client crate, which drives each connection on a small tokio
//! runtime of its own: the feature brings tokio into the library (the default and Python
//! builds stay free of it).
//!
//! # Tables
//! The same tables as the redb backend, in the vault's database, created and versioned by
//! the vault itself ([`SCHEMA_VERSION`], the `keyledger_schema` table; a vault refuses a
//! schema newer than it knows). Records are the same bytes (`bytea` of the versioned
//! records, `store/records.rs`); balances, usage, limits and routes are plain columns.
//! Balances are `numeric(20, 0)` (every u64, exactly); other unsigned 64-bit numbers
//! (limits, costs, usage counters) are `bigint`, refused above 2^63-1 (usage saturates). Text keys
//! use the `C` collation so every listing is ordered as on redb (by bytes).
//!
//! # Transactions: one writer at a time, by an advisory lock
//! The vault's write logic is read-modify-write (a debit reads the balance, checks it,
//! writes the new one; an audit entry takes the next sequence number), written for a
//! store with one writer at a time. A write transaction here is a PostgreSQL transaction
//! that first takes a transaction-level advisory lock (`pg_advisory_xact_lock`) on a key
//! fixed for all vaults, held to its commit or rollback: writers of every process on every
//! host run one after another, and in `READ COMMITTED` each statement sees every earlier
//! writer's commit. That is the redb semantics exactly, with no retry loop. `SERIALIZABLE`
//! would let independent writers overlap, but any conflict aborts a transaction the vault
//! would then have to replay (a debit batch with its idempotency rows and audit); the
//! lock costs one round trip and the vault already groups the debits of a process into one
//! transaction (group commit), so the serial writer is not the bottleneck here. Reads are
//! `REPEATABLE READ READ ONLY` snapshots and never wait for writers.
//!
//! Every connection sets `synchronous_commit = on`: a commit has reached the server's WAL
//! on disk when the call returns. `exclusive` and `Durability::Eventual` are refused for
//! PostgreSQL vaults (they describe one process on one host).
//!
//! # Cache invalidation across hosts: LISTEN/NOTIFY, failing closed
//! Each process keeps private generation slots (a process-private [`Sidecar`]) that its
//! caches are validated by, as on redb. A write transaction records what it touched
//! (keys, accounts, the route table) and, when it touched anything, takes the next change
//! sequence number (`kl_change_seq`, under the writers' lock, so numbers follow commit
//! order) and sends `NOTIFY keyledger_changes, '<seq> <touched>'` in the same transaction:
//! PostgreSQL delivers it to every listener only if, and when, the transaction commits.
//! The committing process also bumps its own slots around the commit.
//!
//! One listener thread per vault handle holds its own connection (`LISTEN
//! keyledger_changes`) and bumps the slots named by each notification. It fails closed:
//! - until it is connected and has read the current sequence number, and whenever its
//!   connection breaks, the slots are distrusted ([`Sidecar::distrust`]: every call reads
//!   the database, `cache_mode` is `disabled`);
//! - on each (re)connection it invalidates every slot before trusting them again, since
//!   changes may have committed while it was away;
//! - a notification whose sequence number is not the next one expected (a gap) also
//!   invalidates every slot.
//!
//! So a change committed on one host is refused by another host's cache as soon as the
//! notification arrives; while it cannot arrive, nothing is served from a cache. One
//! window remains: a network path that dies silently is noticed only when the listener's
//! TCP keepalives give up (about 5 s).
//!
//! # Without LISTEN/NOTIFY: the polled changes table (`notify=poll`)
//! PostgreSQL-compatible engines without LISTEN/NOTIFY (CockroachDB, YugabyteDB) get the
//! same guarantees from a table. The statement that takes a change's number also inserts
//! `(seq, what changed)` into `kl_changes`, in the same transaction, and deletes the rows
//! [`CHANGES_KEPT`] or more numbers older: the table never holds more than that many rows,
//! whatever the write rate, and the pruning is one indexed range delete per change. Every
//! writer does this, whatever its own `notify` mode, so listeners and pollers can share a
//! database.
//!
//! With `notify=poll` (`poll_ms`, default 5, is the interval) the handle's thread polls
//! instead of listening, on its own connection (application name `keyledger-poller`,
//! the same keepalives, and a 5 s statement timeout): it reads the current number
//! (its confirmed position), invalidates every slot and trusts them; then every interval
//! it reads the rows after its position, in order, and bumps the slots each names. It fails
//! closed as the listener does: while it is not connected, or a poll fails, the slots are
//! distrusted (every call reads the database, `cache_mode` is `disabled`); each
//! (re)connection invalidates every slot; a gap in the numbers (the rows after its
//! position were pruned, i.e. it fell more than [`CHANGES_KEPT`] changes behind)
//! invalidates every slot. Writers hold the writers' lock until their commit, and
//! PostgreSQL makes a commit visible before it releases the transaction's locks, so the
//! rows become visible in number order; a number missing for a second is treated as a gap
//! anyway. A change reaches the other processes within one interval plus a query.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use postgres::{Client, Config};

use self::listener::{listen, poll};
use self::txn::PgRead;
use super::records::FORMAT_VERSION;
use super::{Backend, Generations, ReadTx, WriteTx, WriteTxn};
use crate::error::{Error, Result};
use crate::model::CacheMode;
use crate::options::Durability;
use crate::shm::Sidecar;

mod listener;
mod params;
mod ratelimit;
mod tls;
mod txn;
// Holds.
mod holds;

/// The schema version this keyledger creates and understands.
pub(crate) const SCHEMA_VERSION: i32 = 6;
/// The advisory lock every write transaction holds (and schema migration, session-level).
const WRITE_LOCK: i64 = 0x6b65_796c_6564_6772; // "keyledgr"
/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The schema, version by version: `MIGRATIONS[i]` takes the schema from version `i` to
/// `i + 1`. Never edit a shipped step: add one.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE kl_meta (name text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE kl_accounts (id text COLLATE "C" PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE kl_balances (id text COLLATE "C" PRIMARY KEY,
    credits numeric(20, 0) NOT NULL CHECK (credits >= 0 AND credits <= 18446744073709551615),
    total numeric(20, 0) NOT NULL CHECK (total >= 0 AND total <= 18446744073709551615));
CREATE TABLE kl_keys (key_id text COLLATE "C" PRIMARY KEY,
    account_id text COLLATE "C" NOT NULL, record bytea NOT NULL);
CREATE INDEX kl_keys_by_account ON kl_keys (account_id, key_id);
CREATE TABLE kl_routes (method text COLLATE "C", pattern text COLLATE "C",
    scope text NOT NULL, cost bigint NOT NULL, PRIMARY KEY (method, pattern));
CREATE TABLE kl_idempotency (account_id text COLLATE "C", key text COLLATE "C",
    at bigint NOT NULL, record bytea NOT NULL, PRIMARY KEY (account_id, key));
CREATE INDEX kl_idempotency_by_time ON kl_idempotency (at, account_id, key);
CREATE TABLE kl_audit (seq bigint PRIMARY KEY, time bigint NOT NULL,
    key_id text COLLATE "C", account_id text COLLATE "C", action text NOT NULL,
    record bytea NOT NULL);
CREATE INDEX kl_audit_by_key ON kl_audit (key_id, seq);
CREATE INDEX kl_audit_by_account ON kl_audit (account_id, seq);
CREATE TABLE kl_usage_totals (key_id text COLLATE "C" PRIMARY KEY,
    last_used bigint NOT NULL, granted bigint NOT NULL, refused bigint NOT NULL);
CREATE TABLE kl_usage_hourly (key_id text COLLATE "C", hour bigint,
    granted bigint NOT NULL, PRIMARY KEY (key_id, hour));
CREATE TABLE kl_ratelimits (owner text COLLATE "C", name text COLLATE "C",
    lim bigint NOT NULL, duration_ms bigint NOT NULL, auto_apply boolean NOT NULL,
    PRIMARY KEY (owner, name));
CREATE TABLE kl_signatures_seen (t bigint, mac bytea, PRIMARY KEY (t, mac));
"#,
    r#"
CREATE TABLE kl_change_seq (seq bigint NOT NULL);
INSERT INTO kl_change_seq (seq) VALUES (0);
"#,
    // The GCRA state of `ratelimit_mode=exact` (see `ratelimit.rs`). Before version 3 it
    // was created on open, outside the versioned schema: a version 2 database may hold it
    // already, with its counters, which are kept.
    r#"
CREATE TABLE IF NOT EXISTS kl_ratelimit_state (key bigint PRIMARY KEY, tat bigint NOT NULL);
"#,
    // The committed changes by sequence number, for `notify=poll` (see the module docs).
    r#"
CREATE TABLE kl_changes (seq bigint PRIMARY KEY, body text NOT NULL);
"#,
    // Holds (see `holds.rs`): every hold record; the active ones indexed by account and
    // by expiry.
    r#"
CREATE TABLE kl_holds (id text COLLATE "C" PRIMARY KEY, account_id text COLLATE "C" NOT NULL,
    expires_at bigint NOT NULL, active boolean NOT NULL, record bytea NOT NULL);
CREATE INDEX kl_holds_active_by_account ON kl_holds (account_id, id) WHERE active;
CREATE INDEX kl_holds_active_by_expiry ON kl_holds (expires_at, id) WHERE active;
"#,
    // Events and usage reports (`crate::events`). Numbered 6 in the merged schema, after
    // holds' step.
    r#"
CREATE TABLE kl_alerts (account_id text COLLATE "C" PRIMARY KEY, thresholds bigint[] NOT NULL);
CREATE TABLE kl_events (seq bigint PRIMARY KEY, record bytea NOT NULL);
CREATE TABLE kl_event_marks (name text COLLATE "C" PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE kl_usage_report (account_id text COLLATE "C" NOT NULL, hour bigint NOT NULL,
    key_id text COLLATE "C" NOT NULL, route text COLLATE "C" NOT NULL,
    charged bigint NOT NULL, charged_calls bigint NOT NULL, calls bigint NOT NULL,
    refused bigint NOT NULL, PRIMARY KEY (account_id, hour, key_id, route));
"#,
];
/// How many of the newest changes `kl_changes` keeps: each commit that adds one deletes
/// those older than this, so the table never holds more rows than this.
pub(super) const CHANGES_KEPT: i64 = 4096;

fn pg_err(e: postgres::Error) -> Error {
    // The client's messages never carry the password. Its causes (e.g. why a TLS
    // handshake failed) are not in its `Display`: append them.
    let mut msg = format!("postgresql: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.ends_with(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    Error::Storage(msg)
}

/// A u64 into a bigint column.
fn big(v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::Storage(format!("{v} exceeds PostgreSQL's bigint (2^63-1)")))
}

/// A `numeric(20, 0)` column (read as text) back into a u64.
fn numeric(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| Error::Storage(format!("corrupt balance {text:?}")))
}

/// A bigint column back into a u64 (never negative: every writer checks).
fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// `url` with any password replaced by `***` (for `Vault::path` and `Debug`).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = format!("{scheme}://");
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            out.push_str(user);
            if userinfo.contains(':') {
                out.push_str(":***");
            }
            out.push('@');
            out.push_str(host);
        }
        None => out.push_str(authority),
    }
    // A password may also come as a query parameter.
    let tail: Vec<String> = tail
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.trim_start_matches('?').eq_ignore_ascii_case("password") => {
                format!("{k}=***")
            }
            _ => p.to_string(),
        })
        .collect();
    out.push_str(&tail.join("&"));
    out
}

/// Connections to the vault's database, reused; at most `max` open at once (the
/// listener's connection is not counted). A call finding all of them in use waits up to
/// `timeout` for one, then fails with `storage` ("pool exhausted").
struct Pool {
    config: Config,
    tls: tls::Tls,
    idle: Mutex<PoolState>,
    freed: Condvar,
    max: usize,
    timeout: Duration,
    read_txns: AtomicU64,
    commits: AtomicU64,
}

/// The idle connections and how many are open (idle or in use).
struct PoolState {
    idle: Vec<Client>,
    open: usize,
}

impl Pool {
    fn connect(&self) -> Result<Client> {
        let mut client = tls::connect(&self.config, &self.tls).map_err(pg_err)?;
        client
            .batch_execute("SET synchronous_commit = on; SET TIME ZONE 'UTC'")
            .map_err(pg_err)?;
        Ok(client)
    }

    fn get(self: &Arc<Self>) -> Result<Conn> {
        let deadline = Instant::now() + self.timeout;
        let mut state = self.idle.lock();
        let client = loop {
            if let Some(c) = state.idle.pop() {
                if !c.is_closed() {
                    break Some(c);
                }
                state.open -= 1;
                continue;
            }
            if state.open < self.max {
                state.open += 1;
                break None;
            }
            if self.freed.wait_until(&mut state, deadline).timed_out() {
                return Err(Error::Storage(format!(
                    "PostgreSQL pool exhausted: all {} connections (max_connections) stayed \
                     in use for {} ms (pool_timeout_ms)",
                    self.max,
                    self.timeout.as_millis()
                )));
            }
        };
        drop(state);
        let client = match client {
            Some(c) => c,
            None => match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    self.release(None);
                    return Err(e);
                }
            },
        };
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            in_txn: false,
        })
    }

    /// Give a connection back (`Some`) or drop one that is broken (`None`); wake a waiter.
    fn release(&self, client: Option<Client>) {
        let mut state = self.idle.lock();
        match client {
            Some(c) => state.idle.push(c),
            None => state.open -= 1,
        }
        drop(state);
        self.freed.notify_one();
    }
}

/// A pooled connection; back to the pool on drop (rolled back first if in a transaction;
/// dropped instead if that fails or it is broken).
struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    in_txn: bool,
}

impl Conn {
    fn c(&mut self) -> &mut Client {
        self.client.as_mut().expect("connection present until drop")
    }

    fn begin(&mut self, sql: &str) -> Result<()> {
        self.c().batch_execute(sql).map_err(pg_err)?;
        self.in_txn = true;
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(mut client) = self.client.take() else {
            return;
        };
        let broken =
            (self.in_txn && client.batch_execute("ROLLBACK").is_err()) || client.is_closed();
        self.pool.release((!broken).then_some(client));
    }
}

/// The PostgreSQL backend.
pub(crate) struct PgBackend {
    pool: Arc<Pool>,
    /// `ratelimit_hosts`: each process allows this share of every rate limit.
    ratelimit_hosts: u64,
    /// `ratelimit_mode=exact`: rate limits counted in `kl_ratelimit_state`.
    ratelimit_exact: bool,
    created: bool,
    /// This process's generation slots, bumped by its commits and by the listener.
    slots: Arc<Sidecar>,
    listener: Listener,
}

/// The change listener (or poller) thread and what it shares.
struct Listener {
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// `notify=poll`: the thread polls `kl_changes` instead of listening.
    polling: bool,
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        self.listener.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.listener.thread.take() {
            let _ = t.join();
        }
    }
}

impl PgBackend {
    /// Connect to the database at `url`, apply the schema migrations it lacks (refusing a
    /// schema newer than this keyledger knows), and create the vault's identity if new.
    pub(crate) fn open(url: &str, slot_count: u32) -> Result<PgBackend> {
        let params = params::split(url)?;
        let mut config: Config = params
            .client_url
            .parse()
            .map_err(|e| Error::invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let tls = tls::connector(&params)?;
        let pool = Arc::new(Pool {
            config,
            tls,
            idle: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            max: params.max_connections,
            timeout: params.pool_timeout,
            read_txns: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        });
        let mut conn = pool.get()?;
        migrate(conn.c())?;
        drop(conn);
        let slots = Arc::new(Sidecar::private(slot_count));
        // Distrusted until the listener has connected and confirmed its position.
        slots.distrust();
        let connected = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (config, tls, slots) = (pool.config.clone(), pool.tls.clone(), slots.clone());
            let (connected, stop) = (connected.clone(), stop.clone());
            let every = params.poll;
            std::thread::Builder::new()
                .name("keyledger-pg-listener".into())
                .spawn(move || match every {
                    Some(every) => poll(&config, &tls, &slots, &connected, &stop, every),
                    None => listen(&config, &tls, &slots, &connected, &stop),
                })
                .map_err(|e| Error::Storage(format!("cannot start the change listener: {e}")))?
        };
        let mut backend = PgBackend {
            pool,
            ratelimit_hosts: params.ratelimit_hosts,
            ratelimit_exact: params.ratelimit_exact,
            created: false,
            slots,
            listener: Listener {
                connected,
                stop,
                thread: Some(thread),
                polling: params.poll.is_some(),
            },
        };
        backend.created = backend.init_identity()?;
        Ok(backend)
    }

    /// Write the format marker and identity of a new vault; `true` if this call did.
    fn init_identity(&self) -> Result<bool> {
        let mut tx = self.begin_write()?;
        if let Some(v) = tx.meta_raw("format")? {
            let version = <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| Error::Storage("corrupt format marker".into()))?;
            if version != FORMAT_VERSION {
                return Err(Error::Storage(format!(
                    "vault format {version} is not supported by this keyledger (expects {FORMAT_VERSION})"
                )));
            }
            return Ok(false);
        }
        tx.put_meta_raw("format", &FORMAT_VERSION.to_le_bytes())?;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(Error::storage)?;
        tx.put_meta_raw("vault_id", &id)?;
        Box::new(tx).commit(Durability::Immediate)?;
        Ok(true)
    }

    fn begin_read(&self) -> Result<PgRead> {
        self.pool.read_txns.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.pool.get()?;
        conn.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")?;
        Ok(PgRead {
            conn: RefCell::new(conn),
            touched: Vec::new(),
            slots: None,
        })
    }

    fn begin_write(&self) -> Result<PgRead> {
        let mut conn = self.pool.get()?;
        conn.begin("BEGIN ISOLATION LEVEL READ COMMITTED")?;
        conn.c()
            .execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(pg_err)?;
        Ok(PgRead {
            conn: RefCell::new(conn),
            touched: Vec::new(),
            slots: Some(self.slots.clone()),
        })
    }
}

/// Bring the schema to [`SCHEMA_VERSION`], under a session advisory lock so two opening
/// processes do not both migrate.
fn migrate(c: &mut Client) -> Result<()> {
    c.execute("SELECT pg_advisory_lock($1)", &[&WRITE_LOCK])
        .map_err(pg_err)?;
    let r = migrate_locked(c);
    let unlocked = c
        .execute("SELECT pg_advisory_unlock($1)", &[&WRITE_LOCK])
        .map_err(pg_err);
    r.and(unlocked.map(|_| ()))
}

fn migrate_locked(c: &mut Client) -> Result<()> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS keyledger_schema (version integer NOT NULL)")
        .map_err(pg_err)?;
    let version: i32 = c
        .query_one(
            "SELECT coalesce(max(version), 0) FROM keyledger_schema",
            &[],
        )
        .map_err(pg_err)?
        .get(0);
    if version > SCHEMA_VERSION {
        return Err(Error::Storage(format!(
            "the database's keyledger schema is version {version}, newer than this keyledger \
             knows ({SCHEMA_VERSION}): upgrade keyledger"
        )));
    }
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let mut tx = c.transaction().map_err(pg_err)?;
        tx.batch_execute(step).map_err(pg_err)?;
        let next = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("DELETE FROM keyledger_schema", &[])
            .map_err(pg_err)?;
        tx.execute(
            "INSERT INTO keyledger_schema (version) VALUES ($1)",
            &[&next],
        )
        .map_err(pg_err)?;
        tx.commit().map_err(pg_err)?;
    }
    Ok(())
}

impl Backend for PgBackend {
    fn read(&self) -> Result<ReadTx> {
        Ok(Box::new(self.begin_read()?))
    }

    fn write(&self) -> Result<WriteTx<'_>> {
        Ok(Box::new(self.begin_write()?))
    }

    fn sync(&self) -> Result<()> {
        // Every commit is synchronous (`Durability::Eventual` is refused at open).
        Ok(())
    }

    fn created(&self) -> bool {
        self.created
    }

    fn read_txns(&self) -> u64 {
        self.pool.read_txns.load(Ordering::Relaxed)
    }

    fn commits(&self) -> u64 {
        self.pool.commits.load(Ordering::Relaxed)
    }

    fn generations(&self) -> Generations {
        Generations {
            slots: Some(self.slots.clone()),
            mode: CacheMode::Shared,
            note: Some(
                "PostgreSQL vault: the change listener is not connected, so every call is \
                 validated against the database"
                    .into(),
            ),
        }
    }

    fn maintain(&self) {}

    fn ratelimit_share(&self) -> u64 {
        if self.ratelimit_exact {
            1
        } else {
            self.ratelimit_hosts
        }
    }

    fn take_rate(
        &self,
        key: u64,
        def: &crate::limits::RateLimit,
        weight: u64,
        now: crate::model::Millis,
    ) -> Option<Result<std::result::Result<crate::limits::Taken, crate::limits::Exceeded>>> {
        if !self.ratelimit_exact {
            return None;
        }
        Some(
            self.pool
                .get()
                .and_then(|mut conn| ratelimit::take(conn.c(), key, def, weight, now)),
        )
    }

    fn give_back_rate(&self, taken: &crate::limits::Taken) -> Option<Result<()>> {
        if !self.ratelimit_exact {
            return None;
        }
        Some(
            self.pool
                .get()
                .and_then(|mut conn| ratelimit::give_back(conn.c(), taken)),
        )
    }

    fn distrust_reason(&self) -> Option<String> {
        (!self.listener.connected.load(Ordering::SeqCst)).then(|| {
            if self.listener.polling {
                "PostgreSQL vault (notify=poll): the change poller is not connected (or has \
                 not confirmed its position), so every call is validated against the database"
                    .into()
            } else {
                "PostgreSQL vault: the change listener is not connected (or has not confirmed \
                 its position), so every call is validated against the database"
                    .into()
            }
        })
    }
}
