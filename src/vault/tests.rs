use super::*;

/// Fault injection for `rekey`: fail before re-encrypting the secret with this index.
pub(super) static REKEY_FAIL_AFTER: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(usize::MAX);

fn vault(dir: &tempfile::TempDir) -> Vault {
    Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            argon2: Some(Argon2Params::INSECURE_FAST),
            ..VaultOptions::default()
        },
    )
    .unwrap()
}

fn signing_vault(dir: &tempfile::TempDir, master: &MasterKey) -> Vault {
    Vault::open_with(
        dir.path().join("v.redb"),
        VaultOptions {
            argon2: Some(Argon2Params::INSECURE_FAST),
            master_key: Some(master.clone()),
            ..VaultOptions::default()
        },
    )
    .unwrap()
}

fn rewrite_key(v: &Vault, key_id: &str, f: impl FnOnce(&mut KeyRecord)) {
    v.inner
        .write(|tx| {
            let mut rec = tx.key(key_id)?.unwrap();
            f(&mut rec);
            tx.put_key(&rec)
        })
        .unwrap();
}

#[test]
fn a_tampered_or_swapped_signing_secret_never_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let v = signing_vault(&dir, &master);
    v.create_account("a", 0, None).unwrap();
    let (_, k1) = v
        .create_key(NewKey::new("a", "k1", ["x"]).signing(true))
        .unwrap();
    let (_, k2) = v
        .create_key(NewKey::new("a", "k2", ["x"]).signing(true))
        .unwrap();
    // Flip one byte of k1's ciphertext.
    rewrite_key(&v, &k1.key_id, |r| {
        let s = r.signing_secret.as_mut().unwrap();
        let last = s.len() - 1;
        s[last] ^= 0x01;
    });
    assert!(matches!(
        v.reveal_signing_secret(&k1.key_id),
        Err(Error::Storage(_))
    ));
    // Copy k2's (valid) ciphertext onto k1: bound to k2's key_id, it does not open.
    let k2_blob = v
        .inner
        .read()
        .unwrap()
        .key(&k2.key_id)
        .unwrap()
        .unwrap()
        .signing_secret;
    rewrite_key(&v, &k1.key_id, |r| r.signing_secret = k2_blob.clone());
    assert!(matches!(
        v.reveal_signing_secret(&k1.key_id),
        Err(Error::Storage(_))
    ));
    // Truncated.
    rewrite_key(&v, &k1.key_id, |r| r.signing_secret = Some(vec![1, 2, 3]));
    assert!(matches!(
        v.reveal_signing_secret(&k1.key_id),
        Err(Error::Storage(_))
    ));
    assert!(v.reveal_signing_secret(&k2.key_id).is_ok());
}

#[test]
fn an_interrupted_rekey_leaves_the_old_master_key_working() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().unwrap();
    let v = signing_vault(&dir, &master);
    v.create_account("a", 0, None).unwrap();
    let mut secrets = Vec::new();
    for i in 0..3 {
        let (t, info) = v
            .create_key(NewKey::new("a", format!("k{i}"), ["x"]).signing(true))
            .unwrap();
        secrets.push((info.key_id, t.signing_secret().unwrap().to_string()));
    }
    tests::REKEY_FAIL_AFTER.store(1, Ordering::SeqCst);
    let r = v.rekey(MasterKey::generate().unwrap());
    tests::REKEY_FAIL_AFTER.store(usize::MAX, Ordering::SeqCst);
    assert!(matches!(r, Err(Error::Storage(_))));
    for (key_id, secret) in &secrets {
        assert_eq!(v.reveal_signing_secret(key_id).unwrap().as_str(), secret);
    }
    v.close().unwrap();
    drop(v);
    // The old key still matches the vault's check value.
    let v = signing_vault(&dir, &master);
    assert_eq!(
        v.reveal_signing_secret(&secrets[2].0).unwrap().as_str(),
        secrets[2].1
    );
}

/// A writer that dies between its two slot bumps (after its commit) leaves the slot
/// odd. Readers must then go to the store — never trust their cache — until the next
/// write to that slot makes it idle again.
#[test]
fn a_writer_killed_between_its_slot_bumps_leaves_readers_correct() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(&dir);
    v.create_account("a", 10, None).unwrap();
    let (t, info) = v.create_key(NewKey::new("a", "k", ["x"])).unwrap();
    let call = || v.authorize(t.expose(), Target::scope("x"), &AuthorizeOptions::default());
    call().unwrap();
    call().unwrap();

    let inner = &*v.inner;
    let sc = inner.cache.sidecar.as_ref().unwrap();
    let slot = sc.slot_of(SlotKind::Key, &info.key_id);
    {
        let guard = inner.store.read();
        let store = guard.as_ref().unwrap();
        let mut tx = store.write().unwrap();
        let mut rec = tx.key(&info.key_id).unwrap().unwrap();
        rec.disabled = true;
        tx.put_key(&rec).unwrap();
        // Commits, bumps the slot to odd and is "killed" before the second bump.
        tx.commit_and_die().unwrap();
    }
    assert!(!Sidecar::is_idle(sc.load(slot)));
    assert_eq!(call().unwrap_err(), Error::ApiKeyInactive);
    let reads = v.stats().read_txns;
    assert_eq!(call().unwrap_err(), Error::ApiKeyInactive);
    assert!(v.stats().read_txns > reads, "an odd slot was trusted");

    v.enable_key(&info.key_id).unwrap();
    assert!(Sidecar::is_idle(sc.load(slot)));
    call().unwrap();
    let reads = v.stats().read_txns;
    call().unwrap();
    assert_eq!(v.stats().read_txns, reads, "the cache did not recover");
}

#[test]
fn each_debit_in_a_batch_succeeds_or_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(&dir);
    v.create_account("a", 10, None).unwrap();
    // A batch with one request for an account that does not exist and one that
    // overdraws: each fails alone, neither moves the balance.
    let results = v.inner.run_debits(vec![
        DebitReq {
            account_id: "nobody".into(),
            cost: 1,
            idempotency: None,
            now: 0,
            grant: None,
            route: None,
        },
        DebitReq {
            account_id: "a".into(),
            cost: 11,
            idempotency: None,
            now: 0,
            grant: None,
            route: None,
        },
        DebitReq {
            account_id: "a".into(),
            cost: 4,
            idempotency: None,
            now: 0,
            grant: None,
            route: None,
        },
    ]);
    assert!(matches!(results[0], Err(Error::NotFound(_))));
    assert!(matches!(
        results[1],
        Err(Error::InsufficientCredits {
            credits: 10,
            required: 11
        })
    ));
    assert!(matches!(results[2], Ok(Debited { credits: 6, .. })));
    assert_eq!(v.balance("a").unwrap().credits, 6);
}
