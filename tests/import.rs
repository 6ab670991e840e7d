//! Imported keys (djangorestframework-api-key, Unkey): found by their derived id, verified
//! against the imported hash, re-hashed to argon2id on their first success, refused when
//! wrong, revoked, disabled or expired; imports are idempotent — against a real vault file.

mod common;

use common::{options, Fixture, T0};
use keyledger::legacy::{drf_hash, unkey_hash, DRF_PREFIX, UNKEY_PREFIX};
use keyledger::{AuthorizeOptions, ImportedAccount, ImportedKey, RateLimit, Target, Vault};
use sha2::{Digest, Sha512};

const SCOPE: Target<'static> = Target::Scope("sms:send");

fn none() -> AuthorizeOptions<'static> {
    AuthorizeOptions::default()
}

/// A drf-api-key key as its `KeyGenerator` makes it: `<prefix>.<secret>` and
/// `sha512$$hex(sha512(token))`.
fn drf(prefix: &str, secret: &str) -> (String, String) {
    let token = format!("{prefix}.{secret}");
    let hashed = format!("sha512$${}", hex::encode(Sha512::digest(token.as_bytes())));
    (token, hashed)
}

fn drf_key(prefix: &str, hashed: &str, account: &str) -> ImportedKey {
    ImportedKey {
        hash: drf_hash(prefix, hashed).unwrap(),
        source_id: prefix.to_string(),
        account_id: account.to_string(),
        name: format!("drf {prefix}"),
        scopes: vec!["sms:send".into()],
        created_at: Some(T0 - 1000),
        expires_at: None,
        revoked: false,
        disabled: false,
        metadata: None,
        ratelimits: Vec::new(),
    }
}

fn account(id: &str, credits: u64) -> ImportedAccount {
    ImportedAccount {
        id: id.to_string(),
        credits,
        metadata: None,
    }
}

#[test]
fn a_drf_key_authorizes_with_its_token_and_is_rehashed_once_on_first_success() {
    let f = Fixture::new();
    let (token, hashed) = drf("Ab3dEf9h", "0123456789abcdefghijABCDEFGHIJxy");
    let report = f
        .vault
        .import_keys(
            "drf-api-key",
            &[account("cust", 5)],
            &[drf_key("Ab3dEf9h", &hashed, "cust")],
        )
        .unwrap();
    assert_eq!((report.accounts_created, report.keys_imported), (1, 1));
    let key_id = drf_hash("Ab3dEf9h", &hashed).unwrap().key_id;
    assert_eq!(
        f.vault.imported_pending(None).unwrap(),
        vec![key_id.clone()]
    );

    let g = f
        .vault
        .authorize(
            &token,
            SCOPE,
            &AuthorizeOptions {
                cost: Some(1),
                ..none()
            },
        )
        .unwrap();
    assert_eq!(g.key_id, key_id);
    assert_eq!(g.prefix, DRF_PREFIX);
    assert_eq!(g.account_id, "cust");
    assert_eq!(g.credits, 4);
    // Re-hashed to argon2id: the imported hash is gone.
    assert!(f.vault.imported_pending(None).unwrap().is_empty());

    // A fresh handle (nothing cached) verifies the token against the argon2id hash.
    let other = Vault::open_with(&f.path, options()).unwrap();
    assert_eq!(
        other.authorize(&token, SCOPE, &none()).unwrap().key_id,
        key_id
    );
    // A wrong secret with the same prefix is refused, on both handles.
    let (wrong, _) = drf("Ab3dEf9h", "0123456789abcdefghijABCDEFGHIJxz");
    for v in [&f.vault, &other] {
        let e = v.authorize(&wrong, SCOPE, &none()).unwrap_err();
        assert_eq!((e.status(), e.code()), (401, "invalid_api_key"));
    }
}

