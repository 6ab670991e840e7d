//! How a PostgreSQL vault handle learns of changes committed by other processes: one
//! thread per vault handle, on a connection of its own, bumping this process's generation
//! slots. Either it listens (`LISTEN keyledger_changes`, the default) or, with
//! `notify=poll`, it polls the `kl_changes` table (for engines without LISTEN/NOTIFY). See
//! the parent module's docs for the protocol and how both fail closed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config};

use super::tls::{self, Tls};
use super::CHANGES_KEPT;

use crate::shm::{Sidecar, SlotKind};

/// The notification channel of committed changes.
pub(super) const CHANNEL: &str = "keyledger_changes";
/// A NOTIFY payload must stay under 8000 bytes; longer touched sets say "everything".
const MAX_PAYLOAD: usize = 7000;
/// How often the listener checks for a stop request or a broken connection.
const LISTEN_TICK: Duration = Duration::from_millis(100);
/// The most rows the poller reads at once (it reads again at once when it got this many).
const POLL_BATCH: i64 = 1000;
/// How long the poller waits for a missing change number to become visible before it
/// treats it as pruned (PostgreSQL makes changes visible in number order, so this is a
/// safety net, not a wait that happens).
const GAP_WAIT: Duration = Duration::from_secs(1);
/// The application name of the listener's connection (`pg_stat_activity`).
pub(super) const LISTENER_NAME: &str = "keyledger-listener";
/// The application name of the poller's connection.
pub(super) const POLLER_NAME: &str = "keyledger-poller";

/// The listener: (re)connect, `LISTEN`, confirm the position, invalidate everything,
/// trust the slots; then bump what each notification names, until the connection breaks
/// (distrust, and start over) or the backend is dropped.
pub(super) fn listen(
    config: &Config,
    tls: &Tls,
    slots: &Sidecar,
    connected: &AtomicBool,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        let Some((mut client, mut last)) =
            attach(config, tls, LISTENER_NAME, true, slots, connected, stop)
        else {
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            let next = client.notifications().timeout_iter(LISTEN_TICK).next();
            match next {
                Ok(Some(n)) => last = apply_payload(slots, n.payload(), last),
                Ok(None) if !client.is_closed() => {}
                _ => break,
            }
        }
    }
    slots.distrust();
    connected.store(false, Ordering::SeqCst);
}

/// The poller: (re)connect, confirm the position, invalidate everything, trust the
/// slots; then every `every`, read the changes committed after its position from
/// `kl_changes` and bump what they name, until a query fails (distrust, and start over)
/// or the backend is dropped. A gap in the numbers it reads (the rows after its position
/// were pruned, because it fell more than `CHANGES_KEPT` changes behind) invalidates
/// every slot.
pub(super) fn poll(
    config: &Config,
    tls: &Tls,
    slots: &Sidecar,
    connected: &AtomicBool,
    stop: &AtomicBool,
    every: Duration,
) {
    while !stop.load(Ordering::SeqCst) {
        let Some((mut client, mut last)) =
            attach(config, tls, POLLER_NAME, false, slots, connected, stop)
        else {
            continue;
        };
        let mut gap_since: Option<Instant> = None;
        let mut full = false;
        while !stop.load(Ordering::SeqCst) {
            if !full {
                nap(every, stop);
            }
            let rows = match client.query(
                "SELECT seq, body FROM kl_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&last, &POLL_BATCH],
            ) {
                Ok(rows) => rows,
                Err(_) => break,
            };
            full = rows.len() == usize::try_from(POLL_BATCH).unwrap_or(usize::MAX);
            for row in &rows {
                let seq: i64 = row.get(0);
                if seq == last.saturating_add(1) {
                    apply_body(slots, row.get(1));
                    last = seq;
                    gap_since = None;
                    continue;
                }
                // The next number is missing: pruned (this poller fell behind), or (never
                // on PostgreSQL) not visible yet. Either way, after a while, start afresh.
                let newest: i64 = rows.last().map_or(seq, |r| r.get(0));
                let pruned = newest.saturating_sub(CHANGES_KEPT) > last;
                let since = *gap_since.get_or_insert_with(Instant::now);
                if pruned || since.elapsed() >= GAP_WAIT {
                    slots.bump_all();
                    last = newest;
                    gap_since = None;
                }
                full = false;
                break;
            }
        }
    }
    slots.distrust();
    connected.store(false, Ordering::SeqCst);
}

