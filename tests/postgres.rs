//! The vault over PostgreSQL (cargo feature `postgres`), on the throwaway cluster of
//! `scripts/pg-cluster` (`KEYLEDGER_TEST_PG`): each test gets a fresh database. Without
//! the feature, a `postgresql://` location is refused with `invalid_argument`.

mod common;

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgresql_location_is_refused_without_the_feature() {
    for url in ["postgresql://u@localhost/db", "postgres://u@localhost/db"] {
        let e = keyledger::Vault::open(url).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        assert!(e.to_string().contains("postgres"), "{e}");
    }
}

#[cfg(feature = "postgres")]
mod over_postgres {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use keyledger::{
        AuditQuery, AuthorizeOptions, CacheMode, LimitOwner, NewKey, RefillInterval, Target, Vault,
    };

    use super::common::pg;
    use super::common::workloads::Rng;
    use super::common::{
        self, assert_no_audit_gap, child_command, options, options_with_clock, reported, run_child,
        seed_routes, TestClock,
    };

    /// A fresh database for `test`, or `None` when no cluster is configured (a failure
    /// under KEYLEDGER_REQUIRE_ALL).
    fn database(test: &str) -> Option<String> {
        let cluster = pg::cluster(&format!("postgres::{test}"))?;
        Some(pg::fresh_database(&cluster, test))
    }

