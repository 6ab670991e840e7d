"""The request target and headers of a Django request, as the core reads them."""

from __future__ import annotations

from typing import Any, Dict, Optional

from django.http import HttpRequest

from keyledger._asgi_io import raw_target
from keyledger._gate import environ_target


def request_target(request: HttpRequest) -> str:
    """The raw request target: the ASGI scope's ``raw_path``, else the WSGI environ's
    ``REQUEST_URI``/``RAW_URI``, else the decoded path re-encoded conservatively."""
    scope: Any = getattr(request, "scope", None)
    if isinstance(scope, dict) and scope.get("raw_path"):
        return raw_target(scope)
    meta = dict(request.META)
    if not meta.get("REQUEST_URI") and not meta.get("RAW_URI"):
        meta["SCRIPT_NAME"], meta["PATH_INFO"] = "", request.path
    return environ_target(meta)


def header(request: HttpRequest, name: str) -> Optional[str]:
    value = request.META.get("HTTP_" + name.upper().replace("-", "_"))
    return str(value) if value is not None else None


def gate_options(request: HttpRequest, *, idempotency_header: Optional[str] = None, **options: Any) -> Dict[str, Any]:
    """The keyword arguments of ``Vault.authorize_http`` read from ``request`` (credentials,
    idempotency key), plus ``options``."""
    return dict(
        authorization=header(request, "authorization"),
        api_key=header(request, "x-api-key"),
        idempotency_key=header(request, idempotency_header) if idempotency_header else None,
        **options,
    )
