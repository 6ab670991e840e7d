//! Management calls: bad input changes nothing, persistence, audit, and secrets never
//! leaking through Debug, errors or audit entries.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{options, Fixture};
use keyledger::{AuditQuery, AuthorizeOptions, Error, NewKey, Target, Vault, VaultOptions};
use serde_json::json;

fn is_invalid<T: std::fmt::Debug>(r: keyledger::Result<T>) -> bool {
    matches!(r, Err(Error::InvalidArgument(_)))
}

/// Everything observable about the vault, to compare before and after a refused call.
fn snapshot(v: &Vault) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        v.list_accounts().unwrap(),
        v.list_keys(None).unwrap(),
        v.list_routes().unwrap(),
        v.audit(&AuditQuery::default()).unwrap()
    )
}

#[test]
fn bad_input_to_every_management_call_is_invalid_argument_and_changes_nothing() {
    let (f, _token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    let before = snapshot(v);
    let long = "x".repeat(129);
    let huge_meta = json!({ "blob": "x".repeat(5000) });

    assert!(is_invalid(v.create_account("", 0, None)));
    assert!(is_invalid(v.create_account(&long, 0, None)));
    assert!(is_invalid(v.create_account("bad\nid", 0, None)));
    assert!(is_invalid(v.create_account("a2", 0, Some(json!([1, 2])))));
    assert!(is_invalid(v.create_account(
        "a2",
        0,
        Some(huge_meta.clone())
    )));
    assert!(is_invalid(v.top_up("acct_42", 0, None)));
    assert!(is_invalid(v.top_up("acct_42", u64::MAX, None)));
    assert!(is_invalid(v.top_up("acct_42", 1, Some(&"r".repeat(300)))));
    assert!(is_invalid(v.debit("acct_42", 0, None)));
    assert!(is_invalid(v.debit("acct_42", 1, Some(""))));
    assert!(is_invalid(v.debit("acct_42", 1, Some(&"k".repeat(256)))));

    let key = |n: NewKey| v.create_key(n);
    assert!(is_invalid(key(NewKey::new("acct_42", "", ["a"]))));
    assert!(is_invalid(key(NewKey::new("acct_42", "n", ["UPPER"]))));
    assert!(is_invalid(key(NewKey::new("acct_42", "n", ["has space"]))));
    assert!(is_invalid(key(NewKey::new("acct_42", "n", ["a*b"]))));
    assert!(is_invalid(key(NewKey::new(
        "acct_42",
        "n",
        ["s".repeat(65)]
    ))));
    assert!(is_invalid(key(NewKey::new(
        "acct_42",
        "n",
        (0..65).map(|i| format!("s{i}"))
    ))));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).prefix("Bad")
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).prefix("trailing_")
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).prefix("p".repeat(33))
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).expires_in_ms(0)
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).expires_in_ms(-5)
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).expires_at(1)
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).metadata(huge_meta)
    )));
    assert!(is_invalid(key(
        NewKey::new("acct_42", "n", ["a"]).metadata(json!("str"))
    )));

    assert!(is_invalid(v.set_scopes(&key_id, &["NOPE"])));
    assert!(is_invalid(v.set_scopes("short", &["a"])));
    assert!(is_invalid(v.set_expiry(&key_id, Some(-1))));
    assert!(is_invalid(v.rotate_key(&key_id, -1)));
    assert!(is_invalid(v.revoke_key("../../etc")));

    assert!(is_invalid(v.add_route("GET", "no-slash", "a", 0)));
    assert!(is_invalid(v.add_route("G E T", "/x", "a", 0)));
    assert!(is_invalid(v.add_route("GET", "/x", "a*", 0)));
    assert!(is_invalid(v.add_route("GET", "/x/*/y", "a", 0)));
    assert!(is_invalid(v.remove_route("GET", "nope")));
    assert!(is_invalid(v.audit(&AuditQuery {
        limit: Some(1_000_000),
        ..AuditQuery::default()
    })));

    assert_eq!(snapshot(v), before, "a refused call changed the vault");
}

