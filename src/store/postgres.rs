//! The PostgreSQL backend (cargo feature `postgres`): one database shared by the
//! processes of several hosts, for `Vault::open("postgresql://user@host/db")`.
//!
//! The only file that names a PostgreSQL type. It uses the synchronous `postgres` client
//! crate, which drives each connection on a small tokio runtime of its own: the feature
//! brings tokio into the library (the default and Python builds stay free of it).
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

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, NoTls};

use super::records::{decode, encode, FORMAT_VERSION};
use super::{
    idempotency_key, meta_key, owner_key, owner_slot, AccountRecord, AuditRecord, Backend,
    Generations, IdempotencyRecord, IdempotencyScope, KeyRecord, Meta, ReadTx, ReadTxn, WriteTx,
    WriteTxn,
};
use crate::audit::AuditAction;
use crate::error::{Error, Result};
use crate::limits::{LimitOwner, RateLimit};
use crate::model::{CacheMode, Millis};
use crate::options::Durability;
use crate::policy::RouteRule;
use crate::shm::{Sidecar, SlotKind};

/// The schema version this keyledger creates and understands.
pub(crate) const SCHEMA_VERSION: i32 = 2;
/// The advisory lock every write transaction holds (and schema migration, session-level).
const WRITE_LOCK: i64 = 0x6b65_796c_6564_6772; // "keyledgr"
/// The notification channel of committed changes.
const CHANNEL: &str = "keyledger_changes";
/// A NOTIFY payload must stay under 8000 bytes; longer touched sets say "everything".
const MAX_PAYLOAD: usize = 7000;
/// How often the listener checks for a stop request or a broken connection.
const LISTEN_TICK: Duration = Duration::from_millis(100);
/// How long a connection attempt may take unless the URL says (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections kept for reuse.
const POOL_IDLE: usize = 8;

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
];

fn pg_err(e: postgres::Error) -> Error {
    // The client's messages never carry the password.
    Error::Storage(format!("postgresql: {e}"))
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

/// Connections to the vault's database, reused.
struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    read_txns: AtomicU64,
    commits: AtomicU64,
}

impl Pool {
    fn connect(&self) -> Result<Client> {
        let mut client = self.config.connect(NoTls).map_err(pg_err)?;
        client
            .batch_execute("SET synchronous_commit = on; SET TIME ZONE 'UTC'")
            .map_err(pg_err)?;
        Ok(client)
    }

    fn get(self: &Arc<Self>) -> Result<Conn> {
        let pooled = self.idle.lock().pop();
        let client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect()?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            in_txn: false,
        })
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
        if self.in_txn && client.batch_execute("ROLLBACK").is_err() {
            return;
        }
        if client.is_closed() {
            return;
        }
        let mut idle = self.pool.idle.lock();
        if idle.len() < POOL_IDLE {
            idle.push(client);
        }
    }
}

/// The PostgreSQL backend.
pub(crate) struct PgBackend {
    pool: Arc<Pool>,
    created: bool,
    /// This process's generation slots, bumped by its commits and by the listener.
    slots: Arc<Sidecar>,
    listener: Listener,
}

