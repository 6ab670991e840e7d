"""Helpers shared by the framework integrations (not a public API): the request target of a
WSGI environ, the core's refusal as parsed JSON, and keyledger's scope rule."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Tuple
from urllib.parse import quote

# Characters left as they are when a decoded path is re-encoded: everything else
# (including `%` and `;`, which the core then refuses as ambiguous) is percent-encoded.
_SAFE = "/:@!$&'()*+,=-._~"


def environ_target(environ: Mapping[str, Any]) -> str:
    """The request target as the client sent it: ``REQUEST_URI`` or ``RAW_URI`` (set by
    gunicorn, uWSGI, werkzeug), else ``SCRIPT_NAME`` + ``PATH_INFO`` re-encoded
    conservatively plus ``?QUERY_STRING``."""
    for name in ("REQUEST_URI", "RAW_URI"):
        raw = environ.get(name)
        if isinstance(raw, str) and raw:
            return raw
    path = str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))
    # WSGI strings are bytes decoded as latin-1.
    target = quote(path.encode("latin-1", "replace"), safe=_SAFE) or "/"
    query = environ.get("QUERY_STRING")
    return f"{target}?{query}" if query else target


def refusal_body(body: bytes) -> Dict[str, Any]:
    """The core's JSON refusal body as a dict."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    return {"success": False, "error": "refused"}


def without_content_headers(headers: List[Tuple[str, str]]) -> Dict[str, str]:
    """The core's response headers but ``content-type`` and ``content-length``."""
    return {k: v for k, v in headers if k.lower() not in ("content-type", "content-length")}


def scope_grants(granted: str, required: str) -> bool:
    """keyledger's scope rule: ``*`` grants everything, ``ns:*`` / ``ns.*`` every longer
    scope starting with ``ns:`` / ``ns.``, any other scope exactly itself."""
    if not required or "*" in required:
        return False
    if granted == "*":
        return True
    if granted.endswith((":*", ".*")):
        base = granted[:-1]
        return len(base) >= 2 and len(required) > len(base) and required.startswith(base)
    return granted == required
