//! Hostile input through the Rust API and the C ABI (what `tests/management.rs`,
//! `tests/c/` and the binding suites do not already cover): deep JSON nesting, huge JSON,
//! NUL bytes, oversized and binary tokens, `..` in the vault path, overflowing amounts.
//! Each gives its documented error — or is accepted and reads back intact — and a refused
//! call changes nothing. Never a panic, never a stack overflow.
//!
//! Regression (deeply_nested_metadata_…): metadata nested 128 levels deep (under 4 KiB)
//! was accepted by `create_account`/`create_key` and then read back as `{}`: the reader's
//! serde_json parser stops at 128 levels and its error was replaced by an empty object.
//! Such metadata is now `invalid_argument`; the depth is measured without recursion,
//! before the core serializes the value.

mod common;

use std::ffi::c_char;
use std::ptr;

use common::{options, Fixture};
use keyledger::ffi::*;
use keyledger::{AuditQuery, AuthorizeOptions, Error, NewKey, Target, Vault};
use serde_json::{json, Value};

/// Everything observable, to compare before and after a refused call.
fn snapshot(v: &Vault) -> String {
    format!(
        "{:?}\n{:?}\n{:?}",
        v.list_accounts().unwrap(),
        v.list_keys(None).unwrap(),
        v.audit(&AuditQuery::default()).unwrap()
    )
}

/// `depth` nested arrays under one key: `{"m": [[[…]]]}`.
fn nested(depth: usize) -> Value {
    let mut v = json!([]);
    for _ in 1..depth {
        v = Value::Array(vec![v]);
    }
    // Not `json!`: it would serialize `v` recursively.
    let mut map = serde_json::Map::new();
    map.insert("m".into(), v);
    Value::Object(map)
}