/// The change listener thread and what it shares.
struct Listener {
    connected: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
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
        let mut config: Config = url
            .parse()
            .map_err(|e| Error::invalid(format!("invalid PostgreSQL URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool = Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
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
            let (config, slots) = (pool.config.clone(), slots.clone());
            let (connected, stop) = (connected.clone(), stop.clone());
            std::thread::Builder::new()
                .name("keyledger-pg-listener".into())
                .spawn(move || listen(&config, &slots, &connected, &stop))
                .map_err(|e| Error::Storage(format!("cannot start the change listener: {e}")))?
        };
        let mut backend = PgBackend {
            pool,
            created: false,
            slots,
            listener: Listener {
                connected,
                stop,
                thread: Some(thread),
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

/// The listener: (re)connect, `LISTEN`, confirm the position, invalidate everything,
/// trust the slots; then bump what each notification names, until the connection breaks
/// (distrust, and start over) or the backend is dropped.
fn listen(config: &Config, slots: &Sidecar, connected: &AtomicBool, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        slots.distrust();
        connected.store(false, Ordering::SeqCst);
        let mut client = match listener_connect(config) {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(LISTEN_TICK);
                continue;
            }
        };
        let mut last = match client.query_one("SELECT seq FROM kl_change_seq", &[]) {
            Ok(row) => row.get::<_, i64>(0),
            Err(_) => continue,
        };
        slots.bump_all();
        slots.trust_again();
        connected.store(true, Ordering::SeqCst);
        while !stop.load(Ordering::SeqCst) {
            let next = client.notifications().timeout_iter(LISTEN_TICK).next();
            match next {
                Ok(Some(n)) => last = apply(slots, n.payload(), last),
                Ok(None) if !client.is_closed() => {}
                _ => break,
            }
        }
    }
    slots.distrust();
    connected.store(false, Ordering::SeqCst);
}

fn listener_connect(config: &Config) -> std::result::Result<Client, postgres::Error> {
    let mut config = config.clone();
    // A silently broken network path (no FIN, no RST) is noticed within about 5 s by TCP
    // keepalives and the user timeout; until then this process trusts its slots.
    config
        .application_name("keyledger-listener")
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(5));
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    Ok(client)
}

/// Apply one notification (`<seq> <kind><id>\n…` or `<seq> *`); returns the newest
/// sequence number seen. A gap, or a payload it cannot read, invalidates every slot.
fn apply(slots: &Sidecar, payload: &str, last: i64) -> i64 {
    let (seq, body) = payload.split_once(' ').unwrap_or((payload, "*"));
    let Ok(seq) = seq.parse::<i64>() else {
        slots.bump_all();
        return last;
    };
    if seq > last.saturating_add(1) || body == "*" {
        slots.bump_all();
        return last.max(seq);
    }
    let mut touched = Vec::new();
    for item in body.split('\n') {
        let kind = match item.as_bytes().first() {
            Some(b'k') => SlotKind::Key,
            Some(b'a') => SlotKind::Account,
            Some(b'g') => SlotKind::Global,
            _ => {
                slots.bump_all();
                return last.max(seq);
            }
        };
        touched.push((kind, &item[1..]));
    }
    let mut guard = slots.write();
    let numbers: Vec<usize> = touched
        .iter()
        .map(|(k, id)| guard.slot_of(*k, id))
        .collect();
    guard.begin(&numbers);
    drop(guard);
    last.max(seq)
}

/// The NOTIFY payload for a committed change: `<seq> <kind><id>` lines, or `<seq> *`.
fn payload(seq: i64, touched: &[(SlotKind, String)]) -> String {
    let mut body = String::new();
    for (i, (kind, id)) in touched.iter().enumerate() {
        if i > 0 {
            body.push('\n');
        }
        body.push(match kind {
            SlotKind::Key => 'k',
            SlotKind::Account => 'a',
            SlotKind::Global => 'g',
        });
        body.push_str(id);
    }
    if body.len() > MAX_PAYLOAD || touched.iter().any(|(_, id)| id.contains('\n')) {
        body = "*".into();
    }
    format!("{seq} {body}")
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

    fn distrust_reason(&self) -> Option<String> {
        (!self.listener.connected.load(Ordering::SeqCst)).then(|| {
            "PostgreSQL vault: the change listener is not connected (or has not confirmed its \
             position), so every call is validated against the database"
                .into()
        })
    }
}

/// One transaction on one pooled connection: a read snapshot, or a write transaction
/// holding the writers' advisory lock (both kinds share the type; only writes commit).
struct PgRead {
    conn: RefCell<Conn>,
    /// What this write transaction changed, for the NOTIFY and the local slots.
    touched: Vec<(SlotKind, String)>,
    /// This process's slots (write transactions only).
    slots: Option<Arc<Sidecar>>,
}

impl PgRead {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        self.conn
            .borrow_mut()
            .c()
            .query(sql, params)
            .map_err(pg_err)
    }

    fn opt(
        &self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<postgres::Row>> {
        self.conn
            .borrow_mut()
            .c()
            .query_opt(sql, params)
            .map_err(pg_err)
    }

    fn exec(&self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> Result<u64> {
        self.conn
            .borrow_mut()
            .c()
            .execute(sql, params)
            .map_err(pg_err)
    }

    fn touch(&mut self, kind: SlotKind, id: &str) {
        if !self.touched.iter().any(|(k, i)| *k == kind && i == id) {
            self.touched.push((kind, id.to_string()));
        }
    }

    fn meta_raw(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .opt("SELECT value FROM kl_meta WHERE name = $1", &[&name])?
            .map(|r| r.get(0)))
    }

    fn put_meta_raw(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.exec(
            "INSERT INTO kl_meta (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            &[&name, &value],
        )?;
        Ok(())
    }
}

fn limit_of(row: &postgres::Row) -> RateLimit {
    RateLimit {
        name: row.get(0),
        limit: unsigned(row.get(1)),
        duration_ms: unsigned(row.get(2)),
        auto_apply: row.get(3),
    }
}

impl ReadTxn for PgRead {
    fn meta(&self, name: Meta) -> Result<Option<Vec<u8>>> {
        self.meta_raw(meta_key(name))
    }

    fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        self.opt("SELECT record FROM kl_accounts WHERE id = $1", &[&id])?
            .map(|r| decode(r.get::<_, &[u8]>(0), "account"))
            .transpose()
    }

    fn balance(&self, id: &str) -> Result<Option<(u64, u64)>> {
        self.opt(
            "SELECT credits::text, total::text FROM kl_balances WHERE id = $1",
            &[&id],
        )?
        .map(|r| Ok((numeric(r.get(0))?, numeric(r.get(1))?)))
        .transpose()
    }

    fn key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        self.opt("SELECT record FROM kl_keys WHERE key_id = $1", &[&key_id])?
            .map(|r| decode(r.get::<_, &[u8]>(0), "key"))
            .transpose()
    }

