"""A minimal Django settings module for the keyledger.django tests (no database)."""

SECRET_KEY = "keyledger-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "keyledger.django"]
MIDDLEWARE: list = []
ROOT_URLCONF = "django_app"
DATABASES: dict = {}
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["keyledger.django.rest_framework.KeyLedgerAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["keyledger.django.rest_framework.HasAPIKey"],
    "EXCEPTION_HANDLER": "keyledger.django.rest_framework.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
KEYLEDGER_GATE = {"exclude": ["/health"]}
