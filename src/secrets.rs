//! Recoverable secrets: the master key, encrypted signing secrets, and request
//! signatures.
//!
//! - [`MasterKey`]: 32 bytes, zeroized on drop, never printed. Given at open, read from
//!   `KEYLEDGER_MASTER_KEY` (base64), or derived from a passphrase with argon2id (salt and
//!   parameters stored in the vault).
//! - Signing secrets are 32 random bytes shown to the user once as 64 lowercase hex
//!   characters; that *string* (its ASCII bytes) is the HMAC key a client signs with. At
//!   rest it is sealed with XChaCha20-Poly1305 under the master key: a random 24-byte
//!   nonce, and associated data binding the ciphertext to its key_id and field, so a
//!   ciphertext copied onto another key does not decrypt.
//! - Signatures (format 2): `t=<unix seconds>,v2=<hex HMAC-SHA256>` over
//!   `"keyledger-signature-v2\n" + t + "\n" + METHOD + "\n" + target + "\n" +
//!   hex(SHA-256(body))`, the target being the path with its query string as sent; checked
//!   in constant time within a window (default ±300 s). Format 1 (`v1=`) is refused.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{Argon2Params, KeyBytes};
use crate::error::{Error, Result};
use crate::model::Millis;

/// The environment variable the master key is read from (base64 of 32 bytes).
pub const MASTER_KEY_ENV: &str = "KEYLEDGER_MASTER_KEY";

const NONCE_LEN: usize = 24;
const CHECK_PLAINTEXT: &[u8] = b"keyledger master key check v1";
const CHECK_AAD: &[u8] = b"keyledger:v1:master_check";

/// The vault's master key: 32 bytes that encrypt signing secrets. Kept on a page of its
/// own that is excluded from core dumps and locked in RAM where allowed; zeroized on drop;
/// its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey(KeyBytes);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    /// Exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::invalid("a master key is exactly 32 bytes"))?;
        let arr = Zeroizing::new(arr);
        Ok(MasterKey(KeyBytes::new(&arr)))
    }

    /// Base64 (standard or URL-safe, padding optional) of 32 bytes.
    pub fn from_base64(text: &str) -> Result<MasterKey> {
        let text = text.trim();
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text) {
                let bytes = Zeroizing::new(bytes);
                return MasterKey::from_bytes(&bytes);
            }
        }
        Err(Error::invalid("a master key must be base64 of 32 bytes"))
    }

    /// From `KEYLEDGER_MASTER_KEY`, if set. A malformed value is `invalid_argument`.
    ///
    /// The copy of the value read into this process's heap is wiped once parsed. The
    /// variable itself stays in the environment: removing it is not thread-safe (another
    /// thread may be reading the environment) and would hide the key from worker processes
    /// spawned later; an operator who wants it gone unsets it after every vault is open,
    /// or passes the key another way (`master_key`, a passphrase).
    pub fn from_env() -> Result<Option<MasterKey>> {
        let value = match std::env::var_os(MASTER_KEY_ENV) {
            Some(v) => Zeroizing::new(v.into_encoded_bytes()),
            None => return Ok(None),
        };
        let malformed = || Error::invalid(format!("{MASTER_KEY_ENV} must be base64 of 32 bytes"));
        let Ok(text) = std::str::from_utf8(&value) else {
            return Err(malformed());
        };
        if text.trim().is_empty() {
            return Ok(None);
        }
        MasterKey::from_base64(text)
            .map(Some)
            .map_err(|_| malformed())
    }

    /// A fresh random key (e.g. for `keyledger master-key generate`).
    pub fn generate() -> Result<MasterKey> {
        Ok(MasterKey(KeyBytes::random()?))
    }

    /// Derive a key from a passphrase with argon2id (`salt` ≥ 16 bytes).
    pub fn from_passphrase(
        passphrase: &[u8],
        salt: &[u8],
        params: Argon2Params,
    ) -> Result<MasterKey> {
        if passphrase.is_empty() {
            return Err(Error::invalid("the passphrase is empty"));
        }
        let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
            .map_err(|e| Error::invalid(format!("argon2 parameters: {e}")))?;
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, out.as_mut())
            .map_err(|e| Error::invalid(format!("passphrase derivation failed: {e}")))?;
        Ok(MasterKey(KeyBytes::new(&out)))
    }

    /// The key as base64 (standard, padded), in a zeroizing string.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.bytes()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.bytes().into())
    }

    /// `nonce || ciphertext` of `plaintext`, bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(Error::storage)?;
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::Storage("encryption failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Open a sealed blob; `None` when it was sealed under another key, for other
    /// associated data, or has been tampered with or truncated.
    pub(crate) fn open(&self, aad: &[u8], blob: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if blob.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, ct) = blob.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// The encrypted check value stored in the vault.
    pub(crate) fn check_value(&self) -> Result<Vec<u8>> {
        self.seal(CHECK_AAD, CHECK_PLAINTEXT)
    }

    /// Whether `check` was made by this key.
    pub(crate) fn matches(&self, check: &[u8]) -> bool {
        self.open(CHECK_AAD, check)
            .is_some_and(|p| p.as_slice() == CHECK_PLAINTEXT)
    }
}

