"""The request target and headers of a Django request, as the core reads them."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from django.http.request import RawPostDataException

from keyledger._asgi_io import raw_target
from keyledger._gate import environ_target

SIGNATURE_HEADER = "x-keyledger-signature"
MAX_BODY = 1024 * 1024


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


def gate_options(
    request: HttpRequest,
    *,
    idempotency_header: Optional[str] = None,
    signature_header: Optional[str] = None,
    max_body: Optional[int] = None,
    **options: Any,
) -> Dict[str, Any]:
    """The keyword arguments of ``Vault.authorize_http`` read from ``request`` (credentials,
    idempotency key, signature and the body it covers), plus ``options``."""
    signature = header(request, signature_header or SIGNATURE_HEADER)
    limit = MAX_BODY if max_body is None else int(max_body)
    body, too_large = (None, False) if signature is None else signed_body(request, limit)
    if signature is not None and body is None and not too_large:
        signature = ""  # the body cannot be read again: a signing key refuses the request
    return dict(
        authorization=header(request, "authorization"),
        api_key=header(request, "x-api-key"),
        idempotency_key=header(request, idempotency_header) if idempotency_header else None,
        signature=signature,
        body=body,
        body_too_large=too_large,
        max_body=limit,
        **options,
    )


def signed_body(request: HttpRequest, limit: int) -> Tuple[Optional[bytes], bool]:
    """A signed request's body (Django keeps it: the view reads it again), and whether it is
    over ``limit`` (then it is not read). None when it was consumed already (a view or
    middleware read the stream before)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return b"", True
    try:
        body = request.body
    except RequestDataTooBig:
        return b"", True
    except RawPostDataException:
        return None, False
    return body, len(body) > limit