#[test]
fn a_wrong_drf_secret_is_refused_and_leaves_the_imported_hash() {
    let f = Fixture::new();
    let (_, hashed) = drf("Zz9yXw8v", "abcdefghijabcdefghijabcdefghij12");
    f.vault
        .import_keys(
            "drf-api-key",
            &[account("c", 1)],
            &[drf_key("Zz9yXw8v", &hashed, "c")],
        )
        .unwrap();
    let (wrong, _) = drf("Zz9yXw8v", "abcdefghijabcdefghijabcdefghij13");
    let e = f.vault.authorize(&wrong, SCOPE, &none()).unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "invalid_api_key"));
    assert_eq!(f.vault.imported_pending(None).unwrap().len(), 1);
    // An unknown prefix is refused too.
    let (unknown, _) = drf("Qq1wEe2r", "abcdefghijabcdefghijabcdefghij12");
    assert_eq!(
        f.vault
            .authorize(&unknown, SCOPE, &none())
            .unwrap_err()
            .status(),
        401
    );
}

#[test]
fn revoked_disabled_and_expired_imports_are_refused_with_their_codes() {
    let f = Fixture::new();
    let (t_rev, h_rev) = drf("Rev00001", "abcdefghijabcdefghijabcdefghij01");
    let (t_dis, h_dis) = drf("Dis00001", "abcdefghijabcdefghijabcdefghij02");
    let (t_exp, h_exp) = drf("Exp00001", "abcdefghijabcdefghijabcdefghij03");
    let mut rev = drf_key("Rev00001", &h_rev, "c");
    rev.revoked = true;
    let mut dis = drf_key("Dis00001", &h_dis, "c");
    dis.disabled = true;
    let mut exp = drf_key("Exp00001", &h_exp, "c");
    exp.expires_at = Some(T0 - 1);
    f.vault
        .import_keys("drf-api-key", &[account("c", 10)], &[rev, dis, exp])
        .unwrap();
    let code = |t: &str| {
        let e = f.vault.authorize(t, SCOPE, &none()).unwrap_err();
        (e.status(), e.code())
    };
    assert_eq!(code(&t_rev), (401, "invalid_api_key"));
    assert_eq!(code(&t_dis).1, "api_key_inactive");
    assert_eq!(code(&t_exp).1, "api_key_expired");
}

#[test]
fn an_import_run_twice_changes_nothing_the_second_time() {
    let f = Fixture::new();
    let (token, hashed) = drf("Tw1ce000", "abcdefghijabcdefghijabcdefghij99");
    let keys = [drf_key("Tw1ce000", &hashed, "c")];
    let accounts = [account("c", 7)];
    f.vault
        .import_keys("drf-api-key", &accounts, &keys)
        .unwrap();
    f.vault
        .authorize(
            &token,
            SCOPE,
            &AuthorizeOptions {
                cost: Some(2),
                ..none()
            },
        )
        .unwrap();
    let again = f
        .vault
        .import_keys("drf-api-key", &accounts, &keys)
        .unwrap();
    assert_eq!(
        (
            again.accounts_created,
            again.accounts_existing,
            again.keys_imported,
            again.keys_unchanged
        ),
        (0, 1, 0, 1)
    );
    // Credits not added again; the re-hashed key kept its new hash.
    assert_eq!(f.vault.balance("c").unwrap().credits, 5);
    assert!(f.vault.imported_pending(None).unwrap().is_empty());
    assert!(f.vault.authorize(&token, SCOPE, &none()).is_ok());
}

#[test]
fn an_import_with_a_bad_key_changes_nothing() {
    let f = Fixture::new();
    let (_, good) = drf("Good0001", "abcdefghijabcdefghijabcdefghij11");
    let (_, other) = drf("Good0002", "abcdefghijabcdefghijabcdefghij12");
    let mut bad = drf_key("Good0002", &other, "c");
    bad.account_id = "nobody".into();
    let e = f
        .vault
        .import_keys(
            "drf-api-key",
            &[account("c", 3)],
            &[drf_key("Good0001", &good, "c"), bad],
        )
        .unwrap_err();
    assert_eq!(e.code(), "not_found");
    assert!(f.vault.list_accounts().unwrap().is_empty());
    assert!(f.vault.list_keys(None).unwrap().is_empty());
    // Django password hashes are refused by name.
    let e = drf_hash("Good0001", "pbkdf2_sha256$600000$salt$hash").unwrap_err();
    assert_eq!(e.code(), "invalid_argument");
}

