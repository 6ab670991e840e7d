//! A fresh PostgreSQL database per test, on the throwaway cluster `scripts/pg-cluster`
//! starts (`scripts/test` sets `KEYLEDGER_TEST_PG` to its URL,
//! `postgresql://keyledger@/postgres?host=<socket dir>`). Databases are created with the
//! cluster's `psql`; the cluster is thrown away whole at the end, so they are not dropped.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The cluster URL from `KEYLEDGER_TEST_PG`, or `None` after `skip_unless_required`.
pub fn cluster(check: &str) -> Option<String> {
    match std::env::var("KEYLEDGER_TEST_PG") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            super::skip_unless_required(
                check,
                "KEYLEDGER_TEST_PG is not set (scripts/test starts a cluster with scripts/pg-cluster)",
            );
            None
        }
    }
}

fn psql() -> String {
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
        for d in dirs.flatten() {
            let p = d.path().join("bin/psql");
            if p.exists() {
                return p.to_string_lossy().into_owned();
            }
        }
    }
    "psql".into()
}

/// keyledger's own URL parameters, which libpq (psql) does not know; `sslmode` and
/// `sslrootcert` are libpq's too and stay.
const KEYLEDGER_PARAMS: &[&str] = &[
    "max_connections",
    "pool_timeout_ms",
    "ratelimit_mode",
    "ratelimit_hosts",
    "notify",
    "poll_ms",
];

/// `url` without keyledger's own parameters, for psql.
pub fn libpq_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let name = p.split('=').next().unwrap_or("");
            !p.is_empty() && !KEYLEDGER_PARAMS.contains(&name)
        })
        .collect();
    if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgresql:// URL");
    let (before_query, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A new empty database on the cluster, named for `test`; its URL.
pub fn fresh_database(cluster: &str, test: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let name: String = format!("kl_{test}_{}_{n}", std::process::id())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    let out = Command::new(psql())
        .arg(libpq_url(cluster))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c"])
        .arg(format!("CREATE DATABASE \"{name}\""))
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "CREATE DATABASE {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    with_database(cluster, &name)
}

/// Run one SQL statement on the database at `url` (as the cluster's superuser); stdout.
pub fn sql(url: &str, statement: &str) -> String {
    let out = Command::new(psql())
        .arg(libpq_url(url))
        .args(["-v", "ON_ERROR_STOP=1", "-qtA", "-c", statement])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{statement} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
