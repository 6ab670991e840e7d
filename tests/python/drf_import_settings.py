"""A small Django project using djangorestframework-api-key, for the import test: its own
models make the database (`migrate`) and mint the keys (`APIKey.objects.create_key`).
The SQLite file is named by DRF_IMPORT_DB."""

import os

SECRET_KEY = "keyledger-import-tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "rest_framework_api_key",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DRF_IMPORT_DB"]}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
