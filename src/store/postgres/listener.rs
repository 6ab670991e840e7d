//! The change listener of a PostgreSQL vault: one connection per vault handle, `LISTEN
//! keyledger_changes`, bumping this process's generation slots (see the parent module's
//! docs for the protocol and how it fails closed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config};

use super::tls::{self, Tls};

use crate::shm::{Sidecar, SlotKind};

/// The notification channel of committed changes.
pub(super) const CHANNEL: &str = "keyledger_changes";
/// A NOTIFY payload must stay under 8000 bytes; longer touched sets say "everything".
const MAX_PAYLOAD: usize = 7000;
/// How often the listener checks for a stop request or a broken connection.
const LISTEN_TICK: Duration = Duration::from_millis(100);

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
        slots.distrust();
        connected.store(false, Ordering::SeqCst);
        let mut client = match listener_connect(config, tls) {
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

fn listener_connect(config: &Config, tls: &Tls) -> std::result::Result<Client, postgres::Error> {
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
    let mut client = tls::connect(&config, tls)?;
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
pub(super) fn payload(seq: i64, touched: &[(SlotKind, String)]) -> String {
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
