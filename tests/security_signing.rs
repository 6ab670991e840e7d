//! Request signatures, format 2: framed fields, the query string covered, the body as its
//! SHA-256, format 1 refused, and the optional single-use cache shared by every process.

mod common;

use common::workloads::{open_signing as open, signed as opts};
use common::{run_child, TestClock, T0};
use hmac::{Hmac, Mac};
use keyledger::{sign_request, AuthorizeOptions, Error, MasterKey, NewKey, Target, Vault};
use sha2::Sha256;

/// The published test vector (README.md, docs/format.md): the same inputs must give the
/// same header in every host.
const VECTOR_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const VECTOR_T: i64 = 1_767_225_600;
const VECTOR_TARGET: &str = "/v1/send?to=%2B15551234&dry=1";
const VECTOR_BODY: &[u8] = b"{\"text\":\"hi\"}";
const VECTOR_HEADER: &str =
    "t=1767225600,v2=3d60d462cf2bf288d18fca6a42076fc1394ed7faccd63145e050c8396f5b6780";

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    master: MasterKey,
    clock: TestClock,
    vault: Vault,
    token: String,
    secret: String,
}

fn setup(single_use: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = common::location(&dir, "v.redb");
    let clock = TestClock::new();
    let master = MasterKey::generate().unwrap();
    let vault = open(&path, &master, &clock, single_use);
    vault.create_account("a", 100, None).unwrap();
    vault.add_route("POST", "/send", "sms:send", 1).unwrap();
    vault
        .add_route("POST", "/v1/items/*", "items:write", 1)
        .unwrap();
    let (t, _) = vault
        .create_key(NewKey::new("a", "signed", ["sms:send", "items:write"]).signing(true))
        .unwrap();
    let secret = t.signing_secret().unwrap().to_string();
    Setup {
        _dir: dir,
        path,
        master,
        clock,
        vault,
        token: t.expose().to_string(),
        secret,
    }
}

#[test]
fn the_published_test_vector_signs_as_documented() {
    let h = sign_request(VECTOR_SECRET, VECTOR_T, "post", VECTOR_TARGET, VECTOR_BODY);
    assert_eq!(h, VECTOR_HEADER);
    // A trailing `?` with nothing after it is not part of the signed target.
    assert_eq!(
        sign_request(VECTOR_SECRET, VECTOR_T, "POST", "/v1/send?", b""),
        sign_request(VECTOR_SECRET, VECTOR_T, "POST", "/v1/send", b"")
    );
}

/// The bug: the signed string did not cover the query string, so a signature for
/// `/send?to=A` was accepted for `/send?to=B` within the window.
#[test]
fn a_signature_for_one_query_string_is_refused_for_another() {
    let s = setup(false);
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/send?to=A", b"{}");
    let send = Target::route("POST", "/send");
    let e = s
        .vault
        .authorize(&s.token, send, &opts(&sig, b"{}", Some("to=B")))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    // Nor without a query, nor with the query carried in the path.
    let e = s
        .vault
        .authorize(&s.token, send, &opts(&sig, b"{}", None))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    let in_path = Target::route("POST", "/send?to=B");
    let e = s
        .vault
        .authorize(&s.token, in_path, &opts(&sig, b"{}", None))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    assert_eq!(
        s.vault.balance("a").unwrap().credits,
        100,
        "nothing charged"
    );
    // The request it was made for is granted, the query given either way.
    s.vault
        .authorize(&s.token, send, &opts(&sig, b"{}", Some("to=A")))
        .unwrap();
    s.vault
        .authorize(
            &s.token,
            Target::route("POST", "/send?to=A"),
            &opts(&sig, b"{}", None),
        )
        .unwrap();
}

/// The bug: `<t>.<METHOD>.<path>.<body>` had no framing, so a signature over
/// `POST /v1/items/a.json` with an empty body also verified `POST /v1/items/a` with the
/// body `json.`.
#[test]
fn a_signature_cannot_be_re_split_between_path_and_body() {
    let s = setup(false);
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/v1/items/a.json", b"");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST", "/v1/items/a"),
            &opts(&sig, b"json.", None),
        )
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    s.vault
        .authorize(
            &s.token,
            Target::route("POST", "/v1/items/a.json"),
            &opts(&sig, b"", None),
        )
        .unwrap();
}

fn v1_header(secret: &str, t: i64, method: &str, path: &str, body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.{method}.{path}.").as_bytes());
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Format 1 cannot be made safe (no framing, no query): a valid v1 signature is refused.
#[test]
fn a_format_1_signature_is_refused() {
    let s = setup(false);
    let v1 = v1_header(&s.secret, T0 / 1000, "POST", "/send", b"{}");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST", "/send"),
            &opts(&v1, b"{}", None),
        )
        .unwrap_err();
    assert_eq!((e.status(), e.code()), (401, "invalid_signature"));
}