#[test]
fn bad_authorize_input_is_refused_without_a_crash_and_changes_nothing() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    let opts = AuthorizeOptions::default();
    let send = Target::route("POST", "/api/v1/messaging/send");
    let huge = "a".repeat(10 * 1024);
    for bad in [
        "",
        "_",
        "__",
        "dial_live__",
        "\u{0}",
        "🔑🔑🔑",
        huge.as_str(),
    ] {
        assert_eq!(
            v.authorize(bad, send, &opts).unwrap_err(),
            Error::InvalidApiKey
        );
    }
    let t = token.expose();
    assert!(is_invalid(v.authorize(t, Target::route("", "/x"), &opts)));
    assert!(is_invalid(v.authorize(
        t,
        Target::route("POST", &"/a".repeat(5000)),
        &opts
    )));
    assert!(is_invalid(v.authorize(
        t,
        Target::scope("NOT VALID"),
        &opts
    )));
    assert!(is_invalid(v.authorize(t, Target::scope("sms:*"), &opts)));
    assert!(is_invalid(v.authorize(
        t,
        send,
        &AuthorizeOptions {
            idempotency_key: Some(&"k".repeat(256)),
            ..opts
        }
    )));
    // Odd but harmless paths simply match no rule.
    for path in ["", "relative", "/api/v1/messaging/send/../../x", "/\u{0}"] {
        assert_eq!(
            v.authorize(t, Target::route("POST", path), &opts)
                .unwrap_err(),
            Error::RouteNotAllowed,
            "{path:?}"
        );
    }
    assert_eq!(v.balance("acct_42").unwrap().credits, 10);
}

#[test]
fn unknown_ids_are_not_found_and_duplicates_already_exist() {
    let (f, _, key_id) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    assert!(matches!(v.account("nobody"), Err(Error::NotFound(_))));
    assert!(matches!(
        v.top_up("nobody", 1, None),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        v.debit("nobody", 1, None),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(v.balance("nobody"), Err(Error::NotFound(_))));
    assert!(matches!(
        v.create_key(NewKey::new("nobody", "k", ["a"])),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(v.key("zzzzzzzz"), Err(Error::NotFound(_))));
    assert!(matches!(v.revoke_key("zzzzzzzz"), Err(Error::NotFound(_))));
    assert!(matches!(v.usage("zzzzzzzz"), Err(Error::NotFound(_))));
    assert!(matches!(
        v.remove_route("GET", "/nope"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        v.create_account("acct_42", 0, None),
        Err(Error::AlreadyExists(_))
    ));
    assert!(matches!(
        v.add_route("post", "/api/v1/messaging/send/", "x", 0),
        Err(Error::AlreadyExists(_))
    ));
    v.revoke_key(&key_id).unwrap();
    assert!(is_invalid(v.enable_key(&key_id)));
    assert!(is_invalid(v.rotate_key(&key_id, 0)));
}

#[test]
fn the_management_debit_refuses_with_the_same_body_as_authorize() {
    let (f, _, _) = Fixture::seeded(3, &[]);
    let e = f.vault.debit("acct_42", 5, None).unwrap_err();
    assert_eq!(e.status(), 402);
    assert_eq!(e.body()["credits"], json!(3));
    assert_eq!(e.body()["required"], json!(5));
    let b = f.vault.debit("acct_42", 2, Some("invoice-1")).unwrap();
    assert_eq!(b.credits, 1);
    let again = f.vault.debit("acct_42", 2, Some("invoice-1")).unwrap();
    assert_eq!(again.credits, 1, "the idempotent repeat charged again");
    let debits = f
        .vault
        .audit(&AuditQuery {
            action: Some("credits_debited".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(debits.len(), 1);
}

#[test]
fn everything_survives_close_and_reopen() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let send = Target::route("POST", "/api/v1/messaging/send");
    f.vault
        .authorize(token.expose(), send, &AuthorizeOptions::default())
        .unwrap();
    f.vault.top_up("acct_42", 5, Some("invoice-7")).unwrap();
    f.vault.close().unwrap();
    assert!(matches!(
        f.vault.balance("acct_42"),
        Err(Error::VaultClosed(_))
    ));
    drop(f.vault);

    let v = Vault::open_with(&f.path, options()).unwrap();
    assert_eq!(v.balance("acct_42").unwrap().credits, 14);
    assert_eq!(v.list_routes().unwrap().len(), 4);
    assert_eq!(v.key(&key_id).unwrap().scopes, vec!["sms:send"]);
    let g = v
        .authorize(token.expose(), send, &AuthorizeOptions::default())
        .unwrap();
    assert_eq!(g.credits, 13);
    // Usage counted before the close was flushed by it.
    assert_eq!(v.usage(&key_id).unwrap().granted, 2);
    let actions: Vec<String> = v
        .audit(&AuditQuery::default())
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "account_created",
        "route_added",
        "key_created",
        "credits_added",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
}

#[test]
fn audit_entries_are_sequenced_filtered_and_carry_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let v = Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            actor: Some("billing-job".into()),
            ..options()
        },
    )
    .unwrap();
    v.create_account("a", 1, None).unwrap();
    v.create_account("b", 1, None).unwrap();
    v.top_up("a", 5, Some("inv-1")).unwrap();
    let all = v.audit(&AuditQuery::default()).unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![3, 2, 1], "newest first, gapless");
    assert!(all
        .iter()
        .all(|e| e.actor.as_deref() == Some("billing-job")));
    let a = v
        .audit(&AuditQuery {
            account_id: Some("a".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(a[0].details["reference"], json!("inv-1"));
    let limited = v
        .audit(&AuditQuery {
            limit: Some(1),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);
}

#[test]
fn the_vault_file_is_created_owner_only() {
    let f = Fixture::new();
    let mode = std::fs::metadata(&f.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let shm = f.path.with_extension("redb.shm");
    let mode = std::fs::metadata(shm).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn no_secret_or_hash_appears_in_debug_output_errors_or_the_audit_log() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let t = token.expose().to_string();
    let secret = keyledger::token::parse(&t).unwrap().secret.to_string();
    let mut texts = vec![
        format!("{token:?}"),
        format!("{:?}", keyledger::token::parse(&t).unwrap()),
        format!("{:?}", f.vault),
        format!("{:?}", f.vault.key(&key_id).unwrap()),
        format!("{:?}", f.vault.list_keys(None).unwrap()),
        serde_json::to_string(&f.vault.key(&key_id).unwrap()).unwrap(),
    ];
    let send = Target::route("POST", "/api/v1/messaging/send");
    let g = f
        .vault
        .authorize(&t, send, &AuthorizeOptions::default())
        .unwrap();
    texts.push(format!("{g:?}"));
    // The last character changed (to `y` when it already is `x`: one token in 62 ends in it).
    let swap = if t.ends_with('x') { 'y' } else { 'x' };
    let tampered = format!("{}{swap}", &t[..t.len() - 1]);
    let e = f
        .vault
        .authorize(&tampered, send, &AuthorizeOptions::default())
        .unwrap_err();
    texts.push(format!("{e:?} {e} {}", e.body()));
    let (rotated, _) = f.vault.rotate_key(&key_id, 0).unwrap();
    texts.push(format!("{rotated:?}"));
    texts.push(format!(
        "{:?}",
        f.vault.audit(&AuditQuery::default()).unwrap()
    ));
    let vault_bytes = std::fs::read(&f.path).unwrap();
    for text in &texts {
        assert!(!text.contains(&secret), "secret leaked in {text}");
        assert!(!text.contains("$argon2id$"), "hash leaked in {text}");
    }
    assert!(
        !vault_bytes
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()),
        "the secret is stored in clear"
    );
    assert!(format!("{token:?}").contains(&format!("dial_live_{key_id}_…")));
}

#[test]
fn eventual_durability_needs_an_exclusive_vault() {
    let dir = tempfile::tempdir().unwrap();
    let r = Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            durability: keyledger::Durability::Eventual,
            ..options()
        },
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))));
}

