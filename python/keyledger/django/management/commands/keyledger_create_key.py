"""``manage.py keyledger_create_key ACCOUNT NAME --scope S [--scope S2] [--prefix P]``
(default prefix ``kl_live``):
create a key in ``KEYLEDGER_VAULT`` and print its token once (stdout)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keyledger._errors import KeyLedgerError
from keyledger.django import get_vault


class Command(BaseCommand):
    help = "Create an API key for an account and print its token (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("account")
        parser.add_argument("name")
        parser.add_argument("--scope", action="append", default=[], dest="scopes")
        parser.add_argument("--prefix", default="kl_live")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            token, info = get_vault().create_key(options["account"], options["name"], options["scopes"], prefix=options["prefix"])
        except KeyLedgerError as e:
            raise CommandError(str(e)) from e
        self.stderr.write(f"key {info.key_id} for {info.account_id}")
        self.stdout.write(str(token))
