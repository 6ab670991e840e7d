"""Run in its own process (its own Django settings): migrate a fresh SQLite database with
djangorestframework-api-key's models, mint keys with its own manager, and print them as
JSON: {"good": token, "revoked": token, "expired": token, "wrong": token}."""

import datetime
import json
import os
import sys

os.environ["DRF_IMPORT_DB"] = sys.argv[1]
os.environ["DJANGO_SETTINGS_MODULE"] = "drf_import_settings"
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402

call_command("migrate", verbosity=0)
_, good = APIKey.objects.create_key(name="alice's server")
_, revoked = APIKey.objects.create_key(name="old", revoked=True)
_, expired = APIKey.objects.create_key(name="trial", expiry_date=timezone.now() - datetime.timedelta(days=1))
# drf-api-key's own check agrees with what the import must do.
assert APIKey.objects.is_valid(good) and not APIKey.objects.is_valid(expired)
prefix, _, secret = good.partition(".")
wrong = prefix + "." + ("A" if secret[0] != "A" else "B") + secret[1:]
assert not APIKey.objects.is_valid(wrong)
print(json.dumps({"good": good, "revoked": revoked, "expired": expired, "wrong": wrong}))
