"""``KeyLedgerMiddleware``: gate every Django request (but ``KEYLEDGER_GATE["exclude"]``
prefixes) with the core's HTTP gate; see ``keyledger.django``.

Sync and async: under WSGI (or a sync middleware chain) it calls ``Vault.authorize_http``;
under ASGI with an async chain it is a coroutine (Django's ``sync_capable``/``async_capable``
pattern) that calls the non-blocking ``Vault.try_authorize_http`` inline and only when that
would block (argon2 for a key not yet verified in this process, or a commit wait) makes the
call in a worker thread (``Vault.authorize_http_async``): the event loop never waits for
keyledger.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from keyledger._keyledger import Grant
from keyledger.django import aget_vault, get_vault
from keyledger.django._request import gate_options, request_target

Outcome = Tuple[int, List[Tuple[str, str]], bytes, Optional[Grant]]
GetResponse = Callable[[HttpRequest], Union[HttpResponse, Awaitable[HttpResponse]]]


class KeyLedgerMiddleware:
    """Answer a refusal with the core's status, headers and JSON body; on a grant set
    ``request.keyledger`` and add the ``RateLimit-*`` headers to the response."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        args = self._request(request)
        if args is None:
            return self.get_response(request)
        method, target, options = args
        refusal, headers = self._decide(request, get_vault().authorize_http(method, target, **options))
        if refusal is not None:
            return refusal
        return _with_headers(self.get_response(request), headers)  # type: ignore[arg-type]

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        args = self._request(request)
        get_response: Any = self.get_response
        if args is None:
            response: HttpResponse = await get_response(request)
            return response
        method, target, options = args
        outcome = await (await aget_vault()).authorize_http_async(method, target, **options)
        refusal, headers = self._decide(request, outcome)
        if refusal is not None:
            return refusal
        response = await get_response(request)
        return _with_headers(response, headers)

    @staticmethod
    def _request(request: HttpRequest) -> Optional[Tuple[str, str, Dict[str, Any]]]:
        """The gate's arguments, or None for an excluded path."""
        gate: Dict[str, Any] = dict(getattr(settings, "KEYLEDGER_GATE", None) or {})
        if any(request.path.startswith(p) for p in gate.get("exclude", ())):
            return None
        options = gate_options(
            request,
            idempotency_header=gate.get("idempotency_header"),
            signature_header=gate.get("signature_header"),
            max_body=gate.get("max_body"),
            cost=gate.get("cost"),
            scope=gate.get("scope"),
            case_insensitive=bool(gate.get("case_insensitive", False)),
        )
        return request.method or "GET", request_target(request), options

    @staticmethod
    def _decide(request: HttpRequest, outcome: Outcome) -> Tuple[Optional[HttpResponse], List[Tuple[str, str]]]:
        """The refusal to answer, or None and the headers for the view's response (the
        grant is then ``request.keyledger``)."""
        status, headers, body, grant = outcome
        if grant is None:
            refusal = HttpResponse(body, status=status, content_type="application/json")
            return _with_headers(refusal, [(k, v) for k, v in headers if k.lower() != "content-type"]), []
        setattr(request, "keyledger", grant)
        return None, headers


def _with_headers(response: HttpResponse, headers: List[Tuple[str, str]]) -> HttpResponse:
    for name, value in headers:
        response[name] = value
    return response


__all__ = ["KeyLedgerMiddleware"]
