//! Idempotency records: what an authorization or a management debit stored under its
//! idempotency key, and the fingerprint of the request it answered.
//!
//! A key is reused within its window either for the same request (a retry: the stored
//! outcome is replayed) or for another one (a client bug or an attack: refused with
//! `idempotency_conflict`, nothing charged). The fingerprint decides which: an unkeyed
//! BLAKE3 hash over the account, what the call matched (the route rule's method and
//! pattern, the scope, or a management debit), the cost and the limit cost.
//!
//! The stored outcome and its versioned encoding are `store::records::IdempotencyRecord`.
//! A record from before fingerprints (version 1) carries none, so nothing proves that a
//! reuse is the same request: it is answered as a conflict (safe: nothing is charged and
//! nothing is replayed; such records are at most 24 h old after an upgrade).

/// What a call matched, for the fingerprint.
pub(crate) enum Matched<'a> {
    /// A route rule: its method and canonical pattern.
    Rule { method: &'a str, pattern: &'a str },
    /// A scope call.
    Scope(&'a str),
    /// A management debit (`Vault::debit`).
    Debit,
}

/// The fingerprint of a request: equal for a retry, different for any other request.
pub(crate) fn fingerprint(
    account: &str,
    matched: &Matched<'_>,
    cost: u64,
    limit_cost: u64,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"keyledger idempotency fingerprint v2\0");
    // Every string is length-prefixed, so no two field lists encode alike.
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(account.as_bytes());
    match matched {
        Matched::Rule { method, pattern } => {
            field(b"rule");
            field(method.as_bytes());
            field(pattern.as_bytes());
        }
        Matched::Scope(s) => {
            field(b"scope");
            field(s.as_bytes());
        }
        Matched::Debit => field(b"debit"),
    }
    field(&cost.to_le_bytes());
    field(&limit_cost.to_le_bytes());
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_every_field() {
        let rule = Matched::Rule {
            method: "POST",
            pattern: "/send",
        };
        let base = fingerprint("a", &rule, 1, 1);
        assert_eq!(base, fingerprint("a", &rule, 1, 1));
        assert_ne!(base, fingerprint("b", &rule, 1, 1));
        assert_ne!(base, fingerprint("a", &rule, 2, 1));
        assert_ne!(base, fingerprint("a", &rule, 1, 2));
        let other = Matched::Rule {
            method: "POST",
            pattern: "/sen",
        };
        assert_ne!(base, fingerprint("a", &other, 1, 1));
        assert_ne!(base, fingerprint("a", &Matched::Scope("/send"), 1, 1));
        assert_ne!(base, fingerprint("a", &Matched::Debit, 1, 1));
    }
}