    fn account_ids(&self) -> Result<Vec<String>> {
        Ok(self
            .query("SELECT id FROM kl_accounts ORDER BY id", &[])?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn keys_of(&self, account_id: Option<&str>) -> Result<Vec<KeyRecord>> {
        let rows = match account_id {
            None => self.query("SELECT record FROM kl_keys ORDER BY key_id", &[])?,
            Some(a) => self.query(
                "SELECT record FROM kl_keys WHERE account_id = $1 ORDER BY key_id",
                &[&a],
            )?,
        };
        rows.iter()
            .map(|r| decode(r.get::<_, &[u8]>(0), "key"))
            .collect()
    }

    fn limits(&self, owner: LimitOwner<'_>) -> Result<Vec<RateLimit>> {
        let owner = owner_key(owner);
        Ok(self
            .query(
                "SELECT name, lim, duration_ms, auto_apply FROM kl_ratelimits \
                 WHERE owner = $1 ORDER BY name",
                &[&owner],
            )?
            .iter()
            .map(limit_of)
            .collect())
    }

    fn routes(&self) -> Result<Vec<RouteRule>> {
        Ok(self
            .query(
                "SELECT method, pattern, scope, cost FROM kl_routes ORDER BY method, pattern",
                &[],
            )?
            .iter()
            .map(|r| RouteRule {
                method: r.get(0),
                pattern: r.get(1),
                scope: r.get(2),
                cost: unsigned(r.get(3)),
            })
            .collect())
    }

    fn idempotent(
        &self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
    ) -> Result<Option<(Millis, IdempotencyRecord)>> {
        let key = idempotency_key(scope, key);
        let Some(row) = self.opt(
            "SELECT at, record FROM kl_idempotency WHERE account_id = $1 AND key = $2",
            &[&account_id, &key],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((
            row.get(0),
            IdempotencyRecord::decode(row.get::<_, &[u8]>(1))?,
        )))
    }

    /// Newest first, with the redb backend's exact semantics: the narrowest index is
    /// walked (here: the key or account column), and the walk stops at the first entry
    /// older than `since` or after `limit` matches.
    fn audit(
        &self,
        key_id: Option<&str>,
        account_id: Option<&str>,
        action: Option<&str>,
        since: Option<Millis>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditRecord)>> {
        const PAGE: i64 = 512;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut below = i64::MAX;
        loop {
            let rows = match (key_id, account_id) {
                (Some(k), _) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE key_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                    &[&k, &below, &PAGE],
                )?,
                (None, Some(a)) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE account_id = $1 AND seq < $2 \
                     ORDER BY seq DESC LIMIT $3",
                    &[&a, &below, &PAGE],
                )?,
                (None, None) => self.query(
                    "SELECT seq, record FROM kl_audit WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
                    &[&below, &PAGE],
                )?,
            };
            let n = rows.len();
            for row in rows {
                let seq: i64 = row.get(0);
                below = seq;
                let rec: AuditRecord = decode(row.get::<_, &[u8]>(1), "audit")?;
                if since.is_some_and(|s| rec.time < s) {
                    return Ok(out);
                }
                let ok = key_id.is_none_or(|k| rec.key_id.as_deref() == Some(k))
                    && account_id.is_none_or(|a| rec.account_id.as_deref() == Some(a))
                    && action.is_none_or(|a| rec.action == a);
                if ok {
                    out.push((unsigned(seq), rec));
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if i64::try_from(n).unwrap_or(0) < PAGE {
                return Ok(out);
            }
        }
    }

    fn last_used(&self, key_id: &str) -> Result<Option<Millis>> {
        Ok(self
            .opt(
                "SELECT last_used FROM kl_usage_totals WHERE key_id = $1",
                &[&key_id],
            )?
            .map(|r| r.get::<_, i64>(0))
            .filter(|&l| l != i64::MIN))
    }

    #[allow(clippy::type_complexity)]
    fn usage(&self, key_id: &str) -> Result<(Option<(i64, u64, u64)>, Vec<(i64, u64)>)> {
        let total = self
            .opt(
                "SELECT last_used, granted, refused FROM kl_usage_totals WHERE key_id = $1",
                &[&key_id],
            )?
            .map(|r| (r.get(0), unsigned(r.get(1)), unsigned(r.get(2))));
        let buckets = self
            .query(
                "SELECT hour, granted FROM kl_usage_hourly WHERE key_id = $1 ORDER BY hour",
                &[&key_id],
            )?
            .iter()
            .map(|r| (r.get(0), unsigned(r.get(1))))
            .collect();
        Ok((total, buckets))
    }

    fn signatures_recorded(&self) -> Result<u64> {
        let n: i64 = self
            .query("SELECT count(*) FROM kl_signatures_seen", &[])?
            .first()
            .map_or(0, |r| r.get(0));
        Ok(unsigned(n))
    }
}

impl WriteTxn for PgRead {
    fn put_meta(&mut self, name: Meta, value: &[u8]) -> Result<()> {
        self.put_meta_raw(meta_key(name), value)
    }

    fn put_account(&mut self, id: &str, rec: &AccountRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_accounts (id, record) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record",
            &[&id, &bytes],
        )?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    fn put_balance(&mut self, id: &str, credits: u64, total: u64) -> Result<()> {
        self.exec(
            "INSERT INTO kl_balances (id, credits, total) \
             VALUES ($1, $2::text::numeric, $3::text::numeric) \
             ON CONFLICT (id) DO UPDATE SET credits = EXCLUDED.credits, total = EXCLUDED.total",
            &[&id, &credits.to_string(), &total.to_string()],
        )?;
        self.touch(SlotKind::Account, id);
        Ok(())
    }

    fn put_key(&mut self, rec: &KeyRecord) -> Result<()> {
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_keys (key_id, account_id, record) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id) DO UPDATE SET account_id = EXCLUDED.account_id, \
             record = EXCLUDED.record",
            &[&rec.key_id, &rec.account_id, &bytes],
        )?;
        self.touch(SlotKind::Key, &rec.key_id);
        Ok(())
    }

