"""WSGI middleware (Flask, Django under WSGI, any WSGI app): gate every request with
``Vault.authorize_http``.

    from flask import Flask
    from keyledger.wsgi import KeyLedgerMiddleware

    app = Flask(__name__)
    app.wsgi_app = KeyLedgerMiddleware(app.wsgi_app, vault, exclude=("/health",))

For each request the middleware reads ``Authorization: Bearer <token>`` (else
``X-Api-Key``), and authorizes it against the request's method and raw target
(``REQUEST_URI``/``RAW_URI`` as the server received it, mount prefix included; without
them ``SCRIPT_NAME`` + ``PATH_INFO`` re-encoded conservatively) and the vault's route
rules, or as ``scope=`` when given. Then either

* it answers the refusal itself with the core's status, headers (``WWW-Authenticate`` on
  401, ``Retry-After`` on 429) and JSON body, e.g.
  ``402 {"success": false, "error": "insufficient_credits", ...}``; or
* it calls the app with the ``Grant`` in ``environ["keyledger.grant"]`` (in Flask:
  ``request.environ["keyledger.grant"]``) and adds the ``RateLimit-*`` headers to its
  response.

Signed requests (the ``X-KeyLedger-Signature`` header): the body is read (up to
``max_body`` bytes, else 413 ``payload_too_large``), checked by the core, and handed to the
app again. WSGI is synchronous: the call blocks its worker thread for argon2 (a key's first
request in this process) or a commit (a debit), as any WSGI handler does.
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from keyledger._gate import environ_target
from keyledger._keyledger import Grant, Vault

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

GRANT_KEY = "keyledger.grant"


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def _header_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


class KeyLedgerMiddleware:
    """Gate WSGI requests through a keyledger ``Vault`` (see the module docstring).

    :param app: the WSGI app to protect.
    :param vault: an open ``keyledger.Vault`` (open it in each worker process).
    :param cost: credits to charge per request instead of the matched rule's cost.
    :param scope: authorize this scope instead of the request's route rule.
    :param exclude: paths (``PATH_INFO``, exact) served without a key.
    :param signature_header: the header carrying a request signature.
    :param max_body: the largest body read for a signature check (413 beyond it).
    :param idempotency_header: a request header whose value is the idempotency key.
    :param replay: ``"refuse"`` (409 ``duplicate_request``) or ``"pass"``.
    :param case_insensitive: match rule literals ignoring ASCII case.
    """

    def __init__(
        self,
        app: "WSGIApplication",
        vault: Vault,
        *,
        cost: Optional[int] = None,
        scope: Optional[str] = None,
        exclude: Iterable[str] = (),
        signature_header: str = "x-keyledger-signature",
        max_body: int = 1024 * 1024,
        idempotency_header: Optional[str] = None,
        replay: str = "refuse",
        limits: Optional[Sequence[str]] = None,
        case_insensitive: bool = False,
    ) -> None:
        if replay not in ("refuse", "pass"):
            raise ValueError('replay must be "refuse" or "pass"')
        self.app, self.vault, self.cost, self.scope, self.replay = app, vault, cost, scope, replay
        self.exclude = frozenset(exclude)
        self.signature_key = _header_key(signature_header)
        self.idempotency_key = _header_key(idempotency_header) if idempotency_header else None
        self.max_body, self.limits, self.case_insensitive = max_body, limits, case_insensitive

    def __call__(self, environ: "WSGIEnvironment", start_response: "StartResponse") -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in self.exclude:
            return self.app(environ, start_response)
        signature: Optional[str] = environ.get(self.signature_key)
        body: Optional[bytes] = None
        too_large = False
        if signature is not None:
            body, too_large = self._read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        options: Dict[str, Any] = dict(
            authorization=environ.get("HTTP_AUTHORIZATION"),
            api_key=environ.get("HTTP_X_API_KEY"),
            signature=signature,
            body=body,
            body_too_large=too_large,
            cost=self.cost,
            scope=self.scope,
            limits=self.limits,
            replay=self.replay,
            idempotency_key=environ.get(self.idempotency_key) if self.idempotency_key else None,
            case_insensitive=self.case_insensitive,
            max_body=self.max_body,
        )
        method = str(environ.get("REQUEST_METHOD", "GET"))
        status, headers, out_body, grant = self.vault.authorize_http(method, environ_target(environ), **options)
        if grant is None:
            start_response(_status_line(status), list(headers) + [("Content-Length", str(len(out_body)))])
            return [out_body]
        environ[GRANT_KEY] = grant
        if not headers:
            return self.app(environ, start_response)
        extra = list(headers)

        def start_with_limits(status_line: str, response_headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], object]:
            return start_response(status_line, list(response_headers) + extra, exc_info)

        return self.app(environ, start_with_limits)

    def _read_body(self, environ: "WSGIEnvironment") -> Tuple[bytes, bool]:
        """The body (at most ``max_body`` + 1 bytes read), and whether it is too large."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        stream = environ.get("wsgi.input")
        if stream is None or length <= 0:
            return b"", False
        data = stream.read(min(length, self.max_body + 1))
        return data, len(data) > self.max_body or length > self.max_body


def grant_of(environ: "WSGIEnvironment") -> Optional[Grant]:
    """The ``Grant`` the middleware stored for this request, or None."""
    grant = environ.get(GRANT_KEY)
    return grant if isinstance(grant, Grant) else None


__all__ = ["GRANT_KEY", "KeyLedgerMiddleware", "grant_of"]
