"""Django REST framework: ``KeyLedgerAuthentication``, ``HasAPIKey``, ``HasScope``, and an
``exception_handler`` keeping every header of a refusal; see ``keyledger.django``.

``KeyLedgerAuthentication`` authorizes a request carrying ``Authorization: Bearer <token>``
or ``X-Api-Key`` (a request without either is left to the next authentication class) with
``Vault.authorize_http``: as the view's ``keyledger_scope`` (charging ``keyledger_cost``,
default 0) when the view sets it, else as the request against the vault's route rules. A
signed request has its signature checked with its body, as by the middleware. A request
the middleware already authorized reuses its grant (no second charge). A refusal
raises ``Refused``, answered by DRF with the core's status, JSON body, ``WWW-Authenticate``
and ``Retry-After``; set ``"EXCEPTION_HANDLER":
"keyledger.django.rest_framework.exception_handler"`` to also keep the ``RateLimit-*``
headers.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from django.conf import settings
from rest_framework import exceptions, permissions
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework.response import Response

from keyledger._gate import refusal_body, scope_grants, without_content_headers
from keyledger._keyledger import Grant
from keyledger.django import get_vault
from keyledger.django._request import gate_options, header, request_target


class KeyLedgerAccount:
    """``request.user``: the account of the key (``account_id``, ``grant``)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.account_id = grant.account_id
        self.pk = self.id = grant.account_id

    def __str__(self) -> str:
        return self.account_id

    def __repr__(self) -> str:
        return f"KeyLedgerAccount(account_id={self.account_id!r})"


class Refused(exceptions.APIException):
    """A keyledger refusal: the core's status, headers and JSON body (``detail``, as is)."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
        super().__init__()
        self.status_code = status
        self.detail: Any = refusal_body(body)
        self.headers = without_content_headers(headers)
        retry = self.headers.get("retry-after") or self.headers.get("Retry-After")
        self.wait = int(retry) if retry and retry.isdigit() else None
        www = self.headers.get("www-authenticate") or self.headers.get("WWW-Authenticate")
        if www:
            self.auth_header = www


def exception_handler(exc: Exception, context: Any) -> Optional[Response]:
    """DRF's exception handler, adding every header of a ``Refused``."""
    from rest_framework import views  # reads the settings when imported: not at our import

    response = views.exception_handler(exc, context)
    if response is not None and isinstance(exc, Refused):
        for name, value in exc.headers.items():
            response[name] = value
    return response


class KeyLedgerAuthentication(BaseAuthentication):
    """Authenticate with a keyledger API key: ``request.auth`` is the ``Grant``,
    ``request.user`` a ``KeyLedgerAccount``."""

    def authenticate(self, request: Request) -> Optional[Tuple[KeyLedgerAccount, Grant]]:
        django_request = request._request
        done = getattr(django_request, "keyledger", None)
        if isinstance(done, Grant):
            return KeyLedgerAccount(done), done
        authorization, api_key = header(django_request, "authorization"), header(django_request, "x-api-key")
        if authorization is None and api_key is None:
            return None
        view = (getattr(request, "parser_context", None) or {}).get("view")
        scope: Optional[str] = getattr(view, "keyledger_scope", None)
        cost: Optional[int] = getattr(view, "keyledger_cost", None)
        if scope is not None and cost is None:
            cost = 0
        gate: Dict[str, Any] = dict(getattr(settings, "KEYLEDGER_GATE", None) or {})
        options = gate_options(
            django_request,
            signature_header=gate.get("signature_header"),
            max_body=gate.get("max_body"),
            scope=scope,
            cost=cost,
        )
        status, headers, body, grant = get_vault().authorize_http(
            django_request.method or "GET", request_target(django_request), **options
        )
        if grant is None:
            raise Refused(status, headers, body)
        setattr(django_request, "keyledger", grant)
        return KeyLedgerAccount(grant), grant

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class HasAPIKey(permissions.BasePermission):
    """Allow requests authenticated by ``KeyLedgerAuthentication`` (a valid key)."""

    message = "a keyledger API key is required"

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, Grant)


class HasScope(permissions.BasePermission):
    """``HasScope("sms:send")``: allow a key granting every scope named (keyledger's
    rule: ``*`` and ``ns:*`` wildcards). Listed as an instance in ``permission_classes``
    (DRF calls it; it returns itself)."""

    def __init__(self, *scopes: str) -> None:
        if not scopes:
            raise ValueError("HasScope needs at least one scope")
        self.scopes = scopes
        self.message = "API key lacks the required scope " + ", ".join(repr(s) for s in scopes)

    def __call__(self) -> "HasScope":
        return self

    def has_permission(self, request: Request, view: Any) -> bool:
        grant = request.auth
        if not isinstance(grant, Grant):
            return False
        return all(any(scope_grants(g, s) for g in grant.scopes) for s in self.scopes)


__all__ = ["HasAPIKey", "HasScope", "KeyLedgerAccount", "KeyLedgerAuthentication", "Refused", "exception_handler"]
