//! Secret hashing and the guards around it.
//!
//! - [`Argon2Params`] and [`hash_secret`]/[`verify_secret`]: argon2id PHC strings at rest.
//! - [`DigestKey`]: the process-random BLAKE3 key of the verified-secret cache.
//! - [`Limiter`]: caps concurrent argon2 computations, with a bounded queue.
//! - [`Throttle`]: a token bucket of failed secret checks per key_id.
//! - [`Budget`]: the process-wide token bucket of failed argon2 verifications.
//! - [`FailedSecrets`]: keyed digests of secrets recently proved wrong, refused without argon2.

use std::collections::{HashMap, HashSet};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use parking_lot::{Condvar, Mutex};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::model::Millis;

/// Whether this build accepts argon2 parameters below [`Argon2Params::meets_floor`]: only
/// builds with the `insecure-fast-argon2` feature (the project's own tests) do.
pub(crate) const ALLOW_WEAK_ARGON2: bool = cfg!(feature = "insecure-fast-argon2");

/// OWASP's argon2id configurations of equal strength (memory KiB, passes), p = 1.
const OWASP_FLOOR: [(u32, u32); 5] = [
    (47_104, 1),
    (19_456, 2),
    (12_288, 3),
    (9_216, 4),
    (7_168, 5),
];

/// argon2id cost parameters. Stored in every hash, so they can change later: a verified
/// secret whose hash has strictly weaker parameters than the vault's current ones is
/// rehashed with them (never towards weaker ones).
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

    /// Whether these parameters are at least one of OWASP's argon2id minimum
    /// configurations: m ≥ 47 104 KiB and t ≥ 1, or m ≥ 19 456 and t ≥ 2, or m ≥ 12 288 and
    /// t ≥ 3, or m ≥ 9 216 and t ≥ 4, or m ≥ 7 168 and t ≥ 5 (any p ≥ 1). A build without
    /// the `insecure-fast-argon2` feature refuses weaker ones for new hashes.
    pub fn meets_floor(self) -> bool {
        self.p >= 1
            && OWASP_FLOOR
                .iter()
                .any(|&(m, t)| self.m_kib >= m && self.t >= t)
    }

    /// Whether a hash made with `self` is strictly weaker than one made with `other`:
    /// `other` has at least as much memory and as many passes, and more of one of them.
    /// Only then is a verified secret rehashed (p alone does not change the cost).
    pub fn weaker_than(self, other: Argon2Params) -> bool {
        other.m_kib >= self.m_kib
            && other.t >= self.t
            && (other.m_kib > self.m_kib || other.t > self.t)
    }

    /// Valid for argon2, and not below the floor unless `allow_weak`.
    pub(crate) fn check(self, allow_weak: bool) -> Result<()> {
        self.to_params()?;
        if !allow_weak && !self.meets_floor() {
            return Err(Error::invalid(format!(
                "argon2 parameters m={} KiB, t={}, p={} are below the OWASP argon2id minimum \
                 (m ≥ 19456 KiB with t ≥ 2, or an equivalent: 47104/1, 12288/3, 9216/4, 7168/5); \
                 weaker ones are accepted only by builds with the insecure-fast-argon2 feature, for tests",
                self.m_kib, self.t, self.p
            )));
        }
        Ok(())
    }

    /// Valid for argon2 and, outside test builds, at or above the floor.
    pub(crate) fn validate(self) -> Result<()> {
        self.check(ALLOW_WEAK_ARGON2)
    }

    /// The parameters new hashes get when `self` is what the vault stores: below the floor
    /// (a vault made by a test build, or downgraded before the floor existed) a production
    /// build uses the defaults instead.
    pub(crate) fn effective(self) -> Argon2Params {
        if self.validate().is_ok() {
            self
        } else {
            Argon2Params::default()
        }
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
    params.validate()?;
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
    /// Right secret, but the hash uses strictly weaker parameters than `current`: rehash it.
    YesRehash,
}

