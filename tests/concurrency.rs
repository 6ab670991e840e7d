//! Threads and processes sharing one vault file: no overspend, no lost debit, and every
//! change committed anywhere is seen by the very next call everywhere.
//!
//! Child processes are the child-process binary (`tests/children/concurrency.rs`) run on
//! one `concurrency::…` entry point.

mod common;

use std::sync::Arc;

use common::workloads::spend_until_refused;
use common::{options, reported, run_child, Fixture};
use keyledger::{AuthorizeOptions, CacheMode, Error, NewKey, Target, Vault};

#[test]
fn eight_threads_spend_exactly_the_balance() {
    const N: u64 = 400;
    let f = Fixture::new();
    f.vault.create_account("a", N, None).unwrap();
    let (t, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let v = Arc::new(f.vault);
    let token = Arc::new(t.expose().to_string());
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let v = v.clone();
            let token = token.clone();
            std::thread::spawn(move || spend_until_refused(&v, &token).0)
        })
        .collect();
    let granted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(granted, N);
    assert_eq!(v.balance("a").unwrap().credits, 0);
    // Group commit: far fewer commits than debits.
    assert!(v.stats().commits < N + 20, "commits {}", v.stats().commits);
}

#[test]
fn four_processes_spend_exactly_the_balance() {
    const N: u64 = 600;
    let f = Fixture::new();
    f.vault.create_account("a", N, None).unwrap();
    let (t, _) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let env = [
        ("KL_PATH", f.path.display().to_string()),
        ("KL_TOKEN", t.expose().to_string()),
    ];
    let children: Vec<_> = (0..4)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run_child("concurrency::spend", &env))
        })
        .collect();
    let mut total = 0;
    for c in children {
        total += reported(&c.join().unwrap(), "GRANTED");
    }
    assert_eq!(total, N, "processes overspent or lost debits");
    assert_eq!(f.vault.balance("a").unwrap().credits, 0);
}

#[test]
fn a_change_in_another_process_is_seen_by_the_next_call_with_a_warm_cache() {
    type Check = fn(keyledger::Result<keyledger::Grant>);
    let cases: [(&str, Check); 5] = [
        ("revoke", |r| {
            assert_eq!(r.unwrap_err(), Error::InvalidApiKey)
        }),
        ("disable", |r| {
            assert_eq!(r.unwrap_err(), Error::ApiKeyInactive)
        }),
        ("scopes", |r| {
            assert_eq!(
                r.unwrap_err(),
                Error::MissingScope {
                    required: "x".into()
                }
            )
        }),
        ("debit", |r| assert_eq!(r.unwrap().credits, 3)),
        ("route", |r| {
            assert_eq!(r.unwrap_err(), Error::RouteNotAllowed)
        }),
    ];
    for (change, check) in cases {
        let f = Fixture::new();
        assert_eq!(f.vault.cache_mode(), CacheMode::Shared);
        f.vault.create_account("a", 10, None).unwrap();
        f.vault.add_route("GET", "/r", "x", 0).unwrap();
        let (t, info) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
        let call = || {
            f.vault.authorize(
                t.expose(),
                Target::route("GET", "/r"),
                &AuthorizeOptions::default(),
            )
        };
        // Warm every cache: key, digest, balance, routes.
        call().unwrap();
        let reads = f.vault.stats().read_txns;
        call().unwrap();
        assert_eq!(f.vault.stats().read_txns, reads, "cache was not warm");
        run_child(
            "concurrency::change",
            &[
                ("KL_PATH", f.path.display().to_string()),
                ("KL_KEY", info.key_id.clone()),
                ("KL_CHANGE", change.to_string()),
            ],
        );
        check(call());
    }
}

#[test]
fn garbage_or_truncated_sidecar_is_rebuilt_and_never_trusted() {
    for damage in ["garbage", "truncated", "empty"] {
        let f = Fixture::new();
        f.vault.create_account("a", 10, None).unwrap();
        let (t, info) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
        f.vault.close().unwrap();
        let shm = f.path.with_extension("redb.shm");
        let len = std::fs::metadata(&shm).unwrap().len() as usize;
        let bytes: Vec<u8> = match damage {
            "garbage" => (0..len).map(|i| (i * 7 + 3) as u8).collect(),
            "truncated" => std::fs::read(&shm).unwrap()[..len / 3].to_vec(),
            _ => Vec::new(),
        };
        std::fs::write(&shm, bytes).unwrap();
        let v = Vault::open_with(&f.path, options()).unwrap();
        assert_eq!(v.cache_mode(), CacheMode::Shared, "{damage}");
        assert!(v
            .authorize(t.expose(), Target::scope("x"), &AuthorizeOptions::default())
            .is_ok());
        v.revoke_key(&info.key_id).unwrap();
        assert_eq!(
            v.authorize(t.expose(), Target::scope("x"), &AuthorizeOptions::default())
                .unwrap_err(),
            Error::InvalidApiKey,
            "{damage}"
        );
    }
}

#[test]
fn a_sidecar_that_cannot_be_created_falls_back_to_reading_the_store() {
    let f = Fixture::new();
    f.vault.create_account("a", 10, None).unwrap();
    let (t, info) = f.vault.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    f.vault.close().unwrap();
    // A directory where the sidecar should be: it cannot be mapped.
    let shm = f.path.with_extension("redb.shm");
    std::fs::remove_file(&shm).unwrap();
    std::fs::create_dir(&shm).unwrap();
    let v = Vault::open_with(&f.path, options()).unwrap();
    assert_eq!(v.cache_mode(), CacheMode::Disabled);
    let ok = || v.authorize(t.expose(), Target::scope("x"), &AuthorizeOptions::default());
    ok().unwrap();
    let runs = v.stats().argon2_runs;
    ok().unwrap();
    assert_eq!(
        v.stats().argon2_runs,
        runs,
        "digests are cached even without the sidecar"
    );
    v.revoke_key(&info.key_id).unwrap();
    assert_eq!(ok().unwrap_err(), Error::InvalidApiKey);
}

#[test]
fn a_vault_used_in_a_forked_child_refuses_clearly() {
    let (f, token, _) = Fixture::seeded(10, &["sms:send"]);
    // SAFETY: the child only calls into the vault (which detects the fork and refuses
    // before touching locks or the file) and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let r = f.vault.authorize(
            token.expose(),
            Target::scope("sms:send"),
            &AuthorizeOptions::default(),
        );
        let code = match r {
            Err(Error::VaultClosed(msg)) if msg.contains("fork") => 0,
            _ => 1,
        };
        // SAFETY: terminate the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child did not see a clear fork error"
    );
    // The parent is unaffected.
    assert!(f
        .vault
        .authorize(
            token.expose(),
            Target::scope("sms:send"),
            &AuthorizeOptions::default()
        )
        .is_ok());
}
