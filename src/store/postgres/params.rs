//! keyledger's own parameters in a PostgreSQL vault URL, taken out before the rest goes to
//! the client crate's parser:
//!
//! | parameter | values | default |
//! | --- | --- | --- |
//! | `sslmode` | `disable`, `prefer`, `require`, `verify-ca`, `verify-full` (as libpq) | `prefer` |
//! | `sslrootcert` | a PEM file of trusted roots (for `verify-ca` / `verify-full`) | the system's roots |
//! | `max_connections` | the pool's bound, 1 to 1000 | 16 |
//! | `pool_timeout_ms` | how long a call waits for a free connection, 0 to 600000 | 5000 |
//! | `ratelimit_mode` | `share` (each process counts its share) or `exact` (counted in the database) | `share` |
//! | `ratelimit_hosts` | processes counting each rate limit apart, each allowing `ceil(limit / n)`, 1 to 1000 | 1 |
//! | `notify` | how committed changes reach other processes: `listen` (LISTEN/NOTIFY) or `poll` (the `kl_changes` table, for engines without LISTEN/NOTIFY) | `listen` |
//! | `poll_ms` | with `notify=poll`: the polling interval, 1 to 10000 | 5 |
//!
//! A parameter given twice, or with a value outside its range, is refused with
//! `invalid_argument` (the message names the parameter, never the URL).

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The pool's bound unless the URL says (`max_connections`).
pub(super) const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// How long a call waits for a pooled connection unless the URL says (`pool_timeout_ms`).
pub(super) const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the changes table is polled with `notify=poll`, unless the URL says (`poll_ms`).
pub(super) const DEFAULT_POLL: Duration = Duration::from_millis(5);

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SslMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, the certificate not checked (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate not checked.
    Require,
    /// TLS; the certificate chain checked against the roots, not the host name.
    VerifyCa,
    /// TLS; the chain and the host name checked.
    VerifyFull,
}

/// What [`split`] found.
#[derive(Debug)]
pub(super) struct Params {
    /// The URL without keyledger's parameters (`sslmode` kept as `disable`, `prefer` or
    /// `require`, which the client crate knows).
    pub client_url: String,
    pub ssl: SslMode,
    pub root_cert: Option<PathBuf>,
    pub max_connections: usize,
    pub pool_timeout: Duration,
    pub ratelimit_hosts: u64,
    /// `ratelimit_mode=exact`: rate limits counted in the database.
    pub ratelimit_exact: bool,
    /// `notify=poll`: changes are read by polling `kl_changes` every `poll` instead of
    /// LISTEN.
    pub poll: Option<Duration>,
}

fn decode(v: &str) -> Result<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::invalid("invalid percent-encoding in a PostgreSQL URL"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("a PostgreSQL URL parameter is not UTF-8"))
}

fn number(name: &str, v: &str, max: u64) -> Result<u64> {
    v.parse::<u64>().ok().filter(|n| *n <= max).ok_or_else(|| {
        Error::invalid(format!(
            "invalid PostgreSQL URL parameter {name}: expected a whole number up to {max}"
        ))
    })
}

