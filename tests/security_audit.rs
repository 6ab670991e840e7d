//! Refusal floods cannot grow the audit log without bound, and refusal entries are pruned
//! after their retention while management entries stay.
//!
//! Regression: 20 000 refused calls on distinct paths left 10 000 audit entries (one per
//! distinct route per second, capped only at 10 000), and random key ids did the same.

mod common;

use std::time::Duration;

use common::{options_with_clock, seed_routes, TestClock};
use keyledger::{AuditEntry, AuditQuery, AuthorizeOptions, NewKey, Target, Vault, VaultOptions};
use serde_json::json;

const FLOOD: usize = 20_000;

/// A vault whose background flusher never runs during the test: the test flushes by hand,
/// so the whole flood falls into one window.
fn manual_flush_vault(dir: &tempfile::TempDir, clock: &TestClock) -> Vault {
    Vault::open_with(
        common::location(dir, "vault.redb"),
        VaultOptions {
            flush_interval: Duration::from_secs(3600),
            ..options_with_clock(clock)
        },
    )
    .unwrap()
}

fn refusals(v: &Vault) -> Vec<AuditEntry> {
    v.audit(&AuditQuery {
        action: Some("auth_refused".into()),
        limit: Some(10_000),
        ..AuditQuery::default()
    })
    .unwrap()
}