/// Check a secret against a PHC string in constant time (argon2's own comparison).
pub(crate) fn verify_secret(secret: &[u8], phc: &str, current: Argon2Params) -> Verified {
    // An imported key's hash: verified as its source did, then re-hashed to argon2id.
    if let Some(ok) = crate::legacy::verify(secret, phc) {
        return if ok {
            Verified::YesRehash
        } else {
            Verified::No
        };
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Verified::No;
    };
    if Argon2::default().verify_password(secret, &parsed).is_err() {
        return Verified::No;
    }
    match Params::try_from(&parsed) {
        Ok(p) => {
            let stored = Argon2Params {
                m_kib: p.m_cost(),
                t: p.t_cost(),
                p: p.p_cost(),
            };
            if stored.weaker_than(current) {
                Verified::YesRehash
            } else {
                Verified::Yes
            }
        }
        // Unreadable parameters in a hash that verified: leave it as it is.
        Err(_) => Verified::Yes,
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

    /// The digest of a secret that failed against the hash `phc` (see [`FailedSecrets`]):
    /// domain-separated from [`DigestKey::digest`], and bound to the hash.
    pub(crate) fn failed_digest(&self, phc: &str, secret: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(self.0.bytes());
        h.update(b"keyledger:v1:failed_secret\0");
        h.update(&(phc.len() as u64).to_le_bytes());
        h.update(phc.as_bytes());
        h.update(secret);
        *h.finalize().as_bytes()
    }
}

/// Constant-time equality of two digests (compared as four 64-bit words: `subtle`'s
/// constant-time comparison costs per element, so words take an eighth of the bytes' time).
pub(crate) fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let words = |d: &[u8; 32]| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(w)
        })
    };
    bool::from(words(a)[..].ct_eq(&words(b)[..]))
}

/// A counting semaphore capping concurrent argon2 runs, with a bounded queue: the request
/// path never waits behind more than `max_waiting` others (it is refused instead).
pub(crate) struct Limiter {
    state: Mutex<LimiterState>,
    cv: Condvar,
    max_waiting: usize,
}

struct LimiterState {
    free: usize,
    waiting: usize,
}

/// A held argon2 permit; released on drop.
pub(crate) struct Permit<'a>(&'a Limiter);

impl Limiter {
    /// `permits` concurrent runs (at least 1); at most `max_waiting` callers of
    /// [`Limiter::try_acquire`] wait for one.
    pub(crate) fn new(permits: usize, max_waiting: usize) -> Limiter {
        Limiter {
            state: Mutex::new(LimiterState {
                free: permits.max(1),
                waiting: 0,
            }),
            cv: Condvar::new(),
            max_waiting,
        }
    }

    /// Wait for a permit, however long (management calls: an operator's own work).
    pub(crate) fn acquire(&self) -> Permit<'_> {
        let mut st = self.state.lock();
        st.waiting += 1;
        while st.free == 0 {
            self.cv.wait(&mut st);
        }
        st.waiting -= 1;
        st.free -= 1;
        Permit(self)
    }

    /// A permit, waiting only if fewer than `max_waiting` callers already wait; `None` at
    /// once when the queue is full (the request path: refuse rather than pile up).
    pub(crate) fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut st = self.state.lock();
        if st.free == 0 && st.waiting >= self.max_waiting {
            return None;
        }
        st.waiting += 1;
        while st.free == 0 {
            self.cv.wait(&mut st);
        }
        st.waiting -= 1;
        st.free -= 1;
        Some(Permit(self))
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().waiting
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.state.lock().free += 1;
        self.0.cv.notify_one();
    }
}

/// Failed-secret throttle settings: a token bucket per key_id, and the process-wide budget
/// of failed argon2 verifications.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThrottleConfig {
    /// Failed attempts a key_id may have in a burst before it may only use the upper half
    /// of the process budget (so one attacked key_id cannot starve every other).
    pub burst: u32,
    /// Attempts a key_id regains per second.
    pub per_second: f64,
    /// Failed argon2 verifications this process allows in a burst, over all key_ids
    /// (default 30, at least 1). When spent, a secret not yet verified is refused with
    /// `too_many_attempts` (429) and a `retry_after`, without argon2.
    pub budget_burst: u32,
    /// Failed verifications the process budget regains per second (default 3).
    pub budget_per_second: f64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            burst: 10,
            per_second: 1.0,
            budget_burst: 30,
            budget_per_second: 3.0,
        }
    }
}