#[test]
fn a_method_or_target_that_cannot_be_framed_is_refused() {
    let s = setup(false);
    let t = T0 / 1000;
    // A newline in the target would let the method/target boundary move.
    let sig = sign_request(&s.secret, t, "POST", "/send?a=1\nb", b"");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST", "/send"),
            &opts(&sig, b"", Some("a=1\nb")),
        )
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    let sig = sign_request(&s.secret, t, "POST\n/x", "/send", b"");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST\n/x", "/send"),
            &opts(&sig, b"", None),
        )
        .unwrap_err();
    assert_eq!(e.code(), "invalid_signature", "{e:?}");
}

#[test]
fn a_query_with_a_scope_or_twice_is_invalid_and_charges_nothing() {
    let s = setup(false);
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/send?to=A", b"");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST", "/send?to=A"),
            &opts(&sig, b"", Some("to=A")),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::scope("sms:send"),
            &opts(&sig, b"", Some("to=A")),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    let long = "q".repeat(8192);
    let e = s
        .vault
        .authorize(
            &s.token,
            Target::route("POST", "/send"),
            &opts(&sig, b"", Some(&long)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
    assert_eq!(s.vault.balance("a").unwrap().credits, 100);
}

/// Without the cache a signature may be replayed within its window (the documented
/// default); with `single_use_signatures` the second use is `invalid_signature`.
#[test]
fn a_replayed_signature_is_refused_with_single_use_signatures() {
    let s = setup(true);
    let send = Target::route("POST", "/send");
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/send?to=A", b"{}");
    s.vault
        .authorize(&s.token, send, &opts(&sig, b"{}", Some("to=A")))
        .unwrap();
    let e = s
        .vault
        .authorize(&s.token, send, &opts(&sig, b"{}", Some("to=A")))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    // The same signature with a second (junk) v2 value is the same signature.
    let padded = format!("{sig},v2={}", "00".repeat(32));
    let e = s
        .vault
        .authorize(&s.token, send, &opts(&padded, b"{}", Some("to=A")))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
    assert_eq!(s.vault.balance("a").unwrap().credits, 99, "charged once");
    // A fresh signature (another second) is accepted.
    let again = sign_request(&s.secret, T0 / 1000 + 1, "POST", "/send?to=A", b"{}");
    s.vault
        .authorize(&s.token, send, &opts(&again, b"{}", Some("to=A")))
        .unwrap();
    // A reopened handle still remembers: the record is in the vault, not the process.
    s.vault.close().unwrap();
    let v = open(&s.path, &s.master, &s.clock, true);
    let e = v
        .authorize(&s.token, send, &opts(&again, b"{}", Some("to=A")))
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
}

#[test]
fn without_single_use_signatures_a_signature_verifies_within_its_window() {
    let s = setup(false);
    let send = Target::route("POST", "/send");
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/send", b"{}");
    for _ in 0..2 {
        s.vault
            .authorize(&s.token, send, &opts(&sig, b"{}", None))
            .unwrap();
    }
}

/// Records older than the window are pruned as signed calls come: the table stays bounded
/// by the signatures of one window.
#[test]
fn used_signatures_older_than_the_window_are_forgotten() {
    let s = setup(true);
    let send = Target::route("POST", "/send");
    for i in 0..5 {
        let sig = sign_request(&s.secret, T0 / 1000 + i, "POST", "/send", b"");
        s.vault
            .authorize(&s.token, send, &opts(&sig, b"", None))
            .unwrap();
    }
    assert_eq!(s.vault.signatures_recorded().unwrap(), 5);
    let later = T0 + 400_000;
    let sig = sign_request(&s.secret, later / 1000, "POST", "/send", b"");
    s.vault
        .authorize(
            &s.token,
            send,
            &AuthorizeOptions {
                now: Some(later),
                ..opts(&sig, b"", None)
            },
        )
        .unwrap();
    assert_eq!(
        s.vault.signatures_recorded().unwrap(),
        1,
        "only the fresh one left"
    );
}

/// Another process opening the same vault refuses a signature this one accepted.
#[test]
fn a_signature_used_in_one_process_is_refused_in_another() {
    let s = setup(true);
    let sig = sign_request(&s.secret, T0 / 1000, "POST", "/send?to=A", b"{}");
    s.vault
        .authorize(
            &s.token,
            Target::route("POST", "/send"),
            &opts(&sig, b"{}", Some("to=A")),
        )
        .unwrap();
    run_child(
        "security_signing::replay_a_signature",
        &[
            ("KL_PATH", s.path.display().to_string()),
            ("KL_MASTER", s.master.to_base64().to_string()),
            ("KL_TOKEN", s.token.clone()),
            ("KL_SIG", sig),
        ],
    );
}
