//! Imported (legacy) keys: the token shapes and hashes of the services keyledger imports
//! keys from, so their customers' existing tokens keep working.
//!
//! Two sources are supported:
//!
//! - **djangorestframework-api-key** (its current `KeyGenerator`): a token is
//!   `<prefix>.<secret>`, the prefix 8 chars and the secret 32 chars of `[A-Za-z0-9]`
//!   (Django's `get_random_string`). The row stores the prefix (unique) and
//!   `hashed_key = "sha512$$" + hex(sha512(token))`: the SHA-512 of the *whole* token. Rows
//!   hashed by one of Django's password hashers (versions before 2.0 of the package, e.g.
//!   `pbkdf2_sha256$…`) are refused at import with a clear error: the package itself
//!   re-hashes them to `sha512$$` on their next successful check, so such rows become
//!   importable once used once under a current release.
//! - **Unkey**: the key is stored as `base64(sha256(token))` of the whole token (Unkey's
//!   `sha256_base64` hash variant). Unkey tokens have no fixed public part, so a key is
//!   found by its hash: the lookup id is derived from the SHA-256 of the presented token.
//!
//! # How an imported key is found and verified
//! Every imported key gets a keyledger key id (8 chars of `[a-z0-9]`, like a native key)
//! *derived* from what identifies it in the source: the drf-api-key prefix, or the SHA-256
//! of an Unkey token. `authorize` computes the same id from the presented token, so the
//! key is found with the same single lookup as a native key, and no extra index is stored.
//! Two imported keys whose derived ids collide cannot both be imported: the import refuses
//! the second with a clear error (about one chance in 5.6 million for two given keys, so
//! rare below some hundred thousand keys).
//!
//! The stored hash is tagged with its kind (`$drf-sha512$<hex>`, `$unkey-sha256$<hex>`)
//! and compared in constant time. On the first successful verification the key is re-hashed
//! to argon2id (of the whole token) in a write transaction that first checks the stored
//! hash is still the legacy one, so it happens once across processes; the legacy hash is
//! then gone.
//!
//! # Legacy shapes never weaken native tokens
//! `authorize` tries the legacy shapes only for a token that is not a well-formed native
//! token, and an imported key's `prefix` (`drf-api-key`, `unkey-import`) is never a valid
//! native prefix: a native token never matches an imported key, and an imported token never
//! matches a native key.

use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// The `prefix` of every key imported from djangorestframework-api-key (not a valid
/// native prefix, so no native token can name such a key).
pub const DRF_PREFIX: &str = "drf-api-key";
/// The `prefix` of every key imported from Unkey.
pub const UNKEY_PREFIX: &str = "unkey-import";

/// Length of a drf-api-key prefix (the public part of its token).
pub const DRF_PREFIX_LEN: usize = 8;
/// Length of a drf-api-key secret.
pub const DRF_SECRET_LEN: usize = 32;

/// Stored-hash tag of an imported drf-api-key hash.
const DRF_TAG: &str = "$drf-sha512$";
/// Stored-hash tag of an imported Unkey hash.
const UNKEY_TAG: &str = "$unkey-sha256$";

/// Longest Unkey token looked at (Unkey's own keys are far shorter).
const MAX_UNKEY_TOKEN_LEN: usize = 256;

/// The kind of an imported key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegacyKind {
    /// djangorestframework-api-key.
    DrfApiKey,
    /// Unkey.
    Unkey,
}

/// A presented token in an imported shape: the key id to look up and the prefix the key
/// must have. The whole token is what its stored hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LegacyToken {
    pub kind: LegacyKind,
    pub key_id: String,
    pub prefix: &'static str,
}

/// Whether `b` is a char of Django's `get_random_string` alphabet.
fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Splits a drf-api-key token into (prefix, secret) if it has the current shape.
fn split_drf(token: &str) -> Option<(&str, &str)> {
    let (prefix, secret) = token.split_once('.')?;
    (prefix.len() == DRF_PREFIX_LEN
        && secret.len() == DRF_SECRET_LEN
        && prefix.bytes().all(is_alnum)
        && secret.bytes().all(is_alnum))
    .then_some((prefix, secret))
}