/// Take keyledger's parameters out of `url` (see the module docs).
pub(super) fn split(url: &str) -> Result<Params> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut params = Params {
        client_url: String::new(),
        ssl: SslMode::Prefer,
        root_cert: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
        pool_timeout: DEFAULT_POOL_TIMEOUT,
        ratelimit_hosts: 1,
        ratelimit_exact: false,
        poll: None,
    };
    let mut poll = false;
    let mut poll_ms = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let ours = [
            "sslmode",
            "sslrootcert",
            "max_connections",
            "pool_timeout_ms",
            "ratelimit_hosts",
            "ratelimit_mode",
            "notify",
            "poll_ms",
        ];
        let Some(name) = ours.iter().find(|n| **n == k) else {
            kept.push(pair.to_string());
            continue;
        };
        if seen.contains(name) {
            return Err(Error::invalid(format!(
                "PostgreSQL URL parameter {name} is given more than once"
            )));
        }
        seen.push(name);
        let v = decode(v)?;
        match *name {
            "sslmode" => {
                params.ssl = match v.as_str() {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    _ => {
                        return Err(Error::invalid(
                            "invalid PostgreSQL URL parameter sslmode: expected disable, \
                             prefer, require, verify-ca or verify-full",
                        ))
                    }
                }
            }
            "sslrootcert" => {
                if v.is_empty() {
                    return Err(Error::invalid(
                        "invalid PostgreSQL URL parameter sslrootcert: expected a file path",
                    ));
                }
                params.root_cert = Some(PathBuf::from(v));
            }
            "max_connections" => {
                let n = number(name, &v, 1000)?;
                if n == 0 {
                    return Err(Error::invalid(
                        "invalid PostgreSQL URL parameter max_connections: expected 1 to 1000",
                    ));
                }
                params.max_connections = usize::try_from(n).unwrap_or(1000);
            }
            "ratelimit_mode" => {
                params.ratelimit_exact = match v.as_str() {
                    "share" => false,
                    "exact" => true,
                    _ => return Err(Error::invalid(
                        "invalid PostgreSQL URL parameter ratelimit_mode: expected share or exact",
                    )),
                }
            }
            "notify" => {
                poll = match v.as_str() {
                    "listen" => false,
                    "poll" => true,
                    _ => {
                        return Err(Error::invalid(
                            "invalid PostgreSQL URL parameter notify: expected listen or poll",
                        ))
                    }
                }
            }
            "poll_ms" => {
                let n = number(name, &v, 10_000)?;
                if n == 0 {
                    return Err(Error::invalid(
                        "invalid PostgreSQL URL parameter poll_ms: expected 1 to 10000",
                    ));
                }
                poll_ms = Some(Duration::from_millis(n));
            }
            "ratelimit_hosts" => {
                params.ratelimit_hosts = number(name, &v, 1000)?;
                if params.ratelimit_hosts == 0 {
                    return Err(Error::invalid(
                        "invalid PostgreSQL URL parameter ratelimit_hosts: expected 1 to 1000",
                    ));
                }
            }
            _ => params.pool_timeout = Duration::from_millis(number(name, &v, 600_000)?),
        }
    }
    if poll {
        params.poll = Some(poll_ms.unwrap_or(DEFAULT_POLL));
    } else if poll_ms.is_some() {
        return Err(Error::invalid(
            "PostgreSQL URL parameter poll_ms needs notify=poll",
        ));
    }
    let client_mode = match params.ssl {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
    };
    kept.push(format!("sslmode={client_mode}"));
    params.client_url = format!("{base}?{}", kept.join("&"));
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyledgers_parameters_are_taken_out_and_the_rest_kept() {
        let p = split(
            "postgresql://u:pw@h/db?host=/s&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&max_connections=3&pool_timeout_ms=250",
        )
        .unwrap();
        assert_eq!(
            p.client_url,
            "postgresql://u:pw@h/db?host=/s&sslmode=require"
        );
        assert_eq!(p.ssl, SslMode::VerifyFull);
        assert_eq!(p.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(p.max_connections, 3);
        assert_eq!(p.pool_timeout, Duration::from_millis(250));
        let d = split("postgres://u@h/db").unwrap();
        assert_eq!(d.client_url, "postgres://u@h/db?sslmode=prefer");
        assert_eq!(d.ssl, SslMode::Prefer);
        assert_eq!(d.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(d.poll, None);
        let p = split("postgresql://u@h/db?notify=poll&x=1").unwrap();
        assert_eq!(p.client_url, "postgresql://u@h/db?x=1&sslmode=prefer");
        assert_eq!(p.poll, Some(DEFAULT_POLL));
        let p = split("postgresql://u@h/db?poll_ms=250&notify=poll").unwrap();
        assert_eq!(p.poll, Some(Duration::from_millis(250)));
        assert_eq!(
            split("postgresql://u@h/db?notify=listen").unwrap().poll,
            None
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_parameter_not_the_url() {
        for (url, name) in [
            ("postgresql://u:secret@h/db?sslmode=verify", "sslmode"),
            (
                "postgresql://u:secret@h/db?max_connections=0",
                "max_connections",
            ),
            (
                "postgresql://u:secret@h/db?max_connections=x",
                "max_connections",
            ),
            (
                "postgresql://u:secret@h/db?pool_timeout_ms=-1",
                "pool_timeout_ms",
            ),
            ("postgresql://u:secret@h/db?sslrootcert=", "sslrootcert"),
            (
                "postgresql://u:secret@h/db?ratelimit_hosts=0",
                "ratelimit_hosts",
            ),
            (
                "postgresql://u:secret@h/db?sslmode=require&sslmode=disable",
                "sslmode",
            ),
            ("postgresql://u:secret@h/db?notify=pol", "notify"),
            ("postgresql://u:secret@h/db?notify=", "notify"),
            (
                "postgresql://u:secret@h/db?notify=poll&poll_ms=0",
                "poll_ms",
            ),
            (
                "postgresql://u:secret@h/db?notify=poll&poll_ms=10001",
                "poll_ms",
            ),
            (
                "postgresql://u:secret@h/db?notify=poll&poll_ms=5ms",
                "poll_ms",
            ),
            ("postgresql://u:secret@h/db?poll_ms=5", "poll_ms"),
        ] {
            let e = split(url).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{url}: {e}");
            assert!(e.to_string().contains(name), "{url}: {e}");
            assert!(!e.to_string().contains("secret"), "{url}: {e}");
        }
    }
}