    fn put_limit(&mut self, owner: LimitOwner<'_>, def: &RateLimit) -> Result<Option<RateLimit>> {
        let (kind, id) = owner_slot(owner);
        self.touch(kind, id);
        let owner = owner_key(owner);
        let old = self
            .opt(
                "SELECT name, lim, duration_ms, auto_apply FROM kl_ratelimits \
                 WHERE owner = $1 AND name = $2",
                &[&owner, &def.name],
            )?
            .map(|r| limit_of(&r));
        self.exec(
            "INSERT INTO kl_ratelimits (owner, name, lim, duration_ms, auto_apply) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner, name) DO UPDATE SET \
             lim = EXCLUDED.lim, duration_ms = EXCLUDED.duration_ms, auto_apply = EXCLUDED.auto_apply",
            &[
                &owner,
                &def.name,
                &big(def.limit)?,
                &big(def.duration_ms)?,
                &def.auto_apply,
            ],
        )?;
        Ok(old)
    }

    fn remove_limit(&mut self, owner: LimitOwner<'_>, name: &str) -> Result<Option<RateLimit>> {
        let (kind, id) = owner_slot(owner);
        let key = owner_key(owner);
        let old = self
            .opt(
                "DELETE FROM kl_ratelimits WHERE owner = $1 AND name = $2 \
                 RETURNING name, lim, duration_ms, auto_apply",
                &[&key, &name],
            )?
            .map(|r| limit_of(&r));
        if old.is_some() {
            self.touch(kind, id);
        }
        Ok(old)
    }