/// Whether `token` has the shape of an Unkey key: `[<prefix>_]<random>`, printable ASCII
/// without spaces or `.`, 16–256 chars.
fn is_unkey_shape(token: &str) -> bool {
    (16..=MAX_UNKEY_TOKEN_LEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The imported shape of `token`, if any: drf-api-key's `<prefix>.<secret>` first, then
/// Unkey's. Called only for tokens that are not native keyledger tokens.
pub(crate) fn parse(token: &str) -> Option<LegacyToken> {
    if let Some((prefix, _)) = split_drf(token) {
        return Some(LegacyToken {
            kind: LegacyKind::DrfApiKey,
            key_id: drf_key_id(prefix),
            prefix: DRF_PREFIX,
        });
    }
    // A native token with a malformed secret (a typo) stays a native refusal.
    if is_unkey_shape(token) && crate::token::redact(token) == "…" {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        return Some(LegacyToken {
            kind: LegacyKind::Unkey,
            key_id: derive_key_id(b"unkey", &digest),
            prefix: UNKEY_PREFIX,
        });
    }
    None
}

/// Whether `token` has drf-api-key's token shape (`<8 alnum>.<32 alnum>`). Unkey tokens
/// have no recognizable shape of their own (any prefix, any length), so they are not
/// recognized here.
pub(crate) fn looks_like_drf(token: &str) -> bool {
    split_drf(token).is_some()
}

/// What logs show for a drf-api-key token: `<prefix>.…`; `None` for other shapes.
pub(crate) fn redact_drf(token: &str) -> Option<String> {
    let (prefix, secret) = token.split_once('.')?;
    (prefix.len() == DRF_PREFIX_LEN && prefix.bytes().all(is_alnum) && !secret.is_empty())
        .then(|| format!("{prefix}.…"))
}

/// The native prefix a rotated imported key's successor gets (`drf`, `unkey`); any other
/// prefix is returned as it is.
pub(crate) fn native_prefix(prefix: &str) -> &str {
    match prefix {
        DRF_PREFIX => "drf",
        UNKEY_PREFIX => "unkey",
        other => other,
    }
}

/// The keyledger key id of a drf-api-key key, from its prefix.
pub fn drf_key_id(prefix: &str) -> String {
    derive_key_id(b"drf-api-key", prefix.as_bytes())
}

/// An 8-char `[a-z0-9]` key id derived from `material` (domain-separated SHA-256).
fn derive_key_id(domain: &[u8], material: &[u8]) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut h = Sha256::new();
    h.update(b"keyledger-legacy-key-id\0");
    h.update(domain);
    h.update(b"\0");
    h.update(material);
    let d = h.finalize();
    let mut n = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
    let mut out = [0u8; 8];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// An imported key's identity: its derived key id, its keyledger prefix and its stored
/// (tagged) hash.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyHash {
    /// The derived keyledger key id.
    pub key_id: String,
    /// [`DRF_PREFIX`] or [`UNKEY_PREFIX`].
    pub prefix: &'static str,
    /// The tagged hash stored as the key's secret hash until its first use.
    pub stored: String,
}

impl std::fmt::Debug for LegacyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyHash")
            .field("key_id", &self.key_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A drf-api-key row's identity, from its `prefix` and `hashed_key` columns.
///
/// Refused ([`Error::InvalidArgument`]): a prefix that is not 8 chars of `[A-Za-z0-9]`, and
/// a `hashed_key` that is not `sha512$$<128 lowercase hex>` (rows hashed by one of Django's
/// password hashers, from versions before 2.0, are named as such).
pub fn drf_hash(prefix: &str, hashed_key: &str) -> Result<LegacyHash> {
    if prefix.len() != DRF_PREFIX_LEN || !prefix.bytes().all(is_alnum) {
        return Err(Error::invalid(
            "drf-api-key prefix must be 8 characters of A-Z, a-z and 0-9",
        ));
    }
    let Some(hex) = hashed_key.strip_prefix("sha512$$") else {
        let algo = hashed_key.split('$').next().unwrap_or("");
        let algo: String = algo
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(32)
            .collect();
        return Err(Error::invalid(format!(
            "drf-api-key hash of prefix {prefix} uses {algo:?}, a Django password hasher \
             (djangorestframework-api-key before 2.0); only its current sha512 hashes can be \
             imported: authorize the key once through a current djangorestframework-api-key \
             (it re-hashes it) and import again"
        )));
    };
    if hex.len() != 128 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Error::invalid(format!(
            "drf-api-key hash of prefix {prefix} is not sha512$$ followed by 128 hex digits"
        )));
    }
    Ok(LegacyHash {
        key_id: drf_key_id(prefix),
        prefix: DRF_PREFIX,
        stored: format!("{DRF_TAG}{hex}"),
    })
}

