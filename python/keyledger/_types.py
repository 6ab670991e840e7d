"""Small Python-side types the native module returns."""

from __future__ import annotations

from typing import Optional

from keyledger._keyledger import redact as _redact


class Token(str):
    """A freshly minted API key token: a ``str`` (show it to the user once; keyledger
    cannot show it again).

    For a key created with ``signing=True``, ``signing_secret`` holds its signing secret
    (64 hex characters; its ASCII bytes are the HMAC key clients sign requests with), also
    shown once. It is ``None`` for other keys.
    """

    signing_secret: Optional[str]

    def __new__(cls, token: str, signing_secret: Optional[str] = None) -> "Token":
        self = super().__new__(cls, token)
        self.signing_secret = signing_secret
        return self

    def __repr__(self) -> str:
        """The redacted form, as ``keyledger.redact`` gives it (``Token('kl_live_ab12cd34_…')``):
        a ``%r``, an ``!r``, a traceback or a container's repr in a log line shows no secret.
        ``str(token)`` is still the whole token."""
        try:
            shown = _redact(str(self))
        except Exception:  # never fails for a minted token; never leak one either
            shown = "…"
        return f"Token({shown!r})"


__all__ = ["Token"]