impl ThrottleConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.per_second.is_finite() && self.per_second >= 0.0) {
            return Err(Error::invalid(
                "throttle.per_second must be a non-negative number",
            ));
        }
        if !(self.budget_per_second.is_finite() && self.budget_per_second >= 0.0) {
            return Err(Error::invalid(
                "throttle.budget_per_second must be a non-negative number",
            ));
        }
        if self.budget_burst == 0 {
            return Err(Error::invalid(
                "throttle.budget_burst must be at least 1: with 0 no secret could ever be verified",
            ));
        }
        Ok(())
    }
}

/// Milliseconds from `at` to `now`, 0 when the clock went back.
fn elapsed_ms(at: Millis, now: Millis) -> f64 {
    // i64 → f64 loses precision only beyond 2^53 ms (285 000 years): harmless here.
    now.saturating_sub(at).max(0) as f64
}

struct Bucket {
    tokens: f64,
    at: Millis,
}

impl Bucket {
    /// Add what `per_second` earned since `at`, up to `burst`. A clock that went back
    /// re-anchors the bucket instead of stalling it.
    fn refill(&mut self, now: Millis, per_second: f64, burst: f64) {
        let earned = elapsed_ms(self.at, now) * per_second / 1000.0;
        self.tokens = (self.tokens + earned).min(burst);
        self.at = now;
    }
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

    /// Has this key_id failed fewer than its burst (net of refills) by `now`?
    pub(crate) fn allows(&self, key_id: &str, now: Millis) -> bool {
        let mut map = self.buckets.lock();
        match map.get_mut(key_id) {
            None => true,
            Some(b) => {
                b.refill(now, self.config.per_second, f64::from(self.config.burst));
                b.tokens >= 1.0
            }
        }
    }

    /// What [`Throttle::allows`] would answer at `now`, changing nothing (the
    /// non-blocking authorize decides with it, then leaves the state to the real call).
    pub(crate) fn peek(&self, key_id: &str, now: Millis) -> bool {
        let map = self.buckets.lock();
        match map.get(key_id) {
            None => true,
            Some(b) => {
                let mut b = Bucket {
                    tokens: b.tokens,
                    at: b.at,
                };
                b.refill(now, self.config.per_second, f64::from(self.config.burst));
                b.tokens >= 1.0
            }
        }
    }