    fn insert_route(&mut self, rule: &RouteRule) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO kl_routes (method, pattern, scope, cost) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (method, pattern) DO NOTHING",
            &[&rule.method, &rule.pattern, &rule.scope, &big(rule.cost)?],
        )?;
        if n == 1 {
            self.touch(SlotKind::Global, "routes");
        }
        Ok(n == 1)
    }

    fn remove_route(&mut self, method: &str, pattern: &str) -> Result<Option<RouteRule>> {
        let removed = self
            .opt(
                "DELETE FROM kl_routes WHERE method = $1 AND pattern = $2 \
                 RETURNING method, pattern, scope, cost",
                &[&method, &pattern],
            )?
            .map(|r| RouteRule {
                method: r.get(0),
                pattern: r.get(1),
                scope: r.get(2),
                cost: unsigned(r.get(3)),
            });
        if removed.is_some() {
            self.touch(SlotKind::Global, "routes");
        }
        Ok(removed)
    }

    fn put_idempotent(
        &mut self,
        account_id: &str,
        scope: IdempotencyScope,
        key: &str,
        at: Millis,
        rec: &IdempotencyRecord,
    ) -> Result<()> {
        let key = idempotency_key(scope, key);
        let bytes = rec.encode()?;
        self.exec(
            "INSERT INTO kl_idempotency (account_id, key, at, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account_id, key) DO UPDATE SET at = EXCLUDED.at, record = EXCLUDED.record",
            &[&account_id, &key, &at, &bytes],
        )?;
        Ok(())
    }

    fn prune_idempotent(&mut self, before: Millis, max: usize) -> Result<usize> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.exec(
            "DELETE FROM kl_idempotency WHERE (account_id, key) IN (SELECT account_id, key \
             FROM kl_idempotency WHERE at < $1 ORDER BY at, account_id, key LIMIT $2)",
            &[&before, &max],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// As on redb: delete `auth_refused` entries older than `before`, scanning at most
    /// `max` entries from a cursor kept in meta, never the newest entry.
    fn prune_refusals(&mut self, before: Millis, max: usize) -> Result<usize> {
        const CURSOR: &str = "audit_prune_cursor";
        let cursor = match self.meta_raw(CURSOR)? {
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_le_bytes)
                .map_err(|_| Error::Storage("corrupt audit prune cursor".into()))?,
            None => 0,
        };
        let Some(newest) = self
            .opt("SELECT max(seq) FROM kl_audit", &[])?
            .and_then(|r| r.get::<_, Option<i64>>(0))
        else {
            return Ok(0);
        };
        let rows = self.query(
            "SELECT seq, record FROM kl_audit WHERE seq >= $1 AND seq < $2 ORDER BY seq LIMIT $3",
            &[
                &big(cursor)?,
                &newest,
                &i64::try_from(max).unwrap_or(i64::MAX),
            ],
        )?;
        let mut next = cursor;
        let mut doomed: Vec<i64> = Vec::new();
        for row in rows {
            let seq: i64 = row.get(0);
            let rec: AuditRecord = decode(row.get::<_, &[u8]>(1), "audit")?;
            if rec.time >= before {
                break;
            }
            next = unsigned(seq) + 1;
            if rec.action == AuditAction::AuthRefused.as_str() {
                doomed.push(seq);
            }
        }
        let moved = next != cursor;
        if moved {
            self.put_meta_raw(CURSOR, &next.to_le_bytes())?;
        }
        if !doomed.is_empty() {
            self.exec("DELETE FROM kl_audit WHERE seq = ANY($1)", &[&doomed])?;
        }
        Ok(doomed.len() + usize::from(moved))
    }

    fn record_signature(&mut self, t_seconds: i64, mac: &[u8]) -> Result<bool> {
        let n = self.exec(
            "INSERT INTO kl_signatures_seen (t, mac) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&t_seconds, &mac],
        )?;
        Ok(n == 1)
    }

    fn prune_signatures(&mut self, before: i64, max: usize) -> Result<usize> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.exec(
            "DELETE FROM kl_signatures_seen WHERE (t, mac) IN (SELECT t, mac \
             FROM kl_signatures_seen WHERE t < $1 ORDER BY t, mac LIMIT $2)",
            &[&before, &max],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn append_audit(&mut self, rec: &AuditRecord) -> Result<u64> {
        let seq: i64 = self
            .query("SELECT coalesce(max(seq), 0) + 1 FROM kl_audit", &[])?
            .first()
            .map_or(1, |r| r.get(0));
        let bytes = encode(rec)?;
        self.exec(
            "INSERT INTO kl_audit (seq, time, key_id, account_id, action, record) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &seq,
                &rec.time,
                &rec.key_id,
                &rec.account_id,
                &rec.action,
                &bytes,
            ],
        )?;
        Ok(unsigned(seq))
    }

    fn add_usage(
        &mut self,
        key_id: &str,
        last_used: Option<Millis>,
        granted: u64,
        refused: u64,
        hour: Millis,
    ) -> Result<()> {
        let last = last_used.unwrap_or(i64::MIN);
        let (g, r) = (
            big(granted.min(i64::MAX as u64))?,
            big(refused.min(i64::MAX as u64))?,
        );
        // Saturating adds, as on redb (`least` against the bigint maximum).
        self.exec(
            "INSERT INTO kl_usage_totals (key_id, last_used, granted, refused) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (key_id) DO UPDATE SET \
             last_used = greatest(kl_usage_totals.last_used, EXCLUDED.last_used), \
             granted = least(kl_usage_totals.granted::numeric + EXCLUDED.granted, 9223372036854775807)::bigint, \
             refused = least(kl_usage_totals.refused::numeric + EXCLUDED.refused, 9223372036854775807)::bigint",
            &[&key_id, &last, &g, &r],
        )?;
        if granted > 0 {
            self.exec(
                "INSERT INTO kl_usage_hourly (key_id, hour, granted) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_id, hour) DO UPDATE SET granted = \
                 least(kl_usage_hourly.granted::numeric + EXCLUDED.granted, 9223372036854775807)::bigint",
                &[&key_id, &hour, &g],
            )?;
        }
        Ok(())
    }

    /// Commit; when anything was touched, first take the next change number and NOTIFY
    /// it (delivered at commit), and bump this process's slots around the commit.
    fn commit(self: Box<Self>, _durability: Durability) -> Result<()> {
        let PgRead {
            conn,
            touched,
            slots,
        } = *self;
        let mut conn = conn.into_inner();
        let guard = match (&slots, touched.is_empty()) {
            (Some(sc), false) => {
                let seq: i64 = conn
                    .c()
                    .query_one("UPDATE kl_change_seq SET seq = seq + 1 RETURNING seq", &[])
                    .map_err(pg_err)?
                    .get(0);
                conn.c()
                    .execute(
                        "SELECT pg_notify($1, $2)",
                        &[&CHANNEL, &payload(seq, &touched)],
                    )
                    .map_err(pg_err)?;
                let mut guard = sc.write();
                let numbers: Vec<usize> = touched
                    .iter()
                    .map(|(k, id)| guard.slot_of(*k, id))
                    .collect();
                guard.begin(&numbers);
                Some(guard)
            }
            _ => None,
        };
        conn.c().batch_execute("COMMIT").map_err(pg_err)?;
        drop(guard);
        conn.in_txn = false;
        conn.pool.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    #[cfg(test)]
    fn commit_and_die(self: Box<Self>) -> Result<()> {
        self.commit(Durability::Immediate)
    }
}
