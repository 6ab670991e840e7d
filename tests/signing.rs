//! Request signing: the master key, signing secrets and request signatures.

mod common;

use common::{options, run_child, TestClock, T0};
use keyledger::{
    sign_request, AuditQuery, AuthorizeOptions, Error, MasterKey, NewKey, Target, Vault,
    VaultOptions,
};
use zeroize::Zeroizing;

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/v1/send",
};

fn open(
    path: &std::path::Path,
    master: Option<&MasterKey>,
    clock: &TestClock,
) -> keyledger::Result<Vault> {
    Vault::open_with(
        path,
        VaultOptions {
            master_key: master.cloned(),
            clock: Some(clock.clock()),
            ..options()
        },
    )
}

fn signed(sig: &str, body: &'static [u8], now: i64) -> AuthorizeOptions<'static> {
    // The signature string must outlive the options: leak it in tests only.
    let sig: &'static str = Box::leak(sig.to_string().into_boxed_str());
    AuthorizeOptions {
        signature: Some(sig),
        body: Some(body),
        now: Some(now),
        ..AuthorizeOptions::default()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: TestClock,
    master: MasterKey,
    vault: Vault,
    token: String,
    secret: String,
    key_id: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let clock = TestClock::new();
    let master = MasterKey::generate().unwrap();
    let vault = open(&path, Some(&master), &clock).unwrap();
    vault.create_account("a", 100, None).unwrap();
    vault.add_route("POST", "/v1/send", "sms:send", 1).unwrap();
    let (t, info) = vault
        .create_key(NewKey::new("a", "signed", ["sms:send"]).signing(true))
        .unwrap();
    assert!(info.signing);
    let secret = t.signing_secret().unwrap().to_string();
    Setup {
        _dir: dir,
        path,
        clock,
        master,
        vault,
        token: t.expose().to_string(),
        secret,
        key_id: info.key_id,
    }
}

#[test]
fn a_signing_key_needs_a_master_key() {
    let f = common::Fixture::new();
    f.vault.create_account("a", 0, None).unwrap();
    let e = f
        .vault
        .create_key(NewKey::new("a", "k", ["x"]).signing(true))
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[test]
fn a_signed_request_is_granted_and_an_unsigned_one_refused() {
    let s = setup();
    assert_eq!(s.secret.len(), 64);
    let t = T0 / 1000;
    let sig = sign_request(&s.secret, t, "POST", "/v1/send", b"{\"to\":\"+1555\"}");
    let g = s
        .vault
        .authorize(&s.token, SEND, &signed(&sig, b"{\"to\":\"+1555\"}", T0))
        .unwrap();
    assert_eq!(g.charged, 1);

    let e = s
        .vault
        .authorize(&s.token, SEND, &AuthorizeOptions::default())
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "invalid_signature"));
    // The same signature for another body or path is refused, and charges nothing.
    let e = s
        .vault
        .authorize(&s.token, SEND, &signed(&sig, b"{\"to\":\"+1666\"}", T0))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    let other = Target::route("POST", "/v1/other");
    assert_eq!(
        s.vault
            .authorize(&s.token, other, &signed(&sig, b"{\"to\":\"+1555\"}", T0))
            .unwrap_err(),
        Error::InvalidSignature
    );
    assert_eq!(s.vault.balance("a").unwrap().credits, 99);
}

#[test]
fn the_signature_window_is_300_seconds_each_way() {
    let s = setup();
    let t = T0 / 1000;
    let sig = sign_request(&s.secret, t, "POST", "/v1/send", b"");
    let at = |now| s.vault.authorize(&s.token, SEND, &signed(&sig, b"", now));
    assert!(at(T0 + 300_000).is_ok(), "exactly 300 s later");
    assert!(at(T0 - 300_000).is_ok(), "exactly 300 s earlier");
    assert_eq!(
        at(T0 + 301_000).unwrap_err(),
        Error::InvalidSignature,
        "a stale replay"
    );
    assert_eq!(
        at(T0 - 301_000).unwrap_err(),
        Error::InvalidSignature,
        "from the future"
    );
}

#[test]
fn the_secret_check_comes_before_the_signature_check() {
    let s = setup();
    let wrong = keyledger::token::mint("kl_live", &s.key_id).unwrap();
    assert_eq!(
        s.vault
            .authorize(&wrong, SEND, &AuthorizeOptions::default())
            .unwrap_err(),
        Error::InvalidApiKey
    );
}

#[test]
fn a_wrong_master_key_is_refused_at_open_and_none_still_serves_other_keys() {
    let s = setup();
    let (plain, _) = s
        .vault
        .create_key(NewKey::new("a", "plain", ["sms:send"]))
        .unwrap();
    s.vault.close().unwrap();
    let other = MasterKey::generate().unwrap();
    assert_eq!(
        open(&s.path, Some(&other), &s.clock).unwrap_err(),
        Error::WrongMasterKey
    );
    let v = open(&s.path, None, &s.clock).unwrap();
    assert!(!v.has_master_key());
    assert!(v
        .authorize(plain.expose(), SEND, &AuthorizeOptions::default())
        .is_ok());
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/v1/send", b"");
    assert_eq!(
        v.authorize(&s.token, SEND, &signed(&sig, b"", T0))
            .unwrap_err(),
        Error::WrongMasterKey
    );
    assert!(matches!(
        v.reveal_signing_secret(&s.key_id),
        Err(Error::WrongMasterKey)
    ));
}

#[test]
fn reveal_returns_the_secret_and_is_audited() {
    let s = setup();
    let revealed = s.vault.reveal_signing_secret(&s.key_id).unwrap();
    assert_eq!(revealed.as_str(), s.secret);
    let entries = s
        .vault
        .audit(&AuditQuery {
            action: Some("signing_secret_revealed".into()),
            ..AuditQuery::default()
        })
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].key_id.as_deref(), Some(s.key_id.as_str()));
    assert!(!format!("{entries:?}").contains(&s.secret));
}

