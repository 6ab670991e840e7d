//! The bytes of a debit request and of its outcome in a combining-queue slot
//! ([`crate::shm::combine`]): what a waiting process writes for a combiner in another
//! process, and what that combiner writes back.
//!
//! Both are a version byte followed by the postcard encoding of a wire struct. The grant
//! travels as a [`GrantRecord`]: it is what [`Inner::apply_debit`](super::Inner) stores
//! under an idempotency key, so nothing the combiner needs is lost on the way.
//!
//! A request longer than [`REQ_BYTES`] is not queued ([`encode_request`] returns `None`):
//! its process runs it itself, as without the queue. An outcome is always encoded: a
//! charged debit's outcome is a few integers and always fits; an outcome that does not fit
//! (a replay carrying a large stored grant) or that has no wire form (an error other than
//! the ones a debit gives for one request alone) is sent as "not run". That
//! answer is only ever given for a request that wrote nothing (a replay or a refusal before
//! any write), so the waiting process can run the request itself and get the same answer.
//! A request whose bytes do not decode (another build of the library) is answered
//! "not run" without being applied.

use serde::{Deserialize, Serialize};

use crate::credits::{DebitReq, Debited};
use crate::error::{Error, Result};
use crate::model::{Grant, Millis};
use crate::shm::combine::{OUT_BYTES, REQ_BYTES};
use crate::store::records::GrantRecord;
use crate::store::IdempotencyScope;

