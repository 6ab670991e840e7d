"""``KeyLedgerMiddleware``: gate every Django request (but ``KEYLEDGER_GATE["exclude"]``
prefixes) with ``Vault.authorize_http``; see ``keyledger.django``."""

from __future__ import annotations

from typing import Any, Callable, Dict

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from keyledger.django import get_vault
from keyledger.django._request import header, request_target


class KeyLedgerMiddleware:
    """Answer a refusal with the core's status, headers and JSON body; on a grant set
    ``request.keyledger`` and add the ``RateLimit-*`` headers to the response. Synchronous
    (Django adapts it under ASGI)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        gate: Dict[str, Any] = dict(getattr(settings, "KEYLEDGER_GATE", None) or {})
        if any(request.path.startswith(p) for p in gate.get("exclude", ())):
            return self.get_response(request)
        idempotency = gate.get("idempotency_header")
        status, headers, body, grant = get_vault().authorize_http(
            request.method or "GET",
            request_target(request),
            authorization=header(request, "authorization"),
            api_key=header(request, "x-api-key"),
            idempotency_key=header(request, idempotency) if idempotency else None,
            cost=gate.get("cost"),
            scope=gate.get("scope"),
            case_insensitive=bool(gate.get("case_insensitive", False)),
        )
        if grant is None:
            refusal = HttpResponse(body, status=status, content_type="application/json")
            for name, value in headers:
                if name.lower() != "content-type":
                    refusal[name] = value
            return refusal
        setattr(request, "keyledger", grant)
        response = self.get_response(request)
        for name, value in headers:
            response[name] = value
        return response


__all__ = ["KeyLedgerMiddleware"]