#[test]
fn rekey_moves_every_secret_to_the_new_master_key() {
    let s = setup();
    let (t2, _) = s
        .vault
        .create_key(NewKey::new("a", "signed2", ["sms:send"]).signing(true))
        .unwrap();
    let new = MasterKey::generate().unwrap();
    assert_eq!(s.vault.rekey(new.clone()).unwrap(), 2);
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/v1/send", b"");
    assert!(s
        .vault
        .authorize(&s.token, SEND, &signed(&sig, b"", T0))
        .is_ok());
    s.vault.close().unwrap();
    assert_eq!(
        open(&s.path, Some(&s.master), &s.clock).unwrap_err(),
        Error::WrongMasterKey
    );
    let v = open(&s.path, Some(&new), &s.clock).unwrap();
    let sig2 = sign_request(
        t2.signing_secret().unwrap(),
        T0 / 1000,
        "POST",
        "/v1/send",
        b"",
    );
    assert!(v
        .authorize(t2.expose(), SEND, &signed(&sig2, b"", T0))
        .is_ok());
    assert_eq!(
        v.reveal_signing_secret(&s.key_id).unwrap().as_str(),
        s.secret
    );
}

#[test]
fn rotating_a_signing_key_gives_the_new_key_its_own_signing_secret() {
    let s = setup();
    let (t2, info) = s.vault.rotate_key(&s.key_id, 60_000).unwrap();
    assert!(info.signing);
    let secret2 = t2.signing_secret().unwrap();
    assert_ne!(secret2, s.secret);
    let sig = sign_request(secret2, T0 / 1000, "POST", "/v1/send", b"");
    assert!(s
        .vault
        .authorize(t2.expose(), SEND, &signed(&sig, b"", T0))
        .is_ok());
}

#[test]
fn a_passphrase_opens_the_vault_again_and_a_wrong_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let with = |p: &str| {
        Vault::open_with(
            &path,
            VaultOptions {
                master_passphrase: Some(Zeroizing::new(p.to_string())),
                ..options()
            },
        )
    };
    let v = with("correct horse battery staple").unwrap();
    v.create_account("a", 0, None).unwrap();
    let (t, info) = v
        .create_key(NewKey::new("a", "k", ["x"]).signing(true))
        .unwrap();
    v.close().unwrap();
    drop(v);
    assert_eq!(with("wrong horse").unwrap_err(), Error::WrongMasterKey);
    let v = with("correct horse battery staple").unwrap();
    assert_eq!(
        v.reveal_signing_secret(&info.key_id).unwrap().as_str(),
        t.signing_secret().unwrap()
    );
}

#[test]
fn the_master_key_can_come_from_keyledger_master_key() {
    let s = setup();
    s.vault.close().unwrap();
    run_child(
        "signing::open_with_the_master_key_from_the_environment",
        &[
            ("KL_PATH", s.path.display().to_string()),
            ("KL_KEY", s.key_id.clone()),
            ("KL_SECRET", s.secret.clone()),
            (keyledger::MASTER_KEY_ENV, s.master.to_base64().to_string()),
        ],
    );
}

#[test]
fn no_signing_secret_or_master_key_leaks_into_the_file_or_debug_output() {
    let s = setup();
    s.vault.close().unwrap();
    let bytes = std::fs::read(&s.path).unwrap();
    assert!(!bytes
        .windows(s.secret.len())
        .any(|w| w == s.secret.as_bytes()));
    let debug = format!("{:?} {:?}", s.master, s.vault);
    assert!(!debug.contains(s.master.to_base64().as_str()));
}