/// Associated data of a key's signing secret: binds the ciphertext to key and field.
pub(crate) fn signing_aad(key_id: &str) -> Vec<u8> {
    format!("keyledger:v1:key:{key_id}:signing_secret").into_bytes()
}

/// A fresh signing secret: 32 random bytes as 64 lowercase hex characters.
pub(crate) fn new_signing_secret() -> Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(raw.as_mut()).map_err(Error::storage)?;
    Ok(Zeroizing::new(hex::encode(raw.as_ref())))
}

/// Default signature window, each side of now.
pub const DEFAULT_SIGNATURE_WINDOW_MS: Millis = 300_000;

/// Longest signature header accepted.
const MAX_SIGNATURE: usize = 1024;

/// The tag every version-2 signed message starts with (domain separation).
const V2_TAG: &[u8] = b"keyledger-signature-v2\n";

/// The signature header for a request, format version 2: `t=<t>,v2=<hex>`, where the hex
/// is `HMAC-SHA256(secret, "keyledger-signature-v2\n" + t + "\n" + METHOD + "\n" +
/// target + "\n" + hex(SHA-256(body)))` with the secret's ASCII bytes as key. `target` is
/// the request target as sent: the path with its query string (`/send?to=A`); the `?` of
/// an empty query is dropped (`/send?` signs as `/send`). `METHOD` is upper-cased. What a client computes.
pub fn sign_request(
    signing_secret: &str,
    t_seconds: i64,
    method: &str,
    target: &str,
    body: &[u8],
) -> String {
    let mac = request_mac(signing_secret.as_bytes(), t_seconds, method, target, body);
    format!(
        "t={t_seconds},v2={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The target a signature covers: `path`, then `?query` when the query is not empty. A
/// path that carries its own query (`/send?to=A`) is taken as it is, but the `?` of an
/// empty query is dropped (`/send?` signs as `/send`; `/send??` keeps its query `?`).
pub(crate) fn signed_target<'a>(path: &'a str, query: Option<&str>) -> std::borrow::Cow<'a, str> {
    match query {
        Some(q) if !q.is_empty() => format!("{path}?{q}").into(),
        Some(_) => path.into(),
        // Only a `?` that starts an empty query is dropped: `/send??` has the query `?`.
        None => match path.find('?') {
            Some(i) if i + 1 == path.len() => path[..i].into(),
            _ => path.into(),
        },
    }
}

/// Whether a method and a target can be framed unambiguously: the method is an HTTP token
/// and the target has no whitespace or control bytes (a request line cannot carry them).
fn frameable(method: &str, target: &str) -> bool {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    !method.is_empty() && method.bytes().all(tchar) && target.bytes().all(|b| b > b' ' && b != 0x7f)
}

