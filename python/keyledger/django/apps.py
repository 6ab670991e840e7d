"""The Django app of keyledger (for its management commands)."""

from django.apps import AppConfig


class KeyLedgerConfig(AppConfig):
    name = "keyledger.django"
    label = "keyledger"
    verbose_name = "keyledger"
