//! Secret hashing and the guards around it (SPEC §4).
//!
//! - [`Argon2Params`] and [`hash_secret`]/[`verify_secret`]: argon2id PHC strings at rest.
//! - [`DigestKey`]: the process-random BLAKE3 key of the verified-secret cache.
//! - [`Limiter`]: caps concurrent argon2 computations.
//! - [`Throttle`]: a token bucket of failed secret checks per key_id.

use std::collections::HashMap;
use std::time::Instant;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use parking_lot::{Condvar, Mutex};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// argon2id cost parameters. Stored in every hash, so they can change later: a verified
/// secret whose hash has other parameters is rehashed with the vault's current ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB (default 19 456).
    pub m_kib: u32,
    /// Iterations (default 2).
    pub t: u32,
    /// Parallelism (default 1).
    pub p: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Argon2Params {
            m_kib: 19_456,
            t: 2,
            p: 1,
        }
    }
}

impl Argon2Params {
    /// Cheap parameters for tests and examples only (8 KiB, 1 pass): never in production.
    pub const INSECURE_FAST: Argon2Params = Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    fn to_params(self) -> Result<Params> {
        Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|e| Error::invalid(format!("argon2 parameters: {e}")))
    }

    pub(crate) fn validate(self) -> Result<()> {
        self.to_params().map(|_| ())
    }

    pub(crate) fn encode(self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..4].copy_from_slice(&self.m_kib.to_le_bytes());
        out[4..8].copy_from_slice(&self.t.to_le_bytes());
        out[8..].copy_from_slice(&self.p.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Argon2Params> {
        let word = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
        };
        if bytes.len() != 12 {
            return None;
        }
        Some(Argon2Params {
            m_kib: word(0)?,
            t: word(4)?,
            p: word(8)?,
        })
    }
}

/// Hash a secret into an argon2id PHC string with a fresh random salt.
pub(crate) fn hash_secret(secret: &[u8], params: Argon2Params) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(Error::storage)?;
    let salt = SaltString::encode_b64(&salt).map_err(Error::storage)?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    let hash = argon
        .hash_password(secret, &salt)
        .map_err(|e| Error::Storage(format!("argon2 hashing failed: {e}")))?;
    Ok(hash.to_string())
}

/// The outcome of checking a secret against a stored hash.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verified {
    /// Wrong secret (or an unreadable hash: treated as wrong, never as a crash).
    No,
    /// Right secret, and the hash uses `current` parameters.
    Yes,
    /// Right secret, but the hash uses other parameters: rehash it.
    YesRehash,
}

/// Check a secret against a PHC string in constant time (argon2's own comparison).
pub(crate) fn verify_secret(secret: &[u8], phc: &str, current: Argon2Params) -> Verified {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified::No;
    };
    if Argon2::default().verify_password(secret, &parsed).is_err() {
        return Verified::No;
    }
    match Params::try_from(&parsed) {
        Ok(p)
            if p.m_cost() == current.m_kib
                && p.t_cost() == current.t
                && p.p_cost() == current.p =>
        {
            Verified::Yes
        }
        _ => Verified::YesRehash,
    }
}

/// A page of its own for 32 bytes of key material.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// 32 bytes of key material (the master key, the digest key) on a page of their own,
/// excluded from core dumps (`MADV_DONTDUMP`) and locked in RAM (`mlock`, so never
/// swapped) where the platform allows — both best effort: a failure (e.g. a low
/// `RLIMIT_MEMLOCK`) leaves the key usable. Zeroized on drop; never printed.
pub(crate) struct KeyBytes(Box<Page>);

impl KeyBytes {
    /// Take the bytes (the caller's copy should be a `Zeroizing` buffer).
    pub(crate) fn new(bytes: &[u8; 32]) -> KeyBytes {
        let mut page = Box::new(Page([0u8; 4096]));
        page.0[..32].copy_from_slice(bytes);
        let ptr = page.0.as_mut_ptr().cast::<libc::c_void>();
        // SAFETY: `ptr` is the start of a live, page-aligned allocation of 4096 bytes that
        // this value owns; madvise and mlock only change how the kernel treats the page.
        unsafe {
            libc::madvise(ptr, 4096, libc::MADV_DONTDUMP);
            libc::mlock(ptr, 4096);
        }
        KeyBytes(page)
    }

    pub(crate) fn random() -> Result<KeyBytes> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(Error::storage)?;
        Ok(KeyBytes::new(&key))
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        self.0 .0[..32]
            .try_into()
            .unwrap_or_else(|_| unreachable!("32 bytes"))
    }
}