/// An Unkey key's identity from its `sha256_base64` hash (standard base64 of the 32-byte
/// SHA-256 of the whole key).
pub fn unkey_hash(hash_base64: &str) -> Result<LegacyHash> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(hash_base64.trim())
        .map_err(|_| Error::invalid("Unkey hash is not standard base64"))?;
    let Ok(digest) = <[u8; 32]>::try_from(raw.as_slice()) else {
        return Err(Error::invalid(
            "Unkey hash is not the 32 bytes of a sha256 digest",
        ));
    };
    Ok(LegacyHash {
        key_id: derive_key_id(b"unkey", &digest),
        prefix: UNKEY_PREFIX,
        stored: format!("{UNKEY_TAG}{}", hex::encode(digest)),
    })
}

/// Whether `stored` is an imported (legacy) hash.
pub(crate) fn is_legacy_hash(stored: &str) -> bool {
    stored.starts_with(DRF_TAG) || stored.starts_with(UNKEY_TAG)
}

/// Verify `token` (the whole presented token) against an imported hash, in constant time.
/// `None` when `stored` is not an imported hash.
pub(crate) fn verify(token: &[u8], stored: &str) -> Option<bool> {
    if let Some(hex_hash) = stored.strip_prefix(DRF_TAG) {
        let computed = hex::encode(Sha512::digest(token));
        return Some(bool::from(computed.as_bytes().ct_eq(hex_hash.as_bytes())));
    }
    if let Some(hex_hash) = stored.strip_prefix(UNKEY_TAG) {
        let computed = hex::encode(Sha256::digest(token));
        return Some(bool::from(computed.as_bytes().ct_eq(hex_hash.as_bytes())));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRF_TOKEN: &str = "AbCd1234.abcdefghijABCDEFGHIJ0123456789ab";

    #[test]
    fn drf_token_verifies_against_its_sha512_and_not_a_changed_one() {
        let hex = hex::encode(Sha512::digest(DRF_TOKEN.as_bytes()));
        let h = drf_hash("AbCd1234", &format!("sha512$${hex}")).unwrap();
        let parsed = parse(DRF_TOKEN).unwrap();
        assert_eq!(parsed.kind, LegacyKind::DrfApiKey);
        assert_eq!(parsed.key_id, h.key_id);
        assert_eq!(verify(DRF_TOKEN.as_bytes(), &h.stored), Some(true));
        let wrong = DRF_TOKEN.replace("abcd", "abce");
        assert_eq!(verify(wrong.as_bytes(), &h.stored), Some(false));
        assert!(crate::token::is_valid_key_id(&h.key_id));
    }

    #[test]
    fn unkey_hash_matches_unkeys_published_vector() {
        // From Unkey's own hash tests: sha256 of the key, standard base64.
        let h = unkey_hash("Af0t8Qg3G7oLwGHlkgMYIeloGL2dNBfcLxOLp3IDROY=").unwrap();
        let token = "3ZFeSzZi4bAHLaADiPyJy7BN";
        let parsed = parse(token).unwrap();
        assert_eq!(parsed.kind, LegacyKind::Unkey);
        assert_eq!(parsed.key_id, h.key_id);
        assert_eq!(verify(token.as_bytes(), &h.stored), Some(true));
        assert_eq!(verify(b"3ZFeSzZi4bAHLaADiPyJy7BM", &h.stored), Some(false));
    }

    #[test]
    fn django_password_hashes_and_bad_input_are_refused() {
        let e = drf_hash("AbCd1234", "pbkdf2_sha256$260000$salt$hash").unwrap_err();
        assert!(e.to_string().contains("pbkdf2_sha256"), "{e}");
        assert!(drf_hash("short", "sha512$$00").is_err());
        assert!(drf_hash("AbCd1234", "sha512$$00").is_err());
        assert!(unkey_hash("not base64!").is_err());
        assert!(unkey_hash("AAAA").is_err());
    }

    #[test]
    fn native_hashes_are_not_legacy_and_prefixes_are_not_native() {
        assert_eq!(verify(b"x", "$argon2id$v=19$m=8,t=1,p=1$abc$def"), None);
        assert!(crate::token::validate_prefix(DRF_PREFIX).is_err());
        assert!(crate::token::validate_prefix(UNKEY_PREFIX).is_err());
        assert_eq!(redact_drf(DRF_TOKEN).as_deref(), Some("AbCd1234.…"));
        assert!(looks_like_drf(DRF_TOKEN));
        assert!(!looks_like_drf("AbCd1234.short"));
    }
}
