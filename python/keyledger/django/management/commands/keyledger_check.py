"""``manage.py keyledger_check TOKEN``: whether TOKEN has a keyledger key's format and
checksum (no vault access; exit status 1 when it does not)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keyledger._keyledger import looks_like_key, redact


class Command(BaseCommand):
    help = "Check that a token looks like a keyledger key (format and checksum)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("token")

    def handle(self, *args: Any, **options: Any) -> None:
        token = str(options["token"])
        if not looks_like_key(token):
            raise CommandError("not a keyledger key (bad format or checksum)")
        self.stdout.write(f"{redact(token)} looks like a keyledger key (format and checksum)")
