//! Events (alert thresholds, the event log, consumers' cursors, expiry notices, refills,
//! revocations) and usage reports, on a real vault file.

mod common;

use common::{options_with_clock, Fixture, T0};
use keyledger::events::{Event, ReportBy, UsageRow, UNCHARGED_ROUTE};
use keyledger::{AuthorizeOptions, Error, NewKey, RefillInterval, Target, Vault};

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn a_debit_crossing_a_threshold_writes_one_event_per_threshold_in_its_transaction() {
    let (f, token, _key_id) = Fixture::seeded(12, &["sms:send"]);
    let v = &f.vault;
    assert_eq!(v.set_alert("acct_42", 10).unwrap(), vec![10]);
    assert_eq!(v.set_alert("acct_42", 5).unwrap(), vec![5, 10]);
    assert_eq!(v.set_alert("acct_42", 10).unwrap(), vec![5, 10]);
    let o = AuthorizeOptions::default();
    // 12 → 11: nothing crossed.
    v.authorize(token.expose(), SEND, &o).unwrap();
    assert!(v.events(0, 100).unwrap().is_empty());
    // 11 → 10: still at the threshold, not below it.
    v.authorize(token.expose(), SEND, &o).unwrap();
    assert!(v.events(0, 100).unwrap().is_empty());
    // 10 → 9: below 10.
    v.authorize(token.expose(), SEND, &o).unwrap();
    let e = v.events(0, 100).unwrap();
    assert_eq!(kinds(&e), ["balance_below"]);
    assert_eq!(e[0].seq, 1);
    assert_eq!(e[0].account_id.as_deref(), Some("acct_42"));
    assert_eq!(e[0].data["threshold"], 10);
    assert_eq!(e[0].data["credits"], 9);
    assert_eq!(e[0].data["previous"], 10);
    // A management debit of 8 (9 → 1) crosses 5 only; 10 was crossed already.
    v.debit("acct_42", 8, None).unwrap();
    let e = v.events(1, 100).unwrap();
    assert_eq!(kinds(&e), ["balance_below"]);
    assert_eq!((e[0].seq, e[0].data["threshold"].as_u64()), (2, Some(5)));
    // A top-up back over both, then one debit across both: two events.
    v.top_up("acct_42", 19, None).unwrap();
    v.debit("acct_42", 17, None).unwrap();
    let e = v.events(2, 100).unwrap();
    let thresholds: Vec<u64> = e
        .iter()
        .map(|e| e.data["threshold"].as_u64().unwrap())
        .collect();
    assert_eq!(thresholds, [5, 10]);
    // A refused debit (402) moves nothing and records nothing.
    assert!(v.debit("acct_42", 1000, None).is_err());
    assert_eq!(v.events(0, 100).unwrap().len(), 4);
    // Removed thresholds are silent.
    assert!(v.remove_alert("acct_42", 5).unwrap());
    assert!(!v.remove_alert("acct_42", 5).unwrap());
    assert_eq!(v.alerts("acct_42").unwrap(), vec![10]);
}

#[test]
fn a_failed_commit_leaves_neither_the_debit_nor_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let faults = keyledger::testing::fault::arm_operations(&path);
    let clock = common::TestClock::new();
    let v = Vault::open_with(&path, options_with_clock(&clock)).unwrap();
    v.create_account("a", 10, None).unwrap();
    v.set_alert("a", 5).unwrap();
    // The debit's own writes succeed; the event's append fails: nothing commits.
    faults.fail_after(1);
    assert!(v.debit("a", 6, None).is_err());
    faults.heal();
    assert_eq!(v.balance("a").unwrap().credits, 10);
    assert!(v.events(0, 10).unwrap().is_empty());
    v.debit("a", 6, None).unwrap();
    assert_eq!(kinds(&v.events(0, 10).unwrap()), ["balance_below"]);
}