/// First byte of every request and outcome of this encoding.
const WIRE_VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct WireReq {
    account_id: String,
    cost: u64,
    /// Scope (0 authorize, 1 debit), key, fingerprint.
    idempotency: Option<(u8, String, [u8; 32])>,
    now: Millis,
    grant: Option<GrantRecord>,
    /// The usage report's route label of the charge.
    route: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum WireOutcome {
    Debited {
        charged: u64,
        credits: u64,
        total: u64,
        replayed: Option<(GrantRecord, Millis)>,
    },
    InsufficientCredits {
        credits: u64,
        required: u64,
    },
    IdempotencyConflict,
    NotFound(String),
    NotRun,
}

fn with_version(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(WIRE_VERSION);
    out.extend_from_slice(&body);
    out
}

fn body(bytes: &[u8]) -> Option<&[u8]> {
    match bytes.split_first() {
        Some((&WIRE_VERSION, rest)) => Some(rest),
        _ => None,
    }
}

/// The bytes of `req` for a queue slot, or `None` when it is longer than a slot holds.
pub(crate) fn encode_request(req: &DebitReq) -> Option<Vec<u8>> {
    let wire = WireReq {
        account_id: req.account_id.clone(),
        cost: req.cost,
        idempotency: req.idempotency.as_ref().map(|(scope, key, fp)| {
            let s = match scope {
                IdempotencyScope::Authorize => 0,
                IdempotencyScope::Debit => 1,
            };
            (s, key.clone(), *fp)
        }),
        now: req.now,
        grant: req.grant.as_ref().map(GrantRecord::from),
        route: req.route.clone(),
    };
    let bytes = with_version(postcard::to_allocvec(&wire).ok()?);
    (bytes.len() <= REQ_BYTES).then_some(bytes)
}

/// The request in a slot's bytes; `None` when they are not this encoding (the combiner
/// then answers "not run" without applying anything).
pub(crate) fn decode_request(bytes: &[u8]) -> Option<DebitReq> {
    let wire: WireReq = postcard::from_bytes(body(bytes)?).ok()?;
    let idempotency = match wire.idempotency {
        None => None,
        Some((0, key, fp)) => Some((IdempotencyScope::Authorize, key, fp)),
        Some((1, key, fp)) => Some((IdempotencyScope::Debit, key, fp)),
        Some(_) => return None,
    };
    Some(DebitReq {
        account_id: wire.account_id,
        cost: wire.cost,
        idempotency,
        now: wire.now,
        grant: wire.grant.map(Grant::from),
        route: wire.route,
    })
}

fn encode_wire(w: &WireOutcome) -> Option<Vec<u8>> {
    let bytes = with_version(postcard::to_allocvec(w).ok()?);
    (bytes.len() <= OUT_BYTES).then_some(bytes)
}

/// The bytes of a request's outcome (always at most [`OUT_BYTES`]).
pub(crate) fn encode_outcome(outcome: &Result<Debited>) -> Vec<u8> {
    let wire = match outcome {
        Ok(d) => WireOutcome::Debited {
            charged: d.charged,
            credits: d.credits,
            total: d.total,
            replayed: d
                .replayed
                .as_ref()
                .map(|(g, at)| (GrantRecord::from(g), *at)),
        },
        Err(Error::InsufficientCredits { credits, required }) => WireOutcome::InsufficientCredits {
            credits: *credits,
            required: *required,
        },
        Err(Error::IdempotencyConflict) => WireOutcome::IdempotencyConflict,
        Err(Error::NotFound(what)) => WireOutcome::NotFound(what.clone()),
        Err(_) => WireOutcome::NotRun,
    };
    encode_wire(&wire)
        .or_else(|| encode_wire(&WireOutcome::NotRun))
        .unwrap_or_else(|| vec![WIRE_VERSION])
}

/// The combiner's answer in a slot's bytes, or `None` for "not run": nothing was written
/// for the request, and the waiting process runs it itself. Anything undecodable is "not
/// run".
pub(crate) fn decode_outcome(bytes: &[u8]) -> Option<Result<Debited>> {
    let wire = postcard::from_bytes::<WireOutcome>(body(bytes)?).ok()?;
    Some(match wire {
        WireOutcome::Debited {
            charged,
            credits,
            total,
            replayed,
        } => Ok(Debited {
            charged,
            credits,
            total,
            replayed: replayed.map(|(g, at)| (Grant::from(g), at)),
        }),
        WireOutcome::InsufficientCredits { credits, required } => {
            Err(Error::InsufficientCredits { credits, required })
        }
        WireOutcome::IdempotencyConflict => Err(Error::IdempotencyConflict),
        WireOutcome::NotFound(what) => Err(Error::NotFound(what)),
        WireOutcome::NotRun => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthMethod, RateLimitStatus};

    fn grant(scopes: usize) -> Grant {
        Grant {
            account_id: "acct_1".into(),
            key_id: "key_1".into(),
            key_name: "ci".into(),
            prefix: "kl_live_ab".into(),
            auth_method: AuthMethod::Apikey,
            scopes: (0..scopes).map(|i| format!("scope:{i}")).collect(),
            charged: 0,
            credits: 0,
            total_credits: 0,
            replayed: false,
            ratelimits: vec![RateLimitStatus {
                name: "per_minute".into(),
                max: 60,
                remaining: 59,
                reset_ms: 1_700_000_060_000,
            }],
            hold_id: None,
        }
    }

    fn req(scopes: usize) -> DebitReq {
        DebitReq {
            account_id: "acct_1".into(),
            cost: 3,
            idempotency: Some((IdempotencyScope::Authorize, "idem-1".into(), [7u8; 32])),
            now: 1_700_000_000_000,
            grant: Some(grant(scopes)),
            route: Some("POST /api/v1/messaging/send".into()),
        }
    }

    fn same_request(a: &DebitReq, b: &DebitReq) -> bool {
        a.account_id == b.account_id
            && a.cost == b.cost
            && a.now == b.now
            && a.grant == b.grant
            && a.route == b.route
            && match (&a.idempotency, &b.idempotency) {
                (None, None) => true,
                (Some((sa, ka, fa)), Some((sb, kb, fb))) => sa == sb && ka == kb && fa == fb,
                _ => false,
            }
    }

    #[test]
    fn a_request_round_trips_through_its_slot_bytes() {
        let mut management = req(0);
        management.grant = None;
        management.idempotency = Some((IdempotencyScope::Debit, "d-1".into(), [1u8; 32]));
        let mut plain = req(2);
        plain.idempotency = None;
        for r in [req(2), management, plain] {
            let bytes = encode_request(&r).expect("fits");
            assert!(bytes.len() <= REQ_BYTES);
            let back = decode_request(&bytes).expect("decodes");
            assert!(same_request(&r, &back));
        }
    }

    #[test]
    fn a_request_longer_than_a_slot_is_not_queued() {
        assert!(encode_request(&req(200)).is_none());
    }

    #[test]
    fn bytes_of_another_encoding_are_not_a_request() {
        let mut bytes = encode_request(&req(1)).unwrap();
        bytes[0] = WIRE_VERSION + 1;
        assert!(decode_request(&bytes).is_none());
        assert!(decode_request(&[]).is_none());
        assert!(decode_request(&[WIRE_VERSION, 0xff, 0xff]).is_none());
    }

    #[test]
    fn outcomes_round_trip_and_a_charged_debit_always_fits() {
        let charged = Ok(Debited {
            charged: u64::MAX,
            credits: u64::MAX,
            total: u64::MAX,
            replayed: None,
        });
        let bytes = encode_outcome(&charged);
        assert!(bytes.len() <= OUT_BYTES);
        match decode_outcome(&bytes) {
            Some(Ok(d)) => {
                assert_eq!(
                    (d.charged, d.credits, d.total),
                    (u64::MAX, u64::MAX, u64::MAX)
                );
                assert!(d.replayed.is_none());
            }
            _ => panic!("not the outcome encoded"),
        }
        let replay = Ok(Debited {
            charged: 0,
            credits: 5,
            total: 10,
            replayed: Some((grant(1), 42)),
        });
        match decode_outcome(&encode_outcome(&replay)) {
            Some(Ok(d)) => assert_eq!(d.replayed, Some((grant(1), 42))),
            _ => panic!("not the outcome encoded"),
        }
        for e in [
            Error::InsufficientCredits {
                credits: 1,
                required: 2,
            },
            Error::IdempotencyConflict,
            Error::NotFound("account \"acct_1\"".into()),
        ] {
            match decode_outcome(&encode_outcome(&Err(e.clone()))) {
                Some(Err(got)) => assert_eq!(got, e),
                _ => panic!("not the outcome encoded"),
            }
        }
    }

    #[test]
    fn an_outcome_without_a_wire_form_or_too_long_is_not_run() {
        let big_replay = Ok(Debited {
            charged: 0,
            credits: 5,
            total: 10,
            replayed: Some((grant(100), 42)),
        });
        let bytes = encode_outcome(&big_replay);
        assert!(bytes.len() <= OUT_BYTES);
        assert!(decode_outcome(&bytes).is_none());
        let storage = encode_outcome(&Err(Error::Storage("disk".into())));
        assert!(decode_outcome(&storage).is_none());
        assert!(decode_outcome(&[]).is_none());
        assert!(decode_outcome(&[WIRE_VERSION + 1, 0]).is_none());
    }
}