    /// Record a failed check.
    pub(crate) fn failed(&self, key_id: &str, now: Millis) {
        let burst = f64::from(self.config.burst);
        let per_second = self.config.per_second;
        let mut map = self.buckets.lock();
        if map.len() >= MAX_TRACKED && !map.contains_key(key_id) {
            map.retain(|_, b| b.tokens + elapsed_ms(b.at, now) * per_second / 1000.0 < burst);
            if map.len() >= MAX_TRACKED {
                return; // every tracked key is under attack: keep the existing buckets
            }
        }
        let b = map.entry(key_id.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.refill(now, per_second, burst);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

/// Longest `retry_after` the budget reports (a budget that never refills).
const MAX_RETRY_AFTER: u64 = 3_600;

/// The process-wide token bucket of failed argon2 verifications. A cold verification
/// takes a token before argon2 runs and gives it back if the secret was right, so only
/// failures spend the budget, and never more run at once than there are tokens.
pub(crate) struct Budget {
    burst: f64,
    per_second: f64,
    bucket: Mutex<Bucket>,
}

impl Budget {
    pub(crate) fn new(config: &ThrottleConfig, now: Millis) -> Budget {
        let burst = f64::from(config.budget_burst);
        Budget {
            burst,
            per_second: config.budget_per_second,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                at: now,
            }),
        }
    }

    /// Take a token, leaving at least half the burst when `keep_half` (a key_id past its
    /// own burst). `Err(retry_after)` in whole seconds (≥ 1) when there is none to take.
    pub(crate) fn take(&self, now: Millis, keep_half: bool) -> std::result::Result<(), u64> {
        let mut b = self.bucket.lock();
        b.refill(now, self.per_second, self.burst);
        let need = self.need(keep_half);
        if b.tokens >= need {
            b.tokens -= 1.0;
            return Ok(());
        }
        Err(self.retry_after(b.tokens, need))
    }

    /// What [`Budget::take`] would answer at `now`, taking nothing and changing nothing.
    pub(crate) fn peek(&self, now: Millis, keep_half: bool) -> std::result::Result<(), u64> {
        let b = self.bucket.lock();
        let mut b = Bucket {
            tokens: b.tokens,
            at: b.at,
        };
        b.refill(now, self.per_second, self.burst);
        let need = self.need(keep_half);
        if b.tokens >= need {
            return Ok(());
        }
        Err(self.retry_after(b.tokens, need))
    }

    /// Tokens a take needs: one, plus half the burst kept back when `keep_half`.
    fn need(&self, keep_half: bool) -> f64 {
        let reserve = if keep_half {
            (self.burst / 2.0).floor()
        } else {
            0.0
        };
        1.0 + reserve
    }

    /// Whole seconds (≥ 1) until `need` tokens are there again, from `tokens`.
    fn retry_after(&self, tokens: f64, need: f64) -> u64 {
        if self.per_second <= 0.0 || need > self.burst {
            return MAX_RETRY_AFTER;
        }
        let secs = ((need - tokens) / self.per_second).ceil();
        // Bounded above by MAX_RETRY_AFTER before the cast, so it fits.
        (secs.clamp(1.0, MAX_RETRY_AFTER as f64)) as u64
    }

    /// Give back a token taken for a verification that succeeded.
    pub(crate) fn refund(&self) {
        let mut b = self.bucket.lock();
        b.tokens = (b.tokens + 1.0).min(self.burst);
    }
}

/// Keyed digests of (hash, secret) pairs whose argon2 check failed in this process: the
/// same wrong secret is refused again without argon2. A key's hash never changes, so an
/// entry never goes stale. Bounded: two generations of at most `FAILED_GENERATION`
/// entries each; when the young one fills up, the old one is dropped (LRU-ish: a hit in
/// the old generation is moved to the young one).
pub(crate) struct FailedSecrets {
    /// (young, old) generations.
    sets: Mutex<(DigestSet, DigestSet)>,
}

type DigestSet = HashSet<[u8; 32]>;

const FAILED_GENERATION: usize = 16_384;

impl FailedSecrets {
    pub(crate) fn new() -> FailedSecrets {
        FailedSecrets {
            sets: Mutex::new((HashSet::new(), HashSet::new())),
        }
    }

    pub(crate) fn contains(&self, d: &[u8; 32]) -> bool {
        let mut sets = self.sets.lock();
        let (young, old) = &mut *sets;
        if young.contains(d) {
            return true;
        }
        if old.remove(d) {
            Self::push(young, old, *d);
            return true;
        }
        false
    }

    pub(crate) fn insert(&self, d: [u8; 32]) {
        let mut sets = self.sets.lock();
        let (young, old) = &mut *sets;
        Self::push(young, old, d);
    }

