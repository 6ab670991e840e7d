//! [`GrantView`]: a grant that reads the key's strings from the cached key record instead
//! of copying them, for hosts that read a few fields and convert them themselves.

use super::{Arc, AuthMethod, Grant, HotKey, KeyRecord, KeyState, Rc};
use crate::model::RateLimitStatus;

/// A successful authorization, as [`Vault::authorize_view`](super::Vault::authorize_view)
/// answers it: the same fields as [`Grant`], read through methods. On the hot path (a
/// cached, verified key; a call that writes nothing) it holds a reference to this
/// thread's copy of the key record rather than copies of its strings, so making it
/// allocates nothing. It is neither `Send` nor `Sync`: read it on the calling thread, or
/// make an owned [`Grant`] with [`GrantView::into_grant`].
pub struct GrantView {
    repr: Repr<Rc<HotKey>>,
}

/// A [`GrantView`] that may cross threads (its key record shared through an `Arc`): what
/// the Python `Grant` holds.
#[cfg_attr(not(feature = "python"), allow(dead_code))]
pub(crate) struct SharedGrant(Repr<SharedKey>);

/// A cached key record shared across threads.
pub(crate) struct SharedKey(Arc<KeyState>);

/// Where a cached grant reads the key's strings from.
pub(crate) trait KeySource {
    fn rec(&self) -> &KeyRecord;
}

impl KeySource for Rc<HotKey> {
    fn rec(&self) -> &KeyRecord {
        &self.state.rec
    }
}

impl KeySource for SharedKey {
    fn rec(&self) -> &KeyRecord {
        &self.0.rec
    }
}

pub(crate) enum Repr<K> {
    /// The key's strings are the cached record's; the numbers are this call's.
    Cached {
        key: K,
        credits: u64,
        total_credits: u64,
        ratelimits: Vec<RateLimitStatus>,
    },
    /// A grant built by a call that wrote (a debit, an idempotency record, a refill), or
    /// the stored grant of a replayed call.
    Owned(Grant),
}

#[cfg_attr(not(feature = "python"), allow(dead_code))]
impl<K: KeySource> Repr<K> {
    pub(crate) fn account_id(&self) -> &str {
        match self {
            Repr::Cached { key, .. } => &key.rec().account_id,
            Repr::Owned(g) => &g.account_id,
        }
    }

    pub(crate) fn key_id(&self) -> &str {
        match self {
            Repr::Cached { key, .. } => &key.rec().key_id,
            Repr::Owned(g) => &g.key_id,
        }
    }

    pub(crate) fn key_name(&self) -> &str {
        match self {
            Repr::Cached { key, .. } => &key.rec().name,
            Repr::Owned(g) => &g.key_name,
        }
    }

    pub(crate) fn prefix(&self) -> &str {
        match self {
            Repr::Cached { key, .. } => &key.rec().prefix,
            Repr::Owned(g) => &g.prefix,
        }
    }

    pub(crate) fn auth_method(&self) -> AuthMethod {
        match self {
            Repr::Cached { key, .. } if key.rec().operator => AuthMethod::Operator,
            Repr::Cached { .. } => AuthMethod::Apikey,
            Repr::Owned(g) => g.auth_method,
        }
    }

    pub(crate) fn scopes(&self) -> &[String] {
        match self {
            Repr::Cached { key, .. } => &key.rec().scopes,
            Repr::Owned(g) => &g.scopes,
        }
    }

    pub(crate) fn charged(&self) -> u64 {
        match self {
            Repr::Cached { .. } => 0,
            Repr::Owned(g) => g.charged,
        }
    }

    pub(crate) fn credits(&self) -> u64 {
        match self {
            Repr::Cached { credits, .. } => *credits,
            Repr::Owned(g) => g.credits,
        }
    }

    pub(crate) fn total_credits(&self) -> u64 {
        match self {
            Repr::Cached { total_credits, .. } => *total_credits,
            Repr::Owned(g) => g.total_credits,
        }
    }

    pub(crate) fn replayed(&self) -> bool {
        match self {
            Repr::Cached { .. } => false,
            Repr::Owned(g) => g.replayed,
        }
    }

    pub(crate) fn ratelimits(&self) -> &[RateLimitStatus] {
        match self {
            Repr::Cached { ratelimits, .. } => ratelimits,
            Repr::Owned(g) => &g.ratelimits,
        }
    }

    pub(crate) fn hold_id(&self) -> Option<&str> {
        match self {
            Repr::Cached { .. } => None,
            Repr::Owned(g) => g.hold_id.as_deref(),
        }
    }

    /// An owned copy (the key's strings cloned).
    pub(crate) fn to_grant(&self) -> Grant {
        match self {
            Repr::Owned(g) => g.clone(),
            Repr::Cached { .. } => self.copy_cached(self.ratelimits().to_vec()),
        }
    }