fn request_mac(secret: &[u8], t: i64, method: &str, target: &str, body: &[u8]) -> Hmac<Sha256> {
    let target = signed_target(target, None);
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(V2_TAG);
    m.update(t.to_string().as_bytes());
    m.update(b"\n");
    m.update(method.to_ascii_uppercase().as_bytes());
    m.update(b"\n");
    m.update(target.as_bytes());
    m.update(b"\n");
    m.update(hex::encode(Sha256::digest(body)).as_bytes());
    m
}

/// A signature that verified: its time (seconds) and the expected MAC, for the replay
/// cache (every valid header for one request shares them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Verified {
    pub t_seconds: i64,
    pub mac: [u8; 32],
}

/// Check a version-2 signature header in constant time. Any malformed, stale, future or
/// wrong signature is `None`, and so is a header with only `v1=` values (format 1 did not
/// frame its fields or cover the query string; it cannot be made safe). Several `v2=`
/// values may be given (any one may match); other schemes are ignored.
pub(crate) fn verify_request(
    signing_secret: &[u8],
    header: &str,
    now: Millis,
    window_ms: Millis,
    method: &str,
    target: &str,
    body: &[u8],
) -> Option<Verified> {
    if header.len() > MAX_SIGNATURE || !frameable(method, target) {
        return None;
    }
    let mut t: Option<i64> = None;
    let mut sigs: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "t" => {
                let v = v.trim();
                if t.is_some()
                    || v.is_empty()
                    || v.len() > 12
                    || !v.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                t = v.parse().ok();
            }
            "v2" => match hex::decode(v.trim()) {
                Ok(bytes) if bytes.len() == 32 => sigs.push(bytes),
                _ => return None,
            },
            _ => {} // unknown schemes (and v1) are ignored, as with Stripe-style headers
        }
    }
    let t = t?;
    if sigs.is_empty() {
        return None;
    }
    let t_ms = t.checked_mul(1000)?;
    if now.abs_diff(t_ms) > window_ms.unsigned_abs() {
        return None;
    }
    let mac = request_mac(signing_secret, t, method, target, body);
    let mut ok = false;
    for sig in &sigs {
        ok |= mac.clone().verify_slice(sig).is_ok();
    }
    ok.then(|| {
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        Verified {
            t_seconds: t,
            mac: out,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_its_key_id() {
        let k = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let blob = k.seal(&signing_aad("aaaaaaaa"), b"secret").unwrap();
        assert_eq!(
            k.open(&signing_aad("aaaaaaaa"), &blob).unwrap().as_slice(),
            b"secret"
        );
        assert!(
            k.open(&signing_aad("bbbbbbbb"), &blob).is_none(),
            "moved to another key"
        );
        assert!(
            other.open(&signing_aad("aaaaaaaa"), &blob).is_none(),
            "wrong master key"
        );
        for i in 0..blob.len() {
            let mut t = blob.clone();
            t[i] ^= 1;
            assert!(
                k.open(&signing_aad("aaaaaaaa"), &t).is_none(),
                "flip at {i}"
            );
        }
        assert!(k
            .open(&signing_aad("aaaaaaaa"), &blob[..blob.len() - 1])
            .is_none());
        assert!(k.open(&signing_aad("aaaaaaaa"), &[]).is_none());
    }

    #[test]
    fn the_check_value_recognises_its_key() {
        let k = MasterKey::generate().unwrap();
        let check = k.check_value().unwrap();
        assert!(k.matches(&check));
        assert!(!MasterKey::generate().unwrap().matches(&check));
    }

    #[test]
    fn master_keys_parse_from_base64_and_never_print() {
        let k = MasterKey::generate().unwrap();
        let b64 = k.to_base64();
        let back = MasterKey::from_base64(&b64).unwrap();
        assert_eq!(back.0.bytes(), k.0.bytes());
        assert_eq!(format!("{k:?}"), "MasterKey(…)");
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert!(MasterKey::from_base64("not base64!!").is_err());
        assert!(MasterKey::from_bytes(&[0; 31]).is_err());
    }

    #[test]
    fn a_passphrase_derives_the_same_key_with_the_same_salt_only() {
        let p = Argon2Params::INSECURE_FAST;
        let a = MasterKey::from_passphrase(b"correct horse", b"0123456789abcdef", p).unwrap();
        let b = MasterKey::from_passphrase(b"correct horse", b"0123456789abcdef", p).unwrap();
        let c = MasterKey::from_passphrase(b"correct horse", b"fedcba9876543210", p).unwrap();
        assert_eq!(a.0.bytes(), b.0.bytes());
        assert_ne!(a.0.bytes(), c.0.bytes());
    }

    const NOW: Millis = 1_795_392_000_000;

    #[test]
    fn the_signed_target_is_the_same_from_a_whole_target_or_a_path_and_query() {
        for (whole, path, query) in [
            ("/send?to=A", "/send", Some("to=A")),
            ("/send", "/send", None),
            ("/send?", "/send", Some("")),
            ("/send?", "/send", None),
            ("/send??", "/send", Some("?")),
            ("/send?a?b", "/send", Some("a?b")),
        ] {
            assert_eq!(
                signed_target(whole, None),
                signed_target(path, query),
                "{whole}"
            );
        }
    }

    #[test]
    fn a_signature_verifies_within_the_window_and_not_beyond() {
        let s = "ab".repeat(32);
        let t = NOW / 1000;
        let check = |header: &str, now: Millis| {
            verify_request(
                s.as_bytes(),
                header,
                now,
                DEFAULT_SIGNATURE_WINDOW_MS,
                "POST",
                "/v1/send",
                b"{}",
            )
            .is_some()
        };
        let h = sign_request(&s, t, "post", "/v1/send", b"{}");
        assert!(check(&h, NOW));
        assert!(check(&h, NOW + 300_000), "exactly 300 s later");
        assert!(check(&h, NOW - 300_000), "exactly 300 s earlier");
        assert!(!check(&h, NOW + 301_000), "301 s later");
        assert!(!check(&h, NOW - 301_000), "301 s earlier");
    }

    #[test]
    fn a_signature_for_another_request_or_malformed_is_refused() {
        let s = "cd".repeat(32);
        let t = NOW / 1000;
        let ok = |h: &str| {
            verify_request(
                s.as_bytes(),
                h,
                NOW,
                DEFAULT_SIGNATURE_WINDOW_MS,
                "POST",
                "/v1/send",
                b"{}",
            )
            .is_some()
        };
        assert!(!ok(&sign_request(&s, t, "POST", "/v1/other", b"{}")));
        assert!(!ok(&sign_request(&s, t, "GET", "/v1/send", b"{}")));
        assert!(!ok(&sign_request(&s, t, "POST", "/v1/send", b"{ }")));
        assert!(!ok(&sign_request(
            &"ef".repeat(32),
            t,
            "POST",
            "/v1/send",
            b"{}"
        )));
        let good = sign_request(&s, t, "POST", "/v1/send", b"{}");
        let sig = good.split("v2=").nth(1).unwrap();
        for bad in [
            "",
            "t=",
            "v2=",
            &format!("v2={sig}"),
            &format!("t={t},v1={sig}"),
            &format!("t={t}"),
            &format!("t=-{t},v2={sig}"),
            &format!("t={t},v2={}", &sig[..10]),
            &format!("t={t},v2=zz{}", &sig[2..]),
            &format!("t={t},t={t},v2={sig}"),
            &format!("t={t}0000000000000000,v2={sig}"),
            &"t=1,".repeat(500),
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        // A rolled secret: either of two v2 values may match.
        let two = format!("{good},v2={}", "00".repeat(32));
        assert!(ok(&two));
    }
}