fn total_count(entries: &[AuditEntry]) -> u64 {
    entries
        .iter()
        .map(|e| e.details["count"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_flood_of_distinct_unmatched_paths_leaves_one_entry_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let v = manual_flush_vault(&dir, &clock);
    v.create_account("acct_42", 0, None).unwrap();
    seed_routes(&v);
    let (token, info) = v
        .create_key(NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"))
        .unwrap();
    for i in 0..FLOOD {
        let path = format!("/nope/{i}");
        let r = v.authorize(
            token.expose(),
            Target::route("GET", &path),
            &AuthorizeOptions::default(),
        );
        assert_eq!(r.unwrap_err().code(), "route_not_allowed");
    }
    v.flush().unwrap();
    let entries = refusals(&v);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.key_id.as_deref(), Some(info.key_id.as_str()));
    assert_eq!(e.details["code"], json!("route_not_allowed"));
    assert_eq!(e.details["count"], json!(FLOOD));
    let samples = e.details["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    assert_eq!(samples[0], json!("GET /nope/0"));
    // Usage still counts every refusal of the key.
    assert_eq!(v.usage(&info.key_id).unwrap().refused, FLOOD as u64);
}

#[test]
fn a_flood_of_random_key_ids_leaves_one_entry_per_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let v = manual_flush_vault(&dir, &clock);
    v.create_account("acct_42", 0, None).unwrap();
    seed_routes(&v);
    for _ in 0..FLOOD {
        let key_id = keyledger::token::new_key_id();
        let forged = keyledger::token::mint("dial_live", &key_id).unwrap();
        let r = v.authorize(
            &forged,
            Target::route("GET", "/api/v1/numbers/mine"),
            &AuthorizeOptions::default(),
        );
        assert_eq!(r.unwrap_err().code(), "invalid_api_key");
    }
    // Malformed tokens fold into the same entry.
    for i in 0..100 {
        let _ = v.authorize(
            &format!("garbage-{i}"),
            Target::route("GET", "/api/v1/numbers/mine"),
            &AuthorizeOptions::default(),
        );
    }
    v.flush().unwrap();
    let entries = refusals(&v);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.key_id, None);
    assert_eq!(e.details["code"], json!("invalid_api_key"));
    assert_eq!(e.details["count"], json!(FLOOD + 100));
    let samples = e.details["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 5);
    // A sample names the key id and the route, never the secret.
    let s = samples[0].as_str().unwrap();
    assert!(s.ends_with(" GET /api/v1/numbers/mine"), "{s}");
    assert_eq!(s.split(' ').next().unwrap().len(), 8, "{s}");
}

#[test]
fn distinct_refusals_of_real_keys_are_capped_per_window() {
    // Refusals that are not folded by kind (here: a missing scope on paths a wildcard rule
    // matches) are still bounded per window: beyond the cap they fold into one overflow
    // entry that keeps the count.
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let v = manual_flush_vault(&dir, &clock);
    v.create_account("acct_42", 0, None).unwrap();
    seed_routes(&v);
    let (token, _) = v
        .create_key(NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"))
        .unwrap();
    for i in 0..FLOOD {
        let path = format!("/sms/{i}");
        let r = v.authorize(
            token.expose(),
            Target::route("GET", &path),
            &AuthorizeOptions::default(),
        );
        assert_eq!(r.unwrap_err().code(), "missing_scope");
    }
    v.flush().unwrap();
    let entries = refusals(&v);
    assert!(entries.len() <= 1_001, "{} entries", entries.len());
    assert_eq!(total_count(&entries), FLOOD as u64);
    let overflow: Vec<_> = entries
        .iter()
        .filter(|e| {
            e.details["route"]
                .as_str()
                .unwrap()
                .starts_with("(overflow")
        })
        .collect();
    assert_eq!(overflow.len(), 1);
    assert_eq!(overflow[0].details["samples"].as_array().unwrap().len(), 5);
}

#[test]
fn refusal_entries_are_pruned_after_their_retention_and_management_entries_stay() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let day = 24 * 3600 * 1000;
    let v = Vault::open_with(
        common::location(&dir, "vault.redb"),
        VaultOptions {
            flush_interval: Duration::from_millis(20),
            refusal_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            ..options_with_clock(&clock)
        },
    )
    .unwrap();
    v.create_account("acct_42", 10, None).unwrap();
    seed_routes(&v);
    let (token, _) = v
        .create_key(NewKey::new("acct_42", "server", ["sms:send"]).prefix("dial_live"))
        .unwrap();
    let refuse = |path: &str| {
        let _ = v.authorize(
            token.expose(),
            Target::route("GET", path),
            &AuthorizeOptions::default(),
        );
        v.flush().unwrap();
    };
    refuse("/old");
    clock.advance(3 * day);
    refuse("/middle");
    clock.advance(5 * day);
    // Day 8: the day-0 refusal is past a 7-day retention, the day-3 one is not.
    v.top_up("acct_42", 5, None).unwrap();
    refuse("/new");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = refusals(&v);
        let samples: Vec<String> = left
            .iter()
            .map(|e| e.details["samples"].to_string())
            .collect();
        if !samples.iter().any(|s| s.contains("/old")) {
            assert_eq!(left.len(), 2, "{samples:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old refusal was never pruned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = v.audit(&AuditQuery::default()).unwrap();
    let actions: Vec<&str> = after.iter().map(|e| e.action.as_str()).collect();
    for kept in [
        "account_created",
        "route_added",
        "key_created",
        "credits_added",
    ] {
        assert!(actions.contains(&kept), "{kept} was pruned: {actions:?}");
    }
    let management = actions.iter().filter(|a| **a != "auth_refused").count();
    assert_eq!(management, 7, "{actions:?}");
    assert_eq!(after.len(), management + 2, "{actions:?}");
    // Sequence numbers are never reused: the next entry continues after the newest.
    let newest = after[0].seq;
    v.top_up("acct_42", 1, None).unwrap();
    assert_eq!(v.audit(&AuditQuery::default()).unwrap()[0].seq, newest + 1);
}

#[test]
fn refusal_entries_are_kept_forever_when_retention_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let clock = TestClock::new();
    let v = Vault::open_with(
        common::location(&dir, "vault.redb"),
        VaultOptions {
            flush_interval: Duration::from_millis(20),
            refusal_retention: None,
            ..options_with_clock(&clock)
        },
    )
    .unwrap();
    let _ = v.authorize(
        "garbage",
        Target::route("GET", "/x"),
        &AuthorizeOptions::default(),
    );
    v.flush().unwrap();
    clock.advance(365 * 24 * 3600 * 1000);
    v.create_account("acct_1", 0, None).unwrap();
    // Give the background pruner several rounds.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(refusals(&v).len(), 1);
}
