//! Workers of tests/signing.rs and tests/security_signing.rs.

use keyledger::{Error, MasterKey, Target, Vault};

use crate::base::{env, options, TestClock};
use crate::workloads::{open_signing, signed};

/// Opens `KL_PATH` with the master key from `KEYLEDGER_MASTER_KEY` only and reveals the
/// signing secret of `KL_KEY`, which must be `KL_SECRET`.
pub fn open_with_the_master_key_from_the_environment() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    assert!(v.has_master_key());
    let revealed = v.reveal_signing_secret(&env("KL_KEY")).unwrap();
    assert_eq!(revealed.as_str(), env("KL_SECRET"));
}

/// Replays the signature `KL_SIG` (accepted once by the parent) with single-use
/// signatures on: it must be refused.
pub fn replay_a_signature() {
    let master = MasterKey::from_base64(&env("KL_MASTER")).unwrap();
    let clock = TestClock::new();
    let v = open_signing(std::path::Path::new(&env("KL_PATH")), &master, &clock, true);
    let sig = env("KL_SIG");
    let e = v
        .authorize(
            &env("KL_TOKEN"),
            Target::route("POST", "/send"),
            &signed(&sig, b"{}", Some("to=A")),
        )
        .unwrap_err();
    assert_eq!(e, Error::InvalidSignature);
}
