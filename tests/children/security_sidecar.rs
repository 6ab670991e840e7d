//! Workers of tests/security_sidecar.rs.

use keyledger::Vault;

use crate::base::{env, options};

/// Another worker process opens the vault at `KL_PATH` and revokes `KL_KEY`.
pub fn revoke() {
    let v = Vault::open_with(env("KL_PATH"), options()).unwrap();
    v.revoke_key(&env("KL_KEY")).unwrap();
    v.close().unwrap();
}