#[test]
fn an_exclusive_vault_locks_out_a_second_opener_and_keeps_its_debits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let v = Vault::open_with(
        &path,
        VaultOptions {
            exclusive: true,
            durability: keyledger::Durability::Eventual,
            ..options()
        },
    )
    .unwrap();
    assert_eq!(v.cache_mode(), keyledger::CacheMode::Private);
    assert!(matches!(
        Vault::open_with(&path, options()),
        Err(Error::VaultLocked)
    ));
    v.create_account("a", 100, None).unwrap();
    let (t, _) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    for _ in 0..10 {
        v.authorize(
            t.expose(),
            Target::scope("x"),
            &AuthorizeOptions {
                cost: Some(1),
                ..AuthorizeOptions::default()
            },
        )
        .unwrap();
    }
    v.close().unwrap();
    drop(v);
    let v = Vault::open_with(&path, options()).unwrap();
    assert_eq!(v.balance("a").unwrap().credits, 90);
}

#[test]
fn changing_argon2_parameters_rehashes_a_key_on_its_next_verification() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    f.vault.close().unwrap();
    let stronger = keyledger::Argon2Params {
        m_kib: 16,
        t: 1,
        p: 1,
    };
    // Changing them is an explicit call (an opener's `argon2` applies to a new vault only).
    let v = Vault::open_with(&f.path, options()).unwrap();
    v.set_argon2_params(stronger).unwrap();
    assert_eq!(v.argon2_params(), stronger);
    let commits = v.stats().commits;
    v.authorize(
        token.expose(),
        Target::scope("sms:send"),
        &AuthorizeOptions::default(),
    )
    .unwrap();
    assert_eq!(v.stats().commits, commits + 1, "no rehash was written");
    v.close().unwrap();
    // A third handle, with the stored (new) parameters, verifies without a rehash.
    let v = Vault::open_with(&f.path, VaultOptions::default()).unwrap();
    assert_eq!(v.argon2_params(), stronger);
    let commits = v.stats().commits;
    v.authorize(
        token.expose(),
        Target::scope("sms:send"),
        &AuthorizeOptions::default(),
    )
    .unwrap();
    assert_eq!(
        v.stats().commits,
        commits,
        "the new hash was rehashed again"
    );
    assert_eq!(v.key(&key_id).unwrap().key_id, key_id);
}