    fn into_grant(self) -> Grant {
        match self {
            Repr::Owned(g) => g,
            Repr::Cached { ref ratelimits, .. } => {
                let limits = ratelimits.clone();
                self.copy_cached(limits)
            }
        }
    }

    fn copy_cached(&self, ratelimits: Vec<RateLimitStatus>) -> Grant {
        Grant {
            account_id: self.account_id().to_owned(),
            key_id: self.key_id().to_owned(),
            key_name: self.key_name().to_owned(),
            prefix: self.prefix().to_owned(),
            auth_method: self.auth_method(),
            scopes: self.scopes().to_vec(),
            charged: 0,
            credits: self.credits(),
            total_credits: self.total_credits(),
            replayed: false,
            ratelimits,
            hold_id: None,
        }
    }
}

impl GrantView {
    /// A grant of a call that wrote nothing: `charged` 0, not replayed.
    pub(super) fn cached(hot: Rc<HotKey>, credits: u64, total_credits: u64) -> GrantView {
        GrantView {
            repr: Repr::Cached {
                key: hot,
                credits,
                total_credits,
                ratelimits: Vec::new(),
            },
        }
    }

    pub(super) fn owned(grant: Grant) -> GrantView {
        GrantView {
            repr: Repr::Owned(grant),
        }
    }

    pub(super) fn set_ratelimits(&mut self, limits: Vec<RateLimitStatus>) {
        match &mut self.repr {
            Repr::Cached { ratelimits, .. } => *ratelimits = limits,
            Repr::Owned(g) => g.ratelimits = limits,
        }
    }

    /// The same grant, its key record shared across threads (one reference count
    /// increment, no copy).
    #[cfg_attr(not(feature = "python"), allow(dead_code))]
    pub(crate) fn into_shared(self) -> SharedGrant {
        SharedGrant(match self.repr {
            Repr::Owned(g) => Repr::Owned(g),
            Repr::Cached {
                key,
                credits,
                total_credits,
                ratelimits,
            } => Repr::Cached {
                key: SharedKey(key.state.clone()),
                credits,
                total_credits,
                ratelimits,
            },
        })
    }

    /// The calling account.
    pub fn account_id(&self) -> &str {
        self.repr.account_id()
    }

    /// The key used.
    pub fn key_id(&self) -> &str {
        self.repr.key_id()
    }

    /// The key's name.
    pub fn key_name(&self) -> &str {
        self.repr.key_name()
    }

    /// The key's prefix.
    pub fn prefix(&self) -> &str {
        self.repr.prefix()
    }

    /// `apikey` or `operator`.
    pub fn auth_method(&self) -> AuthMethod {
        self.repr.auth_method()
    }

    /// The key's scopes.
    pub fn scopes(&self) -> &[String] {
        self.repr.scopes()
    }

    /// Credits debited by this call (0 for a replay or an operator).
    pub fn charged(&self) -> u64 {
        self.repr.charged()
    }

    /// Credits left after the call.
    pub fn credits(&self) -> u64 {
        self.repr.credits()
    }

    /// Lifetime credits of the account.
    pub fn total_credits(&self) -> u64 {
        self.repr.total_credits()
    }

    /// True when this is the stored grant of an earlier call with the same idempotency key.
    pub fn replayed(&self) -> bool {
        self.repr.replayed()
    }

    /// The rate limits applied to this call.
    pub fn ratelimits(&self) -> &[RateLimitStatus] {
        self.repr.ratelimits()
    }

    /// The hold this call made (`authorize` with a hold), as [`Grant::hold_id`].
    pub fn hold_id(&self) -> Option<&str> {
        self.repr.hold_id()
    }

    /// The applied rate limit with the fewest units left (the first applied on a tie), as
    /// [`Grant::tightest_ratelimit`].
    pub fn tightest_ratelimit(&self) -> Option<&RateLimitStatus> {
        self.ratelimits().iter().min_by_key(|r| r.remaining)
    }

    /// The owned [`Grant`] (what [`Vault::authorize`](super::Vault::authorize) answers).
    pub fn into_grant(self) -> Grant {
        self.repr.into_grant()
    }
}

impl From<Grant> for SharedGrant {
    fn from(g: Grant) -> SharedGrant {
        SharedGrant(Repr::Owned(g))
    }
}

impl std::ops::Deref for SharedGrant {
    type Target = Repr<SharedKey>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for GrantView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantView")
            .field("account_id", &self.account_id())
            .field("key_id", &self.key_id())
            .field("key_name", &self.key_name())
            .field("prefix", &self.prefix())
            .field("auth_method", &self.auth_method())
            .field("scopes", &self.scopes())
            .field("charged", &self.charged())
            .field("credits", &self.credits())
            .field("total_credits", &self.total_credits())
            .field("replayed", &self.replayed())
            .field("ratelimits", &self.ratelimits())
            .finish()
    }
}

impl From<GrantView> for Grant {
    fn from(v: GrantView) -> Grant {
        v.into_grant()
    }
}
