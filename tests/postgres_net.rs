//! The network side of a PostgreSQL vault (cargo feature `postgres`): the bounded pool,
//! TLS, and rate limits across hosts, on the throwaway cluster of `scripts/pg-cluster`
//! (`KEYLEDGER_TEST_PG`). Each test gets a fresh database.

mod common;

#[cfg(feature = "postgres")]
mod over_postgres {
    use std::time::{Duration, Instant};

    use keyledger::{AuthorizeOptions, LimitOwner, NewKey, Target, Vault};

    use super::common::pg;
    use super::common::{options, options_with_clock, seed_routes, TestClock};

    /// The advisory lock every keyledger write transaction takes.
    const WRITE_LOCK: i64 = 0x6b65_796c_6564_6772;

    fn database(test: &str) -> Option<String> {
        let cluster = pg::cluster(&format!("postgres_net::{test}"))?;
        Some(pg::fresh_database(&cluster, test))
    }

    #[test]
    fn callers_beyond_max_connections_wait_then_get_pool_exhausted() {
        let Some(url) = database("pool") else {
            return;
        };
        let v = Vault::open_with(
            format!("{url}&max_connections=2&pool_timeout_ms=300"),
            options(),
        )
        .unwrap();
        v.create_account("acct", 10, None).unwrap();
        // Another session holds the writers' lock: two writers each hold a pooled
        // connection while they wait for it, which fills the pool.
        let mut holder = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&WRITE_LOCK])
            .unwrap();
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..2)
                .map(|i| {
                    let v = &v;
                    s.spawn(move || v.create_account(&format!("w{i}"), 1, None))
                })
                .collect();
            // Wait until both writers are queued on the lock (seen from the database).
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let waiting = pg::sql(
                    &url,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                );
                if waiting == "2" {
                    break;
                }
                assert!(Instant::now() < deadline, "writers not queued: {waiting}");
                std::thread::yield_now();
            }
            let started = Instant::now();
            let e = v.balance("acct").unwrap_err();
            assert_eq!(e.code(), "storage", "{e}");
            assert!(e.to_string().contains("pool exhausted"), "{e}");
            assert!(
                started.elapsed() >= Duration::from_millis(250),
                "refused before the pool timeout: {:?}",
                started.elapsed()
            );
            holder
                .execute("SELECT pg_advisory_unlock($1)", &[&WRITE_LOCK])
                .unwrap();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        // The connections came back: calls succeed again, and never more than two are open.
        assert_eq!(v.balance("acct").unwrap().credits, 10);
        let open = pg::sql(
            &url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name <> 'keyledger-listener' AND pid <> pg_backend_pid() \
             AND backend_type = 'client backend'",
        );
        assert!(
            open.parse::<u32>().unwrap() <= 3,
            "open connections: {open}"
        );
    }

    /// The cluster's TLS side (scripts/pg-cluster): its files' directory and TCP port.
    fn tls_side(url: &str) -> (String, String) {
        let query = url.split_once('?').unwrap().1;
        let host = query
            .split('&')
            .find_map(|p| p.strip_prefix("host="))
            .expect("the cluster URL names its socket directory");
        let dir = format!("{host}/tls");
        let port = std::fs::read_to_string(format!("{dir}/port"))
            .unwrap_or_else(|e| panic!("{dir}/port (scripts/pg-cluster starts TLS): {e}"));
        (dir, port.trim().to_string())
    }

    /// The database of `url` over TCP to localhost, with a password in the URL (trust auth
    /// never asks for it) and `params`.
    fn over_tcp(url: &str, params: &str) -> String {
        let (_, port) = tls_side(url);
        let db = url.split_once("://").unwrap().1.split('?').next().unwrap();
        let db = db.split_once('/').unwrap().1;
        format!("postgresql://keyledger:hunter2secret@localhost:{port}/{db}?hostaddr=127.0.0.1&{params}")
    }

    /// How many of the database's client connections (other than psql's) use TLS, of all.
    fn tls_connections(url: &str) -> (u32, u32) {
        let row = pg::sql(
            url,
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = current_database() \
             AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'",
        );
        let (a, b) = row.split_once('|').unwrap();
        (a.parse().unwrap(), b.parse().unwrap())
    }

    fn wait_for_listener(v: &Vault) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while v.cache_mode() != keyledger::CacheMode::Shared {
            assert!(
                Instant::now() < deadline,
                "the change listener did not connect within 10 s: {:?}",
                v.cache_disabled_reason()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn verify_full_with_the_right_root_connects_pool_and_listener_over_tls() {
        let Some(url) = database("tls_full") else {
            return;
        };
        let (dir, _) = tls_side(&url);
        let tcp = over_tcp(
            &url,
            &format!("sslmode=verify-full&sslrootcert={dir}/ca.pem"),
        );
        let v = Vault::open_with(&tcp, options()).unwrap();
        wait_for_listener(&v);
        v.create_account("acct", 10, None).unwrap();
        assert_eq!(v.balance("acct").unwrap().credits, 10);
        let (tls, all) = tls_connections(&url);
        assert!(all >= 2, "the pool and the listener are connected: {all}");
        assert_eq!(tls, all, "every connection (pool and listener) uses TLS");
        let shown = format!("{} {:?}", v.path().display(), v);
        assert!(!shown.contains("hunter2secret"), "{shown}");
    }

    #[test]
    fn verify_full_with_a_wrong_root_is_refused_with_storage_and_a_clear_message() {
        let Some(url) = database("tls_wrong") else {
            return;
        };
        let (dir, _) = tls_side(&url);
        for mode in ["verify-full", "verify-ca", "require"] {
            let tcp = over_tcp(
                &url,
                &format!("sslmode={mode}&sslrootcert={dir}/wrong-ca.pem"),
            );
            let e = Vault::open_with(&tcp, options()).unwrap_err();
            assert_eq!(e.code(), "storage", "{mode}: {e}");
            let msg = e.to_string();
            assert!(
                msg.contains("TLS") && msg.contains("certificate"),
                "{mode}: {msg}"
            );
            assert!(!msg.contains("hunter2secret"), "{mode}: {msg}");
            assert!(!format!("{e:?}").contains("hunter2secret"), "{mode}: {e:?}");
        }
    }

    #[test]
    fn require_encrypts_without_a_root_and_disable_does_not() {
        let Some(url) = database("tls_require") else {
            return;
        };
        let v = Vault::open_with(over_tcp(&url, "sslmode=require"), options()).unwrap();
        wait_for_listener(&v);
        v.create_account("acct", 1, None).unwrap();
        let (tls, all) = tls_connections(&url);
        assert!(all >= 2 && tls == all, "require: {tls} of {all} over TLS");
        v.close().unwrap();
        drop(v);
        let v = Vault::open_with(over_tcp(&url, "sslmode=disable"), options()).unwrap();
        wait_for_listener(&v);
        let (tls, all) = tls_connections(&url);
        assert!(all >= 2 && tls == 0, "disable: {tls} of {all} over TLS");
    }

    #[test]
    fn an_unreadable_root_file_is_refused_with_invalid_argument() {
        let Some(url) = database("tls_noroot") else {
            return;
        };
        let tcp = over_tcp(&url, "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
        let e = Vault::open_with(&tcp, options()).unwrap_err();
        assert_eq!(e.code(), "invalid_argument", "{e}");
        assert!(e.to_string().contains("sslrootcert"), "{e}");
    }

    /// Grants of one limit (10 per hour, the clock frozen so nothing drains) when two
    /// vault handles, each with its own counters like two hosts, hammer it from two
    /// threads each, with `params` added to the URL.
    fn grants_across_two_hosts(test: &str, params: &str) -> usize {
        let url = database(test).expect("checked by the caller");
        let url = format!("{url}{params}");
        let clock = TestClock::new();
        let setup = Vault::open_with(&url, options_with_clock(&clock)).unwrap();
        setup.create_account("acct", 1000, None).unwrap();
        seed_routes(&setup);
        let (token, info) = setup
            .create_key(NewKey::new("acct", "server", ["sms:send"]))
            .unwrap();
        setup
            .set_ratelimit(LimitOwner::Key(&info.key_id), "burst", 10, 3_600_000, true)
            .unwrap();
        let hosts: Vec<Vault> = (0..2)
            .map(|_| Vault::open_with(&url, options_with_clock(&clock)).unwrap())
            .collect();
        let send = Target::route("POST", "/api/v1/messaging/send");
        std::thread::scope(|s| {
            let threads: Vec<_> = hosts
                .iter()
                .flat_map(|h| [h, h])
                .map(|h| {
                    let token = token.expose().to_string();
                    s.spawn(move || {
                        (0..20)
                            .filter(|_| {
                                match h.authorize(&token, send, &AuthorizeOptions::default()) {
                                    Ok(_) => true,
                                    Err(e) => {
                                        assert_eq!(e.code(), "rate_limited", "{e}");
                                        false
                                    }
                                }
                            })
                            .count()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        })
    }

    #[test]
    fn with_ratelimit_hosts_two_hosts_together_stay_within_the_limit() {
        if pg::cluster("postgres_net::ratelimit_share").is_none() {
            return;
        }
        // Each host allows ceil(10 / 2) = 5: together exactly the limit.
        assert_eq!(
            grants_across_two_hosts("rl_share", "&ratelimit_hosts=2"),
            10
        );
        // ceil(10 / 3) = 4 each: two of three configured hosts allow 8.
        assert_eq!(
            grants_across_two_hosts("rl_share3", "&ratelimit_hosts=3"),
            8
        );
        // Unconfigured, each host counts the whole limit (the documented default).
        assert_eq!(grants_across_two_hosts("rl_default", ""), 20);
    }

    #[test]
    fn in_exact_mode_two_hosts_together_never_exceed_the_limit() {
        if pg::cluster("postgres_net::ratelimit_exact").is_none() {
            return;
        }
        assert_eq!(
            grants_across_two_hosts("rl_exact", "&ratelimit_mode=exact"),
            10
        );
        // ratelimit_hosts has no effect in exact mode: the database holds one counter.
        assert_eq!(
            grants_across_two_hosts("rl_exact_h", "&ratelimit_mode=exact&ratelimit_hosts=4"),
            10
        );
    }
}
