//! The network side of a PostgreSQL vault (cargo feature `postgres`): the bounded pool,
//! TLS, and rate limits across hosts, on the throwaway cluster of `scripts/pg-cluster`
//! (`KEYLEDGER_TEST_PG`). Each test gets a fresh database.

mod common;

#[cfg(feature = "postgres")]
mod over_postgres {
    use std::time::{Duration, Instant};

    use keyledger::Vault;

    use super::common::options;
    use super::common::pg;

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
}