/// Distrust the slots, then (re)connect, read the position of the change numbers, invalidate
/// every slot and trust them again: the start of the listener's and the poller's every
/// connection. On a failure (connect or the position query) it pauses one tick before the
/// caller tries again, so a server that accepts connections but fails queries is not hammered.
fn attach(
    config: &Config,
    tls: &Tls,
    name: &str,
    listen: bool,
    slots: &Sidecar,
    connected: &AtomicBool,
    stop: &AtomicBool,
) -> Option<(Client, i64)> {
    slots.distrust();
    connected.store(false, Ordering::SeqCst);
    let attached = watcher_connect(config, tls, name, listen).and_then(|mut client| {
        let row = client.query_one("SELECT seq FROM kl_change_seq", &[])?;
        Ok((client, row.get::<_, i64>(0)))
    });
    match attached {
        Ok(attached) => {
            slots.bump_all();
            slots.trust_again();
            connected.store(true, Ordering::SeqCst);
            Some(attached)
        }
        Err(_) => {
            nap(LISTEN_TICK, stop);
            None
        }
    }
}

/// Sleep `d`, waking early when `stop` is set.
fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= until || stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep((until - now).min(LISTEN_TICK));
    }
}

/// The listener's or the poller's own connection (`listen`: with `LISTEN`).
fn watcher_connect(
    config: &Config,
    tls: &Tls,
    name: &str,
    listen: bool,
) -> std::result::Result<Client, postgres::Error> {
    let mut config = config.clone();
    // A silently broken network path (no FIN, no RST) is noticed within about 5 s by TCP
    // keepalives and the user timeout; until then this process trusts its slots.
    config
        .application_name(name)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(2))
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(Duration::from_secs(5));
    let mut client = tls::connect(&config, tls)?;
    if listen {
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    } else {
        // A poll that hangs (a server that stopped answering) ends within 5 s too.
        client.batch_execute("SET statement_timeout = 5000")?;
    }
    Ok(client)
}

/// Apply one notification (`<seq> <body>`); returns the newest sequence number seen. A
/// gap, or a payload it cannot read, invalidates every slot.
fn apply_payload(slots: &Sidecar, payload: &str, last: i64) -> i64 {
    let (seq, body) = payload.split_once(' ').unwrap_or((payload, "*"));
    let Ok(seq) = seq.parse::<i64>() else {
        slots.bump_all();
        return last;
    };
    if seq > last.saturating_add(1) {
        slots.bump_all();
    } else {
        apply_body(slots, body);
    }
    last.max(seq)
}

/// Bump the slots a change names (`<kind><id>` lines, or `*`: all of them; a body it
/// cannot read bumps all of them too).
fn apply_body(slots: &Sidecar, body: &str) {
    if body == "*" {
        slots.bump_all();
        return;
    }
    let mut touched = Vec::new();
    for item in body.split('\n') {
        let kind = match item.as_bytes().first() {
            Some(b'k') => SlotKind::Key,
            Some(b'a') => SlotKind::Account,
            Some(b'g') => SlotKind::Global,
            _ => {
                slots.bump_all();
                return;
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
}

/// What a committed change touched, as stored in `kl_changes` and sent (after its number)
/// in the NOTIFY payload: `<kind><id>` lines, or `*` (everything) when that would not fit a
/// payload or an id holds a newline.
pub(super) fn body(touched: &[(SlotKind, String)]) -> String {
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
    body
}