impl Clone for KeyBytes {
    fn clone(&self) -> KeyBytes {
        KeyBytes::new(self.bytes())
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0 .0[..32].zeroize();
        let ptr = self.0 .0.as_mut_ptr().cast::<libc::c_void>();
        // SAFETY: unlocks the page locked in `new`, still owned by `self`.
        unsafe {
            libc::munlock(ptr, 4096);
        }
    }
}

/// A process-random key for BLAKE3 digests of verified secrets. Never leaves the process.
pub(crate) struct DigestKey(KeyBytes);

impl DigestKey {
    pub(crate) fn random() -> Result<DigestKey> {
        Ok(DigestKey(KeyBytes::random()?))
    }

    pub(crate) fn digest(&self, secret: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.0.bytes(), secret).as_bytes()
    }
}

/// Constant-time equality of two digests.
pub(crate) fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

/// A counting semaphore capping concurrent argon2 runs.
pub(crate) struct Limiter {
    free: Mutex<usize>,
    cv: Condvar,
}

/// A held argon2 permit; released on drop.
pub(crate) struct Permit<'a>(&'a Limiter);

impl Limiter {
    pub(crate) fn new(permits: usize) -> Limiter {
        Limiter {
            free: Mutex::new(permits.max(1)),
            cv: Condvar::new(),
        }
    }

    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock();
        while *free == 0 {
            self.cv.wait(&mut free);
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock() += 1;
        self.0.cv.notify_one();
    }
}

/// Failed-secret throttle settings: a token bucket per key_id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// Failed attempts allowed in a burst.
    pub burst: u32,
    /// Attempts regained per second.
    pub per_second: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            burst: 10,
            per_second: 1.0,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-key_id token buckets of failed secret checks. Bounded: at most `MAX_TRACKED`
/// key_ids; full (idle) buckets are forgotten first.
pub(crate) struct Throttle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

const MAX_TRACKED: usize = 100_000;

impl Throttle {
    pub(crate) fn new(config: ThrottleConfig) -> Throttle {
        Throttle {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.config.per_second).min(f64::from(self.config.burst));
        b.at = now;
    }

    /// May a (possibly failing) argon2 check run for this key_id now?
    pub(crate) fn allows(&self, key_id: &str) -> bool {
        let mut map = self.buckets.lock();
        match map.get_mut(key_id) {
            None => true,
            Some(b) => {
                self.refill(b, Instant::now());
                b.tokens >= 1.0
            }
        }
    }

    /// Record a failed check.
    pub(crate) fn failed(&self, key_id: &str) {
        let now = Instant::now();
        let burst = f64::from(self.config.burst);
        let mut map = self.buckets.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(key_id) {
            let per_second = self.config.per_second;
            map.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
                b.tokens + elapsed * per_second < burst
            });
            if map.len() >= MAX_TRACKED {
                return; // every tracked key is under attack: keep the existing buckets
            }
        }
        let b = map.entry(key_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        self.refill(b, now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_and_refuses_another() {
        let p = Argon2Params::INSECURE_FAST;
        let h = hash_secret(b"right", p).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(verify_secret(b"right", &h, p), Verified::Yes);
        assert_eq!(verify_secret(b"wrong", &h, p), Verified::No);
    }

    #[test]
    fn a_hash_with_older_parameters_asks_for_a_rehash() {
        let old = Argon2Params::INSECURE_FAST;
        let new = Argon2Params {
            m_kib: 16,
            t: 1,
            p: 1,
        };
        let h = hash_secret(b"s", old).unwrap();
        assert_eq!(verify_secret(b"s", &h, new), Verified::YesRehash);
    }

    #[test]
    fn garbage_hash_is_a_refusal_not_a_panic() {
        let p = Argon2Params::INSECURE_FAST;
        assert_eq!(verify_secret(b"s", "", p), Verified::No);
        assert_eq!(verify_secret(b"s", "$argon2id$garbage", p), Verified::No);
    }

    #[test]
    fn throttle_refuses_after_the_burst_and_only_for_that_key() {
        let t = Throttle::new(ThrottleConfig {
            burst: 3,
            per_second: 0.0,
        });
        for _ in 0..3 {
            assert!(t.allows("aaaaaaaa"));
            t.failed("aaaaaaaa");
        }
        assert!(!t.allows("aaaaaaaa"));
        assert!(t.allows("bbbbbbbb"));
    }

    #[test]
    fn argon2_params_round_trip_through_their_encoding() {
        let p = Argon2Params {
            m_kib: 19_456,
            t: 2,
            p: 1,
        };
        assert_eq!(Argon2Params::decode(&p.encode()), Some(p));
        assert_eq!(Argon2Params::decode(&[1, 2, 3]), None);
    }
}