    /// Waits (at most 10 s) until the vault's change listener is connected: `cache_mode`
    /// is `disabled` until then.
    fn wait_for_listener(v: &Vault) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while v.cache_mode() != CacheMode::Shared {
            assert!(
                Instant::now() < deadline,
                "the change listener did not connect within 10 s: {:?}",
                v.cache_disabled_reason()
            );
            std::thread::yield_now();
        }
        assert_eq!(v.cache_disabled_reason(), None);
    }

    /// Calls `f` until it returns `want`, for at most 5 s (a notification's delivery);
    /// the answers seen before, in order.
    fn until(want: &str, mut f: impl FnMut() -> String) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = Vec::new();
        loop {
            let got = f();
            if got == want {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "still {got:?} after 5 s, expected {want:?} (seen {seen:?})"
            );
            seen.push(got);
        }
    }

    /// The database name in a test database URL.
    fn database_name(url: &str) -> String {
        let after_scheme = url.split_once("://").unwrap().1;
        let path = after_scheme.split('?').next().unwrap();
        path.split_once('/').unwrap().1.to_string()
    }

    fn scope(cost: u64) -> AuthorizeOptions<'static> {
        AuthorizeOptions {
            cost: Some(cost),
            ..AuthorizeOptions::default()
        }
    }

    #[test]
    fn management_round_trips_and_survives_a_reopen() {
        let Some(url) = database("management") else {
            return;
        };
        let clock = TestClock::new();
        let v = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        wait_for_listener(&v);
        v.create_account("acct_1", 100, None).unwrap();
        v.create_account("acct_2", 5, None).unwrap();
        assert_eq!(
            v.create_account("acct_1", 1, None).unwrap_err().code(),
            "already_exists"
        );
        seed_routes(&v);
        let (_t, k) = v
            .create_key(NewKey::new("acct_1", "server", ["sms:send"]).prefix("dial_live"))
            .unwrap();
        v.set_scopes(&k.key_id, &["sms:send", "numbers:read"])
            .unwrap();
        v.set_ratelimit(LimitOwner::Key(&k.key_id), "burst", 10, 1000, true)
            .unwrap();
        v.close().unwrap();
        drop(v);

        let v = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        let ids: Vec<String> = v
            .list_accounts()
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect();
        assert_eq!(ids, ["acct_1", "acct_2"]);
        assert_eq!(v.balance("acct_1").unwrap().credits, 100);
        assert_eq!(
            v.key(&k.key_id).unwrap().scopes,
            ["numbers:read", "sms:send"]
        );
        assert_eq!(v.list_keys(Some("acct_1")).unwrap().len(), 1);
        assert_eq!(v.list_routes().unwrap().len(), 4);
        assert_eq!(
            v.ratelimits(LimitOwner::Key(&k.key_id)).unwrap()[0].limit,
            10
        );
        v.remove_route("GET", "/sms/*").unwrap();
        assert_eq!(v.list_routes().unwrap().len(), 3);
        assert_eq!(
            v.remove_route("GET", "/sms/*").unwrap_err().code(),
            "not_found"
        );
    }

    #[test]
    fn the_url_password_never_shows_in_path_or_debug() {
        let Some(url) = database("redaction") else {
            return;
        };
        let with_password = url.replacen("keyledger@", "keyledger:hunter2secret@", 1);
        // Trust auth on the socket: the password is sent only if asked for, and it is not.
        let v = Vault::open_with(&with_password, options()).unwrap();
        let shown = format!("{} {:?}", v.path().display(), v);
        assert!(!shown.contains("hunter2secret"), "{shown}");
        assert!(shown.contains("keyledger:***@"), "{shown}");
    }

    #[test]
    fn exclusive_is_refused_for_a_postgresql_vault() {
        let Some(url) = database("exclusive") else {
            return;
        };
        let e = Vault::open_with(
            &url,
            keyledger::VaultOptions {
                exclusive: true,
                ..options()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_argument");
    }

    /// The schema version this keyledger creates.
    const SCHEMA_VERSION: &str = "6";

    /// `url` with a keyledger parameter added.
    fn with_param(url: &str, param: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{param}")
    }

    #[test]
    fn a_schema_newer_than_this_keyledger_is_refused() {
        let Some(url) = database("schema") else {
            return;
        };
        Vault::open_with(&url, options()).unwrap().close().unwrap();
        assert_eq!(
            pg::sql(&url, "SELECT version FROM keyledger_schema"),
            SCHEMA_VERSION
        );
        pg::sql(&url, "UPDATE keyledger_schema SET version = 99");
        let e = Vault::open_with(&url, options()).unwrap_err();
        assert_eq!(e.code(), "storage");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    /// The schema as keyledger's version 2 created it (its two migration steps, verbatim).
    const SCHEMA_V2: &str = r#"
CREATE TABLE keyledger_schema (version integer NOT NULL);
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
CREATE TABLE kl_change_seq (seq bigint NOT NULL);
INSERT INTO kl_change_seq (seq) VALUES (0);
INSERT INTO keyledger_schema (version) VALUES (2);
"#;

    /// A database at schema version 2 (as the keyledger of that version left it, with or
    /// without the rate-limit table it created on open in exact mode) is upgraded in place
    /// on open: the version is the current one, and exact rate limits count in it.
    #[test]
    fn a_version_2_database_is_upgraded_in_place_on_open() {
        for with_state in [false, true] {
            let Some(url) = database("schema_v2") else {
                return;
            };
            pg::sql(&url, SCHEMA_V2);
            if with_state {
                // keyledger 2 created this on open with ratelimit_mode=exact.
                pg::sql(
                    &url,
                    "CREATE TABLE IF NOT EXISTS kl_ratelimit_state \
                     (key bigint PRIMARY KEY, tat bigint NOT NULL); \
                     INSERT INTO kl_ratelimit_state VALUES (1, 2)",
                );
            }
            let clock = TestClock::new();
            let v = Vault::open_with(
                with_param(&url, "ratelimit_mode=exact"),
                options_with_clock(&clock),
            )
            .unwrap();
            assert_eq!(
                pg::sql(&url, "SELECT version FROM keyledger_schema"),
                SCHEMA_VERSION
            );
            if with_state {
                // The counters it held are kept.
                assert_eq!(
                    pg::sql(&url, "SELECT tat FROM kl_ratelimit_state WHERE key = 1"),
                    "2"
                );
            }
            v.create_account("acct", 0, None).unwrap();
            let (token, k) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
            v.set_ratelimit(LimitOwner::Key(&k.key_id), "burst", 2, 60_000, true)
                .unwrap();
            for _ in 0..2 {
                v.authorize(token.expose(), Target::Scope("x"), &scope(0))
                    .unwrap();
            }
            let e = v
                .authorize(token.expose(), Target::Scope("x"), &scope(0))
                .unwrap_err();
            assert_eq!(e.code(), "rate_limited");
            let rows: u64 = pg::sql(&url, "SELECT count(*) FROM kl_ratelimit_state")
                .parse()
                .unwrap();
            assert_eq!(rows, 1 + u64::from(with_state), "counted in the database");
            v.close().unwrap();
            // A second open finds nothing left to migrate.
            Vault::open_with(&url, options()).unwrap().close().unwrap();
            assert_eq!(
                pg::sql(&url, "SELECT version FROM keyledger_schema"),
                SCHEMA_VERSION
            );
        }
    }

    #[test]
    fn authorize_checks_secret_revocation_scope_and_credits() {
        let Some(url) = database("authorize") else {
            return;
        };
        let clock = TestClock::new();
        let v = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        v.create_account("acct_42", 2, None).unwrap();
        seed_routes(&v);
        let (token, info) = v
            .create_key(NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"))
            .unwrap();
        let send = Target::route("POST", "/api/v1/messaging/send");
        let g = v
            .authorize(token.expose(), send, &AuthorizeOptions::default())
            .unwrap();
        assert_eq!((g.charged, g.credits), (1, 1));
        let e = v
            .authorize(
                token.expose(),
                Target::route("GET", "/api/v1/numbers/mine"),
                &AuthorizeOptions::default(),
            )
            .unwrap_err();
        assert_eq!(e.code(), "missing_scope");
        let mut wrong = token.expose().to_string();
        wrong.pop();
        wrong.push(if token.expose().ends_with('A') {
            'B'
        } else {
            'A'
        });
        assert_eq!(
            v.authorize(&wrong, send, &AuthorizeOptions::default())
                .unwrap_err()
                .code(),
            "invalid_api_key"
        );
        v.authorize(token.expose(), send, &AuthorizeOptions::default())
            .unwrap();
        let e = v
            .authorize(token.expose(), send, &AuthorizeOptions::default())
            .unwrap_err();
        assert_eq!(e.code(), "insufficient_credits");
        v.top_up("acct_42", 10, None).unwrap();
        v.revoke_key(&info.key_id).unwrap();
        let e = v
            .authorize(token.expose(), send, &AuthorizeOptions::default())
            .unwrap_err();
        assert_eq!(e.code(), "invalid_api_key");
        assert_eq!(v.balance("acct_42").unwrap().credits, 10);
    }

    #[test]
    fn concurrent_debits_from_threads_are_exact() {
        let Some(url) = database("debits") else {
            return;
        };
        let v = Arc::new(Vault::open_with(&url, options()).unwrap());
        v.create_account("acct", 1000, None).unwrap();
        let (token, _) = v.create_key(NewKey::new("acct", "k", ["work"])).unwrap();
        let token = Arc::new(token.expose().to_string());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (v, token) = (v.clone(), token.clone());
                std::thread::spawn(move || {
                    let mut granted = 0u64;
                    for _ in 0..40 {
                        match v.authorize(&token, Target::Scope("work"), &scope(3)) {
                            Ok(g) => granted += g.charged,
                            Err(e) => assert_eq!(e.code(), "insufficient_credits"),
                        }
                    }
                    granted
                })
            })
            .collect();
        let charged: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // 8 × 40 × 3 = 960 asked of 1000: every one granted, the remainder exact.
        assert_eq!(charged, 960);
        assert_eq!(v.balance("acct").unwrap().credits, 40);
        // Management debits race with authorize debits and never overdraw.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let v = v.clone();
                std::thread::spawn(move || {
                    (0..10).filter(|_| v.debit("acct", 3, None).is_ok()).count() as u64
                })
            })
            .collect();
        let ok: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 13, "40 credits pay 13 debits of 3");
        assert_eq!(v.balance("acct").unwrap().credits, 1);
        assert_eq!(
            pg::sql(&url, "SELECT credits FROM kl_balances WHERE id = 'acct'"),
            "1"
        );
    }

    #[test]
    fn idempotent_authorize_and_debit_charge_once() {
        let Some(url) = database("idempotency") else {
            return;
        };
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 10, None).unwrap();
        let (token, _) = v.create_key(NewKey::new("acct", "k", ["work"])).unwrap();
        let opts = AuthorizeOptions {
            cost: Some(4),
            idempotency_key: Some("req-1"),
            ..AuthorizeOptions::default()
        };
        let first = v
            .authorize(token.expose(), Target::Scope("work"), &opts)
            .unwrap();
        let again = v
            .authorize(token.expose(), Target::Scope("work"), &opts)
            .unwrap();
        assert!(!first.replayed && again.replayed);
        assert_eq!(v.balance("acct").unwrap().credits, 6);
        let other = AuthorizeOptions {
            cost: Some(5),
            ..opts
        };
        assert_eq!(
            v.authorize(token.expose(), Target::Scope("work"), &other)
                .unwrap_err()
                .code(),
            "idempotency_conflict"
        );
        v.debit("acct", 2, Some("d-1")).unwrap();
        v.debit("acct", 2, Some("d-1")).unwrap();
        assert_eq!(v.balance("acct").unwrap().credits, 4);
    }

    #[test]
    fn audit_is_gapless_and_filtered() {
        let Some(url) = database("audit") else { return };
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("a1", 1, None).unwrap();
        v.create_account("a2", 1, None).unwrap();
        let (_t, k) = v.create_key(NewKey::new("a1", "k", ["x"])).unwrap();
        v.disable_key(&k.key_id).unwrap();
        common::assert_no_audit_gap(&v);
        let by_key = v
            .audit(&AuditQuery {
                key_id: Some(k.key_id.clone()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(by_key.len(), 2, "{by_key:?}");
        assert!(by_key[0].seq > by_key[1].seq);
        let created = v
            .audit(&AuditQuery {
                action: Some("account_created".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(created.len(), 2);
        let a2 = v
            .audit(&AuditQuery {
                account_id: Some("a2".into()),
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(a2.len(), 1);
    }

    #[test]
    fn rate_limits_refuse_past_the_limit() {
        let Some(url) = database("ratelimits") else {
            return;
        };
        let clock = TestClock::new();
        let v = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        v.create_account("acct", 0, None).unwrap();
        let (token, k) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        v.set_ratelimit(LimitOwner::Key(&k.key_id), "burst", 3, 60_000, true)
            .unwrap();
        for _ in 0..3 {
            v.authorize(token.expose(), Target::Scope("x"), &scope(0))
                .unwrap();
        }
        let e = v
            .authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap_err();
        assert_eq!(e.code(), "rate_limited");
        clock.advance(61_000);
        v.authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap();
    }

    #[test]
    fn a_refill_happens_once_per_period_across_two_handles() {
        let Some(url) = database("refill") else {
            return;
        };
        let clock = TestClock::new();
        let a = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        let b = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        a.create_account("acct", 0, None).unwrap();
        a.set_refill("acct", 5, RefillInterval::Daily, 1).unwrap();
        let (token, _) = a.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        assert_eq!(
            a.authorize(token.expose(), Target::Scope("x"), &scope(1))
                .unwrap_err()
                .code(),
            "insufficient_credits"
        );
        clock.advance(86_400_000);
        a.authorize(token.expose(), Target::Scope("x"), &scope(2))
            .unwrap();
        b.authorize(token.expose(), Target::Scope("x"), &scope(2))
            .unwrap();
        // One refill of 5 for the period, whichever handle saw the boundary first.
        assert_eq!(b.balance("acct").unwrap().credits, 1);
        assert_eq!(
            a.authorize(token.expose(), Target::Scope("x"), &scope(2))
                .unwrap_err()
                .code(),
            "insufficient_credits"
        );
    }

    #[test]
    fn a_database_that_goes_away_refuses_with_storage_and_never_grants() {
        let Some(cluster) = pg::cluster("postgres::database_gone") else {
            return;
        };
        let url = pg::fresh_database(&cluster, "gone");
        let after_scheme = url.split_once("://").unwrap().1;
        let path = after_scheme.split('?').next().unwrap();
        let name = path.split_once('/').unwrap().1.to_string();
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 5, None).unwrap();
        let (token, _) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        for _ in 0..3 {
            v.authorize(token.expose(), Target::Scope("x"), &scope(0))
                .unwrap();
        }
        pg::sql(&cluster, &format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
        for cost in [0, 0, 1] {
            let e = v
                .authorize(token.expose(), Target::Scope("x"), &scope(cost))
                .unwrap_err();
            assert_eq!(e.code(), "storage", "{e}");
        }
        assert_eq!(v.balance("acct").unwrap_err().code(), "storage");
    }

    #[test]
    fn a_killed_listener_fails_closed_and_a_change_missed_meanwhile_is_never_served() {
        killed_watcher_fails_closed("listener_killed", None);
    }

    #[test]
    fn a_killed_poller_fails_closed_and_a_change_missed_meanwhile_is_never_served() {
        killed_watcher_fails_closed("poller_killed", Some("notify=poll"));
    }

    /// The handles' change listener (or, with `mode` `notify=poll`, poller) connections are
    /// killed while a change commits: the serving handle reads the database meanwhile, and
    /// after reconnecting it never serves what changed.
    fn killed_watcher_fails_closed(test: &str, mode: Option<&str>) {
        let Some(cluster) = pg::cluster(&format!("postgres::{test}")) else {
            return;
        };
        let url = pg::fresh_database(&cluster, test);
        let name = database_name(&url);
        let url = match mode {
            Some(m) => with_param(&url, m),
            None => url,
        };
        let watcher = if mode.is_some() { "poller" } else { "listener" };
        // Two handles with their own caches and listeners: `a` writes, `b` serves.
        let a = Vault::open_with(&url, options()).unwrap();
        let b = Vault::open_with(&url, options()).unwrap();
        a.create_account("acct", 0, None).unwrap();
        let (token, k) = a.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        let (token2, k2) = a.create_key(NewKey::new("acct", "k2", ["x"])).unwrap();
        let (token3, k3) = a.create_key(NewKey::new("acct", "k3", ["x"])).unwrap();
        wait_for_listener(&b);
        for t in [&token, &token2, &token3] {
            b.authorize(t.expose(), Target::Scope("x"), &scope(0))
                .unwrap();
        }
        // The hot path: b answers from its cache without a read transaction.
        let reads = b.stats().read_txns;
        b.authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap();
        assert_eq!(
            b.stats().read_txns,
            reads,
            "a warm, unchanged key read the database"
        );

        // No new connection may be made (the pools keep theirs), and the listeners'
        // connections are killed: the change below is never notified to b.
        pg::sql(
            &cluster,
            &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"),
        );
        pg::sql(
            &cluster,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND application_name = 'keyledger-{watcher}'"
            ),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while b.cache_mode() != CacheMode::Disabled {
            assert!(
                Instant::now() < deadline,
                "b did not notice its {watcher} died"
            );
            std::thread::yield_now();
        }
        assert!(b.cache_disabled_reason().unwrap().contains(watcher));
        a.revoke_key(&k.key_id).unwrap();
        a.revoke_key(&k3.key_id).unwrap();
        // b's cache still holds the key as valid and b got no notification: it must read
        // the database on every call while disconnected.
        let e = b
            .authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap_err();
        assert_eq!(e.code(), "invalid_api_key");
        assert_eq!(b.cache_mode(), CacheMode::Disabled);

        // Reconnected: everything cached before is invalidated, then trusted again.
        pg::sql(
            &cluster,
            &format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"),
        );
        wait_for_listener(&b);
        // k3 was not used while disconnected: its cache entry is from before, and only the
        // invalidation at reconnection keeps it from being served.
        let e = b
            .authorize(token3.expose(), Target::Scope("x"), &scope(0))
            .unwrap_err();
        assert_eq!(e.code(), "invalid_api_key");
        let e = b
            .authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap_err();
        assert_eq!(e.code(), "invalid_api_key");
        b.authorize(token2.expose(), Target::Scope("x"), &scope(0))
            .unwrap();
        wait_for_listener(&a);
        a.disable_key(&k2.key_id).unwrap();
        let before = until("api_key_inactive", || {
            match b.authorize(token2.expose(), Target::Scope("x"), &scope(0)) {
                Ok(_) => "ok".into(),
                Err(e) => e.code().into(),
            }
        });
        assert!(before.iter().all(|r| r == "ok"), "{before:?}");
    }

    /// A poller that finds the change after its position pruned (it fell more than the
    /// kept number of changes behind) invalidates everything: a key whose revocation it
    /// never read is not served from its cache. The revocation's row is rewritten on its
    /// way in (a trigger) into an unrelated change far ahead, as if the rows between had
    /// been pruned.
    #[test]
    fn a_poller_that_finds_its_position_pruned_invalidates_everything() {
        let Some(url) = database("poll_gap") else {
            return;
        };
        let a = Vault::open_with(&url, options()).unwrap();
        a.create_account("acct", 0, None).unwrap();
        let (token, k) = a.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        let (token2, _) = a.create_key(NewKey::new("acct", "k2", ["x"])).unwrap();
        let b = Vault::open_with(with_param(&url, "notify=poll"), options()).unwrap();
        wait_for_listener(&b);
        for t in [&token, &token2] {
            b.authorize(t.expose(), Target::Scope("x"), &scope(0))
                .unwrap();
        }
        let reads = b.stats().read_txns;
        b.authorize(token.expose(), Target::Scope("x"), &scope(0))
            .unwrap();
        assert_eq!(b.stats().read_txns, reads, "the key is warm in b's cache");
        pg::sql(
            &url,
            "CREATE FUNCTION far_ahead() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN NEW.seq := NEW.seq + 10000; NEW.body := 'gunrelated'; RETURN NEW; END $$; \
             CREATE TRIGGER far_ahead BEFORE INSERT ON kl_changes \
             FOR EACH ROW EXECUTE FUNCTION far_ahead()",
        );
        a.revoke_key(&k.key_id).unwrap();
        let before = until("invalid_api_key", || {
            match b.authorize(token.expose(), Target::Scope("x"), &scope(0)) {
                Ok(_) => "ok".into(),
                Err(e) => e.code().into(),
            }
        });
        assert!(before.iter().all(|r| r == "ok"), "{before:?}");
        // Everything was invalidated: the other key is read again, and still granted.
        let reads = b.stats().read_txns;
        b.authorize(token2.expose(), Target::Scope("x"), &scope(0))
            .unwrap();
        assert!(b.stats().read_txns > reads, "k2 was not invalidated");
    }

    /// `kl_changes` keeps only the newest changes: many changes leave it bounded.
    #[test]
    fn the_changes_table_is_pruned_as_changes_commit() {
        let Some(url) = database("changes_pruned") else {
            return;
        };
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 0, None).unwrap();
        // Well past the kept number (4096) without 4096 round trips of the test: the
        // sequence jumps ahead, as after many changes.
        pg::sql(
            &url,
            "DELETE FROM kl_changes; UPDATE kl_change_seq SET seq = 9000; \
             INSERT INTO kl_changes SELECT g, 'aacct' FROM generate_series(1, 9000) g",
        );
        v.top_up("acct", 1, None).unwrap();
        assert_eq!(
            pg::sql(&url, "SELECT count(*), min(seq), max(seq) FROM kl_changes"),
            "4096|4906|9001"
        );
        v.top_up("acct", 1, None).unwrap();
        assert_eq!(
            pg::sql(&url, "SELECT count(*), min(seq), max(seq) FROM kl_changes"),
            "4096|4907|9002"
        );
    }

    /// Another process ("host") with its own caches on the same database.
    struct Host {
        child: std::process::Child,
        out: BufReader<std::process::ChildStdout>,
    }

    impl Host {
        fn start(url: &str) -> Host {
            let mut child = child_command("postgres::serve")
                .env("KL_URL", url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "READY", "the other host did not start");
            Host { child, out }
        }

        fn authorize(&mut self, token: &str, scope: &str, cost: u64) -> String {
            let stdin = self.child.stdin.as_mut().unwrap();
            writeln!(stdin, "{token} {scope} {cost}").unwrap();
            stdin.flush().unwrap();
            let mut line = String::new();
            self.out.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix("RESULT=")
                .unwrap_or(&line)
                .to_string()
        }
    }

    impl Host {
        fn balance(&mut self, account: &str) -> u64 {
            let answer = self.authorize("BALANCE", account, 0);
            answer
                .parse()
                .unwrap_or_else(|_| panic!("BALANCE: {answer}"))
        }
    }

    impl Drop for Host {
        fn drop(&mut self) {
            drop(self.child.stdin.take());
            let _ = self.child.wait();
        }
    }

    #[test]
    fn another_process_refuses_on_its_next_call_after_a_revoke_narrowing_or_debit_to_zero() {
        another_process_refuses("two_hosts", None);
    }

    #[test]
    fn another_polling_process_refuses_after_a_revoke_narrowing_or_debit_to_zero() {
        another_process_refuses("two_hosts_poll", Some("notify=poll"));
    }

    /// A change made here is refused by another process (listening, or with `mode`
    /// `notify=poll` polling).
    fn another_process_refuses(test: &str, mode: Option<&str>) {
        let Some(url) = database(test) else {
            return;
        };
        let url = match mode {
            Some(m) => with_param(&url, m),
            None => url,
        };
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 3, None).unwrap();
        let (revoked, rk) = v.create_key(NewKey::new("acct", "r", ["x"])).unwrap();
        let (disabled, dk) = v.create_key(NewKey::new("acct", "d", ["x"])).unwrap();
        let (narrowed, nk) = v.create_key(NewKey::new("acct", "n", ["x", "y"])).unwrap();
        let (payer, _) = v.create_key(NewKey::new("acct", "p", ["x"])).unwrap();
        let mut other = Host::start(&url);
        // Each key is used once on the other host first, so it is warm there.
        assert_eq!(other.authorize(revoked.expose(), "x", 0), "ok");
        assert_eq!(other.authorize(disabled.expose(), "x", 0), "ok");
        assert_eq!(other.authorize(narrowed.expose(), "y", 0), "ok");
        assert_eq!(other.authorize(payer.expose(), "x", 1), "ok");
        assert_eq!(other.authorize(revoked.expose(), "x", 0), "ok");

        // Each change is refused there once its notification has arrived (polled, at most
        // 5 s); before that, only the old answer may be seen, never anything else.
        v.revoke_key(&rk.key_id).unwrap();
        let before = until("invalid_api_key", || {
            other.authorize(revoked.expose(), "x", 0)
        });
        assert!(before.iter().all(|r| r == "ok"), "{before:?}");
        v.disable_key(&dk.key_id).unwrap();
        let before = until("api_key_inactive", || {
            other.authorize(disabled.expose(), "x", 0)
        });
        assert!(before.iter().all(|r| r == "ok"), "{before:?}");
        v.set_scopes(&nk.key_id, &["x"]).unwrap();
        let before = until("missing_scope", || {
            other.authorize(narrowed.expose(), "y", 0)
        });
        assert!(before.iter().all(|r| r == "ok"), "{before:?}");
        // A debit to zero: a paid call always reads the balance in the database, so the
        // very next one there is refused.
        v.debit("acct", 2, None).unwrap();
        assert_eq!(v.balance("acct").unwrap().credits, 0);
        assert_eq!(
            other.authorize(payer.expose(), "x", 1),
            "insufficient_credits"
        );
        // And back: a top-up here is spendable there at once.
        v.top_up("acct", 1, None).unwrap();
        assert_eq!(other.authorize(payer.expose(), "x", 1), "ok");
        assert_eq!(v.balance("acct").unwrap().credits, 0);
    }

    /// Grants of one limit (100 per minute) when `processes` separate OS processes on one
    /// database, each with 4 threads, make 60 calls per thread at one instant (the children
    /// pass a frozen time, so nothing drains), with `params` added to the URL.
    fn grants_across_processes(test: &str, params: &str, processes: usize) -> u64 {
        let url = database(test).expect("checked by the caller");
        let url = with_param(&url, params);
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 0, None).unwrap();
        let (token, k) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        v.set_ratelimit(LimitOwner::Key(&k.key_id), "per_minute", 100, 60_000, true)
            .unwrap();
        let env = [("KL_PATH", url), ("KL_TOKEN", token.expose().to_string())];
        let children: Vec<_> = (0..processes)
            .map(|_| {
                let env = env.clone();
                std::thread::spawn(move || run_child("ratelimits::hammer", &env))
            })
            .collect();
        children
            .into_iter()
            .map(|c| reported(&c.join().unwrap(), "GRANTED"))
            .sum()
    }

    #[test]
    fn in_exact_mode_separate_processes_together_grant_exactly_the_limit() {
        if pg::cluster("postgres::ratelimit_exact_processes").is_none() {
            return;
        }
        // 3 × 240 attempts at one instant: exactly 100 in total.
        assert_eq!(
            grants_across_processes("rl_exact_procs", "ratelimit_mode=exact", 3),
            100
        );
    }

    #[test]
    fn with_ratelimit_hosts_separate_processes_stay_within_n_plus_hosts_minus_one() {
        if pg::cluster("postgres::ratelimit_share_processes").is_none() {
            return;
        }
        // Each of 3 processes allows ceil(100 / 3) = 34: 102 = N + n − 1, the documented
        // bound, reached when every process is saturated.
        assert_eq!(
            grants_across_processes("rl_share_procs", "ratelimit_hosts=3", 3),
            102
        );
        // Unset, each process counts the whole limit: P · N.
        assert_eq!(
            grants_across_processes("rl_unset_procs", "ratelimit_mode=share", 2),
            200
        );
    }

    /// A debitting child process (`postgres::debit_until_killed`) and its protocol lines.
    struct Debitor {
        child: std::process::Child,
        lines: std::sync::mpsc::Receiver<String>,
        reader: std::thread::JoinHandle<()>,
    }

    impl Debitor {
        fn spawn(url: &str, token: &str, name: &str) -> Debitor {
            let mut child = child_command("postgres::debit_until_killed")
                .env("KL_URL", url)
                .env("KL_TOKEN", token)
                .env("KL_NAME", name)
                .env("KL_THREADS", "2")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let out = child.stdout.take().unwrap();
            let (tx, lines) = std::sync::mpsc::channel();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    if let Some(msg) = line.strip_prefix("@@ ") {
                        if tx.send(msg.to_string()).is_err() {
                            break;
                        }
                    }
                }
            });
            Debitor {
                child,
                lines,
                reader,
            }
        }

        /// SIGKILL, then every line it wrote before dying.
        fn kill(mut self) -> Vec<String> {
            self.child.kill().unwrap();
            self.child.wait().unwrap();
            self.reader.join().unwrap();
            self.lines.try_iter().collect()
        }
    }

    /// Several processes debit one account concurrently over PostgreSQL (idempotent paid
    /// calls, two threads each) and are SIGKILLed at random points, a new one started in
    /// the place of each. At the end every acknowledged debit is in the balance once; each
    /// call in flight at a kill landed at most once (its retry with the same idempotency
    /// key either replays it or charges it now, never both); a process that lived through
    /// the kills and a fresh handle see the same exact balance; the idempotency rows are
    /// one per call; the audit has no gap. `KL_PG_KILLS` sets the number of kills (30).
    #[test]
    fn sigkilled_debitors_lose_no_acknowledged_debit_and_apply_none_twice() {
        let Some(url) = database("pg_sigkill") else {
            return;
        };
        let seed: u64 = std::env::var("KL_SEED").map_or_else(
            |_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            },
            |s| s.parse().unwrap(),
        );
        eprintln!("postgres sigkill seed: KL_SEED={seed}");
        let kills: u64 = std::env::var("KL_PG_KILLS").map_or(30, |n| n.parse().unwrap());
        let mut rng = Rng(seed);
        const INITIAL: u64 = 1_000_000_000;
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", INITIAL, None).unwrap();
        let (token, _) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        v.close().unwrap();
        let token = token.expose().to_string();
        // A long-lived process with warm caches across all the kills.
        let mut survivor = Host::start(&url);
        assert_eq!(survivor.authorize(&token, "x", 0), "ok");
        // key -> cost of every call begun; acked: key -> charged.
        let mut begun: std::collections::HashMap<String, u64> = Default::default();
        let mut acked: std::collections::HashMap<String, u64> = Default::default();
        let mut record = |lines: Vec<String>| {
            for l in lines {
                assert!(!l.starts_with("FAIL"), "a debitor's call failed: {l}");
                let w: Vec<&str> = l.split(' ').collect();
                match w[0] {
                    "I" => {
                        begun.insert(w[1].to_string(), w[2].parse().unwrap());
                    }
                    "A" => {
                        assert_eq!(w[3], "false", "a first call was a replay: {l}");
                        acked.insert(w[1].to_string(), w[2].parse().unwrap());
                    }
                    _ => {}
                }
            }
        };
        let mut spawned = 0u64;
        let next = |spawned: &mut u64| {
            *spawned += 1;
            Debitor::spawn(&url, &token, &format!("p{spawned}"))
        };
        let mut procs: Vec<Debitor> = (0..3).map(|_| next(&mut spawned)).collect();
        for _ in 0..kills {
            std::thread::sleep(Duration::from_millis(30 + rng.below(200)));
            let i = rng.below(procs.len() as u64) as usize;
            let fresh = next(&mut spawned);
            record(std::mem::replace(&mut procs[i], fresh).kill());
        }
        for p in procs {
            record(p.kill());
        }
        // Every acknowledged call charged its cost, once.
        for (k, charged) in &acked {
            assert_eq!(*charged, begun[k], "{k} charged {charged}");
        }
        // The calls in flight at the kills: retried here with their idempotency keys, each
        // either replays (it landed) or charges now (it did not). Either way it counts once.
        let v = Vault::open_with(&url, options()).unwrap();
        let (mut landed, mut lost) = (0u64, 0u64);
        for (k, cost) in begun.iter().filter(|(k, _)| !acked.contains_key(*k)) {
            let g = v
                .authorize(
                    &token,
                    Target::Scope("x"),
                    &AuthorizeOptions {
                        cost: Some(*cost),
                        idempotency_key: Some(k),
                        ..AuthorizeOptions::default()
                    },
                )
                .unwrap();
            if g.replayed {
                assert_eq!(g.charged, 0, "{k}: a replay charged");
                landed += 1;
            } else {
                assert_eq!(g.charged, *cost, "{k}");
                lost += 1;
            }
        }
        // And an acknowledged call retried is a replay charging nothing.
        for k in acked.keys().take(50) {
            let g = v
                .authorize(
                    &token,
                    Target::Scope("x"),
                    &AuthorizeOptions {
                        cost: Some(begun[k]),
                        idempotency_key: Some(k),
                        ..AuthorizeOptions::default()
                    },
                )
                .unwrap();
            assert!(g.replayed && g.charged == 0, "{k} applied twice");
        }
        let spent: u64 = begun.values().sum();
        let balance = v.balance("acct").unwrap();
        assert_eq!(balance.credits, INITIAL - spent, "credits lost or created");
        assert_eq!(balance.total_credits, INITIAL);
        assert_eq!(
            survivor.balance("acct"),
            INITIAL - spent,
            "the survivor's view"
        );
        assert_eq!(
            pg::sql(&url, "SELECT count(*) FROM kl_idempotency")
                .parse::<usize>()
                .unwrap(),
            begun.len(),
            "one idempotency row per call"
        );
        assert_no_audit_gap(&v);
        assert!(
            acked.len() > kills as usize,
            "too few debits to mean anything: {}",
            acked.len()
        );
        eprintln!(
            "postgres sigkill: {kills} kills of {spawned} processes; {} calls acknowledged, \
             {landed} in flight landed, {lost} did not; {spent} credits debited",
            acked.len()
        );
    }

    /// One authorize per token, as a comparable answer (the code, or the balance left;
    /// not the rate-limit windows: they live in the sidecar or the process, not the vault).
    fn answers(v: &Vault, tokens: &[String]) -> Vec<String> {
        tokens
            .iter()
            .map(|t| match v.authorize(t, Target::Scope("work"), &scope(1)) {
                Ok(g) => format!("ok {} {}", g.key_id, g.credits),
                Err(e) => e.code().to_string(),
            })
            .collect()
    }

    /// A redb vault with keys (one signing), credits, limits, a refill, idempotency
    /// records and audit goes to PostgreSQL and from there to a new redb file: the copy
    /// answers every key as the original does and holds the same data; a non-empty
    /// destination is refused and left unchanged.
    #[test]
    fn migrate_round_trips_a_vault_through_postgresql_and_refuses_a_non_empty_destination() {
        use keyledger::{migrate, MasterKey, MigrateOptions};
        let Some(url) = database("migrate_round_trip") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let (src, dst) = (dir.path().join("src.redb"), dir.path().join("dst.redb"));
        let (src, dst) = (src.to_str().unwrap(), dst.to_str().unwrap());
        let master = MasterKey::generate().unwrap();
        let open = |loc: &str| {
            Vault::open_with(
                loc,
                keyledger::VaultOptions {
                    master_key: Some(master.clone()),
                    ..options()
                },
            )
            .unwrap()
        };
        let mut tokens = Vec::new();
        let signer;
        {
            let v = open(src);
            v.create_account("acct", 100, None).unwrap();
            v.create_account("poor", 0, None).unwrap();
            let (t1, k1) = v
                .create_key(NewKey::new("acct", "plain", ["work"]))
                .unwrap();
            let (t2, k2) = v
                .create_key(NewKey::new("acct", "signer", ["work"]).signing(true))
                .unwrap();
            let (t3, k3) = v.create_key(NewKey::new("acct", "gone", ["work"])).unwrap();
            let (t4, _) = v
                .create_key(NewKey::new("poor", "broke", ["work"]))
                .unwrap();
            let (t5, _) = v
                .create_key(NewKey::new("acct", "other", ["else"]))
                .unwrap();
            v.revoke_key(&k3.key_id).unwrap();
            v.set_ratelimit(LimitOwner::Key(&k1.key_id), "burst", 50, 60_000, true)
                .unwrap();
            v.set_ratelimit(
                LimitOwner::Account("acct"),
                "hourly",
                1000,
                3_600_000,
                false,
            )
            .unwrap();
            v.set_refill("acct", 40, RefillInterval::Daily, 1).unwrap();
            let idem = AuthorizeOptions {
                cost: Some(3),
                idempotency_key: Some("req-1"),
                ..AuthorizeOptions::default()
            };
            v.authorize(t1.expose(), Target::Scope("work"), &idem)
                .unwrap();
            v.debit("acct", 2, Some("d-1")).unwrap();
            for t in [t1, t2, t3, t4, t5] {
                tokens.push(t.expose().to_string());
            }
            signer = k2.key_id;
        }
        let options = MigrateOptions::default();
        let there = migrate(src, &url, &options).unwrap();
        assert!(there.verified);
        let count = |r: &keyledger::MigrateReport, t: &str| {
            r.tables.iter().find(|(n, _)| *n == t).unwrap().1
        };
        assert_eq!(count(&there, "keys"), 5);
        assert_eq!(count(&there, "accounts"), 2);
        assert_eq!(count(&there, "rate_limits"), 2);
        assert_eq!(count(&there, "idempotency"), 2);
        assert!(count(&there, "audit") >= 10, "{there}");
        let back = migrate(&url, dst, &options).unwrap();
        assert_eq!(back, there, "PostgreSQL → redb must copy the same rows");

        let (a, b) = (open(src), open(dst));
        assert_eq!(
            a.audit(&AuditQuery::default()).unwrap(),
            b.audit(&AuditQuery::default()).unwrap()
        );
        assert_eq!(a.list_keys(None).unwrap(), b.list_keys(None).unwrap());
        for id in ["acct", "poor"] {
            assert_eq!(a.account(id).unwrap(), b.account(id).unwrap());
            assert_eq!(
                a.ratelimits(LimitOwner::Account(id)).unwrap(),
                b.ratelimits(LimitOwner::Account(id)).unwrap()
            );
        }
        for k in a.list_keys(None).unwrap() {
            assert_eq!(
                a.ratelimits(LimitOwner::Key(&k.key_id)).unwrap(),
                b.ratelimits(LimitOwner::Key(&k.key_id)).unwrap()
            );
        }
        let secret = a.reveal_signing_secret(&signer).unwrap();
        assert_eq!(*secret, *b.reveal_signing_secret(&signer).unwrap());
        // The idempotency record came along: a replay charges nothing on the copy either.
        let idem = AuthorizeOptions {
            cost: Some(3),
            idempotency_key: Some("req-1"),
            ..AuthorizeOptions::default()
        };
        let replay = b
            .authorize(&tokens[0], Target::Scope("work"), &idem)
            .unwrap();
        assert!(replay.replayed);
        a.authorize(&tokens[0], Target::Scope("work"), &idem)
            .unwrap();
        let (on_a, on_b) = (answers(&a, &tokens), answers(&b, &tokens));
        assert_eq!(on_a, on_b);
        assert!(on_a[0].starts_with("ok "), "{on_a:?}");
        // The signing key needs a signature (made with the revealed secret, equal above).
        let refused = [
            "invalid_signature",
            "invalid_api_key",
            "insufficient_credits",
        ];
        assert_eq!(on_a[1..4], refused, "{on_a:?}");
        assert_eq!(a.balance("acct").unwrap(), b.balance("acct").unwrap());
        drop((a, b));

        // Non-empty destinations are refused and left as they were (read back by
        // migrating them into new files: the same digest as before).
        let e = migrate(src, &url, &options).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        assert!(e.to_string().contains("not empty"), "{e}");
        let again = dir.path().join("again.redb");
        assert_eq!(
            migrate(&url, again.to_str().unwrap(), &options).unwrap(),
            there
        );
        let before = migrate(
            dst,
            dir.path().join("dst-before.redb").to_str().unwrap(),
            &options,
        )
        .unwrap();
        let e = migrate(&url, dst, &options).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        let after = migrate(
            dst,
            dir.path().join("dst-after.redb").to_str().unwrap(),
            &options,
        )
        .unwrap();
        assert_eq!(before, after);
    }

    /// The C ABI takes the same URL: `kl_vault_open` opens the database (what the Node
    /// and Elixir bindings call), and a key made through the Rust API authorizes there.
    #[test]
    fn the_c_abi_opens_a_postgresql_url() {
        use keyledger::ffi::{
            kl_authorize_scope_json, kl_status, kl_string_free, kl_vault, kl_vault_free,
            kl_vault_open,
        };
        let Some(url) = database("c_abi_url") else {
            return;
        };
        let v = Vault::open_with(&url, options()).unwrap();
        v.create_account("acct", 5, None).unwrap();
        let (token, _) = v.create_key(NewKey::new("acct", "k", ["x"])).unwrap();
        let opts = r#"{"argon2": {"m_kib": 8, "t": 1, "p": 1}}"#;
        let mut handle: *mut kl_vault = std::ptr::null_mut();
        // SAFETY: valid pointers and lengths; the handle is freed below.
        let status = unsafe {
            kl_vault_open(
                url.as_ptr().cast(),
                url.len(),
                opts.as_ptr().cast(),
                opts.len(),
                &mut handle,
            )
        };
        assert_eq!(status, kl_status::KL_OK);
        let mut json: *mut std::ffi::c_char = std::ptr::null_mut();
        let t = token.expose();
        // SAFETY: as above; `json` is freed with kl_string_free.
        let status = unsafe {
            kl_authorize_scope_json(
                handle,
                t.as_ptr().cast(),
                t.len(),
                "x".as_ptr().cast(),
                1,
                std::ptr::null(),
                &mut json,
            )
        };
        assert_eq!(status, kl_status::KL_OK);
        // SAFETY: a NUL-terminated string from the library.
        let grant = unsafe { std::ffi::CStr::from_ptr(json) }
            .to_str()
            .unwrap()
            .to_string();
        // SAFETY: freed once, each.
        unsafe {
            kl_string_free(json);
            kl_vault_free(handle);
        }
        let grant: serde_json::Value = serde_json::from_str(&grant).unwrap();
        assert_eq!(grant["account_id"], "acct", "{grant}");
        assert_eq!(grant["credits"], 5, "{grant}");
    }
}
