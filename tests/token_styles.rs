//! Token styles: a `colon` key (`<key_id>:<secret>`) goes through the same checks,
//! hashing, redaction and rotation as a prefixed key, in the core and through the C ABI.
//! The HTTP gates' colon cases are in the shared table (`tests/gates/http_cases.json`).

mod common;

use std::ffi::{c_char, CStr};
use std::ptr;

use common::Fixture;
use keyledger::ffi::{
    kl_create_key, kl_looks_like_key, kl_secret_free, kl_status, kl_string_free, kl_vault,
    kl_vault_free, kl_vault_open,
};
use keyledger::{
    looks_like_key, redact, AuditQuery, AuthorizeOptions, Error, NewKey, Target, TokenStyle,
};

const SEND: Target<'static> = Target::Route {
    method: "POST",
    path: "/api/v1/messaging/send",
};

fn colon_key(f: &Fixture, credits: u64) -> (String, String) {
    f.vault.create_account("acct", credits, None).unwrap();
    common::seed_routes(&f.vault);
    let (token, info) = f
        .vault
        .create_key(NewKey::new("acct", "voice", ["sms:send"]).style(TokenStyle::Colon))
        .unwrap();
    assert_eq!(info.style, TokenStyle::Colon);
    assert_eq!(info.prefix, "");
    (token.expose().to_owned(), info.key_id)
}

#[test]
fn a_colon_key_is_its_key_id_a_colon_and_a_secret_and_is_granted_and_charged() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let (id, secret) = token.split_once(':').unwrap();
    assert_eq!(id, key_id);
    assert_eq!(secret.len(), keyledger::token::COLON_SECRET_LEN);
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(looks_like_key(&token));
    assert_eq!(redact(&token), format!("{key_id}:…"));

    let g = f
        .vault
        .authorize(&token, SEND, &AuthorizeOptions::default())
        .unwrap();
    assert_eq!(
        (g.key_id.as_str(), g.prefix.as_str()),
        (key_id.as_str(), "")
    );
    assert_eq!((g.charged, g.credits), (1, 9));
    // Again, from the verified cache.
    let g = f
        .vault
        .authorize(&token, SEND, &AuthorizeOptions::default())
        .unwrap();
    assert_eq!(g.credits, 8);
}

#[test]
fn a_wrong_colon_secret_is_refused_like_any_bad_key_and_audited_without_the_secret() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let last = token.chars().last().unwrap();
    let other = if last == 'a' { 'b' } else { 'a' };
    let wrong = format!("{}{other}", &token[..token.len() - 1]);
    assert!(
        looks_like_key(&wrong),
        "no checksum: the shape alone is checked"
    );
    let e = f
        .vault
        .authorize(&wrong, SEND, &AuthorizeOptions::default())
        .unwrap_err();
    assert_eq!(e, Error::InvalidApiKey);
    assert_eq!(f.vault.balance("acct").unwrap().credits, 10);
    let audit = f
        .vault
        .audit(&AuditQuery {
            key_id: Some(key_id.clone()),
            ..AuditQuery::default()
        })
        .unwrap();
    let text = serde_json::to_string(&audit).unwrap();
    assert!(text.contains("auth_refused"), "{text}");
    assert!(
        !text.contains(&token[9..]) && !text.contains(&wrong[9..]),
        "{text}"
    );
}

#[test]
fn a_token_of_the_other_style_never_authenticates_a_key() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let secret = &token[9..];
    // The same key id and secret dressed as a prefixed token (its checksum fails) and a
    // prefixed key's parts dressed as a colon token.
    for forged in [
        format!("kl_live_{key_id}_{secret}000000"),
        format!("kl_live_{key_id}_{secret}"),
    ] {
        assert_eq!(
            f.vault
                .authorize(&forged, SEND, &AuthorizeOptions::default())
                .unwrap_err(),
            Error::InvalidApiKey
        );
    }
    let (ptoken, pinfo) = f
        .vault
        .create_key(NewKey::new("acct", "prefixed", ["sms:send"]))
        .unwrap();
    assert_eq!(pinfo.style, TokenStyle::Prefixed);
    let p = keyledger::token::parse(ptoken.expose()).unwrap();
    let forged = format!("{}:{}", p.key_id, &p.secret[..40]);
    assert!(looks_like_key(&forged));
    assert_eq!(
        f.vault
            .authorize(&forged, SEND, &AuthorizeOptions::default())
            .unwrap_err(),
        Error::InvalidApiKey
    );
    assert_eq!(f.vault.balance("acct").unwrap().credits, 10);
}

