//! Audit actions: every kind of entry the vault writes to its audit log.
//!
//! The strings are stored in the vault file and shown to operators (the CLI, the
//! dashboard, `Vault::audit` filters), so each variant's string is permanent: a test pins
//! every one.

/// What an audit entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AuditAction {
    /// An account was created.
    AccountCreated,
    /// Credits were added to an account (`top_up`).
    CreditsAdded,
    /// A management debit (`Vault::debit`).
    CreditsDebited,
    /// A due refill set an account's credits to its plan's amount.
    CreditsRefilled,
    /// A key was minted (also the successor of a rotation).
    KeyCreated,
    /// One bulk transaction of keys (`create_keys_bulk`).
    KeysCreatedBulk,
    /// A key was revoked.
    KeyRevoked,
    /// A key was disabled.
    KeyDisabled,
    /// A key was enabled again.
    KeyEnabled,
    /// A key's scopes were replaced.
    KeyScopesChanged,
    /// A key's expiry was set or cleared.
    KeyExpiryChanged,
    /// A key was rotated (the entry of the old key).
    KeyRotated,
    /// A signing secret was revealed to an admin.
    SigningSecretRevealed,
    /// A rate limit was set (or replaced).
    RatelimitSet,
    /// A rate limit was removed.
    RatelimitRemoved,
    /// An account got a refill plan.
    RefillSet,
    /// An account's refill plan was removed.
    RefillCleared,
    /// A route rule was added.
    RouteAdded,
    /// A route rule was removed.
    RouteRemoved,
    /// The master key was rotated (`rekey`).
    MasterKeyRotated,
    /// The vault's argon2id parameters changed.
    Argon2ParamsChanged,
    /// Refused authorizations (coalesced per window; pruned after the retention).
    AuthRefused,
    /// Authorizations by operator keys (coalesced per window).
    OperatorAuthorized,
    // Holds.
    /// Credits were reserved by a hold.
    HoldCreated,
    /// A hold was settled: its charge taken, the rest given back.
    HoldSettled,
    /// A hold was released by a call: every credit given back.
    HoldReleased,
    /// A hold reached its TTL unsettled: every credit given back.
    HoldExpired,
}

impl AuditAction {
    /// Every action.
    #[cfg(test)]
    pub(crate) const ALL: [AuditAction; 27] = [
        AuditAction::AccountCreated,
        AuditAction::CreditsAdded,
        AuditAction::CreditsDebited,
        AuditAction::CreditsRefilled,
        AuditAction::KeyCreated,
        AuditAction::KeysCreatedBulk,
        AuditAction::KeyRevoked,
        AuditAction::KeyDisabled,
        AuditAction::KeyEnabled,
        AuditAction::KeyScopesChanged,
        AuditAction::KeyExpiryChanged,
        AuditAction::KeyRotated,
        AuditAction::SigningSecretRevealed,
        AuditAction::RatelimitSet,
        AuditAction::RatelimitRemoved,
        AuditAction::RefillSet,
        AuditAction::RefillCleared,
        AuditAction::RouteAdded,
        AuditAction::RouteRemoved,
        AuditAction::MasterKeyRotated,
        AuditAction::Argon2ParamsChanged,
        AuditAction::AuthRefused,
        AuditAction::OperatorAuthorized,
        AuditAction::HoldCreated,
        AuditAction::HoldSettled,
        AuditAction::HoldReleased,
        AuditAction::HoldExpired,
    ];

    /// The stored (and displayed) name of the action.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            AuditAction::AccountCreated => "account_created",
            AuditAction::CreditsAdded => "credits_added",
            AuditAction::CreditsDebited => "credits_debited",
            AuditAction::CreditsRefilled => "credits_refilled",
            AuditAction::KeyCreated => "key_created",
            AuditAction::KeysCreatedBulk => "keys_created_bulk",
            AuditAction::KeyRevoked => "key_revoked",
            AuditAction::KeyDisabled => "key_disabled",
            AuditAction::KeyEnabled => "key_enabled",
            AuditAction::KeyScopesChanged => "key_scopes_changed",
            AuditAction::KeyExpiryChanged => "key_expiry_changed",
            AuditAction::KeyRotated => "key_rotated",
            AuditAction::SigningSecretRevealed => "signing_secret_revealed",
            AuditAction::RatelimitSet => "ratelimit_set",
            AuditAction::RatelimitRemoved => "ratelimit_removed",
            AuditAction::RefillSet => "refill_set",
            AuditAction::RefillCleared => "refill_cleared",
            AuditAction::RouteAdded => "route_added",
            AuditAction::RouteRemoved => "route_removed",
            AuditAction::MasterKeyRotated => "master_key_rotated",
            AuditAction::Argon2ParamsChanged => "argon2_params_changed",
            AuditAction::AuthRefused => "auth_refused",
            AuditAction::OperatorAuthorized => "operator_authorized",
            AuditAction::HoldCreated => "hold_created",
            AuditAction::HoldSettled => "hold_settled",
            AuditAction::HoldReleased => "hold_released",
            AuditAction::HoldExpired => "hold_expired",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::AuditAction::{self, *};

    /// Each action's string as stored in existing vault files: changing one would split
    /// the history of old and new entries and break every filter on it.
    const PINNED: [(AuditAction, &str); 27] = [
        (AccountCreated, "account_created"),
        (CreditsAdded, "credits_added"),
        (CreditsDebited, "credits_debited"),
        (CreditsRefilled, "credits_refilled"),
        (KeyCreated, "key_created"),
        (KeysCreatedBulk, "keys_created_bulk"),
        (KeyRevoked, "key_revoked"),
        (KeyDisabled, "key_disabled"),
        (KeyEnabled, "key_enabled"),
        (KeyScopesChanged, "key_scopes_changed"),
        (KeyExpiryChanged, "key_expiry_changed"),
        (KeyRotated, "key_rotated"),
        (SigningSecretRevealed, "signing_secret_revealed"),
        (RatelimitSet, "ratelimit_set"),
        (RatelimitRemoved, "ratelimit_removed"),
        (RefillSet, "refill_set"),
        (RefillCleared, "refill_cleared"),
        (RouteAdded, "route_added"),
        (RouteRemoved, "route_removed"),
        (MasterKeyRotated, "master_key_rotated"),
        (Argon2ParamsChanged, "argon2_params_changed"),
        (AuthRefused, "auth_refused"),
        (OperatorAuthorized, "operator_authorized"),
        (HoldCreated, "hold_created"),
        (HoldSettled, "hold_settled"),
        (HoldReleased, "hold_released"),
        (HoldExpired, "hold_expired"),
    ];

    #[test]
    fn every_audit_action_keeps_its_stored_string() {
        for (action, s) in PINNED {
            assert_eq!(action.as_str(), s);
            assert_eq!(action.to_string(), s);
        }
        // Every variant is pinned, once.
        assert_eq!(
            AuditAction::ALL.to_vec(),
            PINNED.iter().map(|(a, _)| *a).collect::<Vec<_>>()
        );
    }
}