#[test]
fn bad_alert_and_event_arguments_are_refused_and_change_nothing() {
    let (f, _t, _k) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    assert!(matches!(
        v.set_alert("acct_42", 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(v.set_alert("nobody", 5), Err(Error::NotFound(_))));
    assert!(matches!(v.set_alert("", 5), Err(Error::InvalidArgument(_))));
    for n in 1..=16 {
        v.set_alert("acct_42", n).unwrap();
    }
    assert!(matches!(
        v.set_alert("acct_42", 17),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(v.alerts("acct_42").unwrap().len(), 16);
    assert!(matches!(v.events(0, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        v.events(0, 10_001),
        Err(Error::InvalidArgument(_))
    ));
    assert!(v.events(u64::MAX, 10).unwrap().is_empty());
    assert!(matches!(
        v.ack_events("bad name", 1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.set_expiry_notice(Some(0)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn revocations_refills_and_expiry_notices_are_events_too() {
    let (f, _t, key_id) = Fixture::seeded(50, &["sms:send"]);
    let v = &f.vault;
    v.revoke_key(&key_id).unwrap();
    // Revoking again changes nothing and writes nothing.
    v.revoke_key(&key_id).unwrap();
    let e = v.events(0, 10).unwrap();
    assert_eq!(kinds(&e), ["key_revoked"]);
    assert_eq!(e[0].key_id.as_deref(), Some(key_id.as_str()));

    // A daily refill to 5 from 50, with an alert at 10: the refill and the crossing.
    v.set_alert("acct_42", 10).unwrap();
    v.set_refill("acct_42", 5, RefillInterval::Daily, 1)
        .unwrap();
    f.clock.advance(86_400_000);
    assert_eq!(v.balance("acct_42").unwrap().credits, 5);
    let e = v.events(1, 10).unwrap();
    assert_eq!(kinds(&e), ["credits_refilled", "balance_below"]);
    assert_eq!(e[0].data["amount"], 5);
    assert_eq!(e[0].data["previous"], 50);

    // Expiry notices: off by default; once on, one event per key and expiry instant.
    let (_tok, soon) = v
        .create_key(
            NewKey::new("acct_42", "soon", ["sms:send"]).expires_at(f.clock.now() + 3_600_000),
        )
        .unwrap();
    let (_tok, later) = v
        .create_key(
            NewKey::new("acct_42", "later", ["sms:send"])
                .expires_at(f.clock.now() + 30 * 86_400_000),
        )
        .unwrap();
    assert_eq!(v.check_expiring_keys().unwrap(), 0);
    v.set_expiry_notice(Some(86_400_000)).unwrap();
    assert_eq!(v.expiry_notice().unwrap(), Some(86_400_000));
    assert_eq!(v.check_expiring_keys().unwrap(), 1);
    assert_eq!(v.check_expiring_keys().unwrap(), 0);
    let last = v.events(3, 10).unwrap();
    assert_eq!(kinds(&last), ["key_expiring"]);
    assert_eq!(last[0].key_id.as_deref(), Some(soon.key_id.as_str()));
    // 29 days on, the other key is due: exactly one more notice.
    f.clock.advance(29 * 86_400_000 + 1);
    assert_eq!(v.check_expiring_keys().unwrap(), 1);
    let last = v.events(4, 10).unwrap();
    assert_eq!(last[0].key_id.as_deref(), Some(later.key_id.as_str()));
}

#[test]
fn consumers_cursors_are_shared_by_handles_and_only_move_forward() {
    let f = Fixture::new();
    let v = &f.vault;
    v.create_account("a", 100, None).unwrap();
    v.set_alert("a", 90).unwrap();
    v.debit("a", 20, None).unwrap();
    assert_eq!(v.event_cursor("hook").unwrap(), 0);
    assert_eq!(v.ack_events("hook", 1).unwrap(), 1);
    // Another handle on the same file (another process would be the same) sees it.
    let other = Vault::open_with(&f.path, common::options()).unwrap();
    assert_eq!(other.event_cursor("hook").unwrap(), 1);
    // A late, older acknowledgement does not move it back.
    assert_eq!(other.ack_events("hook", 0).unwrap(), 1);
    assert_eq!(v.event_cursor("hook").unwrap(), 1);
    assert_eq!(v.event_cursor("other").unwrap(), 0);
}

#[test]
fn events_survive_reopening_and_keep_their_numbers() {
    let f = Fixture::new();
    f.vault.create_account("a", 100, None).unwrap();
    f.vault.set_alert("a", 50).unwrap();
    f.vault.debit("a", 60, None).unwrap();
    let before = f.vault.events(0, 10).unwrap();
    f.vault.close().unwrap();
    let v = Vault::open_with(&f.path, common::options()).unwrap();
    assert_eq!(v.events(0, 10).unwrap(), before);
    v.top_up("a", 100, None).unwrap();
    v.debit("a", 100, None).unwrap();
    assert_eq!(v.events(0, 10).unwrap()[1].seq, 2);
}

fn row(group: &str, charged: u64, calls: u64, refusals: u64) -> UsageRow {
    UsageRow {
        group: group.into(),
        charged,
        calls,
        refusals,
    }
}

#[test]
fn usage_reports_count_charges_calls_and_refusals_by_key_route_and_day() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send", "numbers:read"]);
    let v = &f.vault;
    let (token2, info2) = v
        .create_key(NewKey::new("acct_42", "second", ["sms:send"]))
        .unwrap();
    let o = AuthorizeOptions::default();
    let free = Target::route("GET", "/api/v1/numbers/mine");
    // Day 1: key 1 sends 3 paid messages and reads twice for free; key 2 sends once and
    // is refused once (no scope).
    for _ in 0..3 {
        v.authorize(token.expose(), SEND, &o).unwrap();
    }
    for _ in 0..2 {
        v.authorize(token.expose(), free, &o).unwrap();
    }
    v.authorize(token2.expose(), SEND, &o).unwrap();
    assert!(v.authorize(token2.expose(), free, &o).is_err());
    v.flush().unwrap();
    // Day 2: key 1 sends once more; then a management debit of 2.
    f.clock.advance(86_400_000);
    v.authorize(token.expose(), SEND, &o).unwrap();
    v.debit("acct_42", 2, None).unwrap();
    v.flush().unwrap();

    let all = (T0 - 86_400_000, T0 + 3 * 86_400_000);
    let by_key = v
        .usage_report("acct_42", all.0, all.1, ReportBy::Key)
        .unwrap();
    let mut expect = vec![
        row("", 2, 0, 0),
        row(&key_id, 4, 6, 0),
        row(&info2.key_id, 1, 1, 1),
    ];
    expect.sort_by(|a, b| a.group.cmp(&b.group));
    assert_eq!(by_key, expect);

    let by_day = v
        .usage_report("acct_42", all.0, all.1, ReportBy::Day)
        .unwrap();
    assert_eq!(
        by_day,
        vec![row("2026-11-23", 4, 6, 1), row("2026-11-24", 3, 1, 0)]
    );

    let by_route = v
        .usage_report("acct_42", all.0, all.1, ReportBy::Route)
        .unwrap();
    assert_eq!(
        by_route,
        vec![
            row("(debit)", 2, 1, 0),
            row(UNCHARGED_ROUTE, 0, 2, 0),
            row("GET /api/v1/numbers/mine", 0, 0, 1),
            row("POST /api/v1/messaging/send", 5, 5, 0),
        ]
    );

    // A window of day 2 only.
    let day2 = v
        .usage_report(
            "acct_42",
            T0 + 86_400_000,
            T0 + 2 * 86_400_000,
            ReportBy::Key,
        )
        .unwrap();
    assert_eq!(day2, vec![row("", 2, 0, 0), row(&key_id, 1, 1, 0)]);

    assert!(matches!(
        v.usage_report("acct_42", all.1, all.0, ReportBy::Key),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.usage_report("nobody", all.0, all.1, ReportBy::Key),
        Err(Error::NotFound(_))
    ));
    assert!("hour".parse::<ReportBy>().is_err());
}

#[test]
fn metrics_count_this_handles_grants_refusals_debits_and_cache_misses() {
    let (f, token, _key_id) = Fixture::seeded(2, &["sms:send"]);
    let v = &f.vault;
    let o = AuthorizeOptions::default();
    assert_eq!(v.metrics().cache_hit_ratio(), None);
    for _ in 0..2 {
        v.authorize(token.expose(), SEND, &o).unwrap();
    }
    // 402: no credits left; 403: no such route.
    assert!(v.authorize(token.expose(), SEND, &o).is_err());
    assert!(v
        .authorize(token.expose(), Target::route("GET", "/nowhere"), &o)
        .is_err());
    v.debit("acct_42", 0, None).unwrap_err();
    v.flush().unwrap();
    let m = v.metrics();
    assert_eq!(m.grants, 2);
    assert_eq!(m.debits, 2);
    assert_eq!(m.refusals.get("insufficient_credits"), Some(&1));
    assert_eq!(m.refusals.get("route_not_allowed"), Some(&1));
    assert_eq!(m.key_cache_misses, 1);
    assert!(m.argon2_runs >= 1);
    assert_eq!(m.cache_hit_ratio(), Some(0.75));
    let text = m.prometheus();
    assert!(text.contains("keyledger_grants_total 2\n"), "{text}");
    assert!(text.contains("keyledger_refusals_total{code=\"insufficient_credits\"} 1\n"));
    assert!(text.contains("keyledger_key_cache_hit_ratio 0.75\n"));
    assert!(text.contains("# HELP keyledger_debits_total"));
    assert!(text.contains("this process's vault handle"));
}

/// Holds lower the available credits, so an alert fires when a hold (or a settle above its
/// hold) takes the balance under a threshold; a release that gives credits back does not.
#[test]
fn holds_and_settles_above_the_hold_cross_thresholds_like_debits() {
    let (f, _token, _key_id) = Fixture::seeded(20, &["sms:send"]);
    let v = &f.vault;
    v.set_alert("acct_42", 15).unwrap();
    v.set_alert("acct_42", 5).unwrap();
    // 20 → 12 available: below 15.
    let h = v.hold("acct_42", 8, 60_000, None).unwrap();
    let e = v.events(0, 100).unwrap();
    assert_eq!(kinds(&e), ["balance_below"]);
    assert_eq!(
        (
            e[0].data["threshold"].as_u64(),
            e[0].data["credits"].as_u64()
        ),
        (Some(15), Some(12))
    );
    // Settling 10 of the 8 held takes 2 more: 12 → 10, nothing crossed.
    let options = keyledger::SettleOptions {
        allow_over: true,
        idempotency_key: None,
    };
    v.settle(&h.hold_id, 10, &options).unwrap();
    assert_eq!(v.events(0, 100).unwrap().len(), 1);
    // A hold of 6 (10 → 4) crosses 5; its release (4 → 10) records nothing.
    let h2 = v.hold("acct_42", 6, 60_000, Some("h2")).unwrap();
    v.release(&h2.hold_id).unwrap();
    let e = v.events(0, 100).unwrap();
    assert_eq!(kinds(&e), ["balance_below", "balance_below"]);
    assert_eq!(e[1].data["threshold"].as_u64(), Some(5));
}