#[test]
fn an_unkey_key_authorizes_with_its_token_and_keeps_its_rate_limit() {
    let f = Fixture::new();
    // Unkey's published vector: base64(sha256(key)).
    let token = "3ZFeSzZi4bAHLaADiPyJy7BN";
    let hash = unkey_hash("Af0t8Qg3G7oLwGHlkgMYIeloGL2dNBfcLxOLp3IDROY=").unwrap();
    let key_id = hash.key_id.clone();
    let key = ImportedKey {
        hash,
        source_id: "key_1".into(),
        account_id: "user_1".into(),
        name: "unkey".into(),
        scopes: vec!["sms:send".into()],
        created_at: None,
        expires_at: None,
        revoked: false,
        disabled: false,
        metadata: Some(serde_json::json!({"plan": "pro"})),
        ratelimits: vec![RateLimit {
            name: "requests".into(),
            limit: 2,
            duration_ms: 60_000,
            auto_apply: true,
        }],
    };
    f.vault
        .import_keys("unkey", &[account("user_1", 100)], &[key])
        .unwrap();
    let g = f.vault.authorize(token, SCOPE, &none()).unwrap();
    assert_eq!(
        (g.key_id.as_str(), g.prefix.as_str()),
        (key_id.as_str(), UNKEY_PREFIX)
    );
    assert!(f.vault.imported_pending(None).unwrap().is_empty());
    f.vault.authorize(token, SCOPE, &none()).unwrap();
    let e = f.vault.authorize(token, SCOPE, &none()).unwrap_err();
    assert_eq!(e.status(), 429);
    let e = f
        .vault
        .authorize("3ZFeSzZi4bAHLaADiPyJy7BM", SCOPE, &none())
        .unwrap_err();
    assert_eq!(e.status(), 401);
}

#[test]
fn native_tokens_never_match_imported_keys_and_legacy_shapes_are_recognized() {
    let (f, native, _) = Fixture::seeded(10, &["sms:send"]);
    assert!(f.vault.authorize(native.expose(), SCOPE, &none()).is_ok());
    let (token, _) = drf("Ab3dEf9h", "0123456789abcdefghijABCDEFGHIJxy");
    assert!(keyledger::looks_like_key(&token));
    assert_eq!(keyledger::redact(&token), "Ab3dEf9h.…");
    assert!(!keyledger::redact(&token).contains("0123"));
    // A native token whose checksum is broken by a typo stays a native refusal (unknown key).
    let mut typo = native.expose().to_string();
    typo.pop();
    typo.push('!');
    assert_eq!(
        f.vault
            .authorize(&typo, SCOPE, &none())
            .unwrap_err()
            .status(),
        401
    );
}

#[test]
fn rotating_an_imported_key_gives_a_native_successor() {
    let f = Fixture::new();
    let (token, hashed) = drf("Rot00001", "abcdefghijabcdefghijabcdefghij77");
    f.vault
        .import_keys(
            "drf-api-key",
            &[account("c", 1)],
            &[drf_key("Rot00001", &hashed, "c")],
        )
        .unwrap();
    let key_id = drf_hash("Rot00001", &hashed).unwrap().key_id;
    let (new, info) = f.vault.rotate_key(&key_id, 60_000).unwrap();
    assert_eq!(info.prefix, "drf");
    assert!(keyledger::token::parse(new.expose()).is_some());
    assert!(f.vault.authorize(new.expose(), SCOPE, &none()).is_ok());
    // The imported token works through the grace period.
    assert!(f.vault.authorize(&token, SCOPE, &none()).is_ok());
}