/// Drop a deep value iteratively (serde_json's Drop recurses).
fn drop_deep(mut v: Value) {
    let mut stack = vec![];
    loop {
        match v {
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
        match stack.pop() {
            Some(next) => v = next,
            None => break,
        }
    }
}

#[test]
fn deeply_nested_metadata_is_refused_or_reads_back_never_overflows() {
    let f = Fixture::new();
    let v = &f.vault;
    v.create_account("a", 1, None).unwrap();
    let mut accepted = Vec::new();
    for depth in [10, 100, 127, 128, 129, 200, 1_000, 2_000] {
        let before = snapshot(v);
        let id = format!("deep{depth}");
        let r = v.create_account(&id, 1, Some(nested(depth)));
        let meta = nested(depth);
        match r {
            Ok(_) => {
                // Accepted means it reads back, in every call that returns it.
                let acct = v.account(&id).unwrap_or_else(|e| {
                    panic!("depth {depth} was accepted but cannot be read back: {e:?}")
                });
                assert_eq!(acct.metadata, meta, "depth {depth}");
                v.list_accounts()
                    .unwrap_or_else(|e| panic!("depth {depth}: list_accounts fails: {e:?}"));
                accepted.push(depth);
            }
            Err(e) => {
                assert_eq!(e.code(), "invalid_argument", "depth {depth}: {e:?}");
                assert_eq!(
                    snapshot(v),
                    before,
                    "depth {depth}: a refused call changed something"
                );
            }
        }
        drop_deep(meta);
        // Keys take metadata too.
        let meta = nested(depth);
        match v.create_key(NewKey::new("a", "k", ["x"]).metadata(nested(depth))) {
            Ok((_, info)) => {
                let back = v.key(&info.key_id).unwrap_or_else(|e| {
                    panic!("key metadata depth {depth} accepted but unreadable: {e:?}")
                });
                assert_eq!(back.metadata, meta);
                v.list_keys(None).unwrap();
            }
            Err(e) => assert_eq!(e.code(), "invalid_argument", "key depth {depth}: {e:?}"),
        }
        drop_deep(meta);
    }
    eprintln!("hostile: nested metadata accepted at depths {accepted:?}");
    // 10 000 levels: over 4 KiB as JSON, refused by size.
    let e = v
        .create_account("deep10k", 1, Some(nested(10_000)))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}

#[test]
fn huge_metadata_and_huge_strings_are_invalid_argument_and_change_nothing() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    let before = snapshot(v);
    let big = "x".repeat(1 << 20);
    let e = v
        .create_account("big", 1, Some(json!({ "blob": big })))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    let many: serde_json::Map<String, Value> =
        (0..100_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let e = v
        .create_account("big", 1, Some(Value::Object(many)))
        .unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
    assert!(matches!(
        v.create_account(&"a".repeat(1 << 20), 1, None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.create_key(NewKey::new("acct_42", big.as_str(), ["x"])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.set_scopes(&key_id, &[big.as_str()]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        v.debit("acct_42", 1, Some(big.as_str())),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(snapshot(v), before);
    // A 10 MB token is refused before any other work (and charges nothing).
    let huge_token = format!("{}{}", token.expose(), "A".repeat(10 << 20));
    assert_eq!(
        v.authorize(
            &huge_token,
            Target::scope("sms:send"),
            &AuthorizeOptions::default()
        )
        .unwrap_err(),
        Error::InvalidApiKey
    );
    assert_eq!(v.balance("acct_42").unwrap().credits, 10);
}

#[test]
fn nul_bytes_and_binary_input_are_refused_and_change_nothing() {
    let (f, token, key_id) = Fixture::seeded(10, &["sms:send"]);
    let v = &f.vault;
    let before = snapshot(v);
    let t = token.expose();
    let with_nul = format!("{t}\0");
    let nul_inside = format!("{}\0{}", &t[..10], &t[10..]);
    for bad in [
        with_nul.as_str(),
        nul_inside.as_str(),
        "\0",
        "kl_live_\0\0\0\0\0\0\0\0_x",
    ] {
        assert_eq!(
            v.authorize(bad, Target::scope("sms:send"), &AuthorizeOptions::default())
                .unwrap_err(),
            Error::InvalidApiKey,
            "{bad:?}"
        );
    }
    for id in ["a\0b", "\0", "acct_42\0"] {
        let r = v.create_account(id, 1, None);
        // A NUL is just a byte in an id: either refused, or stored and read back exactly.
        if let Ok(acct) = r {
            assert_eq!(v.account(id).unwrap().id, acct.id);
            assert_ne!(id, "acct_42", "acct_42\\0 must not alias acct_42");
        }
        assert!(v.balance("acct_42").unwrap().credits == 10);
    }
    let after_ids = snapshot(v);
    let r = v.authorize(
        t,
        Target::route("POST\0", "/api/v1/messaging/send"),
        &AuthorizeOptions::default(),
    );
    assert!(r.is_err(), "a method with a NUL matched a route");
    let r = v.authorize(
        t,
        Target::route("POST", "/api/v1/messaging/send\0"),
        &AuthorizeOptions::default(),
    );
    assert!(
        matches!(
            r,
            Err(Error::RouteNotAllowed) | Err(Error::InvalidArgument(_))
        ),
        "{r:?}"
    );
    assert!(v.set_scopes(&key_id, &["sms:send\0"]).is_err());
    assert!(v.add_route("GET", "/a\0b", "s", 0).is_err() || v.list_routes().is_ok());
    let _ = before;
    // Nothing above charged anything.
    assert_eq!(v.balance("acct_42").unwrap().credits, 10);
    let _ = after_ids;
}

#[test]
fn amounts_that_overflow_are_invalid_argument_and_change_nothing() {
    let f = Fixture::new();
    let v = &f.vault;
    v.create_account("a", u64::MAX - 5, None).unwrap();
    let before = snapshot(v);
    assert_eq!(
        v.top_up("a", 6, None).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(
        v.top_up("a", u64::MAX, None).unwrap_err().code(),
        "invalid_argument"
    );
    assert_eq!(snapshot(v), before);
    assert_eq!(v.top_up("a", 5, None).unwrap().credits, u64::MAX);
    let e = v.debit("b", u64::MAX, None).unwrap_err();
    assert_eq!(e.code(), "not_found");
    v.create_account("b", 0, None).unwrap();
    assert_eq!(
        v.debit("b", u64::MAX, None).unwrap_err(),
        Error::InsufficientCredits {
            credits: 0,
            required: u64::MAX
        }
    );
}

#[test]
fn vault_paths_with_dot_dot_nul_or_a_directory_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    // `..` is an ordinary path component: it names the same file as the plain path.
    let dotted = sub.join("..").join("v.redb");
    let v = Vault::open_with(&dotted, options()).unwrap();
    v.create_account("a", 3, None).unwrap();
    v.close().unwrap();
    let v = Vault::open_with(dir.path().join("v.redb"), options()).unwrap();
    assert_eq!(v.balance("a").unwrap().credits, 3);
    v.close().unwrap();
    // A missing directory, a directory, a NUL: storage or invalid_argument, no file made.
    for bad in [
        dir.path().join("missing").join("..").join("x.redb"),
        dir.path().join("no").join("such").join("v.redb"),
        sub.clone(),
        dir.path().join("a\0b.redb"),
        std::path::PathBuf::new(),
    ] {
        let e = Vault::open_with(&bad, options()).unwrap_err();
        assert!(
            matches!(e.code(), "storage" | "invalid_argument"),
            "{bad:?}: {e:?}"
        );
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "unexpected files: {names:?}"); // sub, v.redb, v.redb.shm
}

fn c(s: &[u8]) -> (*const c_char, usize) {
    (s.as_ptr().cast(), s.len())
}

#[test]
fn the_c_abi_refuses_deep_json_invalid_utf8_and_nul_without_a_panic() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    f.vault.close().unwrap();
    let p = f.path.to_str().unwrap().as_bytes();
    let mut v = ptr::null_mut();
    // SAFETY: every pointer/length pair below describes a live buffer; out-params are
    // valid; every returned string is freed with kl_string_free.
    unsafe {
        let (pp, pl) = c(p);
        assert_eq!(
            kl_vault_open(pp, pl, ptr::null(), 0, &mut v),
            kl_status::KL_OK
        );
        let deep = format!(r#"{{"m": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        let bad_json: [&[u8]; 6] = [
            deep.as_bytes(),
            b"{\"m\": \xff\xfe}",
            b"{\"m\": 1}\0{\"x\": 2}",
            b"[1, 2]",
            b"{\"m\": 1e999999}",
            b"{",
        ];
        for json in bad_json {
            let mut out = ptr::null_mut();
            let (id, il) = c(b"deep");
            let (j, jl) = c(json);
            let s = kl_create_account(v, id, il, 1, j, jl, &mut out);
            assert!(
                s == kl_status::KL_INVALID_ARGUMENT,
                "{:?} → {s:?}",
                String::from_utf8_lossy(&json[..json.len().min(40)])
            );
            assert!(out.is_null());
            let spec = format!(
                r#"{{"account_id": "acct_42", "name": "k", "scopes": ["x"], "metadata": {}}}"#,
                String::from_utf8_lossy(json)
            );
            let (sp, sl) = c(spec.as_bytes());
            let (mut tok, mut info) = (ptr::null_mut(), ptr::null_mut());
            let s = kl_create_key(v, sp, sl, &mut tok, &mut info);
            assert_eq!(s, kl_status::KL_INVALID_ARGUMENT);
            assert!(tok.is_null() && info.is_null());
        }
        // Deep options JSON for kl_vault_open.
        let mut v2 = ptr::null_mut();
        let (o, ol) = c(deep.as_bytes());
        assert_eq!(
            kl_vault_open(pp, pl, o, ol, &mut v2),
            kl_status::KL_INVALID_ARGUMENT
        );
        assert!(v2.is_null());
        // Invalid UTF-8 and NULs in a token, a method, a path, an idempotency key.
        let t = token.expose().as_bytes();
        let mut with_nul = t.to_vec();
        with_nul.insert(12, 0);
        let mut g: kl_grant = std::mem::zeroed();
        for (tok, m, path) in [
            (
                &b"\xff\xfe"[..],
                &b"POST"[..],
                &b"/api/v1/messaging/send"[..],
            ),
            (&with_nul[..], &b"POST"[..], &b"/api/v1/messaging/send"[..]),
            (t, &b"PO\xffST"[..], &b"/api/v1/messaging/send"[..]),
            (t, &b"POST"[..], &b"/api/v1/\xc3\x28/send"[..]),
            (t, &b"POST\0"[..], &b"/api/v1/messaging/send"[..]),
        ] {
            let (tp, tl) = c(tok);
            let (mp, ml) = c(m);
            let (pp2, pl2) = c(path);
            let s = kl_authorize(v, tp, tl, mp, ml, pp2, pl2, ptr::null(), &mut g);
            assert!(
                matches!(
                    s,
                    kl_status::KL_INVALID_API_KEY
                        | kl_status::KL_INVALID_ARGUMENT
                        | kl_status::KL_ROUTE_NOT_ALLOWED
                ),
                "{s:?}"
            );
        }
        kl_vault_free(v);
    }
    let v = Vault::open_with(&f.path, options()).unwrap();
    assert_eq!(
        v.balance("acct_42").unwrap().credits,
        10,
        "a refused call charged"
    );
    assert!(v.account("deep").is_err());
}
