"""Webhook helpers: byte-compatible with hmac.new(secret, body, sha256).hexdigest()."""

from __future__ import annotations

import hashlib
import hmac
import json
import pathlib

import keyledger

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "vectors" / "rfc4231.json"


def test_rfc4231_vectors() -> None:
    cases = json.loads(VECTORS.read_text())["cases"]
    assert len(cases) == 6
    for c in cases:
        key, data = bytes.fromhex(c["key"]), bytes.fromhex(c["data"])
        assert keyledger.sign_webhook(key, data) == c["mac"]
        assert keyledger.verify_webhook(data, c["mac"], key)


def test_matches_the_standard_library_and_accepts_str() -> None:
    body = b'{"event":"message.delivered","id":"msg_1"}'
    sig = hmac.new(b"whsec_123", body, hashlib.sha256).hexdigest()
    assert keyledger.sign_webhook(b"whsec_123", body) == sig
    assert keyledger.sign_webhook("whsec_123", body.decode()) == sig
    assert keyledger.verify_webhook(body, sig.upper(), "whsec_123")


def test_a_bad_signature_is_false_not_an_exception() -> None:
    body = b"payload"
    sig = keyledger.sign_webhook(b"s", body)
    assert not keyledger.verify_webhook(body + b"!", sig, b"s")
    assert not keyledger.verify_webhook(body, "not hex", b"s")
    assert not keyledger.verify_webhook(body, "", b"s")
    assert not keyledger.verify_webhook(body, None, b"s")