#[test]
fn hostile_colon_shapes_are_refused_cleanly_and_change_nothing() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let secret = &token[9..];
    for bad in [
        format!(":{secret}"),
        format!("{key_id}:"),
        format!("{key_id}::{secret}"),
        format!("{token}:"),
        format!("{token}:{token}"),
        ":".repeat(5000),
        format!("{key_id}:{}", "A".repeat(100_000)),
        format!("{key_id}:{secret}\0"),
    ] {
        let e = f
            .vault
            .authorize(&bad, SEND, &AuthorizeOptions::default())
            .unwrap_err();
        assert_eq!(e, Error::InvalidApiKey);
        assert!(!e.to_string().contains(secret));
    }
    assert_eq!(f.vault.balance("acct").unwrap().credits, 10);
}

#[test]
fn rotating_a_colon_key_mints_a_colon_key() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let (new, info) = f.vault.rotate_key(&key_id, 0).unwrap();
    assert_eq!(info.style, TokenStyle::Colon);
    assert!(new.expose().starts_with(&format!("{}:", info.key_id)));
    f.vault
        .authorize(new.expose(), SEND, &AuthorizeOptions::default())
        .unwrap();
    assert_eq!(
        f.vault
            .authorize(&token, SEND, &AuthorizeOptions::default())
            .unwrap_err(),
        Error::ApiKeyExpired,
        "a rotation without grace ends the old key now"
    );
}

#[test]
fn a_colon_key_survives_reopening_the_vault() {
    let f = Fixture::new();
    let (token, key_id) = colon_key(&f, 10);
    let path = f.path.clone();
    let Fixture { vault, dir, .. } = f;
    vault.close().unwrap();
    let v = keyledger::Vault::open_with(&path, common::options()).unwrap();
    assert_eq!(v.key(&key_id).unwrap().style, TokenStyle::Colon);
    v.authorize(&token, SEND, &AuthorizeOptions::default())
        .unwrap();
    drop(dir);
}

#[test]
fn an_unknown_style_is_invalid_argument() {
    assert!(matches!(
        "Colon".parse::<TokenStyle>(),
        Err(Error::InvalidArgument(_))
    ));
}

fn take(p: *mut c_char) -> String {
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    unsafe { kl_string_free(p) };
    s
}

#[test]
fn the_c_abi_creates_a_colon_key_from_its_spec_and_refuses_an_unknown_style() {
    let f = Fixture::new();
    f.vault.create_account("acct", 5, None).unwrap();
    let path = f.path.to_str().unwrap().to_owned();
    let mut v: *mut kl_vault = ptr::null_mut();
    let st = unsafe { kl_vault_open(path.as_ptr().cast(), path.len(), ptr::null(), 0, &mut v) };
    assert_eq!(st, kl_status::KL_OK);
    let create = |spec: &str| {
        let (mut tok, mut json) = (ptr::null_mut(), ptr::null_mut());
        let st = unsafe { kl_create_key(v, spec.as_ptr().cast(), spec.len(), &mut tok, &mut json) };
        (st, tok, json)
    };
    let (st, tok, json) =
        create(r#"{"account_id":"acct","name":"c","scopes":["sms:send"],"style":"colon"}"#);
    assert_eq!(st, kl_status::KL_OK);
    let token = unsafe { CStr::from_ptr(tok) }.to_str().unwrap().to_owned();
    unsafe { kl_secret_free(tok) };
    let info: serde_json::Value = serde_json::from_str(&take(json)).unwrap();
    assert_eq!(info["style"], "colon");
    assert_eq!(info["prefix"], "");
    assert!(token.starts_with(&format!("{}:", info["key_id"].as_str().unwrap())));
    assert!(unsafe { kl_looks_like_key(token.as_ptr().cast(), token.len()) });

    let (st, tok, json) =
        create(r#"{"account_id":"acct","name":"c","scopes":["sms:send"],"style":"dots"}"#);
    assert_eq!(st, kl_status::KL_INVALID_ARGUMENT);
    assert!(tok.is_null() && json.is_null());
    assert_eq!(f.vault.list_keys(Some("acct")).unwrap().len(), 1);
    unsafe { kl_vault_free(v) };
}
