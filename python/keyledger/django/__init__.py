"""Django and Django REST framework: middleware, a DRF authentication class, permission
classes, settings, and management commands.

Settings:

* ``KEYLEDGER_VAULT``: the vault file (or ``postgresql://`` URL, when built with it).
* ``KEYLEDGER_OPTIONS``: keyword arguments for ``keyledger.Vault`` (``master_key``,
  ``argon2``, ``durability``...).
* ``KEYLEDGER_GATE``: options of the middleware: ``exclude`` (path prefixes served without a
  key, e.g. ``["/admin/", "/health"]``), ``cost``, ``scope``, ``idempotency_header``,
  ``case_insensitive``; and of the middleware and the DRF class: ``signature_header``
  (default ``X-KeyLedger-Signature``) and ``max_body`` (default 1 MiB).

Signed requests (keys created with ``signing=True``): when a request carries the signature
header, the middleware and ``KeyLedgerAuthentication`` pass the header and the body
(``request.body``, which Django keeps for the view) to the core, which checks the signature
over the method, the target as sent and the body's SHA-256, as ``keyledger.asgi`` does: a
tampered body or a stale timestamp is 401 ``invalid_signature``, a body over ``max_body``
413 ``payload_too_large`` (it is then not read). With a ``scope`` (``KEYLEDGER_GATE`` or a
view's ``keyledger_scope``) the core checks a signature over the method ``SCOPE`` and the
scope instead, as for ``Vault.authorize(scope=...)``.

One ``Vault`` per process, opened lazily by ``get_vault()`` (``await aget_vault()`` in async
code: the first open then runs in a worker thread) on first use, and opened again in
a child process after ``fork()`` (the core requires a vault per process: a parent's vault
is never used by a child). Changing ``KEYLEDGER_VAULT``/``KEYLEDGER_OPTIONS`` with
``override_settings`` reopens it.

Middleware (``keyledger.django.middleware.KeyLedgerMiddleware``): gates every request but
the excluded prefixes through ``Vault.authorize_http``, against the vault's route rules (the
request's method and raw target); a refusal is answered with the core's status, headers and
JSON body; a grant is ``request.keyledger``. Use it for an API where every path is a
priced route. It is sync and async capable: under ASGI with async views it runs as a
coroutine, deciding inline with ``Vault.try_authorize_http`` and moving only argon2 or a
commit wait to a worker thread (``Vault.authorize_http_async``), so the event loop never
waits for keyledger. For per-view checks instead, use the DRF classes alone:

    INSTALLED_APPS = [..., "rest_framework", "keyledger.django"]
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["keyledger.django.rest_framework.KeyLedgerAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["keyledger.django.rest_framework.HasAPIKey"],
    }

    class SendView(APIView):
        permission_classes = [HasScope("sms:send")]
        keyledger_scope, keyledger_cost = "sms:send", 1   # else the route rules decide

``KeyLedgerAuthentication`` sets ``request.auth`` to the ``Grant`` and ``request.user`` to a
``KeyLedgerAccount`` (``account_id``, ``grant``, ``is_authenticated``). Management commands
(with ``"keyledger.django"`` in ``INSTALLED_APPS``): ``keyledger_create_key``,
``keyledger_check``, and ``keyledger`` (runs the installed ``keyledger`` CLI with
``--vault`` set from the settings).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional

from keyledger._keyledger import Vault

_lock = threading.Lock()
_vault: Optional[Vault] = None
_pid: Optional[int] = None


def _settings() -> Any:
    from django.conf import settings

    return settings


def vault_location() -> str:
    """``settings.KEYLEDGER_VAULT``; ``ImproperlyConfigured`` when unset."""
    from django.core.exceptions import ImproperlyConfigured

    location = getattr(_settings(), "KEYLEDGER_VAULT", None)
    if not location:
        raise ImproperlyConfigured("keyledger: set KEYLEDGER_VAULT (the vault file) in the settings")
    return str(location)


def vault_options() -> Dict[str, Any]:
    """``settings.KEYLEDGER_OPTIONS`` (keyword arguments for ``Vault``)."""
    return dict(getattr(_settings(), "KEYLEDGER_OPTIONS", None) or {})


def get_vault() -> Vault:
    """This process's vault, opened on first use (and again after a ``fork()``)."""
    global _vault, _pid
    pid = os.getpid()
    vault = _vault
    if vault is not None and _pid == pid:
        return vault
    with _lock:
        if _vault is None or _pid != pid:
            _vault = Vault(vault_location(), **vault_options())  # a parent's vault is left alone
            _pid = pid
        return _vault


async def aget_vault() -> Vault:
    """``get_vault()`` for async code: this process's vault at once when it is open, else
    opened in a worker thread (opening reads the file, or connects to PostgreSQL)."""
    vault = _vault
    if vault is not None and _pid == os.getpid():
        return vault
    from keyledger._aio import run_sync

    return await run_sync(get_vault)


def reset_vault() -> None:
    """Close this process's vault; the next ``get_vault()`` opens it again."""
    global _vault, _pid
    with _lock:
        vault, pid = _vault, _pid
        _vault, _pid = None, None
    if vault is not None and pid == os.getpid():
        vault.close()


def _on_setting_changed(setting: str = "", **kwargs: Any) -> None:
    if setting in ("KEYLEDGER_VAULT", "KEYLEDGER_OPTIONS"):
        reset_vault()


try:
    from django.core.signals import setting_changed
except ImportError:  # pragma: no cover - django is an optional dependency
    pass
else:
    setting_changed.connect(_on_setting_changed, dispatch_uid="keyledger.django.reset_vault")

__all__ = ["aget_vault", "get_vault", "reset_vault", "vault_location", "vault_options"]
