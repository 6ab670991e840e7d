"""``manage.py keyledger ARGS...``: run the installed ``keyledger`` CLI (``$KEYLEDGER_CLI``,
else ``keyledger`` on ``PATH``) with ``KEYLEDGER_VAULT`` set from the settings, passing
ARGS through unchanged; its exit status becomes the command's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from keyledger.django import vault_location


class Command(BaseCommand):
    help = "Run the keyledger CLI on the vault of the settings (arguments passed through)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("args", nargs="*")

    def run_from_argv(self, argv: list[str]) -> None:
        # Everything after the command name goes to the CLI, options included.
        self._called_from_command_line = True
        sys.exit(self._run(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:
        code = self._run([str(a) for a in args])
        if code != 0:
            raise CommandError(f"keyledger exited with status {code}", returncode=code)

    def _run(self, args: list[str]) -> int:
        cli = os.environ.get("KEYLEDGER_CLI") or shutil.which("keyledger")
        if not cli:
            raise CommandError("the keyledger CLI is not installed (cargo install keyledger-cli, or set KEYLEDGER_CLI)")
        env = dict(os.environ, KEYLEDGER_VAULT=vault_location())
        done = subprocess.run([cli, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdout.write(done.stdout.decode("utf-8", "replace"), ending="")
        self.stderr.write(done.stderr.decode("utf-8", "replace"), ending="")
        return done.returncode