    fn push(young: &mut DigestSet, old: &mut DigestSet, d: [u8; 32]) {
        if young.len() >= FAILED_GENERATION {
            *old = std::mem::take(young);
        }
        young.insert(d);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let sets = self.sets.lock();
        sets.0.len() + sets.1.len()
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

    /// Regression: verification rehashed whenever the parameters differed, in either
    /// direction, so an opener with weak parameters rewrote strong hashes to weak ones.
    #[test]
    fn a_hash_with_stronger_or_incomparable_parameters_is_never_rehashed() {
        let strong = Argon2Params {
            m_kib: 64,
            t: 2,
            p: 1,
        };
        let h = hash_secret(b"s", strong).unwrap();
        assert_eq!(
            verify_secret(b"s", &h, Argon2Params::INSECURE_FAST),
            Verified::Yes
        );
        let more_memory_fewer_passes = Argon2Params {
            m_kib: 128,
            t: 1,
            p: 1,
        };
        assert_eq!(
            verify_secret(b"s", &h, more_memory_fewer_passes),
            Verified::Yes
        );
        let other_lanes = Argon2Params { p: 2, ..strong };
        assert_eq!(verify_secret(b"s", &h, other_lanes), Verified::Yes);
        let stronger = Argon2Params { t: 3, ..strong };
        assert_eq!(verify_secret(b"s", &h, stronger), Verified::YesRehash);
    }

    #[test]
    fn the_floor_is_owasps_argon2id_minimum_and_its_equivalents() {
        let p = |m_kib, t| Argon2Params { m_kib, t, p: 1 };
        for ok in [
            p(19_456, 2),
            p(47_104, 1),
            p(12_288, 3),
            p(9_216, 4),
            p(7_168, 5),
            p(65_536, 3),
        ] {
            assert!(ok.meets_floor(), "{ok:?}");
            assert!(ok.check(false).is_ok(), "{ok:?}");
        }
        for weak in [
            Argon2Params::INSECURE_FAST,
            p(19_455, 2),
            p(19_456, 1),
            p(47_103, 1),
            p(7_168, 4),
            p(1_000_000, 0),
        ] {
            assert!(!weak.meets_floor(), "{weak:?}");
            let e = weak.check(false).unwrap_err();
            assert_eq!(e.code(), "invalid_argument", "{weak:?}");
        }
        assert!(Argon2Params::default().meets_floor());
        // A vault storing weak parameters gets the defaults for new hashes outside tests.
        if !ALLOW_WEAK_ARGON2 {
            assert_eq!(
                Argon2Params::INSECURE_FAST.effective(),
                Argon2Params::default()
            );
        }
    }

    #[test]
    fn a_full_argon2_queue_refuses_at_once() {
        let l = std::sync::Arc::new(Limiter::new(1, 1));
        let held = l.acquire();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| l.try_acquire().is_some());
            while l.waiting() == 0 {
                std::thread::yield_now();
            }
            // One waits already: the next is refused without waiting.
            assert!(l.try_acquire().is_none());
            drop(held);
            assert!(waiter.join().unwrap(), "the waiter gets the permit");
        });
        assert!(
            Limiter::new(1, 0).try_acquire().is_some(),
            "a free permit needs no queue"
        );
    }

    #[test]
    fn the_budget_refuses_when_spent_and_refills_with_time() {
        let b = Budget::new(
            &ThrottleConfig {
                budget_burst: 4,
                budget_per_second: 1.0,
                ..ThrottleConfig::default()
            },
            0,
        );
        assert!(b.take(0, true).is_ok()); // 3 left
        assert!(b.take(0, true).is_ok()); // 2 left: a throttled key_id stops here
        assert_eq!(b.take(0, true), Err(1));
        assert!(b.take(0, false).is_ok());
        assert!(b.take(0, false).is_ok());
        assert_eq!(b.take(0, false), Err(1));
        b.refund();
        assert!(b.take(0, false).is_ok(), "a refunded token");
        assert_eq!(b.take(500, false), Err(1));
        assert!(b.take(1_000, false).is_ok(), "one token a second");
        // A clock that goes back neither refills nor stalls the bucket.
        assert_eq!(b.take(-5_000_000, false), Err(1));
        assert!(b.take(-4_999_000, false).is_ok());
    }

    #[test]
    fn failed_secrets_are_bounded() {
        let f = FailedSecrets::new();
        let d = |i: u32| {
            let mut x = [0u8; 32];
            x[..4].copy_from_slice(&i.to_le_bytes());
            x
        };
        f.insert(d(0));
        for i in 1..(3 * FAILED_GENERATION as u32) {
            f.insert(d(i));
            if i % 1000 == 0 {
                assert!(f.contains(&d(0)), "a hit keeps an entry young");
            }
        }
        assert!(f.len() <= 2 * FAILED_GENERATION);
        assert!(f.contains(&d(0)));
        assert!(!f.contains(&d(1)), "an old entry was dropped");
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
            ..ThrottleConfig::default()
        });
        for _ in 0..3 {
            assert!(t.allows("aaaaaaaa", 0));
            t.failed("aaaaaaaa", 0);
        }
        assert!(!t.allows("aaaaaaaa", 0));
        assert!(t.allows("bbbbbbbb", 0));
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

    #[test]
    fn digest_eq_sees_a_difference_in_any_bit() {
        let a: [u8; 32] = std::array::from_fn(|i| i as u8 * 7);
        assert!(digest_eq(&a, &a));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[byte] ^= 1 << bit;
                assert!(!digest_eq(&a, &b), "byte {byte} bit {bit}");
            }
        }
    }
}
